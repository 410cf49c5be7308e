//! The library's one error type.
//!
//! Messages name the problem and the file or option; an underlying cause is attached as the
//! error's `source()`, not repeated in the message. Tasks and steps in messages count from
//! 1, as the progress display and the figures do (the fields hold 0-based indices, as the
//! results file does).

use std::path::PathBuf;

use crate::qp::QpError;

/// Everything that can go wrong in the library, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // === Data ===
    /// The data directory does not exist.
    #[error("data directory not found: {path} (set --data-dir or EPISODIC_DATA)")]
    DataDirMissing {
        /// The directory that was looked for.
        path: PathBuf,
    },
    /// A required data file is absent.
    #[error("data file not found: {path}")]
    FileMissing {
        /// The file (without or with `.gz`) that was looked for.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A gzip stream is truncated or corrupt.
    #[error("corrupt or truncated gzip data in {path}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decompressor's error.
        source: std::io::Error,
    },
    /// An IDX file is malformed (wrong magic, dimensions, or length).
    #[error("malformed IDX file {path}: {reason}")]
    Idx {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Image and label files disagree on the number of examples.
    #[error("image/label count mismatch: {images_path} has {images} images but {labels_path} has {labels} labels")]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Its number of images.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Its number of labels.
        labels: usize,
    },
    /// A file's content does not match its published checksum.
    #[error("checksum mismatch for {path}: expected SHA-256 {expected}, found {actual}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The published SHA-256 of the uncompressed content.
        expected: String,
        /// The SHA-256 found.
        actual: String,
    },

    /// A data file is malformed (wrong magic, dtype, shape, length or content).
    #[error("malformed data file {path}: {reason}")]
    DataFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// None of a data set's known layouts is in a directory.
    #[error("no {dataset} data in {dir}: looked for {looked_for}")]
    DataNotFound {
        /// The data set (e.g. `cifar100`).
        dataset: String,
        /// The directory searched.
        dir: PathBuf,
        /// What was looked for, in order.
        looked_for: String,
    },
    /// Loaded data do not make a consistent data set.
    #[error("data set {name} is inconsistent: {reason}")]
    Dataset {
        /// The data set's name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    // === Configuration ===
    /// An option has an impossible value.
    #[error("invalid value for {option}: {reason}")]
    InvalidOption {
        /// The option's name as the user spells it (e.g. `--lr`).
        option: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A buffer handed to the library has the wrong length.
    #[error("shape mismatch in {what}: expected {expected}, got {actual}")]
    Shape {
        /// What was being checked.
        what: &'static str,
        /// The expected length.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// A label is outside the model's classes.
    #[error("label {label} out of range for {classes} classes{}", context.as_deref().map(|c| format!(" in {c}")).unwrap_or_default())]
    LabelOutOfRange {
        /// The label.
        label: u32,
        /// The number of classes.
        classes: usize,
        /// Where the label came from, if known.
        context: Option<String>,
    },
    /// A label lies outside the classes of its task's head (multi-head benchmarks).
    #[error("label {label} is outside the task's classes {start}..{end}")]
    LabelOutsideHead {
        /// The label.
        label: u32,
        /// First class of the head.
        start: usize,
        /// One past the last class of the head.
        end: usize,
    },

    // === Training ===
    /// The loss became NaN or infinite.
    #[error("non-finite loss {loss} at step {} (task {}) (try a smaller --lr)", step + 1, task + 1)]
    NonFiniteLoss {
        /// The loss value.
        loss: f32,
        /// Task index in training order.
        task: usize,
        /// Global step counter (batches seen), 0-based.
        step: usize,
    },
    /// A gradient (of the batch, or of a memory) has a NaN or infinite entry.
    #[error("non-finite gradient at step {} (task {}) (try a smaller --lr)", step + 1, task + 1)]
    NonFiniteGradient {
        /// Task index in training order.
        task: usize,
        /// Global step counter (batches seen), 0-based.
        step: usize,
    },
    /// GEM's quadratic program failed.
    #[error("GEM projection failed at step {} (task {})", step + 1, task + 1)]
    Qp {
        /// Task index.
        task: usize,
        /// Global step.
        step: usize,
        /// The solver's error.
        source: QpError,
    },

    /// A run stopped on an error after saving its last good state.
    #[error("run stopped; its last good state is saved in {checkpoint}")]
    Stopped {
        /// The checkpoint written before stopping.
        checkpoint: PathBuf,
        /// Why the run stopped.
        source: Box<Error>,
    },

    // === Checkpoints ===
    /// A checkpoint file cannot be used (torn, corrupt, or from another format version).
    #[error("checkpoint {path} is unusable: {reason}")]
    CheckpointCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint's content does not fit the run it is loaded into.
    #[error("checkpoint content does not fit this run: {reason}")]
    CheckpointContent {
        /// What does not fit.
        reason: String,
    },
    /// A checkpoint directory holds no usable checkpoint.
    #[error("no usable checkpoint in {dir}{}", if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join("; ")) })]
    NoCheckpoint {
        /// The directory.
        dir: PathBuf,
        /// Why each candidate file was rejected.
        skipped: Vec<String>,
    },

    // === Output ===
    /// Results could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Serialising results failed.
    #[error("cannot serialise results: {0}")]
    Json(#[from] serde_json::Error),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_count_tasks_and_steps_from_one() {
        let err = Error::NonFiniteLoss {
            loss: f32::NAN,
            task: 0,
            step: 0,
        };
        assert_eq!(
            err.to_string(),
            "non-finite loss NaN at step 1 (task 1) (try a smaller --lr)"
        );
        let err = Error::NonFiniteGradient {
            task: 19,
            step: 1999,
        };
        assert!(err.to_string().contains("at step 2000 (task 20)"), "{err}");
    }
}
