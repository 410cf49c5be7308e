//! Which network a run trains, and the one factory that builds it.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Mlp, MlpConfig, Model, ResNet, ResNetConfig};
use crate::error::{Error, Result};

/// The network of a run: the paper's MLP (MNIST) or its reduced ResNet-18 (CIFAR).
///
/// Written as the network's own sizes (`{"input", "hidden", "classes"}` for the MLP, as
/// results files have always held; `{"nf", "blocks", "classes"}` for the ResNet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelConfig {
    /// A fully connected ReLU network.
    Mlp(MlpConfig),
    /// The reduced ResNet-18 on 3 x 32 x 32 images.
    ResNet(ResNetConfig),
}

impl Default for ModelConfig {
    /// The paper's MNIST network: 784-100-100-10.
    fn default() -> Self {
        Self::Mlp(MlpConfig::default())
    }
}

impl From<MlpConfig> for ModelConfig {
    fn from(config: MlpConfig) -> Self {
        Self::Mlp(config)
    }
}

impl From<ResNetConfig> for ModelConfig {
    fn from(config: ResNetConfig) -> Self {
        Self::ResNet(config)
    }
}

impl ModelConfig {
    /// The network, initialised from `rng`; matrix products use up to `threads` threads.
    pub fn build(&self, threads: usize, rng: &mut impl Rng) -> Result<Box<dyn Model>> {
        Ok(match self {
            Self::Mlp(c) => Box::new(Mlp::new(c, threads, rng)?),
            Self::ResNet(c) => Box::new(ResNet::new(c, threads, rng)?),
        })
    }

    /// Checks the sizes, naming what is wrong.
    pub fn check(&self) -> Result<()> {
        match self {
            Self::Mlp(c) => c.check(),
            Self::ResNet(c) => c.check(),
        }
    }

    /// A short name: `mlp` or `resnet`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::ResNet(_) => "resnet",
        }
    }

    /// Input features per example.
    pub fn input_dim(&self) -> usize {
        match self {
            Self::Mlp(c) => c.input,
            Self::ResNet(c) => c.input_dim(),
        }
    }

    /// The shape of one input, for messages (`784` or `3 x 32 x 32`).
    pub fn input_shape(&self) -> String {
        match self {
            Self::Mlp(c) => format!("{} features", c.input),
            Self::ResNet(c) => format!("3 x 32 x 32 images ({} values)", c.input_dim()),
        }
    }

    /// Output classes.
    pub fn classes(&self) -> usize {
        match self {
            Self::Mlp(c) => c.classes,
            Self::ResNet(c) => c.classes,
        }
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Mlp(c) => c.num_params(),
            Self::ResNet(c) => c.num_params(),
        }
    }

    /// Multiply-adds of one example's forward pass (for cost estimates).
    pub fn multiply_adds(&self) -> usize {
        match self {
            Self::Mlp(c) => c.num_params(),
            Self::ResNet(c) => c.multiply_adds(),
        }
    }

    /// Floats a training pass keeps per example (activations for the backward pass).
    pub fn activations_per_example(&self) -> usize {
        match self {
            Self::Mlp(c) => 2 * c.hidden.iter().sum::<usize>() + 2 * c.classes,
            Self::ResNet(c) => c.activations_per_example(),
        }
    }

    /// The same network for `classes` outputs.
    pub fn with_classes(&self, classes: usize) -> Self {
        match self {
            Self::Mlp(c) => Self::Mlp(MlpConfig {
                classes,
                ..c.clone()
            }),
            Self::ResNet(c) => Self::ResNet(ResNetConfig {
                classes,
                ..c.clone()
            }),
        }
    }

    /// The network of one of `tasks` independent per-task networks whose total size is
    /// about this one's: every hidden layer (the MLP) or the width `nf` (the ResNet) divided
    /// by `tasks`, at least 1 (the reference's `independent`: 784-5-5-10, and nf = 20 / 20 =
    /// 1, on 20 tasks).
    pub fn one_of(&self, tasks: usize) -> Self {
        let t = tasks.max(1);
        match self {
            Self::Mlp(c) => Self::Mlp(MlpConfig {
                hidden: c.hidden.iter().map(|&h| (h / t).max(1)).collect(),
                ..c.clone()
            }),
            Self::ResNet(c) => Self::ResNet(ResNetConfig {
                nf: (c.nf / t).max(1),
                ..c.clone()
            }),
        }
    }

    /// The MLP's sizes, for methods that only the MLP supports (`method` names them).
    pub fn mlp(&self, method: &str) -> Result<&MlpConfig> {
        match self {
            Self::Mlp(c) => Ok(c),
            Self::ResNet(_) => Err(Error::InvalidOption {
                option: "--method",
                reason: format!(
                    "{method} needs the MLP (its per-task input layer is a fully connected \
                     one), not the ResNet"
                ),
            }),
        }
    }

    /// Checks that data of `features` values per example and `classes` classes fit this
    /// network, naming both shapes when they do not.
    pub fn check_fits(
        &self,
        data_name: &str,
        features: usize,
        shape: &str,
        classes: usize,
    ) -> Result<()> {
        if features != self.input_dim() {
            return Err(Error::InvalidOption {
                option: "model",
                reason: format!(
                    "the {} reads {}; {data_name} has {shape} ({features} values)",
                    self.kind(),
                    self.input_shape()
                ),
            });
        }
        if classes != self.classes() {
            return Err(Error::InvalidOption {
                option: "model",
                reason: format!(
                    "the {} has {} outputs; {data_name} has {classes} classes",
                    self.kind(),
                    self.classes()
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mlp_is_written_as_results_files_have_always_held_it() {
        let mlp = ModelConfig::default();
        let json = serde_json::to_value(&mlp).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"input": 784, "hidden": [100, 100], "classes": 10})
        );
        let back: ModelConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, mlp);
        let resnet = ModelConfig::ResNet(ResNetConfig::paper(100));
        let json = serde_json::to_value(&resnet).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"nf": 20, "blocks": [2, 2, 2, 2], "classes": 100})
        );
        assert_eq!(serde_json::from_value::<ModelConfig>(json).unwrap(), resnet);
        assert!(serde_json::from_value::<ModelConfig>(serde_json::json!({"nf": 2})).is_err());
    }

    #[test]
    fn independent_networks_are_one_task_s_share_wide() {
        let resnet = ModelConfig::ResNet(ResNetConfig::paper(100));
        match resnet.one_of(20) {
            ModelConfig::ResNet(c) => assert_eq!(c.nf, 1),
            other => panic!("{other:?}"),
        }
        match ModelConfig::default().one_of(20) {
            ModelConfig::Mlp(c) => assert_eq!(c.hidden, vec![5, 5]),
            other => panic!("{other:?}"),
        }
        assert!(resnet.mlp("multimodal").is_err());
        let err = resnet
            .check_fits("mnist", 784, "1x28x28", 100)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 x 32 x 32") && err.contains("1x28x28"),
            "{err}"
        );
        assert!(resnet.check_fits("cifar100", 3072, "3x32x32", 100).is_ok());
    }
}
