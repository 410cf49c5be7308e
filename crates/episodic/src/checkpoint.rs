//! Checkpoints: everything needed to continue a run, written atomically and checked on read.
//!
//! One checkpoint is one file, `checkpoint-STEP.safetensors` (STEP: mini-batches trained,
//! zero-padded), in the safetensors format: the method's tensors (parameters, memories,
//! Fisher diagonals, exemplars, ...) as little-endian `F32`/`U32`/`U64` arrays, and in the
//! header's metadata a versioned JSON manifest (format version, the resolved configuration,
//! the step, the evaluations so far, the method's small values such as counters and random
//! generator positions) with the SHA-256 of the manifest and of the tensor bytes. The
//! benchmark and the stream are not stored: both are redrawn from the run's seed.
//!
//! Writing: the bytes go to a temporary file in the same directory, which is flushed to disk,
//! renamed over the final name, and the directory itself is flushed, so a crash leaves
//! either the previous set of checkpoints or the new one, never a half-written file under a
//! checkpoint's name. The two newest checkpoints are kept. Reading: the newest file whose
//! structure and checksums are intact is used; a torn or corrupt newer one is skipped with
//! a warning.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::data::idx::sha256_hex;
use crate::error::{Error, Result};
use crate::results::Evaluation;
use crate::state::{State, Tensor};

/// Version of the checkpoint format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Checkpoints kept in a directory.
pub const KEEP: usize = 2;

const FORMAT_NAME: &str = "episodic-checkpoint";
const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".safetensors";

/// Where a run stands: what the manifest records besides the method's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The resolved configuration of the run.
    pub config: ExperimentConfig,
    /// Mini-batches trained.
    pub step: u64,
    /// Every evaluation so far.
    pub evaluations: Vec<Evaluation>,
    /// Training seconds so far (information only).
    pub train_seconds: f64,
    /// Evaluation seconds so far (information only).
    pub evaluation_seconds: f64,
    /// Wall-clock seconds of the run so far, all sessions together (information only).
    #[serde(default)]
    pub total_seconds: f64,
    /// Where the run writes its results (absent in checkpoints of runs told nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_file: Option<PathBuf>,
}

/// The manifest stored in a checkpoint's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format: String,
    format_version: u32,
    episodic_version: String,
    progress: Progress,
    /// The method's small values.
    method: serde_json::Map<String, serde_json::Value>,
    /// SHA-256 of the tensor bytes, in name order.
    tensors_sha256: String,
}

/// A checkpoint in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Where the run stands.
    pub progress: Progress,
    /// The method's state.
    pub state: State,
}

impl Checkpoint {
    /// The checkpoint as the bytes of a safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors: Vec<(String, Vec<u8>, Dtype)> = self
            .state
            .tensors()
            .iter()
            .map(|(name, t)| {
                let (bytes, dtype) = match t {
                    Tensor::F32(v) => (le_bytes(v, |x| x.to_le_bytes()), Dtype::F32),
                    Tensor::U32(v) => (le_bytes(v, |x| x.to_le_bytes()), Dtype::U32),
                    Tensor::U64(v) => (le_bytes(v, |x| x.to_le_bytes()), Dtype::U64),
                };
                (name.clone(), bytes, dtype)
            })
            .collect();
        let manifest = Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            episodic_version: env!("CARGO_PKG_VERSION").into(),
            progress: self.progress.clone(),
            method: self.state.values().clone(),
            tensors_sha256: tensors_digest(tensors.iter().map(|(n, b, _)| (n.as_str(), &b[..]))),
        };
        let manifest = serde_json::to_string(&manifest)?;
        let metadata = HashMap::from([
            (
                "manifest_sha256".to_string(),
                sha256_hex(manifest.as_bytes()),
            ),
            ("manifest".to_string(), manifest),
        ]);
        let views = tensors
            .iter()
            .map(|(name, bytes, dtype)| {
                let len = bytes.len() * 8 / dtype.bitsize();
                TensorView::new(*dtype, vec![len], bytes).map(|view| (name.as_str(), view))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| format_error(format!("cannot encode a tensor: {e}")))?;
        safetensors::tensor::serialize(views, Some(metadata))
            .map_err(|e| format_error(format!("cannot encode the checkpoint: {e}")))
    }

    /// Decodes and checks a checkpoint file's bytes; `path` names it in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        Self::decode(path, bytes, true)
    }

    /// [`Checkpoint::from_bytes`] without comparing the checksums: for examining a damaged
    /// checkpoint, and for fuzzing what lies behind the checksums (the structure is still
    /// checked). Never use it to resume a run.
    pub fn from_bytes_unverified(path: &Path, bytes: &[u8]) -> Result<Self> {
        Self::decode(path, bytes, false)
    }

    fn decode(path: &Path, bytes: &[u8], verify: bool) -> Result<Self> {
        let corrupt = |reason: String| Error::CheckpointCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = SafeTensors::deserialize(bytes)
            .map_err(|e| corrupt(format!("not a valid safetensors file ({e})")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| corrupt(format!("not a valid safetensors file ({e})")))?;
        let metadata = header
            .metadata()
            .as_ref()
            .ok_or_else(|| corrupt("no manifest".into()))?;
        let text = metadata
            .get("manifest")
            .ok_or_else(|| corrupt("no manifest".into()))?;
        let digest = metadata
            .get("manifest_sha256")
            .ok_or_else(|| corrupt("no manifest checksum".into()))?;
        if verify && &sha256_hex(text.as_bytes()) != digest {
            return Err(corrupt("the manifest does not match its checksum".into()));
        }
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| corrupt(format!("bad manifest ({e})")))?;
        if manifest.format != FORMAT_NAME {
            return Err(corrupt(format!(
                "not an episodic checkpoint ({:?})",
                manifest.format
            )));
        }
        if manifest.format_version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} (this build reads version {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
        names.sort();
        let mut tensors = BTreeMap::new();
        let mut raw = Vec::with_capacity(names.len());
        for name in names {
            let view = file
                .tensor(&name)
                .map_err(|e| corrupt(format!("tensor {name}: {e}")))?;
            if view.shape().len() != 1 {
                return Err(corrupt(format!("tensor {name} is not one-dimensional")));
            }
            let data = view.data();
            let tensor = match view.dtype() {
                Dtype::F32 => Tensor::F32(from_le(data, f32::from_le_bytes)),
                Dtype::U32 => Tensor::U32(from_le(data, u32::from_le_bytes)),
                Dtype::U64 => Tensor::U64(from_le(data, u64::from_le_bytes)),
                other => return Err(corrupt(format!("tensor {name} has type {other:?}"))),
            };
            raw.push((name.clone(), data));
            tensors.insert(name, tensor);
        }
        if verify
            && tensors_digest(raw.iter().map(|(n, b)| (n.as_str(), *b))) != manifest.tensors_sha256
        {
            return Err(corrupt("the tensors do not match their checksum".into()));
        }
        Ok(Self {
            progress: manifest.progress,
            state: State::from_parts(tensors, manifest.method),
        })
    }
}

