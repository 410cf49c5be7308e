//! A safe, shape-checked front end to the `gemm` crate's SGEMM kernel: `gemm` 0.17 (AVX2 +
//! FMA at most), or with the `avx512` feature `gemm` 0.19 (AVX-512 where the CPU has it).

#[cfg(not(feature = "avx512"))]
use gemm as kernels;
#[cfg(feature = "avx512")]
use gemm_avx512 as kernels;
use kernels::Parallelism;

mod narrow;

pub(crate) use narrow::{narrow_kernel, narrow_matmul};

/// The `gemm` release this build multiplies matrices with.
const GEMM_RELEASE: &str = if cfg!(feature = "avx512") {
    "gemm 0.19"
} else {
    "gemm 0.17"
};

/// The matrix-product kernels this build runs on this CPU, as results files record them:
/// the bits of a run's results depend on them (never on the thread count).
pub(crate) fn kernels() -> String {
    let narrow = if narrow_kernel() {
        " and episodic's narrow products"
    } else {
        ""
    };
    format!("{GEMM_RELEASE}{narrow}, {}", instruction_set())
}

/// The widest instructions `gemm`'s dispatch picks on this CPU.
fn instruction_set() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("fma") {
            return "AVX2 + FMA";
        }
    }
    "portable"
}

/// A read-only strided matrix view.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix over the first `rows * cols` elements of `data`.
    pub(crate) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        let view = Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        };
        assert!(
            view.extent() <= data.len(),
            "matrix view exceeds its buffer"
        );
        view
    }

    /// The transpose (a view, no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
        }
    }
}

/// A mutable row-major matrix view.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows x cols` matrix over the first `rows * cols` elements of `data`.
    pub(crate) fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert!(rows * cols <= data.len(), "matrix view exceeds its buffer");
        Self { data, rows, cols }
    }
}

/// `dst = lhs * rhs`, or `dst += lhs * rhs` when `accumulate`.
pub(crate) fn matmul(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    threads: usize,
) {
    assert_eq!(lhs.rows, dst.rows, "matmul: lhs rows");
    assert_eq!(rhs.cols, dst.cols, "matmul: rhs cols");
    assert_eq!(lhs.cols, rhs.rows, "matmul: inner dimension");
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    if lhs.cols == 0 {
        if !accumulate {
            dst.data[..dst.rows * dst.cols].fill(0.0);
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the constructors checked that every element addressed by the shapes and
    // strides lies inside its slice; `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        kernels::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.data.as_mut_ptr(),
            1,
            dst.cols as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_named_are_the_build_s() {
        let version = if cfg!(feature = "avx512") {
            "gemm 0.19"
        } else {
            "gemm 0.17, "
        };
        assert!(kernels().starts_with(version), "{}", kernels());
        #[cfg(target_arch = "x86_64")]
        if !cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("fma") {
            assert_eq!(kernels(), "gemm 0.17, AVX2 + FMA");
        }
        assert_eq!(narrow_kernel(), kernels().contains("narrow"));
    }

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_product_with_transposes_and_accumulation() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![1.0; m * n];
        matmul(
            MatMut::row_major(&mut c, m, n),
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&b, k, n),
            false,
            1,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5);
        }
        // b stored transposed (n x k), used through a transposed view; accumulate onto c.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        matmul(
            MatMut::row_major(&mut c, m, n),
            MatRef::row_major(&a, m, k),
            MatRef::row_major(&bt, n, k).t(),
            true,
            2,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 1e-5);
        }
    }
}
