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
use serde::{Deserialize, Serialize};

use super::sparse::{self, SparseBatch};
use super::{check_labels, cross_entropy, Model};
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};

/// Layer sizes of an [`Mlp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Input features.
    pub input: usize,
    /// Widths of the hidden layers (each followed by a ReLU).
    pub hidden: Vec<usize>,
    /// Output classes.
    pub classes: usize,
}

impl Default for MlpConfig {
    /// The paper's MNIST network: 784-100-100-10.
    fn default() -> Self {
        Self {
            input: 784,
            hidden: vec![100, 100],
            classes: 10,
        }
    }
}

impl MlpConfig {
    /// The paper's two hidden layers of 100 between `input` features and `classes` outputs.
    pub fn for_data(input: usize, classes: usize) -> Self {
        Self {
            input,
            hidden: vec![100, 100],
            classes,
        }
    }

    /// All layer widths, input first.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.input];
        w.extend(&self.hidden);
        w.push(self.classes);
        w
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.widths().windows(2).map(|w| w[1] * w[0] + w[1]).sum()
    }
}

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
    /// Post-activation outputs of each layer (the last holds the logits).
    activations: Vec<Vec<f32>>,
    delta: Vec<f32>,
    delta_prev: Vec<f32>,
    /// The current input's non-zero entries, when it is sparse enough.
    sparse_scratch: SparseBatch,
}

