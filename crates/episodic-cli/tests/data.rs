//! End to end: data sets beyond the vendored MNIST (CIFAR in both layouts, a user's arrays),
//! configuration files, and suites sharded over several output folders.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use episodic::data::cifar::cifar_writer;
use episodic::data::npz::npy_writer;
use episodic::data::CifarVariant;

const BIN: &str = env!("CARGO_BIN_EXE_episodic");

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

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn without_timing(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().unwrap().remove("timing");
    v
}

/// `per_class` images of every class of `variant`, image bytes depending on class and index.
fn cifar_images(variant: CifarVariant, per_class: usize) -> (Vec<u8>, Vec<u32>) {
    let classes = variant.classes() as u32;
    let labels: Vec<u32> = (0..per_class as u32 * classes)
        .map(|k| k % classes)
        .collect();
    let images = labels
        .iter()
        .enumerate()
        .flat_map(|(k, &y)| (0..3072).map(move |p| ((p * 7 + k * 3 + y as usize * 11) % 256) as u8))
        .collect();
    (images, labels)
}

fn write_cifar(root: &Path, variant: CifarVariant, binary: bool) -> PathBuf {
    let folder = variant.folders()[usize::from(!binary)];
    let dir = root.join(folder);
    let (train_x, train_y) = cifar_images(variant, 3);
    let (test_x, test_y) = cifar_images(variant, 1);
    let names: Vec<String> = (0..variant.classes()).map(|c| format!("c{c}")).collect();
    cifar_writer::write_dir(
        &dir,
        variant,
        binary,
        (&train_x, &train_y),
        (&test_x, &test_y),
        Some(&names),
    )
    .unwrap();
    dir
}

