//! The transforms of one image's tiles, compiled for AVX-512 and AVX2 + FMA too and chosen at
//! run time (same bits: they only add): the data `B^T d B`, the output `A^T M A`, and their
//! transposes for the gradients. Each runs its first stage on whole rows of pixels where
//! tiles share them.

use multiversion::multiversion;
use rayon::prelude::*;

use super::lanes::{
    add_data_gradient_1d, add_data_gradient_rows, data_1d, filter_2d_lanes,
    filter_gradient_2d_lanes, four_mut, output_1d, output_gradient_1d, two_mut,
};
use super::{Conv, Planes, POSITIONS};

/// One image's share of [`Conv::input_tiles`]. The first stage (`B^T d`, down the
/// columns) runs on whole rows of the image, once per row of tiles: tiles side by side
/// share half their columns.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn input_tiles_image<'a>(
    conv: &Conv,
    image: &[f32],
    planes: &mut Planes<'a>,
    tmp: &mut [f32],
) {
    let c = conv.cin;
    let (row_len, padded) = (conv.win * c, conv.padded_row(c));
    let (zero, rows) = tmp.split_at_mut(row_len);
    let tiles_x = conv.tiles_x();
    for ty in 0..conv.tiles_y() {
        let row = |i: usize| -> &[f32] {
            match (2 * ty + i).checked_sub(1).filter(|&y| y < conv.hin) {
                Some(y) => &image[y * row_len..][..row_len],
                None => &zero[..],
            }
        };
        // `B^T d` of the four input rows under this row of tiles, one zero pixel left
        // of each (the padding) and zeros right of it.
        let [t0, t1, t2, t3] = four_mut(rows, padded);
        data_1d(
            [row(0), row(1), row(2), row(3)],
            [
                &mut t0[c..][..row_len],
                &mut t1[c..][..row_len],
                &mut t2[c..][..row_len],
                &mut t3[c..][..row_len],
            ],
        );
        let rows = [&*t0, &*t1, &*t2, &*t3];
        // `(B^T d) B` of each tile, row by row, into the planes.
        for tx in 0..tiles_x {
            let t = ty * tiles_x + tx;
            for (i, r) in rows.iter().enumerate() {
                let at = |j: usize| &r[(2 * tx + j) * c..][..c];
                let [a, b, cc, d] = quad(planes, i);
                data_1d(
                    [at(0), at(1), at(2), at(3)],
                    [
                        &mut a[t * c..][..c],
                        &mut b[t * c..][..c],
                        &mut cc[t * c..][..c],
                        &mut d[t * c..][..c],
                    ],
                );
            }
        }
    }
}

/// One image's share of [`Conv::output_tiles`]: image `j` of the chunk's planes `m`
/// (`plane_len` floats each) into `image`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn output_tiles_image(
    conv: &Conv,
    m: &[f32],
    plane_len: usize,
    j: usize,
    image: &mut [f32],
) {
    let (c, tiles) = (conv.cout, conv.tiles());
    let mut tmp = vec![0.0f32; 9 * c];
    let (tmp, spare) = tmp.split_at_mut(8 * c);
    for (t, (ty, tx)) in conv.tile_origins().enumerate() {
        let at = |xi: usize| &m[xi * plane_len + (j * tiles + t) * c..][..c];
        // A^T M, column by column, into tmp[j][r]...
        for col in 0..4 {
            let [r0, r1] = two_mut(&mut tmp[col * 2 * c..][..2 * c], c);
            output_1d([at(col), at(4 + col), at(8 + col), at(12 + col)], [r0, r1]);
        }
        // ...then (A^T M) A, row by row, into the output pixels inside the image.
        for r in 0..2 {
            let t4 = |col: usize| &tmp[(col * 2 + r) * c..][..c];
            let oy = 2 * ty + r;
            if oy >= conv.hout {
                continue;
            }
            let row = &mut image[(oy * conv.wout + 2 * tx) * c..];
            if 2 * tx + 1 < conv.wout {
                let [y0, y1] = two_mut(&mut row[..2 * c], c);
                output_1d([t4(0), t4(1), t4(2), t4(3)], [y0, y1]);
            } else {
                output_1d([t4(0), t4(1), t4(2), t4(3)], [&mut row[..c], spare]);
            }
        }
    }
}

