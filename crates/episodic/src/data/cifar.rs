//! CIFAR-10 and CIFAR-100, in the official binary version or the official python version
//! (pickled dicts, as torchvision leaves them on disk), checked on load.
//!
//! Every file is validated before use: a binary file must be a whole, non-empty number of
//! records with labels below the classes; a pickle is read by an allow-listed reader that
//! executes nothing and refuses any global other than NumPy's array reconstruction (see
//! [`super::pickle`]), and must be a dict holding a `uint8` array of N x 3072 and N labels.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::dataset::{Dataset, Inputs, Shape, Split};
use super::pickle::{self, Global, Value};
use crate::error::{Error, Result};

/// Bytes per image: 3 planes (R, G, B) of 32 x 32, each row-major.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// The shape of a CIFAR image.
pub const SHAPE: Shape = Shape {
    channels: 3,
    height: 32,
    width: 32,
};
/// CIFAR-100's number of coarse classes (superclasses).
pub const COARSE_CLASSES: usize = 20;
/// The largest file read (the largest official file is under 200 MB): a guard against
/// pointing the loader at something else.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CifarVariant {
    /// 10 classes; 5 training batches of 10,000 and a test batch of 10,000.
    Cifar10,
    /// 100 (fine) classes in 20 superclasses; 50,000 training and 10,000 test images.
    Cifar100,
}

