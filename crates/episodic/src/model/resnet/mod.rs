//! The GEM reference's reduced ResNet-18 (its `model/common.py`) with flat parameters, its
//! convolutions' products on the `gemm` SGEMM kernel (the narrow Winograd products on our own
//! AVX-512 kernel in the `avx512` build, `linalg/narrow.rs`): the 3x3 stride-1 ones as
//! Winograd's F(2x2, 3x3) (`winograd/`), the rest as im2col (`conv.rs`).
//!
//! Parameters lie in torch's order (`net.parameters()`): the stem convolution, its
//! BatchNorm's scale and shift, then block by block `conv1`, `bn1`, `conv2`, `bn2` and, where
//! the shape changes, the shortcut's 1x1 convolution and BatchNorm, and last the linear
//! layer's weight (`classes x 8nf`, torch's layout) and bias. Convolution weights are
//! `[out][in][ky][kx]`, as torch's. Initialisation is torch's default: convolution and
//! linear weights uniform in +-1/sqrt(fan_in) (kaiming-uniform with a = sqrt(5)), the linear
//! bias uniform in +-1/sqrt(fan_in), BatchNorm scale 1 and shift 0.
//!
//! BatchNorm is as the reference uses it: every training pass ([`Model::loss_and_grad`]
//! and [`Model::loss_and_grad_with`]) normalises with the batch's statistics and moves the
//! running statistics (momentum 0.1); [`Model::logits`] normalises with the running ones.
//! The running statistics are the model's buffers ([`Model::buffers`]): outside the
//! gradient, inside checkpoints. Inputs are images of `3 x 32 x 32` values, channel-major
//! (the CIFAR files' order); inside, activations keep each pixel's channels contiguous
//! (`[image][row][column][channel]`), the layout the convolutions' products run fastest in.

use std::ops::Range;

use rand::Rng;

use super::{check_labels, cross_entropy, Model};
use crate::error::{Error, Result};

mod backward;
mod batchnorm;
mod config;
mod conv;
#[cfg(test)]
pub(crate) mod fixture;
mod forward;
#[cfg(test)]
mod tests;
mod winograd;

pub use config::ResNetConfig;

use batchnorm::{BatchNorm, BnTape};
use config::{CHANNELS, SIDE};
use conv::{Conv, ConvWork};

/// Images per pass of [`Model::logits`] (bounds the activations a large test set needs).
const TEST_CHUNK: usize = 128;

/// A convolution followed by its BatchNorm.
#[derive(Debug, Clone, Copy)]
struct ConvBn {
    conv: Conv,
    bn: BatchNorm,
}

/// A basic block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
#[derive(Debug, Clone, Copy)]
struct Block {
    first: ConvBn,
    second: ConvBn,
    /// The 1x1 convolution and BatchNorm where the shape changes; identity otherwise.
    shortcut: Option<ConvBn>,
}

/// What a training pass keeps of one block.
#[derive(Debug, Clone, Default)]
struct BlockTape {
    first: BnTape,
    /// `relu(bn1(conv1(x)))`.
    hidden: Vec<f32>,
    second: BnTape,
    shortcut: BnTape,
    /// The block's output.
    out: Vec<f32>,
}

/// Activations of the last pass and work buffers.
#[derive(Debug, Clone, Default)]
struct Tape {
    /// The input, pixel-major (`[image][row][column][channel]`).
    input: Vec<f32>,
    stem: BnTape,
    stem_out: Vec<f32>,
    blocks: Vec<BlockTape>,
    /// Pooled features, `[n][8nf]`.
    features: Vec<f32>,
    logits: Vec<f32>,
    dlogits: Vec<f32>,
    /// The pooled features' gradient.
    grad_features: Vec<f32>,
    /// A convolution's output before its BatchNorm at test (training passes keep each
    /// layer's in its tape).
    z: Vec<f32>,
    /// A block's shortcut output.
    short_out: Vec<f32>,
    /// The batch statistics of the last training pass (per layer: means, then variances).
    batch_stats: Vec<f32>,
    /// Backward buffers.
    grad_out: Vec<f32>,
    grad_in: Vec<f32>,
    grad_z: Vec<f32>,
    grad_hidden: Vec<f32>,
    conv: ConvWork,
}

