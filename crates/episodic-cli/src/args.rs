//! Command-line arguments, and their translation into a validated configuration.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use episodic::config::{ExperimentConfig, MethodKind, MethodOverrides};
use episodic::data::BenchmarkKind;

/// Continual learning with Gradient Episodic Memory (GEM) and its baselines.
#[derive(Debug, Parser)]
#[command(name = "episodic", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a method on a benchmark and report ACC, BWT and FWT (defaults: GEM on MNIST
    /// Permutations with the paper's settings).
    Run(RunArgs),
    /// Time a run at 1 thread and at all cores: wall time, its split, and peak memory.
    Bench(BenchArgs),
    /// Turn results files into figures (SVG and PNG), summary.csv and one HTML page.
    Report(ReportArgs),
    /// Run every applicable method with its paper defaults over several seeds and
    /// benchmarks: one results JSON per run, summary.csv, a table and a report.
    Suite(SuiteArgs),
}

/// Benchmarks, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(clippy::enum_variant_names)] // The variants spell the command-line values.
pub enum BenchmarkArg {
    /// 20 tasks, each a fixed random pixel permutation.
    MnistPermutations,
    /// 20 tasks, task t rotated by an angle in [9t, 9t + 9) degrees.
    MnistRotations,
    /// 5 tasks of 2 digits each, one output head per task.
    MnistSplit,
}

impl From<BenchmarkArg> for BenchmarkKind {
    fn from(arg: BenchmarkArg) -> Self {
        match arg {
            BenchmarkArg::MnistPermutations => Self::MnistPermutations,
            BenchmarkArg::MnistRotations => Self::MnistRotations,
            BenchmarkArg::MnistSplit => Self::MnistSplit,
        }
    }
}

/// Methods, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Gradient Episodic Memory.
    Gem,
    /// One network fine-tuned on the stream (no memory).
    Single,
    /// One network per task, each 1/T as wide.
    Independent,
    /// A task-specific input layer, the rest shared.
    Multimodal,
    /// Elastic Weight Consolidation.
    Ewc,
    /// iCaRL: exemplars, nearest mean of exemplars, distillation (mnist-split only).
    Icarl,
    /// Averaged GEM: one reference gradient from all past memories.
    Agem,
    /// Experience replay from a reservoir-sampled memory.
    Er,
}

impl From<MethodArg> for MethodKind {
    fn from(arg: MethodArg) -> Self {
        match arg {
            MethodArg::Gem => Self::Gem,
            MethodArg::Single => Self::Single,
            MethodArg::Independent => Self::Independent,
            MethodArg::Multimodal => Self::Multimodal,
            MethodArg::Ewc => Self::Ewc,
            MethodArg::Icarl => Self::Icarl,
            MethodArg::Agem => Self::Agem,
            MethodArg::Er => Self::Er,
        }
    }
}

/// Options shared by `run` and `bench`: what to train, on what, how.
#[derive(Debug, Clone, Args)]
pub struct ExperimentArgs {
    /// The continuum to learn.
    #[arg(long, value_enum, default_value_t = BenchmarkArg::MnistPermutations)]
    pub benchmark: BenchmarkArg,

    /// The continual-learning method.
    #[arg(long, value_enum, default_value_t = MethodArg::Gem)]
    pub method: MethodArg,

    /// Seed of every random draw (permutations, angles, subsets, shuffles, initialisation).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Number of tasks [default: 20; 5 on mnist-split].
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,

    /// Training examples drawn per task.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub samples_per_task: usize,

    /// Method options: the paper's defaults per method and benchmark unless given.
    #[command(flatten)]
    pub method_options: MethodOptions,

    /// Also evaluate every N mini-batches (learning curves; task ends are always evaluated).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,

    /// Mini-batch size (batches never cross tasks).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub batch_size: usize,

    /// Passes over each task's examples.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub epochs: usize,

    /// Train the tasks in a random (seeded) order.
    #[arg(long)]
    pub shuffle_tasks: bool,

    /// Data directory holding mnist/ [default: $EPISODIC_DATA, else the repository's data/].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Hyper-parameters a user may override; each applies only to the methods that have it.
#[derive(Debug, Clone, Args)]
pub struct MethodOptions {
    /// SGD learning rate [default: the paper's per method and benchmark].
    #[arg(long, value_name = "RATE")]
    pub lr: Option<f64>,

    /// Memory slots per task of gem, agem and er [default: 256], or ewc's Fisher examples
    /// [default: 10; 1000 on rotations].
    #[arg(long, value_name = "N")]
    pub memories_per_task: Option<usize>,

    /// Lower bound on GEM's dual variables, "memory strength" (gem) [default: 0.5].
    #[arg(long, value_name = "GAMMA")]
    pub margin: Option<f64>,

    /// Penalty strength of ewc [default: 3; 1000 on rotations], or distillation weight of
    /// icarl [default: 1].
    #[arg(long, value_name = "LAMBDA")]
    pub strength: Option<f64>,

    /// Memories drawn for each reference gradient (agem) [default: 256].
    #[arg(long, value_name = "N")]
    pub sample_size: Option<usize>,

    /// Total exemplars (icarl) [default: 1280].
    #[arg(long, value_name = "N")]
    pub memory_size: Option<usize>,

