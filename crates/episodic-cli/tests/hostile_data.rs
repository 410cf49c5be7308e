//! End to end: hostile data files, scenarios, configuration files, grid files, shard specs
//! and numeric extremes. Every case runs the real binary and must end with exit code 2, one
//! non-empty line on stderr that starts with `error:` and names the file, key or option, and
//! an existing results file left exactly as it was.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use episodic::data::cifar::{cifar_writer, IMAGE_BYTES};
use episodic::data::idx::idx_writer;
use episodic::data::npz::npy_writer;
use episodic::data::pickle::writer::Pickle;
use episodic::data::CifarVariant;

const BIN: &str = env!("CARGO_BIN_EXE_episodic");

/// What an earlier run left in the results file every refused case points `--out` at.
const OLD_RESULTS: &[u8] = b"{\"an earlier run\": true}\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn episodic(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env("EPISODIC_DATA", repo().join("data"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `args` (a `run` gets `--out old.json --force` and `--threads 1`, a `suite` `--out-dir
/// old/` unless its grid file names one) with an earlier results file in place, and asserts a
/// clean refusal that mentions every one of `needles`; the earlier results are left unchanged
/// (even though `--force` would let a successful run replace them).
fn refused(dir: &Path, args: &[&str], needles: &[&str]) {
    let old = dir.join("old.json");
    std::fs::write(&old, OLD_RESULTS).unwrap();
    let old_dir = dir.join("old");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::write(old_dir.join("summary.csv"), OLD_RESULTS).unwrap();
    let mut all: Vec<&str> = args.to_vec();
    match args.first() {
        Some(&"run") => {
            all.extend(["--out", old.to_str().unwrap(), "--force"]);
            if !args.contains(&"--threads") {
                all.extend(["--threads", "1"]);
            }
        }
        Some(&"suite") => all.extend(["--out-dir", old_dir.to_str().unwrap()]),
        _ => {}
    }
    let output = episodic(dir, &all);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("{args:?} gave: {stderr}");
    assert_eq!(output.status.code(), Some(2), "{context}");
    assert!(!stderr.contains("panicked"), "{context}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line: {context}");
    assert!(lines[0].starts_with("error: "), "{context}");
    for needle in needles {
        assert!(lines[0].contains(needle), "expected {needle:?}: {context}");
    }
    assert_eq!(std::fs::read(&old).unwrap(), OLD_RESULTS, "{context}");
    let left: Vec<_> = std::fs::read_dir(&old_dir).unwrap().collect();
    assert_eq!(left.len(), 1, "{context}");
    assert_eq!(
        std::fs::read(old_dir.join("summary.csv")).unwrap(),
        OLD_RESULTS,
        "{context}"
    );
}

/// A run of own data `path` in `scenario`, 2 tasks of 5 examples unless `extra` says otherwise.
fn own<'a>(path: &'a str, scenario: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--data", path, "--scenario", scenario];
    if !extra.contains(&"--tasks") && scenario != "class-split" && scenario != "given" {
        args.extend(["--tasks", "2"]);
    }
    if !extra.contains(&"--samples-per-task") && scenario != "class-split" && scenario != "given" {
        args.extend(["--samples-per-task", "5"]);
    }
    args.extend_from_slice(extra);
    args
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------
// IDX files of any shape

/// Writes an IDX data set into `dir`: `n` training and `n / 2` test images of `dims`
/// (train) and `test_dims`, labels `k % 3`.
fn write_idx(dir: &Path, dims: &[usize], test_dims: &[usize], n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let images = |dims: &[usize], n: usize| {
        let per: usize = dims.iter().product();
        let px: Vec<u8> = (0..n * per).map(|i| (i * 7 % 256) as u8).collect();
        idx_writer::images_of(&px, dims)
    };
    let labels = |n: usize| idx_writer::labels(&(0..n).map(|k| (k % 3) as u8).collect::<Vec<_>>());
    std::fs::write(dir.join("train-images-idx3-ubyte"), images(dims, n)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels(n)).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images(test_dims, n / 2)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels(n / 2)).unwrap();
}

