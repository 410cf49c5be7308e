//! `episodic bench`: times whole runs, each in a fresh child process so that its peak
//! memory is its own, and prints where the time goes.

use std::process::Command;

use anyhow::{bail, Context, Result};
use episodic::results::RunResults;

use crate::args::{all_cores, BenchArgs};
use crate::resolve::{self, DataCache};

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
    let config = resolve::resolve(&args.options, 1, &mut DataCache::default())?.config;
    let exe = std::env::current_exe().context("cannot locate the episodic binary")?;
    let dir = tempfile_dir()?;
    outln!(
        "bench: {} on {}, {} tasks x {} samples, seed {}",
        config.method.kind().id(),
        config.benchmark,
        config.tasks,
        config
            .samples_per_task
            .map_or_else(|| "all".to_string(), |n| n.to_string()),
        config.seed
    );
    outln!(
        "| threads | total s | memory gradients s | violation check s | QP s | projection s | evaluation s | rest s | peak RSS MB | ACC |"
    );
    outln!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in &threads {
        let out = dir.join(format!("bench-{n}.json"));
        let child = Command::new(&exe)
            .arg("run")
            .args(args.options.to_args())
            .args(["--threads", &n.to_string(), "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .context("cannot start a benchmark run")?;
        if !child.status.success() {
            let stderr = String::from_utf8_lossy(&child.stderr);
            let why = stderr.lines().last().unwrap_or("no message");
            bail!(
                "benchmark run with {n} thread(s) failed ({}): {why}",
                child.status
            );
        }
        let text = std::fs::read_to_string(&out)
            .with_context(|| format!("cannot read {}", out.display()))?;
        let r: RunResults =
            serde_json::from_str(&text).context("cannot parse benchmark results")?;
        let t = r.timing;
        let rest = t.total_seconds
            - t.memory_gradient_seconds
            - t.violation_check_seconds
            - t.qp_seconds
            - t.projection_seconds
            - t.evaluation_seconds;
        let rss = t
            .peak_rss_bytes
            .map_or_else(|| "n/a".into(), |b| format!("{:.0}", b as f64 / 1e6));
        outln!(
            "| {n} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {rss} | {:.4} |",
            t.total_seconds,
            t.memory_gradient_seconds,
            t.violation_check_seconds,
            t.qp_seconds,
            t.projection_seconds,
            t.evaluation_seconds,
            rest,
            r.metrics.acc
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    outln!("(total excludes data loading; rest = per-batch data preparation, current-batch gradient, SGD step)");
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("episodic-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
