//! Every numeric option of `run` and `suite` at 0, 1, a huge value and its type's maximum
//! (and, for real numbers, infinity and NaN): each either runs or is refused with one line
//! and exit code 2; nothing panics, aborts or runs out of memory. The runs are on a tiny
//! data set, so that huge values bounded by the data (memories, batch size, samples) finish.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, BIN};
use episodic::data::npz::npy_writer;

/// Longest a single command may take before the test calls it a hang.
const LIMIT: Duration = Duration::from_secs(120);

const INTEGERS: [&str; 4] = ["0", "1", "1000000000", "18446744073709551615"];
const REALS: [&str; 6] = ["0", "1", "1e300", "1.7976931348623157e308", "inf", "NaN"];

/// 40 training and 10 test images of 2x2 pixels in 4 classes.
fn write_data(dir: &Path) -> String {
    let images = |n: usize, salt: usize| -> Vec<u8> {
        (0..n * 4).map(|i| ((i * 37 + salt) % 256) as u8).collect()
    };
    let labels = |n: usize| -> Vec<i64> { (0..n as i64).map(|k| k % 4).collect() };
    let entries = vec![
        ("x_train", npy_writer::u8s(&[40, 2, 2], &images(40, 0))),
        ("y_train", npy_writer::i64s(&[40], &labels(40))),
        ("x_test", npy_writer::u8s(&[10, 2, 2], &images(10, 11))),
        ("y_test", npy_writer::i64s(&[10], &labels(10))),
    ];
    let path = dir.join("tiny.npz");
    std::fs::write(&path, npy_writer::npz(&entries, false)).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs `args` in `dir` and returns (exit code, stderr), failing the test on a hang.
fn outcome(dir: &Path, args: &[String]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env("EPISODIC_DATA", repo().join("data"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("{args:?} ran for more than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Success, or exit 2 with one error line, the last (before it, a run may have printed its
/// header and progress: a diverging learning rate is found by running); returns which.
fn runs_or_is_refused(dir: &Path, args: &[String]) -> &'static str {
    let (code, stderr) = outcome(dir, args);
    let context = format!("{args:?} gave {code:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{context}");
    match code {
        Some(0) => "ran",
        Some(2) => {
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            let errors = lines.iter().filter(|l| l.starts_with("error")).count();
            assert_eq!(errors, 1, "expected one error line: {context}");
            assert!(lines.last().unwrap().starts_with("error: "), "{context}");
            "refused"
        }
        _ => panic!("neither success nor a clean refusal: {context}"),
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn every_numeric_option_of_run_runs_or_is_refused_at_its_extremes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = write_data(dir);
    // (option, values, the method and scenario it applies to)
    let cases: Vec<(&str, &[&str], &str, &str)> = vec![
        ("--seed", &INTEGERS, "gem", "permutations"),
        ("--tasks", &INTEGERS, "gem", "permutations"),
        ("--tasks", &INTEGERS, "icarl", "class-split"),
        ("--samples-per-task", &INTEGERS, "gem", "permutations"),
        ("--classes-per-task", &INTEGERS, "icarl", "class-split"),
        ("--memories-per-task", &INTEGERS, "gem", "permutations"),
        ("--memories-per-task", &INTEGERS, "agem", "permutations"),
        ("--memories-per-task", &INTEGERS, "er", "permutations"),
        ("--memories-per-task", &INTEGERS, "ewc", "permutations"),
        ("--sample-size", &INTEGERS, "agem", "permutations"),
        ("--memory-size", &INTEGERS, "icarl", "class-split"),
        ("--eval-every", &INTEGERS, "gem", "permutations"),
        ("--batch-size", &INTEGERS, "gem", "permutations"),
        ("--epochs", &INTEGERS, "single", "permutations"),
        ("--threads", &INTEGERS, "gem", "permutations"),
        ("--checkpoint-every", &INTEGERS, "gem", "permutations"),
        ("--lr", &REALS, "single", "permutations"),
        ("--margin", &REALS, "gem", "permutations"),
        ("--strength", &REALS, "ewc", "permutations"),
        ("--strength", &REALS, "icarl", "class-split"),
        ("--momentum", &REALS, "gem", "permutations"),
        ("--weight-decay", &REALS, "er", "permutations"),
    ];
    let mut seen = Vec::new();
    for (k, (option, values, method, scenario)) in cases.into_iter().enumerate() {
        for (v, value) in values.iter().enumerate() {
            let mut args = strings(&["run", "--data", &data, "--scenario", scenario]);
            args.extend(strings(&["--method", method, "--out", "r.json", "--force"]));
            for (default_option, default) in [
                ("--tasks", "2"),
                ("--samples-per-task", "5"),
                ("--threads", "1"),
            ] {
                if option != default_option {
                    args.extend(strings(&[default_option, default]));
                }
            }
            if option == "--checkpoint-every" {
                args.extend(strings(&["--checkpoint-dir", &format!("ck-{k}-{v}")]));
            }
            args.extend(strings(&[option, value]));
            seen.push(format!(
                "{option} {value} ({method}): {}",
                runs_or_is_refused(dir, &args)
            ));
        }
    }
    eprintln!("{}", seen.join("\n"));
    // Some of each: the test would mean little if everything were refused.
    assert!(
        seen.iter().filter(|s| s.ends_with("ran")).count() > 20,
        "{seen:#?}"
    );
    assert!(
        seen.iter().filter(|s| s.ends_with("refused")).count() > 20,
        "{seen:#?}"
    );
}

#[test]
fn every_numeric_option_of_suite_runs_or_is_refused_at_its_extremes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = write_data(dir);
    let grid = dir.join("grid.toml");
    std::fs::write(
        &grid,
        format!(
            "data = {data:?}\nscenario = \"permutations\"\nmethods = [\"single\", \"gem\"]\n\
             tasks = 2\nsamples-per-task = 5\n"
        ),
    )
    .unwrap();
    let mut seen = Vec::new();
    for option in [
        "--seeds",
        "--tasks",
        "--samples-per-task",
        "--eval-every",
        "--threads",
        "--shard",
    ] {
        for (v, value) in INTEGERS.iter().enumerate() {
            let value = if option == "--shard" {
                format!("0/{value}")
            } else {
                value.to_string()
            };
            let mut args = strings(&["suite", "--config", grid.to_str().unwrap(), "--no-report"]);
            args.extend(strings(&["--out-dir", &format!("out-{option}-{v}")]));
            if option != "--threads" {
                args.extend(strings(&["--threads", "1"]));
            }
            if option != "--seeds" {
                args.extend(strings(&["--seeds", "0"]));
            }
            args.extend([option.to_string(), value.clone()]);
            let result = runs_or_is_refused(dir, &args);
            if result == "refused" {
                // A suite checks every run before running any: a refusal is one line, and
                // no run was done.
                let (_, stderr) = outcome(dir, &args);
                assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
                let out = dir.join(format!("out-{option}-{v}"));
                let written = std::fs::read_dir(&out).map_or(0, |d| {
                    d.filter(|e| {
                        e.as_ref()
                            .unwrap()
                            .path()
                            .extension()
                            .is_some_and(|x| x == "json")
                    })
                    .count()
                });
                assert_eq!(written, 0, "{args:?} ran something");
            }
            seen.push(format!("{option} {value}: {result}"));
        }
    }
    eprintln!("{}", seen.join("\n"));
    assert!(
        seen.iter().filter(|s| s.ends_with("ran")).count() > 5,
        "{seen:#?}"
    );
    assert!(
        seen.iter().filter(|s| s.ends_with("refused")).count() > 5,
        "{seen:#?}"
    );
}
