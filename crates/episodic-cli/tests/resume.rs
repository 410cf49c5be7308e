//! Crash and resume, end to end: a run killed with SIGKILL at random points and resumed each
//! time must end with the same results file (apart from timings) as an uninterrupted run;
//! a diverging run must stop with a clear error after saving its last good state; damaged
//! checkpoints must be detected.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_episodic");

/// A continuum small enough for a test and long enough to be killed mid-way (about 1 s).
const SMALL: [&str; 12] = [
    "--tasks",
    "4",
    "--samples-per-task",
    "300",
    "--threads",
    "1",
    "--seed",
    "3",
    "--eval-every",
    "13",
    "--method",
    "gem",
];

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("EPISODIC_DATA");
    command
}

fn run(args: &[&str]) -> Output {
    command(args).output().expect("the binary runs")
}

/// The results file without its timings, which legitimately differ between runs.
fn results_without_timing(path: &Path) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    value.as_object_mut().unwrap().remove("timing");
    value
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A small deterministic generator for the kill times (the test must not depend on luck
/// to be reproducible).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn killed_at_random_points_and_resumed_matches_an_uninterrupted_run() {
    killed_and_resumed_matches_an_uninterrupted_run(&SMALL);
}

#[test]
fn killed_and_resumed_with_momentum_matches_an_uninterrupted_run() {
    let args = [&SMALL[..], &["--momentum", "0.9", "--weight-decay", "1e-4"]].concat();
    killed_and_resumed_matches_an_uninterrupted_run(&args);
}

#[test]
fn killed_and_resumed_resnet_run_matches_an_uninterrupted_run() {
    // The ResNet's running statistics and GEM's momentum must come back too.
    let data = tempfile::tempdir().unwrap();
    let dir =
        common::write_learnable_cifar(data.path(), episodic::data::CifarVariant::Cifar10, 40, 4);
    let args = [
        "--benchmark",
        "cifar10-split",
        "--data-dir",
        path_str(&dir),
        "--nf",
        "4",
        "--method",
        "gem",
        "--momentum",
        "0.5",
        "--threads",
        "1",
        "--eval-every",
        "7",
    ];
    killed_and_resumed_matches_an_uninterrupted_run(&args);
}

/// Kills a run of `small` (options of a short run) at random points, resumes it each time,
/// and compares its results with an uninterrupted run's.
fn killed_and_resumed_matches_an_uninterrupted_run(small: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference.json");
    let output = run(&[&["run", "--out", path_str(&reference)][..], small].concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let ckpt = tmp.path().join("ckpt");
    let out = tmp.path().join("resumed.json");
    let mut rng = Lcg(2026);
    let (mut kills, mut attempts) = (0, 0);
    let finished = loop {
        attempts += 1;
        assert!(attempts < 60, "the run never finished");
        let has_checkpoint = std::fs::read_dir(&ckpt).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
        });
        let args: Vec<&str> = if has_checkpoint {
            vec!["run", "--resume", path_str(&ckpt), "--out", path_str(&out)]
        } else {
            [
                &["run", "--checkpoint-dir", path_str(&ckpt)][..],
                &["--checkpoint-every", "5", "--out", path_str(&out)],
                small,
            ]
            .concat()
        };
        let mut child = command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Kill at a random point for the first five attempts, then let it finish.
        let deadline = Instant::now() + Duration::from_millis(150 + rng.below(700));
        let killed = kills < 5
            && loop {
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                if Instant::now() >= deadline {
                    child.kill().unwrap(); // SIGKILL
                    break true;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
        let output = child.wait_with_output().unwrap();
        if killed {
            kills += 1;
            continue;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(
            !stderr.contains("warning"),
            "no checkpoint can be torn: {stderr}"
        );
        break output;
    };
    assert!(kills >= 3, "only {kills} kills landed mid-run");
    let _ = finished;
    assert_eq!(
        results_without_timing(&out),
        results_without_timing(&reference),
        "resumed results differ after {kills} kills"
    );
    // At most two checkpoints are kept, and no temporary file is left as a checkpoint.
    let checkpoints: Vec<PathBuf> = std::fs::read_dir(&ckpt)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");
}

#[test]
fn a_diverging_run_stops_naming_step_and_task_after_saving_its_last_good_state() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    let out = tmp.path().join("r.json");
    let output = run(&[
        &[
            "run",
            "--checkpoint-dir",
            path_str(&ckpt),
            "--out",
            path_str(&out),
        ][..],
        &SMALL,
        &["--lr", "1e6"],
    ]
    .concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("non-finite") && stderr.contains("at step") && stderr.contains("(task "),
        "{stderr}"
    );
    assert!(stderr.contains("last good state is saved in"), "{stderr}");
    assert!(!out.exists(), "no results file for a failed run");
    // The saved state is the one before the failing step: resuming fails again at the same
    // step, with the same message, instead of training on garbage.
    let again = run(&["run", "--resume", path_str(&ckpt), "--out", path_str(&out)]);
    let again_err = String::from_utf8_lossy(&again.stderr);
    let message = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("error:"))
            .map(|l| {
                l.split("; its last good state")
                    .next()
                    .unwrap_or(l)
                    .to_string()
            })
            .unwrap_or_default()
    };
    assert_eq!(again.status.code(), Some(2), "{again_err}");
    assert_eq!(message(&again_err), message(&stderr));
}

