//! A fully connected ReLU network with flat parameters, on the `gemm` SGEMM kernel.
//!
//! Layout of the parameter vector, layer by layer: the weight matrix `in x out`, row-major
//! (the transpose of `torch.nn.Linear`'s storage, so that each input feature's weights are
//! contiguous), then the bias (`out`). Initialisation follows the GEM reference: weights
//! uniform in [-a, a] with a = sqrt(3) * sqrt(2 / (fan_in + fan_out)) (Xavier uniform,
//! gain 1), biases 0. Mostly-zero inputs (MNIST) take a sparse first layer (see
//! [`super::sparse`]). Work buffers grow to the largest batch seen and are reused, so
//! steady-state training allocates nothing.

use std::ops::Range;

use rand::Rng;

use super::factors::GradientFactors;
use super::sparse::{self, SparseBatch};
use super::{cross_entropy, Inputs, Model};
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};

mod checks;
mod config;
mod factored;
mod kept;

pub use config::MlpConfig;

/// Where one layer's weights and bias start in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
struct LayerOffsets {
    weight: usize,
    bias: usize,
}

/// A multi-layer perceptron with ReLU hidden layers and flat parameters.
#[derive(Debug, Clone)]
pub struct Mlp {
    widths: Vec<usize>,
    layers: Vec<LayerOffsets>,
    params: Vec<f32>,
    threads: usize,
    /// The last pass's layer outputs (the last holds the logits) and output gradients.
    own: GradientFactors,
    /// The current input's non-zero entries, when it is sparse enough.
    sparse_scratch: SparseBatch,
    /// Work space of [`Model::factored_dot`]: the first layer's transposed inputs and two
    /// Gram matrices.
    gram_inputs: Vec<f32>,
    gram_a: Vec<f32>,
    gram_d: Vec<f32>,
}

impl Mlp {
    /// A network with the reference's initialisation drawn from `rng`; matrix products use
    /// up to `threads` threads of the current rayon pool.
    pub fn new(config: &MlpConfig, threads: usize, rng: &mut impl Rng) -> Result<Self> {
        config.check()?;
        let widths = config.widths();
        let mut layers = Vec::with_capacity(widths.len() - 1);
        let mut params = Vec::with_capacity(config.num_params());
        for w in widths.windows(2) {
            let (fan_in, fan_out) = (w[0], w[1]);
            let a = (3.0f64.sqrt() * (2.0 / (fan_in + fan_out) as f64).sqrt()) as f32;
            let weight = params.len();
            params.extend((0..fan_in * fan_out).map(|_| rng.random_range(-a..=a)));
            let bias = params.len();
            params.extend(std::iter::repeat_n(0.0, fan_out));
            layers.push(LayerOffsets { weight, bias });
        }
        Ok(Self {
            own: GradientFactors {
                rows: 0,
                outputs: vec![Vec::new(); layers.len()],
                deltas: vec![Vec::new(); layers.len()],
                ..GradientFactors::default()
            },
            widths,
            layers,
            params,
            threads: threads.max(1),
            sparse_scratch: SparseBatch::default(),
            gram_inputs: Vec::new(),
            gram_a: Vec::new(),
            gram_d: Vec::new(),
        })
    }

    /// Layer widths, input first.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Grows the layer outputs (and, `with_deltas`, the output gradients) to hold `n` rows.
    fn reserve(&mut self, n: usize, with_deltas: bool) {
        let layers = self.layers.len();
        self.own.outputs.resize(layers, Vec::new());
        self.own.deltas.resize(layers, Vec::new());
        let bufs = self.own.outputs.iter_mut().zip(&mut self.own.deltas);
        for (l, (out, delta)) in bufs.enumerate() {
            let need = n * self.widths[l + 1];
            if out.len() < need {
                out.resize(need, 0.0);
            }
            if with_deltas && delta.len() < need {
                delta.resize(need, 0.0);
            }
        }
    }

