//! 2-D convolution without bias as im2col and one SGEMM, on activations laid out
//! channel-major over the whole batch (`[channels][image][row][column]`, "CNHW"), so that
//! one product covers every image: `out[cout][n*hw] = weight[cout][cin*k*k] * cols`.
//! Large batches are cut into chunks of images to bound the column buffer.

use crate::linalg::{matmul, MatMut, MatRef};

/// The most floats a column buffer holds (16 MiB); larger batches go chunk by chunk.
const MAX_COLUMN_FLOATS: usize = 1 << 22;

/// A `k x k` convolution of stride `stride` with `pad` zeros each side, without bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Conv {
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub hin: usize,
    pub win: usize,
    pub hout: usize,
    pub wout: usize,
    /// Offset of the weight (`[cout][cin][k][k]`, torch's layout) in the parameters.
    pub weight: usize,
}

impl Conv {
    /// The convolution on `hin x win` inputs with its weight at `weight`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        hin: usize,
        win: usize,
        weight: usize,
    ) -> Self {
        Self {
            cin,
            cout,
            k,
            stride,
            pad,
            hin,
            win,
            hout: (hin + 2 * pad - k) / stride + 1,
            wout: (win + 2 * pad - k) / stride + 1,
            weight,
        }
    }

    /// Weights: `cout * cin * k * k`.
    pub fn weight_len(&self) -> usize {
        self.cout * self.rows()
    }

    /// Inputs each output sees (`cin * k * k`): the fan-in, and the column buffer's rows.
    pub fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Output positions per image.
    pub fn out_area(&self) -> usize {
        self.hout * self.wout
    }

    /// Input positions per image.
    pub fn in_area(&self) -> usize {
        self.hin * self.win
    }

    /// Multiply-adds of the forward pass per image.
    pub fn macs_per_image(&self) -> usize {
        self.weight_len() * self.out_area()
    }

    fn images_per_chunk(&self) -> usize {
        (MAX_COLUMN_FLOATS / (self.rows() * self.out_area()).max(1)).max(1)
    }

    /// The output columns `x0..x1` of output row `oy` that read input row `iy`, column
    /// offset `kx`: those whose input column lies inside the image.
    fn valid_columns(&self, kx: usize) -> (usize, usize) {
        // ix = ox * stride + kx - pad must lie in 0..win.
        let lo = self.pad.saturating_sub(kx).div_ceil(self.stride);
        let hi = if self.win + self.pad > kx {
            ((self.win + self.pad - kx - 1) / self.stride + 1).min(self.wout)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Writes the columns of images `n0..n1` of `x` (`[cin][n][hin][win]`) into `cols`
    /// (`[cin*k*k][(n1-n0)*hout*wout]`).
    fn im2col(&self, x: &[f32], n: usize, n0: usize, n1: usize, cols: &mut [f32]) {
        let (area_in, area_out) = (self.in_area(), self.out_area());
        let width = (n1 - n0) * area_out;
        for c in 0..self.cin {
            let plane = &x[c * n * area_in..(c + 1) * n * area_in];
            for ky in 0..self.k {
                for kx in 0..self.k {
                    let r = (c * self.k + ky) * self.k + kx;
                    let row = &mut cols[r * width..(r + 1) * width];
                    let (x0, x1) = self.valid_columns(kx);
                    for (j, img) in (n0..n1).enumerate() {
                        let image = &plane[img * area_in..(img + 1) * area_in];
                        for oy in 0..self.hout {
                            let out = &mut row[(j * self.hout + oy) * self.wout..][..self.wout];
                            let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                            if iy < 0 || iy >= self.hin as isize {
                                out.fill(0.0);
                                continue;
                            }
                            let src = &image[iy as usize * self.win..][..self.win];
                            out[..x0].fill(0.0);
                            out[x1..].fill(0.0);
                            if x0 == x1 {
                                continue;
                            }
                            let first = x0 * self.stride + kx - self.pad;
                            if self.stride == 1 {
                                out[x0..x1].copy_from_slice(&src[first..first + (x1 - x0)]);
                            } else {
                                for (o, ox) in out[x0..x1].iter_mut().zip(0..) {
                                    *o = src[first + ox * self.stride];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds the columns' gradient `cols` of images `n0..n1` back onto the input gradient
    /// `dx` (`[cin][n][hin][win]`): the transpose of [`Self::im2col`].
    fn col2im(&self, cols: &[f32], n: usize, n0: usize, n1: usize, dx: &mut [f32]) {
        let (area_in, area_out) = (self.in_area(), self.out_area());
        let width = (n1 - n0) * area_out;
        for c in 0..self.cin {
            let plane = &mut dx[c * n * area_in..(c + 1) * n * area_in];
            for ky in 0..self.k {
                for kx in 0..self.k {
                    let r = (c * self.k + ky) * self.k + kx;
                    let row = &cols[r * width..(r + 1) * width];
                    let (x0, x1) = self.valid_columns(kx);
                    for (j, img) in (n0..n1).enumerate() {
                        let image = &mut plane[img * area_in..(img + 1) * area_in];
                        for oy in 0..self.hout {
                            let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                            if iy < 0 || iy >= self.hin as isize {
                                continue;
                            }
                            let src = &row[(j * self.hout + oy) * self.wout..][..self.wout];
                            let dst = &mut image[iy as usize * self.win..][..self.win];
                            if x0 == x1 {
                                continue;
                            }
                            let first = x0 * self.stride + kx - self.pad;
                            for (ox, &g) in src[x0..x1].iter().enumerate() {
                                dst[first + ox * self.stride] += g;
                            }
                        }
                    }
                }
            }
        }
    }

    /// `out` (`[cout][n][hout][wout]`) = the convolution of `x` (`[cin][n][hin][win]`).
    pub fn forward(
        &self,
        params: &[f32],
        x: &[f32],
        n: usize,
        out: &mut [f32],
        cols: &mut Vec<f32>,
        threads: usize,
    ) {
        let weight = &params[self.weight..self.weight + self.weight_len()];
        let area = self.out_area();
        let chunk = self.images_per_chunk();
        let mut n0 = 0;
        while n0 < n {
            let n1 = (n0 + chunk).min(n);
            let width = (n1 - n0) * area;
            let cols = grown(cols, self.rows() * width);
            self.im2col(x, n, n0, n1, cols);
            matmul(
                MatMut::strided(&mut out[n0 * area..], self.cout, width, n * area),
                MatRef::row_major(weight, self.cout, self.rows()),
                MatRef::row_major(cols, self.rows(), width),
                false,
                threads,
            );
            n0 = n1;
        }
    }

    /// The gradients of [`Self::forward`] given `dout`: the weight's into `dweight`
    /// (overwritten), the input's added onto `dx` when it is wanted.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        params: &[f32],
        x: &[f32],
        dout: &[f32],
        n: usize,
        dweight: &mut [f32],
        mut dx: Option<&mut [f32]>,
        work: &mut ConvWork,
        threads: usize,
    ) {
        let weight = &params[self.weight..self.weight + self.weight_len()];
        let dweight = &mut dweight[self.weight..self.weight + self.weight_len()];
        let area = self.out_area();
        let chunk = self.images_per_chunk();
        let mut n0 = 0;
        while n0 < n {
            let n1 = (n0 + chunk).min(n);
            let width = (n1 - n0) * area;
            let cols = grown(&mut work.cols, self.rows() * width);
            self.im2col(x, n, n0, n1, cols);
            let dz = MatRef::strided(&dout[n0 * area..], self.cout, width, n * area);
            matmul(
                MatMut::row_major(dweight, self.cout, self.rows()),
                dz,
                MatRef::row_major(cols, self.rows(), width).t(),
                n0 > 0,
                threads,
            );
            if let Some(dx) = dx.as_deref_mut() {
                let dcols = grown(&mut work.dcols, self.rows() * width);
                matmul(
                    MatMut::row_major(dcols, self.rows(), width),
                    MatRef::row_major(weight, self.cout, self.rows()).t(),
                    dz,
                    false,
                    threads,
                );
                self.col2im(dcols, n, n0, n1, dx);
            }
            n0 = n1;
        }
    }
}

/// Column buffers of a convolution's backward pass.
#[derive(Debug, Clone, Default)]
pub(super) struct ConvWork {
    pub cols: Vec<f32>,
    pub dcols: Vec<f32>,
}

/// `buf` grown to at least `len` floats, as a slice of exactly `len`.
pub(super) fn grown(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}
