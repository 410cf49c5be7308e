//! Typed run configuration: the paper's defaults per protocol, and validation.

use serde::{Deserialize, Serialize};

use crate::data::{DataSource, Preset, Protocol, Scenario};
use crate::error::{Error, Result};
use crate::model::{MlpConfig, ModelConfig, ResNetConfig};
use crate::optim::SgdConfig;

/// Which method to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    /// Fine-tune one network on the stream (no protection against forgetting).
    Single,
    /// One small network per task.
    Independent,
    /// A task-specific input layer, the rest shared.
    Multimodal,
    /// Elastic Weight Consolidation.
    Ewc,
    /// Incremental Classifier and Representation Learning (class-split benchmarks only).
    Icarl,
    /// Averaged GEM.
    Agem,
    /// Experience replay from a reservoir-sampled memory.
    Er,
    /// Gradient Episodic Memory.
    Gem,
}

impl MethodKind {
    /// Every method, in the order reports list them (GEM last).
    pub const ALL: [Self; 8] = [
        Self::Single,
        Self::Independent,
        Self::Multimodal,
        Self::Ewc,
        Self::Icarl,
        Self::Agem,
        Self::Er,
        Self::Gem,
    ];

    /// The command-line name.
    pub fn id(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Independent => "independent",
            Self::Multimodal => "multimodal",
            Self::Ewc => "ewc",
            Self::Icarl => "icarl",
            Self::Agem => "agem",
            Self::Er => "er",
            Self::Gem => "gem",
        }
    }

    /// Whether the method projects gradients (and so counts projected steps): GEM and A-GEM.
    pub fn projects_gradients(self) -> bool {
        matches!(self, Self::Gem | Self::Agem)
    }

    /// Whether the method can run under `scenario`: iCaRL needs classes split by task; the
    /// others run anywhere.
    pub fn applies_to(self, scenario: &Scenario) -> bool {
        self != Self::Icarl || scenario.per_task_heads()
    }

    /// Whether a suite runs the method on `preset`: every method that applies, except
    /// multimodal on CIFAR (a per-task input layer is the paper's MNIST baseline; its table
    /// has no CIFAR-100 entry).
    pub fn in_suite_of(self, preset: Preset) -> bool {
        self.applies_to(&preset.scenario())
            && !(self == Self::Multimodal && preset.protocol() == Protocol::Cifar)
    }

    /// The method of this command-line name.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.id() == id)
    }
}

/// Hyper-parameters of [`crate::method::Single`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SingleParams {
    /// SGD step size.
    pub learning_rate: f64,
}

/// Hyper-parameters of [`crate::method::Independent`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IndependentParams {
    /// SGD step size.
    pub learning_rate: f64,
    /// Start each task's network as a copy of the previous task's (the reference's
    /// `--finetune yes`).
    pub finetune: bool,
}

/// Hyper-parameters of [`crate::method::Multimodal`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MultimodalParams {
    /// SGD step size.
    pub learning_rate: f64,
}

/// Hyper-parameters of [`crate::method::Ewc`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EwcParams {
    /// SGD step size.
    pub learning_rate: f64,
    /// The Fisher information is estimated on each task's first `memories_per_task` examples.
    pub memories_per_task: usize,
    /// Penalty strength (lambda).
    pub strength: f64,
}

/// Hyper-parameters of [`crate::method::Icarl`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IcarlParams {
    /// SGD step size.
    pub learning_rate: f64,
    /// Total exemplars kept, shared equally by the classes seen so far.
    pub memory_size: usize,
    /// Weight of the distillation loss.
    pub strength: f64,
}

/// Hyper-parameters of [`crate::method::Agem`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AgemParams {
    /// SGD step size.
    pub learning_rate: f64,
    /// Episodic memory slots per task.
    pub memories_per_task: usize,
    /// Memories drawn (from all past tasks together) for each step's reference gradient.
    pub sample_size: usize,
}

/// Hyper-parameters of [`crate::method::Er`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErParams {
    /// SGD step size.
    pub learning_rate: f64,
    /// Memory budget per task: the reservoir holds `memories_per_task * tasks` examples.
    pub memories_per_task: usize,
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

