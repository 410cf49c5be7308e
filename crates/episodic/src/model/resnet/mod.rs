//! The GEM reference's reduced ResNet-18 (its `model/common.py`) with flat parameters, on
//! im2col convolutions over the `gemm` SGEMM kernel.
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
use crate::linalg::{matmul, MatMut, MatRef};

mod batchnorm;
mod config;
mod conv;
#[cfg(test)]
mod tests;

pub use config::ResNetConfig;

use batchnorm::{BatchNorm, BnMode, BnTape};
use config::{CHANNELS, SIDE};
use conv::{grown, Conv, ConvWork};

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
    /// A convolution's output before its BatchNorm; the shortcut's in a block.
    z: Vec<f32>,
    z_short: Vec<f32>,
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

    /// The forward pass over the `n` images `xs` (image-major, as the data sets hold
    /// them), in training mode (batch statistics, kept for the backward pass, and running
    /// statistics updated) or at test. Leaves the logits (`n x classes`) in the tape.
    fn forward(&mut self, xs: &[f32], n: usize, train: bool) {
        let threads = self.threads;
        let params = &self.params;
        let t = &mut self.tape;
        let area = SIDE * SIDE;
        let input = grown(&mut t.input, CHANNELS * n * area);
        for (image, pixels) in xs
            .chunks_exact(CHANNELS * area)
            .zip(input.chunks_exact_mut(CHANNELS * area))
        {
            for (p, pixel) in pixels.chunks_exact_mut(CHANNELS).enumerate() {
                for (c, v) in pixel.iter_mut().enumerate() {
                    *v = image[c * area + p];
                }
            }
        }
        grown(&mut t.batch_stats, self.running.len());
        t.blocks.resize(self.blocks.len(), BlockTape::default());
        let vars_at = self.running.len() / 2;
        // One convolution and its BatchNorm: `x` -> `out`.
        #[allow(clippy::too_many_arguments)]
        fn conv_bn(
            unit: &ConvBn,
            params: &[f32],
            x: &[f32],
            n: usize,
            z: &mut Vec<f32>,
            work: &mut ConvWork,
            out: &mut Vec<f32>,
            tape: &mut BnTape,
            batch_stats: &mut [f32],
            running: &[f32],
            vars_at: usize,
            train: bool,
            threads: usize,
        ) {
            let m = n * unit.conv.out_area();
            let len = unit.conv.cout * m;
            let z = grown(z, len);
            unit.conv.forward(params, x, n, z, work, threads);
            let out = grown(out, len);
            let mode = if train {
                let at = 2 * unit.bn.stat;
                BnMode::Train {
                    tape,
                    batch_stats: &mut batch_stats[at..at + 2 * unit.bn.channels],
                }
            } else {
                BnMode::Test { running, vars_at }
            };
            unit.bn.forward(params, z, m, out, mode);
        }
        conv_bn(
            &self.stem,
            params,
            &t.input,
            n,
            &mut t.z,
            &mut t.conv,
            &mut t.stem_out,
            &mut t.stem,
            &mut t.batch_stats,
            &self.running,
            vars_at,
            train,
            threads,
        );
        relu(&mut t.stem_out);
        for (b, block) in self.blocks.iter().enumerate() {
            let (done, rest) = t.blocks.split_at_mut(b);
            let bt = &mut rest[0];
            let x: &[f32] = if b == 0 {
                &t.stem_out
            } else {
                &done[b - 1].out
            };
            conv_bn(
                &block.first,
                params,
                x,
                n,
                &mut t.z,
                &mut t.conv,
                &mut bt.hidden,
                &mut bt.first,
                &mut t.batch_stats,
                &self.running,
                vars_at,
                train,
                threads,
            );
            relu(&mut bt.hidden);
            conv_bn(
                &block.second,
                params,
                &bt.hidden,
                n,
                &mut t.z,
                &mut t.conv,
                &mut bt.out,
                &mut bt.second,
                &mut t.batch_stats,
                &self.running,
                vars_at,
                train,
                threads,
            );
            let len = block.second.conv.cout * n * block.second.conv.out_area();
            match &block.shortcut {
                Some(unit) => {
                    conv_bn(
                        unit,
                        params,
                        x,
                        n,
                        &mut t.z_short,
                        &mut t.conv,
                        &mut t.short_out,
                        &mut bt.shortcut,
                        &mut t.batch_stats,
                        &self.running,
                        vars_at,
                        train,
                        threads,
                    );
                    for (o, &s) in bt.out[..len].iter_mut().zip(&t.short_out[..len]) {
                        *o += s;
                    }
                }
                None => {
                    for (o, &s) in bt.out[..len].iter_mut().zip(&x[..len]) {
                        *o += s;
                    }
                }
            }
            relu(&mut bt.out[..len]);
        }
        // 4x4 average pooling: one feature per image and channel.
        let last: &[f32] = match t.blocks.last() {
            Some(bt) => &bt.out,
            None => &t.stem_out,
        };
        let c = self.features;
        let features = grown(&mut t.features, c * n);
        for (f, window) in features.chunks_exact_mut(c).zip(last.chunks_exact(16 * c)) {
            f.fill(0.0);
            for pixel in window.chunks_exact(c) {
                f.iter_mut().zip(pixel).for_each(|(s, &v)| *s += v);
            }
            f.iter_mut().for_each(|s| *s /= 16.0);
        }
        let classes = self.config.classes;
        let logits = grown(&mut t.logits, n * classes);
        for row in logits.chunks_exact_mut(classes) {
            row.copy_from_slice(&params[self.linear_bias..self.linear_bias + classes]);
        }
        matmul(
            MatMut::row_major(logits, n, classes),
            MatRef::row_major(&t.features, n, self.features),
            MatRef::row_major(
                &params[self.linear_weight..self.linear_bias],
                classes,
                self.features,
            )
            .t(),
            true,
            threads,
        );
        if train && self.updates_buffers {
            let stats = std::mem::take(&mut t.batch_stats);
            self.apply_batch_stats(&stats);
            self.tape.batch_stats = stats;
        }
    }

    /// Moves the running statistics towards `stats`, a training pass's batch statistics.
    fn apply_batch_stats(&mut self, stats: &[f32]) {
        let vars_at = self.bn_channels();
        let units = std::iter::once(self.stem).chain(self.blocks.iter().flat_map(|b| {
            [Some(b.first), Some(b.second), b.shortcut]
                .into_iter()
                .flatten()
        }));
        for unit in units {
            let at = 2 * unit.bn.stat;
            unit.bn.update_running(
                &mut self.running,
                vars_at,
                &stats[at..at + 2 * unit.bn.channels],
            );
        }
    }

    /// The backward pass of the last training forward over `n` images, from the logits'
    /// gradient in the tape: every parameter's gradient into `grad` (overwritten).
    fn backward(&mut self, n: usize, grad: &mut [f32]) {
        let threads = self.threads;
        let params = &self.params;
        let t = &mut self.tape;
        let classes = self.config.classes;
        let (lw, lb) = (self.linear_weight, self.linear_bias);
        let dlogits = &t.dlogits[..n * classes];
        matmul(
            MatMut::row_major(&mut grad[lw..lb], classes, self.features),
            MatRef::row_major(dlogits, n, classes).t(),
            MatRef::row_major(&t.features, n, self.features),
            false,
            threads,
        );
        for (k, g) in grad[lb..lb + classes].iter_mut().enumerate() {
            *g = dlogits.iter().skip(k).step_by(classes).sum();
        }
        let c = self.features;
        let mut dfeatures = vec![0.0; c * n];
        matmul(
            MatMut::row_major(&mut dfeatures, n, c),
            MatRef::row_major(dlogits, n, classes),
            MatRef::row_major(&params[lw..lb], classes, c),
            false,
            threads,
        );
        // The pooling's gradient: each of the 16 positions gets a sixteenth.
        let g_out = grown(&mut t.grad_out, c * n * 16);
        for (window, d) in g_out
            .chunks_exact_mut(16 * c)
            .zip(dfeatures.chunks_exact(c))
        {
            for pixel in window.chunks_exact_mut(c) {
                pixel.iter_mut().zip(d).for_each(|(g, &v)| *g = v / 16.0);
            }
        }
        for (b, block) in self.blocks.iter().enumerate().rev() {
            let bt = &t.blocks[b];
            let x: &[f32] = if b == 0 {
                &t.stem_out
            } else {
                &t.blocks[b - 1].out
            };
            let out_len = block.second.conv.cout * n * block.second.conv.out_area();
            let in_len = block.first.conv.cin * n * block.first.conv.in_area();
            // Through the final ReLU.
            for (g, &o) in t.grad_out[..out_len].iter_mut().zip(&bt.out) {
                if o <= 0.0 {
                    *g = 0.0;
                }
            }
            let m2 = n * block.second.conv.out_area();
            let dz = grown(&mut t.grad_z, out_len);
            block
                .second
                .bn
                .backward(params, &bt.second, &t.grad_out[..out_len], m2, grad, dz);
            let hidden_len = block.first.conv.cout * n * block.first.conv.out_area();
            let dh = grown(&mut t.grad_hidden, hidden_len);
            dh.fill(0.0);
            block.second.conv.backward(
                params,
                &bt.hidden,
                dz,
                n,
                grad,
                Some(dh),
                &mut t.conv,
                threads,
            );
            for (g, &h) in dh.iter_mut().zip(&bt.hidden) {
                if h <= 0.0 {
                    *g = 0.0;
                }
            }
            let m1 = n * block.first.conv.out_area();
            let dz = grown(&mut t.grad_z, hidden_len);
            block.first.bn.backward(params, &bt.first, dh, m1, grad, dz);
            let din = grown(&mut t.grad_in, in_len);
            din.fill(0.0);
            block
                .first
                .conv
                .backward(params, x, dz, n, grad, Some(din), &mut t.conv, threads);
            match &block.shortcut {
                Some(unit) => {
                    let dz = grown(&mut t.grad_z, out_len);
                    unit.bn
                        .backward(params, &bt.shortcut, &t.grad_out[..out_len], m2, grad, dz);
                    unit.conv
                        .backward(params, x, dz, n, grad, Some(din), &mut t.conv, threads);
                }
                None => {
                    for (d, &g) in din.iter_mut().zip(&t.grad_out[..out_len]) {
                        *d += g;
                    }
                }
            }
            std::mem::swap(&mut t.grad_out, &mut t.grad_in);
        }
        // The stem: through its ReLU and BatchNorm to its convolution's weight.
        let len = self.stem.conv.cout * n * self.stem.conv.out_area();
        for (g, &o) in t.grad_out[..len].iter_mut().zip(&t.stem_out) {
            if o <= 0.0 {
                *g = 0.0;
            }
        }
        let dz = grown(&mut t.grad_z, len);
        let m = n * self.stem.conv.out_area();
        self.stem
            .bn
            .backward(params, &t.stem, &t.grad_out[..len], m, grad, dz);
        self.stem
            .conv
            .backward(params, &t.input, dz, n, grad, None, &mut t.conv, threads);
    }

    /// Forward in training mode, `objective` on the logits, backward.
    fn backprop(
        &mut self,
        xs: &[f32],
        grad: &mut [f32],
        objective: &mut dyn FnMut(&[f32], &mut [f32]) -> f64,
    ) -> Result<f32> {
        let n = self.images(xs)?;
        if grad.len() != self.params.len() {
            return Err(Error::Shape {
                what: "gradient (one entry per parameter)",
                expected: self.params.len(),
                actual: grad.len(),
            });
        }
        self.forward(xs, n, true);
        let classes = self.config.classes;
        let mut dlogits = std::mem::take(&mut self.tape.dlogits);
        dlogits.resize(n * classes, 0.0);
        let loss = objective(&self.tape.logits[..n * classes], &mut dlogits);
        self.tape.dlogits = dlogits;
        self.backward(n, grad);
        Ok(loss as f32)
    }
}

fn relu(xs: &mut [f32]) {
    xs.iter_mut().for_each(|v| *v = v.max(0.0));
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
