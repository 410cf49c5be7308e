//! Continual-learning methods: each owns its model(s), optimiser and memory, and sees the
//! stream one mini-batch at a time through [`Method::observe`].
//!
//! Every method follows one protocol: [`Method::observe`] for each mini-batch in stream
//! order, [`Method::end_task`] when a task's last mini-batch has been observed, and
//! [`Method::predict`] (any time) with the task's identity, which on a class-split benchmark
//! selects the task's head.

/// `predict`, `predict_sparse` and `stats` of a method that predicts with one network: the
/// implementing type has fields `model: Box<dyn Model>`, `heads: Heads`, `logits: Vec<f32>`
/// and `stats: MethodStats`.
macro_rules! one_network_predictions {
    () => {
        fn predict(&mut self, xs: &[f32], task: usize, out: &mut [u32]) -> Result<()> {
            let head = self.heads.of(task)?;
            super::predict_argmax(self.model.as_mut(), &mut self.logits, xs, head, out)
        }

        fn predict_sparse(
            &mut self,
            xs: &crate::model::SparseBatch,
            task: usize,
            out: &mut [u32],
        ) -> Result<()> {
            let head = self.heads.of(task)?;
            super::predict_argmax_sparse(self.model.as_mut(), &mut self.logits, xs, head, out)
        }

        fn stats(&self) -> MethodStats {
            self.stats
        }
    };
}

mod agem;
mod er;
mod ewc;
mod gem;
mod icarl;
mod independent;
mod multimodal;
mod single;

pub use agem::Agem;
pub use er::Er;
pub use ewc::Ewc;
pub use gem::{DecisionAudit, Gem};
pub use icarl::Icarl;
pub use independent::Independent;
pub use multimodal::Multimodal;
pub use single::Single;

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{MethodConfig, MethodKind};
use crate::error::{Error, Result};
use crate::memory::RingMemory;
use crate::model::{argmax_in_head, check_labels, Model, ModelConfig, SparseBatch};
use crate::optim::SgdConfig;
use crate::rng::{self, Purpose};
use crate::state::{bounded, State};

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
    /// Steps whose gradient was projected (GEM, A-GEM).
    pub projected_steps: u64,
    /// Steps GEM left without an update because its QP had no trustworthy solution.
    #[serde(default)]
    pub skipped_steps: u64,
    /// Time spent on past tasks' memory gradients.
    #[serde(skip)]
    pub memory_gradient_time: Duration,
    /// Time spent checking whether a step violates a past task's constraint.
    #[serde(skip)]
    pub violation_check_time: Duration,
    /// Time spent forming and solving the QP of projected steps.
    #[serde(skip)]
    pub qp_time: Duration,
    /// Time spent applying the projection to the gradient.
    #[serde(skip)]
    pub projection_time: Duration,
}

/// The classes each task predicts among.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heads {
    /// One head over all `n` classes, shared by every task (MNIST Permutations, Rotations).
    Shared(usize),
    /// Task t predicts among the classes `ranges[t]`; the other outputs are masked
    /// (class-split benchmarks).
    PerTask(Vec<Range<usize>>),
}

impl Heads {
    /// The head of `task`.
    pub fn of(&self, task: usize) -> Result<Range<usize>> {
        match self {
            Self::Shared(n) => Ok(0..*n),
            Self::PerTask(ranges) => ranges.get(task).cloned().ok_or(Error::InvalidOption {
                option: "task",
                reason: format!(
                    "task {} has no head: the method was built for {} tasks",
                    task + 1,
                    ranges.len()
                ),
            }),
        }
    }

    /// Whether tasks have heads of their own.
    pub fn is_per_task(&self) -> bool {
        matches!(self, Self::PerTask(_))
    }
}

/// What a method is built for.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The network (methods with one network per task derive theirs from it).
    pub model: ModelConfig,
    /// Number of tasks in the stream.
    pub tasks: usize,
    /// Each task's head.
    pub heads: Heads,
    /// Threads for matrix products and memory gradients.
    pub threads: usize,
    /// The run's seed: initialisation and the method's own draws come from it.
    pub seed: u64,
    /// Momentum and weight decay of every method's SGD (plain by default).
    pub optimizer: SgdConfig,
}

impl Setup {
    /// A network of `config` initialised from the run's model-initialisation stream.
    fn network(&self) -> Result<Box<dyn Model>> {
        self.model.build(
            self.threads,
            &mut rng::stream(self.seed, Purpose::ModelInit),
        )
    }
}