/// `Default` for each method's hyper-parameters: the paper's values on MNIST Permutations
/// (gem-reference.md section 5), the one place they are written being
/// [`MethodConfig::paper`]; `check` validates them as [`MethodConfig::validate`] does.
macro_rules! paper_defaults {
    ($($params:ident => $variant:ident),* $(,)?) => {$(
        impl Default for $params {
            fn default() -> Self {
                match MethodConfig::paper(MethodKind::$variant, Protocol::Permutations) {
                    MethodConfig::$variant(p) => p,
                    _ => unreachable!("paper() gives the kind it is asked for"),
                }
            }
        }

        impl $params {
            /// Checks every value, naming the offending option.
            pub fn check(&self) -> Result<()> {
                MethodConfig::$variant(*self).validate()
            }
        }
    )*};
}

paper_defaults!(
    SingleParams => Single,
    IndependentParams => Independent,
    MultimodalParams => Multimodal,
    EwcParams => Ewc,
    IcarlParams => Icarl,
    AgemParams => Agem,
    ErParams => Er,
    GemParams => Gem,
);

/// A method and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum MethodConfig {
    /// See [`SingleParams`].
    Single(SingleParams),
    /// See [`IndependentParams`].
    Independent(IndependentParams),
    /// See [`MultimodalParams`].
    Multimodal(MultimodalParams),
    /// See [`EwcParams`].
    Ewc(EwcParams),
    /// See [`IcarlParams`].
    Icarl(IcarlParams),
    /// See [`AgemParams`].
    Agem(AgemParams),
    /// See [`ErParams`].
    Er(ErParams),
    /// See [`GemParams`].
    Gem(GemParams),
}

/// Hyper-parameters given by the user on top of the paper's defaults; each applies only to
/// the methods that have it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MethodOverrides {
    /// `--lr`: every method.
    pub learning_rate: Option<f64>,
    /// `--memories-per-task`: ewc, agem, er, gem.
    pub memories_per_task: Option<usize>,
    /// `--margin`: gem.
    pub margin: Option<f64>,
    /// `--strength`: ewc (lambda), icarl (distillation weight).
    pub strength: Option<f64>,
    /// `--sample-size`: agem.
    pub sample_size: Option<usize>,
    /// `--memory-size`: icarl.
    pub memory_size: Option<usize>,
    /// `--finetune`: independent.
    pub finetune: Option<bool>,
}

impl MethodConfig {
    /// The paper's hyper-parameters of `kind` under `protocol` (gem-reference.md section 5).
    /// Class splits of MNIST-sized data have no reference run; they take the MNIST
    /// Permutations values, and iCaRL (a CIFAR-100 baseline in the paper) keeps 1280
    /// exemplars, GEM's 256 per task over 5 tasks, with learning rate 0.1 and distillation
    /// weight 1. On CIFAR, A-GEM and ER (not in the paper) take GEM's learning rate and
    /// memory.
    pub fn paper(kind: MethodKind, protocol: Protocol) -> Self {
        let rotations = protocol == Protocol::Rotations;
        if protocol == Protocol::Cifar {
            return Self::paper_cifar(kind);
        }
        match kind {
            MethodKind::Single => Self::Single(SingleParams {
                learning_rate: if rotations { 0.003 } else { 0.03 },
            }),
            MethodKind::Independent => Self::Independent(IndependentParams {
                learning_rate: if rotations { 0.1 } else { 0.03 },
                finetune: true,
            }),
            MethodKind::Multimodal => Self::Multimodal(MultimodalParams { learning_rate: 0.1 }),
            MethodKind::Ewc => Self::Ewc(if rotations {
                EwcParams {
                    learning_rate: 0.01,
                    memories_per_task: 1000,
                    strength: 1000.0,
                }
            } else {
                EwcParams {
                    learning_rate: 0.1,
                    memories_per_task: 10,
                    strength: 3.0,
                }
            }),
            MethodKind::Icarl => Self::Icarl(IcarlParams {
                learning_rate: 0.1,
                memory_size: 1280,
                strength: 1.0,
            }),
            MethodKind::Agem => Self::Agem(AgemParams {
                learning_rate: 0.1,
                memories_per_task: 256,
                sample_size: 256,
            }),
            MethodKind::Er => Self::Er(ErParams {
                learning_rate: 0.1,
                memories_per_task: 256,
            }),
            MethodKind::Gem => Self::Gem(GemParams {
                learning_rate: 0.1,
                memories_per_task: 256,
                margin: 0.5,
                eps: 1e-3,
            }),
        }
    }

