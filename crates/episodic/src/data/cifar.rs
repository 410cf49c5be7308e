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
pub mod cifar_writer {
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
}

#[cfg(test)]
mod tests {
    use super::cifar_writer::{self, write_dir};
    use super::*;
    use crate::data::pickle::writer::Pickle;

    const C10: CifarVariant = CifarVariant::Cifar10;
    const C100: CifarVariant = CifarVariant::Cifar100;

    fn images(n: usize, salt: usize) -> Vec<u8> {
        (0..n * IMAGE_BYTES)
            .map(|i| ((i * 7 + salt) % 251) as u8)
            .collect()
    }

    fn labels(n: usize, classes: usize) -> Vec<u32> {
        (0..n).map(|i| ((i * 3) % classes) as u32).collect()
    }

    fn names(variant: CifarVariant) -> Vec<String> {
        (0..variant.classes())
            .map(|i| format!("class{i}"))
            .collect()
    }

    fn write(dir: &Path, variant: CifarVariant, binary: bool, n_train: usize) {
        let c = variant.classes();
        let names = names(variant);
        write_dir(
            dir,
            variant,
            binary,
            (&images(n_train, 0), &labels(n_train, c)),
            (&images(3, 1), &labels(3, c)),
            Some(&names),
        )
        .unwrap();
    }