/// A continual-learning method.
pub trait Method: Send {
    /// The command-line name.
    fn name(&self) -> &'static str;
    /// Learns from one mini-batch; returns its loss before the update.
    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32>;
    /// Called once a task's last mini-batch has been observed (before the evaluation that
    /// follows). Methods that consolidate per task (EWC's Fisher, iCaRL's exemplars) do it
    /// here; a method also consolidates on its own when a batch of a new task arrives first.
    fn end_task(&mut self, _task: usize) -> Result<()> {
        Ok(())
    }
    /// Predicts the class of each input row for `task`.
    fn predict(&mut self, xs: &[f32], task: usize, out: &mut [u32]) -> Result<()>;
    /// [`Method::predict`] for inputs given by their non-zero entries.
    fn predict_sparse(&mut self, xs: &SparseBatch, task: usize, out: &mut [u32]) -> Result<()> {
        self.predict(&xs.to_dense(), task, out)
    }
    /// The run's counters so far.
    fn stats(&self) -> MethodStats;
    /// Writes everything needed to continue the run (parameters, memories, consolidated
    /// statistics, random-generator positions, counters) into `state`.
    fn save(&self, state: &mut State) -> Result<()>;
    /// Restores a state written by [`Method::save`] of the same method and configuration;
    /// a state that does not fit is refused and leaves the method unusable for the run.
    fn load(&mut self, state: &State) -> Result<()>;
}

/// Builds the method `config` describes for `setup`.
pub fn build(config: &MethodConfig, setup: &Setup) -> Result<Box<dyn Method>> {
    config.validate()?;
    if config.kind() == MethodKind::Icarl && !setup.heads.is_per_task() {
        return Err(Error::InvalidOption {
            option: "--method",
            reason: "icarl needs a benchmark whose classes are split by task (mnist-split)".into(),
        });
    }
    let heads = setup.heads.clone();
    let sgd = setup.optimizer;
    sgd.validate()?;
    Ok(match config {
        MethodConfig::Single(p) => {
            Box::new(Single::new(setup.network()?, *p, heads)?.with_optimizer(sgd))
        }
        MethodConfig::Independent(p) => Box::new(Independent::new(setup, *p)?),
        MethodConfig::Multimodal(p) => Box::new(Multimodal::new(setup, *p)?),
        MethodConfig::Ewc(p) => {
            Box::new(Ewc::new(setup.network()?, *p, heads)?.with_optimizer(sgd))
        }
        MethodConfig::Icarl(p) => Box::new(
            Icarl::new(setup.network()?, *p, heads)?
                .with_seed(setup.seed)
                .with_optimizer(sgd),
        ),
        MethodConfig::Agem(p) => Box::new(
            Agem::new(setup.network()?, *p, heads)?
                .with_seed(setup.seed)
                .with_optimizer(sgd),
        ),
        MethodConfig::Er(p) => Box::new(
            Er::new(setup.network()?, *p, heads)?
                .with_tasks(setup.tasks)
                .with_seed(setup.seed)
                .with_optimizer(sgd),
        ),
        MethodConfig::Gem(p) => Box::new(
            Gem::new(setup.network()?, *p, heads)?
                .with_expected_tasks(setup.tasks)
                .with_threads(setup.threads.min(setup.tasks.max(1)))
                .with_optimizer(sgd),
        ),
    })
}

/// Checks a batch against the model and its task's head before anything (a memory, say) is
/// written from it; returns the head.
pub(crate) fn check_batch(
    model: &dyn Model,
    heads: &Heads,
    batch: &Batch<'_>,
) -> Result<Range<usize>> {
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
            context: Some(format!("a batch of task {}", batch.task + 1)),
        });
    }
    let head = heads.of(batch.task)?;
    check_labels(batch.ys, &head, classes)?;
    Ok(head)
}

/// Gradient of the mean loss over rows that may belong to different tasks: rows are grouped
/// by head (one group on a shared-head benchmark), each group's mean-loss gradient is
/// weighted by its share of the rows. `tasks[i]` is row i's task; `scratch` is a gradient-
/// sized buffer. Returns the mean loss.
pub(crate) fn mixed_task_loss_and_grad(
    model: &mut dyn Model,
    heads: &Heads,
    xs: &[f32],
    ys: &[u32],
    tasks: &[usize],
    grad: &mut [f32],
    scratch: &mut MixedScratch,
) -> Result<f32> {
    let n = ys.len();
    if !heads.is_per_task() {
        return model.loss_and_grad(xs, ys, heads.of(0)?, grad);
    }
    let d = model.input_dim();
    scratch.order.clear();
    scratch.order.extend(0..n);
    scratch
        .order
        .sort_by_key(|&i| (heads.of(tasks[i]).map(|h| h.start).unwrap_or(0), i));
    grad.fill(0.0);
    scratch.grad.resize(grad.len(), 0.0);
    let mut loss = 0.0f64;
    let mut start = 0;
    while start < n {
        let head = heads.of(tasks[scratch.order[start]])?;
        let mut end = start + 1;
        while end < n && heads.of(tasks[scratch.order[end]])? == head {
            end += 1;
        }
        scratch.xs.clear();
        scratch.ys.clear();
        for &i in &scratch.order[start..end] {
            scratch.xs.extend_from_slice(&xs[i * d..(i + 1) * d]);
            scratch.ys.push(ys[i]);
        }
        let group_loss = model.loss_and_grad(&scratch.xs, &scratch.ys, head, &mut scratch.grad)?;
        let weight = (end - start) as f32 / n as f32;
        loss += f64::from(group_loss) * f64::from(weight);
        grad.iter_mut()
            .zip(&scratch.grad)
            .for_each(|(g, &s)| *g += weight * s);
        start = end;
    }
    Ok(loss as f32)
}

