//! Unit tests of the report's reading, grouping and CSV.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
