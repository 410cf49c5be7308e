//! What a run will cost, known before it starts: the memory it will come to hold (so that a
//! configuration that cannot fit is refused at once, naming the option that drives it,
//! instead of being killed hours later), and its work (mini-batches, memory-gradient
//! examples, evaluation images), from which progress and its ETA are weighted.
//!
//! All arithmetic saturates: an absurd configuration gives an absurd (huge) estimate, never
//! an overflow.

use crate::config::{ExperimentConfig, MethodConfig};
use crate::data::{BatchSpan, Benchmark};
use crate::error::{Error, Result};

/// One large allocation of a run: what it is, the option that drives it, its size.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// What it holds, in words (e.g. "GEM's episodic memories: 20 tasks x 256 examples x 784 inputs").
    pub what: String,
    /// The option that makes it large.
    pub option: &'static str,
    /// Bytes.
    pub bytes: u64,
}

/// The cost of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Mini-batches.
    pub steps: u64,
    /// Examples passed forward and backward on episodic memories, over the run.
    pub memory_examples: u64,
    /// Test images scored, over the run.
    pub evaluation_images: u64,
    /// Work of one mini-batch of each task, in forward passes of one example
    /// (a training example counts 3: forward, backward, weight gradient).
    pub step_work: Vec<u64>,
    /// Work of one evaluation of every task.
    pub evaluation_work: u64,
    /// Work of the whole run (steps and evaluations).
    pub total_work: u64,
    /// The large allocations, largest first.
    pub parts: Vec<Part>,
}

/// Work of passing one example forward, backward and through the weight gradient, in
/// forward passes.
const TRAIN_PASSES: u64 = 3;

/// Multiply-adds per second per thread, a deliberately modest figure for the estimate of how
/// long a run takes: for the paper's MLP (measured: about 4 million forward passes per second
/// on 2 AVX2 cores, its first layer sparse on MNIST; here scaled by the network's size), and
/// for the ResNet (measured: 123 to 130 images per second forward and backward at 1 thread,
/// batch 256, about 20 G multiply-adds per second; docs/resnet-backend.md).
pub const MLP_MULTIPLY_ADDS_PER_SECOND: f64 = 2.0e10;
/// See [`MLP_MULTIPLY_ADDS_PER_SECOND`].
pub const RESNET_MULTIPLY_ADDS_PER_SECOND: f64 = 1.8e10;

