use super::*;
use crate::config::ExperimentConfig;
use crate::config::MethodKind;
use crate::data::Preset;

fn sample(step: u64) -> Checkpoint {
    let mut state = State::default();
    state.put_f32("model", &[1.0, -2.5, f32::MIN_POSITIVE]);
    state.put_u32("memory.0.ys", &[3, 4]);
    state.put_u64("memory.tasks", &[0, u64::MAX]);
    state
        .put("stats", &serde_json::json!({"steps": step}))
        .unwrap();
    Checkpoint {
        progress: Progress {
            config: ExperimentConfig::paper(Preset::MnistPermutations, MethodKind::Gem, 1),
            step,
            evaluations: vec![Evaluation {
                step: 0,
                after_task: None,
                accuracies: vec![0.1, 0.2],
            }],
            train_seconds: 1.5,
            evaluation_seconds: 0.5,
            total_seconds: 2.5,
            results_file: Some("results/r.json".into()),
        },
        state,
    }
}

#[test]
fn round_trip_is_exact() {
    let checkpoint = sample(7);
    let bytes = checkpoint.to_bytes().unwrap();
    let back = Checkpoint::from_bytes(Path::new("x"), &bytes).unwrap();
    assert_eq!(back, checkpoint);
}

#[test]
fn any_damage_is_detected() {
    let bytes = sample(7).to_bytes().unwrap();
    let path = Path::new("ckpt");
    // Truncated anywhere.
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            Checkpoint::from_bytes(path, &bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    // A flipped bit in the tensor data (the end of the file) or in the header.
    for at in [bytes.len() - 1, bytes.len() - 9, 8 + 30] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        let err = Checkpoint::from_bytes(path, &bad).unwrap_err();
        assert!(matches!(err, Error::CheckpointCorrupt { .. }), "{err}");
    }
    // Appended garbage.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"xx");
    assert!(Checkpoint::from_bytes(path, &longer).is_err());
    assert!(Checkpoint::from_bytes(path, b"not a checkpoint at all").is_err());
}

#[test]
fn another_format_version_is_refused_with_its_number() {
    let text = String::from_utf8_lossy(&sample(1).to_bytes().unwrap()).into_owned();
    assert!(text.contains("\\\"format_version\\\":1"));
    let mut state = State::default();
    state.put_f32("model", &[1.0]);
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: 99,
        episodic_version: "0".into(),
        progress: sample(1).progress,
        method: serde_json::Map::new(),
        tensors_sha256: tensors_digest([("model", &1.0f32.to_le_bytes()[..])].into_iter()),
    };
    let manifest = serde_json::to_string(&manifest).unwrap();
    let metadata = HashMap::from([
        (
            "manifest_sha256".to_string(),
            sha256_hex(manifest.as_bytes()),
        ),
        ("manifest".to_string(), manifest),
    ]);
    let data = 1.0f32.to_le_bytes();
    let view = TensorView::new(Dtype::F32, vec![1], &data).unwrap();
    let bytes = safetensors::tensor::serialize([("model", view)], Some(metadata)).unwrap();
    let err = Checkpoint::from_bytes(Path::new("c"), &bytes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("format version 99"), "{err}");
}

#[test]
fn directory_keeps_two_and_falls_back_past_a_corrupt_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CheckpointDir::new(tmp.path().join("ckpt"));
    assert!(matches!(dir.load_latest(), Err(Error::NoCheckpoint { .. })));
    for step in [10, 20, 30] {
        dir.save(&sample(step)).unwrap();
    }
    let steps: Vec<u64> = dir.files().unwrap().iter().map(|f| f.0).collect();
    assert_eq!(steps, vec![30, 20]);
    let loaded = dir.load_latest().unwrap();
    assert_eq!(loaded.checkpoint.progress.step, 30);
    assert!(loaded.warnings.is_empty());
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");

    // Tear the newest: the previous one is used, with a warning naming the file.
    let newest = dir.files().unwrap()[0].1.clone();
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 3]).unwrap();
    let loaded = dir.load_latest().unwrap();
    assert_eq!(loaded.checkpoint.progress.step, 20);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].contains("checkpoint-0000000030"),
        "{:?}",
        loaded.warnings
    );

    // Both damaged: no usable checkpoint, and the message says why for each.
    let older = dir.files().unwrap()[1].1.clone();
    std::fs::write(&older, b"garbage").unwrap();
    let err = dir.load_latest().unwrap_err().to_string();
    assert!(
        err.contains("no usable checkpoint") && err.contains("0000000020"),
        "{err}"
    );
}

#[test]
fn unverified_decoding_skips_only_the_checksums() {
    let bytes = sample(3).to_bytes().unwrap();
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let path = Path::new("c");
    assert!(Checkpoint::from_bytes(path, &flipped).is_err());
    let examined = Checkpoint::from_bytes_unverified(path, &flipped).unwrap();
    assert_eq!(examined.progress.step, 3);
    assert_ne!(examined.state, sample(3).state, "the damage is visible");
    // Structure is still checked.
    assert!(Checkpoint::from_bytes_unverified(path, &bytes[..bytes.len() - 4]).is_err());
}
