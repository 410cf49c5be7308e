//! 2-D batch normalisation as `torch.nn.BatchNorm2d` (eps 1e-5, momentum 0.1, affine) on
//! activations with each pixel's channels contiguous (`[pixel][channel]`): in training, each channel
//! is normalised with its batch mean and biased variance, and the running statistics move
//! towards the batch mean and the unbiased variance; at test, the running statistics
//! normalise.

use multiversion::multiversion;
use rayon::prelude::*;

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

/// What a training pass keeps for the backward pass: the normalised inputs and each
/// channel's inverse standard deviation.
#[derive(Debug, Clone, Default)]
pub(super) struct BnTape {
    pub xhat: Vec<f32>,
    pub inv_std: Vec<f32>,
}

impl BatchNorm {
    /// Normalises `z` (`m` pixels of `channels` values) into `out`, on up to `threads`
    /// threads. In training (`tape` given) with batch statistics, which it returns as
    /// (mean, unbiased variance) per channel in `batch_stats` (`2 * channels`), keeping what
    /// the backward pass needs; at test with the running statistics `running` (means then
    /// variances, `vars_at` apart).
    pub fn forward(
        &self,
        params: &[f32],
        z: &[f32],
        m: usize,
        out: &mut [f32],
        mode: BnMode<'_>,
        threads: usize,
    ) {
        let c = self.channels;
        let (scale, shift) = params[self.scale..self.scale + 2 * c].split_at(c);
        let (z, out) = (&z[..m * c], &mut out[..m * c]);
        let rows = CHUNK_PIXELS * c;
        match mode {
            BnMode::Train { tape, batch_stats } => {
                let sums = chunk_sums(z.len(), rows, c, threads, |r, acc| add_sums(&z[r], acc));
                let mean: Vec<f64> = sums.iter().map(|s| s / m as f64).collect();
                let var = chunk_sums(z.len(), rows, c, threads, |r, acc| {
                    add_centred_squares(&z[r], &mean, acc)
                });
                let inv_std = super::conv::grown(&mut tape.inv_std, c);
                let mut shifted = vec![0.0f32; c];
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
                let xhat = super::conv::grown(&mut tape.xhat, m * c);
                let inv_std = &*inv_std;
                let one = |((x, o), z): ((&mut [f32], &mut [f32]), &[f32])| {
                    normalise(z, &shifted, inv_std, scale, shift, x, o);
                };
                if threads > 1 {
                    xhat.par_chunks_mut(rows)
                        .zip(out.par_chunks_mut(rows))
                        .zip(z.par_chunks(rows))
                        .for_each(one);
                } else {
                    xhat.chunks_mut(rows)
                        .zip(out.chunks_mut(rows))
                        .zip(z.chunks(rows))
                        .for_each(one);
                }
            }
            BnMode::Test { running, vars_at } => {
                let mean = &running[self.stat..self.stat + c];
                let gain: Vec<f32> = (0..c)
                    .map(|ch| {
                        let var = f64::from(running[vars_at + self.stat + ch]);
                        scale[ch] * (1.0 / (var + EPS).sqrt()) as f32
                    })
                    .collect();
                let one = |(o, z): (&mut [f32], &[f32])| affine(z, mean, &gain, shift, o);
                if threads > 1 {
                    out.par_chunks_mut(rows)
                        .zip(z.par_chunks(rows))
                        .for_each(one);
                } else {
                    out.chunks_mut(rows).zip(z.chunks(rows)).for_each(one);
                }
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

    /// The backward pass of a training forward over `m` pixels, on up to `threads`
    /// threads: the scale and shift gradients into `grad` (overwritten), the input
    /// gradient into `dz` (overwritten).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        params: &[f32],
        tape: &BnTape,
        dy: &[f32],
        m: usize,
        grad: &mut [f32],
        dz: &mut [f32],
        threads: usize,
    ) {
        let c = self.channels;
        let scale = &params[self.scale..self.scale + c];
        let (dy, xhat, dz) = (&dy[..m * c], &tape.xhat[..m * c], &mut dz[..m * c]);
        let rows = CHUNK_PIXELS * c;
        // Each channel's sum of dy, then its sum of dy * xhat, side by side.
        let sums = chunk_sums(dy.len(), rows, 2 * c, threads, |r, acc| {
            add_pair_sums(&dy[r.clone()], &xhat[r], acc)
        });
        let (sum, dot) = sums.split_at(c);
        let mut k = vec![0.0f32; c];
        let (mut mean_dy, mut mean_dot) = (vec![0.0f32; c], vec![0.0f32; c]);
        for ch in 0..c {
            grad[self.scale + ch] = dot[ch] as f32;
            grad[self.scale + c + ch] = sum[ch] as f32;
            k[ch] = scale[ch] * tape.inv_std[ch];
            mean_dy[ch] = (sum[ch] / m as f64) as f32;
            mean_dot[ch] = (dot[ch] / m as f64) as f32;
        }
        let one = |((d, g), x): ((&mut [f32], &[f32]), &[f32])| {
            input_gradient(g, x, &k, &mean_dy, &mean_dot, d);
        };
        if threads > 1 {
            dz.par_chunks_mut(rows)
                .zip(dy.par_chunks(rows))
                .zip(xhat.par_chunks(rows))
                .for_each(one);
        } else {
            dz.chunks_mut(rows)
                .zip(dy.chunks(rows))
                .zip(xhat.chunks(rows))
                .for_each(one);
        }
    }
}

/// How a BatchNorm pass normalises.
pub(super) enum BnMode<'a> {
    /// With the batch's statistics, written to `batch_stats` (means then unbiased
    /// variances), keeping `tape` for the backward pass.
    Train {
        tape: &'a mut BnTape,
        batch_stats: &'a mut [f32],
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

/// Adds each channel's values over the pixels of `z` onto `acc`.
#[multiversion(targets("x86_64+avx2+fma"))]
fn add_sums(z: &[f32], acc: &mut [f64]) {
    for row in z.chunks_exact(acc.len()) {
        acc.iter_mut()
            .zip(row)
            .for_each(|(s, &v)| *s += f64::from(v));
    }
}

/// Adds each channel's squared deviations from `mean` over the pixels of `z` onto `acc`.
#[multiversion(targets("x86_64+avx2+fma"))]
fn add_centred_squares(z: &[f32], mean: &[f64], acc: &mut [f64]) {
    for row in z.chunks_exact(acc.len()) {
        for ((s, &v), &mu) in acc.iter_mut().zip(row).zip(mean) {
            let d = f64::from(v) - mu;
            *s += d * d;
        }
    }
}

/// `xhat = (z - mean) * inv_std` and `out = scale * xhat + shift`, pixel by pixel.
#[multiversion(targets("x86_64+avx2+fma"))]
fn normalise(
    z: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    scale: &[f32],
    shift: &[f32],
    xhat: &mut [f32],
    out: &mut [f32],
) {
    let c = mean.len();
    for ((x_row, o_row), z_row) in xhat
        .chunks_exact_mut(c)
        .zip(out.chunks_exact_mut(c))
        .zip(z.chunks_exact(c))
    {
        for ch in 0..c {
            let x = (z_row[ch] - mean[ch]) * inv_std[ch];
            x_row[ch] = x;
            o_row[ch] = scale[ch] * x + shift[ch];
        }
    }
}

/// `out = gain * (z - mean) + shift`, pixel by pixel.
#[multiversion(targets("x86_64+avx2+fma"))]
fn affine(z: &[f32], mean: &[f32], gain: &[f32], shift: &[f32], out: &mut [f32]) {
    let c = mean.len();
    for (o_row, z_row) in out.chunks_exact_mut(c).zip(z.chunks_exact(c)) {
        for ch in 0..c {
            o_row[ch] = gain[ch] * (z_row[ch] - mean[ch]) + shift[ch];
        }
    }
}

/// Adds each channel's sum of `dy` (into `acc[..c]`) and of `dy * xhat` (into
/// `acc[c..]`) over the pixels.
#[multiversion(targets("x86_64+avx2+fma"))]
fn add_pair_sums(dy: &[f32], xhat: &[f32], acc: &mut [f64]) {
    let c = acc.len() / 2;
    let (sum, dot) = acc.split_at_mut(c);
    for (g_row, x_row) in dy.chunks_exact(c).zip(xhat.chunks_exact(c)) {
        for ch in 0..c {
            sum[ch] += f64::from(g_row[ch]);
            dot[ch] += f64::from(g_row[ch]) * f64::from(x_row[ch]);
        }
    }
}

/// `dz = k * (dy - mean_dy - xhat * mean_dot)`, pixel by pixel.
#[multiversion(targets("x86_64+avx2+fma"))]
fn input_gradient(
    dy: &[f32],
    xhat: &[f32],
    k: &[f32],
    mean_dy: &[f32],
    mean_dot: &[f32],
    dz: &mut [f32],
) {
    let c = k.len();
    for ((d_row, g_row), x_row) in dz
        .chunks_exact_mut(c)
        .zip(dy.chunks_exact(c))
        .zip(xhat.chunks_exact(c))
    {
        for ch in 0..c {
            d_row[ch] = k[ch] * (g_row[ch] - mean_dy[ch] - x_row[ch] * mean_dot[ch]);
        }
    }
}
