//! `episodic bench`: times whole runs, each in a fresh child process so that its peak
//! memory is its own, and prints where the time goes.

use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use episodic::results::RunResults;

use crate::args::{all_cores, BenchArgs};

/// Runs the configured experiment once per thread count and prints the figures.
pub fn bench(args: &BenchArgs) -> Result<()> {
    let mut threads = args.threads.clone();
    if threads.is_empty() {
        threads = vec![1, all_cores()];
        threads.dedup();
    }
    if let Some(0) = threads.iter().min() {
        bail!("invalid value for --threads: must be at least 1");
    }
    // Validate once here so that a bad option fails before any child runs.
    let config = args.experiment.config(1)?;
    let exe = std::env::current_exe().context("cannot locate the episodic binary")?;
    let dir = tempfile_dir()?;
    println!(
        "bench: {} on {}, {} tasks x {} samples, seed {}",
        config.method.kind().id(),
        config.benchmark,
        config.tasks,
        config.samples_per_task,
        config.seed
    );
    println!(
        "| threads | total s | memory gradients s | QP + projection s | evaluation s | rest s | peak RSS MB | ACC |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in &threads {
        let out = dir.join(format!("bench-{n}.json"));
        let status = Command::new(&exe)
            .arg("run")
            .args(child_args(args))
            .args(["--threads", &n.to_string(), "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot start a benchmark run")?;
        if !status.success() {
            bail!("benchmark run with {n} thread(s) failed ({status})");
        }
        let text = std::fs::read_to_string(&out)
            .with_context(|| format!("cannot read {}", out.display()))?;
        let r: RunResults =
            serde_json::from_str(&text).context("cannot parse benchmark results")?;
        let t = r.timing;
        let rest = t.total_seconds
            - t.memory_gradient_seconds
            - t.projection_seconds
            - t.evaluation_seconds;
        let rss = t
            .peak_rss_bytes
            .map_or_else(|| "n/a".into(), |b| format!("{:.0}", b as f64 / 1e6));
        println!(
            "| {n} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {rss} | {:.4} |",
            t.total_seconds,
            t.memory_gradient_seconds,
            t.projection_seconds,
            t.evaluation_seconds,
            rest,
            r.metrics.acc
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("(total excludes data loading; rest = per-batch data preparation, current-batch gradient, SGD step)");
    Ok(())
}

/// The `run` options that reproduce this bench's experiment.
fn child_args(args: &BenchArgs) -> Vec<String> {
    let e = &args.experiment;
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|v| v.get_name().to_string()).unwrap_or_default()
    };
    let mut v: Vec<String> = vec![
        "--benchmark".into(),
        name(e.benchmark.to_possible_value()),
        "--method".into(),
        name(e.method.to_possible_value()),
    ];
    let m = &e.method_options;
    for (flag, value) in [
        ("--seed", Some(e.seed.to_string())),
        ("--tasks", e.tasks.map(|n| n.to_string())),
        ("--samples-per-task", Some(e.samples_per_task.to_string())),
        ("--batch-size", Some(e.batch_size.to_string())),
        ("--epochs", Some(e.epochs.to_string())),
        ("--eval-every", e.eval_every.map(|n| n.to_string())),
        ("--lr", m.lr.map(|v| v.to_string())),
        (
            "--memories-per-task",
            m.memories_per_task.map(|v| v.to_string()),
        ),
        ("--margin", m.margin.map(|v| v.to_string())),
        ("--strength", m.strength.map(|v| v.to_string())),
        ("--sample-size", m.sample_size.map(|v| v.to_string())),
        ("--memory-size", m.memory_size.map(|v| v.to_string())),
        ("--finetune", m.finetune.map(|v| v.to_string())),
    ] {
        if let Some(value) = value {
            v.push(flag.into());
            v.push(value);
        }
    }
    if e.shuffle_tasks {
        v.push("--shuffle-tasks".into());
    }
    if let Some(dir) = &e.data_dir {
        v.push("--data-dir".into());
        v.push(dir.display().to_string());
    }
    v
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("episodic-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
