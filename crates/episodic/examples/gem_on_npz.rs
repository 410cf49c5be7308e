//! GEM on arrays of one's own, read from an `.npz` file (or a folder of `.npy` files): the
//! arrays `x_train` (N x D or N x C x H x W, uint8 or float32), `y_train` (integers), and
//! optionally `x_test`, `y_test`, `task_train`, `task_test`.
//!
//! `cargo run --release -p episodic --example gem_on_npz -- my-data.npz`
//!
//! Without an argument it writes a small synthetic `.npz` (two features carry the class)
//! into a temporary folder and uses that. The tasks are the classes, two per task, in the
//! file's order; with task ids in the file, use `Scenario::Given` instead.

use std::path::PathBuf;

use episodic::data::npz::{load_arrays, npy_writer};
use episodic::prelude::*;

fn synthetic(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let n = 600;
    let labels: Vec<i64> = (0..n as i64).map(|k| k % 6).collect();
    let x: Vec<f32> = labels
        .iter()
        .enumerate()
        .flat_map(|(k, &y)| {
            (0..8).map(move |j| {
                let noise = ((k * 31 + j * 17) % 13) as f32 / 13.0 - 0.5;
                if j == y as usize {
                    2.0 + noise
                } else {
                    noise
                }
            })
        })
        .collect();
    let path = dir.join("synthetic.npz");
    let entries = [
        ("x_train", npy_writer::f32s(&[n, 8], &x)),
        ("y_train", npy_writer::i64s(&[n], &labels)),
    ];
    std::fs::write(&path, npy_writer::npz(&entries, true))?;
    Ok(path)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let path = match std::env::args_os().nth(1) {
        Some(path) => PathBuf::from(path),
        None => synthetic(tmp.path())?,
    };
    let (data, holdout) = load_arrays(&path, 0)?;
    if let Some(h) = holdout {
        println!(
            "no test arrays: {} examples held out for test, {} train",
            h.test, h.train
        );
    }
    let scenario = Scenario::ClassSplit {
        classes_per_task: Some(2),
        order: ClassOrder::Consecutive,
    };
    let source = DataSource::Arrays { path: path.clone() };
    let mut config = ExperimentConfig::for_data(source, &data, scenario, None, MethodKind::Gem, 1)?;
    config.method = MethodConfig::Gem(GemParams {
        memories_per_task: 64,
        ..GemParams::default()
    });
    println!(
        "{}: {} examples of {} in {} classes, {} tasks",
        data.name(),
        data.train().len(),
        data.shape(),
        data.classes(),
        config.tasks
    );
    let results = episodic::experiment::run(&config, data, &mut |_| {})?;
    for (i, row) in results.accuracy_matrix.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|a| format!("{a:.2}")).collect();
        println!("after task {}: {}", i + 1, cells.join(" "));
    }
    println!(
        "ACC {:.3}, BWT {:+.3}",
        results.metrics.acc,
        results.metrics.bwt.unwrap_or(0.0)
    );
    Ok(())
}
