//! Helpers shared by the end-to-end tests: running the binary in a folder, and the checks of
//! a clean success and of a clean failure.

#![allow(dead_code)] // Each test file uses its own subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_episodic");

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary run in `dir` with `args`, the vendored data found through `EPISODIC_DATA`.
pub fn episodic(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env("EPISODIC_DATA", repo().join("data"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Standard output of a successful run (fails the test, showing stderr, otherwise).
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts a clean failure: exit code 2, one line on stderr that starts with `error: ` and
/// mentions `needle`.
pub fn assert_clean_error(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

/// A results file as JSON.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A results file without its timings, the only fields that differ between equal runs.
pub fn without_timing(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().unwrap().remove("timing");
    v
}

/// A CIFAR data set of `variant` in its official binary layout under `root`, with
/// `train_per_class` training and `test_per_class` test images of every class: pixels are
/// noise around a per-class colour, so that the classes can be learned. Returns the folder.
pub fn write_learnable_cifar(
    root: &Path,
    variant: episodic::data::CifarVariant,
    train_per_class: usize,
    test_per_class: usize,
) -> PathBuf {
    let classes = variant.classes();
    let split = |per_class: usize, salt: usize| -> (Vec<u8>, Vec<u32>) {
        let labels: Vec<u32> = (0..per_class * classes)
            .map(|k| (k % classes) as u32)
            .collect();
        let mut state = (salt as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let images = labels
            .iter()
            .flat_map(|&y| {
                (0..3072)
                    .map(|p| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let colour = (y as usize * 37 + (p / 1024) * 91) % 200;
                        (colour + (state % 56) as usize) as u8
                    })
                    .collect::<Vec<u8>>()
            })
            .collect();
        (images, labels)
    };
    let (train_x, train_y) = split(train_per_class, 1);
    let (test_x, test_y) = split(test_per_class, 2);
    let dir = root.join(variant.folders()[0]);
    episodic::data::cifar::cifar_writer::write_dir(
        &dir,
        variant,
        true,
        (&train_x, &train_y),
        (&test_x, &test_y),
        None,
    )
    .unwrap();
    dir
}