/// Reusable buffers of [`mixed_task_loss_and_grad`].
#[derive(Debug, Default)]
pub(crate) struct MixedScratch {
    order: Vec<usize>,
    xs: Vec<f32>,
    ys: Vec<u32>,
    grad: Vec<f32>,
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

/// Stops a run whose loss or gradient diverged, before anything is changed by the step.
pub(crate) fn check_step(loss: f32, grad: &[f32], task: usize, step: u64) -> Result<()> {
    check_loss(loss, task, step)?;
    check_gradient(grad, task, step)
}

/// Refuses a gradient with a NaN or infinite entry.
pub(crate) fn check_gradient(grad: &[f32], task: usize, step: u64) -> Result<()> {
    if grad.iter().all(|g| g.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFiniteGradient {
            task,
            step: step as usize,
        })
    }
}

/// Runs one step of a method with a random generator, putting the generator back if the step
/// fails, so that a failed step changes nothing (`rng` picks the generator out of the method).
pub(crate) fn restoring_rng_on_error<M>(
    method: &mut M,
    rng: fn(&mut M) -> &mut rand_chacha::ChaCha8Rng,
    step: impl FnOnce(&mut M) -> Result<f32>,
) -> Result<f32> {
    let saved = rng(method).clone();
    let result = step(method);
    if result.is_err() {
        *rng(method) = saved;
    }
    result
}

/// Saves per-task memories (in the order the tasks were first seen) under `prefix`.
pub(crate) fn save_memories(
    state: &mut State,
    prefix: &str,
    memories: &[(usize, RingMemory)],
) -> Result<()> {
    let tasks: Vec<u64> = memories.iter().map(|(t, _)| *t as u64).collect();
    state.put_u64(format!("{prefix}.tasks"), &tasks);
    for (i, (_, memory)) in memories.iter().enumerate() {
        memory.save(state, &format!("{prefix}.{i}"))?;
    }
    Ok(())
}

/// Loads memories saved by [`save_memories`]: each of `capacity` examples of
/// `model`'s inputs, for fewer than `tasks` tasks.
pub(crate) fn load_memories(
    state: &State,
    prefix: &str,
    capacity: usize,
    model: &dyn Model,
    tasks: usize,
) -> Result<Vec<(usize, RingMemory)>> {
    let saved = state.u64(&format!("{prefix}.tasks"), None)?;
    let mut memories = Vec::with_capacity(saved.len());
    for (i, &task) in saved.iter().enumerate() {
        let task = bounded(&format!("{prefix} task"), task, tasks)?;
        if memories.iter().any(|(t, _)| *t == task) {
            return Err(Error::CheckpointContent {
                reason: format!("{prefix} lists task {task} twice"),
            });
        }
        let mut memory = RingMemory::new(capacity, model.input_dim());
        memory.load(state, &format!("{prefix}.{i}"), model.num_classes())?;
        memories.push((task, memory));
    }
    Ok(memories)
}

/// Arg-max predictions within `head` of `model` for sparse inputs, through a reusable
/// logits buffer.
pub(crate) fn predict_argmax_sparse(
    model: &mut dyn Model,
    logits: &mut Vec<f32>,
    xs: &SparseBatch,
    head: Range<usize>,
    out: &mut [u32],
) -> Result<()> {
    argmax_of(model, logits, out, head, |model, buf| {
        model.logits_sparse(xs, buf)
    })
}

/// Arg-max predictions within `head` of `model`, through a reusable logits buffer.
pub(crate) fn predict_argmax(
    model: &mut dyn Model,
    logits: &mut Vec<f32>,
    xs: &[f32],
    head: Range<usize>,
    out: &mut [u32],
) -> Result<()> {
    argmax_of(model, logits, out, head, |model, buf| model.logits(xs, buf))
}

/// Runs `logits_into` on a buffer of `out.len()` rows and writes each row's arg-max within
/// `head` to `out`.
fn argmax_of(
    model: &mut dyn Model,
    logits: &mut Vec<f32>,
    out: &mut [u32],
    head: Range<usize>,
    logits_into: impl FnOnce(&mut dyn Model, &mut [f32]) -> Result<()>,
) -> Result<()> {
    let classes = model.num_classes();
    let n = out.len();
    if logits.len() < n * classes {
        logits.resize(n * classes, 0.0);
    }
    logits_into(model, &mut logits[..n * classes])?;
    argmax_in_head(&logits[..n * classes], classes, head, out);
    Ok(())
}

/// The dot product of two vectors, accumulated in f64.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

#[cfg(test)]
pub(crate) mod tests;
