//! IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST, ...): any image/label pair of unsigned
//! bytes, gzip-compressed or raw, checked on load.
//!
//! Every structural property is verified before the data is used: the magic number (type
//! 0x08, unsigned bytes; 2 to 4 dimensions for images, 1 for labels), the dimensions, the exact
//! length of the payload (truncated or over-long files are rejected), that image and label
//! counts agree, and, for the vendored files, the SHA-256 of the uncompressed content and the
//! label range.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dataset::{Dataset, Inputs, Shape, Split};
use crate::error::{Error, Result};

const LABELS_MAGIC: u32 = 0x0000_0801;
/// The IDX type byte of unsigned bytes, the only element type these files use.
const UNSIGNED_BYTE: u32 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether to check the published SHA-256 of each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksums {
    /// Reject files whose uncompressed SHA-256 differs from the published one.
    Verify,
    /// Accept any structurally valid file (tests and user-made subsets).
    Skip,
}

/// A data set vendored in the repository's `data/` directory, with its published checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vendored {
    /// MNIST (LeCun, Cortes and Burges): handwritten digits, in `data/mnist/`.
    Mnist,
    /// Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): clothing, in `data/fashion-mnist/`.
    FashionMnist,
}

/// A file of a vendored data set with its uncompressed SHA-256.
struct Published {
    stem: &'static str,
    sha256: &'static str,
}

/// The four files of an IDX data set, in the order train images, train labels, test images,
/// test labels.
const STEMS: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

impl Vendored {
    /// The data set's name, which is also its folder under `data/`.
    pub fn id(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
        }
    }

    fn published(self) -> [Published; 4] {
        let sums = match self {
            Self::Mnist => [
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ],
            Self::FashionMnist => [
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ],
        };
        [0, 1, 2, 3].map(|i| Published {
            stem: STEMS[i],
            sha256: sums[i],
        })
    }

    /// The class names (10 for both).
    fn class_names(self) -> Vec<String> {
        match self {
            Self::Mnist => (0..10).map(|d| d.to_string()).collect(),
            Self::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// Loads the data set from `data_dir/ID/` (each file `NAME.gz` or raw `NAME`), checking
    /// the published checksums when `checksums` says so.
    pub fn load(self, data_dir: &Path, checksums: Checksums) -> Result<Dataset> {
        if !data_dir.is_dir() {
            return Err(Error::DataDirMissing {
                path: data_dir.to_path_buf(),
            });
        }
        let dir = data_dir.join(self.id());
        let published = self.published();
        let paths = published
            .iter()
            .map(|p| find_maybe_gzip(&dir, p.stem))
            .collect::<Result<Vec<_>>>()?;
        let sums = (checksums == Checksums::Verify).then(|| published.map(|p| p.sha256));
        let files = IdxFiles {
            train_images: paths[0].clone(),
            train_labels: paths[1].clone(),
            test_images: paths[2].clone(),
            test_labels: paths[3].clone(),
        };
        let classes = 10;
        load_files(
            self.id(),
            &files,
            sums.as_ref(),
            Some(classes),
            Some(self.class_names()),
            &dir,
        )
    }
}

/// The four files of an IDX data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxFiles {
    /// Training images (2 to 4 dimensions, count first).
    pub train_images: PathBuf,
    /// Training labels (1 dimension).
    pub train_labels: PathBuf,
    /// Test images.
    pub test_images: PathBuf,
    /// Test labels.
    pub test_labels: PathBuf,
}

impl IdxFiles {
    /// Finds the four files in `dir` by the endings of their conventional names:
    /// `*train-images-idx?-ubyte`, `*train-labels-idx1-ubyte`, and `*t10k-...` or `*test-...`
    /// for the test set, each raw or `.gz` (so MNIST's, Fashion-MNIST's, KMNIST's and EMNIST's
    /// names all work).
    pub fn find(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::DataDirMissing {
                path: dir.to_path_buf(),
            });
        }
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        let pick = |splits: &[&str], kind: &str| -> Result<PathBuf> {
            let matches: Vec<&String> = names
                .iter()
                .filter(|n| {
                    let stem = n.strip_suffix(".gz").unwrap_or(n);
                    splits.iter().any(|s| {
                        let tail = format!("{s}-{kind}-idx");
                        stem.rfind(&tail).is_some_and(|at| {
                            let rest = &stem[at + tail.len()..];
                            rest.len() == "1-ubyte".len() && rest.ends_with("-ubyte")
                        })
                    })
                })
                .collect();
            match matches.as_slice() {
                [one] => Ok(dir.join(one)),
                [] => Err(Error::FileMissing {
                    path: dir.join(format!("{}-{kind}-idx?-ubyte[.gz]", splits[0])),
                }),
                many => Err(Error::DataFile {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "several {} {kind} files: {}",
                        splits[0],
                        many.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            }
        };
        Ok(Self {
            train_images: pick(&["train"], "images")?,
            train_labels: pick(&["train"], "labels")?,
            test_images: pick(&["t10k", "test"], "images")?,
            test_labels: pick(&["t10k", "test"], "labels")?,
        })
    }

    /// Loads the files as a data set named `name` with `max label + 1` classes.
    pub fn load(&self, name: &str, source: &Path) -> Result<Dataset> {
        load_files(name, self, None, None, None, source)
    }
}

