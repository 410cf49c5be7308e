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
pub(crate) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A small setup: a 6-8-4-3 network, `tasks` tasks with `heads`, one thread, seed 0.
    pub(crate) fn setup(tasks: usize, heads: Heads) -> Setup {
        Setup {
            model: ModelConfig::Mlp(crate::model::MlpConfig {
                input: 6,
                hidden: vec![8, 4],
                classes: 3,
            }),
            tasks,
            heads,
            threads: 1,
            seed: 0,
            optimizer: SgdConfig::default(),
        }
    }

    /// `n` random rows of `d` features with labels in `0..classes`.
    pub(crate) fn random_batch(
        d: usize,
        classes: usize,
        n: usize,
        seed: u64,
    ) -> (Vec<f32>, Vec<u32>) {
        random_batch_in(d, 0..classes, n, seed)
    }

    /// `n` random rows of `d` features with labels in `head`.
    pub(crate) fn random_batch_in(
        d: usize,
        head: Range<usize>,
        n: usize,
        seed: u64,
    ) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let xs = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let ys = (0..n)
            .map(|_| rng.random_range(head.start as u32..head.end as u32))
            .collect();
        (xs, ys)
    }

    #[test]
    fn heads_name_each_task_classes() {
        assert_eq!(Heads::Shared(10).of(17).unwrap(), 0..10);
        let heads = Heads::PerTask(vec![0..2, 2..4]);
        assert_eq!(heads.of(1).unwrap(), 2..4);
        assert!(heads.of(2).is_err());
    }

    #[test]
    fn mixed_task_gradient_weights_each_head_by_its_rows() {
        let setup = setup(2, Heads::PerTask(vec![0..2, 1..3]));
        let mut model = setup.network().unwrap();
        let (xs, _) = random_batch(6, 3, 5, 3);
        let ys = [0, 2, 1, 1, 2];
        let tasks = [0, 1, 0, 1, 1];
        let p = model.num_params();
        let mut grad = vec![0.0; p];
        let loss = mixed_task_loss_and_grad(
            model.as_mut(),
            &setup.heads,
            &xs,
            &ys,
            &tasks,
            &mut grad,
            &mut MixedScratch::default(),
        )
        .unwrap();
        let rows = |idx: &[usize]| -> Vec<f32> {
            idx.iter()
                .flat_map(|&i| xs[i * 6..(i + 1) * 6].to_vec())
                .collect()
        };
        let (mut g0, mut g1) = (vec![0.0; p], vec![0.0; p]);
        let l0 = model
            .loss_and_grad(&rows(&[0, 2]), &[0, 1], 0..2, &mut g0)
            .unwrap();
        let l1 = model
            .loss_and_grad(&rows(&[1, 3, 4]), &[2, 1, 2], 1..3, &mut g1)
            .unwrap();
        assert!((loss - (0.4 * l0 + 0.6 * l1)).abs() < 1e-6);
        for i in 0..p {
            assert!((grad[i] - (0.4 * g0[i] + 0.6 * g1[i])).abs() < 1e-6);
        }
    }

    /// Every method with small hyper-parameters, on 3 tasks with a head each.
    fn every_method() -> Vec<MethodConfig> {
        use crate::config::*;
        vec![
            MethodConfig::Single(SingleParams { learning_rate: 0.1 }),
            MethodConfig::Independent(IndependentParams {
                learning_rate: 0.1,
                finetune: true,
            }),
            MethodConfig::Multimodal(MultimodalParams { learning_rate: 0.1 }),
            MethodConfig::Ewc(EwcParams {
                learning_rate: 0.1,
                memories_per_task: 6,
                strength: 2.0,
            }),
            MethodConfig::Icarl(IcarlParams {
                learning_rate: 0.1,
                memory_size: 9,
                strength: 1.0,
            }),
            MethodConfig::Agem(AgemParams {
                learning_rate: 0.1,
                memories_per_task: 7,
                sample_size: 5,
            }),
            MethodConfig::Er(ErParams {
                learning_rate: 0.1,
                memories_per_task: 4,
            }),
            MethodConfig::Gem(GemParams {
                learning_rate: 0.1,
                memories_per_task: 7,
                margin: 0.5,
                eps: 1e-3,
            }),
        ]
    }

    const HEADS: [Range<usize>; 3] = [0..1, 1..2, 2..3];

    fn train(method: &mut dyn Method, tasks: Range<usize>, seed: u64) -> Vec<f32> {
        let mut losses = Vec::new();
        for task in tasks {
            for step in 0..4 {
                let (xs, ys) =
                    random_batch_in(6, HEADS[task].clone(), 3, seed + (task * 10 + step) as u64);
                losses.push(
                    method
                        .observe(&Batch {
                            task,
                            xs: &xs,
                            ys: &ys,
                        })
                        .unwrap(),
                );
            }
            method.end_task(task).unwrap();
        }
        losses
    }

    #[test]
    fn every_method_continues_identically_from_its_saved_state() {
        let momentum = SgdConfig {
            momentum: 0.9,
            weight_decay: 1e-3,
        };
        for (config, optimizer) in every_method()
            .into_iter()
            .flat_map(|c| [(c, SgdConfig::default()), (c, momentum)])
        {
            let setup = Setup {
                optimizer,
                ..setup(3, Heads::PerTask(HEADS.to_vec()))
            };
            let mut original = build(&config, &setup).unwrap();
            train(original.as_mut(), 0..2, 0);
            // Mid-task too: one batch of task 2 before saving.
            let (xs, ys) = random_batch_in(6, 2..3, 3, 99);
            original
                .observe(&Batch {
                    task: 2,
                    xs: &xs,
                    ys: &ys,
                })
                .unwrap();
            let mut state = State::default();
            original.save(&mut state).unwrap();

            let mut resumed = build(&config, &setup).unwrap();
            resumed.load(&state).unwrap();
            let counters = |s: MethodStats| (s.steps, s.projected_steps, s.skipped_steps);
            assert_eq!(
                counters(resumed.stats()),
                counters(original.stats()),
                "{}",
                config.kind().id()
            );
            let a = train(original.as_mut(), 2..3, 7);
            let b = train(resumed.as_mut(), 2..3, 7);
            assert_eq!(a, b, "{}: losses differ after resuming", config.kind().id());
            let (mut sa, mut sb) = (State::default(), State::default());
            original.save(&mut sa).unwrap();
            resumed.save(&mut sb).unwrap();
            assert!(
                sa == sb,
                "{}: states differ after resuming",
                config.kind().id()
            );
            let (xs, _) = random_batch(6, 3, 5, 5);
            let (mut pa, mut pb) = ([0; 5], [0; 5]);
            for task in 0..3 {
                original.predict(&xs, task, &mut pa).unwrap();
                resumed.predict(&xs, task, &mut pb).unwrap();
                assert_eq!(pa, pb, "{}", config.kind().id());
            }
        }
    }

    #[test]
    fn every_method_steps_with_the_optimiser_it_is_given() {
        let momentum = SgdConfig {
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let decay = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.5,
        };
        // Heads of every class, so that losses and gradients are not zero.
        for config in every_method() {
            let id = config.kind().id();
            let run = |optimizer: SgdConfig| {
                let setup = Setup {
                    optimizer,
                    ..setup(3, Heads::PerTask(vec![0..3; 3]))
                };
                let mut method = build(&config, &setup).unwrap();
                let losses = train(method.as_mut(), 0..2, 0);
                let mut state = State::default();
                method.save(&mut state).unwrap();
                (losses, state)
            };
            let (plain, plain_state) = run(SgdConfig::default());
            let (with_momentum, momentum_state) = run(momentum);
            let (with_decay, _) = run(decay);
            assert_ne!(plain, with_momentum, "{id}: momentum changed nothing");
            assert_ne!(plain, with_decay, "{id}: weight decay changed nothing");
            let velocities = |state: &State| {
                state
                    .tensors()
                    .keys()
                    .filter(|k| k.starts_with("optimizer."))
                    .count()
            };
            assert_eq!(velocities(&plain_state), 0, "{id}");
            assert!(velocities(&momentum_state) > 0, "{id}: no velocity saved");
            // A state without the velocity does not fit a method with momentum.
            let setup = Setup {
                optimizer: momentum,
                ..setup(3, Heads::PerTask(vec![0..3; 3]))
            };
            let mut method = build(&config, &setup).unwrap();
            assert!(method.load(&plain_state).is_err(), "{id}");
        }
    }

    #[test]
    fn an_impossible_optimiser_is_refused_by_every_method() {
        for config in every_method() {
            let setup = Setup {
                optimizer: SgdConfig {
                    momentum: 1.0,
                    weight_decay: 0.0,
                },
                ..setup(3, Heads::PerTask(HEADS.to_vec()))
            };
            assert!(
                matches!(
                    build(&config, &setup),
                    Err(Error::InvalidOption {
                        option: "--momentum",
                        ..
                    })
                ),
                "{}",
                config.kind().id()
            );
        }
    }

    #[test]
    fn a_state_that_does_not_fit_is_refused_without_panicking() {
        let setup = setup(3, Heads::PerTask(HEADS.to_vec()));
        let configs = every_method();
        let mut states = Vec::new();
        for config in &configs {
            let mut method = build(config, &setup).unwrap();
            train(method.as_mut(), 0..1, 3);
            let mut state = State::default();
            method.save(&mut state).unwrap();
            states.push(state);
        }
        // Another size of network.
        let mut wider = setup.clone();
        wider.model = ModelConfig::Mlp(crate::model::MlpConfig {
            input: 6,
            hidden: vec![9, 4],
            classes: 3,
        });
        for (config, state) in configs.iter().zip(&states) {
            let mut method = build(config, &wider).unwrap();
            assert!(
                method.load(state).is_err(),
                "{} accepted another network",
                config.kind().id()
            );
            // An empty state.
            assert!(method.load(&State::default()).is_err());
        }
        // A NaN parameter.
        let mut poisoned = states[0].clone();
        let mut params = poisoned.f32("model", None).unwrap().to_vec();
        params[3] = f32::NAN;
        poisoned.put_f32("model", &params);
        let mut single = build(&configs[0], &setup).unwrap();
        assert!(single.load(&poisoned).is_err());
    }

    #[test]
    fn out_of_range_values_in_a_state_are_refused() {
        let setup = setup(3, Heads::PerTask(HEADS.to_vec()));
        let configs = every_method();
        let saved = |config: &MethodConfig| {
            let mut method = build(config, &setup).unwrap();
            train(method.as_mut(), 0..2, 4);
            let mut state = State::default();
            method.save(&mut state).unwrap();
            state
        };
        let refuses = |config: &MethodConfig, state: &State, what: &str| {
            let mut method = build(config, &setup).unwrap();
            let err = method.load(state).expect_err(what);
            assert!(
                matches!(err, Error::CheckpointContent { .. }),
                "{what}: {err}"
            );
        };
        // GEM (index 7): a label beyond the classes, a task index, a cursor, a memory size.
        let gem = &configs[7];
        let mut state = saved(gem);
        state.put_u32("memory.0.ys", &[0, 0, 0, 0, 0, 0, 9]);
        refuses(gem, &state, "label 9 of 3 classes");
        let mut state = saved(gem);
        state.put_u64("memory.tasks", &[0, u64::MAX]);
        refuses(gem, &state, "task index u64::MAX");
        let mut state = saved(gem);
        state.put("memory.0.cursor", &99u64).unwrap();
        refuses(gem, &state, "cursor beyond the capacity");
        let mut state = saved(gem);
        state.put_u32("memory.0.ys", &[0; 8]);
        state.put_f32("memory.0.xs", &[0.0; 8 * 6]);
        refuses(gem, &state, "more memories than the capacity");
        // ER (index 6): a reservoir that held more than it saw.
        let er = &configs[6];
        let mut state = saved(er);
        state.put("memory.seen", &1u64).unwrap();
        refuses(er, &state, "seen below the size");
        // Independent (index 1): a last task beyond the networks.
        let independent = &configs[1];
        let mut state = saved(independent);
        state.put("last_task", &Some(7u64)).unwrap();
        refuses(independent, &state, "last task 7 of 3");
        // iCaRL (index 4): a consolidated task without a head.
        let icarl = &configs[4];
        let mut state = saved(icarl);
        state.put("consolidated", &vec![0usize, 5]).unwrap();
        let mut method = build(icarl, &setup).unwrap();
        assert!(method.load(&state).is_err(), "task 5 has no head");
        // A generator position that is not a number.
        let agem = &configs[5];
        let mut state = saved(agem);
        state
            .put(
                "rng",
                &serde_json::json!({"seed": vec![0u8; 32], "stream": 4, "word_pos": "x"}),
            )
            .unwrap();
        refuses(agem, &state, "bad generator position");
    }
}
