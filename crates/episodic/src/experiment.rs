//! The one training and evaluation loop, shared by the command line, tests and benchmarks.
//!
//! Evaluation schedule (gem-reference.md section 6): every task's test set is scored once
//! before any training (the baseline row b) and again each time a task ends; row i of the
//! accuracy matrix R is the evaluation after task i. With `eval_every = Some(n)`, every
//! n-th mini-batch is also followed by an evaluation (for learning curves such as the
//! paper's Figure 2); those do not enter R.

use std::time::{Duration, Instant};

use std::path::PathBuf;

use crate::checkpoint::{Checkpoint, CheckpointDir, Progress as CheckpointProgress};
use crate::config::ExperimentConfig;
use crate::cost::{available_memory, Cost};
use crate::data::{Benchmark, BenchmarkSpec, Dataset, Stream, MAX_STREAM_EXAMPLES};
use crate::error::{Error, Result};
use crate::method::{self, Batch, Heads, Method, Setup};
use crate::metrics;
use crate::model::SparseBatch;
use crate::results::{peak_rss_bytes, Evaluation, RunResults, Timing};
use crate::state::State;

/// Test examples scored per forward pass during evaluation.
const EVAL_CHUNK: usize = 1000;

/// What the loop is doing, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// The tasks are drawn (before the initial evaluation): their number and sizes.
    Planned {
        /// Number of tasks.
        tasks: usize,
        /// Fewest and most training examples of a task (per epoch).
        train_examples: (usize, usize),
        /// Fewest and most test examples of a task.
        test_examples: (usize, usize),
        /// Mini-batches in the whole stream.
        total_steps: u64,
        /// Examples passed on episodic memories over the run.
        memory_examples: u64,
        /// Test images scored over the run.
        evaluation_images: u64,
        /// The run's work in forward passes of one example (see [`Cost`]), which
        /// [`Progress::Step`]'s `work` counts towards.
        total_work: u64,
        /// A rough estimate of the run's wall-clock seconds.
        estimated_seconds: f64,
        /// The memory the run will come to hold, in bytes (an estimate).
        bytes: u64,
    },
    /// Training is about to start.
    Started {
        /// Mini-batches in the whole stream.
        total_steps: u64,
        /// Number of tasks.
        tasks: usize,
    },
    /// A mini-batch was trained.
    Step {
        /// Mini-batches trained so far.
        step: u64,
        /// Its task.
        task: usize,
        /// Work done so far (steps weighted by their cost, and evaluations), out of
        /// `Planned`'s `total_work`: the measure an ETA should use, since GEM's steps get
        /// dearer with every task.
        work: u64,
    },
    /// Every task's test set is being scored.
    Evaluating {
        /// The task just finished, or `None` for the baseline or an intermediate evaluation.
        after_task: Option<usize>,
    },
    /// A checkpoint was written after this many mini-batches.
    Checkpointed {
        /// Mini-batches trained.
        step: u64,
    },
}

/// When and where a run saves checkpoints.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    /// The checkpoint directory.
    pub dir: CheckpointDir,
    /// Also save every this many mini-batches (task ends are always saved).
    pub every: Option<u64>,
    /// Where the run writes its results, recorded in every checkpoint so that a resumed
    /// run writes there too.
    pub results_file: Option<PathBuf>,
}

