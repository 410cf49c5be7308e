//! The MLP's factored gradients: the inner product of two batch gradients from Gram
//! matrices of their layers' inputs and output gradients (see
//! [`crate::model::GradientFactors`]), and the shape checks of factors.

use super::{FirstLayerInput, Mlp};
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};
use crate::model::factors::{transpose_padded, weighted_sum, GradientFactors};
use crate::model::{sparse, Inputs};

impl Mlp {
    /// [`Model::factored_dot`]: the Gram matrices of each layer's inputs and output
    /// gradients, weighted and summed; the first layer's is left in `fb`.
    pub(super) fn dot_of_factors(
        &mut self,
        a: Inputs<'_>,
        fa: &GradientFactors,
        b: Inputs<'_>,
        fb: &mut GradientFactors,
    ) -> Result<f64> {
        let (ra, rb) = (self.input_rows(a)?, self.input_rows(b)?);
        self.check_factors(fa, ra)?;
        self.check_factors(fb, rb)?;
        let a_dense = match a {
            Inputs::Dense(xs) => std::borrow::Cow::Borrowed(xs),
            Inputs::Sparse(xs) => std::borrow::Cow::Owned(xs.to_dense()),
        };
        let b_input = match b {
            Inputs::Dense(xs) => FirstLayerInput::Dense(xs),
            Inputs::Sparse(xs) => FirstLayerInput::Sparse(xs),
        };
        let mut total = 0.0;
        fb.first_gram_stride = 0;
        let mut first_gram = std::mem::take(&mut fb.first_gram);
        for l in 0..self.layers.len() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let stride = if l == 0 {
                self.first_layer_gram(&a_dense, fa, ra, b_input, rb, &mut first_gram)
            } else {
                let (xa, xb) = (&fa.outputs[l - 1], &fb.outputs[l - 1]);
                Self::gram_into(
                    &mut self.gram_a,
                    &xa[..ra * fan_in],
                    ra,
                    &xb[..rb * fan_in],
                    rb,
                    fan_in,
                );
                ra
            };
            let (da, db) = (&fa.deltas[l], &fb.deltas[l]);
            Self::gram_into(
                &mut self.gram_d,
                &da[..ra * fan_out],
                ra,
                &db[..rb * fan_out],
                rb,
                fan_out,
            );
            let gram_a = if l == 0 { &first_gram } else { &self.gram_a };
            total += weighted_sum(gram_a, stride, &self.gram_d, rb, ra);
            if l == 0 {
                fb.first_gram_stride = stride;
            }
        }
        fb.first_gram = first_gram;
        Ok(total)
    }

    /// The Gram matrix of the first layer's inputs of two batches, into `gram`:
    /// `gram[n * stride + m] = a_m . b_n`, with `stride` the rows of `a` rounded up to a
    /// multiple of 8.
    fn first_layer_gram(
        &mut self,
        a: &[f32],
        fa: &GradientFactors,
        rows_a: usize,
        b: FirstLayerInput<'_>,
        rows_b: usize,
        gram: &mut Vec<f32>,
    ) -> usize {
        let d = self.widths[0];
        // a transposed (d x stride, zero-padded), so that each feature's row is contiguous:
        // kept in the batch's factors, else made here.
        let (a_t, stride) = if fa.inputs_t_stride > 0 {
            (&fa.inputs_t[..], fa.inputs_t_stride)
        } else {
            let stride = transpose_padded(a, rows_a, d, &mut self.gram_inputs);
            (&self.gram_inputs[..], stride)
        };
        gram.clear();
        gram.resize(rows_b * stride, 0.0);
        match b {
            FirstLayerInput::Sparse(xs) => sparse::forward(xs, a_t, stride, gram, 1),
            FirstLayerInput::Dense(xs) => matmul(
                MatMut::row_major(gram, rows_b, stride),
                MatRef::row_major(xs, rows_b, d),
                MatRef::row_major(a_t, d, stride),
                false,
                1,
            ),
        }
        stride
    }

    /// `gram_d = b * a'` for row-major `a` (`rows_a x cols`) and `b` (`rows_b x cols`).
    fn gram_into(
        out: &mut Vec<f32>,
        a: &[f32],
        rows_a: usize,
        b: &[f32],
        rows_b: usize,
        cols: usize,
    ) {
        out.clear();
        out.resize(rows_b * rows_a, 0.0);
        matmul(
            MatMut::row_major(out, rows_b, rows_a),
            MatRef::row_major(b, rows_b, cols),
            MatRef::row_major(a, rows_a, cols).t(),
            false,
            1,
        );
    }

    pub(super) fn check_factors(&self, factors: &GradientFactors, rows: usize) -> Result<()> {
        let n = factors.rows;
        let fits = n == rows
            && factors.outputs.len() == self.layers.len()
            && factors.deltas.len() == self.layers.len()
            && (0..self.layers.len()).all(|l| {
                factors.outputs[l].len() >= n * self.widths[l + 1]
                    && factors.deltas[l].len() >= n * self.widths[l + 1]
            });
        if fits {
            Ok(())
        } else {
            Err(Error::Shape {
                what: "gradient factors (rows of the inputs they were computed on)",
                expected: rows,
                actual: n,
            })
        }
    }

    /// The number of rows of `xs` for the first layer, checked against the model's input.
    pub(super) fn input_rows(&self, xs: Inputs<'_>) -> Result<usize> {
        match xs {
            Inputs::Dense(xs) => self.check_inputs(xs),
            Inputs::Sparse(xs) if xs.n_cols() == self.widths[0] && xs.n_rows() > 0 => {
                Ok(xs.n_rows())
            }
            Inputs::Sparse(xs) => Err(Error::Shape {
                what: "sparse model input (features per row)",
                expected: self.widths[0],
                actual: xs.n_cols(),
            }),
        }
    }
}
