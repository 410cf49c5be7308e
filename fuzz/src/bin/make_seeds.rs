//! Writes seed inputs for the fuzz targets: small IDX files (raw and gzip) and one real
//! checkpoint per method of the fuzz setup, trained a few steps over two tasks.
//!
//! `cargo run --release --bin make_seeds` (from `fuzz/`).

use std::io::Write;
use std::path::Path;

use episodic::checkpoint::{Checkpoint, Progress};
use episodic::config::{ExperimentConfig, MethodKind};
use episodic::data::BenchmarkKind;
use episodic::method::{self, Batch};
use episodic::state::State;

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idx_dir = Path::new("corpus/idx");
    let ckpt_dir = Path::new("corpus/checkpoint");
    std::fs::create_dir_all(idx_dir)?;
    std::fs::create_dir_all(ckpt_dir)?;
    let images = idx(0x0803, &[2, 4, 4], &(0..32).collect::<Vec<u8>>());
    let labels = idx(0x0801, &[5], &[0, 1, 2, 9, 3]);
    std::fs::write(idx_dir.join("images"), &images)?;
    std::fs::write(idx_dir.join("labels"), &labels)?;
    std::fs::write(idx_dir.join("images.gz"), gzip(&images)?)?;
    std::fs::write(idx_dir.join("labels.gz"), gzip(&labels)?)?;

    let setup = episodic_fuzz::setup();
    for config in episodic_fuzz::methods() {
        let mut method = method::build(&config, &setup)?;
        for task in 0..2 {
            for step in 0..3 {
                let xs: Vec<f32> = (0..12).map(|i| ((i * 7 + step * 3 + task) % 11) as f32 / 11.0).collect();
                let ys = [task as u32, task as u32];
                method.observe(&Batch { task, xs: &xs, ys: &ys })?;
            }
            method.end_task(task)?;
        }
        let mut state = State::default();
        method.save(&mut state)?;
        let checkpoint = Checkpoint {
            progress: Progress {
                config: ExperimentConfig::paper(BenchmarkKind::MnistSplit, MethodKind::Gem, 1),
                step: 6,
                evaluations: Vec::new(),
                train_seconds: 0.0,
                evaluation_seconds: 0.0,
                total_seconds: 0.0,
            },
            state,
        };
        let name = config.kind().id();
        std::fs::File::create(ckpt_dir.join(name))?.write_all(&checkpoint.to_bytes()?)?;
    }
    Ok(())
}