impl Mlp {
    /// A network with the reference's initialisation drawn from `rng`; matrix products use
    /// up to `threads` threads of the current rayon pool.
    pub fn new(config: &MlpConfig, threads: usize, rng: &mut impl Rng) -> Result<Self> {
        let widths = config.widths();
        if let Some(pos) = widths.iter().position(|&w| w == 0) {
            return Err(Error::InvalidOption {
                option: "model",
                reason: format!("layer {pos} of {widths:?} has width 0"),
            });
        }
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
            activations: vec![Vec::new(); layers.len()],
            widths,
            layers,
            params,
            threads: threads.max(1),
            delta: Vec::new(),
            delta_prev: Vec::new(),
            sparse_scratch: SparseBatch::default(),
        })
    }

    /// Layer widths, input first.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    fn check_inputs(&self, xs: &[f32]) -> Result<usize> {
        let d = self.widths[0];
        if xs.len() % d != 0 || xs.is_empty() {
            return Err(Error::Shape {
                what: "model input (a whole number of rows)",
                expected: d * (xs.len() / d).max(1),
                actual: xs.len(),
            });
        }
        Ok(xs.len() / d)
    }

    /// Grows the work buffers to hold `n` rows.
    fn reserve(&mut self, n: usize) {
        for (l, act) in self.activations.iter_mut().enumerate() {
            let need = n * self.widths[l + 1];
            if act.len() < need {
                act.resize(need, 0.0);
            }
        }
        let widest = n * self.widths.iter().copied().max().unwrap_or(0);
        for buf in [&mut self.delta, &mut self.delta_prev] {
            if buf.len() < widest {
                buf.resize(widest, 0.0);
            }
        }
    }

    /// Forward pass over `n` inputs; leaves every layer's output in `activations`.
    fn forward(&mut self, input: FirstLayerInput<'_>, n: usize) {
        self.reserve(n);
        let last = self.layers.len() - 1;
        for (l, off) in self.layers.iter().enumerate() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let (before, rest) = self.activations.split_at_mut(l);
            let out = &mut rest[0][..n * fan_out];
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
        out.copy_from_slice(&self.activations[self.layers.len() - 1][..out.len()]);
    }

    fn check_grad(&self, grad: &[f32]) -> Result<()> {
        if grad.len() != self.params.len() {
            return Err(Error::Shape {
                what: "gradient buffer",
                expected: self.params.len(),
                actual: grad.len(),
            });
        }
        Ok(())
    }

    fn check_targets(&self, n: usize, ys: &[u32], head: &Range<usize>, grad: &[f32]) -> Result<()> {
        if ys.len() != n {
            return Err(Error::Shape {
                what: "labels (one per input row)",
                expected: n,
                actual: ys.len(),
            });
        }
        self.check_grad(grad)?;
        check_labels(ys, head, self.num_classes())
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
        self.forward(input, n);
        let last = self.layers.len() - 1;
        let classes = self.num_classes();
        let loss = objective(
            &self.activations[last][..n * classes],
            &mut self.delta[..n * classes],
        );

        for l in (0..self.layers.len()).rev() {
            let (fan_in, fan_out) = (self.widths[l], self.widths[l + 1]);
            let off = self.layers[l];
            let delta = &self.delta[..n * fan_out];
            // dW = input^T * delta (fan_in x fan_out); db = column sums of delta.
            let grad_w = &mut grad[off.weight..off.bias];
            let dense_input = match (l, input) {
                (0, FirstLayerInput::Sparse(xs)) => {
                    sparse::weight_gradient(xs, delta, fan_out, grad_w, self.threads);
                    None
                }
                (0, FirstLayerInput::Dense(xs)) => Some(xs),
                _ => Some(&self.activations[l - 1][..n * fan_in]),
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
            if l > 0 {
                // d(input) = delta * W^T, then through the ReLU of layer l - 1.
                let prev = &mut self.delta_prev[..n * fan_in];
                matmul(
                    MatMut::row_major(prev, n, fan_in),
                    MatRef::row_major(delta, n, fan_out),
                    MatRef::row_major(&self.params[off.weight..off.bias], fan_in, fan_out).t(),
                    false,
                    self.threads,
                );
                // A select, not a conditional store, so that it vectorises.
                for (p, &a) in prev.iter_mut().zip(&self.activations[l - 1][..n * fan_in]) {
                    *p = if a <= 0.0 { 0.0 } else { *p };
                }
                std::mem::swap(&mut self.delta, &mut self.delta_prev);
            }
        }
        loss as f32
    }
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
        if xs.n_cols() != self.widths[0] || xs.n_rows() == 0 {
            return Err(Error::Shape {
                what: "sparse model input (features per row)",
                expected: self.widths[0],
                actual: xs.n_cols(),
            });
        }
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
        self.forward(FirstLayerInput::Sparse(xs), n);
        self.copy_logits(out);
        Ok(())
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
        self.with_input(xs, false, |mlp, input| mlp.forward(input, n));
        self.copy_logits(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn small() -> (Mlp, Vec<f32>, Vec<u32>) {
        let config = MlpConfig {
            input: 6,
            hidden: vec![5, 4],
            classes: 3,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mlp = Mlp::new(&config, 1, &mut rng).unwrap();
        let xs: Vec<f32> = (0..4 * 6).map(|_| rng.random_range(-1.0..1.0)).collect();
        (mlp, xs, vec![0, 2, 1, 2])
    }

    #[test]
    fn gradient_matches_finite_differences_dense_and_sparse_input() {
        let (mlp, xs, ys) = small();
        check_gradient(mlp.clone(), &xs, &ys, 0..3);
        // Mostly-zero inputs take the sparse first layer.
        let sparse: Vec<f32> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| if i % 4 == 0 { x } else { 0.0 })
            .collect();
        check_gradient(mlp, &sparse, &ys, 0..3);
    }

    fn check_gradient(mut mlp: Mlp, xs: &[f32], ys: &[u32], head: Range<usize>) {
        // Non-zero biases so that every parameter matters.
        let p = mlp.num_params();
        for (i, v) in mlp.params_mut().iter_mut().enumerate() {
            *v += 0.05 * ((i as f32) * 0.7).sin();
        }
        let mut grad = vec![0.0; p];
        mlp.loss_and_grad(xs, ys, head.clone(), &mut grad).unwrap();
        let mut scratch = vec![0.0; p];
        let h = 1e-3f32;
        let mut worst = 0.0f32;
        for (i, &analytic) in grad.iter().enumerate() {
            let orig = mlp.params()[i];
            mlp.params_mut()[i] = orig + h;
            let up = mlp
                .loss_and_grad(xs, ys, head.clone(), &mut scratch)
                .unwrap();
            mlp.params_mut()[i] = orig - h;
            let down = mlp
                .loss_and_grad(xs, ys, head.clone(), &mut scratch)
                .unwrap();
            mlp.params_mut()[i] = orig;
            let fd = (up - down) / (2.0 * h);
            let err = (fd - analytic).abs() / (1e-2 + analytic.abs());
            worst = worst.max(err);
        }
        assert!(worst < 2e-2, "worst relative gradient error {worst}");
        assert!(grad.iter().any(|g| g.abs() > 1e-3));
    }

    #[test]
    fn init_follows_xavier_uniform_with_zero_bias() {
        let config = MlpConfig::default();
        let mlp = Mlp::new(&config, 1, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert_eq!(
            mlp.num_params(),
            784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
        );
        let a1 = (3.0f32).sqrt() * (2.0f32 / 884.0).sqrt();
        let w1 = &mlp.params()[..78_400];
        assert!(w1.iter().all(|w| w.abs() <= a1));
        assert!(w1.iter().map(|w| w.abs()).fold(0.0, f32::max) > 0.95 * a1);
        assert!(mlp.params()[78_400..78_500].iter().all(|&b| b == 0.0));
    }

    #[test]
    fn logits_agree_with_loss_and_batching() {
        let (mut mlp, xs, ys) = small();
        let mut all = vec![0.0; 4 * 3];
        mlp.logits(&xs, &mut all).unwrap();
        let mut one = vec![0.0; 3];
        mlp.logits(&xs[6..12], &mut one).unwrap();
        assert_eq!(&all[3..6], &one[..]);
        let expected: f32 = all
            .chunks(3)
            .zip(&ys)
            .map(|(r, &y)| {
                let lse = r.iter().map(|v| v.exp()).sum::<f32>().ln();
                lse - r[y as usize]
            })
            .sum::<f32>()
            / 4.0;
        let mut grad = vec![0.0; mlp.num_params()];
        let loss = mlp.loss_and_grad(&xs, &ys, 0..3, &mut grad).unwrap();
        assert!((loss - expected).abs() < 1e-5);
    }

    #[test]
    fn rejects_bad_shapes_and_labels() {
        let (mut mlp, xs, _) = small();
        let mut grad = vec![0.0; mlp.num_params()];
        assert!(mlp.loss_and_grad(&xs[..5], &[0], 0..3, &mut grad).is_err());
        assert!(mlp.loss_and_grad(&xs, &[0, 1], 0..3, &mut grad).is_err());
        assert!(mlp
            .loss_and_grad(&xs, &[0, 1, 3, 0], 0..3, &mut grad)
            .is_err());
        assert!(mlp
            .loss_and_grad(&xs, &[0, 1, 2, 0], 0..3, &mut grad[1..])
            .is_err());
        let outside = mlp
            .loss_and_grad(&xs, &[0, 1, 2, 0], 1..3, &mut grad)
            .unwrap_err();
        assert!(matches!(outside, Error::LabelOutsideHead { label: 0, .. }));
        assert!(mlp
            .loss_and_grad(&xs, &[1, 1, 2, 1], 2..2, &mut grad)
            .is_err());
        assert!(mlp
            .loss_and_grad(&xs, &[1, 1, 2, 1], 1..4, &mut grad)
            .is_err());
        assert!(mlp.logits(&xs, &mut [0.0; 3]).is_err());
    }

    #[test]
    fn masked_head_uses_only_its_logits() {
        let (mlp, xs, _) = small();
        let ys = vec![1, 2, 2, 1];
        check_gradient(mlp.clone(), &xs, &ys, 1..3);
        let mut mlp = mlp;
        let mut logits = vec![0.0; 4 * 3];
        mlp.logits(&xs, &mut logits).unwrap();
        let expected: f32 = logits
            .chunks(3)
            .zip(&ys)
            .map(|(r, &y)| {
                let lse = r[1..].iter().map(|v| v.exp()).sum::<f32>().ln();
                lse - r[y as usize]
            })
            .sum::<f32>()
            / 4.0;
        let mut grad = vec![0.0; mlp.num_params()];
        let loss = mlp.loss_and_grad(&xs, &ys, 1..3, &mut grad).unwrap();
        assert!((loss - expected).abs() < 1e-5);
        // The masked class's output bias gets no gradient.
        let p = mlp.num_params();
        assert_eq!(grad[p - 3], 0.0);
        assert!(grad[p - 2].abs() > 0.0);
    }

    #[test]
    fn custom_objective_matches_cross_entropy() {
        let (mut mlp, xs, ys) = small();
        let mut expected = vec![0.0; mlp.num_params()];
        let want = mlp.loss_and_grad(&xs, &ys, 0..3, &mut expected).unwrap();
        let mut grad = vec![0.0; mlp.num_params()];
        let got = mlp
            .loss_and_grad_with(&xs, &mut grad, &mut |logits, dlogits| {
                crate::model::cross_entropy(logits, 3, &ys, 0..3, dlogits)
            })
            .unwrap();
        assert_eq!(got, want);
        assert_eq!(grad, expected);
    }
}