/// The reduced ResNet-18 with flat parameters.
#[derive(Debug)]
pub struct ResNet {
    config: ResNetConfig,
    stem: ConvBn,
    blocks: Vec<Block>,
    /// Offsets of the linear layer's weight and bias.
    linear_weight: usize,
    linear_bias: usize,
    /// Width of the pooled features (`8nf`).
    features: usize,
    params: Vec<f32>,
    /// Running means of every BatchNorm, then their running variances.
    running: Vec<f32>,
    threads: usize,
    /// Whether training passes move the running statistics (see
    /// [`Model::set_buffer_updates`]).
    updates_buffers: bool,
    tape: Tape,
}

impl ResNet {
    /// The network `config` describes with torch's default initialisation drawn from
    /// `rng`; matrix products use up to `threads` threads of the current rayon pool.
    pub fn new(config: &ResNetConfig, threads: usize, rng: &mut impl Rng) -> Result<Self> {
        config.check()?;
        let mut params: Vec<f32> = Vec::with_capacity(config.num_params());
        let mut stat = 0usize;
        // Each layer's parameters in torch's order, drawn as torch's defaults.
        let mut conv = |params: &mut Vec<f32>, cin, cout, k, stride, pad, side| {
            let conv = Conv::new(cin, cout, k, stride, pad, side, side, params.len());
            let bound = (1.0 / conv.rows() as f64).sqrt() as f32;
            params.extend((0..conv.weight_len()).map(|_| rng.random_range(-bound..=bound)));
            conv
        };
        let mut bn = |params: &mut Vec<f32>, channels: usize| {
            let bn = BatchNorm {
                channels,
                scale: params.len(),
                stat,
            };
            params.extend(std::iter::repeat_n(1.0, channels));
            params.extend(std::iter::repeat_n(0.0, channels));
            stat += channels;
            bn
        };
        let nf = config.nf;
        let stem_conv = conv(&mut params, CHANNELS, nf, 3, 1, 1, SIDE);
        let stem = ConvBn {
            conv: stem_conv,
            bn: bn(&mut params, nf),
        };
        let (mut cin, mut side) = (nf, SIDE);
        let mut blocks = Vec::new();
        for (stage, &count) in config.blocks.iter().enumerate() {
            let planes = nf << stage;
            for b in 0..count {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                let c1 = conv(&mut params, cin, planes, 3, stride, 1, side);
                let first = ConvBn {
                    conv: c1,
                    bn: bn(&mut params, planes),
                };
                let out_side = c1.hout;
                let c2 = conv(&mut params, planes, planes, 3, 1, 1, out_side);
                let second = ConvBn {
                    conv: c2,
                    bn: bn(&mut params, planes),
                };
                let shortcut = (stride != 1 || cin != planes).then(|| {
                    let c = conv(&mut params, cin, planes, 1, stride, 0, side);
                    ConvBn {
                        conv: c,
                        bn: bn(&mut params, planes),
                    }
                });
                blocks.push(Block {
                    first,
                    second,
                    shortcut,
                });
                cin = planes;
                side = out_side;
            }
        }
        if side != 4 {
            return Err(Error::InvalidOption {
                option: "model",
                reason: format!("the ResNet's last stage is {side}x{side}, not 4x4"),
            });
        }
        let features = cin;
        let bound = (1.0 / features as f64).sqrt() as f32;
        let linear_weight = params.len();
        let draws = config.classes * features;
        params.extend((0..draws).map(|_| rng.random_range(-bound..=bound)));
        let linear_bias = params.len();
        params.extend((0..config.classes).map(|_| rng.random_range(-bound..=bound)));
        debug_assert_eq!(params.len(), config.num_params());
        let mut running = vec![0.0; stat];
        running.extend(std::iter::repeat_n(1.0, stat));
        Ok(Self {
            config: config.clone(),
            stem,
            blocks,
            linear_weight,
            linear_bias,
            features,
            params,
            running,
            threads: threads.max(1),
            updates_buffers: true,
            tape: Tape::default(),
        })
    }

