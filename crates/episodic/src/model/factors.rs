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
