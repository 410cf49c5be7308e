//! Users' own arrays: an `.npz` archive (`np.savez`, `np.savez_compressed`) or a directory of
//! `.npy` files, with the arrays `x_train`, `y_train` and, optionally, `x_test`, `y_test`,
//! `task_train`, `task_test`.
//!
//! Examples (`x_*`) are `uint8` (8-bit levels, scaled by 1/255 later), `float32`, or `float64`
//! (converted; values not finite in `float32` are refused), shaped N x D, N x H x W or
//! N x C x H x W in C order. Labels and task ids are 1-D arrays of N non-negative integers of
//! any integer dtype that fit in 32 bits (labels below [`MAX_CLASSES`]). Without test arrays a seeded sixth of the training
//! examples is held out as the test set.
//!
//! Headers and data are read with `npyz`; every size is checked before anything is
//! allocated: the header's shape times the item size must stay below [`MAX_ARRAY_BYTES`],
//! match the bytes that follow it exactly and, in an archive, the entry's declared size.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;

use super::dataset::{Dataset, Inputs, Shape, Split, MAX_CLASSES};
use crate::error::{Error, Result};
use crate::rng::{self, Purpose};

/// The largest array read (data bytes): a guard against decompression bombs and hostile
/// headers.
pub const MAX_ARRAY_BYTES: u64 = 4 << 30;
/// The longest `.npy` header accepted (NumPy writes well under 1 KiB).
pub const MAX_HEADER_BYTES: usize = 1 << 16;

/// The arrays read, in the order they are looked for.
pub const ARRAY_NAMES: [&str; 6] = [
    "x_train",
    "y_train",
    "x_test",
    "y_test",
    "task_train",
    "task_test",
];

/// How many training examples were kept and how many held out as the test set, when the
/// data had no test arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdout {
    /// Examples left for training.
    pub train: usize,
    /// Examples held out for testing.
    pub test: usize,
}

/// The values of an array, widened to one type per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// `uint8`.
    U8(Vec<u8>),
    /// `float32`.
    F32(Vec<f32>),
    /// `float64`.
    F64(Vec<f64>),
    /// `int8` to `int64`.
    Signed(Vec<i64>),
    /// `uint16` to `uint64`.
    Unsigned(Vec<u64>),
}

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The dimensions, first the number of examples.
    pub shape: Vec<usize>,
    /// The NumPy type string (e.g. `<f4`, `|u1`).
    pub dtype: String,
    /// The values, in C order.
    pub values: Values,
}

/// A library's error message on one line: npyz's header errors draw the header over several
/// lines with a caret under the fault.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn bad(path: &Path, reason: String) -> Error {
    Error::DataFile {
        path: path.to_path_buf(),
        reason,
    }
}

/// What a header says, checked: where the data starts and how long it is.
struct Header {
    data_offset: usize,
    data_bytes: usize,
}

