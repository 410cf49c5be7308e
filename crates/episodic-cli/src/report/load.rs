//! Reading results files: what the report reads of them, checked (shapes, accuracies,
//! metrics against the matrix), and runs of one method with different settings labelled as
//! different series.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::slug;

/// The fields of a results file that the report reads; unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct RunFile {
    /// The resolved configuration.
    pub(crate) config: ConfigFile,
    /// ACC, BWT, FWT (paper convention).
    pub(crate) metrics: MetricsFile,
    /// `R[i][j]`: accuracy on task j after training task i.
    pub(crate) accuracy_matrix: Vec<Vec<f64>>,
    /// Accuracy of each task at initialisation.
    #[serde(default)]
    pub(crate) baseline: Option<Vec<f64>>,
    /// Every evaluation, in order.
    #[serde(default)]
    pub(crate) evaluations: Vec<EvaluationFile>,
    /// Mini-batches trained.
    pub(crate) steps: u64,
    /// Wall-clock figures.
    #[serde(default)]
    pub(crate) timing: Option<TimingFile>,
}

/// `config` of a results file.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfigFile {
    /// Benchmark id, e.g. "mnist-permutations".
    pub(crate) benchmark: String,
    /// Seed of the run.
    pub(crate) seed: u64,
    /// The method's configuration.
    pub(crate) method: MethodFile,
    /// Every other setting (kept to tell apart runs that differ in settings).
    #[serde(flatten)]
    pub(crate) rest: serde_json::Map<String, serde_json::Value>,
}

/// `config.method` of a results file.
#[derive(Debug, Deserialize)]
pub(crate) struct MethodFile {
    /// Method id, e.g. "gem".
    pub(crate) name: String,
    /// Its hyper-parameters.
    #[serde(flatten)]
    pub(crate) params: serde_json::Map<String, serde_json::Value>,
}

/// `metrics` of a results file.
#[derive(Debug, Deserialize)]
pub(crate) struct MetricsFile {
    /// Average final accuracy.
    pub(crate) acc: f64,
    /// Backward transfer, `null` with one task.
    pub(crate) bwt: Option<f64>,
    /// Forward transfer, `null` with one task.
    pub(crate) fwt: Option<f64>,
}

/// One entry of `evaluations`.
#[derive(Debug, Deserialize)]
pub(crate) struct EvaluationFile {
    /// Mini-batches trained before the evaluation.
    pub(crate) step: u64,
    /// The task just finished, or `null` (initialisation or an intermediate evaluation).
    #[serde(default)]
    pub(crate) after_task: Option<usize>,
    /// Test accuracy on each task.
    pub(crate) accuracies: Vec<f64>,
}

/// `timing` of a results file.
#[derive(Debug, Deserialize)]
pub(crate) struct TimingFile {
    /// Whole run, excluding data loading.
    pub(crate) total_seconds: f64,
}

/// One evaluation placed on the training axis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// Tasks trained so far: task boundaries are at integers.
    pub x: f64,
    /// Test accuracy on each task.
    pub accuracies: Vec<f64>,
}

/// One run, read and checked.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// The file it came from.
    pub path: PathBuf,
    /// Method id.
    pub method: String,
    /// Benchmark id.
    pub benchmark: String,
    /// Seed.
    pub seed: u64,
    /// Average final accuracy.
    pub acc: f64,
    /// Backward transfer.
    pub bwt: Option<f64>,
    /// Forward transfer.
    pub fwt: Option<f64>,
    /// Wall time of the run, if recorded.
    pub seconds: Option<f64>,
    /// The T x T accuracy matrix.
    pub matrix: Vec<Vec<f64>>,
    /// Evaluations in training order, one per position on the axis.
    pub curve: Vec<Point>,
    /// The settings besides method, benchmark, seed and threads, flattened to
    /// `name -> value` (`learning_rate -> 0.1`, `tasks -> 20`).
    pub settings: BTreeMap<String, String>,
}

impl Run {
    /// Number of tasks.
    pub fn tasks(&self) -> usize {
        self.matrix.len()
    }

    /// File stem of this run's accuracy-matrix figure.
    pub fn matrix_stem(&self) -> String {
        format!(
            "matrix-{}-{}-seed{}",
            slug(&self.method),
            slug(&self.benchmark),
            self.seed
        )
    }
}