    /// Start each task's network from the previous task's (independent) [default: true].
    #[arg(long, value_name = "BOOL")]
    pub finetune: Option<bool>,
}

impl MethodOptions {
    /// The options as library overrides.
    pub fn overrides(&self) -> MethodOverrides {
        MethodOverrides {
            learning_rate: self.lr,
            memories_per_task: self.memories_per_task,
            margin: self.margin,
            strength: self.strength,
            sample_size: self.sample_size,
            memory_size: self.memory_size,
            finetune: self.finetune,
        }
    }
}

/// Options of `episodic run`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    /// What to train.
    #[command(flatten)]
    pub experiment: ExperimentArgs,

    /// Threads for matrix products [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Where to write the results JSON [default: results/METHOD-BENCHMARK-seedSEED.json].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Save checkpoints in DIR: after the initial evaluation, at every task end, every
    /// --checkpoint-every mini-batches, and before stopping on a failed step (the two newest
    /// are kept).
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,

    /// Also save a checkpoint every N mini-batches.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,

    /// Continue the run saved in DIR from its newest intact checkpoint, with that run's
    /// settings (and keep checkpointing there unless --checkpoint-dir says otherwise).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = [
            "benchmark", "method", "seed", "tasks", "samples_per_task", "lr",
            "memories_per_task", "margin", "strength", "sample_size", "memory_size",
            "finetune", "eval_every", "batch_size", "epochs", "shuffle_tasks", "threads",
        ]
    )]
    pub resume: Option<PathBuf>,
}

/// Options of `episodic bench`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct BenchArgs {
    /// What to train.
    #[command(flatten)]
    pub experiment: ExperimentArgs,

    /// Thread counts to time, comma-separated [default: 1 and all cores].
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    pub threads: Vec<usize>,
}

/// Options of `episodic report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Results JSON files written by `episodic run`.
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,

    /// Directory to write the figures, summary.csv and index.html into.
    #[arg(long, default_value = "report", value_name = "DIR")]
    pub out: PathBuf,
}

/// Benchmarks of a suite: one, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SuiteBenchmarkArg {
    /// MNIST Permutations.
    MnistPermutations,
    /// MNIST Rotations.
    MnistRotations,
    /// Class-split MNIST.
    MnistSplit,
    /// All three.
    All,
}

impl SuiteBenchmarkArg {
    /// The benchmarks this stands for.
    pub fn kinds(self) -> Vec<BenchmarkKind> {
        match self {
            Self::MnistPermutations => vec![BenchmarkKind::MnistPermutations],
            Self::MnistRotations => vec![BenchmarkKind::MnistRotations],
            Self::MnistSplit => vec![BenchmarkKind::MnistSplit],
            Self::All => BenchmarkKind::ALL.to_vec(),
        }
    }
}

/// Options of `episodic suite`.
#[derive(Debug, Clone, Args)]
pub struct SuiteArgs {
    /// The benchmark(s) to run.
    #[arg(long, value_enum, default_value_t = SuiteBenchmarkArg::All)]
    pub benchmark: SuiteBenchmarkArg,

    /// Seeds, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,1,2",
        value_name = "N,N"
    )]
    pub seeds: Vec<u64>,

    /// Methods, comma-separated [default: every method that applies to the benchmark].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "M,M")]
    pub methods: Vec<MethodArg>,

    /// Number of tasks [default: the benchmark's].
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,

    /// Training examples drawn per task [default: 1000].
    #[arg(long, value_name = "N")]
    pub samples_per_task: Option<usize>,

    /// Also evaluate every N mini-batches (for the report's learning curves).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,

    /// Threads for matrix products [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Directory of the results files, summary.csv and report/.
    #[arg(long, default_value = "results/suite", value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Rerun experiments whose results file already exists with the same settings.
    #[arg(long)]
    pub force: bool,

    /// Do not write the report.
    #[arg(long)]
    pub no_report: bool,

    /// Data directory holding mnist/ [default: $EPISODIC_DATA, else the repository's data/].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Number of cores available to this process.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ExperimentArgs {
    /// The resolved, validated configuration: the paper's settings for the chosen method and
    /// benchmark, overridden by what the user gave.
    pub fn config(&self, threads: usize) -> Result<ExperimentConfig> {
        let method = MethodKind::from(self.method);
        let benchmark = BenchmarkKind::from(self.benchmark);
        let mut config = ExperimentConfig::paper(benchmark, method, threads);
        config.seed = self.seed;
        config.tasks = self.tasks.unwrap_or(benchmark.default_tasks());
        config.samples_per_task = self.samples_per_task;
        config.batch_size = self.batch_size;
        config.epochs = self.epochs;
        config.shuffle_tasks = self.shuffle_tasks;
        config.eval_every = self.eval_every;
        config.method.apply(&self.method_options.overrides())?;
        config.validate()?;
        Ok(config)
    }

    /// The data directory: `--data-dir`, else `$EPISODIC_DATA`, else the repository's `data/`.
    pub fn data_dir(&self) -> PathBuf {
        resolve_data_dir(self.data_dir.as_ref())
    }
}

/// `given`, else `$EPISODIC_DATA`, else the repository's `data/`.
pub fn resolve_data_dir(given: Option<&PathBuf>) -> PathBuf {
    if let Some(dir) = given {
        return dir.clone();
    }
    match std::env::var_os("EPISODIC_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            // crates/episodic-cli -> the repository root.
            let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            let root = crate_dir
                .parent()
                .and_then(|p| p.parent())
                .unwrap_or(crate_dir);
            root.join("data")
        }
    }
}
