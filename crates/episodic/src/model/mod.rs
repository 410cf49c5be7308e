//! Models whose trainable parameters are one flat `f32` vector.
//!
//! GEM and its relatives reason about "the gradient" as one vector; a model that keeps all its
//! parameters contiguous lets a method store a task's gradient as one row of a matrix and
//! project or step with plain slice arithmetic.

mod mlp;
mod sparse;

pub use mlp::{Mlp, MlpConfig};
pub use sparse::SparseBatch;

use crate::error::Result;

/// A classifier whose trainable parameters are one flat `f32` vector.
pub trait Model: Send {
    /// Number of trainable parameters.
    fn num_params(&self) -> usize;
    /// The parameters.
    fn params(&self) -> &[f32];
    /// The parameters, for an optimiser step.
    fn params_mut(&mut self) -> &mut [f32];
    /// Input features per example.
    fn input_dim(&self) -> usize;
    /// Number of output classes.
    fn num_classes(&self) -> usize;
    /// Mean cross-entropy of the batch (`xs`: one row of `input_dim` per label in `ys`);
    /// writes its gradient with respect to every parameter into `grad` (overwritten).
    fn loss_and_grad(&mut self, xs: &[f32], ys: &[u32], grad: &mut [f32]) -> Result<f32>;
    /// [`Model::loss_and_grad`] for inputs given by their non-zero entries (built once and
    /// reused by callers whose inputs do not change, such as a past task's memory). Models
    /// without a sparse path use the dense one.
    fn loss_and_grad_sparse(
        &mut self,
        xs: &SparseBatch,
        ys: &[u32],
        grad: &mut [f32],
    ) -> Result<f32> {
        self.loss_and_grad(&xs.to_dense(), ys, grad)
    }
    /// [`Model::logits`] for inputs given by their non-zero entries; models without a sparse
    /// path use the dense one.
    fn logits_sparse(&mut self, xs: &SparseBatch, out: &mut [f32]) -> Result<()> {
        self.logits(&xs.to_dense(), out)
    }
    /// An independent copy (same parameters, its own work buffers), e.g. for a worker thread.
    fn fork(&self) -> Box<dyn Model>;
    /// Writes the logits of the `xs.len() / input_dim` inputs into `out` (row-major).
    fn logits(&mut self, xs: &[f32], out: &mut [f32]) -> Result<()>;
}

/// Writes the arg-max class of each row of `logits` (`classes` columns) into `out`.
pub fn argmax_rows(logits: &[f32], classes: usize, out: &mut [u32]) {
    for (row, o) in logits.chunks_exact(classes).zip(out.iter_mut()) {
        let mut best = 0;
        for (j, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = j;
            }
        }
        *o = best as u32;
    }
}
