//! No result is lost or silently replaced: default names per configuration, refusing to
//! replace another configuration's results, resumed runs writing where they were told,
//! symbolic links written through, special files refused, `--out -`; and what a run says in
//! a log while it runs.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::path::Path;

use common::{assert_clean_error, episodic, ok, read_json, without_timing};

const SMALL: [&str; 6] = ["--tasks", "2", "--samples-per-task", "30", "--threads", "1"];

/// `run` with SMALL's options, except those `extra` gives again, and `extra`.
fn small(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into()];
    for pair in SMALL.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend(pair.iter().map(|s| s.to_string()));
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_small(dir: &Path, extra: &[&str]) -> std::process::Output {
    let args = small(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    episodic(dir, &args)
}

fn results_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn default_names_differ_by_configuration_and_other_results_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    ok(&run_small(dir.path(), &[]));
    ok(&run_small(dir.path(), &["--lr", "0.05"]));
    let names = results_files(&dir.path().join("results"));
    assert_eq!(names.len(), 2, "{names:?}");
    for name in &names {
        let digest = name
            .strip_prefix("gem-mnist-permutations-seed0-")
            .and_then(|rest| rest.strip_suffix(".json"))
            .unwrap_or_else(|| panic!("unexpected name {name}"));
        assert_eq!(digest.len(), 8);
        assert!(digest.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    }
    // The same configuration again (at another thread count) goes to the same file.
    ok(&run_small(dir.path(), &["--threads", "2"]));
    assert_eq!(results_files(&dir.path().join("results")), names);

    // An explicit --out never replaces another configuration's results without --force.
    ok(&run_small(dir.path(), &["--out", "mine.json"]));
    let before = std::fs::read(dir.path().join("mine.json")).unwrap();
    let refused = run_small(dir.path(), &["--out", "mine.json", "--lr", "0.05"]);
    assert_clean_error(&refused, "another configuration");
    assert_eq!(std::fs::read(dir.path().join("mine.json")).unwrap(), before);
    std::fs::write(dir.path().join("notes.txt"), "precious").unwrap();
    let refused = run_small(dir.path(), &["--out", "notes.txt"]);
    assert_clean_error(&refused, "not a results file");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "precious"
    );
    ok(&run_small(
        dir.path(),
        &["--out", "mine.json", "--lr", "0.05", "--force"],
    ));
    let replaced = read_json(&dir.path().join("mine.json"));
    assert_eq!(replaced["config"]["method"]["learning_rate"], 0.05);
}

#[test]
fn a_resumed_run_writes_where_the_original_was_told_and_may_change_threads() {
    let dir = tempfile::tempdir().unwrap();
    ok(&run_small(
        dir.path(),
        &["--checkpoint-dir", "ck", "--out", "first.json"],
    ));
    let first = without_timing(read_json(&dir.path().join("first.json")));
    std::fs::remove_file(dir.path().join("first.json")).unwrap();
    // From another folder, with another thread count: the same file, the same results.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let ck = dir.path().join("ck");
    let output = episodic(
        &elsewhere,
        &["run", "--resume", ck.to_str().unwrap(), "--threads", "2"],
    );
    let stdout = ok(&output);
    assert!(stdout.contains("first.json"), "{stdout}");
    let mut again = without_timing(read_json(&dir.path().join("first.json")));
    assert_eq!(again["config"]["threads"], 2);
    again["config"]["threads"] = first["config"]["threads"].clone();
    assert_eq!(again, first);
    assert!(!elsewhere.join("results").exists());
    // --out given again wins.
    let output = episodic(
        &elsewhere,
        &[
            "run",
            "--resume",
            ck.to_str().unwrap(),
            "--out",
            "here.json",
        ],
    );
    ok(&output);
    assert!(elsewhere.join("here.json").exists());
}

#[cfg(unix)]
#[test]
fn links_are_written_through_and_special_files_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real/target.json", dir.path().join("link.json")).unwrap();
    ok(&run_small(dir.path(), &["--out", "link.json"]));
    let link = std::fs::symlink_metadata(dir.path().join("link.json")).unwrap();
    assert!(link.file_type().is_symlink(), "the link stays a link");
    let written = read_json(&dir.path().join("real/target.json"));
    assert_eq!(written["config"]["tasks"], 2);
    assert_eq!(results_files(dir.path()), ["link.json", "real"]);
    assert_eq!(results_files(&dir.path().join("real")), ["target.json"]);

    let refused = run_small(dir.path(), &["--out", "/dev/null"]);
    assert_clean_error(&refused, "not a regular file");
    let null = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(!null.file_type().is_file(), "/dev/null is still a device");
    assert_clean_error(&run_small(dir.path(), &["--out", "real"]), "is a directory");
}

#[test]
fn a_dash_writes_the_results_to_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_small(dir.path(), &["--out", "-"]);
    let stdout = ok(&output);
    let results: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(results["config"]["tasks"], 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("results: standard output"), "{stderr}");
    assert!(!dir.path().join("-").exists() && !dir.path().join("results").exists());
}

#[test]
fn logs_get_the_header_at_once_then_plain_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::BIN)
        .current_dir(dir.path())
        .env("EPISODIC_DATA", common::repo().join("data"))
        .env("EPISODIC_PROGRESS_SECONDS", "0.2")
        .args(["run", "--tasks", "5", "--threads", "1", "--out", "r.json"])
        .output()
        .unwrap();
    ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with("gem on mnist-permutations (mnist, permutations), seed 0")
            && lines[0].ends_with("500 steps"),
        "{stderr}"
    );
    let progress: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(!progress.is_empty(), "{stderr}");
    assert!(
        progress
            .iter()
            .all(|l| l.contains(" elapsed") && (l.contains("task ") || l.contains("evaluating"))),
        "{stderr}"
    );
    // No bar's control characters in a log.
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "{stderr:?}"
    );
}