#[test]
fn idx_pairs_of_any_shape_run_and_damaged_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // 2 x 3 x 4 images (2 channels of 3 x 4) run.
    let good = t.join("good");
    write_idx(&good, &[2, 3, 4], &[2, 3, 4], 12);
    let out = t.join("good.json");
    let run = episodic(
        t,
        &[
            "run",
            "--data",
            s(&good),
            "--scenario",
            "permutations",
            "--tasks",
            "2",
            "--samples-per-task",
            "5",
            "--threads",
            "1",
            "--out",
            s(&out),
        ],
    );
    ok(&run);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r["config"]["model"]["input"], 24);
    assert_eq!(r["config"]["model"]["classes"], 3);
    // ... but do not rotate: they are not square.
    refused(
        t,
        &own(s(&good), "rotations", &[]),
        &["--scenario", "square", "2x3x4"],
    );

    // Truncated payload.
    let dir = t.join("truncated");
    write_idx(&dir, &[2, 3, 4], &[2, 3, 4], 12);
    let path = dir.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    refused(
        t,
        &own(s(&dir), "permutations", &[]),
        &["train-images-idx3-ubyte", "truncated"],
    );

    // Train and test shapes disagree.
    let dir = t.join("shapes");
    write_idx(&dir, &[2, 3, 4], &[2, 4, 3], 12);
    refused(
        t,
        &own(s(&dir), "permutations", &[]),
        &["t10k-images-idx3-ubyte", "2x4x3", "2x3x4"],
    );

    // Element type other than unsigned bytes (0x0D: float).
    let dir = t.join("floats");
    write_idx(&dir, &[3, 4], &[3, 4], 12);
    let path = dir.join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[2] = 0x0D;
    std::fs::write(&path, bytes).unwrap();
    refused(
        t,
        &own(s(&dir), "permutations", &[]),
        &["train-images-idx3-ubyte", "element type 0x0d"],
    );

    // Five dimensions (count and four more).
    let dir = t.join("five");
    write_idx(&dir, &[3, 4], &[3, 4], 12);
    let mut bytes = idx_writer::header(0x0805, &[12, 1, 2, 3, 2]);
    bytes.extend(vec![0u8; 12 * 12]);
    std::fs::write(dir.join("train-images-idx3-ubyte"), bytes).unwrap();
    refused(
        t,
        &own(s(&dir), "permutations", &[]),
        &["train-images-idx3-ubyte", "5 dimensions"],
    );

    // A folder of IDX files with one missing names it (it said x_train.npy was missing).
    let dir = t.join("incomplete");
    write_idx(&dir, &[3, 4], &[3, 4], 12);
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    refused(
        t,
        &own(s(&dir), "permutations", &[]),
        &["not found", "t10k-labels-idx?-ubyte"],
    );

    // 12 images, 11 labels.
    let dir = t.join("count");
    write_idx(&dir, &[3, 4], &[3, 4], 12);
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx_writer::labels(&[0; 11]),
    )
    .unwrap();
    refused(
        t,
        &own(s(&dir), "permutations", &[]),
        &["count mismatch", "train-labels-idx1-ubyte", "11 labels"],
    );
}

// ---------------------------------------------------------------------------------------
// CIFAR, binary and python

/// A complete small CIFAR data set of `variant` in `root/<archive folder>/`: one training
/// and one test image per class.
fn write_cifar(root: &Path, variant: CifarVariant, binary: bool) -> PathBuf {
    let dir = root.join(variant.folders()[usize::from(!binary)]);
    let classes = variant.classes() as u32;
    let labels: Vec<u32> = (0..classes).collect();
    let images: Vec<u8> = (0..classes as usize * IMAGE_BYTES)
        .map(|i| (i % 251) as u8)
        .collect();
    cifar_writer::write_dir(
        &dir,
        variant,
        binary,
        (&images, &labels),
        (&images, &labels),
        None,
    )
    .unwrap();
    dir
}

/// The command lines that load CIFAR from `root`: `cifar100` and `cifar10-split`.
fn cifar_run(variant: CifarVariant, root: &Path) -> Vec<String> {
    let benchmark = match variant {
        CifarVariant::Cifar100 => "cifar100",
        CifarVariant::Cifar10 => "cifar10-split",
    };
    ["run", "--benchmark", benchmark, "--data-dir", s(root)]
        .map(String::from)
        .to_vec()
}

fn refused_owned(dir: &Path, args: &[String], needles: &[&str]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(dir, &args, needles);
}