    /// The sizes this network was built with.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// The BatchNorm channels, all layers together (the running means' length).
    fn bn_channels(&self) -> usize {
        self.running.len() / 2
    }

    /// Multiply-adds of one image's forward pass through the convolutions and the linear
    /// layer.
    pub fn macs_per_image(&self) -> usize {
        let convs = std::iter::once(self.stem.conv).chain(self.blocks.iter().flat_map(|b| {
            [
                Some(b.first.conv),
                Some(b.second.conv),
                b.shortcut.map(|s| s.conv),
            ]
            .into_iter()
            .flatten()
        }));
        convs.map(|c| c.macs_per_image()).sum::<usize>() + self.features * self.config.classes
    }

    /// Checks `xs` holds whole images.
    fn images(&self, xs: &[f32]) -> Result<usize> {
        let d = self.config.input_dim();
        if xs.is_empty() || xs.len() % d != 0 {
            return Err(Error::Shape {
                what: "ResNet inputs (whole images of 3 x 32 x 32 = 3072 values)",
                expected: d * (xs.len() / d).max(1),
                actual: xs.len(),
            });
        }
        Ok(xs.len() / d)
    }
}

impl Model for ResNet {
    fn num_params(&self) -> usize {
        self.params.len()
    }

    fn params(&self) -> &[f32] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    fn buffers(&self) -> &[f32] {
        &self.running
    }

    fn buffers_mut(&mut self) -> &mut [f32] {
        &mut self.running
    }

    fn pass_statistics(&self) -> &[f32] {
        let len = self.running.len();
        self.tape.batch_stats.get(..len).unwrap_or(&[])
    }

    fn apply_pass_statistics(&mut self, statistics: &[f32]) {
        if statistics.len() == self.running.len() {
            self.apply_batch_stats(statistics);
        }
    }

    fn set_buffer_updates(&mut self, on: bool) {
        self.updates_buffers = on;
    }

    fn input_dim(&self) -> usize {
        self.config.input_dim()
    }

    fn num_classes(&self) -> usize {
        self.config.classes
    }

    fn loss_and_grad(
        &mut self,
        xs: &[f32],
        ys: &[u32],
        head: Range<usize>,
        grad: &mut [f32],
    ) -> Result<f32> {
        let classes = self.config.classes;
        check_labels(ys, &head, classes)?;
        if xs.len() != ys.len() * self.config.input_dim() {
            return Err(Error::Shape {
                what: "ResNet inputs (one image of 3 x 32 x 32 values per label)",
                expected: ys.len() * self.config.input_dim(),
                actual: xs.len(),
            });
        }
        self.backprop(xs, grad, &mut |logits, dlogits| {
            cross_entropy(logits, classes, ys, head.clone(), dlogits)
        })
    }

    fn loss_and_grad_with(
        &mut self,
        xs: &[f32],
        grad: &mut [f32],
        objective: &mut dyn FnMut(&[f32], &mut [f32]) -> f64,
    ) -> Result<f32> {
        self.backprop(xs, grad, objective)
    }

    fn fork(&self) -> Box<dyn Model> {
        Box::new(Self {
            config: self.config.clone(),
            stem: self.stem,
            blocks: self.blocks.clone(),
            linear_weight: self.linear_weight,
            linear_bias: self.linear_bias,
            features: self.features,
            params: self.params.clone(),
            running: self.running.clone(),
            threads: self.threads,
            updates_buffers: self.updates_buffers,
            tape: Tape::default(),
        })
    }

    fn logits(&mut self, xs: &[f32], out: &mut [f32]) -> Result<()> {
        let n = self.images(xs)?;
        let classes = self.config.classes;
        if out.len() != n * classes {
            return Err(Error::Shape {
                what: "logits (one row of classes per image)",
                expected: n * classes,
                actual: out.len(),
            });
        }
        let d = self.config.input_dim();
        for (chunk, dst) in xs
            .chunks(TEST_CHUNK * d)
            .zip(out.chunks_mut(TEST_CHUNK * classes))
        {
            let m = chunk.len() / d;
            self.forward(chunk, m, false);
            dst.copy_from_slice(&self.tape.logits[..m * classes]);
        }
        Ok(())
    }
}
