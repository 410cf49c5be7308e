//! The 3x3, stride-1, padding-1 convolutions as Winograd's minimal filtering F(2x2, 3x3)
//! (Lavin and Gray, "Fast algorithms for convolutional neural networks", 2016), forward and
//! both gradients, on pixel-major activations (`[image][row][column][channel]`).
//!
//! Each 2x2 block of outputs is `A^T [(G g G^T) . (B^T d B)] A`, where `d` is the 4x4 input
//! patch under it and `g` the 3x3 kernel: 16 multiplications per block and channel pair
//! instead of im2col's 36. Over a batch, the element-wise products become 16 independent
//! matrix products, one per position of the 4x4 tile:
//! `M[xi] (tiles x cout) = V[xi] (tiles x cin) * U[xi] (cin x cout)`.
//! The gradients are products of the same shapes: `dU[xi] = V[xi]^T * dM[xi]` and
//! `dV[xi] = dM[xi] * U[xi]^T`, where `dM = A dY A^T`; then `dg = G^T dU G` and
//! `dd = B dV B^T`, added onto the input's gradient tile by tile. The transformed tiles are
//! kept position-major (`[16][tiles][channels]`), so each product reads and writes
//! contiguous rows: measured on this project's machine, `gemm` runs these products 1.5 to
//! 6 times slower when the rows are interleaved by position.
//!
//! The transforms run image by image, on every thread given; each product's reduction runs
//! in one order whatever the thread count, so results do not depend on it.

use rayon::prelude::*;

use super::batchnorm::add_channel_sums;
use super::conv::{grown, Conv, ConvWork, Start};
use crate::linalg::{matmul, narrow_kernel, narrow_matmul, MatMut, MatRef};

mod lanes;
#[cfg(test)]
mod tests;
mod tiles;

use tiles::{
    each_image, filter_gradient_tiles, filter_tiles, input_gradient_tiles_image, input_tiles_image,
    output_gradient_tiles_image, output_tiles_image,
};

/// Positions of a transformed 4x4 tile.
const POSITIONS: usize = 16;

/// Tiles per chunk of images (at least): a chunk's transformed tiles stay near the caches
/// (0.3 to 2.6 MiB per buffer for the paper's ResNet). Measured on this project's machine at
/// 1 thread, batch 256: 64 to 512 tiles run alike, whole batches 20% slower. The number of
/// images per chunk depends on the shape alone, never on the thread count.
const CHUNK_TILES: usize = 256;

/// Channels up to which the products with that many columns run on
/// [`narrow_matmul`] where its kernel runs (the first two stages at nf = 20): measured on the
/// AVX-512 machine, 1.4 to 1.8 times `gemm`'s speed on 20 and 40 columns, no faster from 80
/// on (`linalg/narrow.rs`).
const NARROW_COLUMNS: usize = 64;

/// `dst (rows x cols) (+)= lhs * rhs` for one position, on the calling thread: on
/// [`narrow_matmul`] when `narrow`, on `gemm` otherwise.
fn position_product(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    narrow: bool,
) {
    if narrow {
        narrow_matmul(dst, lhs, rhs, accumulate);
    } else {
        matmul(dst, lhs, rhs, accumulate, 1);
    }
}

/// Whether products with `columns` columns run on [`narrow_matmul`].
fn narrow(columns: usize) -> bool {
    columns <= NARROW_COLUMNS && narrow_kernel()
}

/// The 16 position planes of one image's transformed tiles (`[tiles][channels]` each).
type Planes<'a> = [&'a mut [f32]; POSITIONS];

impl Conv {
    /// Whether this convolution has the shape F(2x2, 3x3) applies to.
    pub(super) fn winograd_applies(&self) -> bool {
        self.k == 3 && self.stride == 1 && self.pad == 1
    }

    /// Rows of 2x2 output tiles per image.
    fn tiles_y(&self) -> usize {
        self.hout.div_ceil(2)
    }

