//! `episodic suite`: a product of runs (every applicable method with its paper defaults over
//! seeds and benchmarks, or a grid file's lists), one results JSON per run, a summary CSV, a
//! table and a report. The runs have stable ids and command lines (`--list-jobs`), can be
//! split over machines (`--shard I/N`), and skip themselves when a complete results file of
//! the same configuration exists.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use episodic::config::{ExperimentConfig, MethodKind};
use episodic::data::Preset;
use episodic::experiment::{self, Progress};
use episodic::results::{self, RunResults};

use crate::args::{all_cores, SuiteArgs, SuiteBenchmark};
use crate::options::{Options, RUN_ONLY_KEYS};
use crate::output;
use crate::progress::Reporter;
use crate::report::Run;
use crate::resolve::{self, DataCache};

/// One run of the suite.
struct Planned {
    /// Stable id: method, benchmark, seed and a digest of the whole configuration.
    id: String,
    /// The options `episodic run` takes to do it (without --threads and --out).
    options: Options,
    config: ExperimentConfig,
    out: PathBuf,
    /// The grid's values of this run besides benchmark, method and seed (`lr=0.05`).
    series: String,
    /// Its work (see `episodic::cost::Cost`), for the suite's progress and ETA.
    work: u64,
}

/// Runs the suite `args` describe.
pub fn suite(args: &SuiteArgs) -> Result<()> {
    let threads = args.threads.unwrap_or_else(all_cores);
    let mut cache = DataCache::default();
    let grid = Grid::of(args)?;
    let all = plan(&grid, threads, &mut cache)?;
    if args.list_jobs {
        for p in &all {
            outln!("{}\t{}", p.id, command_line(p));
        }
        return Ok(());
    }
    let plan: Vec<Planned> = match args.shard {
        Some(shard) => all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % shard.count == shard.index)
            .map(|(_, p)| p)
            .collect(),
        None => all,
    };
    let out_dir = &grid.out_dir;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let csv_path = out_dir.join("summary.csv");
    results::check_writable(&csv_path)?;
    if !grid.force {
        // Before anything runs: no run may replace another configuration's results.
        for p in &plan {
            output::refuse_replacing_other(&p.out, &p.config)?;
        }
    }
    if plan.is_empty() {
        outln!("shard holds no runs");
        return Ok(());
    }

    let total_work: u64 = plan.iter().fold(0u64, |acc, p| acc.saturating_add(p.work));
    // The suite's progress is counted in work over all its runs (a GEM run weighs more than
    // a single one, a later GEM step more than an early one).
    let bar = Reporter::new();
    bar.start(total_work, 0);
    // The results files of the runs done (or kept) so far, in order.
    let mut done: Vec<PathBuf> = Vec::with_capacity(plan.len());
    let mut runs = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut done_work = 0u64;
    for (i, planned) in plan.iter().enumerate() {
        let c = &planned.config;
        let label = format!(
            "run {}/{}: {} on {}, seed {}{}",
            i + 1,
            plan.len(),
            c.method.kind().id(),
            c.benchmark,
            c.seed,
            if planned.series.is_empty() {
                String::new()
            } else {
                format!(" ({})", planned.series)
            }
        );
        match reusable(planned, grid.force) {
            Some(_) => log(&bar, format!("{label}: kept {}", planned.out.display())),
            None => {
                let tasks = c.tasks;
                let mut on_progress = |event: Progress| match event {
                    Progress::Step { task, work, .. } => bar.update(
                        done_work.saturating_add(work),
                        format!("{label}, task {}/{tasks}", task + 1),
                    ),
                    Progress::Evaluating {
                        after_task: Some(task),
                    } => bar.message(format!(
                        "{label}, evaluating after task {}/{tasks}",
                        task + 1
                    )),
                    Progress::Planned {
                        total_steps,
                        memory_examples,
                        evaluation_images,
                        estimated_seconds,
                        bytes,
                        ..
                    } => {
                        log(&bar, format!("{label}: started, {total_steps} steps"));
                        if let Some(note) = crate::run::cost_note(
                            c,
                            memory_examples,
                            evaluation_images,
                            estimated_seconds,
                            bytes,
                        ) {
                            log(&bar, format!("{label}: {note}"));
                        }
                    }
                    Progress::Started { .. }
                    | Progress::Evaluating { after_task: None }
                    | Progress::Checkpointed { .. } => {}
                };
                let data_dir = resolve::resolve_data_dir(planned.options.data_dir.as_ref());
                let (data, _) = cache.get(&c.data, &data_dir, c.seed)?;
                let mut results = match experiment::run(c, data, &mut on_progress) {
                    Ok(results) => results,
                    Err(err) => {
                        // One run's failure (a diverging loss, say) does not stop the others.
                        log(&bar, format!("{label}: failed: {err}"));
                        failures.push(format!("{} ({err})", planned.id));
                        done_work = done_work.saturating_add(planned.work);
                        continue;
                    }
                };
                results.git_revision = option_env!("EPISODIC_GIT_REVISION").map(str::to_string);
                results.write_json(&planned.out)?;
                log(
                    &bar,
                    format!(
                        "{label}: ACC {:.4} in {:.1}s -> {}",
                        results.metrics.acc,
                        results.timing.total_seconds,
                        planned.out.display()
                    ),
                );
            }
        }
        done_work = done_work.saturating_add(planned.work);
        bar.update(done_work, format!("{label}: done"));
        done.push(planned.out.clone());
        runs = crate::report::load_runs(&done)?;
        // Rewritten after every run, so an interrupted suite keeps its summary so far.
        results::write_atomically(
            &csv_path,
            crate::report::summary_csv(&runs).trim_end().as_bytes(),
        )?;
    }
    drop(bar);
    out!("{}", summary_table(&runs));
    outln!("summary: {}", csv_path.display());
    if !grid.no_report && !done.is_empty() {
        let report_dir = out_dir.join("report");
        crate::report::write_report(&done, &report_dir)?;
        outln!("report: {}", report_dir.join("index.html").display());
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} runs failed: {}",
            failures.len(),
            plan.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

