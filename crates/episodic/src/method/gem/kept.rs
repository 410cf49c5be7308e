//! GEM's kept first layers: each past task's first-layer pre-activations carried from step
//! to step (see the module documentation of [`super`]), and their place in the saved state.

use std::time::Instant;

use super::past::{each_past_task, memory_inputs};
use super::Gem;
use crate::error::{Error, Result};
use crate::state::State;

/// A past task's first-layer pre-activations, kept from step to step (see
/// [`crate::model::Model::loss_and_factors_kept`]).
#[derive(Debug, Clone, Default)]
pub(super) struct KeptFirstLayer {
    /// The memory slot whose inputs they belong to, for the model's current parameters;
    /// `None`: nothing kept (computed anew at the next pass).
    pub(super) slot: Option<usize>,
    pub(super) values: Vec<f32>,
}

impl Gem {
    /// Carries the past tasks' kept first-layer pre-activations over a plain step with the
    /// batch gradient (before the parameters take it); after any other step (projected,
    /// skipped, without factors, or with momentum or weight decay, whose step is not the
    /// batch gradient's) they are dropped and computed anew at the next pass.
    pub(super) fn carry_kept_first_layers(&mut self, plain_factored_step: bool) -> Result<()> {
        let past = self.past_slots.len();
        if !plain_factored_step || !self.sgd.is_plain() {
            self.past_kept.iter_mut().for_each(|k| k.slot = None);
            return Ok(());
        }
        let started = Instant::now();
        let rate = self.sgd.learning_rate();
        let batch_factors = std::mem::take(&mut self.batch_factors);
        let carried = each_past_task(self.past_buffers(), |t| {
            if t.kept.slot == Some(t.slot) {
                let inputs = memory_inputs(t.memory);
                let moved = t.model.step_first_layer(
                    inputs,
                    t.factors,
                    &batch_factors,
                    rate,
                    &mut t.kept.values,
                )?;
                if !moved {
                    t.kept.slot = None;
                }
            }
            Ok(())
        });
        self.batch_factors = batch_factors;
        // Tasks beyond this step's past ones keep nothing valid; after a failure (the step
        // is not taken) none does.
        let valid = if carried.is_ok() { past } else { 0 };
        self.past_kept
            .iter_mut()
            .skip(valid)
            .for_each(|k| k.slot = None);
        self.stats.memory_gradient_time += started.elapsed();
        carried
    }
}

/// Writes the kept pre-activations of `kept` (one entry per past task of the last step).
pub(super) fn save(state: &mut State, kept: &[KeptFirstLayer]) -> Result<()> {
    let slots: Vec<Option<usize>> = kept.iter().map(|k| k.slot).collect();
    state.put("kept_first_layer.slots", &slots)?;
    for (r, k) in kept.iter().enumerate() {
        if k.slot.is_some() {
            state.put_f32(format!("kept_first_layer.{r}"), &k.values);
        }
    }
    Ok(())
}

/// Reads what [`save`] wrote, for a GEM with `memories` memories. States without kept
/// pre-activations (older checkpoints) keep nothing: they are computed anew.
pub(super) fn load(state: &State, memories: usize) -> Result<Vec<KeptFirstLayer>> {
    let slots: Vec<Option<usize>> = match state.values().get("kept_first_layer.slots") {
        Some(_) => state.get("kept_first_layer.slots")?,
        None => Vec::new(),
    };
    let mut kept = Vec::with_capacity(slots.len());
    for (r, slot) in slots.into_iter().enumerate() {
        let values = match slot {
            Some(slot) if slot < memories => {
                state.f32(&format!("kept_first_layer.{r}"), None)?.to_vec()
            }
            Some(slot) => {
                return Err(Error::CheckpointContent {
                    reason: format!(
                        "kept first layer {} names memory {} of {memories}",
                        r + 1,
                        slot + 1
                    ),
                })
            }
            None => Vec::new(),
        };
        kept.push(KeptFirstLayer { slot, values });
    }
    Ok(kept)
}
