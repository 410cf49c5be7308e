//! The reduced ResNet-18's sizes: width, blocks per stage, classes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Image channels the network reads (RGB).
pub const CHANNELS: usize = 3;
/// Image side in pixels (the reference views each input as `3 x 32 x 32`).
pub const SIDE: usize = 32;

/// The GEM reference's reduced ResNet-18 (`model/common.py`): a 3x3 stem convolution of
/// `nf` channels, four stages of `blocks[s]` basic blocks of widths `nf`, `2nf`, `4nf`, `8nf`
/// (strides 1, 2, 2, 2), 4x4 average pooling and a linear layer `8nf -> classes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Width of the first stage (the reference's `nf`; 20 in the paper).
    pub nf: usize,
    /// Basic blocks per stage ([2, 2, 2, 2]: ResNet-18).
    pub blocks: [usize; 4],
    /// Output classes.
    pub classes: usize,
}

impl Default for ResNetConfig {
    /// The paper's: nf = 20, [2, 2, 2, 2], 100 classes.
    fn default() -> Self {
        Self::paper(100)
    }
}

impl ResNetConfig {
    /// The paper's network (nf = 20, [2, 2, 2, 2]) for `classes` classes.
    pub fn paper(classes: usize) -> Self {
        Self {
            nf: 20,
            blocks: [2, 2, 2, 2],
            classes,
        }
    }

    /// Input features per image: `3 * 32 * 32`.
    pub fn input_dim(&self) -> usize {
        CHANNELS * SIDE * SIDE
    }

    /// Checks the sizes, naming what is wrong.
    pub fn check(&self) -> Result<()> {
        let bad = |reason: String| Error::InvalidOption {
            option: "model",
            reason,
        };
        if self.nf == 0 || self.nf > 4096 {
            return Err(bad(format!(
                "the ResNet's width --nf must be 1 to 4096, got {}",
                self.nf
            )));
        }
        if self.blocks.iter().any(|&b| b == 0 || b > 64) {
            return Err(bad(format!(
                "the ResNet's stages need 1 to 64 blocks each, got {:?}",
                self.blocks
            )));
        }
        if self.classes == 0 {
            return Err(bad("the ResNet needs at least one class".into()));
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        let mut total = self.nf * CHANNELS * 9 + 2 * self.nf;
        let mut cin = self.nf;
        for (stage, &blocks) in self.blocks.iter().enumerate() {
            let planes = self.nf << stage;
            for b in 0..blocks {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                total += planes * cin * 9 + 2 * planes + planes * planes * 9 + 2 * planes;
                if stride != 1 || cin != planes {
                    total += planes * cin + 2 * planes;
                }
                cin = planes;
            }
        }
        total + self.classes * cin + self.classes
    }
}

impl ResNetConfig {
    /// The stages' (channels, side) after each block, and whether it has a shortcut
    /// convolution, in order.
    fn block_shapes(&self) -> Vec<(usize, usize, usize, bool)> {
        let (mut cin, mut side) = (self.nf, SIDE);
        let mut shapes = Vec::new();
        for (stage, &blocks) in self.blocks.iter().enumerate() {
            let planes = self.nf << stage;
            for b in 0..blocks {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let out_side = side / stride;
                shapes.push((cin, planes, out_side, stride != 1 || cin != planes));
                cin = planes;
                side = out_side;
            }
        }
        shapes
    }

    /// Multiply-adds of one image's forward pass (convolutions and the linear layer).
    pub fn multiply_adds(&self) -> usize {
        let mut total = CHANNELS * 9 * self.nf * SIDE * SIDE;
        for (cin, planes, side, shortcut) in self.block_shapes() {
            let area = side * side;
            total += (cin * 9 * planes + planes * 9 * planes) * area;
            if shortcut {
                total += cin * planes * area;
            }
        }
        total + 8 * self.nf * self.classes
    }

    /// Floats a training pass keeps per image: each block's normalised inputs, hidden and
    /// output maps, the stem's, and the input.
    pub fn activations_per_example(&self) -> usize {
        let mut total = CHANNELS * SIDE * SIDE + 2 * self.nf * SIDE * SIDE;
        for (_, planes, side, shortcut) in self.block_shapes() {
            total += planes * side * side * if shortcut { 5 } else { 4 };
        }
        total
    }
}