impl CifarVariant {
    /// The data set's name: `cifar10` or `cifar100`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
        }
    }

    /// Number of (fine) classes.
    pub fn classes(self) -> usize {
        match self {
            Self::Cifar10 => 10,
            Self::Cifar100 => 100,
        }
    }

    /// The folders the official binary and python archives unpack to.
    pub fn folders(self) -> [&'static str; 2] {
        match self {
            Self::Cifar10 => ["cifar-10-batches-bin", "cifar-10-batches-py"],
            Self::Cifar100 => ["cifar-100-binary", "cifar-100-python"],
        }
    }

    /// Bytes per binary record: the label byte(s) and the image.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + IMAGE_BYTES
    }

    fn label_bytes(self) -> usize {
        match self {
            Self::Cifar10 => 1,
            Self::Cifar100 => 2,
        }
    }

    fn labels_key(self) -> &'static str {
        match self {
            Self::Cifar10 => "labels",
            Self::Cifar100 => "fine_labels",
        }
    }

    fn names_key(self) -> &'static str {
        match self {
            Self::Cifar10 => "label_names",
            Self::Cifar100 => "fine_label_names",
        }
    }

    /// Training files, test file and class-name file of a layout.
    fn files(self, layout: Layout) -> (Vec<String>, &'static str, &'static str) {
        match (self, layout) {
            (Self::Cifar10, Layout::Binary) => (
                (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
                "test_batch.bin",
                "batches.meta.txt",
            ),
            (Self::Cifar10, Layout::Python) => (
                (1..=5).map(|i| format!("data_batch_{i}")).collect(),
                "test_batch",
                "batches.meta",
            ),
            (Self::Cifar100, Layout::Binary) => {
                (vec!["train.bin".into()], "test.bin", "fine_label_names.txt")
            }
            (Self::Cifar100, Layout::Python) => (vec!["train".into()], "test", "meta"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Binary,
    Python,
}

/// Loads CIFAR-10 or CIFAR-100 from `dir`: the folder an official archive unpacks to
/// (`cifar-100-binary/`, `cifar-100-python/`, `cifar-10-batches-bin/`, `cifar-10-batches-py/`),
/// a folder holding one of them (the binary one is preferred), or any folder that holds the
/// files themselves. Class names are taken from the archive's name file when it is there.
pub fn load_cifar(dir: &Path, variant: CifarVariant) -> Result<Dataset> {
    let (folder, layout) = locate(dir, variant)?;
    let (train_files, test_file, names_file) = variant.files(layout);
    let parse = |path: &Path, bytes: &[u8]| match layout {
        Layout::Binary => parse_binary(path, bytes, variant),
        Layout::Python => parse_python_batch(path, bytes, variant),
    };
    let mut train_images = Vec::new();
    let mut train_labels = Vec::new();
    for name in &train_files {
        let path = folder.join(name);
        let (images, labels) = parse(&path, &read_file(&path)?)?;
        train_images.extend_from_slice(&images);
        train_labels.extend_from_slice(&labels);
    }
    let test_path = folder.join(test_file);
    let (test_images, test_labels) = parse(&test_path, &read_file(&test_path)?)?;
    let names_path = folder.join(names_file);
    let class_names = if names_path.is_file() {
        let bytes = read_file(&names_path)?;
        Some(match layout {
            Layout::Binary => parse_names_txt(&names_path, &bytes, variant)?,
            Layout::Python => parse_python_meta(&names_path, &bytes, variant)?,
        })
    } else {
        None
    };
    Dataset::new(
        variant.name(),
        SHAPE,
        variant.classes(),
        class_names,
        folder.display().to_string(),
        Split {
            inputs: Inputs::Bytes(train_images),
            labels: train_labels,
            tasks: None,
        },
        Split {
            inputs: Inputs::Bytes(test_images),
            labels: test_labels,
            tasks: None,
        },
    )
}

/// Finds the folder holding the files, and its layout.
fn locate(dir: &Path, variant: CifarVariant) -> Result<(PathBuf, Layout)> {
    if !dir.is_dir() {
        return Err(Error::DataDirMissing {
            path: dir.to_path_buf(),
        });
    }
    let has = |layout| {
        let (train, test, _) = variant.files(layout);
        train.iter().any(|f| dir.join(f).is_file()) || dir.join(test).is_file()
    };
    if has(Layout::Binary) {
        return Ok((dir.to_path_buf(), Layout::Binary));
    }
    if has(Layout::Python) {
        return Ok((dir.to_path_buf(), Layout::Python));
    }
    let [binary, python] = variant.folders();
    for (folder, layout) in [(binary, Layout::Binary), (python, Layout::Python)] {
        if dir.join(folder).is_dir() {
            return Ok((dir.join(folder), layout));
        }
    }
    let (train, test, _) = variant.files(Layout::Binary);
    Err(Error::DataNotFound {
        dataset: variant.name().into(),
        dir: dir.to_path_buf(),
        looked_for: format!(
            "the folders {binary}/ and {python}/, or the files {} and {test} (binary) or their python versions",
            train[0]
        ),
    })
}

/// Reads a whole file, refusing a missing one and one beyond [`MAX_FILE_BYTES`].
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_file() {
        return Err(Error::FileMissing {
            path: path.to_path_buf(),
        });
    }
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(Error::DataFile {
            path: path.to_path_buf(),
            reason: format!(
                "{len} bytes, more than the {} MiB of any CIFAR file",
                MAX_FILE_BYTES >> 20
            ),
        });
    }
    std::fs::read(path).map_err(io)
}

fn bad(path: &Path, reason: String) -> Error {
    Error::DataFile {
        path: path.to_path_buf(),
        reason,
    }
}

/// Parses a binary CIFAR file: records of the label byte (CIFAR-10) or the coarse and fine
/// label bytes (CIFAR-100), then 3072 pixel bytes. Returns the images and the (fine) labels.
pub fn parse_binary(
    path: &Path,
    bytes: &[u8],
    variant: CifarVariant,
) -> Result<(Vec<u8>, Vec<u32>)> {
    let record = variant.record_bytes();
    if bytes.is_empty() {
        return Err(bad(path, "the file is empty".into()));
    }
    let left = bytes.len() % record;
    if left != 0 {
        return Err(bad(
            path,
            format!(
                "{} bytes are not a whole number of {record}-byte records ({left} bytes left over)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[variant.label_bytes() - 1];
        if usize::from(label) >= variant.classes() {
            return Err(bad(
                path,
                format!(
                    "record {i} has label {label}, beyond the {} classes",
                    variant.classes()
                ),
            ));
        }
        if variant == CifarVariant::Cifar100 && usize::from(rec[0]) >= COARSE_CLASSES {
            return Err(bad(
                path,
                format!(
                    "record {i} has coarse label {}, beyond the {COARSE_CLASSES} superclasses",
                    rec[0]
                ),
            ));
        }
        labels.push(u32::from(label));
        images.extend_from_slice(&rec[variant.label_bytes()..]);
    }
    Ok((images, labels))
}

/// Parses a class-name file of the binary version (`batches.meta.txt`,
/// `fine_label_names.txt`): one name a line, blank lines ignored.
pub fn parse_names_txt(path: &Path, bytes: &[u8], variant: CifarVariant) -> Result<Vec<String>> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| bad(path, "the names are not UTF-8 text".into()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    check_names(path, names, variant)
}

fn check_names(path: &Path, names: Vec<String>, variant: CifarVariant) -> Result<Vec<String>> {
    if names.len() != variant.classes() {
        return Err(bad(
            path,
            format!(
                "{} class names, expected {}",
                names.len(),
                variant.classes()
            ),
        ));
    }
    Ok(names)
}

fn read_pickle(path: &Path, bytes: &[u8]) -> Result<Rc<Value>> {
    let value = pickle::read(bytes).map_err(|reason| bad(path, format!("pickle {reason}")))?;
    if !matches!(*value, Value::Dict(..)) {
        return Err(bad(
            path,
            format!("the pickle holds {}, not a dict", value.kind()),
        ));
    }
    Ok(value)
}

fn entry<'a>(path: &Path, dict: &'a Value, key: &str) -> Result<&'a Rc<Value>> {
    dict.get(key)
        .ok_or_else(|| bad(path, format!("the dict has no '{key}' entry")))
}

/// Parses a pickled batch of the python version (`data_batch_1`, `test_batch`, `train`,
/// `test`). Returns the images and the (fine) labels.
pub fn parse_python_batch(
    path: &Path,
    bytes: &[u8],
    variant: CifarVariant,
) -> Result<(Vec<u8>, Vec<u32>)> {
    let dict = read_pickle(path, bytes)?;
    let data = entry(path, &dict, "data")?;
    let (n, images) = uint8_rows(data).map_err(|r| bad(path, format!("'data' {r}")))?;
    let key = variant.labels_key();
    let labels = int_list(entry(path, &dict, key)?, n, variant.classes())
        .map_err(|r| bad(path, format!("'{key}' {r}")))?;
    if variant == CifarVariant::Cifar100 {
        if let Some(coarse) = dict.get("coarse_labels") {
            int_list(coarse, n, COARSE_CLASSES)
                .map_err(|r| bad(path, format!("'coarse_labels' {r}")))?;
        }
    }
    Ok((images.to_vec(), labels))
}

/// Parses the pickled meta file of the python version (`batches.meta`, `meta`) into the
/// class names (`label_names`, `fine_label_names`).
pub fn parse_python_meta(path: &Path, bytes: &[u8], variant: CifarVariant) -> Result<Vec<String>> {
    let dict = read_pickle(path, bytes)?;
    let key = variant.names_key();
    let Value::List(items, _) = &**entry(path, &dict, key)? else {
        return Err(bad(path, format!("'{key}' is not a list")));
    };
    let names = items
        .iter()
        .map(|v| v.as_text().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(path, format!("'{key}' holds something else than text")))?;
    check_names(path, names, variant)
}

/// The rows and bytes of a NumPy `uint8` array of N x 3072 (N > 0), C order.
fn uint8_rows(v: &Value) -> std::result::Result<(usize, &[u8]), String> {
    let not_array = || format!("is {}, not a NumPy array", v.kind());
    let Value::Object(obj, _) = v else {
        return Err(not_array());
    };
    let is_ndarray = obj.class == Global::Reconstruct
        && obj
            .args
            .first()
            .is_some_and(|a| **a == Value::Global(Global::Ndarray));
    if !is_ndarray {
        return Err(not_array());
    }
    let state = match obj.state.as_deref() {
        Some(Value::Tuple(items, _)) => items,
        _ => return Err("is an array without a (version, shape, dtype, order, data) state".into()),
    };
    // NumPy writes (version, shape, dtype, is_fortran, data); old versions omit the version.
    let [shape, dtype, fortran, raw] = match state.as_slice() {
        [_, s, d, f, r] | [s, d, f, r] => [s, d, f, r],
        _ => return Err(format!("has an array state of {} items", state.len())),
    };
    let Value::Tuple(dims, _) = &**shape else {
        return Err("has an array shape that is not a tuple".into());
    };
    let dims = dims
        .iter()
        .map(|d| match **d {
            Value::Int(i) => usize::try_from(i).ok(),
            _ => None,
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or("has an array shape that is not of non-negative ints")?;
    let code = match &**dtype {
        Value::Object(d, _) if d.class == Global::Dtype => {
            d.args.first().and_then(|a| a.as_text()).unwrap_or("?")
        }
        _ => return Err("has an array dtype that is not a numpy.dtype".into()),
    };
    if code != "u1" {
        return Err(format!("has dtype {code:?}, expected uint8 ('u1')"));
    }
    if matches!(**fortran, Value::Bool(true) | Value::Int(1)) {
        return Err("is in Fortran order, expected C order".into());
    }
    let Value::Bytes(raw) = &**raw else {
        return Err(format!("has array data that is {}, not bytes", raw.kind()));
    };
    let [n, d] = dims[..] else {
        return Err(format!("has shape {dims:?}, expected N x {IMAGE_BYTES}"));
    };
    if d != IMAGE_BYTES || n == 0 {
        return Err(format!(
            "has shape {dims:?}, expected N x {IMAGE_BYTES} with N > 0"
        ));
    }
    if Some(raw.len()) != n.checked_mul(IMAGE_BYTES) {
        return Err(format!(
            "has {} data bytes for shape {dims:?}, expected {}",
            raw.len(),
            n.saturating_mul(IMAGE_BYTES)
        ));
    }
    Ok((n, raw))
}

/// A list of `n` ints in `0..classes`.
fn int_list(v: &Value, n: usize, classes: usize) -> std::result::Result<Vec<u32>, String> {
    let Value::List(items, _) = v else {
        return Err(format!("is {}, not a list", v.kind()));
    };
    if items.len() != n {
        return Err(format!("has {} labels for {n} images", items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match **item {
            Value::Int(l) if (0..classes as i64).contains(&l) => Ok(l as u32),
            Value::Int(l) => Err(format!(
                "item {i} is label {l}, beyond the {classes} classes"
            )),
            ref other => Err(format!("item {i} is {}, not an int", other.kind())),
        })
        .collect()
}

/// Builders of CIFAR files in both layouts, for tests of this module and of the command
/// line, and for fuzz seeds.
#[doc(hidden)]
pub mod cifar_writer;

#[cfg(test)]
mod tests;