/// Reads and checks one results file; every error names it.
pub(crate) fn load_run(path: &Path) -> Result<Run> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read results file {}", path.display()))?;
    let file: RunFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a results file", path.display()))?;
    run_from_file(path, file).with_context(|| format!("bad results file {}", path.display()))
}

/// Checks a parsed results file and turns it into a [`Run`].
pub(crate) fn run_from_file(path: &Path, file: RunFile) -> Result<Run> {
    let method = file.config.method.name;
    let benchmark = file.config.benchmark;
    if method.trim().is_empty() || benchmark.trim().is_empty() {
        bail!("empty method or benchmark name");
    }
    let matrix = file.accuracy_matrix;
    let tasks = matrix.len();
    if tasks == 0 {
        bail!("the accuracy matrix is empty");
    }
    for (i, row) in matrix.iter().enumerate() {
        if row.len() != tasks {
            bail!(
                "the accuracy matrix is not square: row {i} has {} entries for {tasks} tasks",
                row.len()
            );
        }
        check_accuracies(row, &format!("accuracy_matrix[{i}]"))?;
    }
    let metrics = file.metrics;
    for (name, value) in [
        ("acc", Some(metrics.acc)),
        ("bwt", metrics.bwt),
        ("fwt", metrics.fwt),
    ] {
        if let Some(v) = value {
            if !v.is_finite() {
                bail!("metrics.{name} is {v}");
            }
        }
    }
    let seconds = match file.timing {
        Some(t) if !t.total_seconds.is_finite() || t.total_seconds < 0.0 => {
            bail!("timing.total_seconds is {}", t.total_seconds)
        }
        Some(t) => Some(t.total_seconds),
        None => None,
    };
    if let Some(b) = &file.baseline {
        if b.len() != tasks {
            bail!("baseline has {} entries for {tasks} tasks", b.len());
        }
        check_accuracies(b, "baseline")?;
    }
    check_metrics_match_matrix(&metrics, &matrix, file.baseline.as_deref())?;
    let curve = curve(
        &file.evaluations,
        file.baseline.as_deref(),
        &matrix,
        file.steps,
    )?;
    let mut settings = BTreeMap::new();
    flatten_settings(
        "",
        &serde_json::Value::Object(file.config.rest),
        &mut settings,
    );
    flatten_settings(
        "",
        &serde_json::Value::Object(file.config.method.params),
        &mut settings,
    );
    settings.remove("threads");
    Ok(Run {
        settings,
        path: path.to_path_buf(),
        method,
        benchmark,
        seed: file.config.seed,
        acc: metrics.acc,
        bwt: metrics.bwt,
        fwt: metrics.fwt,
        seconds,
        matrix,
        curve,
    })
}

/// Writes the leaves of `value` into `out`, named by their last key (or `parent.key` when a
/// name repeats).
pub(crate) fn flatten_settings(
    prefix: &str,
    value: &serde_json::Value,
    out: &mut BTreeMap<String, String>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let name = if prefix.is_empty() || !out.contains_key(key.as_str()) {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match v {
                    serde_json::Value::Object(_) => flatten_settings(key, v, out),
                    other => {
                        out.insert(name, compact(other));
                    }
                }
            }
        }
        other => {
            out.insert(prefix.to_string(), compact(other));
        }
    }
}

pub(crate) fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs of one method on one benchmark with different settings are different series: each
/// gets the method's name followed by the settings that tell it apart (`gem learning_rate=0.05`).
/// Runs whose settings agree are seeds of one series and keep the method's name.
pub(crate) fn label_series(runs: &mut [Run]) {
    let mut by_group: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        by_group
            .entry((run.benchmark.clone(), run.method.clone()))
            .or_default()
            .push(i);
    }
    for members in by_group.into_values() {
        let first = &runs[members[0]].settings;
        let keys: BTreeSet<String> = members
            .iter()
            .flat_map(|&i| runs[i].settings.keys().cloned())
            .collect();
        let differing: Vec<String> = keys
            .into_iter()
            .filter(|k| {
                members
                    .iter()
                    .any(|&i| runs[i].settings.get(k) != first.get(k))
            })
            .collect();
        if differing.is_empty() {
            continue;
        }
        for &i in &members {
            let run = &mut runs[i];
            let parts: Vec<String> = differing
                .iter()
                .map(|k| {
                    let value = run.settings.get(k).map_or("-", |v| v.as_str());
                    format!("{k}={value}")
                })
                .collect();
            run.method = format!("{} {}", run.method, parts.join(" "));
        }
    }
}