/// One image's share of [`Conv::output_gradient_tiles`]: the output gradient `image`
/// into its rows of the planes.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn output_gradient_tiles_image<'a>(
    conv: &Conv,
    image: &[f32],
    planes: &mut Planes<'a>,
    tmp: &mut [f32],
) {
    let c = conv.cout;
    let (row_len, padded) = (conv.wout * c, 2 * conv.tiles_x() * c);
    let tiles_x = conv.tiles_x();
    let (zero, rows) = tmp.split_at_mut(row_len);
    for ty in 0..conv.tiles_y() {
        let row = |r: usize| -> &[f32] {
            let y = 2 * ty + r;
            if y < conv.hout {
                &image[y * row_len..][..row_len]
            } else {
                &zero[..]
            }
        };
        // `A dY` of this row of tiles' two output rows, on whole rows.
        let [s0, s1, s2, s3] = four_mut(rows, padded);
        output_gradient_1d(
            [row(0), row(1)],
            [
                &mut s0[..row_len],
                &mut s1[..row_len],
                &mut s2[..row_len],
                &mut s3[..row_len],
            ],
        );
        let rows = [&*s0, &*s1, &*s2, &*s3];
        // `(A dY) A^T` of each tile, row by row, into the planes.
        for tx in 0..tiles_x {
            let t = ty * tiles_x + tx;
            for (i, r) in rows.iter().enumerate() {
                let at = |s: usize| &r[(2 * tx + s) * c..][..c];
                let [a, b, cc, d] = quad(planes, i);
                output_gradient_1d(
                    [at(0), at(1)],
                    [
                        &mut a[t * c..][..c],
                        &mut b[t * c..][..c],
                        &mut cc[t * c..][..c],
                        &mut d[t * c..][..c],
                    ],
                );
            }
        }
    }
}

/// One image's share of [`Conv::input_gradient_tiles`]: image `j` of the chunk's planes
/// `dv` (`plane_len` floats each) added onto its input gradient `image`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn input_gradient_tiles_image(
    conv: &Conv,
    dv: &[f32],
    plane_len: usize,
    j: usize,
    image: &mut [f32],
) {
    let (c, tiles) = (conv.cin, conv.tiles());
    let (row_len, padded) = (conv.win * c, conv.padded_row(c));
    let tiles_x = conv.tiles_x();
    let mut rows = vec![0.0f32; 4 * padded];
    for ty in 0..conv.tiles_y() {
        // `dV B^T` of each tile, row by row, added onto the padded rows under this
        // row of tiles (tiles side by side overlap by two pixels).
        rows.fill(0.0);
        for tx in 0..tiles_x {
            let t = ty * tiles_x + tx;
            for (i, r) in rows.chunks_exact_mut(padded).enumerate() {
                let at = |col: usize| &dv[(i * 4 + col) * plane_len + (j * tiles + t) * c..][..c];
                let out = four_mut(&mut r[2 * tx * c..][..4 * c], c);
                add_data_gradient_1d([at(0), at(1), at(2), at(3)], out);
            }
        }
        // `B (dV B^T)` on whole rows, added onto the input rows inside the image
        // (the padding's columns dropped).
        let [q0, q1, q2, q3] = four_mut(&mut rows, padded);
        let (q0, q1, q2, q3) = (
            &q0[c..][..row_len],
            &q1[c..][..row_len],
            &q2[c..][..row_len],
            &q3[c..][..row_len],
        );
        let mut targets: [Option<&mut [f32]>; 4] = [None, None, None, None];
        let mut rest = &mut image[..];
        let mut at_row = 0;
        for (a, target) in targets.iter_mut().enumerate() {
            let Some(y) = (2 * ty + a).checked_sub(1).filter(|&y| y < conv.hin) else {
                continue;
            };
            let (_, tail) = std::mem::take(&mut rest).split_at_mut((y - at_row) * row_len);
            let (row, tail) = tail.split_at_mut(row_len);
            *target = Some(row);
            rest = tail;
            at_row = y + 1;
        }
        add_data_gradient_rows([q0, q1, q2, q3], targets);
    }
}

/// Input channels gathered per sweep over the kernels in [`filter_tiles`] and
/// [`filter_gradient_tiles`]: a sweep per channel reads the kernels 36 bytes at a time and
/// cost as much as the transforms themselves.
const GATHERED_CHANNELS: usize = 16;

