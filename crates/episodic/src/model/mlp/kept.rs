//! The MLP's kept first layer: a past memory's first-layer pre-activations carried from
//! step to step by rank-|B| updates (see [`crate::model::Model::step_first_layer`]).
//!
//! A plain SGD step moves the first layer by `-rate * (A' D, 1' D)` (the batch's inputs `A`
//! and first-layer output gradients `D`), so the pre-activations of fixed inputs `X` move by
//! `-rate * (X A' + 1) D`: the Gram matrix `X A'` that the factored violation check already
//! computed, times the batch's 10 x 100 output gradients, instead of a new sparse product of
//! the memory with the 784 x 100 weights.

use std::ops::Range;

use super::{FirstLayerInput, FirstPre, Mlp, MAX_TRANSPOSED_ROWS};
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};
use crate::model::factors::{transpose_padded, GradientFactors};
use crate::model::{check_labels, cross_entropy, Inputs, Model};

impl Mlp {
    /// [`crate::model::Model::loss_and_factors`] with the first layer's pre-activations as
    /// `first` says.
    pub(super) fn loss_and_factors_with(
        &mut self,
        xs: Inputs<'_>,
        ys: &[u32],
        head: Range<usize>,
        factors: &mut GradientFactors,
        first: FirstPre<'_>,
    ) -> Result<f32> {
        let n = self.input_rows(xs)?;
        if ys.len() != n {
            return Err(Error::Shape {
                what: "labels (one per input row)",
                expected: n,
                actual: ys.len(),
            });
        }
        let classes = self.num_classes();
        check_labels(ys, &head, classes)?;
        let mut objective = |logits: &[f32], dlogits: &mut [f32]| {
            cross_entropy(logits, classes, ys, head.clone(), dlogits)
        };
        let loss = match (xs, first) {
            // Given pre-activations: the inputs are not read.
            (Inputs::Dense(xs), first @ FirstPre::Given(_)) => {
                self.forward_and_deltas(FirstLayerInput::Dense(xs), n, first, &mut objective)
            }
            (Inputs::Dense(xs), first) => self.with_input(xs, false, |mlp, input| {
                mlp.forward_and_deltas(input, n, first, &mut objective)
            }),
            (Inputs::Sparse(xs), first) => {
                self.forward_and_deltas(FirstLayerInput::Sparse(xs), n, first, &mut objective)
            }
        };
        // The factors take this pass's buffers; the model keeps the caller's old ones.
        std::mem::swap(&mut self.own, factors);
        factors.inputs_t_stride = match xs {
            Inputs::Dense(xs) if n <= MAX_TRANSPOSED_ROWS => {
                transpose_padded(xs, n, self.widths[0], &mut factors.inputs_t)
            }
            _ => 0,
        };
        // No Gram matrix belongs to these factors until a factored product computes one.
        factors.first_gram_stride = 0;
        Ok(loss)
    }

    /// Checks kept pre-activations against the inputs they stand for.
    pub(super) fn check_kept(&self, xs: Inputs<'_>, first: &[f32]) -> Result<()> {
        let expected = self.input_rows(xs)? * self.widths[1];
        if first.len() != expected {
            return Err(Error::Shape {
                what: "kept first-layer pre-activations (rows x first layer width)",
                expected,
                actual: first.len(),
            });
        }
        Ok(())
    }

    /// [`crate::model::Model::step_first_layer`].
    pub(super) fn step_kept_first_layer(
        &mut self,
        xs: Inputs<'_>,
        kept: &GradientFactors,
        step: &GradientFactors,
        rate: f32,
        first: &mut [f32],
    ) -> Result<bool> {
        self.check_kept(xs, first)?;
        let (rows, stride, batch) = (kept.rows, kept.first_gram_stride, step.rows);
        if stride == 0 {
            return Ok(false);
        }
        let width = self.widths[1];
        self.check_factors(step, batch)?;
        if stride < batch || kept.first_gram.len() < rows * stride {
            return Err(Error::Shape {
                what: "kept first-layer Gram matrix (rows x stride)",
                expected: rows * stride.max(batch),
                actual: kept.first_gram.len(),
            });
        }
        // c[n, m] = -rate * (x_n . a_m + 1), then first += c D.
        let coefficients = &mut self.gram_a;
        coefficients.clear();
        for row in kept.first_gram.chunks_exact(stride).take(rows) {
            coefficients.extend(row[..batch].iter().map(|&g| -rate * (g + 1.0)));
        }
        matmul(
            MatMut::row_major(first, rows, width),
            MatRef::row_major(&self.gram_a[..rows * batch], rows, batch),
            MatRef::row_major(&step.deltas[0][..batch * width], batch, width),
            true,
            1,
        );
        Ok(true)
    }
}
