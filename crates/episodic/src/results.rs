//! The results file of a run, and writing it safely.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::data::TaskDescriptor;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// One evaluation of every task's test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mini-batches trained before this evaluation.
    pub step: u64,
    /// The task just finished (training order), or `None` for the baseline at initialisation.
    pub after_task: Option<usize>,
    /// Test accuracy on each task.
    pub accuracies: Vec<f64>,
}

/// Wall-clock figures and memory use of a run: the only fields that vary between two runs
/// with the same seed and thread count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Whole run (training and evaluations), excluding data loading.
    pub total_seconds: f64,
    /// Training (everything in `observe`).
    pub train_seconds: f64,
    /// Gradients on past tasks' memories (part of training).
    pub memory_gradient_seconds: f64,
    /// Checking whether steps violate past tasks' constraints (part of training).
    #[serde(default)]
    pub violation_check_seconds: f64,
    /// Forming and solving the QPs of projected steps (part of training).
    #[serde(default)]
    pub qp_seconds: f64,
    /// Applying the projections (part of training; results written before the check and
    /// the QP were timed apart count all three here).
    pub projection_seconds: f64,
    /// All evaluations.
    pub evaluation_seconds: f64,
    /// Loading and checking the data set.
    pub data_seconds: f64,
    /// Peak resident set size of the process, if the platform reports it.
    pub peak_rss_bytes: Option<u64>,
}

/// Everything a run produced; serialised as the results JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// Version of the `episodic` crate that produced the file.
    pub episodic_version: String,
    /// Git revision of the build, if known.
    pub git_revision: Option<String>,
    /// The matrix-product kernels the run ran on (its results' last bits depend on them),
    /// if the file says.
    #[serde(default)]
    pub matrix_kernels: Option<String>,
    /// The resolved configuration (every default filled in).
    pub config: ExperimentConfig,
    /// The benchmark's concrete draws, per task in training order.
    pub tasks: Vec<TaskDescriptor>,
    /// ACC, BWT, FWT by the paper's definitions.
    pub metrics: Metrics,
    /// The same with BWT and FWT divided by T, as the reference code prints them.
    pub metrics_reference_convention: Metrics,
    /// Test accuracy of each task at initialisation (b).
    pub baseline: Vec<f64>,
    /// `R[i][j]`: accuracy on task j after training task i.
    pub accuracy_matrix: Vec<Vec<f64>>,
    /// Every evaluation, in order, with its step.
    pub evaluations: Vec<Evaluation>,
    /// Mini-batches trained.
    pub steps: u64,
    /// Steps whose gradient GEM projected (0 for other methods).
    pub projected_steps: u64,
    /// Steps GEM left without an update because its QP had no trustworthy solution.
    #[serde(default)]
    pub skipped_steps: u64,
    /// Time and memory.
    pub timing: Timing,
}

impl RunResults {
    /// Writes the results as pretty JSON to `path` atomically: a temporary file in the same
    /// directory is written, flushed to disk and renamed over `path`, so an existing file is
    /// never left half-written.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        write_atomically(path, &json)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename. A symbolic link is
/// written through: its target is replaced (atomically, in the target's directory) and the
/// link stays. Anything but a regular file or a new path is refused.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = writable_target(path)?;
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = temporary_sibling(&target);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// Checks, before a long run, that `path` can be written: it is a regular file, a symbolic
/// link to one, or a new name, and its (target's) directory exists and accepts a new file.
pub fn check_writable(path: &Path) -> Result<()> {
    let target = writable_target(path)?;
    let tmp = temporary_sibling(&target);
    std::fs::File::create(&tmp).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

/// Most symbolic links followed to reach a file (as Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// The file a write to `path` replaces: `path`, or the end of the chain of symbolic links
/// that starts at it; refused unless that is a regular file or does not exist yet.
pub fn writable_target(path: &Path) -> Result<PathBuf> {
    let refuse = |reason: &str| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(reason.to_string()),
    };
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        let Ok(meta) = std::fs::symlink_metadata(&current) else {
            return Ok(current);
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let link = std::fs::read_link(&current).map_err(|source| Error::Write {
                path: path.to_path_buf(),
                source,
            })?;
            current = match current.parent() {
                Some(dir) if link.is_relative() => dir.join(link),
                _ => link,
            };
        } else if kind.is_file() {
            return Ok(current);
        } else if kind.is_dir() {
            return Err(refuse("is a directory"));
        } else {
            return Err(refuse(
                "is not a regular file (a device, a pipe or a socket); give a file name, or - for standard output",
            ));
        }
    }
    Err(refuse("is a chain of more than 40 symbolic links"))
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Peak resident set size of this process (Linux: `VmHWM` of /proc/self/status).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"{\"new\": 1}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"new\": 1}\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unwritable_paths_are_reported_and_keep_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/r.json");
        assert!(matches!(check_writable(&missing), Err(Error::Write { .. })));
        assert!(write_atomically(&missing, b"x").is_err());
        assert!(
            check_writable(dir.path()).is_err(),
            "a directory is not a results file"
        );
        check_writable(&dir.path().join("ok.json")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn links_are_written_through_and_special_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/target.json");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("sub/target.json", &link).unwrap();
        write_atomically(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        // A dangling link makes its target.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink(dir.path().join("made.json"), &dangling).unwrap();
        write_atomically(&dangling, b"x").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("made.json")).unwrap(),
            "x\n"
        );
        // A device is refused, and so is a loop of links.
        let err = check_writable(Path::new("/dev/null")).unwrap_err();
        assert!(
            format!("{:?}", err).contains("not a regular file"),
            "{err:?}"
        );
        let a = dir.path().join("a");
        std::os::unix::fs::symlink(dir.path().join("b"), &a).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("b")).unwrap();
        assert!(write_atomically(&a, b"x").is_err());
    }

    #[test]
    fn reads_peak_rss_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().unwrap() > 1 << 20);
        }
    }
}
