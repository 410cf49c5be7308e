//! `episodic report`: results files in, figures, `summary.csv` and one HTML page out.
//!
//! This module loads and checks the results files, groups the runs by (benchmark, method)
//! and averages them over seeds; [`figures`] draws, [`html`] writes the page.
//!
//! Results files are read through small structs of their own holding only the fields the
//! report needs, so that fields added to `RunResults` later do not break reading.

mod figures;
mod html;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use episodic::results;
use serde::Deserialize;

use crate::args::ReportArgs;

/// Methods in the order the figures and tables show them; other methods follow,
/// alphabetically.
const KNOWN_METHODS: [&str; 8] = [
    "single",
    "independent",
    "multimodal",
    "ewc",
    "icarl",
    "agem",
    "er",
    "gem",
];

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// The page, `DIR/index.html`.
    pub index: PathBuf,
    /// Every file written, the page included.
    pub files: Vec<PathBuf>,
    /// Number of runs reported.
    pub runs: usize,
}

/// `episodic report`: writes the report and says where it is.
pub fn report(args: &ReportArgs) -> Result<()> {
    let paths = expand_results_paths(&args.results, &args.out)?;
    let summary = write_report(&paths, &args.out)?;
    outln!(
        "report of {} run(s), {} files: {}",
        summary.runs,
        summary.files.len(),
        summary.index.display()
    );
    Ok(())
}

/// The results files named by `given`: files as they are, folders searched recursively for
/// results JSON files (other JSON files, and the report folder `out` itself, are skipped), in
/// sorted order so that a merged report does not depend on the order folders list files.
pub fn expand_results_paths(given: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                if path != out {
                    walk(&path, out, found)?;
                }
            } else if path.extension().is_some_and(|e| e == "json") && looks_like_results(&path) {
                found.push(path);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    for path in given {
        if path.is_dir() {
            let before = found.len();
            walk(path, out, &mut found)?;
            if found.len() == before {
                bail!("{} holds no results files", path.display());
            }
        } else {
            found.push(path.clone());
        }
    }
    Ok(found)
}

/// Whether the JSON file at `path` is a results file (has a configuration and an accuracy
/// matrix); unreadable files count as results so that their error is reported.
fn looks_like_results(path: &Path) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        config: serde::de::IgnoredAny,
        #[allow(dead_code)]
        accuracy_matrix: serde::de::IgnoredAny,
    }
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<Probe>(&text).is_ok(),
        Err(_) => true,
    }
}

/// Reads the results files `paths` and writes into `out` (created if needed) the figures
/// (SVG and PNG), `summary.csv` and `index.html`, which shows them all.
///
/// Fails, naming the file, on a results file that cannot be read or is not a results file,
/// and on two files that describe the same (method, benchmark, seed).
pub fn write_report(paths: &[PathBuf], out: &Path) -> Result<ReportSummary> {
    if paths.is_empty() {
        bail!("no results files given");
    }
    let model = Model::new(load_runs(paths)?)?;

    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut files = figures::write_all(&model, out)?;
    let csv_path = out.join(SUMMARY_CSV);
    results::write_atomically(&csv_path, summary_csv(&model.runs).trim_end().as_bytes())?;
    files.push(csv_path);

    let page = html::page(&model, &files);
    let index = out.join("index.html");
    results::write_atomically(&index, page.as_bytes())?;
    files.push(index.clone());
    remove_stale_files(out, &files)?;
    Ok(ReportSummary {
        index,
        files,
        runs: model.runs.len(),
    })
}

/// The list of the files a report wrote into its directory, kept there so that the next
/// report into the same directory removes those it does not write again (and nothing else).
const MANIFEST: &str = ".episodic-report-files";

/// Removes the files the previous report in `out` wrote (its manifest says which) that are
/// not among `written`, then records `written` as the new manifest. Only plain file names
/// are ever removed, never anything the report did not write.
fn remove_stale_files(out: &Path, written: &[PathBuf]) -> Result<()> {
    let manifest = out.join(MANIFEST);
    let names: BTreeSet<String> = written
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    if let Ok(previous) = std::fs::read_to_string(&manifest) {
        for name in previous.lines() {
            let plain = !name.is_empty()
                && name != "."
                && name != ".."
                && name != MANIFEST
                && !name.contains(['/', '\\']);
            if plain && !names.contains(name) {
                match std::fs::remove_file(out.join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => bail!("cannot remove the stale {}: {e}", out.join(name).display()),
                }
            }
        }
    }
    let list: Vec<&str> = names.iter().map(String::as_str).collect();
    results::write_atomically(&manifest, list.join("\n").as_bytes())?;
    Ok(())
}