    /// The CIFAR-100 column of the paper's table.
    fn paper_cifar(kind: MethodKind) -> Self {
        let mnist = Self::paper(kind, Protocol::Permutations);
        match mnist {
            Self::Single(_) => Self::Single(SingleParams { learning_rate: 1.0 }),
            Self::Independent(p) => Self::Independent(IndependentParams {
                learning_rate: 0.3,
                ..p
            }),
            Self::Ewc(_) => Self::Ewc(EwcParams {
                learning_rate: 1.0,
                memories_per_task: 10,
                strength: 1.0,
            }),
            Self::Icarl(p) => Self::Icarl(IcarlParams {
                learning_rate: 1.0,
                ..p
            }),
            other => other,
        }
    }

    /// Which method this configures.
    pub fn kind(&self) -> MethodKind {
        match self {
            Self::Single(_) => MethodKind::Single,
            Self::Independent(_) => MethodKind::Independent,
            Self::Multimodal(_) => MethodKind::Multimodal,
            Self::Ewc(_) => MethodKind::Ewc,
            Self::Icarl(_) => MethodKind::Icarl,
            Self::Agem(_) => MethodKind::Agem,
            Self::Er(_) => MethodKind::Er,
            Self::Gem(_) => MethodKind::Gem,
        }
    }

    /// The SGD step size.
    pub fn learning_rate(&self) -> f64 {
        // The configuration is a small `Copy` value: read a copy through the one accessor.
        let mut copy = *self;
        *copy.learning_rate_mut()
    }

    fn learning_rate_mut(&mut self) -> &mut f64 {
        match self {
            Self::Single(p) => &mut p.learning_rate,
            Self::Independent(p) => &mut p.learning_rate,
            Self::Multimodal(p) => &mut p.learning_rate,
            Self::Ewc(p) => &mut p.learning_rate,
            Self::Icarl(p) => &mut p.learning_rate,
            Self::Agem(p) => &mut p.learning_rate,
            Self::Er(p) => &mut p.learning_rate,
            Self::Gem(p) => &mut p.learning_rate,
        }
    }

    /// Applies the user's `overrides`; an option the method does not have is an error that
    /// names the methods it applies to.
    pub fn apply(&mut self, overrides: &MethodOverrides) -> Result<()> {
        if let Some(lr) = overrides.learning_rate {
            *self.learning_rate_mut() = lr;
        }
        let name = self.kind().id();
        let refuse = |option: &'static str, methods: &str| {
            Err(invalid(
                option,
                format!("applies only to --method {methods}, not {name}"),
            ))
        };
        if let Some(m) = overrides.memories_per_task {
            match self {
                Self::Ewc(p) => p.memories_per_task = m,
                Self::Agem(p) => p.memories_per_task = m,
                Self::Er(p) => p.memories_per_task = m,
                Self::Gem(p) => p.memories_per_task = m,
                _ => return refuse("--memories-per-task", "ewc, agem, er or gem"),
            }
        }
        if let Some(margin) = overrides.margin {
            match self {
                Self::Gem(p) => p.margin = margin,
                _ => return refuse("--margin", "gem"),
            }
        }
        if let Some(strength) = overrides.strength {
            match self {
                Self::Ewc(p) => p.strength = strength,
                Self::Icarl(p) => p.strength = strength,
                _ => return refuse("--strength", "ewc or icarl"),
            }
        }
        if let Some(n) = overrides.sample_size {
            match self {
                Self::Agem(p) => p.sample_size = n,
                _ => return refuse("--sample-size", "agem"),
            }
        }
        if let Some(n) = overrides.memory_size {
            match self {
                Self::Icarl(p) => p.memory_size = n,
                _ => return refuse("--memory-size", "icarl"),
            }
        }
        if let Some(finetune) = overrides.finetune {
            match self {
                Self::Independent(p) => p.finetune = finetune,
                _ => return refuse("--finetune", "independent"),
            }
        }
        Ok(())
    }

    /// Checks every hyper-parameter, naming the offending option.
    pub fn validate(&self) -> Result<()> {
        positive_finite("--lr", self.learning_rate())?;
        let at_least_one = |option: &'static str, value: usize| {
            if value == 0 {
                Err(invalid(
                    option,
                    format!("{} needs at least 1", self.kind().id()),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Gem(p) => {
                at_least_one("--memories-per-task", p.memories_per_task)?;
                if !p.margin.is_finite() || p.margin < 0.0 {
                    return Err(invalid(
                        "--margin",
                        format!("must be finite and >= 0, got {}", p.margin),
                    ));
                }
                positive_finite("eps", p.eps)?;
            }
            Self::Ewc(p) => {
                at_least_one("--memories-per-task", p.memories_per_task)?;
                non_negative_finite("--strength", p.strength)?;
            }
            Self::Icarl(p) => {
                at_least_one("--memory-size", p.memory_size)?;
                non_negative_finite("--strength", p.strength)?;
            }
            Self::Agem(p) => {
                at_least_one("--memories-per-task", p.memories_per_task)?;
                at_least_one("--sample-size", p.sample_size)?;
            }
            Self::Er(p) => at_least_one("--memories-per-task", p.memories_per_task)?,
            Self::Single(_) | Self::Independent(_) | Self::Multimodal(_) => {}
        }
        Ok(())
    }
}

/// The most tasks a run takes (each holds its own transform, examples and evaluations; the
/// paper's streams have 20).
pub const MAX_TASKS: usize = 1000;
/// The most threads a run starts.
pub const MAX_THREADS: usize = 1024;

/// Everything that determines a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    /// The benchmark's name: a preset's (`mnist-permutations`), or the data set's and the
    /// scenario's for other data (`mydata-class-split`). Reports group runs by it.
    pub benchmark: String,
    /// Where the data set comes from.
    pub data: DataSource,
    /// How tasks are made from it.
    pub scenario: Scenario,
    /// Number of tasks.
    pub tasks: usize,
    /// Training examples drawn per task; `None`: all of each task's.
    pub samples_per_task: Option<usize>,
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
    pub model: ModelConfig,
    /// The method and its hyper-parameters.
    pub method: MethodConfig,
    /// Momentum and weight decay of the method's SGD; plain SGD (the paper's) is not
    /// written, so that plain runs' files read as before.
    #[serde(default, skip_serializing_if = "SgdConfig::is_plain")]
    pub optimizer: SgdConfig,
    /// Extra evaluations every this many mini-batches (besides the task ends); `None`: only
    /// at task ends.
    #[serde(default)]
    pub eval_every: Option<u64>,
}

