//! MNIST in the IDX format (gzip-compressed or raw), checked on load.
//!
//! Every structural property is verified before the data is used: the magic number,
//! the dimensions, the exact length of the payload (truncated or over-long files are
//! rejected), that image and label counts agree, that labels are digits, and, for the
//! published files, the SHA-256 of the uncompressed content.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Side length of an MNIST image.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per MNIST image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes (digits).
pub const NUM_CLASSES: usize = 10;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether to check the published SHA-256 of each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// Reject files whose uncompressed SHA-256 differs from the published one.
    Verify,
    /// Accept any structurally valid file (tests and user-made subsets).
    Skip,
}

/// One split (train or test): images as raw bytes, row-major, and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct MnistSplit {
    /// `len * IMAGE_PIXELS` grey levels, 0..=255.
    pub images: Vec<u8>,
    /// One digit per image.
    pub labels: Vec<u8>,
}

impl MnistSplit {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }
}

/// The MNIST training and test sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Mnist {
    /// 60,000 training examples (for the published files).
    pub train: MnistSplit,
    /// 10,000 test examples (for the published files).
    pub test: MnistSplit,
}

/// A file of the published data set with its uncompressed SHA-256.
struct Published {
    stem: &'static str,
    sha256: &'static str,
}

const TRAIN_IMAGES: Published = Published {
    stem: "train-images-idx3-ubyte",
    sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
};
const TRAIN_LABELS: Published = Published {
    stem: "train-labels-idx1-ubyte",
    sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
};
const TEST_IMAGES: Published = Published {
    stem: "t10k-images-idx3-ubyte",
    sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
};
const TEST_LABELS: Published = Published {
    stem: "t10k-labels-idx1-ubyte",
    sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
};

impl Mnist {
    /// Loads MNIST from `data_dir/mnist/`, where each of the four files may be gzip-compressed
    /// (`NAME.gz`) or raw (`NAME`).
    pub fn load(data_dir: &Path, checksums: Checksums) -> Result<Self> {
        if !data_dir.is_dir() {
            return Err(Error::DataDirMissing {
                path: data_dir.to_path_buf(),
            });
        }
        let dir = data_dir.join("mnist");
        let train = load_split(&dir, &TRAIN_IMAGES, &TRAIN_LABELS, checksums)?;
        let test = load_split(&dir, &TEST_IMAGES, &TEST_LABELS, checksums)?;
        Ok(Self { train, test })
    }
}

fn load_split(
    dir: &Path,
    images: &Published,
    labels: &Published,
    checksums: Checksums,
) -> Result<MnistSplit> {
    let (images_path, image_bytes) = read_maybe_gzip(dir, images.stem)?;
    let (labels_path, label_bytes) = read_maybe_gzip(dir, labels.stem)?;
    let image_idx = parse_idx(&images_path, &image_bytes, IMAGES_MAGIC, 3)?;
    let label_idx = parse_idx(&labels_path, &label_bytes, LABELS_MAGIC, 1)?;
    if image_idx.dims[1..] != [IMAGE_SIDE, IMAGE_SIDE] {
        return Err(Error::Idx {
            path: images_path,
            reason: format!(
                "images are {}x{}, expected {IMAGE_SIDE}x{IMAGE_SIDE}",
                image_idx.dims[1], image_idx.dims[2]
            ),
        });
    }
    if image_idx.dims[0] != label_idx.dims[0] {
        return Err(Error::CountMismatch {
            images: image_idx.dims[0],
            labels: label_idx.dims[0],
            images_path,
            labels_path,
        });
    }
    if checksums == Checksums::Verify {
        verify_sha256(&images_path, &image_bytes, images.sha256)?;
        verify_sha256(&labels_path, &label_bytes, labels.sha256)?;
    }
    if let Some(&label) = label_idx
        .data
        .iter()
        .find(|&&l| usize::from(l) >= NUM_CLASSES)
    {
        return Err(Error::LabelOutOfRange {
            label: u32::from(label),
            classes: NUM_CLASSES,
            context: Some(labels_path.display().to_string()),
        });
    }
    let label_data = label_idx.data.to_vec();
    let image_data = image_idx.data.to_vec();
    Ok(MnistSplit {
        images: image_data,
        labels: label_data,
    })
}

/// Reads `dir/stem.gz` (decompressed) if it exists, else `dir/stem`.
fn read_maybe_gzip(dir: &Path, stem: &str) -> Result<(PathBuf, Vec<u8>)> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    let path = if gz.is_file() {
        gz
    } else if raw.is_file() {
        raw
    } else {
        return Err(Error::FileMissing { path: gz });
    };
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let bytes = decompress_if_gzip(&path, bytes)?;
    Ok((path, bytes))
}