/// Reads the fixed prefix of a `.npy` file: the magic, the version and the header's length.
/// Returns the header's end, without having looked at the header.
fn header_end(path: &Path, bytes: &[u8]) -> Result<usize> {
    if bytes.len() < 10 || !bytes.starts_with(b"\x93NUMPY") {
        return Err(bad(path, "not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (len, prefix) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err(bad(path, "truncated .npy header".into())),
        v => return Err(bad(path, format!("unknown .npy format version {v}"))),
    };
    if len > MAX_HEADER_BYTES {
        return Err(bad(
            path,
            format!("a {len}-byte header, more than the {MAX_HEADER_BYTES} accepted"),
        ));
    }
    Ok(prefix + len)
}

/// Checks the header at the start of `bytes` (which must hold at least the header): dtype,
/// order, shape and the data size they imply.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(Header, npyz::NpyHeader)> {
    let end = header_end(path, bytes)?;
    if bytes.len() < end {
        return Err(bad(
            path,
            format!(
                "truncated: the header needs {end} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let prefix = if bytes[6] == 1 { 10 } else { 12 };
    let text = std::str::from_utf8(&bytes[prefix..end])
        .map_err(|_| bad(path, "the header is not text".into()))?;
    // The literal parser (npyz's too) backtracks exponentially on deeply nested brackets: 70
    // unclosed `[` hung it (found by the `npz` fuzz target). NumPy nests at most 4 deep.
    if nesting(text) > MAX_HEADER_NESTING {
        return Err(bad(
            path,
            format!("the header nests brackets deeper than {MAX_HEADER_NESTING}"),
        ));
    }
    // npyz multiplies the dimensions unchecked: make sure they cannot overflow first.
    let literal: py_literal::Value = text
        .trim_end()
        .parse()
        .map_err(|_| bad(path, "the header is not a Python literal".into()))?;
    let dims = literal
        .as_dict()
        .and_then(|d| {
            d.iter()
                .find(|(k, _)| k.as_string().is_some_and(|k| k == "shape"))
        })
        .and_then(|(_, v)| v.as_tuple())
        .ok_or_else(|| bad(path, "the header has no shape tuple".into()))?;
    let mut product: u64 = 1;
    for d in dims {
        let d: u64 = d
            .as_integer()
            .and_then(|i| i.to_string().parse().ok())
            .ok_or_else(|| bad(path, format!("the header's shape has a bad dimension {d}")))?;
        if d > 0 {
            product = product
                .checked_mul(d)
                .ok_or_else(|| bad(path, "the header's shape overflows".into()))?;
        }
    }
    let header = npyz::NpyHeader::from_reader(&bytes[..end])
        .map_err(|e| bad(path, format!("bad header: {}", one_line(&e))))?;
    let descr = header_descr(&header);
    let npyz::DType::Plain(ts) = header.dtype() else {
        return Err(bad(
            path,
            format!("structured dtype {descr} is not supported"),
        ));
    };
    use npyz::TypeChar;
    let size = ts.size_field();
    let numeric = match ts.type_char() {
        TypeChar::Uint | TypeChar::Int => matches!(size, 1 | 2 | 4 | 8),
        TypeChar::Float => matches!(size, 4 | 8),
        TypeChar::Object => {
            return Err(bad(
                path,
                "an object array (it would need pickle) is refused".into(),
            ))
        }
        _ => false,
    };
    if !numeric {
        return Err(bad(
            path,
            format!("dtype {descr} is not supported (integers, float32 or float64 only)"),
        ));
    }
    let shape = header.shape();
    if shape.is_empty() {
        return Err(bad(
            path,
            "a 0-d array (a scalar), expected one row per example".into(),
        ));
    }
    if shape.len() > 1 && header.order() == npyz::Order::Fortran {
        return Err(bad(
            path,
            "the array is in Fortran order; save it with np.ascontiguousarray".into(),
        ));
    }
    let elements: u64 = if shape.contains(&0) { 0 } else { product };
    let data_bytes = elements
        .checked_mul(size)
        .filter(|&b| b <= MAX_ARRAY_BYTES)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| {
            bad(
                path,
                format!(
                    "shape {shape:?} of {descr} is more than the {} GiB accepted",
                    MAX_ARRAY_BYTES >> 30
                ),
            )
        })?;
    Ok((
        Header {
            data_offset: end,
            data_bytes,
        },
        header,
    ))
}

/// The deepest bracket nesting a header may have (a structured dtype's list of tuples in the
/// header's dict is 3 deep).
const MAX_HEADER_NESTING: usize = 8;

/// The deepest nesting of `(`, `[` and `{` in `text`, outside quoted strings.
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut quote) = (0usize, 0usize, None);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
    }
    deepest
}

fn header_descr(header: &npyz::NpyHeader) -> String {
    header.dtype().descr().replace('\'', "")
}

fn read_values<T: npyz::Deserialize>(path: &Path, file: npyz::NpyFile<&[u8]>) -> Result<Vec<T>> {
    file.into_vec()
        .map_err(|e| bad(path, format!("cannot read the data: {}", one_line(&e))))
}

/// Parses a whole `.npy` file from `bytes`: checks its header (numeric dtype, C order, at
/// least one dimension, at most [`MAX_ARRAY_BYTES`]) and that exactly the data it announces
/// follows, then reads the values (either byte order).
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Array> {
    let (header, npy_header) = check_header(path, bytes)?;
    let found = bytes.len() - header.data_offset;
    let shape: Vec<usize> = npy_header.shape().iter().map(|&d| d as usize).collect();
    let dtype = header_descr(&npy_header);
    if found != header.data_bytes {
        return Err(bad(
            path,
            if found < header.data_bytes {
                format!(
                    "truncated: shape {shape:?} of {dtype} needs {} data bytes, the file has {found}",
                    header.data_bytes
                )
            } else {
                format!(
                    "{} unexpected trailing bytes after the {} data bytes",
                    found - header.data_bytes,
                    header.data_bytes
                )
            },
        ));
    }
    let npyz::DType::Plain(ts) = npy_header.dtype() else {
        return Err(bad(
            path,
            format!("structured dtype {dtype} is not supported"),
        ));
    };
    let file = npyz::NpyFile::with_header(npy_header, &bytes[header.data_offset..]);
    use npyz::TypeChar::{Float, Int, Uint};
    let values = match (ts.type_char(), ts.size_field()) {
        (Uint, 1) => Values::U8(read_values(path, file)?),
        (Uint, 2) => Values::Unsigned(widen(read_values::<u16>(path, file)?)),
        (Uint, 4) => Values::Unsigned(widen(read_values::<u32>(path, file)?)),
        (Uint, 8) => Values::Unsigned(read_values(path, file)?),
        (Int, 1) => Values::Signed(widen(read_values::<i8>(path, file)?)),
        (Int, 2) => Values::Signed(widen(read_values::<i16>(path, file)?)),
        (Int, 4) => Values::Signed(widen(read_values::<i32>(path, file)?)),
        (Int, 8) => Values::Signed(read_values(path, file)?),
        (Float, 4) => Values::F32(read_values(path, file)?),
        (Float, 8) => Values::F64(read_values(path, file)?),
        _ => return Err(bad(path, format!("dtype {dtype} is not supported"))),
    };
    Ok(Array {
        shape,
        dtype,
        values,
    })
}

fn widen<T: Copy, U: From<T>>(v: Vec<T>) -> Vec<U> {
    v.into_iter().map(U::from).collect()
}

/// Loads a data set from an `.npz` archive or a directory of `.npy` files (see the module
/// documentation). Without test arrays, a seeded sixth of the training examples (drawn with
/// `holdout_seed`) becomes the test set and the returned [`Holdout`] says how many.
pub fn load_arrays(path: &Path, holdout_seed: u64) -> Result<(Dataset, Option<Holdout>)> {
    if path.is_dir() {
        let mut arrays = HashMap::new();
        for name in ARRAY_NAMES {
            let file = path.join(format!("{name}.npy"));
            if file.is_file() {
                let bytes = read_file(&file)?;
                arrays.insert(name, (file.clone(), parse_npy(&file, &bytes)?));
            }
        }
        return assemble(path, arrays, holdout_seed);
    }
    if !path.exists() {
        return Err(Error::FileMissing {
            path: path.to_path_buf(),
        });
    }
    let bytes = read_file(path)?;
    parse_npz(path, &bytes, holdout_seed)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    let most = MAX_ARRAY_BYTES * 6 + MAX_HEADER_BYTES as u64 * 6;
    if len > most {
        return Err(bad(
            path,
            format!("{len} bytes, more than the arrays it may hold"),
        ));
    }
    std::fs::read(path).map_err(io)
}

/// Parses an `.npz` archive held in `bytes` into a data set, as [`load_arrays`] does.
pub fn parse_npz(
    path: &Path,
    bytes: &[u8],
    holdout_seed: u64,
) -> Result<(Dataset, Option<Holdout>)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        bad(
            path,
            format!("not a readable zip archive: {}", one_line(&e)),
        )
    })?;
    let mut arrays = HashMap::new();
    for name in ARRAY_NAMES {
        let entry_name = format!("{name}.npy");
        let entry_path = path.join(&entry_name);
        let entry = match zip.by_name(&entry_name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => continue,
            Err(e) => {
                return Err(bad(
                    &entry_path,
                    format!("cannot open the entry: {}", one_line(&e)),
                ))
            }
        };
        let bytes = read_entry(&entry_path, entry)?;
        arrays.insert(name, (entry_path.clone(), parse_npy(&entry_path, &bytes)?));
    }
    assemble(path, arrays, holdout_seed)
}

