//! 2-D convolution without bias as im2col and one SGEMM, on activations laid out pixel by
//! pixel with each pixel's channels contiguous (`[image][row][column][channel]`, "NHWC"):
//! `out[pixel][cout] = cols[pixel][k*k*cin] * weight'^T`, where each row of `cols` holds
//! the patch under one output pixel (`[ky][kx][channel]`) and `weight'` is the weight
//! reordered to that patch order. Products whose long side is the pixels, with the short
//! channel counts (20 to 160) across, run measurably faster on the `gemm` kernel than the
//! channel-major form (measured: `docs/resnet-backend.md`). Large batches are cut into
//! chunks of images to bound the column buffer.

use rayon::prelude::*;

use crate::linalg::{matmul, MatMut, MatRef};

/// The most floats a column buffer holds (16 MiB); larger batches go chunk by chunk.
const MAX_COLUMN_FLOATS: usize = 1 << 22;

/// Input channels from which a 3x3 stride-1 convolution runs as Winograd's F(2x2, 3x3):
/// below it (the stem's 3 colour channels) the transforms cost more than they save.
const WINOGRAD_MIN_CHANNELS: usize = 4;

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
    /// Whether it runs as Winograd's F(2x2, 3x3) (`winograd.rs`) rather than im2col.
    pub winograd: bool,
}

/// Work buffers of a convolution: the columns, their gradient, and the weight and its
/// gradient in patch order (or Winograd's transformed weight, its transpose and gradient).
#[derive(Debug, Clone, Default)]
pub(super) struct ConvWork {
    pub cols: Vec<f32>,
    pub dcols: Vec<f32>,
    pub weight: Vec<f32>,
    pub weight_t: Vec<f32>,
    pub dweight: Vec<f32>,
}

