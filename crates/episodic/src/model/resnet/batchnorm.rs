//! 2-D batch normalisation as `torch.nn.BatchNorm2d` (eps 1e-5, momentum 0.1, affine) on
//! activations with each pixel's channels contiguous (`[pixel][channel]`): in training, each channel
//! is normalised with its batch mean and biased variance, and the running statistics move
//! towards the batch mean and the unbiased variance; at test, the running statistics
//! normalise.

use multiversion::multiversion;

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
    /// Normalises `z` (`m` pixels of `channels` values) into `out`. In training (`tape`
    /// given) with batch statistics, which it returns as (mean, unbiased variance) per
    /// channel in `batch_stats` (`2 * channels`), keeping what the backward pass needs; at
    /// test with the running statistics `running` (means then variances, `vars_at` apart).
    pub fn forward(&self, params: &[f32], z: &[f32], m: usize, out: &mut [f32], mode: BnMode<'_>) {
        forward(self, params, z, m, out, mode);
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

    /// The backward pass of a training forward over `m` pixels: the scale and shift
    /// gradients into `grad` (overwritten), the input gradient into `dz` (overwritten).
    pub fn backward(
        &self,
        params: &[f32],
        tape: &BnTape,
        dy: &[f32],
        m: usize,
        grad: &mut [f32],
        dz: &mut [f32],
    ) {
        backward(self, params, tape, dy, m, grad, dz);
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

/// The body of [`BatchNorm::forward`], compiled for AVX2 + FMA too.
#[multiversion(targets("x86_64+avx2+fma"))]
fn forward<'a>(
    bn: &BatchNorm,
    params: &[f32],
    z: &[f32],
    m: usize,
    out: &mut [f32],
    mode: BnMode<'a>,
) {
    let c = bn.channels;
    let (scale, shift) = params[bn.scale..bn.scale + 2 * c].split_at(c);
    let (z, out) = (&z[..m * c], &mut out[..m * c]);
    match mode {
        BnMode::Train { tape, batch_stats } => {
            let mut mean = vec![0.0f64; c];
            for row in z.chunks_exact(c) {
                mean.iter_mut()
                    .zip(row)
                    .for_each(|(s, &v)| *s += f64::from(v));
            }
            mean.iter_mut().for_each(|s| *s /= m as f64);
            let mut var = vec![0.0f64; c];
            for row in z.chunks_exact(c) {
                for ((s, &v), &mu) in var.iter_mut().zip(row).zip(&mean) {
                    let d = f64::from(v) - mu;
                    *s += d * d;
                }
            }
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
            for ((x_row, o_row), z_row) in xhat
                .chunks_exact_mut(c)
                .zip(out.chunks_exact_mut(c))
                .zip(z.chunks_exact(c))
            {
                for ch in 0..c {
                    let x = (z_row[ch] - shifted[ch]) * inv_std[ch];
                    x_row[ch] = x;
                    o_row[ch] = scale[ch] * x + shift[ch];
                }
            }
        }
        BnMode::Test { running, vars_at } => {
            let mean = &running[bn.stat..bn.stat + c];
            let gain: Vec<f32> = (0..c)
                .map(|ch| {
                    let var = f64::from(running[vars_at + bn.stat + ch]);
                    scale[ch] * (1.0 / (var + EPS).sqrt()) as f32
                })
                .collect();
            for (o_row, z_row) in out.chunks_exact_mut(c).zip(z.chunks_exact(c)) {
                for ch in 0..c {
                    o_row[ch] = gain[ch] * (z_row[ch] - mean[ch]) + shift[ch];
                }
            }
        }
    }
}

/// The body of [`BatchNorm::backward`], compiled for AVX2 + FMA too.
#[multiversion(targets("x86_64+avx2+fma"))]
fn backward(
    bn: &BatchNorm,
    params: &[f32],
    tape: &BnTape,
    dy: &[f32],
    m: usize,
    grad: &mut [f32],
    dz: &mut [f32],
) {
    let c = bn.channels;
    let scale = &params[bn.scale..bn.scale + c];
    let (dy, xhat, dz) = (&dy[..m * c], &tape.xhat[..m * c], &mut dz[..m * c]);
    let (mut sum, mut dot) = (vec![0.0f64; c], vec![0.0f64; c]);
    for (g_row, x_row) in dy.chunks_exact(c).zip(xhat.chunks_exact(c)) {
        for ch in 0..c {
            sum[ch] += f64::from(g_row[ch]);
            dot[ch] += f64::from(g_row[ch]) * f64::from(x_row[ch]);
        }
    }
    let mut k = vec![0.0f32; c];
    let (mut mean_dy, mut mean_dot) = (vec![0.0f32; c], vec![0.0f32; c]);
    for ch in 0..c {
        grad[bn.scale + ch] = dot[ch] as f32;
        grad[bn.scale + c + ch] = sum[ch] as f32;
        k[ch] = scale[ch] * tape.inv_std[ch];
        mean_dy[ch] = (sum[ch] / m as f64) as f32;
        mean_dot[ch] = (dot[ch] / m as f64) as f32;
    }
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