#[test]
fn damaged_cifar_binary_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for variant in [CifarVariant::Cifar100, CifarVariant::Cifar10] {
        let root = tmp.path().join(variant.name());
        let dir = write_cifar(&root, variant, true);
        let test = dir.join(if variant == CifarVariant::Cifar100 {
            "test.bin"
        } else {
            "test_batch.bin"
        });
        let good = std::fs::read(&test).unwrap();
        // A truncated record.
        std::fs::write(&test, &good[..good.len() - 100]).unwrap();
        refused_owned(
            tmp.path(),
            &cifar_run(variant, &root),
            &[s(&test), "not a whole number"],
        );
        // A label beyond the classes (the fine label byte of the second record).
        let mut bad = good.clone();
        let label_at = variant.record_bytes() + usize::from(variant == CifarVariant::Cifar100);
        bad[label_at] = 200;
        std::fs::write(&test, &bad).unwrap();
        refused_owned(
            tmp.path(),
            &cifar_run(variant, &root),
            &[s(&test), "record 1 has label 200"],
        );
    }
}

#[test]
fn damaged_cifar_python_pickles_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let px = vec![7u8; 2 * IMAGE_BYTES];
    // A batch dict with labels [1, 2] (CIFAR-10's key) and what `data` makes as its data.
    let batch = |labels_key: &[u8], data: &dyn Fn(&mut Pickle)| {
        let mut p = Pickle::new();
        p.raw(b"}(")
            .bytes(labels_key)
            .int_list(&[1, 2])
            .bytes(b"data");
        data(&mut p);
        p.raw(b"u").stop()
    };
    let pwned = tmp.path().join("pwned");
    let command = format!("touch {}", pwned.display());
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "not a dict",
            Pickle::new().int_list(&[1, 2]).stop(),
            &["holds a list, not a dict"],
        ),
        (
            "missing key",
            batch(b"coarse", &|p| {
                p.ndarray(&[2, IMAGE_BYTES], "u1", false, &px);
            }),
            &["no '"],
        ),
        (
            "wrong dtype",
            batch(b"labels", &|p| {
                p.ndarray(&[2, IMAGE_BYTES], "<f4", false, &px);
            }),
            &["'data' has dtype \"<f4\""],
        ),
        (
            "wrong shape",
            batch(b"labels", &|p| {
                p.ndarray(&[2, 32, 32, 3], "u1", false, &px);
            }),
            &["'data' has shape [2, 32, 32, 3]"],
        ),
        (
            "os.system",
            batch(b"labels", &|p| {
                p.global("os", "system").str(&command).raw(&[0x85, b'R']);
            }),
            &["global os.system"],
        ),
        (
            "code object",
            batch(b"labels", &|p| {
                p.global("marshal", "loads")
                    .raw(b"C\x03\xe3\x00\x00")
                    .raw(&[0x85, b'R']);
            }),
            &["global marshal.loads"],
        ),
    ];
    for variant in [CifarVariant::Cifar100, CifarVariant::Cifar10] {
        let root = tmp.path().join(variant.name());
        let dir = write_cifar(&root, variant, false);
        let test = dir.join(if variant == CifarVariant::Cifar100 {
            "test"
        } else {
            "test_batch"
        });
        for (what, bytes, needles) in &cases {
            let bytes = match (variant, *what) {
                // CIFAR-100 labels are under fine_labels: give it that key.
                (
                    CifarVariant::Cifar100,
                    "wrong dtype" | "wrong shape" | "os.system" | "code object",
                ) => {
                    let mut b = bytes.clone();
                    replace(&mut b, b"labels", b"fine_labels");
                    b
                }
                _ => bytes.clone(),
            };
            std::fs::write(&test, bytes).unwrap();
            let mut all = vec![s(&test)];
            all.extend_from_slice(needles);
            refused_owned(tmp.path(), &cifar_run(variant, &root), &all);
        }
    }
    assert!(!pwned.exists(), "the pickle ran a command");
}

/// Replaces the first `from` in `bytes` with `to`, fixing the length prefix of the
/// `BINUNICODE` string that holds it (as the pickle writer lays out `bytes` values).
fn replace(bytes: &mut Vec<u8>, from: &[u8], to: &[u8]) {
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    let len = u32::from_le_bytes(bytes[at - 4..at].try_into().unwrap()) as usize;
    assert_eq!(len, from.len());
    bytes.splice(at - 4..at + from.len(), {
        let mut v = (to.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(to);
        v
    });
}

#[test]
fn a_folder_without_cifar_says_what_it_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("readme.txt"), "nothing here").unwrap();
    for variant in [CifarVariant::Cifar100, CifarVariant::Cifar10] {
        let [binary, python] = variant.folders();
        refused_owned(
            tmp.path(),
            &cifar_run(variant, &empty),
            &[s(&empty), binary, python],
        );
    }
    let missing = tmp.path().join("missing");
    refused_owned(
        tmp.path(),
        &cifar_run(CifarVariant::Cifar100, &missing),
        &[s(&missing)],
    );
}