/// Where a convolution's backward pass puts its input's gradient.
#[derive(Debug)]
pub(super) enum InputGradient<'a> {
    /// Written over what is there, image by image as it is formed (no pass of its own to
    /// clear it first).
    Overwrite(&'a mut [f32]),
    /// Written over what is there as the second buffer (laid out as the input) plus the
    /// gradient, image by image: an identity shortcut's gradient joined in the same pass.
    OverwriteWith(&'a mut [f32], &'a [f32]),
    /// Added onto what is there.
    Add(&'a mut [f32]),
}

impl<'a> InputGradient<'a> {
    /// The buffer, and what each of its images starts from before the gradient is added.
    pub(super) fn into_parts(self) -> (&'a mut [f32], Start<'a>) {
        match self {
            InputGradient::Overwrite(dx) => (dx, Start::Zero),
            InputGradient::OverwriteWith(dx, base) => (dx, Start::Copy(base)),
            InputGradient::Add(dx) => (dx, Start::Existing),
        }
    }
}

/// What each image of an input gradient starts from before a backward pass adds onto it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start<'a> {
    /// Zeros.
    Zero,
    /// The same image of this buffer (laid out as the gradient).
    Copy(&'a [f32]),
    /// What is there.
    Existing,
}

impl Start<'_> {
    /// Sets `image`, image `index` of the gradient, to where it starts.
    pub(super) fn prepare(self, index: usize, image: &mut [f32]) {
        match self {
            Start::Zero => image.fill(0.0),
            Start::Copy(base) => image.copy_from_slice(&base[index * image.len()..][..image.len()]),
            Start::Existing => {}
        }
    }
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
        let conv = Self {
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
            winograd: false,
        };
        Self {
            winograd: conv.winograd_applies() && cin >= WINOGRAD_MIN_CHANNELS,
            ..conv
        }
    }

    /// Weights: `cout * cin * k * k`.
    pub fn weight_len(&self) -> usize {
        self.cout * self.rows()
    }

    /// Inputs each output sees (`cin * k * k`): the fan-in, and a column row's length.
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

    /// The input pixel under output `(oy, ox)` at kernel offset `(ky, kx)`, if inside.
    fn source(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad)?;
        (iy < self.hin && ix < self.win).then_some(iy * self.win + ix)
    }

    /// Writes the patches of images `n0..n1` of `x` (`[n][hin][win][cin]`) into `cols`
    /// (`[(n1-n0)*hout*wout][k*k*cin]`), image by image on up to `threads` threads.
    fn im2col(&self, x: &[f32], n0: usize, n1: usize, cols: &mut [f32], threads: usize) {
        let per_image = self.out_area() * self.rows();
        let image_len = self.in_area() * self.cin;
        let cols = &mut cols[..(n1 - n0) * per_image];
        let one = |(j, dst): (usize, &mut [f32])| {
            let img = n0 + j;
            self.im2col_image(&x[img * image_len..(img + 1) * image_len], dst);
        };
        if threads > 1 && n1 - n0 > 1 {
            cols.par_chunks_mut(per_image).enumerate().for_each(one);
        } else {
            cols.chunks_mut(per_image).enumerate().for_each(one);
        }
    }

    /// The patches of one image (`[hin][win][cin]`) into `cols` (`[hout*wout][k*k*cin]`).
    /// For one output pixel and kernel row, the `k` taps are `k` consecutive input pixels,
    /// so inside the image each kernel row is one copy of `k * cin` floats.
    fn im2col_image(&self, image: &[f32], cols: &mut [f32]) {
        let (cin, k) = (self.cin, self.k);
        let run = k * cin;
        let mut rows = cols.chunks_exact_mut(self.rows());
        for oy in 0..self.hout {
            for ox in 0..self.wout {
                let Some(row) = rows.next() else { return };
                let left = (ox * self.stride) as isize - self.pad as isize;
                let inside = left >= 0 && left as usize + k <= self.win;
                for (ky, dst) in row.chunks_exact_mut(run).enumerate() {
                    let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                    if iy < 0 || iy as usize >= self.hin {
                        dst.fill(0.0);
                    } else if inside {
                        let start = (iy as usize * self.win + left as usize) * cin;
                        dst.copy_from_slice(&image[start..start + run]);
                    } else {
                        for (kx, tap) in dst.chunks_exact_mut(cin).enumerate() {
                            match self.source(oy, ox, ky, kx) {
                                Some(pixel) => {
                                    tap.copy_from_slice(&image[pixel * cin..][..cin]);
                                }
                                None => tap.fill(0.0),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds the columns' gradient `cols` of images `n0..n1` onto the input gradient `dx`
    /// (`[n][hin][win][cin]`), each image set to its `start` first: the transpose of
    /// [`Self::im2col`], image by image on up to `threads` threads.
    #[allow(clippy::too_many_arguments)]
    fn col2im(
        &self,
        cols: &[f32],
        n0: usize,
        n1: usize,
        dx: &mut [f32],
        start: Start<'_>,
        threads: usize,
    ) {
        let per_image = self.out_area() * self.rows();
        let image_len = self.in_area() * self.cin;
        let dx = &mut dx[n0 * image_len..n1 * image_len];
        let cols = &cols[..(n1 - n0) * per_image];
        let one = |(j, (image, src)): (usize, (&mut [f32], &[f32]))| {
            start.prepare(n0 + j, image);
            self.col2im_image(src, image)
        };
        if threads > 1 && n1 - n0 > 1 {
            dx.par_chunks_mut(image_len)
                .zip(cols.par_chunks(per_image))
                .enumerate()
                .for_each(one);
        } else {
            dx.chunks_mut(image_len)
                .zip(cols.chunks(per_image))
                .enumerate()
                .for_each(one);
        }
    }

    /// One image's share of [`Self::col2im`] (by kernel rows, as [`Self::im2col_image`]).
    fn col2im_image(&self, cols: &[f32], image: &mut [f32]) {
        let (cin, k) = (self.cin, self.k);
        let run = k * cin;
        let mut rows = cols.chunks_exact(self.rows());
        for oy in 0..self.hout {
            for ox in 0..self.wout {
                let Some(row) = rows.next() else { return };
                let left = (ox * self.stride) as isize - self.pad as isize;
                let inside = left >= 0 && left as usize + k <= self.win;
                for (ky, src) in row.chunks_exact(run).enumerate() {
                    let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                    if iy < 0 || iy as usize >= self.hin {
                        continue;
                    }
                    if inside {
                        let start = (iy as usize * self.win + left as usize) * cin;
                        let dst = &mut image[start..start + run];
                        dst.iter_mut().zip(src).for_each(|(d, &g)| *d += g);
                        continue;
                    }
                    for (kx, tap) in src.chunks_exact(cin).enumerate() {
                        if let Some(pixel) = self.source(oy, ox, ky, kx) {
                            let dst = &mut image[pixel * cin..][..cin];
                            dst.iter_mut().zip(tap).for_each(|(d, &g)| *d += g);
                        }
                    }
                }
            }
        }
    }

    /// The weight in patch order (`[cout][ky][kx][cin]`) into `out`.
    fn patch_order(&self, torch: &[f32], out: &mut Vec<f32>) {
        let (cin, taps) = (self.cin, self.k * self.k);
        let out = grown(out, self.weight_len());
        for co in 0..self.cout {
            for ci in 0..cin {
                for tap in 0..taps {
                    out[(co * taps + tap) * cin + ci] = torch[(co * cin + ci) * taps + tap];
                }
            }
        }
    }

    /// `out` (`[n][hout][wout][cout]`) = the convolution of `x` (`[n][hin][win][cin]`).
    #[cfg(test)]
    pub fn forward(
        &self,
        params: &[f32],
        x: &[f32],
        n: usize,
        out: &mut [f32],
        work: &mut ConvWork,
        threads: usize,
    ) {
        self.forward_gathering(params, x, n, out, work, threads, None);
    }

    /// `out` (`[n][hout][wout][cout]`) = the convolution of `x` (`[n][hin][win][cin]`),
    /// and, where the same pass can (the Winograd convolutions), each
    /// output channel's sum and sum of squares over the batch added onto `sums` (`2 *
    /// cout`: sums, then squares) for the BatchNorm after it: whether it did.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_gathering(
        &self,
        params: &[f32],
        x: &[f32],
        n: usize,
        out: &mut [f32],
        work: &mut ConvWork,
        threads: usize,
        sums: Option<&mut [f64]>,
    ) -> bool {
        if self.winograd {
            let gathering = sums.is_some();
            self.winograd_forward(params, x, n, out, work, threads, sums);
            return gathering;
        }
        self.patch_order(
            &params[self.weight..][..self.weight_len()],
            &mut work.weight,
        );
        let weight = MatRef::row_major(&work.weight, self.cout, self.rows()).t();
        let area = self.out_area();
        let chunk = self.images_per_chunk();
        let mut n0 = 0;
        while n0 < n {
            let n1 = (n0 + chunk).min(n);
            let pixels = (n1 - n0) * area;
            let cols = grown(&mut work.cols, pixels * self.rows());
            self.im2col(x, n0, n1, cols, threads);
            matmul(
                MatMut::row_major(&mut out[n0 * area * self.cout..], pixels, self.cout),
                MatRef::row_major(cols, pixels, self.rows()),
                weight,
                false,
                threads,
            );
            n0 = n1;
        }
        false
    }

    /// The gradients of [`Self::forward`] given `dout`: the weight's into `grad` at the
    /// weight's offset (overwritten, in torch's order), the input's into `dx` when it is
    /// wanted.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        params: &[f32],
        x: &[f32],
        dout: &[f32],
        n: usize,
        grad: &mut [f32],
        dx: Option<InputGradient<'_>>,
        work: &mut ConvWork,
        threads: usize,
    ) {
        let mut dx = dx.map(InputGradient::into_parts);
        if self.winograd {
            return self.winograd_backward(params, x, dout, n, grad, dx, work, threads);
        }
        let rows = self.rows();
        if dx.is_some() {
            self.patch_order(
                &params[self.weight..][..self.weight_len()],
                &mut work.weight,
            );
        }
        grown(&mut work.dweight, self.weight_len());
        let area = self.out_area();
        let chunk = self.images_per_chunk();
        let mut n0 = 0;
        while n0 < n {
            let n1 = (n0 + chunk).min(n);
            let pixels = (n1 - n0) * area;
            let cols = grown(&mut work.cols, pixels * rows);
            self.im2col(x, n0, n1, cols, threads);
            let dz = MatRef::row_major(&dout[n0 * area * self.cout..], pixels, self.cout);
            matmul(
                MatMut::row_major(&mut work.dweight, self.cout, rows),
                dz.t(),
                MatRef::row_major(cols, pixels, rows),
                n0 > 0,
                threads,
            );
            if let Some((dx, start)) = dx.as_mut() {
                let dcols = grown(&mut work.dcols, pixels * rows);
                matmul(
                    MatMut::row_major(dcols, pixels, rows),
                    dz,
                    MatRef::row_major(&work.weight, self.cout, rows),
                    false,
                    threads,
                );
                self.col2im(dcols, n0, n1, dx, *start, threads);
            }
            n0 = n1;
        }
        // Back to torch's order.
        let (cin, taps) = (self.cin, self.k * self.k);
        let dst = &mut grad[self.weight..][..self.weight_len()];
        for co in 0..self.cout {
            for ci in 0..cin {
                for tap in 0..taps {
                    dst[(co * cin + ci) * taps + tap] = work.dweight[(co * taps + tap) * cin + ci];
                }
            }
        }
    }
}

/// `buf` grown to at least `len` floats, as a slice of exactly `len`.
pub(super) fn grown(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}