/// Reads one archive entry: first its header, whose data size must fit the cap and the
/// entry's declared size, then exactly that much data.
fn read_entry(path: &Path, entry: impl Read + HasSize) -> Result<Vec<u8>> {
    let declared = entry.declared_size();
    let io = |e: std::io::Error| bad(path, format!("corrupt archive entry: {}", one_line(&e)));
    let mut entry = entry.take(declared);
    let mut bytes = Vec::new();
    (&mut entry).take(12).read_to_end(&mut bytes).map_err(io)?;
    let end = header_end(path, &bytes)?;
    (&mut entry)
        .take((end - bytes.len().min(end)) as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let (header, _) = check_header(path, &bytes)?;
    let needed = (header.data_offset + header.data_bytes) as u64;
    if needed != declared {
        return Err(bad(
            path,
            format!("the archive declares {declared} bytes, the header needs {needed}"),
        ));
    }
    bytes.reserve(header.data_bytes.min(64 << 20));
    entry.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// The declared uncompressed size of an archive entry.
trait HasSize {
    fn declared_size(&self) -> u64;
}

impl<R: Read> HasSize for zip::read::ZipFile<'_, R> {
    fn declared_size(&self) -> u64 {
        self.size()
    }
}

/// Examples of one split, checked.
struct Examples {
    shape: Shape,
    n: usize,
    inputs: Inputs,
}

fn examples(path: &Path, a: Array) -> Result<Examples> {
    let shape = match a.shape[..] {
        [_, d] => Shape::flat(d),
        [_, h, w] => Shape {
            channels: 1,
            height: h,
            width: w,
        },
        [_, c, h, w] => Shape {
            channels: c,
            height: h,
            width: w,
        },
        _ => {
            return Err(bad(
                path,
                format!(
                    "shape {:?}; examples must be N x D, N x H x W or N x C x H x W",
                    a.shape
                ),
            ))
        }
    };
    if a.shape[1..].contains(&0) {
        return Err(bad(
            path,
            format!("shape {:?}: examples without features", a.shape),
        ));
    }
    let n = a.shape[0];
    let non_finite = |i: usize, v: f64| {
        bad(
            path,
            format!(
                "example {} has a value ({v:e}) that is not a finite float32",
                i / shape.features()
            ),
        )
    };
    let inputs = match a.values {
        Values::U8(v) => Inputs::Bytes(v),
        Values::F32(v) => {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(non_finite(i, f64::from(v[i])));
            }
            Inputs::Floats(v)
        }
        Values::F64(v) => {
            if let Some(i) = v.iter().position(|&x| !(x as f32).is_finite()) {
                return Err(non_finite(i, v[i]));
            }
            Inputs::Floats(v.into_iter().map(|x| x as f32).collect())
        }
        Values::Signed(_) | Values::Unsigned(_) => {
            return Err(bad(
                path,
                format!(
                    "dtype {} for examples; expected uint8, float32 or float64",
                    a.dtype
                ),
            ))
        }
    };
    Ok(Examples { shape, n, inputs })
}