/// Loads the four files; `sums` are the uncompressed SHA-256 to check (in file order),
/// `classes` the number of classes if fixed (else the largest label + 1).
fn load_files(
    name: &str,
    files: &IdxFiles,
    sums: Option<&[&str; 4]>,
    classes: Option<usize>,
    class_names: Option<Vec<String>>,
    source: &Path,
) -> Result<Dataset> {
    let sum = |i: usize| sums.map(|s| s[i]);
    let (train_shape, train) =
        load_split(&files.train_images, &files.train_labels, sum(0), sum(1))?;
    let (test_shape, test) = load_split(&files.test_images, &files.test_labels, sum(2), sum(3))?;
    if train_shape != test_shape {
        return Err(Error::DataFile {
            path: files.test_images.clone(),
            reason: format!(
                "test images are {test_shape}, training images ({}) are {train_shape}",
                files.train_images.display()
            ),
        });
    }
    let top = |split: &Split| {
        split
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1)
    };
    let classes = match classes {
        Some(classes) => {
            for (split, path) in [(&train, &files.train_labels), (&test, &files.test_labels)] {
                if let Some(&label) = split.labels.iter().find(|&&l| l as usize >= classes) {
                    return Err(Error::LabelOutOfRange {
                        label,
                        classes,
                        context: Some(path.display().to_string()),
                    });
                }
            }
            classes
        }
        None => top(&train).max(top(&test)),
    };
    Dataset::new(
        name,
        train_shape,
        classes,
        class_names,
        source.display().to_string(),
        train,
        test,
    )
}

fn load_split(
    images_path: &Path,
    labels_path: &Path,
    images_sum: Option<&str>,
    labels_sum: Option<&str>,
) -> Result<(Shape, Split)> {
    let image_bytes = read_decompressed(images_path)?;
    let label_bytes = read_decompressed(labels_path)?;
    let ndims = image_ndims(images_path, &image_bytes)?;
    let image_idx = parse_idx(
        images_path,
        &image_bytes,
        (UNSIGNED_BYTE << 8) | ndims as u32,
        ndims,
    )?;
    let label_idx = parse_idx(labels_path, &label_bytes, LABELS_MAGIC, 1)?;
    let shape = match image_idx.dims[1..] {
        [d] => Shape::flat(d),
        [height, width] => Shape {
            channels: 1,
            height,
            width,
        },
        [channels, height, width] => Shape {
            channels,
            height,
            width,
        },
        _ => unreachable!("image_ndims allows 2 to 4 dimensions"),
    };
    if shape.features() == 0 {
        return Err(Error::Idx {
            path: images_path.to_path_buf(),
            reason: format!("images of {shape} have no pixels"),
        });
    }
    if image_idx.dims[0] != label_idx.dims[0] {
        return Err(Error::CountMismatch {
            images: image_idx.dims[0],
            labels: label_idx.dims[0],
            images_path: images_path.to_path_buf(),
            labels_path: labels_path.to_path_buf(),
        });
    }
    if let Some(expected) = images_sum {
        verify_sha256(images_path, &image_bytes, expected)?;
    }
    if let Some(expected) = labels_sum {
        verify_sha256(labels_path, &label_bytes, expected)?;
    }
    let labels = label_idx.data.iter().map(|&l| u32::from(l)).collect();
    let images = image_idx.data.to_vec();
    Ok((
        shape,
        Split {
            inputs: Inputs::Bytes(images),
            labels,
            tasks: None,
        },
    ))
}

/// The number of dimensions an image file's magic declares, checking its element type.
fn image_ndims(path: &Path, bytes: &[u8]) -> Result<usize> {
    let bad = |reason: String| Error::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let Some(magic) = bytes.get(..4) else {
        return Err(bad(format!(
            "truncated header: {} bytes, need at least 4",
            bytes.len()
        )));
    };
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad(format!(
            "wrong magic number 0x{:02x}{:02x}{:02x}{:02x}, expected 0x000008NN",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if u32::from(magic[2]) != UNSIGNED_BYTE {
        return Err(bad(format!(
            "element type 0x{:02x} is not unsigned bytes (0x08)",
            magic[2]
        )));
    }
    match magic[3] {
        n @ 2..=4 => Ok(usize::from(n)),
        n => Err(bad(format!(
            "images with {n} dimensions; expected 2 to 4 (count first)"
        ))),
    }
}

/// Reads `dir/stem.gz` (decompressed) if it exists, else `dir/stem`.
fn find_maybe_gzip(dir: &Path, stem: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(Error::FileMissing { path: gz })
    }
}

/// Reads `path`, decompressing it if it is gzip.
fn read_decompressed(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decompress_if_gzip(path, bytes)
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
                "decompresses to more than {} MiB, far beyond any IDX data set here",
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
pub mod idx_writer;

#[cfg(test)]
mod tests;