    /// Columns of 2x2 output tiles per image.
    fn tiles_x(&self) -> usize {
        self.wout.div_ceil(2)
    }

    /// 2x2 output tiles per image.
    fn tiles(&self) -> usize {
        self.tiles_y() * self.tiles_x()
    }

    /// `n` images in chunks of about [`CHUNK_TILES`] tiles: `(first, end, tiles)`, in order.
    fn image_chunks(&self, n: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let (per_image, chunk) = (self.tiles(), CHUNK_TILES.div_ceil(self.tiles()));
        (0..n).step_by(chunk).map(move |n0| {
            let n1 = (n0 + chunk).min(n);
            (n0, n1, (n1 - n0) * per_image)
        })
    }

    /// `out` (`[n][hout][wout][cout]`) = the convolution of `x` (`[n][hin][win][cin]`), and
    /// each output channel's sum and sum of squares added onto `sums` when given (as
    /// [`Conv::forward_gathering`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn winograd_forward(
        &self,
        params: &[f32],
        x: &[f32],
        n: usize,
        out: &mut [f32],
        work: &mut ConvWork,
        threads: usize,
        mut sums: Option<&mut [f64]>,
    ) {
        let (cin, cout) = (self.cin, self.cout);
        self.transformed_weight(
            &params[self.weight..][..self.weight_len()],
            &mut work.weight,
        );
        for (n0, n1, tiles) in self.image_chunks(n) {
            let v = self.input_tiles(x, n0, n1, &mut work.cols, threads);
            let m = grown(&mut work.dcols, POSITIONS * tiles * cout);
            let u = &work.weight;
            each_position(m, tiles * cout, threads, |xi, m| {
                position_product(
                    MatMut::row_major(m, tiles, cout),
                    MatRef::row_major(&v[xi * tiles * cin..], tiles, cin),
                    MatRef::row_major(&u[xi * cin * cout..], cin, cout),
                    false,
                    narrow(cout),
                );
            });
            self.output_tiles(m, n0, n1, out, sums.as_deref_mut(), threads);
        }
    }

    /// The gradients of [`Self::winograd_forward`] given `dout`: the weight's into `grad`
    /// at the weight's offset (overwritten, in torch's order), the input's added onto `dx`
    /// when it is wanted, each image set first to where `dx` says it starts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn winograd_backward(
        &self,
        params: &[f32],
        x: &[f32],
        dout: &[f32],
        n: usize,
        grad: &mut [f32],
        mut dx: Option<(&mut [f32], Start<'_>)>,
        work: &mut ConvWork,
        threads: usize,
    ) {
        let (cin, cout) = (self.cin, self.cout);
        let narrow_dv = narrow(cin);
        if dx.is_some() {
            self.transformed_weight(
                &params[self.weight..][..self.weight_len()],
                &mut work.weight,
            );
            if narrow_dv {
                // The narrow kernel reads its right operand by rows: U^T, position by position.
                let ut = grown(&mut work.weight_t, POSITIONS * cin * cout);
                for (u, ut) in work
                    .weight
                    .chunks_exact(cin * cout)
                    .zip(ut.chunks_exact_mut(cin * cout))
                {
                    for ci in 0..cin {
                        for co in 0..cout {
                            ut[co * cin + ci] = u[ci * cout + co];
                        }
                    }
                }
            }
        }
        grown(&mut work.dweight, POSITIONS * cin * cout);
        for (n0, n1, tiles) in self.image_chunks(n) {
            let v = self.input_tiles(x, n0, n1, &mut work.cols, threads);
            let dm = grown(&mut work.dcols, POSITIONS * tiles * cout);
            self.output_gradient_tiles(dout, n0, n1, dm, threads);
            let dm = &*dm;
            each_position(&mut work.dweight, cin * cout, threads, |xi, du| {
                position_product(
                    MatMut::row_major(du, cin, cout),
                    MatRef::row_major(&v[xi * tiles * cin..], tiles, cin).t(),
                    MatRef::row_major(&dm[xi * tiles * cout..], tiles, cout),
                    n0 > 0,
                    narrow(cout),
                );
            });
            if let Some((dx, start)) = dx.as_mut() {
                // The transformed inputs are spent: their buffer takes their gradient.
                let (u, ut) = (&work.weight, &work.weight_t);
                each_position(v, tiles * cin, threads, |xi, dv| {
                    let rhs = if narrow_dv {
                        MatRef::row_major(&ut[xi * cout * cin..], cout, cin)
                    } else {
                        MatRef::row_major(&u[xi * cin * cout..], cin, cout).t()
                    };
                    position_product(
                        MatMut::row_major(dv, tiles, cin),
                        MatRef::row_major(&dm[xi * tiles * cout..], tiles, cout),
                        rhs,
                        false,
                        narrow_dv,
                    );
                });
                self.input_gradient_tiles(v, n0, n1, dx, *start, threads);
            }
        }
        self.weight_gradient(&work.dweight, &mut grad[self.weight..][..self.weight_len()]);
    }

    /// `U = G g G^T` of every kernel (torch's `[cout][cin][3][3]`) into `u`
    /// (`[16][cin][cout]`).
    fn transformed_weight(&self, torch: &[f32], u: &mut Vec<f32>) {
        let (cin, cout) = (self.cin, self.cout);
        filter_tiles(cin, cout, torch, grown(u, POSITIONS * cin * cout));
    }

    /// `dg = G^T dU G` from `du` (`[16][cin][cout]`) into `dst` (torch's `[cout][cin][3][3]`).
    fn weight_gradient(&self, du: &[f32], dst: &mut [f32]) {
        filter_gradient_tiles(self.cin, self.cout, du, dst);
    }

    /// `V = B^T d B` of every tile of images `n0..n1` of `x` into `buf`, grown as needed:
    /// the `[16][tiles][cin]` floats written.
    fn input_tiles<'b>(
        &self,
        x: &[f32],
        n0: usize,
        n1: usize,
        buf: &'b mut Vec<f32>,
        threads: usize,
    ) -> &'b mut [f32] {
        let image_len = self.in_area() * self.cin;
        let images = &x[n0 * image_len..n1 * image_len];
        let (cin, tiles) = (self.cin, self.tiles());
        let v = grown(buf, POSITIONS * (n1 - n0) * tiles * cin);
        each_image(
            v,
            tiles * cin,
            n1 - n0,
            threads,
            self.win * cin + 4 * self.padded_row(cin),
            |j, planes, tmp| {
                input_tiles_image(self, &images[j * image_len..][..image_len], planes, tmp);
            },
        );
        v
    }

    /// Floats of a row of tile columns with one pixel of padding left and right: the
    /// `2 * tiles_x + 2` pixels the tiles' 4x4 patches span.
    fn padded_row(&self, c: usize) -> usize {
        (2 * self.tiles_x() + 2) * c
    }

    /// `Y = A^T M A` of every tile of `m` (`[16][tiles][cout]`) into images `n0..n1` of
    /// `out`; each channel's sum and sum of squares over these images added onto `sums`
    /// when given, while each image is still in the caches (image by image, then the images'
    /// sums in order, whatever the thread count).
    fn output_tiles(
        &self,
        m: &[f32],
        n0: usize,
        n1: usize,
        out: &mut [f32],
        sums: Option<&mut [f64]>,
        threads: usize,
    ) {
        let image_len = self.out_area() * self.cout;
        let out = &mut out[n0 * image_len..n1 * image_len];
        let (c, tiles) = (self.cout, self.tiles());
        let plane_len = (n1 - n0) * tiles * c;
        // Each image's sums apart (a few floats each), added in order after.
        let mut partial = vec![0.0f64; (n1 - n0) * 2 * c];
        let gathering = sums.is_some();
        let one = |(j, (image, acc)): (usize, (&mut [f32], &mut [f64]))| {
            output_tiles_image(self, m, plane_len, j, image);
            if gathering {
                add_channel_sums(image, c, acc);
            }
        };
        if threads > 1 && n1 - n0 > 1 {
            out.par_chunks_mut(image_len)
                .zip(partial.par_chunks_mut(2 * c))
                .enumerate()
                .for_each(one);
        } else {
            out.chunks_mut(image_len)
                .zip(partial.chunks_mut(2 * c))
                .enumerate()
                .for_each(one);
        }
        if let Some(sums) = sums {
            for acc in partial.chunks_exact(2 * c) {
                sums.iter_mut().zip(acc).for_each(|(s, a)| *s += a);
            }
        }
    }

    /// `dM = A dY A^T` of every tile of images `n0..n1` of `dout` into `dm`
    /// (`[16][tiles][cout]`).
    fn output_gradient_tiles(
        &self,
        dout: &[f32],
        n0: usize,
        n1: usize,
        dm: &mut [f32],
        threads: usize,
    ) {
        let image_len = self.out_area() * self.cout;
        let images = &dout[n0 * image_len..n1 * image_len];
        let (c, tiles) = (self.cout, self.tiles());
        let padded = 2 * self.tiles_x() * c;
        let row_len = self.wout * c;
        each_image(
            dm,
            tiles * c,
            n1 - n0,
            threads,
            row_len + 4 * padded,
            |j, planes, tmp| {
                output_gradient_tiles_image(
                    self,
                    &images[j * image_len..][..image_len],
                    planes,
                    tmp,
                );
            },
        );
    }

    /// Adds `dd = B dV B^T` of every tile of `dv` (`[16][tiles][cin]`) onto the input
    /// pixels of images `n0..n1` of `dx` under it, each image set to its `start` first.
    #[allow(clippy::too_many_arguments)]
    fn input_gradient_tiles(
        &self,
        dv: &[f32],
        n0: usize,
        n1: usize,
        dx: &mut [f32],
        start: Start<'_>,
        threads: usize,
    ) {
        let image_len = self.in_area() * self.cin;
        let dx = &mut dx[n0 * image_len..n1 * image_len];
        let (c, tiles) = (self.cin, self.tiles());
        let plane_len = (n1 - n0) * tiles * c;
        let one = |(j, image): (usize, &mut [f32])| {
            start.prepare(n0 + j, image);
            input_gradient_tiles_image(self, dv, plane_len, j, image)
        };
        if threads > 1 && n1 - n0 > 1 {
            dx.par_chunks_mut(image_len).enumerate().for_each(one);
        } else {
            dx.chunks_mut(image_len).enumerate().for_each(one);
        }
    }

    /// The tiles of one image in order: `(tile row, tile column)`.
    fn tile_origins(&self) -> impl Iterator<Item = (usize, usize)> {
        let tiles_x = self.tiles_x();
        (0..self.tiles()).map(move |t| (t / tiles_x, t % tiles_x))
    }
}

/// Runs `product(xi, plane)` for each of the 16 positions, where `plane` is that position's
/// `plane_len` floats of `dst`: on up to `threads` threads, a position per task, each
/// product on one thread (the products are small; splitting each would cost more than it
/// saves). Every product runs in the same order whatever the thread count.
fn each_position<F>(dst: &mut [f32], plane_len: usize, threads: usize, product: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let planes = dst[..POSITIONS * plane_len].chunks_exact_mut(plane_len);
    if threads > 1 {
        planes
            .collect::<Vec<_>>()
            .into_par_iter()
            .enumerate()
            .for_each(|(xi, plane)| product(xi, plane));
    } else {
        planes
            .enumerate()
            .for_each(|(xi, plane)| product(xi, plane));
    }
}
