//! A suite's grid: the lists of run options whose product it runs, from the command line's
//! flags and a grid file, with the suite's own settings.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use episodic::config::MethodKind;
use episodic::data::Preset;

use crate::args::{SuiteArgs, SuiteBenchmark};
use crate::options::{Options, RUN_ONLY_KEYS};

/// The lists a suite takes the product of, in the order they vary (the first slowest), and
/// the suite's own settings.
pub(super) struct Grid {
    /// `(key, values)`: run option keys with their values, as TOML values.
    pub(super) axes: Vec<(String, Vec<toml::Value>)>,
    pub(super) out_dir: PathBuf,
    pub(super) force: bool,
    pub(super) no_report: bool,
}

/// Keys a grid file may hold besides the run options.
pub(super) const SUITE_KEYS: [&str; 3] = ["out-dir", "force", "no-report"];

impl Grid {
    /// The grid of the `--config` file (if any) with the flags over it.
    pub(super) fn of(args: &SuiteArgs) -> Result<Self> {
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
    pub(super) fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// [`Self::read`] of the text `text` of the file `path`.
    pub(super) fn parse(path: &Path, text: &str) -> Result<Self> {
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

    pub(super) fn get(&self, key: &str) -> Option<&Vec<toml::Value>> {
        self.axes.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`'s values, replacing the file's.
    pub(super) fn set(&mut self, key: &str, values: Vec<toml::Value>) {
        match self.axes.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = values,
            None => self.axes.push((key.to_string(), values)),
        }
    }

    /// Benchmarks (or data) first, then methods, the other keys in file order, seeds last.
    pub(super) fn order(&mut self) {
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