// ---------------------------------------------------------------------------------------
// NumPy arrays

/// 12 grey 2 x 2 images and labels `k % 3`, as `(name, .npy bytes)` entries.
fn arrays() -> Vec<(&'static str, Vec<u8>)> {
    let x: Vec<u8> = (0..48).map(|i| (i * 5 % 256) as u8).collect();
    let y: Vec<i64> = (0..12).map(|k| k % 3).collect();
    vec![
        ("x_train", npy_writer::u8s(&[12, 2, 2], &x)),
        ("y_train", npy_writer::i64s(&[12], &y)),
    ]
}

/// `arrays()` with `name` replaced by `bytes` (or removed for `None`), written as an .npz.
fn npz_with(dir: &Path, file: &str, name: &'static str, bytes: Option<Vec<u8>>) -> PathBuf {
    let mut entries: Vec<(&str, Vec<u8>)> =
        arrays().into_iter().filter(|(n, _)| *n != name).collect();
    if let Some(bytes) = bytes {
        entries.push((name, bytes));
    }
    let path = dir.join(file);
    std::fs::write(&path, npy_writer::npz(&entries, true)).unwrap();
    path
}

/// An .npz file name, the array replaced (or removed), and what the error must say.
type NpzCase = (
    &'static str,
    &'static str,
    Option<Vec<u8>>,
    &'static [&'static str],
);

#[test]
fn damaged_numpy_arrays_are_refused_naming_the_array() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let x =
        |dtype: &str, size: usize| npy_writer::npy(dtype, &[12, 4], false, &vec![1u8; 48 * size]);
    let floats = |v: f32| {
        let mut xs = vec![0.5f32; 48];
        xs[7] = v;
        npy_writer::f32s(&[12, 4], &xs)
    };
    let labels = |v: i64| {
        let mut ys: Vec<i64> = (0..12).map(|k| k % 3).collect();
        ys[4] = v;
        npy_writer::i64s(&[12], &ys)
    };
    let u64_labels = {
        let ys: Vec<u8> = (0..12u64)
            .map(|k| if k == 4 { 1u64 << 32 } else { k % 3 })
            .flat_map(u64::to_le_bytes)
            .collect();
        npy_writer::npy("<u8", &[12], false, &ys)
    };
    let cases: Vec<NpzCase> = vec![
        (
            "flat.npz",
            "x_train",
            Some(npy_writer::u8s(&[48], &[0; 48])),
            &["x_train.npy", "shape [48]"],
        ),
        (
            "bool.npz",
            "x_train",
            Some(x("|b1", 1)),
            &["x_train.npy", "dtype |b1"],
        ),
        (
            "int.npz",
            "x_train",
            Some(x("<i4", 4)),
            &["x_train.npy", "dtype <i4 for examples"],
        ),
        (
            "nan.npz",
            "x_train",
            Some(floats(f32::NAN)),
            &["x_train.npy", "example 1", "NaN"],
        ),
        (
            "inf.npz",
            "x_train",
            Some(floats(f32::INFINITY)),
            &["x_train.npy", "inf"],
        ),
        (
            "u64.npz",
            "y_train",
            Some(u64_labels),
            &["y_train.npy", "value 4294967296 at index 4"],
        ),
        (
            "neg.npz",
            "y_train",
            Some(labels(-1)),
            &["y_train.npy", "value -1 at index 4"],
        ),
        // A label that fits 32 bits but would make a network of 4 billion outputs.
        (
            "huge.npz",
            "y_train",
            Some(labels(i64::from(u32::MAX))),
            &["y_train.npy", "label 4294967295", "65536 classes"],
        ),
        (
            "short.npz",
            "y_train",
            Some(npy_writer::i64s(&[11], &[0; 11])),
            &["y_train.npy", "shape [11], expected (12,)"],
        ),
        ("no-y.npz", "y_train", None, &["y_train.npy", "not found"]),
        (
            "x-test-only.npz",
            "x_test",
            Some(npy_writer::u8s(&[3, 2, 2], &[0; 12])),
            &["x-test-only.npz", "x_test and y_test must come together"],
        ),
    ];
    for (file, name, bytes, needles) in cases {
        let path = npz_with(t, file, name, bytes);
        refused(t, &own(s(&path), "permutations", &[]), needles);
    }
    let not_zip = t.join("not-zip.npz");
    std::fs::write(&not_zip, b"PK but not really a zip archive").unwrap();
    refused(
        t,
        &own(s(&not_zip), "permutations", &[]),
        &["not-zip.npz", "not a readable zip archive"],
    );
    // The same damage in a folder of .npy files names the file.
    let folder = t.join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, bytes) in arrays() {
        std::fs::write(folder.join(format!("{name}.npy")), bytes).unwrap();
    }
    std::fs::write(folder.join("y_train.npy"), labels(-7)).unwrap();
    refused(
        t,
        &own(s(&folder), "permutations", &[]),
        &["y_train.npy", "value -7"],
    );
    let missing = t.join("missing.npz");
    refused(
        t,
        &own(s(&missing), "permutations", &[]),
        &["--data", "missing.npz", "does not exist"],
    );
}

