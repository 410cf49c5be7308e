//! 2-D batch normalisation as `torch.nn.BatchNorm2d` (eps 1e-5, momentum 0.1, affine) on
//! activations with each pixel's channels contiguous (`[pixel][channel]`): in training, each channel
//! is normalised with its batch mean and biased variance, and the running statistics move
//! towards the batch mean and the unbiased variance; at test, the running statistics
//! normalise.

use rayon::prelude::*;

mod kernels;

use kernels::{
    add_pair_sums, add_sums_and_squares, affine, input_gradient, normalise, period, tiled,
    Centring, Normalising,
};

/// Pixels per chunk of a pass: sums are taken chunk by chunk and the chunks' sums added in
/// order, so results do not depend on the thread count; chunks run on every thread given.
const CHUNK_PIXELS: usize = 2048;

/// torch's default `eps`.
pub(super) const EPS: f64 = 1e-5;
/// torch's default `momentum`: the weight of a batch's statistics in the running ones.
pub(super) const MOMENTUM: f32 = 0.1;

/// One BatchNorm layer: its affine parameters and running statistics' places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BatchNorm {
    pub channels: usize,
    /// Offset of the scale (`channels`, then the shift, `channels`) in the parameters.
    pub scale: usize,
    /// Offset of the running means in the buffers; the running variances follow all
    /// layers' means, at `stat + vars_at`.
    pub stat: usize,
}

/// What a training pass keeps for the backward pass: the layer's input (its convolution's
/// output) and each channel's batch mean and inverse standard deviation, from which the
/// backward pass recomputes the normalised inputs bit for bit rather than keep them too.
#[derive(Debug, Clone, Default)]
pub(super) struct BnTape {
    pub z: Vec<f32>,
    pub stats: BnStats,
}

/// A training pass's batch mean and inverse standard deviation per channel, as it
/// normalised with them.
#[derive(Debug, Clone, Default)]
pub(super) struct BnStats {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// What the pass that applies a BatchNorm's affine map does to its result before writing
/// it: fusing the ReLU and the residual add into that pass saves a pass over the
/// activations each, and gives the same bits as separate passes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Then<'a> {
    /// Writes the affine map's result.
    Nothing,
    /// Writes `max(result, 0)`.
    Relu,
    /// Writes `max(result + residual, 0)`, `residual` laid out as the output.
    AddRelu(&'a [f32]),
}

impl<'a> Then<'a> {
    /// The same step on floats `range` of the output.
    fn part(self, range: std::ops::Range<usize>) -> Then<'a> {
        match self {
            Then::AddRelu(residual) => Then::AddRelu(&residual[range]),
            other => other,
        }
    }
}

/// Adds each channel's sum over the pixels of `z` (`channels` values each) onto
/// `acc[..channels]` and its sum of squares onto `acc[channels..]`, in float64: what a
/// training pass normalises with, gathered where `z` is formed ([`BnMode::Train`]'s `sums`).
pub(super) fn add_channel_sums(z: &[f32], channels: usize, acc: &mut [f64]) {
    add_sums_and_squares(z, period(channels), &mut acc[..2 * channels]);
}

