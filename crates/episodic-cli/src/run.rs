//! `episodic run`: one experiment, a progress bar, a summary table, the results JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use episodic::checkpoint::{Checkpoint, CheckpointDir};
use episodic::config::ExperimentConfig;
use episodic::data::Dataset;
use episodic::experiment::{self, Checkpointing, Progress};
use episodic::results::{self, RunResults};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{all_cores, RunArgs};
use crate::options::Options;
use crate::resolve::{self, DataCache};

/// What a run needs beyond its configuration: where to write, where to checkpoint.
struct Plan {
    config: ExperimentConfig,
    data: Dataset,
    out: Option<PathBuf>,
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
            let config = loaded.checkpoint.progress.config.clone();
            let data_dir = resolve::resolve_data_dir(args.options.data_dir.as_ref());
            let (data, _) = DataCache::default().get(&config.data, &data_dir, config.seed)?;
            let plan = Plan {
                config,
                data,
                out: args.out.clone(),
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
                print!("{}", printed.to_toml()?);
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
            let plan = Plan {
                config: resolved.config,
                data: resolved.data,
                out: options.out,
                checkpoint_dir: options.checkpoint_dir,
                checkpoint_every: options.checkpoint_every,
                note,
            };
            (plan, None)
        }
    };
    let data_seconds = data_started.elapsed().as_secs_f64();
    let config = plan.config;
    let checkpointing = checkpointing(
        plan.checkpoint_dir.as_ref(),
        plan.checkpoint_every,
        args.resume.as_ref(),
    )?;
    let out = plan.out.clone().unwrap_or_else(|| default_out(&config));
    if plan.out.is_none() {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    // Fail now, not after a long run, if the results cannot be written.
    results::check_writable(&out)?;

    let mut results = run_with_progress(
        &config,
        plan.data,
        checkpointing.as_ref(),
        resume,
        plan.note.as_deref(),
    )?;
    results.timing.data_seconds = data_seconds;
    results.git_revision = option_env!("EPISODIC_GIT_REVISION").map(str::to_string);
    results.write_json(&out)?;
    print_summary(&results, &out);
    Ok(())
}

/// Where and how often to checkpoint; a fresh run refuses a directory that already holds
/// checkpoints (of another run, or of this one: resume it instead).
fn checkpointing(
    checkpoint_dir: Option<&PathBuf>,
    checkpoint_every: Option<u64>,
    resume: Option<&PathBuf>,
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
    }))
}

fn default_out(config: &ExperimentConfig) -> PathBuf {
    PathBuf::from("results").join(format!(
        "{}-{}-seed{}.json",
        config.method.kind().id(),
        config.benchmark,
        config.seed
    ))
}

/// Runs with a progress bar on stderr (drawn only when stderr is a terminal); `note` is said
/// with the run's header, once its tasks are made.
fn run_with_progress(
    config: &ExperimentConfig,
    data: Dataset,
    checkpointing: Option<&Checkpointing>,
    resume: Option<Checkpoint>,
    note: Option<&str>,
) -> Result<RunResults> {
    let bar = ProgressBar::new_spinner();
    bar.set_message("evaluating at initialisation");
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} steps  {msg}  (ETA {eta})",
    )?;
    let tasks = config.tasks;
    let header = format!(
        "{} on {} ({}, {}), seed {}, {} thread(s)",
        config.method.kind().id(),
        config.benchmark,
        config.data.name(),
        config.scenario,
        config.seed,
        config.threads
    );
    let mut on_progress = |event: Progress| match event {
        Progress::Planned {
            tasks,
            train_examples,
            test_examples,
            total_steps,
        } => {
            let range = |(lo, hi): (usize, usize)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}..{hi}")
                }
            };
            bar.suspend(|| {
                if let Some(note) = note {
                    eprintln!("{note}");
                }
                eprintln!(
                    "{header}: {tasks} tasks, {} training and {} test examples per task, {total_steps} steps",
                    range(train_examples),
                    range(test_examples)
                )
            });
        }
        Progress::Started { total_steps, .. } => {
            bar.set_length(total_steps);
            bar.set_style(style.clone());
        }
        Progress::Step { step, task } => {
            bar.set_position(step);
            bar.set_message(format!("task {}/{tasks}", task + 1));
        }
        Progress::Evaluating {
            after_task: Some(task),
        } => {
            bar.set_message(format!("evaluating after task {}/{tasks}", task + 1));
        }
        Progress::Evaluating { after_task: None } | Progress::Checkpointed { .. } => {}
    };
    let results = experiment::run_resumable(config, data, &mut on_progress, checkpointing, resume);
    bar.finish_and_clear();
    Ok(results?)
}

fn print_summary(r: &RunResults, out: &Path) {
    let c = &r.config;
    let fmt = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:+.4}"));
    let t = &r.timing;
    println!(
        "{} on {}: {} tasks x {} samples, seed {}, {} thread(s)",
        c.method.kind().id(),
        c.benchmark,
        c.tasks,
        c.samples_per_task
            .map_or_else(|| "all".to_string(), |n| n.to_string()),
        c.seed,
        c.threads
    );
    println!("  {:<16} {:>8}", "metric", "value");
    println!("  {:<16} {:>8.4}", "ACC", r.metrics.acc);
    println!(
        "  {:<16} {:>8}   (reference convention, /T: {})",
        "BWT",
        fmt(r.metrics.bwt),
        fmt(r.metrics_reference_convention.bwt)
    );
    println!(
        "  {:<16} {:>8}   (reference convention, /T: {})",
        "FWT",
        fmt(r.metrics.fwt),
        fmt(r.metrics_reference_convention.fwt)
    );
    println!(
        "  {:<16} {:>8}   of {} steps",
        "projected steps", r.projected_steps, r.steps
    );
    println!(
        "  {:<16} {:>7.1}s   (train {:.1}s, evaluation {:.1}s; data loading {:.1}s)",
        "time", t.total_seconds, t.train_seconds, t.evaluation_seconds, t.data_seconds
    );
    println!("results: {}", out.display());
}
