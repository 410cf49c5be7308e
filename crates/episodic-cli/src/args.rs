//! Command-line arguments, and their translation into a validated configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use episodic::data::Preset;

use crate::options::{MethodArg, Options, Samples};

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
    /// Train a method on a benchmark or your own data and report ACC, BWT and FWT
    /// (defaults: GEM on MNIST Permutations with the paper's settings).
    Run(RunArgs),
    /// Time a run at 1 thread and at all cores: wall time, its split, and peak memory.
    Bench(BenchArgs),
    /// Turn results files into figures (SVG and PNG), summary.csv and one HTML page.
    Report(ReportArgs),
    /// Run every applicable method with its paper defaults over several seeds and
    /// benchmarks (or a grid file's product): one results JSON per run, summary.csv, a
    /// table and a report.
    Suite(SuiteArgs),
}

/// Options of `episodic run`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct RunArgs {
    /// What to train, on what, how.
    #[command(flatten)]
    pub options: Options,

    /// Read the options from FILE: a TOML file of `key = value` lines, each key a flag's name
    /// without `--` (flags given here override it), or a results JSON file, whose embedded
    /// configuration is run again.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the resolved configuration as TOML (a file for --config) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Threads for matrix products [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Where to write the results JSON, or - for standard output (the summary then goes to
    /// standard error); a symbolic link is written through to its target [default:
    /// results/METHOD-BENCHMARK-seedSEED-DIGEST.json, DIGEST naming the whole configuration;
    /// a resumed run: where the original run wrote].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Replace the --out file even if it holds results of another configuration (or is not
    /// a results file).
    #[arg(long)]
    pub force: bool,

    /// Save checkpoints in DIR: after the initial evaluation, at every task end, every
    /// --checkpoint-every mini-batches, and before stopping on a failed step (the two newest
    /// are kept).
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,

    /// Also save a checkpoint every N mini-batches.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,

    /// Continue the run saved in DIR from its newest intact checkpoint, with that run's
    /// settings (and keep checkpointing there unless --checkpoint-dir says otherwise); only
    /// --threads, --out and the checkpoint options may change.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = [
            "benchmark", "data", "scenario", "classes_per_task", "class_order", "method",
            "seed", "tasks", "samples_per_task", "lr", "momentum", "weight_decay", "model", "nf",
            "memories_per_task", "margin",
            "strength", "sample_size", "memory_size", "finetune", "eval_every", "batch_size",
            "epochs", "shuffle_tasks", "config", "print_config",
        ]
    )]
    pub resume: Option<PathBuf>,
}

impl RunArgs {
    /// The options given on the command line, the run-only ones included.
    pub fn command_line_options(&self) -> Options {
        Options {
            threads: self.threads,
            out: self.out.clone(),
            checkpoint_dir: self.checkpoint_dir.clone(),
            checkpoint_every: self.checkpoint_every,
            ..self.options.clone()
        }
    }
}

/// Options of `episodic bench`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct BenchArgs {
    /// What to train.
    #[command(flatten)]
    pub options: Options,

    /// Thread counts to time, comma-separated [default: 1 and all cores].
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    pub threads: Vec<usize>,
}

/// Options of `episodic report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Results JSON files written by `episodic run` or `episodic suite`, or folders holding
    /// them (searched recursively; e.g. the output folders of a sharded suite, to merge them).
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,

    /// Directory to write the figures, summary.csv and index.html into.
    #[arg(long, default_value = "report", value_name = "DIR")]
    pub out: PathBuf,
}

/// Options of `episodic suite`.
#[derive(Debug, Clone, Args)]
#[command(allow_negative_numbers = true)]
pub struct SuiteArgs {
    /// Benchmarks, comma-separated, or `all` for every vendored one (the MNIST and
    /// Fashion-MNIST presets) [default: mnist-permutations,mnist-rotations,mnist-split].
    #[arg(long, value_delimiter = ',', value_name = "NAME,NAME", value_parser = parse_suite_benchmark)]
    pub benchmark: Vec<SuiteBenchmark>,

    /// Seeds, comma-separated [default: 0,1,2].
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    pub seeds: Vec<u64>,

    /// Methods, comma-separated [default: every method that applies to the benchmark].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "M,M")]
    pub methods: Vec<MethodArg>,

    /// Number of tasks [default: the benchmark's].
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,

    /// Training examples drawn per task, or `all` [default: the benchmark's].
    #[arg(long, value_name = "N|all")]
    pub samples_per_task: Option<Samples>,

    /// Also evaluate every N mini-batches (for the report's learning curves).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,

    /// Threads for matrix products [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// A grid file (TOML): keys are run's options, each a value or a list of values; the
    /// suite runs the product of the lists (plural `benchmarks`, `methods`, `seeds` are
    /// accepted too). Flags given here override the file's keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the suite's runs, one a line: a stable id and the full `episodic run` command
    /// that does it; run nothing.
    #[arg(long)]
    pub list_jobs: bool,

    /// Run only share I of N of the runs (runs I, I+N, I+2N, ... of --list-jobs, from 0), for
    /// spreading a suite over machines; merge with `episodic report DIR...`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, allow_hyphen_values = true)]
    pub shard: Option<Shard>,

    /// Directory of the results files, summary.csv and report/.
    #[arg(long, default_value = "results/suite", value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Rerun experiments whose results file already exists with the same settings.
    #[arg(long)]
    pub force: bool,

    /// Do not write the report.
    #[arg(long)]
    pub no_report: bool,

    /// Folder of the vendored data sets, or of CIFAR (see run --help) [default:
    /// $EPISODIC_DATA, else the repository's data/].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A benchmark of a suite: a preset, or all vendored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteBenchmark {
    /// One preset.
    One(Preset),
    /// Every vendored preset.
    All,
}

fn parse_suite_benchmark(s: &str) -> Result<SuiteBenchmark, String> {
    if s == "all" {
        Ok(SuiteBenchmark::All)
    } else {
        s.parse().map(SuiteBenchmark::One)
    }
}

/// Share `index` of `count` of a suite's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which share, from 0.
    pub index: usize,
    /// How many shares.
    pub count: usize,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("expected I/N such as 0/3, got '{s}'"))?;
    let index: usize = i.trim().parse().map_err(|e| format!("shard index: {e}"))?;
    let count: usize = n.trim().parse().map_err(|e| format!("shard count: {e}"))?;
    if count == 0 || index >= count {
        return Err(format!("expected 0 <= I < N, got {index}/{count}"));
    }
    Ok(Shard { index, count })
}

/// Number of cores available to this process.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