    fn err_text(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn loads_both_layouts_of_both_variants() {
        for variant in [C10, C100] {
            for binary in [true, false] {
                let root = tempfile::tempdir().unwrap();
                let folder = variant.folders()[usize::from(!binary)];
                write(&root.path().join(folder), variant, binary, 15);
                let d = load_cifar(root.path(), variant).unwrap();
                assert_eq!(d.name(), variant.name());
                assert_eq!(d.shape(), SHAPE);
                assert_eq!(d.classes(), variant.classes());
                assert_eq!(d.train().len(), 15);
                assert_eq!(d.test().len(), 3);
                assert_eq!(d.train().labels, labels(15, variant.classes()));
                assert_eq!(d.test().labels, vec![0, 3, 6]);
                let Inputs::Bytes(px) = &d.train().inputs else {
                    panic!("not bytes")
                };
                // Image 11, green plane, row 5, column 7 (across CIFAR-10's batch files).
                let i = 11 * IMAGE_BYTES + 1024 + 5 * 32 + 7;
                assert_eq!(px[i], ((i * 7) % 251) as u8);
                let Inputs::Bytes(px) = &d.test().inputs else {
                    panic!("not bytes")
                };
                assert_eq!(
                    px[IMAGE_BYTES + 2047],
                    (((IMAGE_BYTES + 2047) * 7 + 1) % 251) as u8
                );
                assert_eq!(d.class_names().unwrap()[2], "class2");
                assert!(d.source().ends_with(folder), "{}", d.source());
            }
        }
    }

    #[test]
    fn detects_the_folder_given_directly_and_prefers_binary() {
        let root = tempfile::tempdir().unwrap();
        // Files directly in the folder given, without a name file: no class names.
        let plain = root.path().join("mine");
        write_dir(
            &plain,
            C10,
            false,
            (&images(5, 0), &labels(5, 10)),
            (&images(1, 0), &[4]),
            None,
        )
        .unwrap();
        let d = load_cifar(&plain, C10).unwrap();
        assert_eq!(d.test().labels, vec![4]);
        assert!(d.class_names().is_none());
        // The official folder itself.
        let official = root.path().join("cifar-100-python");
        write(&official, C100, false, 4);
        assert_eq!(load_cifar(&official, C100).unwrap().train().len(), 4);
        // Both folders: the binary one wins.
        write(&root.path().join("cifar-100-binary"), C100, true, 7);
        assert_eq!(load_cifar(root.path(), C100).unwrap().train().len(), 7);
    }

    #[test]
    fn says_what_it_looked_for() {
        let root = tempfile::tempdir().unwrap();
        let err = err_text(load_cifar(root.path(), C100));
        assert!(
            err.contains("cifar-100-binary/ and cifar-100-python/"),
            "{err}"
        );
        let err = err_text(load_cifar(&root.path().join("nope"), C10));
        assert!(err.contains("data directory not found"), "{err}");
        // A batch missing from an official folder.
        let folder = root.path().join("cifar-10-batches-bin");
        write(&folder, C10, true, 10);
        std::fs::remove_file(folder.join("data_batch_3.bin")).unwrap();
        let err = err_text(load_cifar(root.path(), C10));
        assert!(
            err.contains("not found") && err.contains("data_batch_3.bin"),
            "{err}"
        );
    }

    #[test]
    fn binary_refuses_truncated_and_ragged_files() {
        let p = Path::new("test_batch.bin");
        let good = cifar_writer::binary(C10, &images(2, 0), &[1, 2]);
        assert_eq!(parse_binary(p, &good, C10).unwrap().1, vec![1, 2]);
        let err = err_text(parse_binary(p, &good[..good.len() - 10], C10));
        assert!(
            err.contains("test_batch.bin") && err.contains("3063 bytes left over"),
            "{err}"
        );
        assert!(err_text(parse_binary(p, &[], C10)).contains("empty"));
        // A CIFAR-10 file read as CIFAR-100 has the wrong record length.
        let err = err_text(parse_binary(p, &good, C100));
        assert!(err.contains("3074-byte records"), "{err}");
    }

    #[test]
    fn binary_refuses_labels_beyond_the_classes() {
        let p = Path::new("x.bin");
        let mut bytes = cifar_writer::binary(C10, &images(2, 0), &[1, 2]);
        bytes[3073] = 10;
        let err = err_text(parse_binary(p, &bytes, C10));
        assert!(
            err.contains("record 1 has label 10, beyond the 10 classes"),
            "{err}"
        );
        let mut bytes = cifar_writer::binary(C100, &images(1, 0), &[99]);
        assert_eq!(parse_binary(p, &bytes, C100).unwrap().1, vec![99]);
        bytes[1] = 100;
        assert!(err_text(parse_binary(p, &bytes, C100)).contains("label 100, beyond the 100"));
        bytes[1] = 5;
        bytes[0] = 20;
        assert!(err_text(parse_binary(p, &bytes, C100)).contains("coarse label 20"));
    }

    #[test]
    fn refuses_wrong_class_names() {
        let p = Path::new("batches.meta.txt");
        assert!(err_text(parse_names_txt(p, b"a\nb\n", C10)).contains("2 class names, expected 10"));
        assert!(err_text(parse_names_txt(p, &[0xff, b'\n'], C10)).contains("UTF-8"));
        let names: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let meta = cifar_writer::python_meta(C10, &names);
        assert_eq!(parse_python_meta(p, &meta, C10).unwrap(), names);
        assert!(err_text(parse_python_meta(p, &meta, C100)).contains("no 'fine_label_names'"));
    }

    /// A batch dict with `data` replaced by the given pickle bytes.
    fn batch_with_data(data: impl FnOnce(&mut Pickle)) -> Vec<u8> {
        let mut p = Pickle::new();
        p.raw(b"}(")
            .bytes(b"labels")
            .int_list(&[1, 2])
            .bytes(b"data");
        data(&mut p);
        p.raw(b"u").stop()
    }

    #[test]
    fn python_accepts_str_keys_and_python2_strings() {
        let p = Path::new("data_batch_1");
        let px = images(2, 0);
        // Python 2 (cPickle): str keys and raw data as BINSTRING.
        let mut b = Pickle::new();
        b.raw(b"}(")
            .py2_str(b"labels")
            .int_list(&[3, 4])
            .py2_str(b"data")
            .global("numpy.core.multiarray", "_reconstruct")
            .global("numpy", "ndarray")
            .int(0)
            .raw(&[0x85])
            .py2_str(b"b")
            .raw(&[0x87, b'R', b'('])
            .int(1)
            .int(2)
            .int(IMAGE_BYTES as i64)
            .raw(&[0x86])
            .global("numpy", "dtype")
            .py2_str(b"u1")
            .raw(&[b'K', 0, b'K', 1, 0x87, b'R', b'('])
            .int(3)
            .py2_str(b"|")
            .raw(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
            .raw(b"I00\n")
            .py2_str(&px)
            .raw(b"tbu");
        let (x, y) = parse_python_batch(p, &b.stop(), C10).unwrap();
        assert_eq!((x, y), (px.clone(), vec![3, 4]));
        // Python 3 str keys.
        let mut s = Pickle::new();
        s.raw(b"}(")
            .str("labels")
            .int_list(&[1, 2])
            .str("data")
            .ndarray(&[2, IMAGE_BYTES], "u1", false, &px)
            .raw(b"u");
        assert_eq!(parse_python_batch(p, &s.stop(), C10).unwrap().1, vec![1, 2]);
    }

    #[test]
    fn python_refuses_what_is_not_a_cifar_dict() {
        let p = Path::new("data_batch_1");
        let px = images(2, 0);
        let array = |shape: &[usize], code: &str, fortran: bool, data: &[u8]| {
            let (shape, code, data) = (shape.to_vec(), code.to_string(), data.to_vec());
            batch_with_data(move |b| {
                b.ndarray(&shape, &code, fortran, &data);
            })
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                Pickle::new().int_list(&[1]).stop(),
                "holds a list, not a dict",
            ),
            (
                Pickle::new()
                    .raw(b"}(")
                    .bytes(b"data")
                    .int(1)
                    .raw(b"u")
                    .stop(),
                "'data' is an int, not a NumPy array",
            ),
            (
                Pickle::new()
                    .raw(b"}(")
                    .bytes(b"data")
                    .ndarray(&[2, IMAGE_BYTES], "u1", false, &px)
                    .raw(b"u")
                    .stop(),
                "no 'labels' entry",
            ),
            (
                Pickle::new()
                    .raw(b"}(")
                    .bytes(b"labels")
                    .int_list(&[1])
                    .raw(b"u")
                    .stop(),
                "no 'data' entry",
            ),
            (
                array(&[2, IMAGE_BYTES], "i1", false, &px),
                "dtype \"i1\", expected uint8",
            ),
            (array(&[2, IMAGE_BYTES], "<f4", false, &px), "dtype \"<f4\""),
            (
                array(&[2, 32, 32, 3], "u1", false, &px),
                "expected N x 3072",
            ),
            (
                array(&[1, IMAGE_BYTES * 2], "u1", false, &px),
                "expected N x 3072",
            ),
            (array(&[0, IMAGE_BYTES], "u1", false, &[]), "with N > 0"),
            (array(&[2, IMAGE_BYTES], "u1", true, &px), "Fortran order"),
            (
                array(&[2, IMAGE_BYTES], "u1", false, &px[1..]),
                "6143 data bytes",
            ),
            (
                array(&[3, IMAGE_BYTES], "u1", false, &images(3, 0)),
                "has 2 labels for 3 images",
            ),
            (
                batch_with_data(|b| {
                    b.global("numpy", "dtype").str("u1").raw(&[0x85, b'R']);
                }),
                "not a NumPy array",
            ),
            (
                batch_with_data(|b| {
                    b.global("numpy.core.multiarray", "_reconstruct")
                        .global("numpy", "ndarray")
                        .raw(&[b')', 0x86, b'R']);
                }),
                "without a (version",
            ),
        ];
        for (bytes, expected) in cases {
            let err = err_text(parse_python_batch(p, &bytes, C10));
            assert!(
                err.contains("data_batch_1") && err.contains(expected),
                "{err} / {expected}"
            );
        }
        // Labels: beyond the classes, not ints, not a list; CIFAR-100's coarse labels.
        let good = cifar_writer::python_batch(C100, &px, &[99, 98]);
        assert_eq!(parse_python_batch(p, &good, C100).unwrap().1, vec![99, 98]);
        let err = err_text(parse_python_batch(p, &good, C10));
        assert!(err.contains("no 'labels' entry"), "{err}");
        let bad_labels = cifar_writer::python_batch(C10, &px, &[1, 10]);
        let err = err_text(parse_python_batch(p, &bad_labels, C10));
        assert!(
            err.contains("item 1 is label 10, beyond the 10 classes"),
            "{err}"
        );
        let mut p2 = Pickle::new();
        p2.raw(b"}(")
            .bytes(b"labels")
            .raw(b"](")
            .bytes(b"x")
            .raw(b"e")
            .bytes(b"data");
        p2.ndarray(&[1, IMAGE_BYTES], "u1", false, &px[..IMAGE_BYTES])
            .raw(b"u");
        let err = err_text(parse_python_batch(p, &p2.stop(), C10));
        assert!(err.contains("item 0 is bytes, not an int"), "{err}");
        let mut p3 = Pickle::new();
        p3.raw(b"}(")
            .bytes(b"fine_labels")
            .int_list(&[1])
            .bytes(b"coarse_labels")
            .int_list(&[20])
            .bytes(b"data");
        p3.ndarray(&[1, IMAGE_BYTES], "u1", false, &px[..IMAGE_BYTES])
            .raw(b"u");
        let err = err_text(parse_python_batch(p, &p3.stop(), C100));
        assert!(err.contains("'coarse_labels' item 0 is label 20"), "{err}");
    }

    #[test]
    fn python_refuses_foreign_globals_and_code() {
        let p = Path::new("data_batch_1");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                batch_with_data(|b| {
                    b.global("os", "system")
                        .str("touch /tmp/pwned")
                        .raw(&[0x85, b'R']);
                }),
                "global os.system",
            ),
            (
                batch_with_data(|b| {
                    b.global("builtins", "eval").str("1+1").raw(&[0x85, b'R']);
                }),
                "global builtins.eval",
            ),
            (
                // A code object smuggled in through marshal.
                batch_with_data(|b| {
                    b.global("marshal", "loads")
                        .raw(b"C\x03\xe3\x00\x00")
                        .raw(&[0x85, b'R']);
                }),
                "global marshal.loads",
            ),
            (
                batch_with_data(|b| {
                    b.global("copy_reg", "_reconstructor");
                }),
                "global copy_reg._reconstructor",
            ),
            (
                // NEWOBJ: objects of arbitrary classes.
                batch_with_data(|b| {
                    b.raw(b")").raw(&[0x81]);
                }),
                "opcode 0x81",
            ),
            (
                // _codecs.encode with another codec.
                batch_with_data(|b| {
                    b.global("_codecs", "encode")
                        .str("x")
                        .str("rot13")
                        .raw(&[0x86, b'R']);
                }),
                "encoding \"rot13\"",
            ),
        ];
        for (bytes, expected) in cases {
            let err = err_text(parse_python_batch(p, &bytes, C10));
            assert!(
                err.contains("data_batch_1") && err.contains(expected),
                "{err} / {expected}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        assert!(!Path::new("/tmp/pwned").exists());
    }

    #[test]
    fn python_refuses_truncated_pickles() {
        let p = Path::new("test_batch");
        let good = cifar_writer::python_batch(C10, &images(1, 0), &[7]);
        for cut in [1, 2, 40, good.len() / 2, good.len() - 1] {
            let err = err_text(parse_python_batch(p, &good[..cut], C10));
            assert!(
                err.contains("test_batch") && err.contains("pickle"),
                "{cut}: {err}"
            );
        }
    }

    #[test]
    fn loader_reports_the_damaged_file() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("cifar-10-batches-py");
        write(&folder, C10, false, 10);
        std::fs::write(folder.join("data_batch_4"), b"\x80\x02K\x01.").unwrap();
        let err = err_text(load_cifar(root.path(), C10));
        assert!(
            err.contains("data_batch_4: the pickle holds an int, not a dict"),
            "{err}"
        );
        std::fs::write(folder.join("batches.meta"), b"garbage").unwrap();
        std::fs::write(
            folder.join("data_batch_4"),
            cifar_writer::python_batch(C10, &images(1, 0), &[1]),
        )
        .unwrap();
        let err = err_text(load_cifar(root.path(), C10));
        assert!(err.contains("batches.meta"), "{err}");
    }
}
