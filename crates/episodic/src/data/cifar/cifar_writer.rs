use std::path::Path;

use super::super::pickle::writer::Pickle;
use super::{CifarVariant, Layout, IMAGE_BYTES};

/// Coarse label written for fine label `y` (CIFAR-100): `y / 5`.
pub fn coarse(y: u32) -> u32 {
    y / 5
}

/// The records of a binary file for `images` (3072 bytes each) and their labels.
pub fn binary(variant: CifarVariant, images: &[u8], labels: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    for (image, &y) in images.chunks(IMAGE_BYTES).zip(labels) {
        if variant == CifarVariant::Cifar100 {
            out.push(coarse(y) as u8);
        }
        out.push(y as u8);
        out.extend_from_slice(image);
    }
    out
}

/// A pickled batch as the official python version holds it (protocol 2, bytes keys, as
/// Python 3 writes them): `batch_label`, the labels, `data` (a uint8 array) and `filenames`.
pub fn python_batch(variant: CifarVariant, images: &[u8], labels: &[u32]) -> Vec<u8> {
    let n = images.len() / IMAGE_BYTES;
    let ys: Vec<i64> = labels.iter().map(|&y| i64::from(y)).collect();
    let names: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("img_{i}.png").into_bytes())
        .collect();
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let mut p = Pickle::new();
    p.raw(b"}(").bytes(b"batch_label").bytes(b"test batch");
    p.bytes(variant.labels_key().as_bytes()).int_list(&ys);
    if variant == CifarVariant::Cifar100 {
        let coarse: Vec<i64> = labels.iter().map(|&y| i64::from(coarse(y))).collect();
        p.bytes(b"coarse_labels").int_list(&coarse);
    }
    p.bytes(b"data")
        .ndarray(&[n, IMAGE_BYTES], "u1", false, images)
        .bytes(b"filenames")
        .bytes_list(&names)
        .raw(b"u");
    p.stop()
}

/// A pickled meta file with the class names.
pub fn python_meta(variant: CifarVariant, names: &[String]) -> Vec<u8> {
    let names: Vec<&[u8]> = names.iter().map(|s| s.as_bytes()).collect();
    let mut p = Pickle::new();
    p.raw(b"}(")
        .bytes(variant.names_key().as_bytes())
        .bytes_list(&names)
        .raw(b"u");
    p.stop()
}

/// Writes a complete data set in `dir` (binary layout when `binary`, else python):
/// `train` is split over the training files (CIFAR-10's five batches), `names` (one per
/// class) go into the name file when given.
pub fn write_dir(
    dir: &Path,
    variant: CifarVariant,
    binary: bool,
    train: (&[u8], &[u32]),
    test: (&[u8], &[u32]),
    names: Option<&[String]>,
) -> std::io::Result<()> {
    let layout = if binary {
        Layout::Binary
    } else {
        Layout::Python
    };
    let write = |images: &[u8], labels: &[u32]| {
        if binary {
            self::binary(variant, images, labels)
        } else {
            python_batch(variant, images, labels)
        }
    };
    std::fs::create_dir_all(dir)?;
    let (train_files, test_file, names_file) = variant.files(layout);
    let n = train.1.len();
    let per_file = n.div_ceil(train_files.len());
    for (k, name) in train_files.iter().enumerate() {
        let lo = (k * per_file).min(n);
        let hi = ((k + 1) * per_file).min(n);
        let bytes = write(
            &train.0[lo * IMAGE_BYTES..hi * IMAGE_BYTES],
            &train.1[lo..hi],
        );
        std::fs::write(dir.join(name), bytes)?;
    }
    std::fs::write(dir.join(test_file), write(test.0, test.1))?;
    if let Some(names) = names {
        let bytes = if binary {
            names
                .iter()
                .map(|s| format!("{s}\n"))
                .collect::<String>()
                .into_bytes()
        } else {
            python_meta(variant, names)
        };
        std::fs::write(dir.join(names_file), bytes)?;
    }
    Ok(())
}
