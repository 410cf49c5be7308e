//! `episodic run`: one experiment, a progress bar, a summary table, the results JSON.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use episodic::checkpoint::{Checkpoint, CheckpointDir};
use episodic::config::ExperimentConfig;
use episodic::data::Dataset;
use episodic::experiment::{self, Checkpointing, Progress};
use episodic::results::{self, RunResults};

use crate::args::{all_cores, RunArgs};
use crate::options::Options;
use crate::output::{self, Destination};
use crate::progress::Reporter;
use crate::resolve::{self, DataCache};

/// What a run needs beyond its configuration: where to write, where to checkpoint.
struct Plan {
    config: ExperimentConfig,
    data: Dataset,
    /// Where the results go: --out, else the resumed run's, else the default name.
    out: Destination,
    checkpoint_dir: Option<PathBuf>,
    checkpoint_every: Option<u64>,
    /// Said on stderr once the run's tasks are made (so that a refused run says one line).
    note: Option<String>,
}

/// The options of `args`: the command line's over the `--config` file's.
pub fn merged_options(args: &RunArgs) -> Result<Options> {
    let flags = args.command_line_options();
    match &args.config {
        Some(path) => Options::read_file(path)?.overlaid(&flags),
        None => Ok(flags),
    }
}

/// Runs the experiment `args` describe, or continues the one saved in `--resume`.
pub fn run(args: &RunArgs) -> Result<()> {
    let data_started = Instant::now();
    let (plan, resume) = match &args.resume {
        Some(dir) => {
            let loaded = CheckpointDir::new(dir).load_latest()?;
            for warning in &loaded.warnings {
                eprintln!("warning: skipped {warning}");
            }
            eprintln!(
                "resuming from {} (step {})",
                loaded.path.display(),
                loaded.checkpoint.progress.step
            );
            let mut config = loaded.checkpoint.progress.config.clone();
            if let Some(threads) = args.threads {
                config.threads = threads;
            }
            let data_dir = resolve::resolve_data_dir(args.options.data_dir.as_ref());
            let (data, _) = DataCache::default().get(&config.data, &data_dir, config.seed)?;
            let out = args
                .out
                .clone()
                .or_else(|| loaded.checkpoint.progress.results_file.clone())
                .unwrap_or_else(|| output::default_results_path(&config));
            let plan = Plan {
                config,
                data,
                out: Destination::of(&out),
                checkpoint_dir: args.checkpoint_dir.clone(),
                checkpoint_every: args.checkpoint_every,
                note: None,
            };
            (plan, Some(loaded.checkpoint))
        }
        None => {
            let options = merged_options(args)?;
            let threads = options.threads.unwrap_or_else(all_cores);
            let resolved = resolve::resolve(&options, threads, &mut DataCache::default())?;
            if args.print_config {
                let mut printed = resolve::options_of(&resolved.config);
                printed.data_dir = printed.data_dir.or(options.data_dir.clone());
                printed.threads = options.threads;
                printed.out = options.out.clone();
                printed.checkpoint_dir = options.checkpoint_dir.clone();
                printed.checkpoint_every = options.checkpoint_every;
                out!("{}", printed.to_toml()?);
                return Ok(());
            }
            let note = resolved.holdout.map(|h| {
                format!(
                    "note: {} has no test arrays; {} of its examples are held out for test (seeded), {} train",
                    resolved.data.name(),
                    h.test,
                    h.train
                )
            });
            let out = options
                .out
                .clone()
                .unwrap_or_else(|| output::default_results_path(&resolved.config));
            let plan = Plan {
                config: resolved.config,
                data: resolved.data,
                out: Destination::of(&out),
                checkpoint_dir: options.checkpoint_dir,
                checkpoint_every: options.checkpoint_every,
                note,
            };
            (plan, None)
        }
    };
    let data_seconds = data_started.elapsed().as_secs_f64();
    let config = plan.config;
    let out = plan.out;
    if let Destination::File(path) = &out {
        // The default folder is made; a folder the user named must exist.
        if args.out.is_none() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
        }
    }
    // Fail now, not after a long run, if the results cannot be written or would replace
    // another run's.
    out.check(&config, args.force)?;
    let checkpointing = checkpointing(
        plan.checkpoint_dir.as_ref(),
        plan.checkpoint_every,
        args.resume.as_ref(),
        &out,
    )?;

    let mut results = run_with_progress(
        &config,
        plan.data,
        checkpointing.as_ref(),
        resume,
        plan.note.as_deref(),
    )?;
    results.timing.data_seconds = data_seconds;
    results.git_revision = option_env!("EPISODIC_GIT_REVISION").map(str::to_string);
    out.write(&results)?;
    print_summary(&results, &out);
    Ok(())
}

