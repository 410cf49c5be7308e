//! BatchNorm's passes over activations laid out `[pixel][channel]`, each over its floats as
//! one flat run: float `i` belongs to channel `i % c`, so the per-channel values repeat with
//! a period of `lcm(c, 16)` floats (80 for 20, 40 and 80 channels, 160 for 160), a whole
//! number of 16-float vectors. Each pass reads its per-channel values from copies laid out
//! over one period ([`Tiled`]) and runs in blocks of 16 floats, every lane in use whatever
//! `c`; a loop over each pixel's channels, as these passes were first written, leaves most
//! of 20 channels to its scalar remainder. Compiled for AVX-512 and AVX2 + FMA too, chosen
//! at run time: the element-wise passes give the same bits on each (each float's arithmetic
//! is the same), and the sums add in one order on each.
//!
//! The sums keep one float64 sum per place in the period and add the places of each channel
//! in order at the end: a channel's sum over a run is the same on every CPU, but for 20 or 40
//! channels not the same bits as one running sum per channel.

use std::ops::Range;

use multiversion::multiversion;

use super::Then;

/// Floats per block: one AVX-512 vector.
const LANES: usize = 16;

/// Per-channel values repeated over one period: block `b`, lane `l` holds the value of
/// channel `(b * 16 + l) % c`.
pub(super) type Tiled = Vec<[f32; LANES]>;

/// The period, in floats, of per-channel values over `c`-channel pixels: `lcm(c, 16)`.
pub(super) fn period(c: usize) -> usize {
    let (mut a, mut b) = (c.max(1), LANES);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    c.max(1) / a * LANES
}

/// `values` (one per channel) repeated over `period` floats.
pub(super) fn tiled(values: &[f32], period: usize) -> Tiled {
    (0..period / LANES)
        .map(|b| std::array::from_fn(|l| values[(b * LANES + l) % values.len()]))
        .collect()
}

/// The whole 16-float blocks of a `len`-float run, in order, as `(place, first float)`,
/// `place` the block's place in a period of `blocks` blocks; then [`Blocks::tail`]. (An
/// iterator rather than a function taking a closure: a closure would not be inlined into
/// the passes and so would run without their target features.)
struct Blocks {
    whole: usize,
    next: usize,
    place: usize,
    blocks: usize,
    len: usize,
}

impl Blocks {
    #[inline(always)]
    fn new(len: usize, blocks: usize) -> Self {
        Self {
            whole: len / LANES,
            next: 0,
            place: 0,
            blocks,
            len,
        }
    }

    /// The floats after the last whole block, and their block's place in the period.
    #[inline(always)]
    fn tail(&self) -> (usize, Range<usize>) {
        (self.place, self.whole * LANES..self.len)
    }
}

impl Iterator for Blocks {
    type Item = (usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.next == self.whole {
            return None;
        }
        let item = (self.place, self.next * LANES);
        self.next += 1;
        self.place = if self.place + 1 == self.blocks {
            0
        } else {
            self.place + 1
        };
        Some(item)
    }
}

/// The block of 16 floats of `v` from `start`.
#[inline(always)]
fn block(v: &[f32], start: usize) -> &[f32; LANES] {
    v[start..start + LANES].try_into().expect("16 floats")
}

/// The mutable block of 16 floats of `v` from `start`.
#[inline(always)]
fn block_mut(v: &mut [f32], start: usize) -> &mut [f32; LANES] {
    (&mut v[start..start + LANES])
        .try_into()
        .expect("16 floats")
}

/// Adds each channel's values over the pixels of `z` onto `acc[..c]` and their squares onto
/// `acc[c..]`, `period` as [`period`] gives it for `c`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn add_sums_and_squares(z: &[f32], period: usize, acc: &mut [f64]) {
    let places = period / LANES;
    // Each place's sum and sum of squares, side by side; each block works on copies (the
    // vectoriser leaves sums behind two references into the heap scalar).
    let mut sums = vec![[[0.0f64; LANES]; 2]; places];
    let mut blocks = Blocks::new(z.len(), places);
    for (b, start) in blocks.by_ref() {
        let (z, [mut s, mut q]) = (block(z, start), sums[b]);
        for l in 0..LANES {
            sum_and_square(z[l], &mut s[l], &mut q[l]);
        }
        sums[b] = [s, q];
    }
    let (b, tail) = blocks.tail();
    let [s, q] = &mut sums[b];
    for (l, &z) in z[tail].iter().enumerate() {
        sum_and_square(z, &mut s[l], &mut q[l]);
    }
    fold(&sums, acc);
}

