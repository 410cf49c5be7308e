//! Command-line arguments, and their translation into a validated configuration.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use episodic::config::{ExperimentConfig, MethodConfig, MethodKind};
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
}

/// Benchmarks, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchmarkArg {
    /// 20 tasks, each a fixed random pixel permutation.
    MnistPermutations,
    /// 20 tasks, task t rotated by an angle in [9t, 9t + 9) degrees.
    MnistRotations,
}

impl From<BenchmarkArg> for BenchmarkKind {
    fn from(arg: BenchmarkArg) -> Self {
        match arg {
            BenchmarkArg::MnistPermutations => Self::MnistPermutations,
            BenchmarkArg::MnistRotations => Self::MnistRotations,
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
}

impl From<MethodArg> for MethodKind {
    fn from(arg: MethodArg) -> Self {
        match arg {
            MethodArg::Gem => Self::Gem,
            MethodArg::Single => Self::Single,
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

    /// Number of tasks.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub tasks: usize,

    /// Training examples drawn per task.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub samples_per_task: usize,

    /// Episodic memory slots per task (GEM only) [default: 256].
    #[arg(long, value_name = "N")]
    pub memories_per_task: Option<usize>,

    /// Lower bound on GEM's dual variables, "memory strength" (GEM only) [default: 0.5].
    #[arg(long, value_name = "GAMMA")]
    pub margin: Option<f64>,

    /// SGD learning rate [default: the paper's: gem 0.1; single 0.03 on permutations,
    /// 0.003 on rotations].
    #[arg(long, value_name = "RATE")]
    pub lr: Option<f64>,

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

/// Number of cores available to this process.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ExperimentArgs {
    /// The resolved, validated configuration: the paper's settings for the chosen method and
    /// benchmark, overridden by what the user gave.
    pub fn config(&self, threads: usize) -> Result<ExperimentConfig> {
        let method = MethodKind::from(self.method);
        let mut config = ExperimentConfig::paper(self.benchmark.into(), method, threads);
        config.seed = self.seed;
        config.tasks = self.tasks;
        config.samples_per_task = self.samples_per_task;
        config.batch_size = self.batch_size;
        config.epochs = self.epochs;
        config.shuffle_tasks = self.shuffle_tasks;
        match &mut config.method {
            MethodConfig::Gem(p) => {
                if let Some(m) = self.memories_per_task {
                    p.memories_per_task = m;
                }
                if let Some(margin) = self.margin {
                    p.margin = margin;
                }
                if let Some(lr) = self.lr {
                    p.learning_rate = lr;
                }
            }
            MethodConfig::Single(p) => {
                for (given, option) in [
                    (self.memories_per_task.is_some(), "--memories-per-task"),
                    (self.margin.is_some(), "--margin"),
                ] {
                    if given {
                        bail!("{option} applies only to --method gem");
                    }
                }
                if let Some(lr) = self.lr {
                    p.learning_rate = lr;
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// The data directory: `--data-dir`, else `$EPISODIC_DATA`, else the repository's `data/`.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
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
}