impl ExperimentConfig {
    /// The settings of `preset`'s protocol for `method`: its tasks and examples per task
    /// (20 tasks of 1000 on the MNIST-sized permutations and rotations, 5 of 1000 on their
    /// class splits, all images of 20 tasks on CIFAR-100), one epoch, batch 10, seed 0, the
    /// paper's two hidden layers of 100 (the input and output sizes are the data set's, 784
    /// and 10 on MNIST); `threads` as given. CIFAR's folder is `cifar_dir`.
    pub fn preset(
        preset: Preset,
        method: MethodKind,
        threads: usize,
        cifar_dir: &std::path::Path,
    ) -> Self {
        let model = match preset {
            Preset::Cifar100 => ResNetConfig::paper(100).into(),
            Preset::Cifar10Split => ResNetConfig::paper(10).into(),
            _ => MlpConfig::default().into(),
        };
        Self {
            benchmark: preset.id().to_string(),
            data: preset.source(cifar_dir),
            scenario: preset.scenario(),
            tasks: preset.default_tasks(),
            samples_per_task: preset.default_samples_per_task(),
            shuffle_tasks: false,
            epochs: 1,
            batch_size: 10,
            seed: 0,
            threads,
            model,
            method: MethodConfig::paper(method, preset.protocol()),
            optimizer: SgdConfig::default(),
            eval_every: None,
        }
    }

    /// The settings for `method` on a data set of one's own (`data`, which `source` names)
    /// cut into tasks by `scenario`: the tasks the scenario makes by default (20 for
    /// permutations and rotations, classes / classes-per-task for a class split, the stated
    /// ones for given tasks), 1000 examples per task (at most all of them) for permutations
    /// and rotations and all of each task's otherwise, one epoch, batch 10, seed 0, the
    /// paper's MLP sized for the data, and the hyper-parameters of the paper's column for the
    /// scenario (rotations' for rotations, permutations' otherwise). `tasks`, when given,
    /// replaces the scenario's number of tasks.
    pub fn for_data(
        source: DataSource,
        data: &crate::data::Dataset,
        scenario: Scenario,
        tasks: Option<usize>,
        method: MethodKind,
        threads: usize,
    ) -> Result<Self> {
        let samples_per_task = match scenario {
            Scenario::Permutations | Scenario::Rotations => Some(1000.min(data.train().len())),
            Scenario::ClassSplit { .. } | Scenario::Given => None,
        };
        Ok(Self {
            benchmark: format!("{}-{}", source.name(), scenario.id()),
            data: source,
            tasks: match tasks {
                Some(tasks) => tasks,
                None => scenario.default_tasks(data)?,
            },
            scenario,
            samples_per_task,
            shuffle_tasks: false,
            epochs: 1,
            batch_size: 10,
            seed: 0,
            threads,
            model: MlpConfig::for_data(data.shape().features(), data.classes()).into(),
            method: MethodConfig::paper(method, Protocol::for_scenario(&scenario)),
            optimizer: SgdConfig::default(),
            eval_every: None,
        })
    }

