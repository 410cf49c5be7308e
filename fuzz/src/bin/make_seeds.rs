//! Writes seed inputs for the fuzz targets: small IDX files (raw and gzip), small CIFAR files
//! (binary records, pickled batches and meta files, names), small `.npy`/`.npz` files, and one
//! real checkpoint per method of the fuzz setup, trained a few steps over two tasks; and the
//! example configuration files with two that set every key.
//!
//! `cargo run --release --bin make_seeds` (from `fuzz/`).

use std::io::Write;
use std::path::Path;

use episodic::checkpoint::{Checkpoint, Progress};
use episodic::config::{ExperimentConfig, MethodKind};
use episodic::data::cifar::{cifar_writer, CifarVariant, IMAGE_BYTES};
use episodic::data::npz::npy_writer;
use episodic::data::Preset;
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

    write_cifar_and_npz_seeds()?;
    write_config_seeds()?;

    let setup = episodic_fuzz::setup();
    for config in episodic_fuzz::methods() {
        let mut method = method::build(&config, &setup)?;
        for task in 0..2 {
            for step in 0..3 {
                let xs: Vec<f32> = (0..12)
                    .map(|i| ((i * 7 + step * 3 + task) % 11) as f32 / 11.0)
                    .collect();
                let ys = [task as u32, task as u32];
                method.observe(&Batch {
                    task,
                    xs: &xs,
                    ys: &ys,
                })?;
            }
            method.end_task(task)?;
        }
        let mut state = State::default();
        method.save(&mut state)?;
        let checkpoint = Checkpoint {
            progress: Progress {
                config: ExperimentConfig::paper(Preset::MnistSplit, MethodKind::Gem, 1),
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

/// Seeds for `cifar_binary`, `cifar_python` and `npz`: valid files of two images (so that
/// mutations start deep), and a few that hit the refusals.
/// The example configurations and grids (`examples/configs/`), and a run configuration that
/// sets every key.
fn write_config_seeds() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new("corpus/config");
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir("../examples/configs")? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, dir.join(name))?;
            }
        }
    }
    let every = "benchmark = \"mnist-split\"\ndata-dir = \"data\"\nscenario = \"class-split\"\n\
                 classes-per-task = 2\nclass-order = \"random\"\nmethod = \"gem\"\nlr = 0.07\n\
                 memories-per-task = 7\nmargin = 0.25\nseed = 5\ntasks = 3\n\
                 samples-per-task = \"all\"\nepochs = 2\nbatch-size = 4\nshuffle-tasks = true\n\
                 eval-every = 3\nthreads = 1\nout = \"x/out.json\"\ncheckpoint-dir = \"ck\"\n\
                 checkpoint-every = 9\n";
    std::fs::write(dir.join("every-key.toml"), every)?;
    let own = "data = \"mine.npz\"\nscenario = \"given\"\nmethod = \"agem\"\nsample-size = 4\n\
               strength = 1.5\nmemory-size = 40\nfinetune = false\n";
    std::fs::write(dir.join("own-data.toml"), own)?;
    Ok(())
}

fn write_cifar_and_npz_seeds() -> Result<(), Box<dyn std::error::Error>> {
    let binary = Path::new("corpus/cifar_binary");
    let python = Path::new("corpus/cifar_python");
    let npz = Path::new("corpus/npz");
    for dir in [binary, python, npz] {
        std::fs::create_dir_all(dir)?;
    }
    let images: Vec<u8> = (0..2 * IMAGE_BYTES).map(|i| (i % 251) as u8).collect();
    for (variant, tag) in [
        (CifarVariant::Cifar10, "c10"),
        (CifarVariant::Cifar100, "c100"),
    ] {
        let labels = [1, variant.classes() as u32 - 1];
        std::fs::write(
            binary.join(tag),
            cifar_writer::binary(variant, &images, &labels),
        )?;
        let names: Vec<String> = (0..variant.classes())
            .map(|i| format!("class{i}"))
            .collect();
        std::fs::write(binary.join(format!("{tag}_names.txt")), names.join("\n"))?;
        std::fs::write(
            python.join(tag),
            cifar_writer::python_batch(variant, &images, &labels),
        )?;
        std::fs::write(
            python.join(format!("{tag}_meta")),
            cifar_writer::python_meta(variant, &names),
        )?;
    }
    // A pickle naming a forbidden global.
    std::fs::write(
        python.join("os_system"),
        b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.",
    )?;
    let x: Vec<f32> = (0..12).map(|i| i as f32 / 4.0).collect();
    let y: Vec<i64> = vec![0, 1, 2, 0, 1, 2];
    let train = [
        ("x_train", npy_writer::f32s(&[6, 2], &x)),
        ("y_train", npy_writer::i64s(&[6], &y)),
    ];
    std::fs::write(npz.join("x_train.npy"), &train[0].1)?;
    std::fs::write(
        npz.join("images_be.npy"),
        npy_writer::f64s_be(&[1, 2, 2], &[0.5, 1.0, -2.0, 3.0]),
    )?;
    std::fs::write(npz.join("holdout.npz"), npy_writer::npz(&train, false))?;
    let mut with_test = train.to_vec();
    with_test.push(("x_test", npy_writer::f32s(&[1, 2], &[3.0, 4.0])));
    with_test.push(("y_test", npy_writer::u8s(&[1], &[2])));
    std::fs::write(
        npz.join("with_test_deflate.npz"),
        npy_writer::npz(&with_test, true),
    )?;
    Ok(())
}