/// Reads and checks the results files `paths`; runs of one method and benchmark that differ
/// in settings are labelled as different series (see [`label_series`]).
pub(crate) fn load_runs(paths: &[PathBuf]) -> Result<Vec<Run>> {
    let mut runs = paths
        .iter()
        .map(|p| load_run(p))
        .collect::<Result<Vec<_>>>()?;
    label_series(&mut runs);
    Ok(runs)
}

/// Name of the per-run table in the output directory.
const SUMMARY_CSV: &str = "summary.csv";

// ---------------------------------------------------------------------------------------------
// Reading results files

/// The fields of a results file that the report reads; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct RunFile {
    /// The resolved configuration.
    config: ConfigFile,
    /// ACC, BWT, FWT (paper convention).
    metrics: MetricsFile,
    /// `R[i][j]`: accuracy on task j after training task i.
    accuracy_matrix: Vec<Vec<f64>>,
    /// Accuracy of each task at initialisation.
    #[serde(default)]
    baseline: Option<Vec<f64>>,
    /// Every evaluation, in order.
    #[serde(default)]
    evaluations: Vec<EvaluationFile>,
    /// Mini-batches trained.
    steps: u64,
    /// Wall-clock figures.
    #[serde(default)]
    timing: Option<TimingFile>,
}

/// `config` of a results file.
#[derive(Debug, Deserialize)]
struct ConfigFile {
    /// Benchmark id, e.g. "mnist-permutations".
    benchmark: String,
    /// Seed of the run.
    seed: u64,
    /// The method's configuration.
    method: MethodFile,
    /// Every other setting (kept to tell apart runs that differ in settings).
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// `config.method` of a results file.
#[derive(Debug, Deserialize)]
struct MethodFile {
    /// Method id, e.g. "gem".
    name: String,
    /// Its hyper-parameters.
    #[serde(flatten)]
    params: serde_json::Map<String, serde_json::Value>,
}

/// `metrics` of a results file.
#[derive(Debug, Deserialize)]
struct MetricsFile {
    /// Average final accuracy.
    acc: f64,
    /// Backward transfer, `null` with one task.
    bwt: Option<f64>,
    /// Forward transfer, `null` with one task.
    fwt: Option<f64>,
}

/// One entry of `evaluations`.
#[derive(Debug, Deserialize)]
struct EvaluationFile {
    /// Mini-batches trained before the evaluation.
    step: u64,
    /// The task just finished, or `null` (initialisation or an intermediate evaluation).
    #[serde(default)]
    after_task: Option<usize>,
    /// Test accuracy on each task.
    accuracies: Vec<f64>,
}

/// `timing` of a results file.
#[derive(Debug, Deserialize)]
struct TimingFile {
    /// Whole run, excluding data loading.
    total_seconds: f64,
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
fn load_run(path: &Path) -> Result<Run> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read results file {}", path.display()))?;
    let file: RunFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a results file", path.display()))?;
    run_from_file(path, file).with_context(|| format!("bad results file {}", path.display()))
}

/// Checks a parsed results file and turns it into a [`Run`].
fn run_from_file(path: &Path, file: RunFile) -> Result<Run> {
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
fn flatten_settings(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
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

fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs of one method on one benchmark with different settings are different series: each
/// gets the method's name followed by the settings that tell it apart (`gem learning_rate=0.05`).
/// Runs whose settings agree are seeds of one series and keep the method's name.
fn label_series(runs: &mut [Run]) {
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
fn check_metrics_match_matrix(
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
fn check_accuracies(values: &[f64], what: &str) -> Result<()> {
    match values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        Some(v) => bail!("{what} holds {v}, not an accuracy in [0, 1]"),
        None => Ok(()),
    }
}

/// Places the evaluations on the axis of tasks trained: a task-end evaluation after task t
/// at t + 1, any other at step / (steps per task). Without evaluations, the baseline (if
/// any) and the matrix rows give the task-end points.
fn curve(
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
fn axis_key(x: f64) -> i64 {
    (x * 1e6).round() as i64
}

// ---------------------------------------------------------------------------------------------
// Grouping and averaging

/// Mean and spread of a few values (one per seed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 denominator); 0 for one value.
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl Stat {
    /// Mean and standard deviation of `values`; `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().collect();
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            let ss = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
            (ss / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self { mean, std, n })
    }
}

/// Mean over seeds of one evaluation position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MeanPoint {
    /// Tasks trained.
    pub x: f64,
    /// Mean and spread of the accuracy on each task.
    pub accuracies: Vec<Stat>,
}

/// The runs of one method on one benchmark (one per seed), and their averages.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Benchmark id.
    pub benchmark: String,
    /// Method id.
    pub method: String,
    /// Indices into [`Model::runs`], by seed.
    pub runs: Vec<usize>,
    /// Number of tasks (the same in every run).
    pub tasks: usize,
    /// ACC over seeds.
    pub acc: Stat,
    /// BWT over the seeds that have it.
    pub bwt: Option<Stat>,
    /// FWT over the seeds that have it.
    pub fwt: Option<Stat>,
    /// Wall time over the seeds that have it.
    pub seconds: Option<Stat>,
    /// Mean accuracies at the positions every run evaluated.
    pub curve: Vec<MeanPoint>,
}

/// Everything the figures and the page show.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    /// Every run, sorted by benchmark, method and seed.
    pub runs: Vec<Run>,
    /// Benchmarks, sorted.
    pub benchmarks: Vec<String>,
    /// Methods in display order.
    pub methods: Vec<String>,
    /// One group per (benchmark, method) present, in display order.
    pub groups: Vec<Group>,
}

/// Sort key of a method (or a series of it, `gem lr=0.05`): the known ones in a fixed order,
/// then the others alphabetically.
fn method_rank(method: &str) -> (usize, &str) {
    let name = method.split(' ').next().unwrap_or(method);
    let known = KNOWN_METHODS.iter().position(|m| *m == name);
    (known.unwrap_or(KNOWN_METHODS.len()), method)
}

impl Model {
    /// Sorts and groups `runs`; fails on two runs of the same (method, benchmark, seed) and
    /// on a group whose runs differ in their number of tasks.
    fn new(mut runs: Vec<Run>) -> Result<Self> {
        runs.sort_by(|a, b| {
            (&a.benchmark, method_rank(&a.method), a.seed).cmp(&(
                &b.benchmark,
                method_rank(&b.method),
                b.seed,
            ))
        });
        for pair in runs.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if (&a.method, &a.benchmark, a.seed) == (&b.method, &b.benchmark, b.seed) {
                bail!(
                    "{} and {} are both {} on {} with seed {}",
                    a.path.display(),
                    b.path.display(),
                    a.method,
                    a.benchmark,
                    a.seed
                );
            }
        }
        check_distinct_file_names(&runs)?;