/// Runs `config` on `data` (the data set its `data` source names), reporting progress to
/// `on_progress`.
pub fn run(
    config: &ExperimentConfig,
    data: Dataset,
    on_progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<RunResults> {
    run_resumable(config, data, on_progress, None, None)
}

/// [`run`] that saves checkpoints as `checkpointing` says (after the initial evaluation, at
/// every task end, every `every` mini-batches, and before stopping on a failed step), and
/// that continues from `resume` (a checkpoint of this `config`) when given. A resumed run
/// gives the same results as an uninterrupted one, apart from timings.
pub fn run_resumable(
    config: &ExperimentConfig,
    data: Dataset,
    on_progress: &mut (dyn FnMut(Progress) + Send),
    checkpointing: Option<&Checkpointing>,
    resume: Option<Checkpoint>,
) -> Result<RunResults> {
    config.validate()?;
    if let Some(checkpoint) = &resume {
        // The thread count does not change results: a run may continue on other cores.
        if !checkpoint.progress.config.same_experiment(config) {
            return Err(Error::CheckpointContent {
                reason: "it was written by a run with another configuration".into(),
            });
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|e| Error::InvalidOption {
            option: "--threads",
            reason: e.to_string(),
        })?;
    pool.install(|| run_in_pool(config, data, on_progress, checkpointing, resume))
}

/// What a run has once its configuration is checked against the data: the tasks, the
/// stream, its cost, and the method, built.
struct Prepared {
    bench: Benchmark,
    stream: Stream,
    cost: Cost,
    method: Box<dyn Method>,
}

/// Checks everything a run of `config` on `data` checks before it trains (the options, the
/// tasks the scenario makes of the data, the network's shape, the stream's length, the
/// memory the run will hold against what the machine has, the method's setup), without
/// training; returns the run's cost. A suite calls it for every run before running any.
pub fn check(config: &ExperimentConfig, data: Dataset) -> Result<Cost> {
    config.validate()?;
    Ok(prepare(config, data)?.cost)
}

fn prepare(config: &ExperimentConfig, data: Dataset) -> Result<Prepared> {
    let spec = BenchmarkSpec {
        scenario: config.scenario,
        tasks: config.tasks,
        samples_per_task: config.samples_per_task,
        shuffle_tasks: config.shuffle_tasks,
        seed: config.seed,
    };
    let bench = Benchmark::new(data, &spec)?;
    config.model.check_fits(
        bench.data().name(),
        bench.input_dim(),
        &bench.data().shape().to_string(),
        bench.num_classes(),
    )?;
    let examples: Vec<&[u32]> = bench
        .tasks()
        .iter()
        .map(|t| t.train_indices.as_slice())
        .collect();
    let positions = examples.iter().try_fold(0usize, |total, e| {
        total.checked_add(e.len().checked_mul(config.epochs)?)
    });
    if positions.is_none_or(|n| n > MAX_STREAM_EXAMPLES) {
        return Err(Error::InvalidOption {
            option: "--epochs",
            reason: format!(
                "{} epochs over {} tasks of up to {} examples are more than the {MAX_STREAM_EXAMPLES} \
                 examples a run may stream",
                config.epochs,
                examples.len(),
                examples.iter().map(|e| e.len()).max().unwrap_or(0)
            ),
        });
    }
    let stream = Stream::new(&examples, config.epochs, config.batch_size, config.seed);
    let cost = Cost::estimate(config, &bench, stream.batches());
    if let Some(available) = available_memory() {
        cost.check_fits(available)?;
    }
    let heads = if bench.scenario().per_task_heads() {
        Heads::PerTask(bench.heads())
    } else {
        Heads::Shared(bench.num_classes())
    };
    let setup = Setup {
        model: config.model.clone(),
        tasks: config.tasks,
        heads,
        threads: config.threads,
        seed: config.seed,
        optimizer: config.optimizer,
    };
    let method = method::build(&config.method, &setup)?;
    Ok(Prepared {
        bench,
        stream,
        cost,
        method,
    })
}

fn run_in_pool(
    config: &ExperimentConfig,
    data: Dataset,
    on_progress: &mut (dyn FnMut(Progress) + Send),
    checkpointing: Option<&Checkpointing>,
    resume: Option<Checkpoint>,
) -> Result<RunResults> {
    let started = Instant::now();
    let Prepared {
        bench,
        stream,
        cost,
        mut method,
    } = prepare(config, data)?;
    let span = |sizes: &mut dyn Iterator<Item = usize>| {
        sizes.fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)))
    };
    on_progress(Progress::Planned {
        tasks: bench.tasks().len(),
        train_examples: span(&mut bench.tasks().iter().map(|t| t.train_indices.len())),
        test_examples: span(&mut (0..bench.tasks().len()).map(|t| bench.test_len(t))),
        total_steps: stream.batches().len() as u64,
        memory_examples: cost.memory_examples,
        evaluation_images: cost.evaluation_images,
        total_work: cost.total_work,
        estimated_seconds: cost.seconds(&config.model, config.threads),
        bytes: cost.bytes(),
    });
    let mut evaluator = Evaluator::new(&bench);
    let mut train_time = Duration::ZERO;
    // Wall-clock time of the sessions before a resumed one.
    let mut earlier = Duration::ZERO;
    let mut evaluations = Vec::with_capacity(config.tasks + 1);
    let start_step = match resume {
        Some(checkpoint) => {
            method.load(&checkpoint.state)?;
            let progress = checkpoint.progress;
            if progress.step > stream.batches().len() as u64 || progress.evaluations.is_empty() {
                return Err(Error::CheckpointContent {
                    reason: format!(
                        "step {} with {} evaluations does not fit a stream of {} mini-batches",
                        progress.step,
                        progress.evaluations.len(),
                        stream.batches().len()
                    ),
                });
            }
            evaluations = progress.evaluations;
            earlier = Duration::from_secs_f64(progress.total_seconds.max(0.0));
            train_time = Duration::from_secs_f64(progress.train_seconds.max(0.0));
            evaluator.time = Duration::from_secs_f64(progress.evaluation_seconds.max(0.0));
            progress.step
        }
        None => {
            on_progress(Progress::Evaluating { after_task: None });
            evaluations.push(evaluator.evaluate(method.as_mut(), 0, None)?);
            0
        }
    };
    let save = |method: &dyn Method,
                step: u64,
                evaluations: &[Evaluation],
                train_time: Duration,
                evaluation_time: Duration|
     -> Result<Option<PathBuf>> {
        let Some(checkpointing) = checkpointing else {
            return Ok(None);
        };
        let mut state = State::default();
        method.save(&mut state)?;
        let checkpoint = Checkpoint {
            progress: CheckpointProgress {
                config: config.clone(),
                step,
                evaluations: evaluations.to_vec(),
                train_seconds: train_time.as_secs_f64(),
                evaluation_seconds: evaluation_time.as_secs_f64(),
                total_seconds: (earlier + started.elapsed()).as_secs_f64(),
                results_file: checkpointing.results_file.clone(),
            },
            state,
        };
        checkpointing.dir.save(&checkpoint).map(Some)
    };
    if start_step == 0
        && save(method.as_ref(), 0, &evaluations, train_time, evaluator.time)?.is_some()
    {
        on_progress(Progress::Checkpointed { step: 0 });
    }

    let total_steps = stream.batches().len() as u64;
    on_progress(Progress::Started {
        total_steps,
        tasks: config.tasks,
    });
    let d = bench.input_dim();
    // A batch never holds more than a task's examples, whatever --batch-size says.
    let longest = stream
        .batches()
        .iter()
        .map(|b| b.range.len())
        .max()
        .unwrap_or(0);
    let mut xs = vec![0.0f32; longest * d];
    let mut ys = vec![0u32; longest];
    let batches = stream.batches();
    let mut work = batches[..start_step as usize]
        .iter()
        .fold(0u64, |acc, b| acc.saturating_add(cost.step_work[b.task]))
        .saturating_add(
            cost.evaluation_work
                .saturating_mul(evaluations.len() as u64),
        );
    for (i, span) in batches.iter().enumerate().skip(start_step as usize) {
        let n = span.range.len();
        bench.fill_train(
            span.task,
            stream.examples(span),
            &mut xs[..n * d],
            &mut ys[..n],
        );
        let t0 = Instant::now();
        let observed = method.observe(&Batch {
            task: span.task,
            xs: &xs[..n * d],
            ys: &ys[..n],
        });
        train_time += t0.elapsed();
        if let Err(err) = observed {
            // A failed step changes nothing: the method is in its state after the previous
            // step, which is saved before stopping.
            let step = i as u64;
            return Err(
                match save(
                    method.as_ref(),
                    step,
                    &evaluations,
                    train_time,
                    evaluator.time,
                ) {
                    Ok(Some(checkpoint)) => Error::Stopped {
                        checkpoint,
                        source: Box::new(err),
                    },
                    _ => err,
                },
            );
        }
        let step = i as u64 + 1;
        work = work.saturating_add(cost.step_work[span.task]);
        on_progress(Progress::Step {
            step,
            task: span.task,
            work,
        });
        let task_ends = batches.get(i + 1).is_none_or(|next| next.task != span.task);
        if task_ends {
            let t0 = Instant::now();
            method.end_task(span.task)?;
            train_time += t0.elapsed();
            on_progress(Progress::Evaluating {
                after_task: Some(span.task),
            });
            evaluations.push(evaluator.evaluate(method.as_mut(), step, Some(span.task))?);
            work = work.saturating_add(cost.evaluation_work);
        } else if config.eval_every.is_some_and(|n| step % n == 0) {
            on_progress(Progress::Evaluating { after_task: None });
            evaluations.push(evaluator.evaluate(method.as_mut(), step, None)?);
            work = work.saturating_add(cost.evaluation_work);
        }
        let periodic = checkpointing
            .and_then(|c| c.every)
            .is_some_and(|n| step % n == 0);
        if (task_ends || periodic)
            && save(
                method.as_ref(),
                step,
                &evaluations,
                train_time,
                evaluator.time,
            )?
            .is_some()
        {
            on_progress(Progress::Checkpointed { step });
        }
    }

    let baseline = evaluations[0].accuracies.clone();
    let accuracy_matrix: Vec<Vec<f64>> = evaluations
        .iter()
        .filter(|e| e.after_task.is_some())
        .map(|e| e.accuracies.clone())
        .collect();
    let paper = metrics::paper(&baseline, &accuracy_matrix);
    let stats = method.stats();
    Ok(RunResults {
        episodic_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: None,
        matrix_kernels: Some(crate::linalg::kernels()),
        config: config.clone(),
        tasks: bench.tasks().iter().map(|t| t.descriptor.clone()).collect(),
        metrics: paper,
        metrics_reference_convention: metrics::reference_convention(&paper, accuracy_matrix.len()),
        baseline,
        accuracy_matrix,
        evaluations,
        steps: stats.steps,
        projected_steps: stats.projected_steps,
        skipped_steps: stats.skipped_steps,
        timing: Timing {
            total_seconds: (earlier + started.elapsed()).as_secs_f64(),
            train_seconds: train_time.as_secs_f64(),
            memory_gradient_seconds: stats.memory_gradient_time.as_secs_f64(),
            violation_check_seconds: stats.violation_check_time.as_secs_f64(),
            qp_seconds: stats.qp_time.as_secs_f64(),
            projection_seconds: stats.projection_time.as_secs_f64(),
            evaluation_seconds: evaluator.time.as_secs_f64(),
            data_seconds: 0.0,
            peak_rss_bytes: peak_rss_bytes(),
        },
    })
}