/// The `episodic run` command line of a planned run.
fn command_line(p: &Planned) -> String {
    let mut words = vec!["episodic".to_string(), "run".to_string()];
    words.extend(p.options.to_args());
    words.push("--out".into());
    words.push(p.out.display().to_string());
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` quoted for a POSIX shell when it needs to be.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Prints a line above the progress bar, or on stderr when the bar is hidden (not a
/// terminal).
fn log(bar: &Reporter, line: String) {
    bar.say(&line);
}

/// The lists a suite takes the product of, in the order they vary (the first slowest), and
/// the suite's own settings.
struct Grid {
    /// `(key, values)`: run option keys with their values, as TOML values.
    axes: Vec<(String, Vec<toml::Value>)>,
    out_dir: PathBuf,
    force: bool,
    no_report: bool,
}

/// Keys a grid file may hold besides the run options.
const SUITE_KEYS: [&str; 3] = ["out-dir", "force", "no-report"];

impl Grid {
    /// The grid of the `--config` file (if any) with the flags over it.
    fn of(args: &SuiteArgs) -> Result<Self> {
        let mut grid = match &args.config {
            Some(path) => Self::read(path)?,
            None => Self {
                axes: Vec::new(),
                out_dir: args.out_dir.clone(),
                force: false,
                no_report: false,
            },
        };
        let default_out = PathBuf::from("results/suite");
        if args.config.is_none() || args.out_dir != default_out {
            grid.out_dir = args.out_dir.clone();
        }
        grid.force |= args.force;
        grid.no_report |= args.no_report;
        let s = |v: &dyn std::fmt::Display| toml::Value::String(v.to_string());
        let int = |option: &str, v: u64| -> Result<toml::Value> {
            match i64::try_from(v) {
                Ok(v) => Ok(toml::Value::Integer(v)),
                Err(_) => bail!(
                    "invalid value for {option}: {v} is beyond 2^63 - 1, the largest a suite grid holds"
                ),
            }
        };
        if !args.benchmark.is_empty() {
            let mut presets = Vec::new();
            for b in &args.benchmark {
                match b {
                    SuiteBenchmark::One(p) => presets.push(*p),
                    SuiteBenchmark::All => {
                        presets.extend(Preset::ALL.into_iter().filter(|p| p.is_vendored()))
                    }
                }
            }
            grid.set("benchmark", presets.iter().map(|p| s(p)).collect());
        }
        if !args.methods.is_empty() {
            let methods = args
                .methods
                .iter()
                .map(|&m| s(&MethodKind::from(m).id()))
                .collect();
            grid.set("method", methods);
        }
        if !args.seeds.is_empty() {
            let seeds = args
                .seeds
                .iter()
                .map(|&v| int("--seeds", v))
                .collect::<Result<_>>()?;
            grid.set("seed", seeds);
        }
        if let Some(n) = args.tasks {
            grid.set("tasks", vec![int("--tasks", n as u64)?]);
        }
        if let Some(n) = args.samples_per_task {
            let value = match n.count() {
                Some(n) => int("--samples-per-task", n as u64)?,
                None => s(&"all"),
            };
            grid.set("samples-per-task", vec![value]);
        }
        if let Some(n) = args.eval_every {
            grid.set("eval-every", vec![int("--eval-every", n)?]);
        }
        if let Some(dir) = &args.data_dir {
            grid.set("data-dir", vec![s(&dir.display())]);
        }
        if grid.get("benchmark").is_none() && grid.get("data").is_none() {
            let paper = [
                Preset::MnistPermutations,
                Preset::MnistRotations,
                Preset::MnistSplit,
            ];
            grid.set("benchmark", paper.iter().map(|p| s(p)).collect());
        }
        if grid.get("seed").is_none() {
            grid.set(
                "seed",
                (0..3).map(|v| int("--seeds", v)).collect::<Result<_>>()?,
            );
        }
        grid.order();
        for (key, values) in &grid.axes {
            if values.is_empty() {
                bail!("invalid value for {key}: an empty list");
            }
            let mut seen: Vec<&toml::Value> = Vec::new();
            for v in values {
                if seen.contains(&v) {
                    bail!("invalid value for {key}: {v} is listed twice");
                }
                seen.push(v);
            }
        }
        Ok(grid)
    }

    /// Reads a grid file: run option keys, each a value or a list of values (plural
    /// `benchmarks`, `methods`, `seeds` too), and `out-dir`, `force`, `no-report`.
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// [`Self::read`] of the text `text` of the file `path`.
    fn parse(path: &Path, text: &str) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| crate::options::toml_error(path, text, &e))?;
        let line_of = |key: &str| {
            crate::options::line_of_key(text, key).map_or(String::new(), |i| format!(" line {i}"))
        };
        let mut grid = Self {
            axes: Vec::new(),
            out_dir: PathBuf::from("results/suite"),
            force: false,
            no_report: false,
        };
        for (raw_key, value) in table {
            let at = || format!("{}{}", path.display(), line_of(&raw_key));
            match (raw_key.as_str(), &value) {
                ("out-dir", toml::Value::String(dir)) => {
                    grid.out_dir = PathBuf::from(dir);
                    continue;
                }
                ("force", toml::Value::Boolean(b)) => {
                    grid.force = *b;
                    continue;
                }
                ("no-report", toml::Value::Boolean(b)) => {
                    grid.no_report = *b;
                    continue;
                }
                (k, _) if SUITE_KEYS.contains(&k) => {
                    bail!("{}: {k} has the wrong type", at())
                }
                _ => {}
            }
            let key = match raw_key.as_str() {
                "benchmarks" => "benchmark",
                "methods" => "method",
                "seeds" => "seed",
                k => k,
            }
            .to_string();
            if RUN_ONLY_KEYS.contains(&key.as_str()) {
                bail!(
                    "{}: {key} is set per run by the suite (use the suite's --threads and out-dir)",
                    at()
                );
            }
            let values = match value {
                toml::Value::Array(values) => values,
                one => vec![one],
            };
            // Check each value's key and type now, naming the line.
            for v in &values {
                let mut one = toml::Table::new();
                one.insert(key.clone(), v.clone());
                let checked: Result<Options, _> = toml::Value::Table(one).try_into();
                if let Err(e) = checked {
                    bail!(
                        "{}: {}",
                        at(),
                        e.message().split(", expected one of").next().unwrap_or("")
                    );
                }
            }
            if grid.get(&key).is_some() {
                bail!("{}: {key} is given twice", at());
            }
            grid.axes.push((key, values));
        }
        Ok(grid)
    }

    fn get(&self, key: &str) -> Option<&Vec<toml::Value>> {
        self.axes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`'s values, replacing the file's.
    fn set(&mut self, key: &str, values: Vec<toml::Value>) {
        match self.axes.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = values,
            None => self.axes.push((key.to_string(), values)),
        }
    }

    /// Benchmarks (or data) first, then methods, the other keys in file order, seeds last.
    fn order(&mut self) {
        let rank = |k: &str| match k {
            "benchmark" | "data" => 0,
            "method" => 1,
            "seed" => 3,
            _ => 2,
        };
        self.axes.sort_by_key(|(k, _)| rank(k));
    }
}

