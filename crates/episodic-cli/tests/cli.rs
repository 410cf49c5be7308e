//! End-to-end tests of the `episodic` binary: real runs on the vendored data and every kind
//! of bad input, each of which must end with a one-line error and exit code 2, never a panic.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use episodic::data::idx::idx_writer;

const BIN: &str = env!("CARGO_BIN_EXE_episodic");

fn repo_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

fn episodic(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("EPISODIC_DATA")
        .output()
        .expect("the binary runs")
}

/// A small, fast run (2 tasks x 30 samples, 1 thread) with `extra` options, which replace
/// these defaults where they name the same option.
fn small_run(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--out", out.to_str().unwrap()];
    for (option, value) in [
        ("--tasks", "2"),
        ("--samples-per-task", "30"),
        ("--threads", "1"),
    ] {
        if !extra.contains(&option) {
            args.extend([option, value]);
        }
    }
    args.extend_from_slice(extra);
    episodic(&args)
}

/// Asserts a clean failure: exit code 2, one line on stderr that mentions `needle`.
fn assert_clean_error(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(!stderr.contains("backtrace"), "backtrace: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

/// Copies the vendored MNIST files into `dir/mnist/`.
fn copy_data(dir: &Path) -> PathBuf {
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for entry in std::fs::read_dir(repo_data().join("mnist")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "gz") {
            std::fs::copy(&path, mnist.join(path.file_name().unwrap())).unwrap();
        }
    }
    mnist
}

fn without_timing(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_object_mut().unwrap().remove("timing");
    v
}

#[test]
fn help_documents_every_option_with_its_default() {
    let out = episodic(&["run", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--benchmark",
        "--method",
        "--seed",
        "--tasks",
        "--samples-per-task",
        "--memories-per-task",
        "--margin",
        "--lr",
        "--batch-size",
        "--epochs",
        "--threads",
        "--data-dir",
        "--data",
        "--scenario",
        "--classes-per-task",
        "--class-order",
        "--config",
        "--print-config",
        "--out",
    ] {
        assert!(help.contains(option), "{option} missing from --help");
    }
    for default in [
        "[default: mnist-permutations unless --data is given]",
        "[default: gem]",
        "[default: 0]",
        "[default: the benchmark's: 20, or 5 on the 10-class splits",
        "[default: 1000; all on CIFAR",
        "[default: 256]",
        "[default: 0.5]",
        "[default: 10]",
        "[default: 1]",
        "[default: all cores]",
        "the paper's per method and benchmark",
        // Rotations stated for any number of tasks, counted from 1.
        "Task t of T (counted from 1) rotated by an angle drawn in [(t-1)*180/T, t*180/T) degrees",
    ] {
        assert!(
            help.contains(default),
            "{default} missing from --help:\n{help}"
        );
    }
}

#[test]
fn small_run_writes_results_and_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let output = small_run(&out, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for word in ["ACC", "BWT", "FWT", "projected steps", "time"] {
        assert!(stdout.contains(word), "{word} missing from:\n{stdout}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let metrics = &json["metrics"];
    let acc = metrics["acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(metrics["bwt"].is_f64() && metrics["fwt"].is_f64());
    assert_eq!(json["accuracy_matrix"].as_array().unwrap().len(), 2);
    assert_eq!(json["baseline"].as_array().unwrap().len(), 2);
    assert_eq!(json["config"]["method"]["memories_per_task"], 256);
    assert_eq!(json["steps"], 6);
    assert!(json["tasks"][0]["permutation"]["sha256"].is_string());
    let kernels = json["matrix_kernels"].as_str().unwrap();
    assert!(kernels.starts_with("gemm 0.1"), "{kernels}");
    assert!(
        stdout.contains("skipped (no trustworthy QP solution)"),
        "{stdout}"
    );

    // Methods that never project say nothing of projected steps; A-GEM says it, without
    // GEM's skipped steps.
    let single = small_run(&out, &["--method", "single", "--force"]);
    let stdout = String::from_utf8_lossy(&single.stdout);
    assert!(
        single.status.success() && stdout.contains("ACC"),
        "{stdout}"
    );
    assert!(!stdout.contains("projected"), "{stdout}");
    let agem = small_run(&out, &["--method", "agem", "--force"]);
    let stdout = String::from_utf8_lossy(&agem.stdout);
    assert!(
        stdout.contains("projected steps") && !stdout.contains("skipped"),
        "{stdout}"
    );
}

#[test]
fn same_seed_same_threads_gives_identical_results_apart_from_timing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    for out in [&a, &b] {
        assert!(
            small_run(out, &["--benchmark", "mnist-rotations", "--seed", "3"])
                .status
                .success()
        );
    }
    let (a, b) = (
        std::fs::read_to_string(a).unwrap(),
        std::fs::read_to_string(b).unwrap(),
    );
    assert_eq!(without_timing(&a), without_timing(&b));
    let c = dir.path().join("c.json");
    assert!(
        small_run(&c, &["--benchmark", "mnist-rotations", "--seed", "4"])
            .status
            .success()
    );
    assert_ne!(
        without_timing(&a),
        without_timing(&std::fs::read_to_string(c).unwrap())
    );
}

#[test]
fn fewer_samples_than_memories_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let output = episodic(&[
        "run",
        "--tasks",
        "3",
        "--samples-per-task",
        "20",
        "--memories-per-task",
        "256",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn data_dir_comes_from_the_environment_when_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["run", "--tasks", "1", "--samples-per-task", "10", "--out"])
        .arg(dir.path().join("r.json"))
        .env("EPISODIC_DATA", dir.path().join("elsewhere"))
        .output()
        .unwrap();
    assert_clean_error(&output, "elsewhere");
}

#[test]
fn bad_options_are_rejected_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let cases: &[(&[&str], &str)] = &[
        (&["--benchmark", "cifar-1000"], "--benchmark"),
        (&["--method", "magic"], "--method"),
        (&["--tasks", "0"], "--tasks"),
        (&["--tasks", "-3"], "--tasks"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--samples-per-task", "0"], "--samples-per-task"),
        (&["--samples-per-task", "70000"], "--samples-per-task"),
        (&["--lr", "0"], "--lr"),
        (&["--lr", "-0.1"], "--lr"),
        (&["--lr", "NaN"], "--lr"),
        (&["--memories-per-task", "0"], "--memories-per-task"),
        (&["--margin", "-1"], "--margin"),
        (&["--method", "single", "--margin", "0.5"], "--margin"),
        (&["--threads", "0"], "--threads"),
        (&["--epochs", "0"], "--epochs"),
        (&["--lr", "1e400"], "--lr"),
        (&["--eval-every", "0"], "--eval-every"),
        (&["--momentum", "1"], "--momentum"),
        (&["--momentum", "-0.5"], "--momentum"),
        (&["--momentum", "NaN"], "--momentum"),
        (&["--weight-decay", "-0.001"], "--weight-decay"),
        (&["--weight-decay", "inf"], "--weight-decay"),
        (
            &["--method", "single", "--memories-per-task", "5"],
            "--memories-per-task",
        ),
        (&["--method", "ewc", "--strength", "-1"], "--strength"),
        (&["--method", "ewc", "--strength", "inf"], "--strength"),
        (&["--method", "gem", "--strength", "1"], "--strength"),
        (&["--method", "agem", "--sample-size", "0"], "--sample-size"),
        (&["--method", "gem", "--sample-size", "3"], "--sample-size"),
        (
            &["--method", "independent", "--finetune", "maybe"],
            "--finetune",
        ),
        (&["--method", "single", "--finetune", "true"], "--finetune"),
        (&["--method", "icarl"], "mnist-split"),
        (
            &[
                "--method",
                "icarl",
                "--benchmark",
                "mnist-split",
                "--memory-size",
                "0",
            ],
            "--memory-size",
        ),
        (&["--benchmark", "mnist-split", "--tasks", "3"], "--tasks"),
        (
            &["--benchmark", "mnist-split", "--samples-per-task", "40000"],
            "--samples-per-task",
        ),
    ];
    for (args, needle) in cases {
        let output = small_run(&out, args);
        assert_clean_error(&output, needle);
    }
    assert!(!out.exists(), "nothing written on failure");
}

#[test]
fn unwritable_output_fails_before_training_and_keeps_old_results() {
    let dir = tempfile::tempdir().unwrap();
    let output = small_run(&dir.path().join("no/such/dir/r.json"), &[]);
    assert_clean_error(&output, "no/such/dir/r.json");
    // A directory is not a results file.
    assert_clean_error(&small_run(dir.path(), &[]), "cannot write");
    // A failing run leaves an existing results file as it was.
    let existing = dir.path().join("old.json");
    std::fs::write(&existing, "{\"precious\": true}").unwrap();
    let output = small_run(&existing, &["--data-dir", "/definitely/not/here"]);
    assert_clean_error(&output, "data directory not found");
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "{\"precious\": true}"
    );
}

#[test]
fn missing_data_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let missing_dir = dir.path().join("nope");
    assert_clean_error(
        &small_run(&out, &["--data-dir", missing_dir.to_str().unwrap()]),
        "data directory not found",
    );
    std::fs::create_dir_all(dir.path().join("data/mnist")).unwrap();
    let data = dir.path().join("data");
    assert_clean_error(
        &small_run(&out, &["--data-dir", data.to_str().unwrap()]),
        "data file not found",
    );
}

#[test]
fn corrupt_data_files_are_reported_by_name() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("r.json");
    type Damage = fn(&Path);
    let cases: &[(&str, Damage, &str)] = &[
        (
            "truncated gzip",
            |m| truncate(&m.join("train-labels-idx1-ubyte.gz"), 100),
            "corrupt or truncated gzip",
        ),
        (
            "corrupt gzip",
            |m| flip_bytes(&m.join("t10k-labels-idx1-ubyte.gz")),
            "t10k-labels-idx1-ubyte.gz",
        ),
        (
            "wrong magic",
            |m| {
                std::fs::remove_file(m.join("train-labels-idx1-ubyte.gz")).unwrap();
                let mut bytes = idx_writer::labels(&[1, 2, 3]);
                bytes[3] = 0x03;
                std::fs::write(m.join("train-labels-idx1-ubyte"), bytes).unwrap();
            },
            "wrong magic number",
        ),
        (
            "count mismatch",
            |m| write_test_split(m, 3, 4),
            "count mismatch",
        ),
        (
            "checksum mismatch",
            |m| write_test_split(m, 3, 3),
            "checksum mismatch",
        ),
        (
            "truncated IDX payload",
            |m| {
                std::fs::remove_file(m.join("t10k-labels-idx1-ubyte.gz")).unwrap();
                let mut bytes = idx_writer::labels(&[1; 10_000]);
                bytes.truncate(5000);
                std::fs::write(m.join("t10k-labels-idx1-ubyte"), bytes).unwrap();
            },
            "truncated",
        ),
    ];
    for (what, damage, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mnist = copy_data(dir.path());
        damage(&mnist);
        let output = small_run(&out, &["--data-dir", dir.path().to_str().unwrap()]);
        eprintln!("case: {what}");
        assert_clean_error(&output, needle);
    }
    assert!(!out.exists());
}

/// Replaces the test split by `images` blank images and `labels` labels (valid IDX files).
fn write_test_split(mnist: &Path, images: usize, labels: usize) {
    let images = idx_writer::gzip(&idx_writer::images(&vec![0; 784 * images]));
    std::fs::write(mnist.join("t10k-images-idx3-ubyte.gz"), images).unwrap();
    let labels = idx_writer::gzip(&idx_writer::labels(&vec![1; labels]));
    std::fs::write(mnist.join("t10k-labels-idx1-ubyte.gz"), labels).unwrap();
}

fn truncate(path: &Path, keep_from_end: usize) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() - keep_from_end]).unwrap();
}