impl Cost {
    /// The cost of running `config` on `bench` with the stream's `batches`.
    pub fn estimate(config: &ExperimentConfig, bench: &Benchmark, batches: &[BatchSpan]) -> Self {
        let tasks = bench.tasks().len();
        let input = config.model.input_dim() as u64;
        let train: Vec<u64> = bench
            .tasks()
            .iter()
            .map(|t| t.train_indices.len() as u64)
            .collect();
        let test: u64 = (0..tasks).map(|t| bench.test_len(t) as u64).sum();
        let most_train = train.iter().copied().max().unwrap_or(0);
        let mut steps_of_task = vec![0u64; tasks];
        for b in batches {
            if let Some(n) = steps_of_task.get_mut(b.task) {
                *n += 1;
            }
        }
        let batch = config.batch_size as u64;
        let params = config.model.num_params() as u64;
        let float = 4u64;
        let mut parts: Vec<Part> = Vec::new();
        let memories = |m: usize| -> Vec<u64> { train.iter().map(|&n| n.min(m as u64)).collect() };
        // Memory examples seen by each task's steps.
        let mut per_step_memory = vec![0u64; tasks];
        match &config.method {
            MethodConfig::Gem(p) => {
                let held = memories(p.memories_per_task);
                let total: u64 = held.iter().sum();
                parts.push(Part {
                    what: format!(
                        "GEM's episodic memories: {tasks} tasks x up to {} examples x {input} inputs, with their sparse form",
                        held.iter().max().unwrap_or(&0)
                    ),
                    option: "--memories-per-task",
                    bytes: total.saturating_mul(input.saturating_add(1)).saturating_mul(3 * float),
                });
                parts.push(Part {
                    what: format!("GEM's gradient matrix: {tasks} tasks x {params} parameters"),
                    option: "--tasks",
                    bytes: (tasks as u64).saturating_mul(params).saturating_mul(float),
                });
                let mut past = 0u64;
                for (t, per) in per_step_memory.iter_mut().enumerate() {
                    *per = past;
                    past = past.saturating_add(held[t]);
                }
            }
            MethodConfig::Agem(p) => {
                let held = memories(p.memories_per_task);
                parts.push(Part {
                    what: format!(
                        "A-GEM's episodic memories: {tasks} tasks x up to {} examples x {input} inputs",
                        held.iter().max().unwrap_or(&0)
                    ),
                    option: "--memories-per-task",
                    bytes: held
                        .iter()
                        .sum::<u64>()
                        .saturating_mul(input.saturating_add(1))
                        .saturating_mul(float),
                });
                for per in per_step_memory.iter_mut().skip(1) {
                    *per = p.sample_size as u64;
                }
            }
            MethodConfig::Er(p) => {
                let stream: u64 = train
                    .iter()
                    .sum::<u64>()
                    .saturating_mul(config.epochs as u64);
                let held = (p.memories_per_task as u64)
                    .saturating_mul(tasks as u64)
                    .min(stream);
                parts.push(Part {
                    what: format!("ER's reservoir: up to {held} examples x {input} inputs"),
                    option: "--memories-per-task",
                    bytes: held
                        .saturating_mul(input.saturating_add(1))
                        .saturating_mul(float),
                });
                for per in per_step_memory.iter_mut().skip(1) {
                    *per = batch;
                }
            }
            MethodConfig::Ewc(p) => {
                parts.push(Part {
                    what: format!(
                        "EWC's Fisher diagonals and anchors: {tasks} tasks x {params} parameters x 2"
                    ),
                    option: "--tasks",
                    bytes: (tasks as u64).saturating_mul(params).saturating_mul(2 * float),
                });
                let held = most_train.min(p.memories_per_task as u64);
                parts.push(Part {
                    what: format!("EWC's Fisher examples: {held} x {input} inputs"),
                    option: "--memories-per-task",
                    bytes: held.saturating_mul(input).saturating_mul(float),
                });
            }
            MethodConfig::Icarl(p) => {
                let all: u64 = train.iter().sum();
                let held = (p.memory_size as u64).min(all);
                parts.push(Part {
                    what: format!("iCaRL's exemplars: up to {held} x {input} inputs"),
                    option: "--memory-size",
                    bytes: held.saturating_mul(input).saturating_mul(float),
                });
                for (t, per) in per_step_memory.iter_mut().enumerate() {
                    *per = if t == 0 { 0 } else { batch };
                }
            }
            MethodConfig::Multimodal(_) => {
                let hidden = match &config.model {
                    crate::model::ModelConfig::Mlp(c) => c.hidden.first().copied().unwrap_or(0),
                    crate::model::ModelConfig::ResNet(_) => 0,
                };
                let first = input.saturating_mul(hidden as u64);
                parts.push(Part {
                    what: format!("multimodal's input layers: {tasks} tasks x {first} weights"),
                    option: "--tasks",
                    bytes: (tasks as u64).saturating_mul(first).saturating_mul(float),
                });
            }
            MethodConfig::Single(_) | MethodConfig::Independent(_) => {}
        }
        let evaluations = (tasks as u64).saturating_add(1).saturating_add(
            config
                .eval_every
                .map_or(0, |every| batches.len() as u64 / every.max(1)),
        );
        parts.push(Part {
            what: format!("the evaluations: {evaluations} x {tasks} accuracies"),
            option: "--eval-every",
            bytes: evaluations.saturating_mul(tasks as u64).saturating_mul(8),
        });
        parts.push(Part {
            what: format!("the stream: {} mini-batches", batches.len()),
            option: "--epochs",
            bytes: (batches.len() as u64).saturating_mul(24),
        });
        parts.push(Part {
            what: format!("the network, its gradient and its optimiser: {params} parameters"),
            option: "--tasks",
            bytes: params.saturating_mul(4 * float),
        });
        // The largest training pass keeps every layer's activations for its backward pass
        // (and as many gradients of them): GEM's past memories, one at a time, or a batch.
        let largest_memory = per_step_memory_pass(&config.method, &train);
        // (A batch never crosses tasks, so it holds at most a task's examples.)
        let batch_pass = batch.min(most_train);
        let (pass, option) = if largest_memory > batch_pass {
            (largest_memory, "--memories-per-task")
        } else {
            (batch_pass, "--batch-size")
        };
        let activations = config.model.activations_per_example() as u64;
        parts.push(Part {
            what: format!("the network's activations for a pass of {pass} examples"),
            option,
            bytes: pass.saturating_mul(activations).saturating_mul(2 * float),
        });
        parts.sort_by_key(|p| std::cmp::Reverse(p.bytes));

        let step_work: Vec<u64> = (0..tasks)
            .map(|t| {
                let own = train[t].min(batch);
                own.saturating_add(per_step_memory[t])
                    .saturating_mul(TRAIN_PASSES)
            })
            .collect();
        let memory_examples = steps_of_task
            .iter()
            .zip(&per_step_memory)
            .fold(0u64, |acc, (&s, &m)| {
                acc.saturating_add(s.saturating_mul(m))
            });
        let train_work = steps_of_task
            .iter()
            .zip(&step_work)
            .fold(0u64, |acc, (&s, &w)| {
                acc.saturating_add(s.saturating_mul(w))
            });
        let evaluation_images = evaluations.saturating_mul(test);
        Self {
            steps: batches.len() as u64,
            memory_examples,
            evaluation_images,
            step_work,
            evaluation_work: test,
            total_work: train_work.saturating_add(evaluation_images),
            parts,
        }
    }

