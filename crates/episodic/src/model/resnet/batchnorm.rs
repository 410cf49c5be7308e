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
            BnMode::Train { stats, batch_stats } => {
                // One pass: each channel's sum and sum of squares, in float64, where the
                // centred sum of squares `sum z^2 - (sum z)^2 / m` keeps float32's precision
                // unless the mean exceeds the standard deviation some ten-thousandfold.
                let sums = chunk_sums(z.len(), rows, 2 * c, threads, |r, acc| {
                    add_sums_and_squares(&z[r], acc)
                });
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
                let (shifted, inv_std) = (&*shifted, &*inv_std);
                in_chunks(out, z, rows, threads, |start, o, z| {
                    let then = then.part(start..start + o.len());
                    normalise(z, shifted, inv_std, scale, shift, then, o);
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
                in_chunks(out, z, rows, threads, |start, o, z| {
                    affine(z, mean, &gain, shift, then.part(start..start + o.len()), o);
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
        let (mean, inv_std) = (&tape.stats.mean[..c], &tape.stats.inv_std[..c]);
        let gate = relu.then_some((scale, shift));
        let rows = CHUNK_PIXELS * c;
        // Each channel's sum of dy, then its sum of dy * xhat, side by side.
        let sums = chunk_sums(dy.len(), rows, 2 * c, threads, |r, acc| {
            add_pair_sums(&dy[r.clone()], &z[r], mean, inv_std, gate, acc)
        });
        let (sum, dot) = sums.split_at(c);
        let mut k = vec![0.0f32; c];
        let (mut mean_dy, mut mean_dot) = (vec![0.0f32; c], vec![0.0f32; c]);
        for ch in 0..c {
            grad[self.scale + ch] = dot[ch] as f32;
            grad[self.scale + c + ch] = sum[ch] as f32;
            k[ch] = scale[ch] * inv_std[ch];
            mean_dy[ch] = (sum[ch] / m as f64) as f32;
            mean_dot[ch] = (dot[ch] / m as f64) as f32;
        }
        let means = Centring {
            mean,
            inv_std,
            mean_dy: &mean_dy,
            mean_dot: &mean_dot,
        };
        in_chunks(dz, z, rows, threads, |start, d, z| {
            let dy = &dy[start..start + d.len()];
            input_gradient(dy, z, &means, gate, &k, d);
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

/// What the input gradient subtracts, per channel: the batch mean and inverse standard
/// deviation (to recompute `xhat`), and the means of `dy` and of `dy * xhat`.
struct Centring<'a> {
    mean: &'a [f32],
    inv_std: &'a [f32],
    mean_dy: &'a [f32],
    mean_dot: &'a [f32],
}

/// How a BatchNorm pass normalises.
pub(super) enum BnMode<'a> {
    /// With the batch's statistics, written to `batch_stats` (means then unbiased
    /// variances), keeping `stats` for the backward pass.
    Train {
        stats: &'a mut BnStats,
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

/// Adds each channel's values over the pixels of `z` onto `acc[..c]` and their squares onto
/// `acc[c..]`.
#[multiversion(targets("x86_64+avx2+fma"))]
fn add_sums_and_squares(z: &[f32], acc: &mut [f64]) {
    let c = acc.len() / 2;
    let (sum, squares) = acc.split_at_mut(c);
    for row in z.chunks_exact(c) {
        for ch in 0..c {
            let v = f64::from(row[ch]);
            sum[ch] += v;
            squares[ch] += v * v;
        }
    }
}

/// `out = then(scale * xhat + shift)` with `xhat = (z - mean) * inv_std`, pixel by pixel.
#[multiversion(targets("x86_64+avx2+fma"))]
fn normalise<'a>(
    z: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    scale: &[f32],
    shift: &[f32],
    then: Then<'a>,
    out: &mut [f32],
) {
    each_value(z, then, out, mean.len(), |ch, z| {
        let x = (z - mean[ch]) * inv_std[ch];
        scale[ch] * x + shift[ch]
    });
}

/// `out = then(gain * (z - mean) + shift)`, pixel by pixel.
#[multiversion(targets("x86_64+avx2+fma"))]
fn affine<'a>(
    z: &[f32],
    mean: &[f32],
    gain: &[f32],
    shift: &[f32],
    then: Then<'a>,
    out: &mut [f32],
) {
    each_value(z, then, out, mean.len(), |ch, z| {
        gain[ch] * (z - mean[ch]) + shift[ch]
    });
}

/// `out = then(f(channel, z))` for every value of `z` (`c` channels per pixel), one loop
/// per kind of `then` so that each vectorises.
#[inline(always)]
fn each_value(z: &[f32], then: Then<'_>, out: &mut [f32], c: usize, f: impl Fn(usize, f32) -> f32) {
    let pixels = out.chunks_exact_mut(c).zip(z.chunks_exact(c));
    match then {
        Then::Nothing => {
            for (o, z) in pixels {
                for ch in 0..c {
                    o[ch] = f(ch, z[ch]);
                }
            }
        }
        Then::Relu => {
            for (o, z) in pixels {
                for ch in 0..c {
                    o[ch] = f(ch, z[ch]).max(0.0);
                }
            }
        }
        Then::AddRelu(residual) => {
            for ((o, z), r) in pixels.zip(residual.chunks_exact(c)) {
                for ch in 0..c {
                    o[ch] = (f(ch, z[ch]) + r[ch]).max(0.0);
                }
            }
        }
    }
}

/// The gradient reaching the affine map's output `scale * x + shift` from `g`, the
/// gradient of what the forward pass wrote: `g` itself, or, after a ReLU (`RELU`), zero
/// where that output was not positive (as the ReLU's own backward pass, which tests its
/// output for `<= 0`).
#[inline(always)]
fn gated<const RELU: bool>(g: f32, x: f32, scale: f32, shift: f32) -> f32 {
    if !RELU || scale * x + shift > 0.0 {
        g
    } else {
        0.0
    }
}

/// The scale and shift a ReLU after the affine map gates the gradient with, if one does.
type Gate<'a> = Option<(&'a [f32], &'a [f32])>;

/// Adds each channel's sum of the gradient (into `acc[..c]`) and of the gradient times
/// `xhat` (into `acc[c..]`) over the pixels, `xhat` recomputed from `z` as the forward pass
/// computed it and the gradient [`gated`].
#[multiversion(targets("x86_64+avx2+fma"))]
fn add_pair_sums<'a>(
    dy: &[f32],
    z: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gate: Gate<'a>,
    acc: &mut [f64],
) {
    match gate {
        Some((scale, shift)) => pair_sums::<true>(dy, z, mean, inv_std, scale, shift, acc),
        None => pair_sums::<false>(dy, z, mean, inv_std, mean, mean, acc),
    }
}

/// [`add_pair_sums`] for one kind of gate.
#[inline(always)]
fn pair_sums<const RELU: bool>(
    dy: &[f32],
    z: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    scale: &[f32],
    shift: &[f32],
    acc: &mut [f64],
) {
    let c = acc.len() / 2;
    let (sum, dot) = acc.split_at_mut(c);
    let (mean, inv_std, scale, shift) = (&mean[..c], &inv_std[..c], &scale[..c], &shift[..c]);
    for (g_row, z_row) in dy.chunks_exact(c).zip(z.chunks_exact(c)) {
        for ch in 0..c {
            let x = (z_row[ch] - mean[ch]) * inv_std[ch];
            let g = gated::<RELU>(g_row[ch], x, scale[ch], shift[ch]);
            sum[ch] += f64::from(g);
            dot[ch] += f64::from(g) * f64::from(x);
        }
    }
}

/// `dz = k * (dy - mean_dy - xhat * mean_dot)`, pixel by pixel, `xhat` and the gradient as
/// in [`add_pair_sums`].
#[multiversion(targets("x86_64+avx2+fma"))]
fn input_gradient<'a, 'b>(
    dy: &[f32],
    z: &[f32],
    means: &Centring<'b>,
    gate: Gate<'a>,
    k: &[f32],
    dz: &mut [f32],
) {
    match gate {
        Some((scale, shift)) => input_gradient_gated::<true>(dy, z, means, scale, shift, k, dz),
        None => input_gradient_gated::<false>(dy, z, means, k, k, k, dz),
    }
}

/// [`input_gradient`] for one kind of gate.
#[inline(always)]
fn input_gradient_gated<const RELU: bool>(
    dy: &[f32],
    z: &[f32],
    means: &Centring<'_>,
    scale: &[f32],
    shift: &[f32],
    k: &[f32],
    dz: &mut [f32],
) {
    let c = k.len();
    let Centring {
        mean,
        inv_std,
        mean_dy,
        mean_dot,
    } = *means;
    let (mean, inv_std, mean_dy, mean_dot) =
        (&mean[..c], &inv_std[..c], &mean_dy[..c], &mean_dot[..c]);
    let (scale, shift) = (&scale[..c], &shift[..c]);
    for ((d_row, g_row), z_row) in dz
        .chunks_exact_mut(c)
        .zip(dy.chunks_exact(c))
        .zip(z.chunks_exact(c))
    {
        for ch in 0..c {
            let x = (z_row[ch] - mean[ch]) * inv_std[ch];
            let g = gated::<RELU>(g_row[ch], x, scale[ch], shift[ch]);
            d_row[ch] = k[ch] * (g - mean_dy[ch] - x * mean_dot[ch]);
        }
    }
}