/// Fails unless the file's metrics are those its accuracy matrix (and baseline, for FWT)
/// gives: the report shows metrics recomputed from the matrix, so an edited or damaged
/// `metrics` or `accuracy_matrix` is refused rather than shown.
pub(crate) fn check_metrics_match_matrix(
    stated: &MetricsFile,
    matrix: &[Vec<f64>],
    baseline: Option<&[f64]>,
) -> Result<()> {
    let zeros = vec![0.0; matrix.len()];
    let computed = episodic::metrics::paper(baseline.unwrap_or(&zeros), matrix);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    let mut pairs = vec![("acc", Some(stated.acc), Some(computed.acc))];
    pairs.push(("bwt", stated.bwt, computed.bwt));
    if baseline.is_some() {
        pairs.push(("fwt", stated.fwt, computed.fwt));
    }
    for (name, stated, computed) in pairs {
        let agree = match (stated, computed) {
            (Some(a), Some(b)) => close(a, b),
            (None, None) => true,
            _ => false,
        };
        if !agree {
            let show = |v: Option<f64>| v.map_or_else(|| "null".to_string(), |v| format!("{v}"));
            bail!(
                "metrics.{name} is {} but its accuracy matrix gives {}: the file was edited or damaged",
                show(stated),
                show(computed)
            );
        }
    }
    Ok(())
}

/// Fails unless every value is a finite accuracy in [0, 1].
pub(crate) fn check_accuracies(values: &[f64], what: &str) -> Result<()> {
    match values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        Some(v) => bail!("{what} holds {v}, not an accuracy in [0, 1]"),
        None => Ok(()),
    }
}

/// Places the evaluations on the axis of tasks trained: a task-end evaluation after task t
/// at t + 1, any other at step / (steps per task). Without evaluations, the baseline (if
/// any) and the matrix rows give the task-end points.
pub(crate) fn curve(
    evaluations: &[EvaluationFile],
    baseline: Option<&[f64]>,
    matrix: &[Vec<f64>],
    steps: u64,
) -> Result<Vec<Point>> {
    let tasks = matrix.len();
    if evaluations.is_empty() {
        let start = baseline.map(|b| Point {
            x: 0.0,
            accuracies: b.to_vec(),
        });
        let ends = matrix.iter().enumerate().map(|(i, row)| Point {
            x: (i + 1) as f64,
            accuracies: row.clone(),
        });
        return Ok(start.into_iter().chain(ends).collect());
    }
    let steps_per_task = steps as f64 / tasks as f64;
    let mut points: Vec<(f64, bool, Vec<f64>)> = Vec::with_capacity(evaluations.len());
    for (k, e) in evaluations.iter().enumerate() {
        if e.accuracies.len() != tasks {
            bail!(
                "evaluations[{k}] has {} accuracies for {tasks} tasks",
                e.accuracies.len()
            );
        }
        check_accuracies(&e.accuracies, &format!("evaluations[{k}]"))?;
        let x = match e.after_task {
            Some(t) if t >= tasks => bail!(
                "evaluations[{k}].after_task is {t} (tasks count from 0 in the file), beyond the {tasks} tasks"
            ),
            Some(t) => (t + 1) as f64,
            None if e.step == 0 => 0.0,
            None if e.step > steps => {
                bail!("evaluations[{k}] is at step {} of {steps}", e.step)
            }
            None => e.step as f64 / steps_per_task,
        };
        points.push((x, e.after_task.is_some(), e.accuracies.clone()));
    }
    // Task-end evaluations win over an intermediate one at the same position.
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut curve: Vec<Point> = Vec::with_capacity(points.len());
    for (x, _, accuracies) in points {
        match curve.last_mut() {
            Some(last) if axis_key(last.x) == axis_key(x) => last.accuracies = accuracies,
            _ => curve.push(Point { x, accuracies }),
        }
    }
    Ok(curve)
}

/// A position on the training axis as an exact key, to match positions across runs.
pub(crate) fn axis_key(x: f64) -> i64 {
    (x * 1e6).round() as i64
}
