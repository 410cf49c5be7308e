//! End to end on a small continuum of the real data: GEM forgets less than fine-tuning.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::path::Path;

use episodic::config::{ExperimentConfig, MethodKind};
use episodic::data::{Checksums, Dataset, Preset, Vendored};
use episodic::experiment;
use episodic::results::RunResults;

fn data() -> Dataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    Vendored::Mnist
        .load(&dir, Checksums::Verify)
        .expect("vendored MNIST loads")
}

fn run(data: &Dataset, method: MethodKind, seed: u64) -> RunResults {
    let mut config = ExperimentConfig::paper(Preset::MnistPermutations, method, 1);
    config.tasks = 3;
    config.samples_per_task = Some(200);
    config.seed = seed;
    experiment::run(&config, data.clone(), &mut |_| {}).expect("run succeeds")
}

#[test]
fn gem_has_higher_backward_transfer_than_single() {
    let data = data();
    for seed in [0, 1] {
        let gem = run(&data, MethodKind::Gem, seed);
        let single = run(&data, MethodKind::Single, seed);
        let (gem_bwt, single_bwt) = (gem.metrics.bwt.unwrap(), single.metrics.bwt.unwrap());
        assert!(
            gem_bwt > single_bwt,
            "seed {seed}: GEM BWT {gem_bwt} <= single BWT {single_bwt}"
        );
        assert!(gem.projected_steps > 0, "GEM never projected");
        assert_eq!(single.projected_steps, 0);
        // The schedule: b, then one row per task, each scoring every task.
        assert_eq!(gem.evaluations.len(), 4);
        assert_eq!(
            gem.evaluations.iter().map(|e| e.step).collect::<Vec<_>>(),
            vec![0, 20, 40, 60]
        );
        assert!(gem.accuracy_matrix.iter().all(|row| row.len() == 3));
        // Learning happened: each task is well above chance right after it is trained.
        for (i, row) in gem.accuracy_matrix.iter().enumerate() {
            assert!(
                row[i] > 0.3,
                "seed {seed}: task {i} only {} (chance: 0.1)",
                row[i]
            );
        }
    }
}

#[test]
fn results_depend_only_on_the_seed() {
    let data = data();
    let a = run(&data, MethodKind::Gem, 7);
    let b = run(&data, MethodKind::Gem, 7);
    assert_eq!(a.accuracy_matrix, b.accuracy_matrix);
    assert_eq!(a.tasks, b.tasks);
    assert_eq!(a.projected_steps, b.projected_steps);
    // The benchmark's draws do not depend on the method.
    let s = run(&data, MethodKind::Single, 7);
    assert_eq!(a.tasks, s.tasks);
    assert_eq!(
        a.baseline, s.baseline,
        "same initialisation, same test sets"
    );
}

/// Library-level resume: every method continues from a mid-run checkpoint to the same
/// results; a checkpoint of another configuration is refused.
#[test]
fn every_method_resumes_from_a_mid_run_checkpoint_to_the_same_results() {
    use episodic::checkpoint::CheckpointDir;
    use episodic::experiment::Checkpointing;

    let data = data();
    for method in MethodKind::ALL {
        let benchmark = if method == MethodKind::Icarl {
            Preset::MnistSplit
        } else {
            Preset::MnistRotations
        };
        let mut config = ExperimentConfig::paper(benchmark, method, 1);
        config.tasks = if benchmark == Preset::MnistSplit {
            2
        } else {
            3
        };
        config.samples_per_task = Some(60);
        config.eval_every = Some(4);
        let whole = experiment::run(&config, data.clone(), &mut |_| {}).unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let checkpointing = Checkpointing {
            dir: CheckpointDir::new(tmp.path()),
            every: Some(5),
            results_file: None,
        };
        experiment::run_resumable(
            &config,
            data.clone(),
            &mut |_| {},
            Some(&checkpointing),
            None,
        )
        .unwrap();
        // Resume from the older of the two kept checkpoints (mid-run), not the final one.
        let files = checkpointing.dir.files().unwrap();
        let bytes = std::fs::read(&files[1].1).unwrap();
        let checkpoint = episodic::checkpoint::Checkpoint::from_bytes(&files[1].1, &bytes).unwrap();
        assert!(checkpoint.progress.step < whole.steps, "{}", method.id());

        let mut other = config.clone();
        other.seed += 1;
        let refused = experiment::run_resumable(
            &other,
            data.clone(),
            &mut |_| {},
            None,
            Some(checkpoint.clone()),
        );
        assert!(
            refused.is_err(),
            "{}: another configuration was accepted",
            method.id()
        );

        let resumed =
            experiment::run_resumable(&config, data.clone(), &mut |_| {}, None, Some(checkpoint))
                .unwrap();
        let strip = |r: &RunResults| {
            let mut r = r.clone();
            r.timing = Default::default();
            r
        };
        assert_eq!(strip(&resumed), strip(&whole), "{}", method.id());
    }
}