impl BatchNorm {
    /// Normalises `z` (`m` pixels of `channels` values) into `out`, then `then`, on up to
    /// `threads` threads. In training with batch statistics, which it returns as (mean,
    /// unbiased variance) per channel in `batch_stats` (`2 * channels`), keeping in `stats`
    /// what the backward pass needs; at test with the running statistics `running` (means
    /// then variances, `vars_at` apart).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        params: &[f32],
        z: &[f32],
        m: usize,
        out: &mut [f32],
        mode: BnMode<'_>,
        then: Then<'_>,
        threads: usize,
    ) {
        let c = self.channels;
        let (scale, shift) = params[self.scale..self.scale + 2 * c].split_at(c);
        let (z, out) = (&z[..m * c], &mut out[..m * c]);
        let rows = CHUNK_PIXELS * c;
        match mode {
            BnMode::Train {
                stats,
                batch_stats,
                sums: gathered,
            } => {
                // One pass: each channel's sum and sum of squares, in float64, where the
                // centred sum of squares `sum z^2 - (sum z)^2 / m` keeps float32's precision
                // unless the mean exceeds the standard deviation some ten-thousandfold.
                let p = period(c);
                let sums = match gathered {
                    Some(sums) => sums[..2 * c].to_vec(),
                    None => chunk_sums(z.len(), rows, 2 * c, threads, |r, acc| {
                        add_sums_and_squares(&z[r], p, acc)
                    }),
                };
                let (sum, squares) = sums.split_at(c);
                let mean: Vec<f64> = sum.iter().map(|s| s / m as f64).collect();
                let var: Vec<f64> = (0..c)
                    .map(|ch| (squares[ch] - sum[ch] * mean[ch]).max(0.0))
                    .collect();
                let inv_std = super::conv::grown(&mut stats.inv_std, c);
                let shifted = super::conv::grown(&mut stats.mean, c);
                for ch in 0..c {
                    let biased = var[ch] / m as f64;
                    inv_std[ch] = (1.0 / (biased + EPS).sqrt()) as f32;
                    shifted[ch] = mean[ch] as f32;
                    batch_stats[ch] = mean[ch] as f32;
                    batch_stats[c + ch] = if m > 1 {
                        (var[ch] / (m - 1) as f64) as f32
                    } else {
                        biased as f32
                    };
                }
                let n = Normalising {
                    mean: tiled(shifted, p),
                    inv_std: tiled(inv_std, p),
                    scale: tiled(scale, p),
                    shift: tiled(shift, p),
                };
                in_chunks(out, z, rows, threads, |start, o, z| {
                    normalise(z, &n, then.part(start..start + o.len()), o);
                });
            }
            BnMode::Test { running, vars_at } => {
                let mean = &running[self.stat..self.stat + c];
                let gain: Vec<f32> = (0..c)
                    .map(|ch| {
                        let var = f64::from(running[vars_at + self.stat + ch]);
                        scale[ch] * (1.0 / (var + EPS).sqrt()) as f32
                    })
                    .collect();
                let p = period(c);
                let (mean, gain, shift) = (tiled(mean, p), tiled(&gain, p), tiled(shift, p));
                in_chunks(out, z, rows, threads, |start, o, z| {
                    affine(
                        z,
                        &mean,
                        &gain,
                        &shift,
                        then.part(start..start + o.len()),
                        o,
                    );
                });
            }
        }
    }

    /// Moves the running statistics (means then variances, `vars_at` apart) towards a
    /// training pass's `batch_stats`.
    pub fn update_running(&self, running: &mut [f32], vars_at: usize, batch_stats: &[f32]) {
        let c = self.channels;
        for ch in 0..c {
            let mean = &mut running[self.stat + ch];
            *mean = (1.0 - MOMENTUM) * *mean + MOMENTUM * batch_stats[ch];
            let var = &mut running[vars_at + self.stat + ch];
            *var = (1.0 - MOMENTUM) * *var + MOMENTUM * batch_stats[c + ch];
        }
    }

    /// The backward pass of a training forward over the `m` pixels of `tape`, on up to
    /// `threads` threads, given `dy`, the gradient of what the forward pass wrote: of the
    /// ReLU's output when `relu` (the forward's [`Then::Relu`]), of the affine map's
    /// otherwise. The scale and shift gradients go into `grad` (overwritten), the input
    /// gradient into `dz` (overwritten).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        params: &[f32],
        tape: &BnTape,
        dy: &[f32],
        relu: bool,
        m: usize,
        grad: &mut [f32],
        dz: &mut [f32],
        threads: usize,
    ) {
        let c = self.channels;
        let (scale, shift) = params[self.scale..self.scale + 2 * c].split_at(c);
        let (dy, z, dz) = (&dy[..m * c], &tape.z[..m * c], &mut dz[..m * c]);
        let p = period(c);
        let (mean, inv_std) = (
            tiled(&tape.stats.mean[..c], p),
            tiled(&tape.stats.inv_std[..c], p),
        );
        let (scale_t, shift_t) = (tiled(scale, p), tiled(shift, p));
        let gate = relu.then_some((&scale_t, &shift_t));
        let rows = CHUNK_PIXELS * c;
        // Each channel's sum of dy, then its sum of dy * xhat, side by side.
        let sums = chunk_sums(dy.len(), rows, 2 * c, threads, |r, acc| {
            add_pair_sums(&dy[r.clone()], &z[r], &mean, &inv_std, gate, acc)
        });
        let (sum, dot) = sums.split_at(c);
        let mut k = vec![0.0f32; c];
        let (mut mean_dy, mut mean_dot) = (vec![0.0f32; c], vec![0.0f32; c]);
        for ch in 0..c {
            grad[self.scale + ch] = dot[ch] as f32;
            grad[self.scale + c + ch] = sum[ch] as f32;
            k[ch] = scale[ch] * tape.stats.inv_std[ch];
            mean_dy[ch] = (sum[ch] / m as f64) as f32;
            mean_dot[ch] = (dot[ch] / m as f64) as f32;
        }
        let centring = Centring {
            mean,
            inv_std,
            mean_dy: tiled(&mean_dy, p),
            mean_dot: tiled(&mean_dot, p),
            k: tiled(&k, p),
        };
        in_chunks(dz, z, rows, threads, |start, d, z| {
            let dy = &dy[start..start + d.len()];
            input_gradient(dy, z, &centring, gate, d);
        });
    }
}

