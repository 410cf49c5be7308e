//! Products whose result has few columns, as the Winograd convolutions of the ResNet's first
//! stages form them: `(tiles x 20) = (tiles x 20)(20 x 20)` for nf = 20. `gemm` packs both
//! operands and runs its micro-kernel over an inner dimension of only 20: 29-39 GFLOP/s at 1
//! thread on 256 x 20 x 20 on the AVX-512 machine of `docs/resnet-backend.md`, against 100 and
//! more on 256 x 80 x 80. Here each block of result rows stays in registers across its
//! columns (the last vector masked), the right operand is read in place (it is small and stays
//! in the L1 cache) and the left one element at a time, broadcast: nothing is packed. On that
//! machine: 256 x 20 x 20 and 20 x 256 x 20 1.5 to 1.8 times `gemm`'s speed, 256 x 40 x 40
//! and 40 x 256 x 40 1.4 to 1.6 times; from 80 columns on, `gemm` is as fast or faster.
//!
//! The kernel is AVX-512 (the `avx512` feature, on CPUs that have it). Written for AVX2 the
//! same way it ran slower than `gemm` 0.17 (16 registers, slow masked loads), so elsewhere
//! these products are `gemm`'s. Every element is `c = fma(a[k], b[k], c)` for `k = 0, 1, ...`
//! in order, from zero or from the destination.

use super::{MatMut, MatRef};

/// Whether [`narrow_matmul`] runs this crate's kernel on this CPU (rather than `gemm`).
pub(crate) fn narrow_kernel() -> bool {
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return true;
    }
    false
}

/// `dst = lhs * rhs`, or `dst += lhs * rhs` when `accumulate`, on the calling thread: on
/// this module's kernel where [`narrow_kernel`], on `gemm` elsewhere. `rhs` must be
/// row-major (contiguous rows).
pub(crate) fn narrow_matmul(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) {
    assert_eq!(lhs.rows, dst.rows, "narrow_matmul: lhs rows");
    assert_eq!(rhs.cols, dst.cols, "narrow_matmul: rhs cols");
    assert_eq!(lhs.cols, rhs.rows, "narrow_matmul: inner dimension");
    assert!(
        rhs.col_stride == 1 || rhs.cols <= 1,
        "narrow_matmul: rhs rows must be contiguous"
    );
    #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
    if narrow_kernel() {
        if dst.rows == 0 || dst.cols == 0 {
            return;
        }
        let product = Product::new(dst, lhs, rhs, accumulate);
        // SAFETY: the views' constructors checked that every element their shapes and
        // strides address lies inside their slices, and the shapes agree (above); `dst` is
        // borrowed mutably, so it aliases neither input. The CPU has AVX-512
        // (`narrow_kernel`).
        unsafe { avx512::product(&product) };
        return;
    }
    super::matmul(dst, lhs, rhs, accumulate, 1);
}

/// A product's shapes and raw operands: `c (m x n, row-major) (+)= a (m x k) * b (k x n)`,
/// `a[i][p]` at `a + i * a_row + p * a_col`, `b[p][j]` at `b + p * b_row + j`. (What the
/// AVX-512 kernel and the tests' portable loop run on.)
#[cfg(any(test, all(target_arch = "x86_64", feature = "avx512")))]
struct Product {
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    a_row: usize,
    a_col: usize,
    b: *const f32,
    b_row: usize,
    c: *mut f32,
    accumulate: bool,
}

#[cfg(any(test, all(target_arch = "x86_64", feature = "avx512")))]
impl Product {
    /// The raw form of checked views.
    fn new(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) -> Self {
        Self {
            m: dst.rows,
            n: dst.cols,
            k: lhs.cols,
            a: lhs.data.as_ptr(),
            a_row: lhs.row_stride,
            a_col: lhs.col_stride,
            b: rhs.data.as_ptr(),
            b_row: rhs.row_stride,
            c: dst.data.as_mut_ptr(),
            accumulate,
        }
    }
}