fn format_error(reason: String) -> Error {
    Error::CheckpointContent { reason }
}

fn le_bytes<T: Copy, const N: usize>(values: &[T], to: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

fn from_le<T, const N: usize>(bytes: &[u8], from: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from(a)
        })
        .collect()
}

/// SHA-256 over each tensor's name and bytes, in the order given.
fn tensors_digest<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut all = Vec::new();
    for (name, bytes) in tensors {
        all.extend_from_slice(name.as_bytes());
        all.push(0);
        all.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        all.extend_from_slice(bytes);
    }
    sha256_hex(&all)
}

/// A directory of checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
}

/// A checkpoint read back, with what was skipped to find it.
#[derive(Debug)]
pub struct Loaded {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Its file.
    pub path: PathBuf,
    /// One line per newer file that could not be used, and why.
    pub warnings: Vec<String>,
}

impl CheckpointDir {
    /// The checkpoints in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `checkpoint` atomically and durably, then removes all but the newest
    /// [`KEEP`]; returns its file.
    pub fn save(&self, checkpoint: &Checkpoint) -> Result<PathBuf> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Write { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(write_err(&self.dir))?;
        let bytes = checkpoint.to_bytes()?;
        let path = self
            .dir
            .join(format!("{PREFIX}{:010}{SUFFIX}", checkpoint.progress.step));
        let tmp = self.dir.join(format!(
            ".{PREFIX}{:010}.{}.tmp",
            checkpoint.progress.step,
            std::process::id()
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(write_err(&path))?;
        for old in self.files()?.into_iter().skip(KEEP) {
            let _ = std::fs::remove_file(old.1);
        }
        Ok(path)
    }

    /// Checkpoint files, newest (highest step) first.
    pub fn files(&self) -> Result<Vec<(u64, PathBuf)>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut files: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let step = name
                    .strip_prefix(PREFIX)?
                    .strip_suffix(SUFFIX)?
                    .parse()
                    .ok()?;
                Some((step, e.path()))
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        Ok(files)
    }

    /// The newest usable checkpoint; newer files that are torn or corrupt are skipped and
    /// reported in [`Loaded::warnings`].
    pub fn load_latest(&self) -> Result<Loaded> {
        if !self.dir.is_dir() {
            return Err(Error::NoCheckpoint {
                dir: self.dir.clone(),
                skipped: vec!["the directory does not exist".into()],
            });
        }
        let mut warnings = Vec::new();
        for (_, path) in self.files()? {
            let read = std::fs::read(&path)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })
                .and_then(|bytes| Checkpoint::from_bytes(&path, &bytes));
            match read {
                Ok(checkpoint) => {
                    return Ok(Loaded {
                        checkpoint,
                        path,
                        warnings,
                    })
                }
                Err(err) => warnings.push(error_chain(&err)),
            }
        }
        Err(Error::NoCheckpoint {
            dir: self.dir.clone(),
            skipped: warnings,
        })
    }
}

/// An error and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

/// Flushes a directory's entries (the rename) to disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