    /// Forward pass over `n` inputs; leaves every layer's output in `own.outputs`, with the
    /// first layer's pre-activations as `first` says.
    fn forward(&mut self, input: FirstLayerInput<'_>, n: usize, mut first: FirstPre<'_>) {
        self.reserve(n, false);
        self.own.rows = n;
        let last = self.layers.len() - 1;
        for (l, off) in self.layers.iter().enumerate() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let (before, rest) = self.own.outputs.split_at_mut(l);
            let out = &mut rest[0][..n * fan_out];
            if let (0, FirstPre::Given(z)) = (l, &first) {
                out.copy_from_slice(&z[..n * fan_out]);
                if l != last {
                    out.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                continue;
            }
            let bias = &self.params[off.bias..off.bias + fan_out];
            for row in out.chunks_exact_mut(fan_out) {
                row.copy_from_slice(bias);
            }
            let weight = &self.params[off.weight..off.bias];
            let dense_input = match (l, input) {
                (0, FirstLayerInput::Sparse(xs)) => {
                    sparse::forward(xs, weight, fan_out, out, self.threads);
                    None
                }
                (0, FirstLayerInput::Dense(xs)) => Some(xs),
                _ => Some(&before[l - 1][..n * fan_in]),
            };
            if let Some(input) = dense_input {
                matmul(
                    MatMut::row_major(out, n, fan_out),
                    MatRef::row_major(input, n, fan_in),
                    MatRef::row_major(weight, fan_in, fan_out),
                    true,
                    self.threads,
                );
            }
            if let (0, FirstPre::Keep(z)) = (l, &mut first) {
                z.clear();
                z.extend_from_slice(out);
            }
            if l != last {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }

    /// Runs `f` on the inputs `xs`, given sparse when they are sparse enough (with the
    /// transpose that gradients need when `for_gradient`).
    fn with_input<T>(
        &mut self,
        xs: &[f32],
        for_gradient: bool,
        f: impl FnOnce(&mut Self, FirstLayerInput<'_>) -> T,
    ) -> T {
        let mut scratch = std::mem::take(&mut self.sparse_scratch);
        let sparse = if for_gradient {
            scratch.refill(xs, self.widths[0])
        } else {
            scratch.refill_rows(xs, self.widths[0])
        };
        let out = if sparse {
            f(self, FirstLayerInput::Sparse(&scratch))
        } else {
            f(self, FirstLayerInput::Dense(xs))
        };
        self.sparse_scratch = scratch;
        out
    }

    /// Copies the last forward pass's logits (as many rows as `out` holds) into `out`.
    fn copy_logits(&self, out: &mut [f32]) {
        out.copy_from_slice(&self.own.outputs[self.layers.len() - 1][..out.len()]);
    }

    /// Forward pass, `objective` on the logits, and the backward pass: the gradient of the
    /// objective with respect to every parameter goes to `grad`.
    fn backprop(
        &mut self,
        input: FirstLayerInput<'_>,
        n: usize,
        grad: &mut [f32],
        objective: &mut dyn FnMut(&[f32], &mut [f32]) -> f64,
    ) -> f32 {
        let loss = self.forward_and_deltas(input, n, FirstPre::Compute, objective);
        self.weight_gradients(input, &self.own, grad);
        loss
    }

    /// Forward pass, `objective` on the logits, and every layer's output gradient (into
    /// `own.deltas`): the factors of the gradient, without forming it.
    fn forward_and_deltas(
        &mut self,
        input: FirstLayerInput<'_>,
        n: usize,
        first: FirstPre<'_>,
        objective: &mut dyn FnMut(&[f32], &mut [f32]) -> f64,
    ) -> f32 {
        self.reserve(n, true);
        self.forward(input, n, first);
        let last = self.layers.len() - 1;
        let classes = self.num_classes();
        let loss = objective(
            &self.own.outputs[last][..n * classes],
            &mut self.own.deltas[last][..n * classes],
        );
        for l in (1..self.layers.len()).rev() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let off = self.layers[l];
            // d(input) = delta * W^T, then through the ReLU of layer l - 1.
            let (below, at) = self.own.deltas.split_at_mut(l);
            let prev = &mut below[l - 1][..n * fan_in];
            matmul(
                MatMut::row_major(prev, n, fan_in),
                MatRef::row_major(&at[0][..n * fan_out], n, fan_out),
                MatRef::row_major(&self.params[off.weight..off.bias], fan_in, fan_out).t(),
                false,
                self.threads,
            );
            // A select, not a conditional store, so that it vectorises.
            for (p, &a) in prev.iter_mut().zip(&self.own.outputs[l - 1][..n * fan_in]) {
                *p = if a <= 0.0 { 0.0 } else { *p };
            }
        }
        loss as f32
    }

    /// The gradient (into `grad`) whose factors `forward_and_deltas` left in `factors` for
    /// the first-layer input `input`: `dW = input' delta` and `db` = column sums of `delta`.
    fn weight_gradients(
        &self,
        input: FirstLayerInput<'_>,
        factors: &GradientFactors,
        grad: &mut [f32],
    ) {
        let n = factors.rows;
        for l in (0..self.layers.len()).rev() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let off = self.layers[l];
            let delta = &factors.deltas[l][..n * fan_out];
            let grad_w = &mut grad[off.weight..off.bias];
            let dense_input = match (l, input) {
                (0, FirstLayerInput::Sparse(xs)) => {
                    sparse::weight_gradient(xs, delta, fan_out, grad_w, self.threads);
                    None
                }
                (0, FirstLayerInput::Dense(xs)) => Some(xs),
                _ => Some(&factors.outputs[l - 1][..n * fan_in]),
            };
            if let Some(input) = dense_input {
                matmul(
                    MatMut::row_major(grad_w, fan_in, fan_out),
                    MatRef::row_major(input, n, fan_in).t(),
                    MatRef::row_major(delta, n, fan_out),
                    false,
                    self.threads,
                );
            }
            let db = &mut grad[off.bias..off.bias + fan_out];
            db.fill(0.0);
            for row in delta.chunks_exact(fan_out) {
                db.iter_mut().zip(row).for_each(|(b, &d)| *b += d);
            }
        }
    }
}

/// Batches of at most this many dense rows keep their transposed inputs in their factors
/// (GEM's batch, whose first-layer Gram matrix with every past memory reads them).
const MAX_TRANSPOSED_ROWS: usize = 32;

/// The first layer's pre-activations (its outputs before the ReLU) in a forward pass.
enum FirstPre<'a> {
    /// Computed from the inputs.
    Compute,
    /// Computed, and copied here.
    Keep(&'a mut Vec<f32>),
    /// Taken from here (`n` rows), not computed: the inputs are not read.
    Given(&'a [f32]),
}

/// What the first layer reads: dense rows, or their non-zero entries.
#[derive(Clone, Copy)]
enum FirstLayerInput<'a> {
    Dense(&'a [f32]),
    Sparse(&'a SparseBatch),
}

impl Model for Mlp {
    fn num_params(&self) -> usize {
        self.params.len()
    }

    fn params(&self) -> &[f32] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    fn input_dim(&self) -> usize {
        self.widths[0]
    }

    fn num_classes(&self) -> usize {
        self.widths[self.widths.len() - 1]
    }

    fn loss_and_grad(
        &mut self,
        xs: &[f32],
        ys: &[u32],
        head: Range<usize>,
        grad: &mut [f32],
    ) -> Result<f32> {
        let n = self.check_inputs(xs)?;
        self.check_targets(n, ys, &head, grad)?;
        let classes = self.num_classes();
        let mut objective = |logits: &[f32], dlogits: &mut [f32]| {
            cross_entropy(logits, classes, ys, head.clone(), dlogits)
        };
        Ok(self.with_input(xs, true, |mlp, input| {
            mlp.backprop(input, n, grad, &mut objective)
        }))
    }

    fn loss_and_grad_with(
        &mut self,
        xs: &[f32],
        grad: &mut [f32],
        objective: &mut dyn FnMut(&[f32], &mut [f32]) -> f64,
    ) -> Result<f32> {
        let n = self.check_inputs(xs)?;
        self.check_grad(grad)?;
        Ok(self.with_input(xs, true, |mlp, input| {
            mlp.backprop(input, n, grad, objective)
        }))
    }

    fn loss_and_grad_sparse(
        &mut self,
        xs: &SparseBatch,
        ys: &[u32],
        head: Range<usize>,
        grad: &mut [f32],
    ) -> Result<f32> {
        self.input_rows(Inputs::Sparse(xs))?;
        if !xs.has_transpose() {
            return Err(Error::InvalidOption {
                option: "sparse batch",
                reason: "gradients need SparseBatch::build_transpose first".into(),
            });
        }
        self.check_targets(xs.n_rows(), ys, &head, grad)?;
        let classes = self.num_classes();
        let mut objective = |logits: &[f32], dlogits: &mut [f32]| {
            cross_entropy(logits, classes, ys, head.clone(), dlogits)
        };
        Ok(self.backprop(
            FirstLayerInput::Sparse(xs),
            xs.n_rows(),
            grad,
            &mut objective,
        ))
    }

    fn logits_sparse(&mut self, xs: &SparseBatch, out: &mut [f32]) -> Result<()> {
        let (n, classes) = (xs.n_rows(), self.num_classes());
        if xs.n_cols() != self.widths[0] || n == 0 || out.len() != n * classes {
            return Err(Error::Shape {
                what: "sparse model input or logits buffer",
                expected: n * classes,
                actual: out.len(),
            });
        }
        self.forward(FirstLayerInput::Sparse(xs), n, FirstPre::Compute);
        self.copy_logits(out);
        Ok(())
    }

    fn loss_and_factors(
        &mut self,
        xs: Inputs<'_>,
        ys: &[u32],
        head: Range<usize>,
        factors: &mut GradientFactors,
    ) -> Result<Option<f32>> {
        self.loss_and_factors_with(xs, ys, head, factors, FirstPre::Compute)
            .map(Some)
    }

    fn loss_and_factors_kept(
        &mut self,
        xs: Inputs<'_>,
        ys: &[u32],
        head: Range<usize>,
        factors: &mut GradientFactors,
        first: &mut Vec<f32>,
        fresh: bool,
    ) -> Result<Option<f32>> {
        let first = if fresh {
            FirstPre::Keep(first)
        } else {
            self.check_kept(xs, first)?;
            FirstPre::Given(first)
        };
        self.loss_and_factors_with(xs, ys, head, factors, first)
            .map(Some)
    }

    fn step_first_layer(
        &mut self,
        xs: Inputs<'_>,
        kept: &GradientFactors,
        step: &GradientFactors,
        rate: f32,
        first: &mut [f32],
    ) -> Result<bool> {
        self.step_kept_first_layer(xs, kept, step, rate, first)
    }

    fn gradient_from_factors(
        &mut self,
        xs: Inputs<'_>,
        factors: &GradientFactors,
        grad: &mut [f32],
    ) -> Result<()> {
        let n = self.input_rows(xs)?;
        self.check_factors(factors, n)?;
        self.check_grad(grad)?;
        match xs {
            Inputs::Dense(xs) => self.with_input(xs, true, |mlp, input| {
                mlp.weight_gradients(input, factors, grad)
            }),
            Inputs::Sparse(xs) if !xs.has_transpose() => {
                return Err(Error::InvalidOption {
                    option: "sparse batch",
                    reason: "gradients need SparseBatch::build_transpose first".into(),
                })
            }
            Inputs::Sparse(xs) => self.weight_gradients(FirstLayerInput::Sparse(xs), factors, grad),
        }
        Ok(())
    }

    fn factored_dot(
        &mut self,
        a: Inputs<'_>,
        fa: &GradientFactors,
        b: Inputs<'_>,
        fb: &mut GradientFactors,
    ) -> Result<f64> {
        self.dot_of_factors(a, fa, b, fb)
    }

    fn fork(&self) -> Box<dyn Model> {
        Box::new(self.clone())
    }

    fn logits(&mut self, xs: &[f32], out: &mut [f32]) -> Result<()> {
        let n = self.check_inputs(xs)?;
        let classes = self.num_classes();
        if out.len() != n * classes {
            return Err(Error::Shape {
                what: "logits buffer",
                expected: n * classes,
                actual: out.len(),
            });
        }
        self.with_input(xs, false, |mlp, input| {
            mlp.forward(input, n, FirstPre::Compute)
        });
        self.copy_logits(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
