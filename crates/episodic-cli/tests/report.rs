//! End-to-end tests of `episodic report`: the real binary on small synthetic results files,
//! checking every file it writes, and clean one-line errors on bad input.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

mod common;

use common::assert_clean_error;

const BIN: &str = env!("CARGO_BIN_EXE_episodic");

fn episodic(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A results file shaped like `RunResults`, for `tasks` tasks of 10 steps each, with an
/// intermediate evaluation in the middle of every task and fields the report does not know.
fn results(method: &str, benchmark: &str, seed: u64, tasks: usize) -> Value {
    let skill = 0.3 + 0.05 * (seed % 4) as f64 + if method == "gem" { 0.2 } else { 0.0 };
    let accuracy = |after: Option<usize>, j: usize| match after {
        Some(i) if j <= i => skill + 0.02 * (i - j) as f64,
        _ => 0.1,
    };
    let baseline: Vec<f64> = (0..tasks).map(|j| accuracy(None, j)).collect();
    let matrix: Vec<Vec<f64>> = (0..tasks)
        .map(|i| (0..tasks).map(|j| accuracy(Some(i), j)).collect())
        .collect();
    let mut evaluations = vec![json!({"step": 0, "after_task": null, "accuracies": baseline})];
    for (i, row) in matrix.iter().enumerate() {
        let mid: Vec<f64> = row.iter().map(|a| a * 0.9).collect();
        evaluations.push(json!({"step": 10 * i + 5, "after_task": null, "accuracies": mid}));
        evaluations.push(json!({
            "step": 10 * (i + 1), "after_task": i, "accuracies": row, "loss": 0.5
        }));
    }
    // As a run writes them: the paper's metrics of this matrix.
    let metrics = episodic::metrics::paper(&baseline, &matrix);
    json!({
        "episodic_version": "0.1.0",
        "git_revision": null,
        "config": {
            "benchmark": benchmark,
            "tasks": tasks,
            "seed": seed,
            "method": {"name": method, "learning_rate": 0.1},
            "model": {"input": 784, "hidden": [100, 100], "classes": 10}
        },
        "tasks": [],
        "metrics": metrics,
        "metrics_reference_convention": episodic::metrics::reference_convention(&metrics, tasks),
        "baseline": baseline,
        "accuracy_matrix": matrix,
        "evaluations": evaluations,
        "steps": 10 * tasks,
        "projected_steps": 3,
        "timing": {"total_seconds": 1.25 + seed as f64, "train_seconds": 1.0},
        "a_future_field": {"anything": [1, 2, 3]}
    })
}

/// Writes `value` as `dir/name` and returns the path.
fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path
}

/// A light well-formedness check of an SVG file: it opens with `<svg` (or an XML
/// declaration), and its tags nest properly, ending with `</svg>`.
fn assert_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.trim();
    assert!(
        text.starts_with("<svg") || text.starts_with("<?xml"),
        "{}",
        path.display()
    );
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            rest = &after[after.find("-->").expect("comment closed") + 3..];
            continue;
        }
        // The end of the tag: the first '>' outside quotes.
        let mut quote = None;
        let end = rest
            .char_indices()
            .find(|&(_, c)| match (quote, c) {
                (None, '"' | '\'') => {
                    quote = Some(c);
                    false
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    false
                }
                (None, '>') => true,
                _ => false,
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("unclosed tag in {}", path.display()));
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_default();
            assert_eq!(open, name.trim(), "mismatched tags in {}", path.display());
        } else {
            let name = tag.split_whitespace().next().unwrap_or_default();
            stack.push(name.to_string());
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?} in {}", path.display());
    assert!(text.ends_with("</svg>"), "{}", path.display());
}

#[test]
fn writes_every_figure_the_csv_and_a_page_that_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for benchmark in ["mnist-permutations", "mnist-rotations"] {
        for method in ["gem", "single"] {
            for seed in [0, 1] {
                let name = format!("{method}-{benchmark}-seed{seed}.json");
                inputs.push(write(
                    dir.path(),
                    &name,
                    &results(method, benchmark, seed, 3),
                ));
            }
        }
    }
    // A method the report does not know, one seed, on one benchmark only.
    inputs.push(write(
        dir.path(),
        "new.json",
        &results("newmethod", "mnist-rotations", 7, 3),
    ));
    let out = dir.path().join("out");
    let mut args = vec!["report", "--out", out.to_str().unwrap()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let output = episodic(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("index.html"));

    let mut stems = vec!["fig1-metrics".to_string()];
    for benchmark in ["mnist-permutations", "mnist-rotations"] {
        stems.push(format!("fig2-first-task-{benchmark}"));
        stems.push(format!("fig2-each-task-{benchmark}"));
        for method in ["gem", "single"] {
            for seed in [0, 1] {
                stems.push(format!("matrix-{method}-{benchmark}-seed{seed}"));
            }
        }
    }
    stems.push("matrix-newmethod-mnist-rotations-seed7".to_string());
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for stem in &stems {
        let svg = out.join(format!("{stem}.svg"));
        let png = out.join(format!("{stem}.png"));
        assert_svg(&svg);
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", png.display());
        assert!(bytes.len() > 1000, "{}", png.display());
    }
    // The page references every file written, and nothing else was written (but the list
    // of them, for the next report into this folder).
    let mut written = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            std::fs::metadata(out.join(&name)).unwrap().len() > 0,
            "{name} is empty"
        );
        if name != "index.html" && name != ".episodic-report-files" {
            assert!(
                html.contains(&format!("\"{name}\"")),
                "{name} not on the page"
            );
        }
        written += 1;
    }
    assert_eq!(
        written,
        2 * stems.len() + 3,
        "figures, summary.csv, index.html, the list"
    );
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<style>"));
    assert!(html.contains("standard deviation"));

    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "method,benchmark,seed,ACC,BWT,FWT,seconds");
    assert_eq!(lines.len(), 1 + inputs.len());
    // Known methods in their fixed order (single before gem), others after.
    assert!(lines[1].starts_with("single,mnist-permutations,0,"));
    assert!(lines[3].starts_with("gem,mnist-permutations,0,"));
    assert!(lines[9].starts_with("newmethod,mnist-rotations,7,"));
    assert!(lines[1].ends_with(",1.25"), "{}", lines[1]);
}

