//! The ResNet's forward pass: input to logits, in training mode (batch statistics kept for
//! the backward pass) or at test (running statistics).

use super::batchnorm::{BnMode, BnTape, Then};
use super::config::{CHANNELS, SIDE};
use super::conv::{grown, ConvWork};
use super::{BlockTape, ConvBn, ResNet};
use crate::linalg::{matmul, MatMut, MatRef};

impl ResNet {
    /// The forward pass over the `n` images `xs` (image-major, as the data sets hold
    /// them), in training mode (batch statistics, kept for the backward pass, and running
    /// statistics updated) or at test. Leaves the logits (`n x classes`) in the tape.
    pub(super) fn forward(&mut self, xs: &[f32], n: usize, train: bool) {
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
        // One convolution and its BatchNorm, then `then`: `x` -> `out`. In training the
        // convolution's output goes to the layer's tape, at test to the scratch `z`.
        #[allow(clippy::too_many_arguments)]
        fn conv_bn(
            unit: &ConvBn,
            params: &[f32],
            x: &[f32],
            n: usize,
            z: &mut Vec<f32>,
            work: &mut ConvWork,
            out: &mut Vec<f32>,
            then: Then<'_>,
            tape: &mut BnTape,
            batch_stats: &mut [f32],
            running: &[f32],
            vars_at: usize,
            train: bool,
            threads: usize,
        ) {
            let m = n * unit.conv.out_area();
            let len = unit.conv.cout * m;
            let z = grown(if train { &mut tape.z } else { z }, len);
            // In training the BatchNorm's sums, from the convolution's own pass where it can.
            let mut sums = vec![0.0f64; if train { 2 * unit.bn.channels } else { 0 }];
            let gathered = unit.conv.forward_gathering(
                params,
                x,
                n,
                z,
                work,
                threads,
                train.then_some(&mut sums[..]),
            );
            let out = grown(out, len);
            let mode = if train {
                let at = 2 * unit.bn.stat;
                BnMode::Train {
                    stats: &mut tape.stats,
                    batch_stats: &mut batch_stats[at..at + 2 * unit.bn.channels],
                    sums: gathered.then_some(&sums[..]),
                }
            } else {
                BnMode::Test { running, vars_at }
            };
            unit.bn.forward(params, z, m, out, mode, then, threads);
        }
        conv_bn(
            &self.stem,
            params,
            &t.input,
            n,
            &mut t.z,
            &mut t.conv,
            &mut t.stem_out,
            Then::Relu,
            &mut t.stem,
            &mut t.batch_stats,
            &self.running,
            vars_at,
            train,
            threads,
        );
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
                Then::Relu,
                &mut bt.first,
                &mut t.batch_stats,
                &self.running,
                vars_at,
                train,
                threads,
            );
            let len = block.second.conv.cout * n * block.second.conv.out_area();
            // The shortcut first, so that the second BatchNorm's pass adds it and applies
            // the block's ReLU.
            let residual: &[f32] = match &block.shortcut {
                Some(unit) => {
                    conv_bn(
                        unit,
                        params,
                        x,
                        n,
                        &mut t.z,
                        &mut t.conv,
                        &mut t.short_out,
                        Then::Nothing,
                        &mut bt.shortcut,
                        &mut t.batch_stats,
                        &self.running,
                        vars_at,
                        train,
                        threads,
                    );
                    &t.short_out[..len]
                }
                None => &x[..len],
            };
            conv_bn(
                &block.second,
                params,
                &bt.hidden,
                n,
                &mut t.z,
                &mut t.conv,
                &mut bt.out,
                Then::AddRelu(residual),
                &mut bt.second,
                &mut t.batch_stats,
                &self.running,
                vars_at,
                train,
                threads,
            );
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
    pub(super) fn apply_batch_stats(&mut self, stats: &[f32]) {
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
}