/// The axes of the grid file text `text` (named `path` in errors): each key with its values,
/// in file order.
pub fn parse_grid_axes(path: &Path, text: &str) -> Result<Vec<(String, Vec<toml::Value>)>> {
    Grid::parse(path, text).map(|grid| grid.axes)
}

/// Every run of the grid's product, validated (data loaded) before anything runs. Methods
/// that do not apply to a benchmark are left out; with no method list, every method of the
/// benchmark's suite runs.
fn plan(grid: &Grid, threads: usize, cache: &mut DataCache) -> Result<Vec<Planned>> {
    let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in &grid.axes {
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |v| {
                    let mut next = combo.clone();
                    next.push((key.clone(), v.clone()));
                    next
                })
            })
            .collect();
        if key == "benchmark" || key == "data" {
            // Without a method list, each benchmark takes its own.
            if grid.get("method").is_none() {
                combos = combos
                    .into_iter()
                    .flat_map(|combo| {
                        MethodKind::ALL.into_iter().map(move |m| {
                            let mut next = combo.clone();
                            next.push(("method".into(), toml::Value::String(m.id().into())));
                            next
                        })
                    })
                    .collect();
            }
        }
    }
    let explicit_methods = grid.get("method").is_some();
    let series_keys: Vec<&str> = grid
        .axes
        .iter()
        .filter(|(k, v)| v.len() > 1 && !["benchmark", "method", "seed"].contains(&k.as_str()))
        .map(|(k, _)| k.as_str())
        .collect();
    let mut plan: Vec<Planned> = Vec::new();
    for combo in combos {
        let table: toml::Table = combo.iter().cloned().collect();
        let options: Options = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid grid entry: {}", e.message()))?;
        let method = MethodKind::from(options.method.unwrap_or(crate::options::MethodArg::Gem));
        let scenario = resolve_scenario(&options)?;
        let applies = match (options.benchmark, explicit_methods) {
            (Some(p), false) if options.scenario.is_none() => method.in_suite_of(p),
            _ => method.applies_to(&scenario),
        };
        if !applies {
            continue;
        }
        let resolved = resolve::resolve(&options, threads, cache)?;
        let mut job_options = resolve::options_of(&resolved.config);
        job_options.data_dir = options.data_dir.clone().or(job_options.data_dir);
        let config = resolved.config;
        let id = output::run_id(&config);
        // Everything a run checks before training, for every run before any runs.
        let cost = experiment::check(&config, resolved.data)?;
        let series = combo
            .iter()
            .filter(|(k, _)| series_keys.contains(&k.as_str()))
            .map(|(k, v)| match v {
                toml::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(same) = plan.iter().find(|p| p.id == id) {
            bail!(
                "the grid holds the same run twice ({}); remove the duplicate values",
                same.id
            );
        }
        plan.push(Planned {
            work: cost.total_work,
            out: grid.out_dir.join(format!("{id}.json")),
            id,
            options: job_options,
            config,
            series,
        });
    }
    if plan.is_empty() {
        bail!("invalid value for --methods: none of them applies to the chosen benchmark");
    }
    Ok(plan)
}

/// The scenario the options make (the preset's unless they ask for another).
fn resolve_scenario(options: &Options) -> Result<episodic::data::Scenario> {
    Ok(match crate::options::scenario_of(options)? {
        Some(s) => s,
        None => options
            .benchmark
            .unwrap_or(Preset::MnistPermutations)
            .scenario(),
    })
}

/// An existing results file of the same experiment (any thread count), unless `force`.
fn reusable(planned: &Planned, force: bool) -> Option<RunResults> {
    if force {
        return None;
    }
    let text = std::fs::read_to_string(&planned.out).ok()?;
    let existing: RunResults = serde_json::from_str(&text).ok()?;
    let mut want = planned.config.clone();
    want.threads = existing.config.threads;
    (existing.config == want).then_some(existing)
}

/// Mean and sample standard deviation (0 for one value) of the values present.
fn mean_std(values: impl Iterator<Item = Option<f64>>) -> Option<(f64, f64, usize)> {
    let values: Vec<f64> = values.flatten().collect();
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    Some((mean, var.sqrt(), n))
}

/// The summary as a Markdown table: mean ± standard deviation over seeds per method and
/// benchmark.
fn summary_table(rows: &[Run]) -> String {
    let mut out = String::from(
        "| benchmark | method | seeds | ACC | BWT | FWT | seconds |\n|---|---|---|---|---|---|---|\n",
    );
    let cell = |v: Option<(f64, f64, usize)>| {
        v.map_or_else(|| "n/a".into(), |(m, s, _)| format!("{m:.3} ± {s:.3}"))
    };
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !groups.contains(&(r.benchmark.as_str(), r.method.as_str())) {
            groups.push((r.benchmark.as_str(), r.method.as_str()));
        }
    }
    let rank = |m: &str| {
        let name = m.split(' ').next().unwrap_or(m);
        MethodKind::ALL
            .iter()
            .position(|k| k.id() == name)
            .unwrap_or(MethodKind::ALL.len())
    };
    // Benchmarks in the order they ran; methods in report order inside each.
    let benchmarks: Vec<&str> = groups.iter().fold(Vec::new(), |mut acc, (b, _)| {
        if !acc.contains(b) {
            acc.push(*b);
        }
        acc
    });
    for benchmark in benchmarks {
        let mut methods: Vec<&str> = groups
            .iter()
            .filter(|(b, _)| *b == benchmark)
            .map(|(_, m)| *m)
            .collect();
        methods.sort_by_key(|m| rank(m));
        for method in methods {
            let group: Vec<&Run> = rows
                .iter()
                .filter(|r| r.benchmark == benchmark && r.method == method)
                .collect();
            let seconds = mean_std(group.iter().map(|r| r.seconds));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.1} |",
                benchmark,
                method,
                group.len(),
                cell(mean_std(group.iter().map(|r| Some(r.acc)))),
                cell(mean_std(group.iter().map(|r| r.bwt))),
                cell(mean_std(group.iter().map(|r| r.fwt))),
                seconds.map_or(0.0, |s| s.0)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &'static str, seed: u64, acc: f64, bwt: Option<f64>) -> Run {
        let mut run = crate::report::tests::run(method, "mnist-permutations", seed, 0.0);
        (run.acc, run.bwt, run.fwt, run.seconds) = (acc, bwt, None, Some(2.0));
        run
    }

    #[test]
    fn table_reports_mean_and_sample_spread_per_method() {
        let table = summary_table(&[
            row("gem", 0, 0.8, Some(0.0)),
            row("gem", 1, 0.9, Some(0.02)),
            row("single", 0, 0.5, None),
        ]);
        assert!(
            table.contains(
                "| mnist-permutations | gem | 2 | 0.850 ± 0.071 | 0.010 ± 0.014 | n/a | 2.0 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| single | 1 | 0.500 ± 0.000 | n/a |"),
            "{table}"
        );
        // single is listed before gem (report order).
        assert!(table.find("single").unwrap() < table.find("gem").unwrap());
    }
}