/// How many of `predictions` equal `labels`.
fn matches(predictions: &[u32], labels: &[u32]) -> usize {
    predictions
        .iter()
        .zip(labels)
        .filter(|(p, y)| p == y)
        .count()
}

/// Scores a method on every task's test set, through reusable buffers: sparse rows when the
/// test images are mostly zero (MNIST), dense rows otherwise.
struct Evaluator<'a> {
    bench: &'a Benchmark,
    xs: SparseBatch,
    dense: Vec<f32>,
    ys: Vec<u32>,
    predictions: Vec<u32>,
    time: Duration,
}

impl<'a> Evaluator<'a> {
    fn new(bench: &'a Benchmark) -> Self {
        let longest = (0..bench.tasks().len())
            .map(|t| bench.test_len(t))
            .max()
            .unwrap_or(0);
        let chunk = EVAL_CHUNK.min(longest);
        let dense = if bench.sparse_test() {
            Vec::new()
        } else {
            vec![0.0; chunk * bench.input_dim()]
        };
        Self {
            bench,
            xs: SparseBatch::default(),
            dense,
            ys: vec![0; chunk],
            predictions: vec![0; chunk],
            time: Duration::ZERO,
        }
    }

    /// Accuracy on every task's whole test set (all N examples, divided by N; the
    /// reference scores N - 1 of them).
    fn evaluate(
        &mut self,
        method: &mut dyn Method,
        step: u64,
        after_task: Option<usize>,
    ) -> Result<Evaluation> {
        let started = Instant::now();
        let chunk = self.ys.len();
        let tasks = self.bench.tasks().len();
        let mut correct = vec![0usize; tasks];
        // Tasks that see the base test images through a feature permutation or fold share
        // each chunk of them: it is filled once and read through each task's map or fold.
        let mapped: Vec<usize> = (0..tasks)
            .filter(|&t| {
                self.bench.test_feature_map(t).is_some()
                    || self.bench.test_feature_fold(t).is_some()
            })
            .collect();
        if let Some(&first) = mapped.first() {
            let n = self.bench.test_len(first);
            let mut start = 0;
            while start < n {
                let m = chunk.min(n - start);
                let (ys, predictions) = (&mut self.ys[..m], &mut self.predictions[..m]);
                self.bench.fill_base_test_sparse(start, &mut self.xs, ys);
                for &task in &mapped {
                    let read = match (
                        self.bench.test_feature_map(task),
                        self.bench.test_feature_fold(task),
                    ) {
                        (Some(map), _) => self.xs.set_feature_map(map),
                        (None, Some(fold)) => self.xs.set_feature_fold(fold),
                        (None, None) => false,
                    };
                    if !read {
                        return Err(Error::InvalidOption {
                            option: "scenario",
                            reason: format!("task {} has no feature permutation or fold", task + 1),
                        });
                    }
                    method.predict_sparse(&self.xs, task, predictions)?;
                    correct[task] += matches(predictions, ys);
                }
                start += m;
            }
        }
        for task in (0..tasks).filter(|t| !mapped.contains(t)) {
            let n = self.bench.test_len(task);
            let mut start = 0;
            while start < n {
                let m = chunk.min(n - start);
                let (ys, predictions) = (&mut self.ys[..m], &mut self.predictions[..m]);
                if self.bench.sparse_test() {
                    self.bench.fill_test_sparse(task, start, &mut self.xs, ys);
                    method.predict_sparse(&self.xs, task, predictions)?;
                } else {
                    let xs = &mut self.dense[..m * self.bench.input_dim()];
                    self.bench.fill_test(task, start, xs, ys);
                    method.predict(xs, task, predictions)?;
                }
                correct[task] += matches(predictions, ys);
                start += m;
            }
        }
        let accuracies = (0..tasks)
            .map(|t| match self.bench.test_len(t) {
                0 => 0.0,
                n => correct[t] as f64 / n as f64,
            })
            .collect();
        self.time += started.elapsed();
        Ok(Evaluation {
            step,
            after_task,
            accuracies,
        })
    }
}