    /// Bytes of every part together.
    pub fn bytes(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |acc, p| acc.saturating_add(p.bytes))
    }

    /// A rough wall-clock estimate in seconds at `threads` threads for `model` (an order of
    /// magnitude, not a promise).
    pub fn seconds(&self, model: &crate::model::ModelConfig, threads: usize) -> f64 {
        let rate = match model {
            crate::model::ModelConfig::Mlp(_) => MLP_MULTIPLY_ADDS_PER_SECOND,
            crate::model::ModelConfig::ResNet(_) => RESNET_MULTIPLY_ADDS_PER_SECOND,
        };
        self.total_work as f64 * model.multiply_adds() as f64 / (rate * threads.clamp(1, 16) as f64)
    }

    /// Fails, naming the largest part's option, when the run would hold more than
    /// `available` bytes.
    pub fn check_fits(&self, available: u64) -> Result<()> {
        let needed = self.bytes();
        if needed <= available {
            return Ok(());
        }
        let largest = &self.parts[0];
        Err(Error::InvalidOption {
            option: largest.option,
            reason: format!(
                "this run would hold about {} ({}: {}), more than the {} this machine has available",
                human_bytes(needed),
                largest.what,
                human_bytes(largest.bytes),
                human_bytes(available)
            ),
        })
    }
}

/// Memory this process may still take: the smaller of the system's available memory
/// (`MemAvailable` of /proc/meminfo) and the room left under a cgroup limit; `None` where
/// the platform does not say.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    let mut available = kib("MemAvailable:")?.saturating_mul(1024);
    let read =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    if let (Some(max), Some(current)) = (
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory.current"),
    ) {
        available = available.min(max.saturating_sub(current));
    }
    Some(available)
}