/// The most a gzip file may decompress to (the largest MNIST file is 47 MB): a guard
/// against decompression bombs.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

/// Decompresses `bytes` if they start with the gzip magic; returns them unchanged otherwise.
/// Refuses data that would decompress to more than [`MAX_DECOMPRESSED_BYTES`].
pub fn decompress_if_gzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(6).min(64 << 20));
    flate2::read::GzDecoder::new(bytes.as_slice())
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|source| Error::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(Error::Idx {
            path: path.to_path_buf(),
            reason: format!(
                "decompresses to more than {} MiB, far beyond any MNIST file",
                MAX_DECOMPRESSED_BYTES >> 20
            ),
        });
    }
    Ok(out)
}

/// A parsed IDX file of unsigned bytes: its dimensions and payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Idx<'a> {
    /// The dimensions in file order (count first).
    pub dims: Vec<usize>,
    /// The payload, exactly the product of the dimensions in length.
    pub data: &'a [u8],
}

/// Parses an IDX file of `u8` with the given magic and number of dimensions.
pub fn parse_idx<'a>(path: &Path, bytes: &'a [u8], magic: u32, ndims: usize) -> Result<Idx<'a>> {
    let bad = |reason: String| Error::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let header_len = 4 * (1 + ndims);
    let truncated_header = || {
        bad(format!(
            "truncated header: {} bytes, need {header_len}",
            bytes.len()
        ))
    };
    if bytes.len() < 4 {
        return Err(truncated_header());
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    let found = word(0);
    if found != magic {
        return Err(bad(format!(
            "wrong magic number 0x{found:08x}, expected 0x{magic:08x}"
        )));
    }
    if bytes.len() < header_len {
        return Err(truncated_header());
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let payload = &bytes[header_len..];
    if payload.len() < expected {
        return Err(bad(format!(
            "truncated: dimensions {dims:?} need {expected} data bytes, file has {}",
            payload.len()
        )));
    }
    if payload.len() > expected {
        return Err(bad(format!(
            "{} unexpected trailing bytes after {expected} data bytes",
            payload.len() - expected
        )));
    }
    Ok(Idx {
        dims,
        data: payload,
    })
}

fn verify_sha256(path: &Path, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(Error::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builders of IDX files, for tests of this module and of the command line.
pub mod idx_writer {
    /// The bytes of an IDX image file (magic 0x803) holding `images` of 28x28.
    pub fn images(images: &[u8]) -> Vec<u8> {
        let n = images.len() / super::IMAGE_PIXELS;
        let mut out = header(
            super::IMAGES_MAGIC,
            &[n, super::IMAGE_SIDE, super::IMAGE_SIDE],
        );
        out.extend_from_slice(images);
        out
    }

    /// The bytes of an IDX label file (magic 0x801).
    pub fn labels(labels: &[u8]) -> Vec<u8> {
        let mut out = header(super::LABELS_MAGIC, &[labels.len()]);
        out.extend_from_slice(labels);
        out
    }

    /// An IDX header with the given magic and dimensions.
    pub fn header(magic: u32, dims: &[usize]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for &d in dims {
            out.extend_from_slice(&(d as u32).to_be_bytes());
        }
        out
    }

    /// Gzip-compresses `bytes`.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(bytes);
        enc.finish().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_set(dir: &Path, n_images: usize, n_labels: usize, gz: bool) {
        let mnist = dir.join("mnist");
        std::fs::create_dir_all(&mnist).unwrap();
        let images: Vec<u8> = (0..n_images * IMAGE_PIXELS)
            .map(|i| (i % 251) as u8)
            .collect();
        let labels: Vec<u8> = (0..n_labels).map(|i| (i % 10) as u8).collect();
        for split in ["train", "t10k"] {
            let files = [
                (
                    format!("{split}-images-idx3-ubyte"),
                    idx_writer::images(&images),
                ),
                (
                    format!("{split}-labels-idx1-ubyte"),
                    idx_writer::labels(&labels),
                ),
            ];
            for (name, bytes) in files {
                if gz {
                    std::fs::write(mnist.join(format!("{name}.gz")), idx_writer::gzip(&bytes))
                        .unwrap();
                } else {
                    std::fs::write(mnist.join(name), bytes).unwrap();
                }
            }
        }
    }

    #[test]
    fn loads_gzip_and_raw_files_alike() {
        for gz in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            write_set(dir.path(), 3, 3, gz);
            let m = Mnist::load(dir.path(), Checksums::Skip).unwrap();
            assert_eq!(m.train.len(), 3);
            assert_eq!(m.test.labels, vec![0, 1, 2]);
            assert_eq!(m.train.image(1)[0], (IMAGE_PIXELS % 251) as u8);
        }
    }

    #[test]
    fn rejects_count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 3, 4, true);
        let err = Mnist::load(dir.path(), Checksums::Skip).unwrap_err();
        assert!(
            matches!(
                err,
                Error::CountMismatch {
                    images: 3,
                    labels: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_checksum_mismatch_of_valid_structure() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 3, 3, true);
        let err = Mnist::load(dir.path(), Checksums::Verify).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("train-images-idx3-ubyte.gz"));
    }

    #[test]
    fn rejects_missing_dir_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Mnist::load(&dir.path().join("nope"), Checksums::Skip).unwrap_err();
        assert!(matches!(err, Error::DataDirMissing { .. }), "{err}");
        let err = Mnist::load(dir.path(), Checksums::Skip).unwrap_err();
        assert!(matches!(err, Error::FileMissing { .. }), "{err}");
    }

    #[test]
    fn refuses_a_decompression_bomb() {
        // 300 MiB of zeros compress to a small file.
        let zeros = vec![0u8; (MAX_DECOMPRESSED_BYTES + (44 << 20)) as usize];
        let bomb = idx_writer::gzip(&zeros);
        assert!(bomb.len() < zeros.len() / 100, "a small file");
        let err = decompress_if_gzip(Path::new("bomb.gz"), bomb).unwrap_err();
        assert!(err.to_string().contains("more than 256 MiB"), "{err}");
    }

    #[test]
    fn rejects_truncated_and_corrupt_gzip() {
        let good = idx_writer::gzip(&idx_writer::labels(&[1, 2, 3, 4, 5, 6, 7, 8]));
        let path = Path::new("x.gz");
        let truncated = good[..good.len() - 6].to_vec();
        let err = decompress_if_gzip(path, truncated).unwrap_err();
        assert!(matches!(err, Error::Gzip { .. }), "{err}");
        let mut corrupt = good.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xff;
        corrupt[mid + 1] ^= 0x5a;
        let err = decompress_if_gzip(path, corrupt).unwrap_err();
        assert!(matches!(err, Error::Gzip { .. }), "{err}");
    }

    #[test]
    fn rejects_wrong_magic_truncation_and_trailing_bytes() {
        let p = Path::new("f");
        let labels = idx_writer::labels(&[1, 2, 3]);
        let err = parse_idx(p, &labels, IMAGES_MAGIC, 3).unwrap_err();
        assert!(
            err.to_string().contains("wrong magic number 0x00000801"),
            "{err}"
        );
        let err = parse_idx(p, &labels[..labels.len() - 1], LABELS_MAGIC, 1).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = parse_idx(p, &labels[..5], LABELS_MAGIC, 1).unwrap_err();
        assert!(err.to_string().contains("truncated header"), "{err}");
        let mut long = labels.clone();
        long.push(0);
        let err = parse_idx(p, &long, LABELS_MAGIC, 1).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
        let huge = idx_writer::header(IMAGES_MAGIC, &[u32::MAX as usize; 3]);
        assert!(parse_idx(p, &huge, IMAGES_MAGIC, 3).is_err());
        let ok = parse_idx(p, &labels, LABELS_MAGIC, 1).unwrap();
        assert_eq!(ok.dims, vec![3]);
        assert_eq!(ok.data, &[1, 2, 3]);
    }

    #[test]
    fn rejects_labels_out_of_range_and_wrong_image_size() {
        let dir = tempfile::tempdir().unwrap();
        write_set(dir.path(), 2, 2, false);
        let mnist = dir.path().join("mnist");
        std::fs::write(
            mnist.join("t10k-labels-idx1-ubyte"),
            idx_writer::labels(&[3, 10]),
        )
        .unwrap();
        let err = Mnist::load(dir.path(), Checksums::Skip).unwrap_err();
        assert!(
            matches!(err, Error::LabelOutOfRange { label: 10, .. }),
            "{err}"
        );
        let mut bad = idx_writer::header(IMAGES_MAGIC, &[1, 14, 56]);
        bad.extend(std::iter::repeat_n(0u8, IMAGE_PIXELS));
        std::fs::write(mnist.join("train-images-idx3-ubyte"), bad).unwrap();
        let err = Mnist::load(dir.path(), Checksums::Skip).unwrap_err();
        assert!(err.to_string().contains("14x56"), "{err}");
    }

    #[test]
    fn vendored_files_pass_their_checksums() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
        let m = Mnist::load(&data, Checksums::Verify).unwrap();
        assert_eq!((m.train.len(), m.test.len()), (60_000, 10_000));
        let mut counts = [0usize; 10];
        m.test.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(
            counts,
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
    }
}