fn flip_bytes(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xa5;
    }
    std::fs::write(path, bytes).unwrap();
}

/// The one results file in `dir` whose name starts with `prefix` (a suite names its runs
/// METHOD-BENCHMARK-seedS-DIGEST.json).
fn results_file(dir: &Path, prefix: &str) -> PathBuf {
    let matches: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".json")
        })
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "{prefix} in {}: {matches:?}",
        dir.display()
    );
    matches[0].clone()
}

#[test]
fn suite_runs_every_applicable_method_and_summarises_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("suite");
    let args = [
        "suite",
        "--benchmark",
        "mnist-split",
        "--seeds",
        "0,1",
        "--methods",
        "single,icarl,gem",
        "--tasks",
        "2",
        "--samples-per-task",
        "30",
        "--threads",
        "1",
        "--eval-every",
        "2",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    let output = episodic(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Not a terminal: every run says when it starts and ends, and progress comes as lines.
    assert!(stderr.starts_with("progress: "), "{stderr}");
    for k in 1..=6 {
        assert!(stderr.contains(&format!("run {k}/6: ")), "{stderr}");
    }
    assert_eq!(stderr.matches(": started, ").count(), 6, "{stderr}");
    for method in ["single", "icarl", "gem"] {
        for seed in [0, 1] {
            let file = results_file(&out, &format!("{method}-mnist-split-seed{seed}-"));
            let results: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            assert_eq!(results["config"]["method"]["name"], method);
            assert_eq!(results["config"]["seed"], seed);
        }
        assert!(
            stdout.contains(&format!("| mnist-split | {method} | 2 |")),
            "{stdout}"
        );
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "method,benchmark,seed,ACC,BWT,FWT,seconds");
    assert_eq!(lines.len(), 7, "{csv}");
    // One writer: the suite's summary is the report's, byte for byte.
    assert_eq!(
        std::fs::read_to_string(out.join("report/summary.csv")).unwrap(),
        csv
    );
    assert!(out.join("report/index.html").is_file());
    assert!(out.join("report/fig1-metrics.svg").is_file());
    // A second run keeps what is already there.
    let again = episodic(&args);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("kept"));

    // No method of the list applies to the benchmark.
    assert_clean_error(
        &episodic(&[
            "suite",
            "--benchmark",
            "mnist-permutations",
            "--methods",
            "icarl",
            "--out-dir",
            out.to_str().unwrap(),
        ]),
        "--methods",
    );
}

#[test]
fn every_method_gives_the_same_results_at_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    for (method, benchmark) in [
        ("single", "mnist-permutations"),
        ("independent", "mnist-permutations"),
        ("multimodal", "mnist-rotations"),
        ("ewc", "mnist-permutations"),
        ("icarl", "mnist-split"),
        ("agem", "mnist-permutations"),
        ("er", "mnist-split"),
        ("gem", "mnist-rotations"),
    ] {
        let results: Vec<serde_json::Value> = ["1", "2"]
            .iter()
            .map(|threads| {
                let out = dir.path().join(format!("{method}-{threads}.json"));
                let output = small_run(
                    &out,
                    &[
                        "--method",
                        method,
                        "--benchmark",
                        benchmark,
                        "--tasks",
                        if benchmark == "mnist-split" { "5" } else { "3" },
                        "--samples-per-task",
                        "40",
                        "--threads",
                        threads,
                    ],
                );
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let mut value: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
                value.as_object_mut().unwrap().remove("timing");
                value["config"].as_object_mut().unwrap().remove("threads");
                value
            })
            .collect();
        assert_eq!(results[0], results[1], "{method}: 1 and 2 threads differ");
    }
}