        let mut keyed: BTreeMap<(&str, (usize, &str)), Vec<usize>> = BTreeMap::new();
        for (i, run) in runs.iter().enumerate() {
            keyed
                .entry((&run.benchmark, method_rank(&run.method)))
                .or_default()
                .push(i);
        }
        let groups = keyed
            .into_values()
            .map(|members| group(&runs, members))
            .collect::<Result<Vec<_>>>()?;
        let benchmarks: BTreeSet<&String> = runs.iter().map(|r| &r.benchmark).collect();
        let mut methods: Vec<&String> = runs.iter().map(|r| &r.method).collect();
        methods.sort_by(|a, b| method_rank(a).cmp(&method_rank(b)));
        methods.dedup();
        Ok(Self {
            benchmarks: benchmarks.into_iter().cloned().collect(),
            methods: methods.into_iter().cloned().collect(),
            groups,
            runs,
        })
    }

    /// The groups of one benchmark, in method order.
    pub fn groups_of<'a>(&'a self, benchmark: &'a str) -> impl Iterator<Item = &'a Group> + 'a {
        self.groups.iter().filter(move |g| g.benchmark == benchmark)
    }
}

/// Fails if two different names would give the same file name (names are made safe for
/// file names by [`slug`]).
fn check_distinct_file_names(runs: &[Run]) -> Result<()> {
    let mut seen: HashMap<String, &Run> = HashMap::new();
    for run in runs {
        if let Some(other) = seen.insert(run.matrix_stem(), run) {
            bail!(
                "{} ({} on {}) and {} ({} on {}) would write the same figure {}",
                other.path.display(),
                other.method,
                other.benchmark,
                run.path.display(),
                run.method,
                run.benchmark,
                run.matrix_stem()
            );
        }
    }
    let mut benchmarks: HashMap<String, &str> = HashMap::new();
    for run in runs {
        if let Some(other) = benchmarks.insert(slug(&run.benchmark), &run.benchmark) {
            if other != run.benchmark {
                bail!(
                    "benchmarks {other:?} and {:?} would write the same figures",
                    run.benchmark
                );
            }
        }
    }
    Ok(())
}