/// Adds `z` onto `sum` and its square onto `square`, in float64. (The square of a float32
/// is exact in float64, so the fused multiply-add rounds as `square + z * z` does.)
#[inline(always)]
fn sum_and_square(z: f32, sum: &mut f64, square: &mut f64) {
    let v = f64::from(z);
    *sum += v;
    *square = v.mul_add(v, *square);
}

/// Adds each place's two sums onto its channel's (`acc[channel]`, `acc[c + channel]`),
/// places in order.
fn fold(places: &[[[f64; LANES]; 2]], acc: &mut [f64]) {
    let c = acc.len() / 2;
    let (first, second) = acc.split_at_mut(c);
    for (b, [s, q]) in places.iter().enumerate() {
        for l in 0..LANES {
            let ch = (b * LANES + l) % c;
            first[ch] += s[l];
            second[ch] += q[l];
        }
    }
}

/// The per-channel values a training pass normalises with, tiled: batch mean and inverse
/// standard deviation, then the affine map's scale and shift.
pub(super) struct Normalising {
    pub mean: Tiled,
    pub inv_std: Tiled,
    pub scale: Tiled,
    pub shift: Tiled,
}

/// `out = then(scale * xhat + shift)` with `xhat = (z - mean) * inv_std`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn normalise<'a>(z: &[f32], n: &Normalising, then: Then<'a>, out: &mut [f32]) {
    let Normalising {
        mean,
        inv_std,
        scale,
        shift,
    } = n;
    each_value(z, then, out, mean.len(), |b, l, z| {
        let x = (z - mean[b][l]) * inv_std[b][l];
        scale[b][l] * x + shift[b][l]
    });
}

/// `out = then(gain * (z - mean) + shift)`: the test pass, tiled values.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn affine<'a>(
    z: &[f32],
    mean: &Tiled,
    gain: &Tiled,
    shift: &Tiled,
    then: Then<'a>,
    out: &mut [f32],
) {
    each_value(z, then, out, mean.len(), |b, l, z| {
        gain[b][l] * (z - mean[b][l]) + shift[b][l]
    });
}

