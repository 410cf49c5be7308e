//! `episodic suite`: a product of runs (every applicable method with its paper defaults over
//! seeds and benchmarks, or a grid file's lists), one results JSON per run, a summary CSV, a
//! table and a report. The runs have stable ids and command lines (`--list-jobs`), can be
//! split over machines (`--shard I/N`), and skip themselves when a complete results file of
//! the same configuration exists.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use episodic::config::{ExperimentConfig, MethodKind};
use episodic::data::Preset;
use episodic::experiment::{self, Progress};
use episodic::results::{self, RunResults};

use crate::args::{all_cores, SuiteArgs};
use crate::options::Options;
use crate::output;
use crate::progress::Reporter;
use crate::resolve::{self, DataCache};

mod grid;
mod table;

pub use grid::parse_grid_axes;
use grid::Grid;
use table::summary_table;

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
    existing
        .config
        .same_experiment(&planned.config)
        .then_some(existing)
}