/// The product element by element, in the kernel's order: what the tests hold it to.
///
/// # Safety
/// `p` addresses only memory inside its operands.
#[cfg(test)]
unsafe fn portable(p: &Product) {
    for i in 0..p.m {
        for j in 0..p.n {
            // SAFETY: the caller's promise.
            unsafe {
                let c = p.c.add(i * p.n + j);
                let mut acc = if p.accumulate { *c } else { 0.0 };
                for q in 0..p.k {
                    let a = *p.a.add(i * p.a_row + q * p.a_col);
                    acc = a.mul_add(*p.b.add(q * p.b_row + j), acc);
                }
                *c = acc;
            }
        }
    }
}

/// The AVX-512 kernel: 16 lanes, 32 registers, up to 24 of them accumulators (row blocks
/// of 12 rows for 1 or 2 vectors of columns, 8 for 3, 6 for 4).
#[cfg(all(target_arch = "x86_64", feature = "avx512"))]
#[clippy::msrv = "1.89"] // the `avx512` feature's minimum (AVX-512 intrinsics)
mod avx512 {
    use super::Product;
    use std::arch::x86_64::*;

    /// Lanes per vector.
    const LANES: usize = 16;

    type Vector = __m512;
    type Mask = __mmask16;

    /// The first `valid` lanes.
    #[inline(always)]
    fn mask(valid: usize) -> Mask {
        ((1u32 << valid) - 1) as Mask
    }

