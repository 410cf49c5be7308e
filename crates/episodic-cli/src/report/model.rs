//! Grouping runs by benchmark and method (series) and averaging their seeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{bail, Context, Result};
use episodic::config::MethodKind;

use super::{axis_key, slug, Point, Run};

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
pub(crate) fn method_rank(method: &str) -> (usize, &str) {
    let name = method.split(' ').next().unwrap_or(method);
    let known = MethodKind::ALL.iter().position(|m| m.id() == name);
    (known.unwrap_or(MethodKind::ALL.len()), method)
}

impl Model {
    /// Sorts and groups `runs`; fails on two runs of the same (method, benchmark, seed) and
    /// on a group whose runs differ in their number of tasks.
    pub(crate) fn new(mut runs: Vec<Run>) -> Result<Self> {
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
pub(crate) fn check_distinct_file_names(runs: &[Run]) -> Result<()> {
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
pub(crate) fn group(runs: &[Run], members: Vec<usize>) -> Result<Group> {
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
pub(crate) fn mean_curve(curves: &[&[Point]], tasks: usize) -> Vec<MeanPoint> {
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