/// `U = G g G^T` of every kernel of a `cin` to `cout` convolution (torch's
/// `[cout][cin][3][3]`) into `u` (`[16][cin][cout]`): the kernels of a few input channels
/// at a time gathered tap by tap (`[channel][9][cout]`), then each channel's transformed 16
/// output channels at a time.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn filter_tiles(cin: usize, cout: usize, torch: &[f32], u: &mut [f32]) {
    let group = GATHERED_CHANNELS.min(cin);
    let mut taps = vec![0.0f32; group * 9 * cout];
    let mut planes = u.chunks_exact_mut(cin * cout);
    let mut rows: [_; POSITIONS] =
        std::array::from_fn(|_| planes.next().expect("16 planes").chunks_exact_mut(cout));
    for ci0 in (0..cin).step_by(group) {
        let channels = group.min(cin - ci0);
        for (co, kernel) in torch.chunks_exact(cin * 9).enumerate() {
            let gathered = &kernel[ci0 * 9..][..channels * 9];
            for (j, &g) in gathered.iter().enumerate() {
                taps[j * cout + co] = g;
            }
        }
        for channel in taps.chunks_exact(9 * cout).take(channels) {
            let taps: [&[f32]; 9] = std::array::from_fn(|k| &channel[k * cout..][..cout]);
            let out = rows
                .each_mut()
                .map(|plane| plane.next().expect("a row per input channel"));
            filter_2d_lanes(taps, out);
        }
    }
}

/// The transpose of [`filter_tiles`]: `dg = G^T dU G` of every kernel, from `du`
/// (`[16][cin][cout]`) into `dst` (torch's `[cout][cin][3][3]`).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn filter_gradient_tiles(cin: usize, cout: usize, du: &[f32], dst: &mut [f32]) {
    let group = GATHERED_CHANNELS.min(cin);
    let mut taps = vec![0.0f32; group * 9 * cout];
    for ci0 in (0..cin).step_by(group) {
        let channels = group.min(cin - ci0);
        for (j, channel) in taps.chunks_exact_mut(9 * cout).take(channels).enumerate() {
            let ci = ci0 + j;
            let rows: [&[f32]; POSITIONS] =
                std::array::from_fn(|xi| &du[(xi * cin + ci) * cout..][..cout]);
            let mut chunks = channel.chunks_exact_mut(cout);
            let out: [&mut [f32]; 9] =
                std::array::from_fn(|_| chunks.next().expect("a row per tap"));
            filter_gradient_2d_lanes(rows, out);
        }
        for (co, kernel) in dst.chunks_exact_mut(cin * 9).enumerate() {
            let scattered = &mut kernel[ci0 * 9..][..channels * 9];
            for (j, g) in scattered.iter_mut().enumerate() {
                *g = taps[j * cout + co];
            }
        }
    }
}

/// Runs `one(image, planes, scratch)` for each of `images` images, where `planes` are that
/// image's rows (`per_image` floats) of the 16 position planes of `buf`, on up to `threads`
/// threads, each with `scratch` zeroed floats of its own.
pub(super) fn each_image<F>(
    buf: &mut [f32],
    per_image: usize,
    images: usize,
    threads: usize,
    scratch: usize,
    one: F,
) where
    F: Fn(usize, &mut Planes<'_>, &mut [f32]) + Sync,
{
    let buf = &mut buf[..POSITIONS * images * per_image];
    let mut planes: Vec<_> = buf
        .chunks_exact_mut(images * per_image)
        .map(|plane| plane.chunks_exact_mut(per_image))
        .collect();
    let mut by_image: Vec<Planes<'_>> = (0..images)
        .map(|_| std::array::from_fn(|xi| planes[xi].next().expect("one row per image")))
        .collect();
    if threads > 1 && images > 1 {
        by_image.par_iter_mut().enumerate().for_each_init(
            || vec![0.0f32; scratch],
            |tmp, (j, planes)| one(j, planes, tmp),
        );
    } else {
        let mut tmp = vec![0.0f32; scratch];
        for (j, planes) in by_image.iter_mut().enumerate() {
            one(j, planes, &mut tmp);
        }
    }
}

/// Planes `4i..4i + 4`: the positions of row `i` of the 4x4 tile.
#[inline(always)]
pub(super) fn quad<'p, 'a>(planes: &'p mut Planes<'a>, i: usize) -> &'p mut [&'a mut [f32]; 4] {
    (&mut planes[i * 4..i * 4 + 4])
        .try_into()
        .expect("four planes per row")
}
