//! `episodic suite`: every applicable method with its paper defaults, over several seeds and
//! benchmarks; one results JSON per run, a summary CSV, a table, and a report.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use episodic::config::{ExperimentConfig, MethodKind};
use episodic::data::{BenchmarkKind, Checksums, Mnist};
use episodic::experiment::{self, Progress};
use episodic::results::{self, RunResults};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{all_cores, SuiteArgs};

/// One run of the suite.
struct Planned {
    config: ExperimentConfig,
    out: PathBuf,
}

/// One row of the summary.
struct Row {
    method: &'static str,
    benchmark: BenchmarkKind,
    seed: u64,
    acc: f64,
    bwt: Option<f64>,
    fwt: Option<f64>,
    seconds: f64,
}

/// Runs the suite `args` describe.
pub fn suite(args: &SuiteArgs) -> Result<()> {
    let plan = plan(args)?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let csv_path = args.out_dir.join("summary.csv");
    results::check_writable(&csv_path)?;
    let data = Mnist::load(
        &crate::args::resolve_data_dir(args.data_dir.as_ref()),
        Checksums::Verify,
    )?;

    let total_steps: u64 = plan.iter().map(|p| planned_steps(&p.config)).sum();
    let bar = ProgressBar::new(total_steps);
    bar.set_style(ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30} {percent:>3}%  {msg}  (ETA {eta})",
    )?);
    let mut rows = Vec::with_capacity(plan.len());
    let mut done_steps = 0u64;
    for (i, planned) in plan.iter().enumerate() {
        let c = &planned.config;
        let label = format!(
            "run {}/{}: {} on {}, seed {}",
            i + 1,
            plan.len(),
            c.method.kind().id(),
            c.benchmark,
            c.seed
        );
        let results = match reusable(planned, args.force) {
            Some(results) => {
                log(&bar, format!("{label}: kept {}", planned.out.display()));
                results
            }
            None => {
                let tasks = c.tasks;
                let mut on_progress = |event: Progress| match event {
                    Progress::Step { step, task } => {
                        bar.set_position(done_steps + step);
                        bar.set_message(format!("{label}, task {}/{tasks}", task + 1));
                    }
                    Progress::Evaluating {
                        after_task: Some(task),
                    } => bar.set_message(format!("{label}, evaluating after task {}", task + 1)),
                    Progress::Started { .. }
                    | Progress::Evaluating { after_task: None }
                    | Progress::Checkpointed { .. } => {}
                };
                let mut results = experiment::run(c, data.clone(), &mut on_progress)
                    .with_context(|| format!("{label} failed"))?;
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
                results
            }
        };
        done_steps += planned_steps(c);
        bar.set_position(done_steps);
        rows.push(Row {
            method: c.method.kind().id(),
            benchmark: c.benchmark,
            seed: c.seed,
            acc: results.metrics.acc,
            bwt: results.metrics.bwt,
            fwt: results.metrics.fwt,
            seconds: results.timing.total_seconds,
        });
        // Rewritten after every run, so an interrupted suite keeps its summary so far.
        results::write_atomically(&csv_path, summary_csv(&rows).trim_end().as_bytes())?;
    }
    bar.finish_and_clear();
    print!("{}", summary_table(&rows));
    println!("summary: {}", csv_path.display());
    if !args.no_report {
        let paths: Vec<PathBuf> = plan.iter().map(|p| p.out.clone()).collect();
        let report_dir = args.out_dir.join("report");
        crate::report::write_report(&paths, &report_dir)?;
        println!("report: {}", report_dir.join("index.html").display());
    }
    Ok(())
}

/// Prints a line above the progress bar, or on stderr when the bar is hidden (not a
/// terminal).
fn log(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Every (benchmark, method, seed) of the suite, validated before anything runs.
fn plan(args: &SuiteArgs) -> Result<Vec<Planned>> {
    if args.seeds.is_empty() {
        bail!("invalid value for --seeds: give at least one seed");
    }
    let threads = args.threads.unwrap_or_else(all_cores);
    let methods: Vec<MethodKind> = if args.methods.is_empty() {
        MethodKind::ALL.to_vec()
    } else {
        args.methods.iter().map(|&m| m.into()).collect()
    };
    let mut plan = Vec::new();
    for benchmark in args.benchmark.kinds() {
        for &method in methods.iter().filter(|m| m.applies_to(benchmark)) {
            for &seed in &args.seeds {
                let mut config = ExperimentConfig::paper(benchmark, method, threads);
                config.seed = seed;
                if let Some(tasks) = args.tasks {
                    config.tasks = tasks;
                }
                if let Some(n) = args.samples_per_task {
                    config.samples_per_task = n;
                }
                config.eval_every = args.eval_every;
                config.validate()?;
                let out =
                    args.out_dir
                        .join(format!("{}-{}-seed{}.json", method.id(), benchmark, seed));
                plan.push(Planned { config, out });
            }
        }
    }
    if plan.is_empty() {
        bail!("invalid value for --methods: none of them applies to the chosen benchmark");
    }
    Ok(plan)
}

/// Mini-batches in a run of `config`.
fn planned_steps(config: &ExperimentConfig) -> u64 {
    let per_task = config.samples_per_task.div_ceil(config.batch_size) * config.epochs;
    (per_task * config.tasks) as u64
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

fn optional(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.6}"))
}

/// The summary as CSV: one line per run.
fn summary_csv(rows: &[Row]) -> String {
    let mut out = String::from("method,benchmark,seed,acc,bwt,fwt,seconds\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{:.6},{},{},{:.2}",
            r.method,
            r.benchmark,
            r.seed,
            r.acc,
            optional(r.bwt),
            optional(r.fwt),
            r.seconds
        );
    }
    out
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
fn summary_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| benchmark | method | seeds | ACC | BWT | FWT | seconds |\n|---|---|---|---|---|---|---|\n",
    );
    let cell = |v: Option<(f64, f64, usize)>| {
        v.map_or_else(|| "n/a".into(), |(m, s, _)| format!("{m:.3} ± {s:.3}"))
    };
    for benchmark in BenchmarkKind::ALL {
        for method in MethodKind::ALL {
            let group: Vec<&Row> = rows
                .iter()
                .filter(|r| r.benchmark == benchmark && r.method == method.id())
                .collect();
            if group.is_empty() {
                continue;
            }
            let seconds = mean_std(group.iter().map(|r| Some(r.seconds)));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.1} |",
                benchmark,
                method.id(),
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

    fn row(method: &'static str, seed: u64, acc: f64, bwt: Option<f64>) -> Row {
        Row {
            method,
            benchmark: BenchmarkKind::MnistPermutations,
            seed,
            acc,
            bwt,
            fwt: None,
            seconds: 2.0,
        }
    }

    #[test]
    fn csv_has_one_line_per_run_and_empty_cells_for_missing_metrics() {
        let csv = summary_csv(&[row("gem", 0, 0.8, Some(0.01)), row("gem", 1, 0.9, None)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "method,benchmark,seed,acc,bwt,fwt,seconds");
        assert_eq!(lines[1], "gem,mnist-permutations,0,0.800000,0.010000,,2.00");
        assert_eq!(lines[2], "gem,mnist-permutations,1,0.900000,,,2.00");
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
