//! Models whose trainable parameters are one flat `f32` vector.
//!
//! GEM and its relatives reason about "the gradient" as one vector; a model that keeps all its
//! parameters contiguous lets a method store a task's gradient as one row of a matrix and
//! project or step with plain slice arithmetic.

mod config;
mod factors;
mod mlp;
pub(crate) mod resnet;
mod sparse;

pub use config::ModelConfig;
pub use factors::GradientFactors;
pub use mlp::{Mlp, MlpConfig};
pub use resnet::{ResNet, ResNetConfig};
pub use sparse::{FeatureFold, SparseBatch};

use std::ops::Range;

use crate::error::{Error, Result};

/// A batch of model inputs: dense rows, or their non-zero entries.
#[derive(Debug, Clone, Copy)]
pub enum Inputs<'a> {
    /// Row-major rows of `input_dim` features.
    Dense(&'a [f32]),
    /// The rows' non-zero entries (with the transpose built, for gradients).
    Sparse(&'a SparseBatch),
}

/// A classifier whose trainable parameters are one flat `f32` vector.
pub trait Model: Send {
    /// Number of trainable parameters.
    fn num_params(&self) -> usize;
    /// The parameters.
    fn params(&self) -> &[f32];
    /// The parameters, for an optimiser step.
    fn params_mut(&mut self) -> &mut [f32];
    /// State that training passes update but gradients do not cover (BatchNorm's running
    /// statistics): saved in checkpoints with the parameters. Empty for models without.
    fn buffers(&self) -> &[f32] {
        &[]
    }
    /// [`Model::buffers`], to restore them.
    fn buffers_mut(&mut self) -> &mut [f32] {
        &mut []
    }
    /// The statistics the last training pass measured to move the buffers with
    /// (BatchNorm's batch means and variances); empty for models without buffers.
    fn pass_statistics(&self) -> &[f32] {
        &[]
    }
    /// Moves the buffers as a training pass that measured `statistics` (from
    /// [`Model::pass_statistics`] of this model or of a fork) does.
    fn apply_pass_statistics(&mut self, _statistics: &[f32]) {}
    /// Whether training passes move the buffers themselves (the default) or only measure
    /// their statistics, for a method that applies them in an order of its own (GEM, whose
    /// memory passes may run on forks). Forks inherit the setting.
    fn set_buffer_updates(&mut self, _on: bool) {}
    /// Input features per example.
    fn input_dim(&self) -> usize;
    /// Number of output classes.
    fn num_classes(&self) -> usize;
    /// Mean cross-entropy of the batch (`xs`: one row of `input_dim` per label in `ys`) over
    /// the classes of `head` (every class on a shared-head benchmark, the task's own on a
    /// multi-head one; the other logits are masked out); writes its gradient with respect to
    /// every parameter into `grad` (overwritten).
    fn loss_and_grad(
        &mut self,
        xs: &[f32],
        ys: &[u32],
        head: Range<usize>,
        grad: &mut [f32],
    ) -> Result<f32>;
    /// [`Model::loss_and_grad`] for inputs given by their non-zero entries (built once and
    /// reused by callers whose inputs do not change, such as a past task's memory). Models
    /// without a sparse path use the dense one.
    fn loss_and_grad_sparse(
        &mut self,
        xs: &SparseBatch,
        ys: &[u32],
        head: Range<usize>,
        grad: &mut [f32],
    ) -> Result<f32> {
        self.loss_and_grad(&xs.to_dense(), ys, head, grad)
    }
    /// Any loss of the logits: `objective(logits, dlogits)` receives the logits of the
    /// `xs.len() / input_dim` inputs (row-major), writes the loss's gradient with respect to
    /// them into `dlogits` and returns the loss; the gradient with respect to every parameter
    /// goes to `grad` (overwritten). Distillation and other soft-target losses use this.
    fn loss_and_grad_with(
        &mut self,
        xs: &[f32],
        grad: &mut [f32],
        objective: &mut dyn FnMut(&[f32], &mut [f32]) -> f64,
    ) -> Result<f32>;
    /// [`Model::logits`] for inputs given by their non-zero entries; models without a sparse
    /// path use the dense one.
    fn logits_sparse(&mut self, xs: &SparseBatch, out: &mut [f32]) -> Result<()> {
        self.logits(&xs.to_dense(), out)
    }
    /// The mean cross-entropy of `xs` (as [`Model::loss_and_grad`]) with its gradient kept
    /// as factors in `factors` (see [`GradientFactors`]) instead of formed; `Ok(None)` for
    /// models whose gradients do not factor (callers then form them).
    fn loss_and_factors(
        &mut self,
        _xs: Inputs<'_>,
        _ys: &[u32],
        _head: Range<usize>,
        _factors: &mut GradientFactors,
    ) -> Result<Option<f32>> {
        Ok(None)
    }
    /// The gradient (into `grad`, overwritten) whose factors [`Model::loss_and_factors`]
    /// wrote for the same inputs `xs` and the current parameters: bit for bit what
    /// [`Model::loss_and_grad`] gives.
    fn gradient_from_factors(
        &mut self,
        _xs: Inputs<'_>,
        _factors: &GradientFactors,
        _grad: &mut [f32],
    ) -> Result<()> {
        Err(Error::InvalidOption {
            option: "model",
            reason: "this model does not factor its gradients".into(),
        })
    }
    /// [`Model::loss_and_factors`] for inputs that stay the same from step to step (a past
    /// task's episodic memory), with their first layer's pre-activations kept in `first`:
    /// computed and written there when `fresh`, else taken from there as they are (kept up
    /// to date by [`Model::step_first_layer`] in between). Models that keep nothing leave
    /// `first` empty and compute everything every time.
    fn loss_and_factors_kept(
        &mut self,
        xs: Inputs<'_>,
        ys: &[u32],
        head: Range<usize>,
        factors: &mut GradientFactors,
        first: &mut Vec<f32>,
        fresh: bool,
    ) -> Result<Option<f32>> {
        let _ = fresh;
        first.clear();
        self.loss_and_factors(xs, ys, head, factors)
    }
    /// Moves `first`, the first layer's pre-activations of the inputs `xs` (kept by
    /// [`Model::loss_and_factors_kept`], whose factors `kept` are), by the plain SGD step
    /// `-rate` times the gradient whose factors are `step`: from the first layers' Gram
    /// matrix that the last [`Model::factored_dot`] of `step` with `kept` left in `kept`,
    /// a rank-`step.rows()` update instead of a new product with the first layer. Equal to
    /// recomputing them after the step up to rounding. Returns false, changing nothing,
    /// when it cannot (no Gram matrix kept, or a model that keeps nothing).
    fn step_first_layer(
        &mut self,
        _xs: Inputs<'_>,
        _kept: &GradientFactors,
        _step: &GradientFactors,
        _rate: f32,
        _first: &mut [f32],
    ) -> Result<bool> {
        Ok(false)
    }
    /// The inner product of two factored gradients (`fa` computed on `a`, `fb` on `b`),
    /// without forming them; equal to the product of the formed gradients up to rounding.
    /// Leaves the first layers' Gram matrix in `fb` (for [`Model::step_first_layer`]).
    fn factored_dot(
        &mut self,
        _a: Inputs<'_>,
        _fa: &GradientFactors,
        _b: Inputs<'_>,
        _fb: &mut GradientFactors,
    ) -> Result<f64> {
        Err(Error::InvalidOption {
            option: "model",
            reason: "this model does not factor its gradients".into(),
        })
    }
    /// An independent copy (same parameters, its own work buffers), e.g. for a worker thread.
    fn fork(&self) -> Box<dyn Model>;
    /// Writes the logits of the `xs.len() / input_dim` inputs into `out` (row-major).
    fn logits(&mut self, xs: &[f32], out: &mut [f32]) -> Result<()>;
}

/// Mean softmax cross-entropy of `logits` (`classes` columns, one row per label) restricted
/// to the classes of `head`; writes d(mean loss)/d(logits) into `dlogits` (zero outside the
/// head). With the whole range as head this is the plain cross-entropy.
pub fn cross_entropy(
    logits: &[f32],
    classes: usize,
    ys: &[u32],
    head: Range<usize>,
    dlogits: &mut [f32],
) -> f64 {
    let n = ys.len();
    let mut loss = 0.0f64;
    let scale = 1.0 / n as f32;
    for ((row, d), &y) in logits
        .chunks_exact(classes)
        .zip(dlogits.chunks_exact_mut(classes))
        .zip(ys)
    {
        d.fill(0.0);
        let (row, d) = (&row[head.clone()], &mut d[head.clone()]);
        let y = y as usize - head.start;
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (dj, &z) in d.iter_mut().zip(row) {
            *dj = (z - max).exp();
            sum += *dj;
        }
        loss += f64::from(sum.ln() + max - row[y]);
        for dj in d.iter_mut() {
            *dj *= scale / sum;
        }
        d[y] -= scale;
    }
    loss / n as f64
}

/// Checks that `head` lies inside the model's `classes` and every label inside `head`.
pub(crate) fn check_labels(ys: &[u32], head: &Range<usize>, classes: usize) -> Result<()> {
    if head.start >= head.end || head.end > classes {
        return Err(Error::InvalidOption {
            option: "head",
            reason: format!(
                "classes {}..{} are not a non-empty part of the model's {classes}",
                head.start, head.end
            ),
        });
    }
    if let Some(&label) = ys.iter().find(|&&y| y as usize >= classes) {
        return Err(Error::LabelOutOfRange {
            label,
            classes,
            context: None,
        });
    }
    if let Some(&label) = ys.iter().find(|&&y| !head.contains(&(y as usize))) {
        return Err(Error::LabelOutsideHead {
            label,
            start: head.start,
            end: head.end,
        });
    }
    Ok(())
}

/// Writes the arg-max class within `head` of each row of `logits` (`classes` columns) into
/// `out`.
pub fn argmax_in_head(logits: &[f32], classes: usize, head: Range<usize>, out: &mut [u32]) {
    for (row, o) in logits.chunks_exact(classes).zip(out.iter_mut()) {
        let mut best = head.start;
        for j in head.clone() {
            if row[j] > row[best] {
                best = j;
            }
        }
        *o = best as u32;
    }
}