/// Averages the runs `members` (indices into `runs`, all of one method and benchmark).
fn group(runs: &[Run], members: Vec<usize>) -> Result<Group> {
    let first = &runs[members[0]];
    let tasks = first.tasks();
    if let Some(other) = members
        .iter()
        .map(|&i| &runs[i])
        .find(|r| r.tasks() != tasks)
    {
        bail!(
            "runs of {} on {} differ in their number of tasks: {} has {tasks}, {} has {}",
            first.method,
            first.benchmark,
            first.path.display(),
            other.path.display(),
            other.tasks()
        );
    }
    let of =
        |f: &dyn Fn(&Run) -> Option<f64>| Stat::of(members.iter().filter_map(|&i| f(&runs[i])));
    let acc = Stat::of(members.iter().map(|&i| runs[i].acc)).context("a group has no runs")?;
    let curves: Vec<&[Point]> = members.iter().map(|&i| runs[i].curve.as_slice()).collect();
    Ok(Group {
        benchmark: first.benchmark.clone(),
        method: first.method.clone(),
        tasks,
        acc,
        bwt: of(&|r| r.bwt),
        fwt: of(&|r| r.fwt),
        seconds: of(&|r| r.seconds),
        curve: mean_curve(&curves, tasks),
        runs: members,
    })
}