/// Where and how often to checkpoint; a fresh run refuses a directory that already holds
/// checkpoints (of another run, or of this one: resume it instead).
fn checkpointing(
    checkpoint_dir: Option<&PathBuf>,
    checkpoint_every: Option<u64>,
    resume: Option<&PathBuf>,
    out: &Destination,
) -> Result<Option<Checkpointing>> {
    let resuming = resume.is_some();
    let dir = checkpoint_dir.or(resume).cloned();
    if checkpoint_every == Some(0) {
        bail!("invalid value for --checkpoint-every: must be at least 1");
    }
    let Some(dir) = dir else {
        if checkpoint_every.is_some() {
            bail!("invalid value for --checkpoint-every: it needs --checkpoint-dir");
        }
        return Ok(None);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = CheckpointDir::new(dir);
    results::check_writable(&dir.path().join("checkpoint-probe"))?;
    let fresh_into_used = !resuming || checkpoint_dir.is_some() && checkpoint_dir != resume;
    if fresh_into_used && !dir.files()?.is_empty() {
        bail!(
            "{} already holds checkpoints; continue that run with --resume {} or choose an empty directory",
            dir.path().display(),
            dir.path().display()
        );
    }
    Ok(Some(Checkpointing {
        dir,
        every: checkpoint_every,
        results_file: Some(out.recorded()),
    }))
}

/// Runs with progress on stderr (a bar on a terminal, plain lines otherwise); `note` is said
/// with the run's header, once its tasks are made.
fn run_with_progress(
    config: &ExperimentConfig,
    data: Dataset,
    checkpointing: Option<&Checkpointing>,
    resume: Option<Checkpoint>,
    note: Option<&str>,
) -> Result<RunResults> {
    let reporter = Reporter::new();
    reporter.message("evaluating at initialisation".into());
    let header = format!(
        "{} on {} ({}, {}), seed {}, {} thread(s)",
        config.method.kind().id(),
        config.benchmark,
        config.data.name(),
        config.scenario,
        config.seed,
        config.threads
    );
    let mut total_work = 0;
    let mut total_steps = 0;
    let mut tasks = config.tasks;
    let mut on_progress = |event: Progress| match event {
        Progress::Planned {
            tasks: planned_tasks,
            train_examples,
            test_examples,
            total_steps: steps,
            memory_examples,
            evaluation_images,
            total_work: work,
            estimated_seconds,
            bytes,
        } => {
            (tasks, total_steps, total_work) = (planned_tasks, steps, work);
            if let Some(note) = note {
                reporter.say(note);
            }
            reporter.say(&format!(
                "{header}: {tasks} tasks, {} training and {} test examples per task, {steps} steps",
                span(train_examples),
                span(test_examples)
            ));
            if let Some(line) = cost_note(
                config,
                memory_examples,
                evaluation_images,
                estimated_seconds,
                bytes,
            ) {
                reporter.say(&line);
            }
            reporter.start(total_work, 0);
        }
        Progress::Started { .. } => {}
        Progress::Step { step, task, work } => {
            reporter.update(
                work,
                format!("task {}/{tasks}, step {step}/{total_steps}", task + 1),
            );
        }
        Progress::Evaluating {
            after_task: Some(task),
        } => reporter.message(format!("evaluating after task {}/{tasks}", task + 1)),
        Progress::Evaluating { after_task: None } => reporter.message("evaluating".into()),
        Progress::Checkpointed { .. } => {}
    };
    let results = experiment::run_resumable(config, data, &mut on_progress, checkpointing, resume);
    drop(reporter);
    Ok(results?)
}

/// "5" or "5..9".
fn span((lo, hi): (usize, usize)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}..{hi}")
    }
}

/// Runs estimated to take longer than this are announced with their cost.
const LONG_RUN_SECONDS: f64 = 300.0;

/// Runs estimated to hold more than this are announced with their memory.
const LARGE_RUN_BYTES: u64 = 1 << 30;

/// A line on what a long or large run will cost, before it starts; `None` for a small one.
pub fn cost_note(
    config: &ExperimentConfig,
    memory_examples: u64,
    evaluation_images: u64,
    estimated_seconds: f64,
    bytes: u64,
) -> Option<String> {
    if estimated_seconds < LONG_RUN_SECONDS && bytes < LARGE_RUN_BYTES {
        return None;
    }
    Some(format!(
        "note: a large run: {} evaluation images and {} memory-gradient examples; roughly {} at {} thread(s), holding about {}",
        evaluation_images,
        memory_examples,
        episodic::cost::human_duration(estimated_seconds),
        config.threads,
        episodic::cost::human_bytes(bytes)
    ))
}

/// The summary table: on standard output, or on standard error when the results JSON
/// itself goes to standard output. A closed pipe (`| head`) is not an error.
fn print_summary(r: &RunResults, out: &Destination) {
    use std::io::Write as _;
    let text = summary(r, out);
    let _ = match out {
        Destination::Stdout => std::io::stderr().write_all(text.as_bytes()),
        Destination::File(_) => std::io::stdout().write_all(text.as_bytes()),
    };
}

fn summary(r: &RunResults, out: &Destination) -> String {
    use std::fmt::Write as _;
    let c = &r.config;
    let fmt = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:+.4}"));
    let t = &r.timing;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} on {}: {} tasks x {} samples, seed {}, {} thread(s)",
        c.method.kind().id(),
        c.benchmark,
        c.tasks,
        c.samples_per_task
            .map_or_else(|| "all".to_string(), |n| n.to_string()),
        c.seed,
        c.threads
    );
    let _ = writeln!(s, "  {:<16} {:>8}", "metric", "value");
    let _ = writeln!(s, "  {:<16} {:>8.4}", "ACC", r.metrics.acc);
    for (name, paper, reference) in [
        ("BWT", r.metrics.bwt, r.metrics_reference_convention.bwt),
        ("FWT", r.metrics.fwt, r.metrics_reference_convention.fwt),
    ] {
        let _ = writeln!(
            s,
            "  {name:<16} {:>8}   (reference convention, /T: {})",
            fmt(paper),
            fmt(reference)
        );
    }
    let kind = c.method.kind();
    if kind.projects_gradients() {
        let skipped = if kind == episodic::config::MethodKind::Gem {
            format!(", {} skipped (no trustworthy QP solution)", r.skipped_steps)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:<16} {:>8}   of {} steps{skipped}",
            "projected steps", r.projected_steps, r.steps
        );
    }
    let _ = writeln!(
        s,
        "  {:<16} {:>7.1}s   (train {:.1}s, evaluation {:.1}s; data loading {:.1}s)",
        "time", t.total_seconds, t.train_seconds, t.evaluation_seconds, t.data_seconds
    );
    let _ = writeln!(s, "results: {}", out.describe());
    s
}