#[test]
fn cifar_loads_in_both_layouts_and_runs_its_presets() {
    let tmp = tempfile::tempdir().unwrap();
    let mut matrices = Vec::new();
    for binary in [true, false] {
        let root = tmp.path().join(if binary { "bin" } else { "py" });
        write_cifar(&root, CifarVariant::Cifar100, binary);
        write_cifar(&root, CifarVariant::Cifar10, binary);
        // cifar100: 5 consecutive fine classes per task, every image of each (3 x 5 train,
        // 1 x 5 test); the data folder is the one holding the archive's folder.
        let out = root.join("c100.json");
        let stderr = episodic(
            tmp.path(),
            &[
                "run",
                "--benchmark",
                "cifar100",
                "--data-dir",
                root.to_str().unwrap(),
                "--tasks",
                "3",
                "--threads",
                "1",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        ok(&stderr);
        let log = String::from_utf8_lossy(&stderr.stderr);
        assert!(
            log.contains("3 tasks, 15 training and 5 test examples per task"),
            "{log}"
        );
        let r = read_json(&out);
        assert_eq!(r["config"]["benchmark"], "cifar100");
        // The paper's reduced ResNet-18 by default.
        assert_eq!(r["config"]["model"]["nf"], 20);
        assert_eq!(r["config"]["model"]["classes"], 100);
        assert_eq!(
            r["tasks"][2]["classes"]["classes"],
            serde_json::json!([10, 11, 12, 13, 14])
        );
        matrices.push(r["accuracy_matrix"].clone());
        // cifar10-split, pointed at the layout's folder itself.
        let folder = root.join(CifarVariant::Cifar10.folders()[usize::from(!binary)]);
        let out = root.join("c10.json");
        let run = episodic(
            tmp.path(),
            &[
                "run",
                "--benchmark",
                "cifar10-split",
                "--data-dir",
                folder.to_str().unwrap(),
                "--method",
                "single",
                "--threads",
                "1",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        ok(&run);
        let log = String::from_utf8_lossy(&run.stderr);
        assert!(
            log.contains("5 tasks, 6 training and 2 test examples per task"),
            "{log}"
        );
    }
    assert_eq!(matrices[0], matrices[1], "both layouts hold the same data");
}

/// An .npz of 60 4x4 grey images, labels k % 4, task ids k % 3; with test arrays or not.
fn write_npz(path: &Path, with_test: bool) {
    let n = 60;
    let x: Vec<u8> = (0..n * 16).map(|i| ((i * 37) % 256) as u8).collect();
    let y: Vec<i64> = (0..n as i64).map(|k| k % 4).collect();
    let t: Vec<i64> = (0..n as i64).map(|k| k % 3).collect();
    let mut entries = vec![
        ("x_train", npy_writer::u8s(&[n, 1, 4, 4], &x)),
        ("y_train", npy_writer::i64s(&[n], &y)),
        ("task_train", npy_writer::i64s(&[n], &t)),
    ];
    if with_test {
        entries.push(("x_test", npy_writer::u8s(&[n, 1, 4, 4], &x)));
        entries.push(("y_test", npy_writer::i64s(&[n], &y)));
        entries.push(("task_test", npy_writer::i64s(&[n], &t)));
    }
    std::fs::write(path, npy_writer::npz(&entries, true)).unwrap();
}

#[test]
fn own_arrays_run_with_class_split_and_given_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let npz = tmp.path().join("mine.npz");
    write_npz(&npz, true);
    let out = tmp.path().join("split.json");
    let run = episodic(
        tmp.path(),
        &[
            "run",
            "--data",
            npz.to_str().unwrap(),
            "--scenario",
            "class-split",
            "--classes-per-task",
            "2",
            "--method",
            "gem",
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    ok(&run);
    let r = read_json(&out);
    assert_eq!(r["config"]["benchmark"], "mine-class-split");
    assert_eq!(r["accuracy_matrix"].as_array().unwrap().len(), 2);
    assert_eq!(r["config"]["model"]["input"], 16);
    assert_eq!(r["config"]["model"]["classes"], 4);

    let out = tmp.path().join("given.json");
    let run = episodic(
        tmp.path(),
        &[
            "run",
            "--data",
            npz.to_str().unwrap(),
            "--scenario",
            "given",
            "--method",
            "er",
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    ok(&run);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        log.contains("3 tasks, 20 training and 20 test examples per task"),
        "{log}"
    );
    let r = read_json(&out);
    assert_eq!(r["tasks"][1], serde_json::json!({"given": {"id": 1}}));

    // Without test arrays a seeded sixth is held out, and the run says so.
    let bare = tmp.path().join("bare.npz");
    write_npz(&bare, false);
    let run = episodic(
        tmp.path(),
        &[
            "run",
            "--data",
            bare.to_str().unwrap(),
            "--scenario",
            "permutations",
            "--tasks",
            "2",
            "--method",
            "single",
            "--out",
            tmp.path().join("bare.json").to_str().unwrap(),
        ],
    );
    ok(&run);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        log.contains("10 of its examples are held out for test"),
        "{log}"
    );
    assert!(
        log.contains("2 tasks, 50 training and 10 test examples"),
        "{log}"
    );
}

/// Each method with the keys that apply to it, and their values as TOML.
const EVERY_OPTION: [(&str, &[(&str, &str)]); 5] = [
    ("gem", &[("memories-per-task", "7"), ("margin", "0.25")]),
    ("ewc", &[("memories-per-task", "3"), ("strength", "2.5")]),
    ("agem", &[("memories-per-task", "5"), ("sample-size", "4")]),
    ("icarl", &[("memory-size", "40"), ("strength", "0.5")]),
    ("independent", &[("finetune", "false")]),
];

#[test]
fn every_option_set_in_a_file_resolves_as_the_same_flags_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = format!("{:?}", repo().join("data").display().to_string());
    let common: [(&str, &str); 16] = [
        ("benchmark", "\"mnist-split\""),
        ("data-dir", &data_dir),
        ("scenario", "\"class-split\""),
        ("classes-per-task", "2"),
        ("class-order", "\"random\""),
        ("lr", "0.07"),
        ("seed", "5"),
        ("tasks", "3"),
        ("samples-per-task", "40"),
        ("epochs", "2"),
        ("batch-size", "4"),
        ("shuffle-tasks", "true"),
        ("eval-every", "3"),
        ("threads", "1"),
        ("out", "\"x/out.json\""),
        ("checkpoint-every", "9"),
    ];
    for (method, own) in EVERY_OPTION {
        let mut toml = format!("method = \"{method}\"\ncheckpoint-dir = \"ck\"\n");
        let mut flags: Vec<String> = vec![
            "run".into(),
            "--print-config".into(),
            "--method".into(),
            method.into(),
            "--checkpoint-dir".into(),
            "ck".into(),
        ];
        for (key, value) in common.iter().chain(own.iter()) {
            toml.push_str(&format!("{key} = {value}\n"));
            flags.push(format!("--{key}"));
            flags.push(value.trim_matches('"').into());
        }
        let file = tmp.path().join(format!("{method}.toml"));
        std::fs::write(&file, &toml).unwrap();
        let from_file = ok(&episodic(
            tmp.path(),
            &["run", "--print-config", "--config", file.to_str().unwrap()],
        ));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let from_flags = ok(&episodic(tmp.path(), &flags));
        assert_eq!(from_file, from_flags, "{method}");
        for (key, value) in common.iter().chain(own.iter()) {
            let printed = format!("{key} = {value}");
            assert!(from_file.contains(&printed), "{printed} in\n{from_file}");
        }
        // The printed configuration is a configuration file that resolves the same way.
        let printed = tmp.path().join(format!("{method}-printed.toml"));
        std::fs::write(&printed, &from_file).unwrap();
        let again = ok(&episodic(
            tmp.path(),
            &[
                "run",
                "--print-config",
                "--config",
                printed.to_str().unwrap(),
            ],
        ));
        assert_eq!(again, from_file, "{method}");
        // Flags override the file.
        let over = ok(&episodic(
            tmp.path(),
            &[
                "run",
                "--print-config",
                "--config",
                file.to_str().unwrap(),
                "--seed",
                "11",
            ],
        ));
        assert!(over.contains("seed = 11\n"), "{over}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_fail_with_the_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, needles) in [
        (
            "seed = 1\nmethod = \"gem\"\nlearning-rate = 0.1\n",
            &["line 3", "learning-rate"][..],
        ),
        (
            "seed = 1\ntasks = \"many\"\n",
            &["line 2", "invalid type"][..],
        ),
        ("method = \"sgd\"\n", &["line 1", "sgd"][..]),
        ("seed = [1, 2]\n", &["line 1"][..]),
        ("lr = 0.1\nlr = 0.2\n", &["line 2", "lr"][..]),
    ] {
        let file = tmp.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = episodic(tmp.path(), &["run", "--config", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for needle in needles {
            assert!(err.contains(needle), "{needle} in {err}");
        }
    }
}

#[test]
fn a_results_file_runs_again_from_its_embedded_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first.json");
    ok(&episodic(
        tmp.path(),
        &[
            "run",
            "--benchmark",
            "mnist-rotations",
            "--method",
            "ewc",
            "--tasks",
            "2",
            "--samples-per-task",
            "30",
            "--seed",
            "3",
            "--threads",
            "1",
            "--out",
            first.to_str().unwrap(),
        ],
    ));
    let second = tmp.path().join("second.json");
    ok(&episodic(
        tmp.path(),
        &[
            "run",
            "--config",
            first.to_str().unwrap(),
            "--threads",
            "1",
            "--out",
            second.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        without_timing(read_json(&first)),
        without_timing(read_json(&second))
    );
}

fn results_in(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut files: Vec<(String, serde_json::Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                without_timing(read_json(&p)),
            )
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[test]
fn shards_merged_give_the_unsharded_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.toml");
    std::fs::write(
        &grid,
        "benchmarks = [\"mnist-split\"]\nmethods = [\"single\", \"gem\"]\nlr = [0.05, 0.1]\n\
         seeds = [0, 1]\ntasks = 2\nsamples-per-task = 20\n",
    )
    .unwrap();
    let suite = |extra: &[&str], out: &str| {
        let mut args = vec![
            "suite",
            "--config",
            grid.to_str().unwrap(),
            "--threads",
            "1",
            "--out-dir",
            out,
        ];
        args.extend_from_slice(extra);
        episodic(tmp.path(), &args)
    };
    let jobs = ok(&suite(&["--list-jobs"], "all"));
    assert_eq!(jobs.lines().count(), 8, "{jobs}");
    assert_eq!(jobs, ok(&suite(&["--list-jobs"], "all")), "a stable list");
    assert!(jobs
        .lines()
        .all(|l| l.contains("\tepisodic run ") && l.contains("--out all/")));
    ok(&suite(&["--no-report"], "all"));
    for i in 0..3 {
        let shard = format!("{i}/3");
        ok(&suite(
            &["--shard", &shard, "--no-report"],
            &format!("part{i}"),
        ));
    }
    let mut merged: Vec<(String, serde_json::Value)> = (0..3)
        .flat_map(|i| results_in(&tmp.path().join(format!("part{i}"))))
        .collect();
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let whole = results_in(&tmp.path().join("all"));
    assert_eq!(whole.len(), 8);
    assert_eq!(merged, whole);
    // One of the listed commands, run by hand, writes the same file.
    let line = jobs.lines().nth(5).unwrap();
    let (id, command) = line.split_once('\t').unwrap();
    let mut args: Vec<String> = command.split(' ').skip(1).map(String::from).collect();
    let by_hand = tmp.path().join(format!("{id}.json"));
    let at = args.iter().position(|a| a == "--out").unwrap();
    args[at + 1] = by_hand.display().to_string();
    args.extend(["--threads".into(), "1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&episodic(tmp.path(), &args));
    assert_eq!(
        without_timing(read_json(&by_hand)),
        whole
            .iter()
            .find(|(f, _)| f == &format!("{id}.json"))
            .unwrap()
            .1
    );
    // The report merges the shards' folders, each learning rate its own series.
    let report = tmp.path().join("report");
    let printed = ok(&episodic(
        tmp.path(),
        &[
            "report",
            "part0",
            "part1",
            "part2",
            "--out",
            report.to_str().unwrap(),
        ],
    ));
    assert!(printed.contains("report of 8 run(s)"), "{printed}");
    let csv = std::fs::read_to_string(report.join("summary.csv")).unwrap();
    assert!(csv.contains("gem learning_rate=0.05"), "{csv}");
    // A shard spec out of range is refused.
    let bad = suite(&["--shard", "3/3"], "x");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn example_configs_run_in_small_form() {
    let tmp = tempfile::tempdir().unwrap();
    let cifar = tmp.path().join("cifar");
    write_cifar(&cifar, CifarVariant::Cifar100, false);
    let npz = tmp.path().join("own.npz");
    write_npz(&npz, true);
    let dir = repo().join("examples/configs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let path = dir.join(&name).display().to_string();
        let out = tmp
            .path()
            .join(name.replace(".toml", ""))
            .display()
            .to_string();
        let out_file = format!("{out}.json");
        let mut args: Vec<String> = if name.starts_with("grid-") {
            [
                "suite",
                "--config",
                &path,
                "--seeds",
                "0",
                "--out-dir",
                &out,
                "--no-report",
            ]
            .map(String::from)
            .to_vec()
        } else {
            [
                "run",
                "--config",
                &path,
                "--out",
                &out_file,
                "--checkpoint-dir",
                &out,
            ]
            .map(String::from)
            .to_vec()
        };
        // Small: 2 tasks of 10 examples (CIFAR: of all 15), one thread.
        args.extend(["--tasks", "2", "--threads", "1"].map(String::from));
        if name != "gem-cifar100.toml" {
            args.extend(["--samples-per-task", "10"].map(String::from));
        }
        match name.as_str() {
            "gem-cifar100.toml" => args.extend(["--data-dir".into(), cifar.display().to_string()]),
            "er-own-arrays.toml" => args.extend(["--data".into(), npz.display().to_string()]),
            "grid-mnist-lr.toml"
            | "grid-fashion.toml"
            | "gem-mnist-permutations.toml"
            | "ewc-fashion-split.toml" => {}
            other => panic!("{other}: a new example config needs its small form here"),
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&episodic(tmp.path(), &args));
    }
}

#[test]
fn a_failing_run_does_not_stop_the_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = tmp.path().join("grid.toml");
    std::fs::write(
        &grid,
        "benchmarks = [\"mnist-split\"]\nmethods = [\"single\"]\nlr = [1e30, 0.1]\n\
         seeds = [0]\ntasks = 2\nsamples-per-task = 20\n",
    )
    .unwrap();
    let out = episodic(
        tmp.path(),
        &[
            "suite",
            "--config",
            grid.to_str().unwrap(),
            "--threads",
            "1",
            "--out-dir",
            "s",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("error: 1 of 2 runs failed: single-mnist-split-seed0-"),
        "{err}"
    );
    assert!(last.contains("non-finite"), "{last}");
    let results = results_in(&tmp.path().join("s"));
    assert_eq!(results.len(), 1, "the good run's results are written");
    assert_eq!(results[0].1["config"]["method"]["learning_rate"], 0.1);
    let csv = std::fs::read_to_string(tmp.path().join("s/summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(tmp.path().join("s/report/index.html").is_file());
}