/// `bytes` as "1.5 GB" (decimal units).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{:.1} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// `seconds` as "3 h 20 min", "12 min", "40 s".
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s >= 86_400.0 * 365.0 {
        format!("{:.0} years", s / (86_400.0 * 365.0))
    } else if s >= 86_400.0 {
        format!("{:.1} days", s / 86_400.0)
    } else if s >= 3_600.0 {
        format!(
            "{} h {} min",
            (s / 3_600.0) as u64,
            ((s % 3_600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{} min", (s / 60.0).round() as u64)
    } else {
        format!("{} s", s.round() as u64)
    }
}

/// The most examples one training pass of `method` takes from its memory (GEM's past
/// tasks' memories are passed one task at a time, A-GEM's sample at once).
fn per_step_memory_pass(method: &MethodConfig, train: &[u64]) -> u64 {
    let most = train.iter().copied().max().unwrap_or(0);
    match method {
        MethodConfig::Gem(p) => most.min(p.memories_per_task as u64),
        MethodConfig::Agem(p) => p.sample_size as u64,
        MethodConfig::Ewc(p) => most.min(p.memories_per_task as u64),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MethodKind;
    use crate::data::{BenchmarkSpec, Dataset, Inputs, Preset, Shape, Split, Stream};

    fn split(n: usize) -> Split {
        Split {
            inputs: Inputs::Bytes((0..n * 16).map(|i| (i * 7 % 256) as u8).collect()),
            labels: (0..n as u32).map(|k| k % 4).collect(),
            tasks: None,
        }
    }

    fn tiny(method: MethodKind, tasks: usize, samples: usize) -> (ExperimentConfig, Benchmark) {
        let shape = Shape {
            channels: 1,
            height: 4,
            width: 4,
        };
        let data = Dataset::new("tiny", shape, 4, None, "test", split(200), split(50)).unwrap();
        let mut config = ExperimentConfig::paper(Preset::MnistPermutations, method, 1);
        config.model = crate::model::MlpConfig::for_data(16, 4).into();
        config.tasks = tasks;
        config.samples_per_task = Some(samples);
        let spec = BenchmarkSpec {
            scenario: config.scenario,
            tasks,
            samples_per_task: Some(samples),
            shuffle_tasks: false,
            seed: 0,
        };
        (config, Benchmark::new(data, &spec).unwrap())
    }

    fn cost(config: &ExperimentConfig, bench: &Benchmark) -> Cost {
        let examples: Vec<&[u32]> = bench
            .tasks()
            .iter()
            .map(|t| t.train_indices.as_slice())
            .collect();
        let stream = Stream::new(&examples, config.epochs, config.batch_size, 0);
        Cost::estimate(config, bench, stream.batches())
    }

    #[test]
    fn gem_steps_get_dearer_with_every_task_and_memories_are_bounded_by_examples() {
        let (mut config, bench) = tiny(MethodKind::Gem, 3, 40);
        if let MethodConfig::Gem(p) = &mut config.method {
            p.memories_per_task = usize::MAX;
        }
        let c = cost(&config, &bench);
        assert_eq!(c.steps, 12);
        assert!(c.step_work[0] < c.step_work[1] && c.step_work[1] < c.step_work[2]);
        // 4 steps of task 1 see 40 memories, 4 of task 2 see 80.
        assert_eq!(c.memory_examples, 4 * 40 + 4 * 80);
        assert_eq!(c.evaluation_images, 4 * 3 * 50);
        let memory = c
            .parts
            .iter()
            .find(|p| p.what.starts_with("GEM's episodic memories"))
            .unwrap();
        assert_eq!(memory.bytes, 120 * 17 * 12);
        let activations = c.parts.iter().find(|p| p.what.contains("activations"));
        assert_eq!(activations.unwrap().option, "--memories-per-task");
        c.check_fits(u64::MAX).unwrap();
    }

    #[test]
    fn a_run_that_cannot_fit_is_refused_naming_its_option() {
        let (config, bench) = tiny(MethodKind::Gem, 3, 40);
        let c = cost(&config, &bench);
        let err = c.check_fits(10).unwrap_err().to_string();
        assert!(err.contains("--") && err.contains("more than the"), "{err}");
        let (config, bench) = tiny(MethodKind::Single, 2, 40);
        let c = cost(&config, &bench);
        assert!(c.step_work.iter().all(|&w| w == 10 * TRAIN_PASSES));
        assert_eq!(c.memory_examples, 0);
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(188_000_000_000), "188.0 GB");
        assert_eq!(human_bytes(5_000_000), "5 MB");
        assert_eq!(human_duration(40.2), "40 s");
        assert_eq!(human_duration(7_500.0), "2 h 5 min");
        assert!(available_memory().is_none_or(|b| b > 0));
    }
}
