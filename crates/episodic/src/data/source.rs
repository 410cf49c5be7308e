//! Where a run's data set comes from, as its configuration records it, and loading it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cifar::{self, CifarVariant};
use super::dataset::Dataset;
use super::idx::{Checksums, IdxFiles, Vendored};
use super::npz::{self, Holdout};
use crate::error::Result;

/// The origin of a data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DataSource {
    /// A data set vendored in the data directory, checked against its published checksums.
    Vendored {
        /// Which one.
        name: Vendored,
    },
    /// Any IDX image/label pair for training and for test, found in `dir` by their names.
    Idx {
        /// The folder holding the four files.
        dir: PathBuf,
    },
    /// CIFAR-10 or CIFAR-100 in the binary or the python layout.
    Cifar {
        /// Which of the two.
        variant: CifarVariant,
        /// The folder the official archive unpacks to, or a folder holding it.
        dir: PathBuf,
    },
    /// A data set an application built in memory (recorded by name; it cannot be loaded
    /// again from the configuration).
    Memory {
        /// The data set's name.
        name: String,
    },
    /// A user's NumPy arrays: an `.npz` file or a folder of `.npy` files (`x_train`,
    /// `y_train`, optional `x_test`, `y_test`, `task_train`, `task_test`).
    Arrays {
        /// The file or folder.
        path: PathBuf,
    },
}

impl DataSource {
    /// A short name for the data set (file names, report labels).
    pub fn name(&self) -> String {
        let stem = |p: &Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "data".into())
        };
        match self {
            Self::Vendored { name } => name.id().to_string(),
            Self::Idx { dir } => stem(dir),
            Self::Cifar { variant, .. } => variant.name().to_string(),
            Self::Arrays { path } => stem(path),
            Self::Memory { name } => name.clone(),
        }
    }

    /// Loads the data set; vendored ones are looked for in `data_dir`. Own arrays without
    /// test arrays get a test split held out from `seed`, which the second value describes.
    pub fn load(&self, data_dir: &Path, seed: u64) -> Result<(Dataset, Option<Holdout>)> {
        match self {
            Self::Vendored { name } => Ok((name.load(data_dir, Checksums::Verify)?, None)),
            Self::Idx { dir } => Ok((IdxFiles::find(dir)?.load(&self.name(), dir)?, None)),
            Self::Cifar { variant, dir } => Ok((cifar::load_cifar(dir, *variant)?, None)),
            Self::Arrays { path } => npz::load_arrays(path, seed),
            Self::Memory { name } => Err(crate::error::Error::DataDirMissing {
                path: PathBuf::from(format!("<{name}: built in memory, not loadable>")),
            }),
        }
    }
}