/// `out = then(f(place, lane, z))` for every value of `z`, one loop per kind of `then` so
/// that each vectorises.
#[inline(always)]
fn each_value(
    z: &[f32],
    then: Then<'_>,
    out: &mut [f32],
    places: usize,
    f: impl Fn(usize, usize, f32) -> f32,
) {
    let out = &mut out[..z.len()];
    let mut blocks = Blocks::new(z.len(), places);
    let (b, tail) = match then {
        Then::Nothing => {
            for (b, start) in blocks.by_ref() {
                let (o, z) = (block_mut(out, start), block(z, start));
                for l in 0..LANES {
                    o[l] = f(b, l, z[l]);
                }
            }
            blocks.tail()
        }
        Then::Relu => {
            for (b, start) in blocks.by_ref() {
                let (o, z) = (block_mut(out, start), block(z, start));
                for l in 0..LANES {
                    o[l] = f(b, l, z[l]).max(0.0);
                }
            }
            blocks.tail()
        }
        Then::AddRelu(residual) => {
            for (b, start) in blocks.by_ref() {
                let (o, z, r) = (
                    block_mut(out, start),
                    block(z, start),
                    block(residual, start),
                );
                for l in 0..LANES {
                    o[l] = (f(b, l, z[l]) + r[l]).max(0.0);
                }
            }
            blocks.tail()
        }
    };
    for (l, i) in tail.enumerate() {
        let y = f(b, l, z[i]);
        out[i] = match then {
            Then::Nothing => y,
            Then::Relu => y.max(0.0),
            Then::AddRelu(residual) => (y + residual[i]).max(0.0),
        };
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

/// The scale and shift (tiled) a ReLU after the affine map gates the gradient with, if one
/// does.
pub(super) type Gate<'a> = Option<(&'a Tiled, &'a Tiled)>;

/// Adds each channel's sum of the gradient (onto `acc[..c]`) and of the gradient times
/// `xhat` (onto `acc[c..]`) over the pixels, `xhat` recomputed from `z` as the forward pass
/// computed it and the gradient [`gated`].
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn add_pair_sums<'a>(
    dy: &[f32],
    z: &[f32],
    mean: &Tiled,
    inv_std: &Tiled,
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
    mean: &Tiled,
    inv_std: &Tiled,
    scale: &Tiled,
    shift: &Tiled,
    acc: &mut [f64],
) {
    let places = mean.len();
    // As in `add_sums_and_squares`: each place's two sums side by side, copied per block.
    let mut sums = vec![[[0.0f64; LANES]; 2]; places];
    let mut blocks = Blocks::new(z.len(), places);
    for (b, start) in blocks.by_ref() {
        let (g, z, [mut s, mut d]) = (block(dy, start), block(z, start), sums[b]);
        let (mean, inv_std, scale, shift) = (&mean[b], &inv_std[b], &scale[b], &shift[b]);
        for l in 0..LANES {
            let x = (z[l] - mean[l]) * inv_std[l];
            let g = gated::<RELU>(g[l], x, scale[l], shift[l]);
            pair_sum(g, x, &mut s[l], &mut d[l]);
        }
        sums[b] = [s, d];
    }
    let (b, tail) = blocks.tail();
    let [s, d] = &mut sums[b];
    for (l, i) in tail.enumerate() {
        let x = (z[i] - mean[b][l]) * inv_std[b][l];
        let g = gated::<RELU>(dy[i], x, scale[b][l], shift[b][l]);
        pair_sum(g, x, &mut s[l], &mut d[l]);
    }
    fold(&sums, acc);
}

/// Adds `g` onto `sum` and `g * x` onto `dot`, in float64. (The product of two float32 is
/// exact in float64, so the fused multiply-add rounds as `dot + g * x` does.)
#[inline(always)]
fn pair_sum(g: f32, x: f32, sum: &mut f64, dot: &mut f64) {
    *sum += f64::from(g);
    *dot = f64::from(g).mul_add(f64::from(x), *dot);
}

/// What the input gradient subtracts, tiled: the batch mean and inverse standard deviation
/// (to recompute `xhat`), the means of `dy` and of `dy * xhat`, and `k = scale * inv_std`.
pub(super) struct Centring {
    pub mean: Tiled,
    pub inv_std: Tiled,
    pub mean_dy: Tiled,
    pub mean_dot: Tiled,
    pub k: Tiled,
}

/// `dz = k * (dy - mean_dy - xhat * mean_dot)`, `xhat` and the gradient as in
/// [`add_pair_sums`].
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn input_gradient<'a>(
    dy: &[f32],
    z: &[f32],
    centring: &Centring,
    gate: Gate<'a>,
    dz: &mut [f32],
) {
    match gate {
        Some((scale, shift)) => input_gradient_gated::<true>(dy, z, centring, scale, shift, dz),
        None => {
            let k = &centring.k;
            input_gradient_gated::<false>(dy, z, centring, k, k, dz)
        }
    }
}

/// [`input_gradient`] for one kind of gate.
#[inline(always)]
fn input_gradient_gated<const RELU: bool>(
    dy: &[f32],
    z: &[f32],
    centring: &Centring,
    scale: &Tiled,
    shift: &Tiled,
    dz: &mut [f32],
) {
    let Centring {
        mean,
        inv_std,
        mean_dy,
        mean_dot,
        k,
    } = centring;
    let mut blocks = Blocks::new(z.len(), mean.len());
    for (b, start) in blocks.by_ref() {
        let (d, g, z) = (block_mut(dz, start), block(dy, start), block(z, start));
        let (mean, inv_std, mean_dy, mean_dot, k) =
            (&mean[b], &inv_std[b], &mean_dy[b], &mean_dot[b], &k[b]);
        let (scale, shift) = (&scale[b], &shift[b]);
        for l in 0..LANES {
            let x = (z[l] - mean[l]) * inv_std[l];
            let g = gated::<RELU>(g[l], x, scale[l], shift[l]);
            d[l] = k[l] * (g - mean_dy[l] - x * mean_dot[l]);
        }
    }
    let (b, tail) = blocks.tail();
    for (l, i) in tail.enumerate() {
        let x = (z[i] - mean[b][l]) * inv_std[b][l];
        let g = gated::<RELU>(dy[i], x, scale[b][l], shift[b][l]);
        dz[i] = k[b][l] * (g - mean_dy[b][l] - x * mean_dot[b][l]);
    }
}

#[cfg(test)]
mod tests;
