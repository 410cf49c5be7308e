//! `episodic run`: one experiment, a progress bar, a summary table, the results JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use episodic::checkpoint::{Checkpoint, CheckpointDir};
use episodic::config::ExperimentConfig;
use episodic::data::{Checksums, Mnist};
use episodic::experiment::{self, Checkpointing, Progress};
use episodic::results::{self, RunResults};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{all_cores, RunArgs};

/// Runs the experiment `args` describe, or continues the one saved in `--resume`.
pub fn run(args: &RunArgs) -> Result<()> {
    let (config, resume) = match &args.resume {
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
            (config, Some(loaded.checkpoint))
        }
        None => (
            args.experiment
                .config(args.threads.unwrap_or_else(all_cores))?,
            None,
        ),
    };
    let checkpointing = checkpointing(args, resume.is_some())?;
    let out = args.out.clone().unwrap_or_else(|| default_out(&config));
    if args.out.is_none() {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    // Fail now, not after a long run, if the results cannot be written.
    results::check_writable(&out)?;

    let data_started = Instant::now();
    let data = Mnist::load(&args.experiment.data_dir(), Checksums::Verify)?;
    let data_seconds = data_started.elapsed().as_secs_f64();

    let mut results = run_with_progress(&config, data, checkpointing.as_ref(), resume)?;
    results.timing.data_seconds = data_seconds;
    results.git_revision = option_env!("EPISODIC_GIT_REVISION").map(str::to_string);
    results.write_json(&out)?;
    print_summary(&results, &out);
    Ok(())
}

/// Where and how often to checkpoint; a fresh run refuses a directory that already holds
/// checkpoints (of another run, or of this one: resume it instead).
fn checkpointing(args: &RunArgs, resuming: bool) -> Result<Option<Checkpointing>> {
    let dir = args.checkpoint_dir.clone().or_else(|| args.resume.clone());
    if args.checkpoint_every == Some(0) {
        bail!("invalid value for --checkpoint-every: must be at least 1");
    }
    let Some(dir) = dir else {
        if args.checkpoint_every.is_some() {
            bail!("invalid value for --checkpoint-every: it needs --checkpoint-dir");
        }
        return Ok(None);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = CheckpointDir::new(dir);
    results::check_writable(&dir.path().join("checkpoint-probe"))?;
    let fresh_into_used =
        !resuming || args.checkpoint_dir.is_some() && args.checkpoint_dir != args.resume;
    if fresh_into_used && !dir.files()?.is_empty() {
        bail!(
            "{} already holds checkpoints; continue that run with --resume {} or choose an empty directory",
            dir.path().display(),
            dir.path().display()
        );
    }
    Ok(Some(Checkpointing {
        dir,
        every: args.checkpoint_every,
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

/// Runs with a progress bar on stderr (drawn only when stderr is a terminal).
fn run_with_progress(
    config: &ExperimentConfig,
    data: Mnist,
    checkpointing: Option<&Checkpointing>,
    resume: Option<Checkpoint>,
) -> Result<RunResults> {
    let bar = ProgressBar::new_spinner();
    bar.set_message("evaluating at initialisation");
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} steps  {msg}  (ETA {eta})",
    )?;
    let tasks = config.tasks;
    let mut on_progress = |event: Progress| match event {
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
        c.samples_per_task,
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