#[test]
fn one_run_with_one_task_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let one = results("single", "mnist-split", 0, 1);
    assert_eq!(one["metrics"]["bwt"], Value::Null);
    let path = write(dir.path(), "one.json", &one);
    let out = dir.path().join("report");
    let output = episodic(&[
        "report",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_svg(&out.join("fig1-metrics.svg"));
    assert_svg(&out.join("matrix-single-mnist-split-seed0.svg"));
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(csv.contains("single,mnist-split,0,0.3,,,1.25"), "{csv}");
}

#[test]
fn bad_input_fails_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let good = write(dir.path(), "good.json", &results("gem", "b", 0, 2));
    let good = good.to_str().unwrap();

    let missing = dir.path().join("missing.json");
    let output = episodic(&["report", "--out", out, good, missing.to_str().unwrap()]);
    assert_clean_error(&output, "missing.json");

    let cases: Vec<(&str, String)> = vec![
        ("not-json.json", "this is not JSON".to_string()),
        ("empty-object.json", "{}".to_string()),
        ("list.json", "[]".to_string()),
        (
            "nan.json",
            serde_json::to_string(&results("gem", "b", 1, 2))
                .unwrap()
                .replacen("\"acc\":", "\"acc\":NaN,\"was\":", 1),
        ),
        (
            "ragged.json",
            serde_json::to_string(&{
                let mut r = results("gem", "b", 1, 2);
                r["accuracy_matrix"][1] = json!([0.5]);
                r
            })
            .unwrap(),
        ),
        (
            "out-of-range.json",
            serde_json::to_string(&{
                let mut r = results("gem", "b", 1, 2);
                r["evaluations"][1]["accuracies"][0] = json!(7.0);
                r
            })
            .unwrap(),
        ),
    ];
    for (name, text) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let output = episodic(&["report", "--out", out, good, path.to_str().unwrap()]);
        assert_clean_error(&output, name);
    }

    // The same run twice.
    let output = episodic(&["report", "--out", out, good, good]);
    assert_clean_error(&output, "good.json");

    // No results files at all.
    let output = episodic(&["report", "--out", out]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
}

#[test]
fn metrics_that_contradict_the_accuracy_matrix_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut edited = results("gem", "mnist-permutations", 0, 3);
    edited["metrics"]["acc"] = json!(0.99);
    let path = write(dir.path(), "edited.json", &edited);
    let out = dir.path().join("report");
    let output = episodic(&[
        "report",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&output, "metrics.acc is 0.99 but its accuracy matrix gives");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_reused_report_directory_loses_only_the_report_s_own_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.json",
        &results("gem", "mnist-permutations", 0, 3),
    );
    let b = write(
        dir.path(),
        "b.json",
        &results("single", "mnist-permutations", 0, 3),
    );
    let out = dir.path().join("report");
    let report = |paths: &[&Path]| {
        let mut args = vec!["report"];
        args.extend(paths.iter().map(|p| p.to_str().unwrap()));
        args.extend(["--out", out.to_str().unwrap()]);
        let output = episodic(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    report(&[&a, &b]);
    let single = out.join("matrix-single-mnist-permutations-seed0.svg");
    assert!(single.is_file());
    std::fs::write(out.join("my-notes.txt"), "mine").unwrap();
    report(&[&a]);
    assert!(
        !single.exists(),
        "the figure of a run no longer reported is removed"
    );
    assert!(!out
        .join("matrix-single-mnist-permutations-seed0.png")
        .exists());
    assert!(out
        .join("matrix-gem-mnist-permutations-seed0.svg")
        .is_file());
    assert_eq!(
        std::fs::read_to_string(out.join("my-notes.txt")).unwrap(),
        "mine"
    );
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        !page.contains("matrix-single"),
        "the page no longer shows it"
    );
    // No temporary file is left behind.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "{name}");
    }
}