    /// [`Self::preset`] for a vendored preset (the MNIST and Fashion-MNIST ones).
    pub fn paper(preset: Preset, method: MethodKind, threads: usize) -> Self {
        Self::preset(preset, method, threads, std::path::Path::new(""))
    }

    /// The preset this configuration's benchmark names, if any.
    pub fn preset_of(&self) -> Option<Preset> {
        self.benchmark.parse().ok()
    }

    /// Whether `other` describes the same experiment: every setting equal but the thread
    /// count, which does not change results.
    pub fn same_experiment(&self, other: &Self) -> bool {
        let mut a = self.clone();
        a.threads = other.threads;
        &a == other
    }

    /// Checks every option, naming the offending one.
    pub fn validate(&self) -> Result<()> {
        if self.samples_per_task == Some(0) {
            return Err(invalid("--samples-per-task", "must be at least 1"));
        }
        for (option, value) in [
            ("--tasks", self.tasks),
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--threads", self.threads),
        ] {
            if value == 0 {
                return Err(invalid(option, "must be at least 1"));
            }
        }
        for (option, value, most) in [
            ("--tasks", self.tasks, MAX_TASKS),
            ("--threads", self.threads, MAX_THREADS),
        ] {
            if value > most {
                return Err(invalid(
                    option,
                    format!("must be at most {most}, got {value}"),
                ));
            }
        }
        if self.eval_every == Some(0) {
            return Err(invalid("--eval-every", "must be at least 1"));
        }
        if !self.method.kind().applies_to(&self.scenario) {
            return Err(invalid(
                "--method",
                format!(
                    "{} needs a benchmark whose classes are split by task (a class-split \
                     scenario such as mnist-split), not {}",
                    self.method.kind().id(),
                    self.benchmark
                ),
            ));
        }
        self.optimizer.validate()?;
        self.model.check()?;
        self.method.validate()
    }
}

fn invalid(option: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        option,
        reason: reason.into(),
    }
}

fn non_negative_finite(option: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(invalid(
            option,
            format!("must be a finite number >= 0, got {value}"),
        ))
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
        let rot = ExperimentConfig::paper(Preset::MnistRotations, MethodKind::Single, 1);
        assert_eq!(rot.method.learning_rate(), 0.003);
        let perm = ExperimentConfig::paper(Preset::MnistPermutations, MethodKind::Single, 1);
        assert_eq!(perm.method.learning_rate(), 0.03);
        let gem = ExperimentConfig::paper(Preset::MnistPermutations, MethodKind::Gem, 1);
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
            (20, Some(1000), 10, 1)
        );
        gem.validate().unwrap();
        let cifar = ExperimentConfig::paper(Preset::Cifar100, MethodKind::Ewc, 1);
        assert_eq!(
            cifar.method,
            MethodConfig::Ewc(EwcParams {
                learning_rate: 1.0,
                memories_per_task: 10,
                strength: 1.0
            })
        );
        assert_eq!((cifar.tasks, cifar.samples_per_task), (20, None));
        assert_eq!(cifar.model, ModelConfig::ResNet(ResNetConfig::paper(100)));
        let split = ExperimentConfig::paper(Preset::Cifar10Split, MethodKind::Gem, 1);
        assert_eq!(split.model, ModelConfig::ResNet(ResNetConfig::paper(10)));
        assert_eq!(split.tasks, 5);
        assert!(!MethodKind::Multimodal.in_suite_of(Preset::Cifar100));
        assert!(MethodKind::Icarl.in_suite_of(Preset::FashionSplit));
        assert!(!MethodKind::Icarl.in_suite_of(Preset::FashionRotations));
    }

    #[test]
    fn rejects_impossible_values_naming_the_option() {
        let base = ExperimentConfig::paper(Preset::MnistPermutations, MethodKind::Gem, 1);
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
                    samples_per_task: Some(0),
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
            (
                ExperimentConfig {
                    tasks: usize::MAX,
                    ..base.clone()
                },
                "--tasks: must be at most 1000",
            ),
            (
                ExperimentConfig {
                    threads: usize::MAX,
                    ..base.clone()
                },
                "--threads: must be at most 1024",
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