// ---------------------------------------------------------------------------------------
// Scenarios

#[test]
fn impossible_scenarios_are_refused_naming_the_option() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let npz = npz_with(t, "mine.npz", "none", None);
    let npz = s(&npz);
    let rect = npz_with(
        t,
        "rect.npz",
        "x_train",
        Some(npy_writer::u8s(&[12, 1, 2, 3], &[9; 72])),
    );
    refused(
        t,
        &own(s(&rect), "rotations", &[]),
        &["--scenario", "rotations need square images", "1x2x3"],
    );
    refused(
        t,
        &own(npz, "class-split", &["--classes-per-task", "0"]),
        &["--classes-per-task", "at least 1"],
    );
    refused(
        t,
        &own(npz, "class-split", &["--classes-per-task", "4"]),
        &["--classes-per-task", "4 classes per task", "3 classes"],
    );
    refused(
        t,
        &own(
            npz,
            "class-split",
            &["--classes-per-task", "2", "--tasks", "2"],
        ),
        &["--classes-per-task", "need 4 classes", "has 3"],
    );
    refused(
        t,
        &own(npz, "given", &[]),
        &["--scenario", "given needs task ids"],
    );
    refused(t, &["run", "--data", npz], &["--data", "give --scenario"]);
    refused(
        t,
        &own(npz, "permutations", &["--classes-per-task", "2"]),
        &["--classes-per-task", "only to --scenario class-split"],
    );
    let both = t.join("both.toml");
    std::fs::write(
        &both,
        format!("data = {npz:?}\nbenchmark = \"mnist-split\"\n"),
    )
    .unwrap();
    refused(
        t,
        &["run", "--config", s(&both)],
        &["--data", "--benchmark", "not both"],
    );
}

