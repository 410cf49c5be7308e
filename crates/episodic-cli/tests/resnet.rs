//! End to end on the CIFAR protocol with the reduced ResNet-18: every method runs on
//! CIFAR-format data, and images of the wrong shape or a network the method cannot use
//! are refused with one line.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use common::{assert_clean_error, episodic, ok, read_json, write_learnable_cifar};
use episodic::data::CifarVariant;

#[test]
fn every_method_runs_the_resnet_on_cifar_format_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = write_learnable_cifar(dir, CifarVariant::Cifar10, 6, 2);
    for method in ["single", "independent", "ewc", "icarl", "agem", "er", "gem"] {
        let out = dir.join(format!("{method}.json"));
        let args = [
            "run",
            "--benchmark",
            "cifar10-split",
            "--data-dir",
            data.to_str().unwrap(),
            "--method",
            method,
            "--nf",
            "2",
            "--threads",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        ok(&episodic(dir, &args));
        let r = read_json(&out);
        assert_eq!(r["config"]["model"]["nf"], 2, "{method}");
        assert_eq!(
            r["config"]["model"]["blocks"],
            serde_json::json!([2, 2, 2, 2])
        );
        // 5 tasks of 2 classes: 12 training images each, evaluated on all 5 test sets
        // after every task.
        let matrix = r["accuracy_matrix"].as_array().unwrap();
        assert_eq!(matrix.len(), 5, "{method}");
        assert!(matrix.iter().all(|row| row.as_array().unwrap().len() == 5));
        let acc = r["metrics"]["acc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{method}: ACC {acc}");
        assert_eq!(r["steps"], 10, "{method}");
    }
}

#[test]
fn mnist_images_into_the_resnet_are_refused_naming_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let output = episodic(
        tmp.path(),
        &[
            "run", "--model", "resnet", "--tasks", "2", "--out", "r.json",
        ],
    );
    assert_clean_error(&output, "3 x 32 x 32");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("1x28x28"), "{stderr}");
    assert!(!tmp.path().join("r.json").exists());
}

#[test]
fn resnet_options_that_cannot_apply_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = write_learnable_cifar(dir, CifarVariant::Cifar10, 1, 1);
    let cifar = ["run", "--benchmark", "cifar10-split", "--data-dir"];
    let cifar: Vec<&str> = [&cifar[..], &[data.to_str().unwrap()]].concat();
    let cases: &[(&[&str], &str)] = &[
        (&["--method", "multimodal"], "needs the MLP"),
        (&["--nf", "0"], "nf"),
        (&["--nf", "100000"], "nf"),
        (&["--model", "mlp", "--nf", "4"], "--nf"),
    ];
    for (extra, needle) in cases {
        let args = [&cifar[..], extra, &["--out", "r.json"]].concat();
        assert_clean_error(&episodic(dir, &args), needle);
    }
    // The MLP can still be asked for on CIFAR.
    let args = [&cifar[..], &["--model", "mlp", "--out", "mlp.json"]].concat();
    ok(&episodic(dir, &args));
    assert_eq!(
        read_json(&dir.join("mlp.json"))["config"]["model"]["input"],
        3072
    );
}
