//! The MLP's layer sizes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Layer sizes of an [`Mlp`](super::Mlp).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input features.
    pub input: usize,
    /// Widths of the hidden layers (each followed by a ReLU).
    pub hidden: Vec<usize>,
    /// Output classes.
    pub classes: usize,
}

impl Default for MlpConfig {
    /// The paper's MNIST network: 784-100-100-10.
    fn default() -> Self {
        Self {
            input: 784,
            hidden: vec![100, 100],
            classes: 10,
        }
    }
}

impl MlpConfig {
    /// The paper's two hidden layers of 100 between `input` features and `classes` outputs.
    pub fn for_data(input: usize, classes: usize) -> Self {
        Self {
            input,
            hidden: vec![100, 100],
            classes,
        }
    }

    /// All layer widths, input first.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.input];
        w.extend(&self.hidden);
        w.push(self.classes);
        w
    }

    /// Checks that no layer is empty, naming the first that is.
    pub fn check(&self) -> Result<()> {
        let widths = self.widths();
        match widths.iter().position(|&w| w == 0) {
            Some(pos) => Err(Error::InvalidOption {
                option: "model",
                reason: format!("layer {pos} of {widths:?} has width 0"),
            }),
            None => Ok(()),
        }
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.widths().windows(2).map(|w| w[1] * w[0] + w[1]).sum()
    }
}
