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
    check_batch, check_step, mixed_task_loss_and_grad, restoring_rng_on_error, Batch, Heads,
    Method, MethodStats, MixedScratch,
};
use crate::config::ErParams;
use crate::error::Result;
use crate::memory::Reservoir;
use crate::model::Model;
use crate::optim::{Sgd, SgdConfig};
use crate::rng::{self, Purpose};
use crate::state::State;

/// Experience replay.
pub struct Er {
    model: Box<dyn Model>,
    params: ErParams,
    /// Steps the model along the method's update direction.
    sgd: Sgd,
    heads: Heads,
    memory: Reservoir,
    /// The tasks seen so far, when the budget grows with them (`None`: a fixed budget).
    tasks_seen: Option<Vec<usize>>,
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
    /// Experience replay around `model` (`heads`: each task's classes) with checked
    /// hyper-parameters. Without [`Self::with_tasks`] the number of tasks need not be known:
    /// the reservoir gains `memories_per_task` slots whenever a new task appears. Draws come
    /// from seed 0 unless [`Self::with_seed`] says otherwise.
    pub fn new(model: Box<dyn Model>, params: ErParams, heads: Heads) -> Result<Self> {
        crate::config::MethodConfig::Er(params).validate()?;
        Ok(Self {
            sgd: Sgd::plain(params.learning_rate),
            grad: vec![0.0; model.num_params()],
            memory: Reservoir::new(0, model.input_dim()),
            tasks_seen: Some(Vec::new()),
            model,
            params,
            heads,
            rng: rng::stream(0, Purpose::Method),
            joint_xs: Vec::new(),
            joint_ys: Vec::new(),
            joint_tasks: Vec::new(),
            scratch: MixedScratch::default(),
            logits: Vec::new(),
            stats: MethodStats::default(),
        })
    }

    /// The same stepping with the momentum and weight decay of `config` (plain SGD, the
    /// paper's, unless told otherwise).
    pub fn with_optimizer(mut self, config: SgdConfig) -> Self {
        self.sgd = Sgd::new(self.params.learning_rate, config);
        self
    }

    /// The same with a reservoir fixed at `memories_per_task * tasks` examples from the
    /// start (the protocol of a run whose number of tasks is known).
    pub fn with_tasks(mut self, tasks: usize) -> Self {
        let capacity = self.params.memories_per_task.saturating_mul(tasks.max(1));
        self.memory = Reservoir::new(capacity, self.model.input_dim());
        self.tasks_seen = None;
        self
    }

    /// The same with its draws (replay samples, reservoir replacements) from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = rng::stream(seed, Purpose::Method);
        self
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
        self.sgd.step(self.model.params_mut(), &self.grad);
        if let Some(seen) = &mut self.tasks_seen {
            if !seen.contains(&batch.task) {
                seen.push(batch.task);
                self.memory.grow(self.params.memories_per_task);
            }
        }
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
        self.sgd.save(state, "optimizer.velocity");
        self.memory.save(state, "memory")?;
        if let Some(seen) = &self.tasks_seen {
            let seen: Vec<u64> = seen.iter().map(|&t| t as u64).collect();
            state.put_u64("tasks_seen", &seen);
        }
        state.put_rng("rng", &self.rng)?;
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_model("model", self.model.as_mut())?;
        let n = self.model.num_params();
        self.sgd.load(state, "optimizer.velocity", n)?;
        if self.tasks_seen.is_some() {
            // A growing budget: as many slots as tasks seen, each seen once.
            let seen = state.u64("tasks_seen", None)?;
            let mut tasks: Vec<usize> = Vec::with_capacity(seen.len());
            for &t in seen {
                let t = crate::state::bounded("tasks_seen", t, usize::MAX)?;
                if tasks.contains(&t) {
                    return Err(crate::error::Error::CheckpointContent {
                        reason: format!("tasks_seen lists task {t} twice"),
                    });
                }
                tasks.push(t);
            }
            let capacity = self.params.memories_per_task.saturating_mul(tasks.len());
            self.memory = Reservoir::new(capacity, self.model.input_dim());
            self.tasks_seen = Some(tasks);
        }
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
        let mut er = Er::new(setup.network().unwrap(), params, heads)
            .unwrap()
            .with_tasks(3);
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

    #[test]
    fn without_a_task_count_the_budget_grows_with_the_tasks_and_survives_a_checkpoint() {
        let heads = Heads::Shared(3);
        let setup = setup(3, heads.clone());
        let params = ErParams {
            learning_rate: 0.1,
            memories_per_task: 4,
        };
        let mut er = Er::new(setup.network().unwrap(), params, heads.clone()).unwrap();
        assert_eq!(er.memory().capacity(), 0);
        for (task, expected) in [(0, 4), (0, 4), (1, 8), (0, 8), (2, 12)] {
            let (xs, ys) = random_batch_in(6, 0..3, 5, task as u64 * 7 + expected as u64);
            er.observe(&Batch {
                task,
                xs: &xs,
                ys: &ys,
            })
            .unwrap();
            assert_eq!(
                er.memory().capacity(),
                expected,
                "after a batch of task {task}"
            );
        }
        assert_eq!(er.memory().len(), 12);
        let mut state = State::default();
        er.save(&mut state).unwrap();
        let mut restored = Er::new(setup.network().unwrap(), params, heads).unwrap();
        restored.load(&state).unwrap();
        assert_eq!(restored.memory().capacity(), 12);
        assert_eq!(restored.memory().ys(), er.memory().ys());
        assert!(Er::new(
            setup.network().unwrap(),
            ErParams {
                memories_per_task: 0,
                ..params
            },
            Heads::Shared(3)
        )
        .is_err());
    }
}