/// Mean over runs of their curves, at the positions that every run evaluated (at least the
/// task ends, where runs evaluated at different intermediate steps).
fn mean_curve(curves: &[&[Point]], tasks: usize) -> Vec<MeanPoint> {
    let mut at: BTreeMap<i64, (f64, Vec<&Point>)> = BTreeMap::new();
    for curve in curves {
        for p in *curve {
            at.entry(axis_key(p.x))
                .or_insert_with(|| (p.x, Vec::new()))
                .1
                .push(p);
        }
    }
    at.into_values()
        .filter(|(_, points)| points.len() == curves.len())
        .filter_map(|(x, points)| {
            let accuracies = (0..tasks)
                .map(|j| Stat::of(points.iter().map(|p| p.accuracies[j])))
                .collect::<Option<Vec<_>>>()?;
            Some(MeanPoint { x, accuracies })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Names and the CSV

/// `name` made safe as part of a file name: ASCII letters, digits, '-' and '_' are kept,
/// anything else becomes '_'.
pub(crate) fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One CSV field, quoted when it must be.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// `summary.csv`, the one writer of it (the report's and the suite's): one row per run, in
/// report order, every value at full precision; empty fields where a value is missing.
pub(crate) fn summary_csv(runs: &[Run]) -> String {
    let mut runs: Vec<&Run> = runs.iter().collect();
    runs.sort_by(|a, b| {
        (&a.benchmark, method_rank(&a.method), a.seed).cmp(&(
            &b.benchmark,
            method_rank(&b.method),
            b.seed,
        ))
    });
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
    let mut csv = String::from("method,benchmark,seed,ACC,BWT,FWT,seconds\n");
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{}",
            csv_field(&r.method),
            csv_field(&r.benchmark),
            r.seed,
            r.acc,
            opt(r.bwt),
            opt(r.fwt),
            opt(r.seconds)
        );
    }
    csv
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run whose accuracy on task j after task i is `base + 0.1 * (i >= j)`, with a
    /// task-end curve.
    pub(crate) fn run(method: &str, benchmark: &str, seed: u64, base: f64) -> Run {
        let tasks = 3;
        let matrix: Vec<Vec<f64>> = (0..tasks)
            .map(|i| {
                (0..tasks)
                    .map(|j| base + if i >= j { 0.1 } else { 0.0 })
                    .collect()
            })
            .collect();
        let curve = std::iter::once(Point {
            x: 0.0,
            accuracies: vec![base; tasks],
        })
        .chain(matrix.iter().enumerate().map(|(i, row)| Point {
            x: (i + 1) as f64,
            accuracies: row.clone(),
        }))
        .collect();
        Run {
            settings: BTreeMap::new(),
            path: PathBuf::from(format!("{method}-{benchmark}-{seed}.json")),
            method: method.into(),
            benchmark: benchmark.into(),
            seed,
            acc: base + 0.1,
            bwt: Some(0.0),
            fwt: (tasks > 1).then_some(0.0),
            seconds: Some(1.5),
            matrix,
            curve,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn stat_is_mean_and_sample_std() {
        let s = Stat::of([1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(close(s.mean, 2.5));
        assert!(close(s.std, (5.0f64 / 3.0).sqrt()));
        assert_eq!(s.n, 4);
        assert_eq!(
            Stat::of([0.7]),
            Some(Stat {
                mean: 0.7,
                std: 0.0,
                n: 1
            })
        );
        assert_eq!(Stat::of([]), None);
    }

    #[test]
    fn methods_known_first_in_fixed_order_then_alphabetical() {
        let runs = ["zeta", "gem", "alpha", "single", "ewc"]
            .iter()
            .map(|m| run(m, "mnist-rotations", 0, 0.5))
            .collect();
        let model = Model::new(runs).unwrap();
        assert_eq!(model.methods, ["single", "ewc", "gem", "alpha", "zeta"]);
        let order: Vec<&str> = model.runs.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(order, model.methods);
    }

    #[test]
    fn groups_by_benchmark_and_method_and_averages_seeds() {
        let runs = vec![
            run("gem", "mnist-rotations", 1, 0.6),
            run("gem", "mnist-permutations", 0, 0.5),
            run("single", "mnist-permutations", 0, 0.2),
            run("gem", "mnist-permutations", 1, 0.7),
        ];
        let model = Model::new(runs).unwrap();
        assert_eq!(model.benchmarks, ["mnist-permutations", "mnist-rotations"]);
        let keys: Vec<(&str, &str, usize)> = model
            .groups
            .iter()
            .map(|g| (g.benchmark.as_str(), g.method.as_str(), g.runs.len()))
            .collect();
        assert_eq!(
            keys,
            [
                ("mnist-permutations", "single", 1),
                ("mnist-permutations", "gem", 2),
                ("mnist-rotations", "gem", 1)
            ]
        );
        let gem = &model.groups[1];
        assert!(close(gem.acc.mean, 0.7));
        assert!(close(gem.acc.std, 0.2 / 2f64.sqrt()));
        assert_eq!(gem.curve.len(), 4);
        assert!(close(gem.curve[0].accuracies[0].mean, 0.6));
        assert!(close(gem.curve[3].accuracies[2].mean, 0.7));
        let seeds: Vec<u64> = gem.runs.iter().map(|&i| model.runs[i].seed).collect();
        assert_eq!(seeds, [0, 1]);
        assert_eq!(model.groups_of("mnist-rotations").count(), 1);
    }

    #[test]
    fn mean_curve_keeps_positions_every_run_has() {
        let mut a = run("gem", "b", 0, 0.5);
        let b = run("gem", "b", 1, 0.3);
        a.curve.insert(
            1,
            Point {
                x: 0.5,
                accuracies: vec![0.9; 3],
            },
        );
        let mean = mean_curve(&[&a.curve, &b.curve], 3);
        let xs: Vec<f64> = mean.iter().map(|p| p.x).collect();
        assert_eq!(xs, [0.0, 1.0, 2.0, 3.0]);
        let single = mean_curve(&[&a.curve], 3);
        assert_eq!(single.len(), 5);
        assert!(close(single[1].x, 0.5));
    }

    #[test]
    fn duplicate_runs_and_mismatched_tasks_are_errors() {
        let err = Model::new(vec![run("gem", "b", 0, 0.5), run("gem", "b", 0, 0.6)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("gem-b-0.json and gem-b-0.json"), "{err}");
        let mut short = run("gem", "b", 1, 0.5);
        short.matrix.pop();
        let err = Model::new(vec![run("gem", "b", 0, 0.5), short])
            .unwrap_err()
            .to_string();
        assert!(err.contains("number of tasks"), "{err}");
        let err = Model::new(vec![run("a/b", "x", 0, 0.5), run("a_b", "x", 0, 0.5)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("same figure"), "{err}");
    }

    #[test]
    fn csv_has_one_row_per_run_and_quotes_when_needed() {
        let mut r = run("gem", "mnist-rotations", 3, 0.5);
        r.bwt = None;
        let mut odd = run("my,\"method\"", "b", 0, 0.25);
        odd.seconds = None;
        odd.acc = 0.35;
        let csv = summary_csv(&[r, odd]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "method,benchmark,seed,ACC,BWT,FWT,seconds");
        // In report order: benchmark "b" first.
        assert_eq!(lines[1], "\"my,\"\"method\"\"\",b,0,0.35,0,0,");
        assert_eq!(lines[2], "gem,mnist-rotations,3,0.6,,0,1.5");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn slugs_are_safe_file_name_parts() {
        assert_eq!(slug("mnist-permutations"), "mnist-permutations");
        assert_eq!(slug("../etc/x y"), "___etc_x_y");
    }

    fn evaluation(step: u64, after_task: Option<usize>, acc: f64) -> EvaluationFile {
        EvaluationFile {
            step,
            after_task,
            accuracies: vec![acc; 2],
        }
    }

    #[test]
    fn curve_places_task_ends_at_integers_and_intermediate_by_step() {
        let matrix = vec![vec![0.5; 2]; 2];
        let evaluations = [
            evaluation(0, None, 0.1),
            evaluation(5, None, 0.3),
            evaluation(10, Some(0), 0.5),
            evaluation(10, None, 0.4),
            evaluation(15, None, 0.6),
            evaluation(20, Some(1), 0.7),
        ];
        let c = curve(&evaluations, None, &matrix, 20).unwrap();
        let got: Vec<(f64, f64)> = c.iter().map(|p| (p.x, p.accuracies[0])).collect();
        assert_eq!(
            got,
            [(0.0, 0.1), (0.5, 0.3), (1.0, 0.5), (1.5, 0.6), (2.0, 0.7)]
        );

        let fallback = curve(&[], Some(&[0.1, 0.1]), &matrix, 20).unwrap();
        assert_eq!(fallback.len(), 3);
        assert!(curve(&[evaluation(30, None, 0.5)], None, &matrix, 20).is_err());
        assert!(curve(&[evaluation(10, Some(2), 0.5)], None, &matrix, 20).is_err());
        assert!(curve(&[evaluation(10, Some(0), 1.5)], None, &matrix, 20).is_err());
    }

    #[test]
    fn load_names_the_file_and_reads_leniently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let json = r#"{
            "config": {"benchmark": "b", "seed": 2, "method": {"name": "new", "lr": 1},
                       "future": true},
            "metrics": {"acc": 0.5, "bwt": null, "fwt": null},
            "accuracy_matrix": [[0.5]],
            "evaluations": [{"step": 0, "after_task": null, "accuracies": [0.1], "extra": 1},
                            {"step": 4, "after_task": 0, "accuracies": [0.5]}],
            "steps": 4,
            "unknown": {"x": 1}
        }"#;
        std::fs::write(&path, json).unwrap();
        let run = load_run(&path).unwrap();
        assert_eq!(
            (run.method.as_str(), run.seed, run.seconds),
            ("new", 2, None)
        );
        assert_eq!(run.curve.len(), 2);

        std::fs::write(&path, "{}").unwrap();
        let err = format!("{:#}", load_run(&path).unwrap_err());
        assert!(err.contains("r.json is not a results file"), "{err}");
        std::fs::write(&path, json.replace("[[0.5]]", "[[0.5, 0.2]]")).unwrap();
        let err = format!("{:#}", load_run(&path).unwrap_err());
        assert!(
            err.contains("r.json") && err.contains("not square"),
            "{err}"
        );
        let err = format!("{:#}", load_run(&dir.path().join("none.json")).unwrap_err());
        assert!(err.contains("cannot read results file") && err.contains("none.json"));
    }

    #[test]
    fn metrics_that_contradict_the_matrix_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        // b = (0.1, 0.1); R = [[0.9, 0.3], [0.8, 0.95]]: ACC 0.875, BWT -0.1, FWT 0.2.
        let json = |acc: &str, bwt: &str, fwt: &str| {
            format!(
                r#"{{"config": {{"benchmark": "b", "seed": 0, "method": {{"name": "gem"}}}},
                    "metrics": {{"acc": {acc}, "bwt": {bwt}, "fwt": {fwt}}},
                    "baseline": [0.1, 0.1],
                    "accuracy_matrix": [[0.9, 0.3], [0.8, 0.95]], "steps": 2}}"#
            )
        };
        std::fs::write(&path, json("0.875", "-0.1", "0.2")).unwrap();
        let run = load_run(&path).unwrap();
        assert!(close(run.acc, 0.875));
        for (bad, name) in [
            (json("0.95", "-0.1", "0.2"), "metrics.acc is 0.95"),
            (json("0.875", "0.0", "0.2"), "metrics.bwt is 0"),
            (json("0.875", "-0.1", "null"), "metrics.fwt is null"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = format!("{:#}", load_run(&path).unwrap_err());
            assert!(
                err.contains(name) && err.contains("accuracy matrix gives"),
                "{err}"
            );
        }
    }
}
