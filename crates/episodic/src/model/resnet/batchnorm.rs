//! 2-D batch normalisation as `torch.nn.BatchNorm2d` (eps 1e-5, momentum 0.1, affine) on
//! channel-major activations (`[channels][image][row][column]`): in training, each channel
//! is normalised with its batch mean and biased variance, and the running statistics move
//! towards the batch mean and the unbiased variance; at test, the running statistics
//! normalise.

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
    /// Normalises `z` (`channels` rows of `m` values) into `out`. In training (`tape`
    /// given) with batch statistics, which it returns as (mean, unbiased variance) per
    /// channel in `batch_stats` (`2 * channels`), keeping what the backward pass needs; at
    /// test with the running statistics `running` (means then variances, `vars_at` apart).
    pub fn forward(&self, params: &[f32], z: &[f32], m: usize, out: &mut [f32], mode: BnMode<'_>) {
        let c = self.channels;
        let (scale, shift) = params[self.scale..self.scale + 2 * c].split_at(c);
        match mode {
            BnMode::Train { tape, batch_stats } => {
                super::conv::grown(&mut tape.xhat, c * m);
                super::conv::grown(&mut tape.inv_std, c);
                for ch in 0..c {
                    let zs = &z[ch * m..(ch + 1) * m];
                    let mean = zs.iter().map(|&v| f64::from(v)).sum::<f64>() / m as f64;
                    let var = zs
                        .iter()
                        .map(|&v| {
                            let d = f64::from(v) - mean;
                            d * d
                        })
                        .sum::<f64>()
                        / m as f64;
                    let inv = 1.0 / (var + EPS).sqrt();
                    tape.inv_std[ch] = inv as f32;
                    batch_stats[ch] = mean as f32;
                    batch_stats[c + ch] = if m > 1 {
                        (var * m as f64 / (m - 1) as f64) as f32
                    } else {
                        var as f32
                    };
                    let (g, b) = (scale[ch], shift[ch]);
                    let xhat = &mut tape.xhat[ch * m..(ch + 1) * m];
                    let outs = &mut out[ch * m..(ch + 1) * m];
                    for ((x, o), &v) in xhat.iter_mut().zip(outs.iter_mut()).zip(zs) {
                        *x = ((f64::from(v) - mean) * inv) as f32;
                        *o = g * *x + b;
                    }
                }
            }
            BnMode::Test { running, vars_at } => {
                for ch in 0..c {
                    let mean = running[self.stat + ch];
                    let var = running[vars_at + self.stat + ch];
                    let inv = (1.0 / (f64::from(var) + EPS).sqrt()) as f32;
                    let (g, b) = (scale[ch] * inv, shift[ch]);
                    let zs = &z[ch * m..(ch + 1) * m];
                    for (o, &v) in out[ch * m..(ch + 1) * m].iter_mut().zip(zs) {
                        *o = g * (v - mean) + b;
                    }
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

    /// The backward pass of a training forward: the scale and shift gradients into
    /// `grad` (overwritten), the input gradient into `dz` (overwritten).
    pub fn backward(
        &self,
        params: &[f32],
        tape: &BnTape,
        dy: &[f32],
        m: usize,
        grad: &mut [f32],
        dz: &mut [f32],
    ) {
        let c = self.channels;
        let scale = &params[self.scale..self.scale + c];
        for ch in 0..c {
            let dys = &dy[ch * m..(ch + 1) * m];
            let xhat = &tape.xhat[ch * m..(ch + 1) * m];
            let (mut sum, mut dot) = (0.0f64, 0.0f64);
            for (&g, &x) in dys.iter().zip(xhat) {
                sum += f64::from(g);
                dot += f64::from(g) * f64::from(x);
            }
            grad[self.scale + ch] = dot as f32;
            grad[self.scale + c + ch] = sum as f32;
            let k = scale[ch] * tape.inv_std[ch];
            let (mean_dy, mean_dot) = ((sum / m as f64) as f32, (dot / m as f64) as f32);
            for ((d, &g), &x) in dz[ch * m..(ch + 1) * m].iter_mut().zip(dys).zip(xhat) {
                *d = k * (g - mean_dy - x * mean_dot);
            }
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
