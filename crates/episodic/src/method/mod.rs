//! Continual-learning methods: each owns its model, optimiser and memory, and sees the
//! stream one mini-batch at a time through [`Method::observe`].

mod gem;
mod single;

pub use gem::Gem;
pub use single::Single;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::MethodConfig;
use crate::error::{Error, Result};
use crate::model::{argmax_rows, Model, SparseBatch};

/// One mini-batch of one task.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Task index (training order).
    pub task: usize,
    /// Inputs, one row per example.
    pub xs: &'a [f32],
    /// Labels.
    pub ys: &'a [u32],
}

/// Counters a method keeps over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodStats {
    /// Mini-batches observed.
    pub steps: u64,
    /// Steps whose gradient was projected (GEM).
    pub projected_steps: u64,
    /// Time spent on past tasks' memory gradients.
    #[serde(skip)]
    pub memory_gradient_time: Duration,
    /// Time spent on the violation check, the QP and the projection.
    #[serde(skip)]
    pub projection_time: Duration,
}

/// A continual-learning method.
pub trait Method: Send {
    /// The command-line name.
    fn name(&self) -> &'static str;
    /// Learns from one mini-batch; returns its loss before the update.
    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32>;
    /// Predicts the class of each input row for `task`.
    fn predict(&mut self, xs: &[f32], task: usize, out: &mut [u32]) -> Result<()>;
    /// [`Method::predict`] for inputs given by their non-zero entries.
    fn predict_sparse(&mut self, xs: &SparseBatch, task: usize, out: &mut [u32]) -> Result<()> {
        self.predict(&xs.to_dense(), task, out)
    }
    /// The run's counters so far.
    fn stats(&self) -> MethodStats;
}

/// Builds the method `config` describes around `model`, for a run of `tasks` tasks using up
/// to `threads` threads.
pub fn build(
    config: &MethodConfig,
    model: Box<dyn Model>,
    tasks: usize,
    threads: usize,
) -> Result<Box<dyn Method>> {
    config.validate()?;
    Ok(match config {
        MethodConfig::Single(p) => Box::new(Single::new(model, *p)),
        MethodConfig::Gem(p) => Box::new(Gem::new(model, *p, tasks, threads)),
    })
}

/// Checks a batch against the model before anything (a memory, say) is written from it.
pub(crate) fn check_batch(model: &dyn Model, batch: &Batch<'_>) -> Result<()> {
    let expected = batch.ys.len() * model.input_dim();
    if batch.ys.is_empty() || batch.xs.len() != expected {
        return Err(Error::Shape {
            what: "batch inputs (one row of input_dim features per label)",
            expected,
            actual: batch.xs.len(),
        });
    }
    let classes = model.num_classes();
    if let Some(&label) = batch.ys.iter().find(|&&y| y as usize >= classes) {
        return Err(Error::LabelOutOfRange {
            label,
            classes,
            context: Some(format!("a batch of task {}", batch.task)),
        });
    }
    Ok(())
}

/// Plain SGD: `params -= learning_rate * grad`.
pub(crate) fn sgd_step(params: &mut [f32], grad: &[f32], learning_rate: f32) {
    params
        .iter_mut()
        .zip(grad)
        .for_each(|(p, g)| *p -= learning_rate * g);
}

/// Stops a run whose loss diverged, before the bad gradient is applied.
pub(crate) fn check_loss(loss: f32, task: usize, step: u64) -> Result<()> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFiniteLoss {
            loss,
            task,
            step: step as usize,
        })
    }
}

/// Arg-max predictions of `model` for sparse inputs through a reusable logits buffer.
pub(crate) fn predict_argmax_sparse(
    model: &mut dyn Model,
    logits: &mut Vec<f32>,
    xs: &SparseBatch,
    out: &mut [u32],
) -> Result<()> {
    argmax_of(model, logits, out, |model, buf| {
        model.logits_sparse(xs, buf)
    })
}

/// Arg-max predictions of `model` through a reusable logits buffer.
pub(crate) fn predict_argmax(
    model: &mut dyn Model,
    logits: &mut Vec<f32>,
    xs: &[f32],
    out: &mut [u32],
) -> Result<()> {
    argmax_of(model, logits, out, |model, buf| model.logits(xs, buf))
}

/// Runs `logits_into` on a buffer of `out.len()` rows and writes each row's arg-max to `out`.
fn argmax_of(
    model: &mut dyn Model,
    logits: &mut Vec<f32>,
    out: &mut [u32],
    logits_into: impl FnOnce(&mut dyn Model, &mut [f32]) -> Result<()>,
) -> Result<()> {
    let classes = model.num_classes();
    let n = out.len();
    if logits.len() < n * classes {
        logits.resize(n * classes, 0.0);
    }
    logits_into(model, &mut logits[..n * classes])?;
    argmax_rows(&logits[..n * classes], classes, out);
    Ok(())
}