/// `one(start, out, z)` on the chunks of `rows` floats of `out` and of `z` (starting at
/// float `start`), on up to `threads` threads.
fn in_chunks<F>(out: &mut [f32], z: &[f32], rows: usize, threads: usize, one: F)
where
    F: Fn(usize, &mut [f32], &[f32]) + Sync,
{
    if threads > 1 {
        out.par_chunks_mut(rows)
            .zip(z.par_chunks(rows))
            .enumerate()
            .for_each(|(i, (o, z))| one(i * rows, o, z));
    } else {
        out.chunks_mut(rows)
            .zip(z.chunks(rows))
            .enumerate()
            .for_each(|(i, (o, z))| one(i * rows, o, z));
    }
}

/// How a BatchNorm pass normalises.
pub(super) enum BnMode<'a> {
    /// With the batch's statistics, written to `batch_stats` (means then unbiased
    /// variances), keeping `stats` for the backward pass.
    Train {
        stats: &'a mut BnStats,
        batch_stats: &'a mut [f32],
        /// Each channel's sum and sum of squares over the batch (sums, then squares) when
        /// the convolution before gathered them ([`add_channel_sums`]); else this pass
        /// takes them.
        sums: Option<&'a [f64]>,
    },
    /// With the running statistics `running` (means, then variances from `vars_at`).
    Test { running: &'a [f32], vars_at: usize },
}

/// `len` sums over `floats` floats, `add(range, acc)` chunk by chunk (`rows` floats each,
/// on up to `threads` threads), the chunks' sums added in order.
fn chunk_sums<F>(floats: usize, rows: usize, len: usize, threads: usize, add: F) -> Vec<f64>
where
    F: Fn(std::ops::Range<usize>, &mut [f64]) + Sync,
{
    let one = |start: usize| {
        let mut acc = vec![0.0f64; len];
        add(start..(start + rows).min(floats), &mut acc);
        acc
    };
    let starts = (0..floats).step_by(rows.max(1));
    let partial: Vec<Vec<f64>> = if threads > 1 {
        starts
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(one)
            .collect()
    } else {
        starts.map(one).collect()
    };
    let mut sum = vec![0.0f64; len];
    for p in partial {
        sum.iter_mut().zip(p).for_each(|(s, v)| *s += v);
    }
    sum
}