fn fresh_checkpoints(tmp: &Path) -> PathBuf {
    let ckpt = tmp.join("ckpt");
    let out = tmp.join("first.json");
    let output = run(&[
        &[
            "run",
            "--checkpoint-dir",
            path_str(&ckpt),
            "--out",
            path_str(&out),
        ][..],
        &SMALL,
    ]
    .concat());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ckpt
}

fn newest(ckpt: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ckpt)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files.pop().unwrap()
}

#[test]
fn a_corrupt_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = fresh_checkpoints(tmp.path());
    let first = results_without_timing(&tmp.path().join("first.json"));
    let newest = newest(&ckpt);
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff; // a flipped byte in the tensor data
    std::fs::write(&newest, &bytes).unwrap();
    let out = tmp.path().join("again.json");
    let output = run(&["run", "--resume", path_str(&ckpt), "--out", path_str(&out)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: skipped") && stderr.contains("checksum"),
        "{stderr}"
    );
    assert_eq!(results_without_timing(&out), first);
}

#[test]
fn unusable_checkpoint_directories_are_refused_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r.json");
    let assert_refused = |args: &[&str], needle: &str| {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
    };
    let missing = tmp.path().join("nope");
    assert_refused(
        &[
            "run",
            "--resume",
            path_str(&missing),
            "--out",
            path_str(&out),
        ],
        "no usable checkpoint",
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_refused(
        &["run", "--resume", path_str(&empty), "--out", path_str(&out)],
        "no usable checkpoint",
    );
    let garbage = tmp.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(
        garbage.join("checkpoint-0000000004.safetensors"),
        b"\x08\0\0\0\0\0\0\0{}",
    )
    .unwrap();
    assert_refused(
        &[
            "run",
            "--resume",
            path_str(&garbage),
            "--out",
            path_str(&out),
        ],
        "checkpoint-0000000004.safetensors",
    );
    // Settings come from the checkpoint: options that would change them are refused.
    let ckpt = fresh_checkpoints(tmp.path());
    assert_refused(
        &["run", "--resume", path_str(&ckpt), "--seed", "4"],
        "cannot be used with",
    );
    // A fresh run into a directory that already holds checkpoints would mix two runs.
    assert_refused(
        &[
            &[
                "run",
                "--checkpoint-dir",
                path_str(&ckpt),
                "--out",
                path_str(&out),
            ][..],
            &SMALL,
        ]
        .concat(),
        "already holds checkpoints",
    );
    assert_refused(
        &["run", "--checkpoint-every", "5", "--out", path_str(&out)],
        "needs --checkpoint-dir",
    );
    assert_refused(
        &[
            &[
                "run",
                "--checkpoint-dir",
                path_str(&missing),
                "--checkpoint-every",
                "0",
            ][..],
            &SMALL,
        ]
        .concat(),
        "--checkpoint-every",
    );
}