/// Labels or task ids: `n` integers in `0..=u32::MAX`.
fn ids(path: &Path, a: Array, n: usize) -> Result<Vec<u32>> {
    if a.shape != [n] {
        return Err(bad(
            path,
            format!("shape {:?}, expected ({n},): one per example", a.shape),
        ));
    }
    let out_of_range = |i: usize, v: &dyn std::fmt::Display| {
        bad(
            path,
            format!("value {v} at index {i} is not a non-negative 32-bit integer"),
        )
    };
    match a.values {
        Values::U8(v) => Ok(v.into_iter().map(u32::from).collect()),
        Values::Unsigned(v) => v
            .into_iter()
            .enumerate()
            .map(|(i, x)| u32::try_from(x).map_err(|_| out_of_range(i, &x)))
            .collect(),
        Values::Signed(v) => v
            .into_iter()
            .enumerate()
            .map(|(i, x)| u32::try_from(x).map_err(|_| out_of_range(i, &x)))
            .collect(),
        Values::F32(_) | Values::F64(_) => Err(bad(
            path,
            format!("dtype {}; expected an integer dtype", a.dtype),
        )),
    }
}

/// Labels: [`ids`] below [`MAX_CLASSES`].
fn labels_of(path: &Path, a: Array, n: usize) -> Result<Vec<u32>> {
    let labels = ids(path, a, n)?;
    if let Some(i) = labels.iter().position(|&y| y as usize >= MAX_CLASSES) {
        return Err(bad(
            path,
            format!(
                "label {} at index {i} is beyond the {MAX_CLASSES} classes accepted",
                labels[i]
            ),
        ));
    }
    Ok(labels)
}

