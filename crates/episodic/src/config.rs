//! Typed run configuration: the paper's defaults per benchmark, and validation.

use serde::{Deserialize, Serialize};

use crate::data::BenchmarkKind;
use crate::error::{Error, Result};
use crate::model::MlpConfig;

/// Which method to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// Fine-tune one network on the stream (no protection against forgetting).
    Single,
    /// Gradient Episodic Memory.
    Gem,
}

impl MethodKind {
    /// The command-line name.
    pub fn id(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Gem => "gem",
        }
    }
}

/// Hyper-parameters of [`crate::method::Single`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SingleParams {
    /// SGD step size.
    pub learning_rate: f64,
}

/// Hyper-parameters of [`crate::method::Gem`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GemParams {
    /// SGD step size.
    pub learning_rate: f64,
    /// Episodic memory slots per task (m).
    pub memories_per_task: usize,
    /// Lower bound on the dual variables ("memory strength", gamma).
    pub margin: f64,
    /// Ridge added to the Gram matrix so that the dual QP is strictly convex.
    pub eps: f64,
}

/// A method and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum MethodConfig {
    /// See [`SingleParams`].
    Single(SingleParams),
    /// See [`GemParams`].
    Gem(GemParams),
}

impl MethodConfig {
    /// The paper's hyper-parameters of `kind` on `benchmark` (gem-reference.md section 5).
    pub fn paper(kind: MethodKind, benchmark: BenchmarkKind) -> Self {
        match kind {
            MethodKind::Single => Self::Single(SingleParams {
                learning_rate: match benchmark {
                    BenchmarkKind::MnistPermutations => 0.03,
                    BenchmarkKind::MnistRotations => 0.003,
                },
            }),
            MethodKind::Gem => Self::Gem(GemParams {
                learning_rate: 0.1,
                memories_per_task: 256,
                margin: 0.5,
                eps: 1e-3,
            }),
        }
    }

    /// Which method this configures.
    pub fn kind(&self) -> MethodKind {
        match self {
            Self::Single(_) => MethodKind::Single,
            Self::Gem(_) => MethodKind::Gem,
        }
    }

    /// The SGD step size.
    pub fn learning_rate(&self) -> f64 {
        match self {
            Self::Single(p) => p.learning_rate,
            Self::Gem(p) => p.learning_rate,
        }
    }

    /// Checks every hyper-parameter, naming the offending option.
    pub fn validate(&self) -> Result<()> {
        positive_finite("--lr", self.learning_rate())?;
        if let Self::Gem(p) = self {
            if p.memories_per_task == 0 {
                return Err(invalid(
                    "--memories-per-task",
                    "GEM needs at least 1 memory per task",
                ));
            }
            if !p.margin.is_finite() || p.margin < 0.0 {
                return Err(invalid(
                    "--margin",
                    format!("must be finite and >= 0, got {}", p.margin),
                ));
            }
            positive_finite("eps", p.eps)?;
        }
        Ok(())
    }
}

/// Everything that determines a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    /// The continuum.
    pub benchmark: BenchmarkKind,
    /// Number of tasks.
    pub tasks: usize,
    /// Training examples drawn per task.
    pub samples_per_task: usize,
    /// Train the tasks in a random (seeded) order.
    pub shuffle_tasks: bool,
    /// Passes over each task's examples (consecutive).
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Seed of every random draw.
    pub seed: u64,
    /// Threads for matrix products.
    pub threads: usize,
    /// The network.
    pub model: MlpConfig,
    /// The method and its hyper-parameters.
    pub method: MethodConfig,
}

impl ExperimentConfig {
    /// The paper's settings for `method` on `benchmark`: 20 tasks of 1000 samples, one epoch,
    /// batch 10, seed 0, the 784-100-100-10 MLP; `threads` as given.
    pub fn paper(benchmark: BenchmarkKind, method: MethodKind, threads: usize) -> Self {
        Self {
            benchmark,
            tasks: 20,
            samples_per_task: 1000,
            shuffle_tasks: false,
            epochs: 1,
            batch_size: 10,
            seed: 0,
            threads,
            model: MlpConfig::default(),
            method: MethodConfig::paper(method, benchmark),
        }
    }

    /// Checks every option, naming the offending one.
    pub fn validate(&self) -> Result<()> {
        for (option, value) in [
            ("--tasks", self.tasks),
            ("--samples-per-task", self.samples_per_task),
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--threads", self.threads),
        ] {
            if value == 0 {
                return Err(invalid(option, "must be at least 1"));
            }
        }
        self.method.validate()
    }
}

fn invalid(option: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        option,
        reason: reason.into(),
    }
}

fn positive_finite(option: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            option,
            format!("must be a positive finite number, got {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_defaults_per_benchmark() {
        let rot = ExperimentConfig::paper(BenchmarkKind::MnistRotations, MethodKind::Single, 1);
        assert_eq!(rot.method.learning_rate(), 0.003);
        let perm = ExperimentConfig::paper(BenchmarkKind::MnistPermutations, MethodKind::Single, 1);
        assert_eq!(perm.method.learning_rate(), 0.03);
        let gem = ExperimentConfig::paper(BenchmarkKind::MnistPermutations, MethodKind::Gem, 1);
        assert_eq!(
            gem.method,
            MethodConfig::Gem(GemParams {
                learning_rate: 0.1,
                memories_per_task: 256,
                margin: 0.5,
                eps: 1e-3
            })
        );
        assert_eq!(
            (gem.tasks, gem.samples_per_task, gem.batch_size, gem.epochs),
            (20, 1000, 10, 1)
        );
        gem.validate().unwrap();
    }

    #[test]
    fn rejects_impossible_values_naming_the_option() {
        let base = ExperimentConfig::paper(BenchmarkKind::MnistPermutations, MethodKind::Gem, 1);
        let cases: Vec<(ExperimentConfig, &str)> = vec![
            (
                ExperimentConfig {
                    tasks: 0,
                    ..base.clone()
                },
                "--tasks",
            ),
            (
                ExperimentConfig {
                    batch_size: 0,
                    ..base.clone()
                },
                "--batch-size",
            ),
            (
                ExperimentConfig {
                    samples_per_task: 0,
                    ..base.clone()
                },
                "--samples-per-task",
            ),
            (
                ExperimentConfig {
                    epochs: 0,
                    ..base.clone()
                },
                "--epochs",
            ),
        ];
        for (config, option) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(option), "{err}");
        }
        for (lr, memories, margin, option) in [
            (-0.1, 256, 0.5, "--lr"),
            (0.0, 256, 0.5, "--lr"),
            (f64::NAN, 256, 0.5, "--lr"),
            (0.1, 0, 0.5, "--memories-per-task"),
            (0.1, 256, -1.0, "--margin"),
        ] {
            let method = MethodConfig::Gem(GemParams {
                learning_rate: lr,
                memories_per_task: memories,
                margin,
                eps: 1e-3,
            });
            let err = ExperimentConfig {
                method,
                ..base.clone()
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(err.contains(option), "{err}");
        }
    }
}
