//! A batch gradient kept as its factors rather than formed.
//!
//! For a layer `y = x W + b` the gradient of a batch's mean loss is `W' = X' D` and
//! `b' = 1' D`, where the rows of `X` are the layer's inputs and the rows of `D` the loss's
//! gradients with respect to its outputs (with the 1/n of the mean inside). The inner product
//! of two such gradients, of batches A and B, is therefore
//!
//! ```text
//! <g_A, g_B> = sum over layers of sum_{m in A, n in B} (x_m . x_n + 1) (d_m . d_n)
//! ```
//!
//! which needs two small Gram matrices per layer and never the gradients themselves: for
//! MNIST's first layer, a 10 x 256 product of inputs instead of a 78,400-entry weight gradient
//! per memory. GEM checks whether a step violates a past task's constraint this way, and
//! forms the past gradients only when it must project.

/// The factors of a batch's gradient: each layer's outputs (its inputs are the previous
/// layer's outputs, or the batch itself) and the loss's gradient with respect to them.
#[derive(Debug, Clone, Default)]
pub struct GradientFactors {
    pub(crate) rows: usize,
    /// Each layer's output after its activation (the last layer's: the logits), `rows` rows.
    pub(crate) outputs: Vec<Vec<f32>>,
    /// The loss's gradient with respect to each layer's output before its activation.
    pub(crate) deltas: Vec<Vec<f32>>,
    /// For a batch of few dense rows: its inputs transposed and zero-padded to
    /// `inputs_t_stride` columns (the first layer's Gram matrices read them, once per step
    /// for every past task); `inputs_t_stride` 0 when not kept.
    pub(crate) inputs_t: Vec<f32>,
    pub(crate) inputs_t_stride: usize,
    /// The Gram matrix of the first layer's inputs with those of the batch of the last
    /// [`crate::model::Model::factored_dot`] that took these factors second:
    /// `first_gram[n * first_gram_stride + m] = a_m . b_n` (`a_m` the batch's inputs, `b_n`
    /// these), for [`crate::model::Model::step_first_layer`]; `first_gram_stride` 0 when none.
    pub(crate) first_gram: Vec<f32>,
    pub(crate) first_gram_stride: usize,
}

impl GradientFactors {
    /// Number of examples (rows) the factors hold.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// `sum_{n, m} (a[n, m] + 1) * d[n, m]` over the first `rows x cols` entries of two Gram
/// matrices (`a` with rows of `a_stride` floats, `d` row-major), in `f64`.
pub(crate) fn weighted_sum(a: &[f32], a_stride: usize, d: &[f32], rows: usize, cols: usize) -> f64 {
    let mut total = 0.0f64;
    for (a_row, d_row) in a.chunks(a_stride).zip(d.chunks_exact(cols)).take(rows) {
        let row: f32 = a_row[..cols]
            .iter()
            .zip(d_row)
            .map(|(&x, &g)| (x + 1.0) * g)
            .sum();
        total += f64::from(row);
    }
    total
}

/// Writes the first `rows` rows of the row-major `a` (`cols` columns) transposed into `out`
/// (`cols x stride`, zero-padded, `stride` = `rows` rounded up to a multiple of 8), so that
/// each column of `a` is a contiguous row; returns `stride`.
pub(crate) fn transpose_padded(a: &[f32], rows: usize, cols: usize, out: &mut Vec<f32>) -> usize {
    let stride = rows.div_ceil(8) * 8;
    out.clear();
    out.resize(cols * stride, 0.0);
    for (m, row) in a.chunks_exact(cols).take(rows).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * stride + m] = v;
        }
    }
    stride
}