fn gather(inputs: &Inputs, d: usize, idx: &[usize]) -> Inputs {
    fn pick<T: Copy>(v: &[T], d: usize, idx: &[usize]) -> Vec<T> {
        idx.iter()
            .flat_map(|&i| v[i * d..(i + 1) * d].iter().copied())
            .collect()
    }
    match inputs {
        Inputs::Bytes(v) => Inputs::Bytes(pick(v, d, idx)),
        Inputs::Floats(v) => Inputs::Floats(pick(v, d, idx)),
    }
}

fn assemble(
    source: &Path,
    mut arrays: HashMap<&'static str, (PathBuf, Array)>,
    holdout_seed: u64,
) -> Result<(Dataset, Option<Holdout>)> {
    let name = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "arrays".into());
    let mut take = |key: &str| arrays.remove(key);
    let missing = |key: &str| Error::FileMissing {
        path: source.join(format!("{key}.npy")),
    };
    let inconsistent = |reason: &str| bad(source, reason.to_string());
    let (x_path, x_train) = take("x_train").ok_or_else(|| missing("x_train"))?;
    let (y_path, y_train) = take("y_train").ok_or_else(|| missing("y_train"))?;
    let x_test = take("x_test");
    let y_test = take("y_test");
    let task_train = take("task_train");
    let task_test = take("task_test");
    if x_test.is_some() != y_test.is_some() {
        return Err(inconsistent("x_test and y_test must come together"));
    }
    if task_test.is_some() && x_test.is_none() {
        return Err(inconsistent("task_test is given without x_test"));
    }
    if x_test.is_some() && task_train.is_some() != task_test.is_some() {
        return Err(inconsistent(
            "task_train and task_test must come together when there are test arrays",
        ));
    }
    let train = examples(&x_path, x_train)?;
    if train.n == 0 {
        return Err(bad(&x_path, "no training examples".into()));
    }
    let labels = labels_of(&y_path, y_train, train.n)?;
    let tasks = task_train.map(|(p, a)| ids(&p, a, train.n)).transpose()?;
    let d = train.shape.features();
    let (train_split, test_split, holdout) = match (x_test, y_test) {
        (Some((xt_path, xt)), Some((yt_path, yt))) => {
            let test = examples(&xt_path, xt)?;
            if test.shape != train.shape {
                return Err(bad(
                    &xt_path,
                    format!(
                        "examples of shape {}, but the training examples are {}",
                        test.shape, train.shape
                    ),
                ));
            }
            if std::mem::discriminant(&test.inputs) != std::mem::discriminant(&train.inputs) {
                return Err(bad(
                    &xt_path,
                    "one of x_train and x_test is uint8 and the other float".into(),
                ));
            }
            let test_labels = labels_of(&yt_path, yt, test.n)?;
            let test_tasks = task_test.map(|(p, a)| ids(&p, a, test.n)).transpose()?;
            (
                Split {
                    inputs: train.inputs,
                    labels,
                    tasks,
                },
                Split {
                    inputs: test.inputs,
                    labels: test_labels,
                    tasks: test_tasks,
                },
                None,
            )
        }
        _ => {
            let n = train.n;
            let n_test = if n >= 2 { (n / 6).max(1) } else { 0 };
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng::stream(holdout_seed, Purpose::Holdout));
            let mut held = vec![false; n];
            for &i in &order[..n_test] {
                held[i] = true;
            }
            let (test_idx, train_idx): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| held[i]);
            let pick = |v: &[u32], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<u32>>();
            let split = |idx: &[usize]| Split {
                inputs: gather(&train.inputs, d, idx),
                labels: pick(&labels, idx),
                tasks: tasks.as_deref().map(|t| pick(t, idx)),
            };
            (
                split(&train_idx),
                split(&test_idx),
                Some(Holdout {
                    train: train_idx.len(),
                    test: test_idx.len(),
                }),
            )
        }
    };
    let classes = train_split
        .labels
        .iter()
        .chain(&test_split.labels)
        .max()
        .map_or(1, |&m| m as usize + 1);
    let dataset = Dataset::new(
        name,
        train.shape,
        classes,
        None,
        source.display().to_string(),
        train_split,
        test_split,
    )?;
    Ok((dataset, holdout))
}

/// Builders of `.npy` and `.npz` files, for tests of this module and of the command line,
/// and for fuzz seeds.
#[doc(hidden)]
pub mod npy_writer;

#[cfg(test)]
mod tests;