#[test]
fn numeric_extremes_are_refused_or_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let npz = npz_with(t, "mine.npz", "none", None);
    let npz = s(&npz);
    let max = "18446744073709551615";
    refused(
        t,
        &own(npz, "class-split", &["--classes-per-task", max]),
        &["--classes-per-task", max],
    );
    refused(
        t,
        &own(npz, "class-split", &["--tasks", max]),
        &["--tasks", "at most 1000"],
    );
    refused(
        t,
        &own(npz, "permutations", &["--tasks", max]),
        &["--tasks", "at most 1000"],
    );
    refused(
        t,
        &["run", "--samples-per-task", "0", "--tasks", "2"],
        &["--samples-per-task", "at least 1"],
    );
    refused(
        t,
        &[
            "run",
            "--tasks",
            "2",
            "--samples-per-task",
            "5",
            "--epochs",
            max,
        ],
        &["--epochs", "more than the"],
    );
    refused(
        t,
        &[
            "run",
            "--tasks",
            "2",
            "--samples-per-task",
            "5",
            "--threads",
            max,
        ],
        &["--threads", "at most 1024"],
    );
    refused(
        t,
        &["run", "--classes-per-task", "99999999999999999999"],
        &["--classes-per-task"],
    );
    // `all` on permutations is every one of the 60,000 images in every task (20 tasks of
    // 6,000 steps: a long run, so only resolved here).
    let printed = ok(&episodic(
        t,
        &["run", "--samples-per-task", "all", "--print-config"],
    ));
    assert!(printed.contains("samples-per-task = \"all\""), "{printed}");
    assert!(printed.contains("tasks = 20"), "{printed}");
    // Huge memories and batches are bounded by the examples there are: these run.
    let out = t.join("huge.json");
    for (method, option) in [
        ("gem", "--memories-per-task"),
        ("agem", "--memories-per-task"),
        ("er", "--memories-per-task"),
        ("single", "--batch-size"),
    ] {
        ok(&episodic(
            t,
            &own(
                npz,
                "permutations",
                &[
                    "--method",
                    method,
                    option,
                    max,
                    "--threads",
                    "1",
                    "--out",
                    s(&out),
                    "--force",
                ],
            ),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Configuration files

#[test]
fn bad_run_configuration_files_are_refused_with_file_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let write = |name: &str, text: &[u8]| {
        let path = t.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cases: Vec<(&str, &[u8], &[&str])> = vec![
        (
            "unknown.toml",
            b"seed = 1\n\nlearning-rate = 0.1\n",
            &["unknown.toml line 3", "learning-rate"],
        ),
        (
            "type.toml",
            b"seed = 1\ntasks = \"many\"\n",
            &["type.toml line 2", "invalid type"],
        ),
        (
            "duplicate.toml",
            b"lr = 0.1\nseed = 2\nlr = 0.2\n",
            &["duplicate.toml line 3", "duplicate key `lr`"],
        ),
        (
            "prose.toml",
            b"This is not TOML at all, just a sentence.\n",
            &["prose.toml line 1"],
        ),
        (
            "binary.toml",
            b"\x00\xff\xfe\x00garbage",
            &["binary.toml", "UTF-8"],
        ),
        (
            "not-results.json",
            b"{\"accuracy\": [0.5]}",
            &["not-results.json is not a results file"],
        ),
        (
            "broken.json",
            b"{\"config\": ",
            &["broken.json is not a results file"],
        ),
    ];
    for (name, text, needles) in cases {
        let path = write(name, text);
        refused(t, &["run", "--config", s(&path)], needles);
    }
    refused(
        t,
        &["run", "--config", s(&t.join("absent.toml"))],
        &["cannot read", "absent.toml"],
    );
    // A table where a key belongs, and a key with a multi-line string.
    let path = write("table.toml", b"[seed]\nx = 1\n");
    refused(t, &["run", "--config", s(&path)], &["table.toml"]);
    let path = write("multi.toml", b"method = \"\"\"\ngem\n\"\"\"\n");
    refused(t, &["run", "--config", s(&path)], &["multi.toml", "method"]);
}

#[test]
fn bad_suite_grid_files_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cases: Vec<(&str, &[&str])> =
        vec![
        ("bogus = 1\n", &["grid.toml line 1", "unknown field `bogus`"]),
        ("seeds = [0]\nlr = \"fast\"\n", &["grid.toml line 2", "invalid type"]),
        ("lr = []\n", &["lr", "an empty list"]),
        ("seeds = [0, 0]\n", &["seed", "0 is listed twice"]),
        ("threads = 2\n", &["grid.toml line 1", "threads is set per run"]),
        ("out = \"x.json\"\n", &["grid.toml line 1", "out is set per run"]),
        ("seed = 0\nseeds = [1]\n", &["grid.toml line 2", "seed is given twice"]),
        ("force = \"yes\"\n", &["grid.toml line 1", "force has the wrong type"]),
        (
            "benchmarks = [\"mnist-permutations\", \"mnist-rotations\"]\nmethods = [\"icarl\"]\n",
            &["none of them applies"],
        ),
        ("just some words\n", &["grid.toml line 1"]),
    ];
    let grid = t.join("grid.toml");
    for (text, needles) in cases {
        std::fs::write(&grid, text).unwrap();
        refused(t, &["suite", "--list-jobs", "--config", s(&grid)], needles);
    }
    refused(
        t,
        &["suite", "--list-jobs", "--seeds", "0,0"],
        &["seed", "0 is listed twice"],
    );
    refused(
        t,
        &[
            "suite",
            "--list-jobs",
            "--config",
            s(&t.join("absent.toml")),
        ],
        &["cannot read", "absent.toml"],
    );
}

#[test]
fn bad_shard_specs_are_refused_naming_the_option() {
    let tmp = tempfile::tempdir().unwrap();
    for (spec, needle) in [
        ("3/3", "expected 0 <= I < N, got 3/3"),
        ("1/0", "expected 0 <= I < N, got 1/0"),
        ("x", "expected I/N"),
        ("1", "expected I/N"),
        ("-1/3", "shard index"),
        ("1/-3", "shard count"),
        ("18446744073709551616/3", "shard index"),
    ] {
        refused(
            tmp.path(),
            &["suite", "--list-jobs", "--seeds", "0", "--shard", spec],
            &["--shard", needle],
        );
    }
}