    /// All lanes zero.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn zero() -> Vector {
        _mm512_setzero_ps()
    }

    /// The lanes of `at` that `mask` keeps, zero elsewhere.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load(at: *const f32, mask: Mask) -> Vector {
        // SAFETY: the caller runs on a CPU with AVX-512 and keeps the lanes `mask` keeps
        // inside its buffers.
        unsafe { _mm512_maskz_loadu_ps(mask, at) }
    }

    /// Writes the lanes of `value` that `mask` keeps to `at`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store(at: *mut f32, mask: Mask, value: Vector) {
        // SAFETY: the caller runs on a CPU with AVX-512 and keeps the lanes `mask` keeps
        // inside its buffers.
        unsafe { _mm512_mask_storeu_ps(at, mask, value) }
    }

    /// `x` in every lane.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn splat(x: f32) -> Vector {
        _mm512_set1_ps(x)
    }

    /// `a * b + c`, rounded once.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fma(a: Vector, b: Vector, c: Vector) -> Vector {
        _mm512_fmadd_ps(a, b, c)
    }

    /// Vectors per row block at most.
    const WIDEST: usize = 4;

    /// The whole product, a group of up to [`WIDEST`] vectors of columns at a time.
    ///
    /// # Safety
    /// `p` addresses only memory inside its operands; the CPU has this module's
    /// instructions.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product(p: &Product) {
        let vectors = p.n.div_ceil(LANES);
        let mut v0 = 0;
        while v0 < vectors {
            let nv = (vectors - v0).min(WIDEST);
            // SAFETY: the caller's promise.
            unsafe {
                match nv {
                    1 => group::<1, 12>(p, v0),
                    2 => group::<2, 12>(p, v0),
                    3 => group::<3, 8>(p, v0),
                    4 => group::<4, 6>(p, v0),
                    _ => unreachable!("at most {WIDEST} vectors per group"),
                }
            }
            v0 += nv;
        }
    }

    /// Columns of vectors `v0..v0 + NV` of every row: blocks of `ROWS` rows, then the
    /// rows left one by one.
    #[target_feature(enable = "avx512f")]
    unsafe fn group<const NV: usize, const ROWS: usize>(p: &Product, v0: usize) {
        // SAFETY: the caller's promise; the rows and vectors stay inside the product.
        unsafe {
            // (Loops, not closures: a closure would not carry the target features.)
            let mut masks = [mask(LANES); NV];
            for (v, m) in masks.iter_mut().enumerate() {
                *m = mask((p.n - (v0 + v) * LANES).min(LANES));
            }
            let mut i = 0;
            while i + ROWS <= p.m {
                rows::<NV, ROWS>(p, i, v0, &masks);
                i += ROWS;
            }
            // The rows left in blocks of 4, 2 and 1: enough chains of FMAs to hide
            // their latency where there are enough rows.
            while i + 4 <= p.m {
                rows::<NV, 4>(p, i, v0, &masks);
                i += 4;
            }
            while i + 2 <= p.m {
                rows::<NV, 2>(p, i, v0, &masks);
                i += 2;
            }
            while i < p.m {
                rows::<NV, 1>(p, i, v0, &masks);
                i += 1;
            }
        }
    }

    /// Rows `i0..i0 + R` of columns of vectors `v0..v0 + NV`, held in registers over the
    /// whole inner dimension.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn rows<const NV: usize, const R: usize>(
        p: &Product,
        i0: usize,
        v0: usize,
        masks: &[Mask; NV],
    ) {
        // SAFETY: the caller's promise: rows `i0..i0 + R` are rows of the product, and
        // the masks keep every access to vectors `v0..v0 + NV` inside its columns.
        unsafe {
            let c = p.c.add(i0 * p.n + v0 * LANES);
            let mut acc = [[zero(); NV]; R];
            if p.accumulate {
                for (r, row) in acc.iter_mut().enumerate() {
                    for (v, value) in row.iter_mut().enumerate() {
                        *value = load(c.add(r * p.n + v * LANES), masks[v]);
                    }
                }
            }
            let a = p.a.add(i0 * p.a_row);
            let b = p.b.add(v0 * LANES);
            for q in 0..p.k {
                let b_row = b.add(q * p.b_row);
                let mut bs = [zero(); NV];
                for (v, y) in bs.iter_mut().enumerate() {
                    *y = load(b_row.add(v * LANES), masks[v]);
                }
                let a_col = a.add(q * p.a_col);
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = splat(*a_col.add(r * p.a_row));
                    for (value, &y) in row.iter_mut().zip(&bs) {
                        *value = fma(x, y, *value);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for (v, &value) in row.iter().enumerate() {
                    store(c.add(r * p.n + v * LANES), masks[v], value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * seed).sin()).collect()
    }

    #[test]
    fn narrow_products_give_the_portable_bits_at_every_width_and_stride() {
        // Widths across the vector and group boundaries; rows across the row blocks; the
        // left operand plain and transposed; accumulating or not. Where the kernel runs, its
        // bits are the portable loop's; everywhere, the result is the product.
        for n in [1, 3, 8, 15, 16, 17, 20, 24, 33, 40, 64, 65, 80] {
            for (m, k) in [(1, 1), (7, 5), (29, 20), (256, 3)] {
                for transposed in [false, true] {
                    let a = values(m * k, 0.37);
                    let b = values(k * n, 0.11);
                    let lhs = if transposed {
                        MatRef::row_major(&a, k, m).t()
                    } else {
                        MatRef::row_major(&a, m, k)
                    };
                    let rhs = MatRef::row_major(&b, k, n);
                    for accumulate in [false, true] {
                        let start = values(m * n, 0.05);
                        let mut fast = start.clone();
                        narrow_matmul(MatMut::row_major(&mut fast, m, n), lhs, rhs, accumulate);
                        let reference = fast.clone();
                        let mut slow = start.clone();
                        let product =
                            Product::new(MatMut::row_major(&mut slow, m, n), lhs, rhs, accumulate);
                        // SAFETY: the shapes are the buffers'.
                        unsafe { portable(&product) };
                        let what = format!("{m}x{k}x{n} transposed {transposed} acc {accumulate}");
                        if narrow_kernel() {
                            assert_eq!(fast, slow, "{what}");
                        }
                        // And the portable path is the product.
                        for i in 0..m {
                            for j in 0..n {
                                let dot: f64 = (0..k)
                                    .map(|q| {
                                        let x = if transposed {
                                            a[q * m + i]
                                        } else {
                                            a[i * k + q]
                                        };
                                        f64::from(x) * f64::from(b[q * n + j])
                                    })
                                    .sum();
                                let base = if accumulate {
                                    f64::from(start[i * n + j])
                                } else {
                                    0.0
                                };
                                for got in [slow[i * n + j], reference[i * n + j]] {
                                    let got = f64::from(got);
                                    assert!((got - base - dot).abs() < 1e-4, "{what} at {i},{j}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
