//! `er`: experience replay with a reservoir-sampled memory.
//!
//! Chaudhry et al., "On Tiny Episodic Memories in Continual Learning", 2019
//! (arXiv:1902.10486), ER-Reservoir. One memory for the whole stream holds a uniform sample
//! of every example seen so far (reservoir sampling, [`crate::memory::Reservoir`]). Each
//! step draws a replay batch of the incoming batch's size uniformly (without replacement)
//! from the memory, takes one SGD step on the mean loss over the batch and the replay batch
//! together, then offers the batch to the reservoir.
//!
//! Hyper-parameters (ours, for a like-for-like comparison with GEM): learning rate 0.1 and
//! the same total memory budget as GEM, `memories_per_task` (256) times the number of
//! tasks.
//!
//! On a class-split benchmark each replayed example's loss uses its own task's head.

use rand::seq::index;
use rand_chacha::ChaCha8Rng;

use super::{
    check_batch, check_step, mixed_task_loss_and_grad, restoring_rng_on_error, sgd_step, Batch,
    Heads, Method, MethodStats, MixedScratch,
};
use crate::config::ErParams;
use crate::error::Result;
use crate::memory::Reservoir;
use crate::model::Model;
use crate::rng::{self, Purpose};
use crate::state::State;

/// Experience replay.
pub struct Er {
    model: Box<dyn Model>,
    params: ErParams,
    heads: Heads,
    memory: Reservoir,
    rng: ChaCha8Rng,
    grad: Vec<f32>,
    /// The batch followed by its replay batch.
    joint_xs: Vec<f32>,
    joint_ys: Vec<u32>,
    joint_tasks: Vec<usize>,
    scratch: MixedScratch,
    logits: Vec<f32>,
    stats: MethodStats,
}

impl Er {
    /// Experience replay around `model` with a reservoir of `memories_per_task * tasks`
    /// examples; `heads` gives each task's classes; draws come from the run's `seed`.
    pub fn new(
        model: Box<dyn Model>,
        params: ErParams,
        heads: Heads,
        tasks: usize,
        seed: u64,
    ) -> Self {
        let capacity = params.memories_per_task * tasks.max(1);
        Self {
            grad: vec![0.0; model.num_params()],
            memory: Reservoir::new(capacity, model.input_dim()),
            model,
            params,
            heads,
            rng: rng::stream(seed, Purpose::Method),
            joint_xs: Vec::new(),
            joint_ys: Vec::new(),
            joint_tasks: Vec::new(),
            scratch: MixedScratch::default(),
            logits: Vec::new(),
            stats: MethodStats::default(),
        }
    }

    /// The replay memory.
    pub fn memory(&self) -> &Reservoir {
        &self.memory
    }
}

impl Er {
    /// One step; on error nothing has changed but the generator, which the caller restores.
    fn step(&mut self, batch: &Batch<'_>) -> Result<f32> {
        check_batch(self.model.as_ref(), &self.heads, batch)?;
        let n = batch.ys.len();
        self.joint_xs.clear();
        self.joint_xs.extend_from_slice(batch.xs);
        self.joint_ys.clear();
        self.joint_ys.extend_from_slice(batch.ys);
        self.joint_tasks.clear();
        self.joint_tasks.resize(n, batch.task);
        let replay = n.min(self.memory.len());
        if replay > 0 {
            for slot in index::sample(&mut self.rng, self.memory.len(), replay) {
                self.joint_xs.extend_from_slice(self.memory.x(slot));
                self.joint_ys.push(self.memory.ys()[slot]);
                self.joint_tasks.push(self.memory.tasks()[slot]);
            }
        }
        let loss = mixed_task_loss_and_grad(
            self.model.as_mut(),
            &self.heads,
            &self.joint_xs,
            &self.joint_ys,
            &self.joint_tasks,
            &mut self.grad,
            &mut self.scratch,
        )?;
        check_step(loss, &self.grad, batch.task, self.stats.steps)?;
        sgd_step(
            self.model.params_mut(),
            &self.grad,
            self.params.learning_rate as f32,
        );
        self.memory
            .offer_batch(batch.xs, batch.ys, batch.task, &mut self.rng);
        self.stats.steps += 1;
        Ok(loss)
    }
}

impl Method for Er {
    fn name(&self) -> &'static str {
        "er"
    }

    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32> {
        restoring_rng_on_error(self, |m| &mut m.rng, |m| m.step(batch))
    }

    one_network_predictions!();

    fn save(&self, state: &mut State) -> Result<()> {
        state.put_model("model", self.model.as_ref());
        self.memory.save(state, "memory")?;
        state.put_rng("rng", &self.rng)?;
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_model("model", self.model.as_mut())?;
        // Task indices only label the examples; any number of tasks is allowed.
        self.memory
            .load(state, "memory", self.model.num_classes(), usize::MAX)?;
        self.rng = state.rng("rng")?;
        self.stats = state.get("stats")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::tests::{random_batch_in, setup};

    #[test]
    fn memory_stays_within_budget_and_replays_every_task() {
        let heads = Heads::PerTask(vec![0..1, 1..3, 0..3]);
        let setup = setup(3, heads.clone());
        let params = ErParams {
            learning_rate: 0.1,
            memories_per_task: 4,
        };
        let mut er = Er::new(setup.network().unwrap(), params, heads, 3, 0);
        let ranges = [0..1, 1..3, 0..3];
        for (task, head) in ranges.iter().enumerate() {
            for step in 0..10 {
                let (xs, ys) = random_batch_in(6, head.clone(), 5, (task * 50 + step) as u64);
                er.observe(&Batch {
                    task,
                    xs: &xs,
                    ys: &ys,
                })
                .unwrap();
                assert!(er.memory().len() <= 12);
                if er.stats.steps > 1 {
                    assert_eq!(er.joint_ys.len(), 10, "batch plus an equal-size replay");
                }
                // Replayed labels lie in their own task's head.
                for (&y, &t) in er.joint_ys.iter().zip(&er.joint_tasks) {
                    assert!(ranges[t].contains(&(y as usize)));
                }
            }
        }
        assert_eq!(er.memory().len(), 12);
        assert_eq!(er.memory().seen(), 150);
        let mut tasks = er.memory().tasks().to_vec();
        tasks.sort_unstable();
        tasks.dedup();
        assert!(
            tasks.len() > 1,
            "the reservoir holds more than the last task"
        );
    }
}
