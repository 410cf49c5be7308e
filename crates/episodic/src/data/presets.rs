//! Presets: the paper's benchmarks (and ours) by name, each a data set, a scenario and the
//! protocol's defaults (tasks, examples per task, which column of the paper's
//! hyper-parameter table the methods take).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::cifar::CifarVariant;
use super::idx::Vendored;
use super::scenario::{ClassOrder, Scenario};
use super::source::DataSource;

/// A named benchmark: data set, scenario and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// MNIST Permutations (the paper): 20 tasks of 1000 images, a permutation each.
    MnistPermutations,
    /// MNIST Rotations (the paper): 20 tasks of 1000 images, task t rotated in
    /// [t * 9, (t + 1) * 9) degrees.
    MnistRotations,
    /// Class-split MNIST (ours): 5 tasks of 2 digits, a head per task.
    MnistSplit,
    /// Fashion-MNIST Permutations: as MNIST Permutations on Fashion-MNIST.
    FashionPermutations,
    /// Fashion-MNIST Rotations: as MNIST Rotations on Fashion-MNIST.
    FashionRotations,
    /// Class-split Fashion-MNIST: 5 tasks of 2 classes, a head per task.
    FashionSplit,
    /// CIFAR-100 (the paper): 20 tasks of 5 consecutive fine classes, all 2,500 training and
    /// 500 test images per task, a head per task.
    Cifar100,
    /// Class-split CIFAR-10: 5 tasks of 2 consecutive classes, all their images, a head per
    /// task.
    Cifar10Split,
}

/// Which column of the paper's hyper-parameter table (gem-reference.md section 5) a
/// benchmark's methods take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// MNIST Permutations' values (also class splits of MNIST-sized data and own data).
    Permutations,
    /// MNIST Rotations' values.
    Rotations,
    /// CIFAR-100's values.
    Cifar,
}

impl Preset {
    /// Every preset, in the order reports list them.
    pub const ALL: [Self; 8] = [
        Self::MnistPermutations,
        Self::MnistRotations,
        Self::MnistSplit,
        Self::FashionPermutations,
        Self::FashionRotations,
        Self::FashionSplit,
        Self::Cifar100,
        Self::Cifar10Split,
    ];

    /// The name on the command line (`--benchmark`).
    pub fn id(self) -> &'static str {
        match self {
            Self::MnistPermutations => "mnist-permutations",
            Self::MnistRotations => "mnist-rotations",
            Self::MnistSplit => "mnist-split",
            Self::FashionPermutations => "fashion-permutations",
            Self::FashionRotations => "fashion-rotations",
            Self::FashionSplit => "fashion-split",
            Self::Cifar100 => "cifar100",
            Self::Cifar10Split => "cifar10-split",
        }
    }

    /// One line on what the preset is, for `--help`.
    pub fn about(self) -> &'static str {
        match self {
            Self::MnistPermutations => "MNIST, 20 tasks, each a fixed random pixel permutation",
            Self::MnistRotations => {
                "MNIST, 20 tasks, task t of T (from 1) rotated in [(t-1)*180/T, t*180/T) degrees"
            }
            Self::MnistSplit => "MNIST, 5 tasks of 2 digits, a head per task",
            Self::FashionPermutations => "Fashion-MNIST, 20 tasks, a pixel permutation each",
            Self::FashionRotations => "Fashion-MNIST, 20 tasks, a rotation each",
            Self::FashionSplit => "Fashion-MNIST, 5 tasks of 2 classes, a head per task",
            Self::Cifar100 => "CIFAR-100 (--data-dir), 20 tasks of 5 classes, a head per task",
            Self::Cifar10Split => "CIFAR-10 (--data-dir), 5 tasks of 2 classes, a head per task",
        }
    }

    /// Where its data come from; CIFAR's folder is the one given with `--data-dir`.
    pub fn source(self, cifar_dir: &std::path::Path) -> DataSource {
        match self {
            Self::MnistPermutations | Self::MnistRotations | Self::MnistSplit => {
                DataSource::Vendored {
                    name: Vendored::Mnist,
                }
            }
            Self::FashionPermutations | Self::FashionRotations | Self::FashionSplit => {
                DataSource::Vendored {
                    name: Vendored::FashionMnist,
                }
            }
            Self::Cifar100 => DataSource::Cifar {
                variant: CifarVariant::Cifar100,
                dir: cifar_dir.to_path_buf(),
            },
            Self::Cifar10Split => DataSource::Cifar {
                variant: CifarVariant::Cifar10,
                dir: cifar_dir.to_path_buf(),
            },
        }
    }

    /// Whether its data are vendored in the repository (no `--data-dir` needed).
    pub fn is_vendored(self) -> bool {
        !matches!(self, Self::Cifar100 | Self::Cifar10Split)
    }

    /// How its tasks are made.
    pub fn scenario(self) -> Scenario {
        match self {
            Self::MnistPermutations | Self::FashionPermutations => Scenario::Permutations,
            Self::MnistRotations | Self::FashionRotations => Scenario::Rotations,
            // The 10-class splits divide the classes by the tasks (5 tasks of 2 by default);
            // CIFAR-100's protocol is 5 classes per task, whatever the number of tasks.
            Self::MnistSplit | Self::FashionSplit | Self::Cifar10Split => Scenario::ClassSplit {
                classes_per_task: None,
                order: ClassOrder::Consecutive,
            },
            Self::Cifar100 => Scenario::ClassSplit {
                classes_per_task: Some(5),
                order: ClassOrder::Consecutive,
            },
        }
    }

    /// Number of tasks of its protocol.
    pub fn default_tasks(self) -> usize {
        match self {
            Self::MnistSplit | Self::FashionSplit | Self::Cifar10Split => 5,
            _ => 20,
        }
    }

    /// Training examples per task of its protocol (`None`: all of each task's).
    pub fn default_samples_per_task(self) -> Option<usize> {
        match self {
            Self::Cifar100 | Self::Cifar10Split => None,
            _ => Some(1000),
        }
    }

    /// Which column of the paper's hyper-parameter table its methods take.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::MnistRotations | Self::FashionRotations => Protocol::Rotations,
            Self::Cifar100 | Self::Cifar10Split => Protocol::Cifar,
            _ => Protocol::Permutations,
        }
    }
}

impl Protocol {
    /// The column for a user's own data under `scenario`: rotations take the rotations
    /// values, everything else the permutations values.
    pub fn for_scenario(scenario: &Scenario) -> Self {
        match scenario {
            Scenario::Rotations => Self::Rotations,
            _ => Self::Permutations,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.id() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|p| p.id()).collect();
            format!(
                "unknown benchmark '{s}'; possible values: {}",
                names.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_protocols_follow_the_paper() {
        for p in Preset::ALL {
            assert_eq!(p.id().parse::<Preset>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.id()));
        }
        assert!("mnist"
            .parse::<Preset>()
            .unwrap_err()
            .contains("possible values"));
        assert_eq!(Preset::Cifar100.default_samples_per_task(), None);
        assert_eq!(Preset::FashionSplit.default_tasks(), 5);
        assert_eq!(Preset::FashionRotations.protocol(), Protocol::Rotations);
        assert!(Preset::MnistSplit.scenario().per_task_heads());
    }
}
