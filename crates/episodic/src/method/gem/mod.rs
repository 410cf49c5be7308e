//! `gem`: Gradient Episodic Memory.
//!
//! Lopez-Paz and Ranzato, "Gradient Episodic Memory for Continual Learning", NIPS 2017
//! (arXiv:1706.08840).
//!
//! At every step on task t: write the batch into task t's episodic memory; compute the
//! gradient g_k of the mean loss on each earlier task's whole memory (rows of G) and the
//! batch gradient g. If <g, g_k> >= 0 for every k, step with g. Otherwise solve the dual QP
//!
//! ```text
//! minimize_v 1/2 v'(G G' + eps I) v + (G g)' v   subject to   v >= margin
//! ```
//!
//! and step with g~ = G' v + g (plain SGD). At the optimum G g~ = lambda - eps v with
//! lambda >= 0, so <g~, g_k> >= -eps v_k for every past task.
//!
//! Hyper-parameters (paper defaults on both MNIST continua): learning rate 0.1,
//! `memories_per_task` 256, `margin` 0.5, `eps` 1e-3. On a class-split benchmark each past
//! task's memory loss uses that task's head.
//!
//! Faults, and what GEM does about them (each is tested):
//! - a NaN or infinite loss or gradient (of the batch or of a memory) stops the step with
//!   an error naming the step and task, before anything is changed;
//! - zero past gradients (a memory the model fits exactly) or duplicated ones (two tasks
//!   with the same memory) need nothing special: the ridge `eps` keeps the QP strictly
//!   convex and the projection exact;
//! - a QP without a trustworthy solution (numerically singular, or not converged) makes
//!   the step's update zero, the one update that cannot raise any past task's loss; the
//!   step is counted in `skipped_steps`.
//!
//! Differences from the reference implementation: each task's memory has its own write
//! cursor (the reference shares one across tasks and drops the tail of a batch that wraps),
//! and a memory that is not yet full contributes only the examples written (the reference
//! reads uninitialised rows). The margin sits in the constraint, as in the reference code
//! (the paper adds it to v* afterwards). The QP is solved exactly in f64 by our own
//! active-set solver; gradients are kept in f32 in one preallocated row-per-task matrix.
//! With several threads, the past tasks' memory gradients are shared among copies of the
//! model (one per thread, synchronised every step); each gradient is computed exactly as it
//! would be on one thread, so the thread count does not change the results.
//!
//! The violation check without the gradients: for a model whose gradients factor (the MLP,
//! see [`crate::model::GradientFactors`]), <g, g_k> comes from small Gram matrices of the
//! batch's and the memory's layer inputs and output gradients, and the past gradients g_k
//! are formed (from the same factors, bit for bit as directly) only on the steps that the
//! check flags, about two in five on MNIST. On a flagged step the QP and the final decision
//! use the inner products of the formed gradients, exactly as before; the factored products
//! differ from them by rounding only, and a test checks that the two decide alike on at
//! least 99.9% of a continuum's steps.
//!
//! Kept first layers: a past task's memory does not change, so after a plain step (no
//! projection) its first-layer pre-activations move by a rank-|B| update from the Gram
//! matrix the check already computed (see [`Model::step_first_layer`]), instead of a new
//! product of the memory with the first layer; after a projected or skipped step, or when
//! the memory changes, they are computed anew. This changes the rounding only (a test bounds
//! the drift against recomputing them at 1e-5 of their scale); they are part of the saved
//! state, so a resumed run continues exactly as an uninterrupted one.

use std::ops::Range;
use std::time::Instant;

use super::{
    check_batch, check_gradient, check_loss, check_step, load_memories, save_memories, Batch,
    Heads, Method, MethodStats,
};
use crate::config::GemParams;
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};
use crate::memory::RingMemory;
use crate::model::{GradientFactors, Inputs, Model};
use crate::optim::{Sgd, SgdConfig};
use crate::qp::QpWorkspace;
use crate::state::State;

mod kept;
mod past;
mod project;

use kept::KeptFirstLayer;
use past::{each_past_task, memory_inputs, PastBuffers};

/// Gradient Episodic Memory.
pub struct Gem {
    model: Box<dyn Model>,
    /// Copies of the model for the other threads' memory gradients.
    workers: Vec<Box<dyn Model>>,
    /// Indices into `memories` of the past tasks of the current step.
    past_slots: Vec<usize>,
    params: GemParams,
    /// Steps the model along the method's update direction.
    sgd: Sgd,
    heads: Heads,
    /// (task, memory) in the order tasks were first observed.
    memories: Vec<(usize, RingMemory)>,
    /// Row r: gradient on the memory of the r-th past task of the step.
    past_grads: Vec<f32>,
    /// The r-th past task's gradient factors (when the model factors its gradients).
    past_factors: Vec<GradientFactors>,
    /// The r-th past task's first-layer pre-activations, kept from step to step.
    past_kept: Vec<KeptFirstLayer>,
    /// Per past task, the statistics its memory pass measured for the model's buffers;
    /// and the batch's (see [`Self::apply_pass_statistics`]).
    past_statistics: Vec<Vec<f32>>,
    batch_statistics: Vec<f32>,
    /// The batch gradient's factors.
    batch_factors: GradientFactors,
    grad: Vec<f32>,
    /// <g, g_k> for each past task, from the formed gradients.
    dots: Vec<f32>,
    /// <g, g_k> for each past task, from the factors.
    factored_dots: Vec<f64>,
    gram: Vec<f32>,
    qp_matrix: Vec<f64>,
    qp_linear: Vec<f64>,
    dual: Vec<f64>,
    dual_f32: Vec<f32>,
    qp: QpWorkspace,
    logits: Vec<f32>,
    stats: MethodStats,
    /// When set, every step also forms the past gradients and counts whether their inner
    /// products decide as the factored ones did.
    audit: Option<DecisionAudit>,
    /// Whether the workers hold the model's current parameters.
    workers_in_sync: bool,
}

/// How often the factored violation check decided as the formed gradients do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionAudit {
    /// Steps with at least one past task that were checked both ways.
    pub steps: u64,
    /// Of those, the steps on which both found the same answer (violation or none).
    pub agreements: u64,
}

impl Gem {
    /// GEM around `model` (`heads`: each task's classes) with checked hyper-parameters. The
    /// number of tasks need not be known: the memories and the gradient matrix grow as
    /// tasks appear. Memory gradients run on one thread unless [`Self::with_threads`] says
    /// otherwise.
    pub fn new(model: Box<dyn Model>, params: GemParams, heads: Heads) -> Result<Self> {
        crate::config::MethodConfig::Gem(params).validate()?;
        Ok(Self::sized(model, params, heads, 1, 1))
    }

    /// The same stepping with the momentum and weight decay of `config` (plain SGD, the
    /// paper's, unless told otherwise).
    pub fn with_optimizer(mut self, config: SgdConfig) -> Self {
        self.sgd = Sgd::new(self.params.learning_rate, config);
        self
    }

    /// The same with buffers allocated for `tasks` tasks at once (no growth on the way).
    pub fn with_expected_tasks(self, tasks: usize) -> Self {
        let threads = self.workers.len() + 1;
        let sgd = self.sgd.clone();
        Self {
            sgd,
            ..Self::sized(self.model, self.params, self.heads, tasks, threads)
        }
    }

    /// The same computing the past tasks' memory gradients on up to `threads` threads
    /// (results do not depend on it).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.workers = (1..threads.max(1)).map(|_| self.model.fork()).collect();
        self.workers_in_sync = false;
        self
    }

    /// The same checking, at every step, the factored violation check against the inner
    /// products of the formed past gradients (slower; the trajectory is unchanged).
    pub fn with_decision_audit(mut self) -> Self {
        self.audit = Some(DecisionAudit::default());
        self
    }

    /// The audit's counts so far, if [`Self::with_decision_audit`] turned it on.
    pub fn decision_audit(&self) -> Option<DecisionAudit> {
        self.audit
    }

    fn sized(
        model: Box<dyn Model>,
        params: GemParams,
        heads: Heads,
        tasks: usize,
        threads: usize,
    ) -> Self {
        let mut model = model;
        // GEM moves the buffers itself, in the reference's order (see
        // `apply_pass_statistics`).
        model.set_buffer_updates(false);
        let p = model.num_params();
        let t = tasks.max(1);
        Self {
            workers: (1..threads.max(1)).map(|_| model.fork()).collect(),
            past_slots: Vec::with_capacity(t),
            past_grads: vec![0.0; t * p],
            past_factors: Vec::new(),
            past_kept: Vec::new(),
            past_statistics: Vec::new(),
            batch_statistics: Vec::new(),
            batch_factors: GradientFactors::default(),
            grad: vec![0.0; p],
            dots: vec![0.0; t],
            factored_dots: vec![0.0; t],
            gram: vec![0.0; t * t],
            qp_matrix: vec![0.0; t * t],
            qp_linear: vec![0.0; t],
            dual: vec![0.0; t],
            dual_f32: vec![0.0; t],
            qp: QpWorkspace::new(t),
            memories: Vec::with_capacity(t),
            model,
            sgd: Sgd::plain(params.learning_rate),
            params,
            heads,
            logits: Vec::new(),
            stats: MethodStats::default(),
            audit: None,
            workers_in_sync: false,
        }
    }

    /// Index of `task`'s memory, creating it on first sight.
    /// Moves the model's buffers (BatchNorm's running statistics) as the reference's
    /// training passes do: each of the `past` tasks' memory passes in task order, then the
    /// batch's. The passes themselves leave the buffers alone, so that the thread count
    /// (memory passes run on forks) and GEM's own order of passes change nothing.
    fn apply_pass_statistics(&mut self, past: usize) {
        for statistics in &self.past_statistics[..past] {
            self.model.apply_pass_statistics(statistics);
        }
        self.model.apply_pass_statistics(&self.batch_statistics);
    }

    fn memory_slot(&mut self, task: usize) -> usize {
        if let Some(slot) = self.memories.iter().position(|(t, _)| *t == task) {
            return slot;
        }
        let memory = RingMemory::new(self.params.memories_per_task, self.model.input_dim());
        self.memories.push((task, memory));
        let t = self.memories.len();
        let p = self.model.num_params();
        if self.past_grads.len() < t * p {
            self.past_grads.resize(t * p, 0.0);
            for buf in [&mut self.dots, &mut self.dual_f32] {
                buf.resize(t, 0.0);
            }
            self.gram.resize(t * t, 0.0);
            self.qp_matrix.resize(t * t, 0.0);
            self.qp_linear.resize(t, 0.0);
            self.dual.resize(t, 0.0);
        }
        if self.factored_dots.len() < t {
            self.factored_dots.resize(t, 0.0);
        }
        self.memories.len() - 1
    }

    /// The buffers of a pass over the past tasks.
    fn past_buffers(&mut self) -> PastBuffers<'_> {
        let p = self.grad.len();
        self.past_buffers_for(p)
    }

    /// [`Self::past_buffers`] for gradients of `p` parameters (while `grad` is lent out).
    fn past_buffers_for(&mut self, p: usize) -> PastBuffers<'_> {
        let past = self.past_slots.len();
        if self.past_factors.len() < past {
            self.past_factors
                .resize_with(past, GradientFactors::default);
        }
        if self.past_kept.len() < past {
            self.past_kept.resize_with(past, KeptFirstLayer::default);
        }
        if self.past_statistics.len() < past {
            self.past_statistics.resize_with(past, Vec::new);
        }
        PastBuffers {
            model: &mut self.model,
            workers: &mut self.workers,
            memories: &self.memories,
            slots: &self.past_slots,
            heads: &self.heads,
            factors: &mut self.past_factors,
            kept: &mut self.past_kept,
            rows: &mut self.past_grads,
            dots: &mut self.factored_dots,
            formed_dots: &mut self.dots,
            statistics: &mut self.past_statistics,
            params: p,
            sync_workers: !std::mem::replace(&mut self.workers_in_sync, true),
        }
    }

    /// Fills row r of `past_grads` with the gradient on the r-th past task's memory,
    /// computed directly (models whose gradients do not factor).
    fn memory_gradients(&mut self) -> Result<()> {
        each_past_task(self.past_buffers(), |t| {
            memory_gradient(t.model, t.memory, t.head, t.row)?;
            t.statistics.clear();
            t.statistics.extend_from_slice(t.model.pass_statistics());
            Ok(())
        })
    }

    /// The factors of every past task's memory gradient, then their factored inner products
    /// with the batch gradient (into `factored_dots`); times both.
    fn factored_check(&mut self, batch: &Batch<'_>) -> Result<()> {
        let started = Instant::now();
        let step = self.stats.steps;
        each_past_task(self.past_buffers(), |t| {
            let inputs = memory_inputs(t.memory);
            let fresh = t.kept.slot != Some(t.slot);
            let (ys, values) = (t.memory.ys(), &mut t.kept.values);
            t.kept.slot = None;
            let loss = t
                .model
                .loss_and_factors_kept(inputs, ys, t.head, t.factors, values, fresh)?
                .ok_or_else(|| Error::InvalidOption {
                    option: "model",
                    reason: "its gradients factored for the batch but not for a memory".into(),
                })?;
            // Kept for the next step when the model keeps them.
            t.kept.slot = (!t.kept.values.is_empty()).then_some(t.slot);
            check_loss(loss, batch.task, step)
        })?;
        self.stats.memory_gradient_time += started.elapsed();

        let started = Instant::now();
        let batch_factors = std::mem::take(&mut self.batch_factors);
        let checked = each_past_task(self.past_buffers(), |t| {
            let inputs = memory_inputs(t.memory);
            *t.dot =
                t.model
                    .factored_dot(Inputs::Dense(batch.xs), &batch_factors, inputs, t.factors)?;
            Ok(())
        });
        self.batch_factors = batch_factors;
        checked?;
        let past = self.past_slots.len();
        if self.factored_dots[..past].iter().any(|d| !d.is_finite()) {
            return Err(Error::NonFiniteGradient {
                task: batch.task,
                step: step as usize,
            });
        }
        self.stats.violation_check_time += started.elapsed();
        Ok(())
    }

    /// Forms every past task's gradient from its factors (into `past_grads`), checks it and
    /// takes its inner product with the batch gradient (into `dots`) while it is in cache;
    /// returns whether one is negative.
    fn gradients_from_factors(&mut self, task: usize) -> Result<bool> {
        let started = Instant::now();
        let step = self.stats.steps;
        let grad = std::mem::take(&mut self.grad);
        let p = grad.len();
        let formed = each_past_task(self.past_buffers_for(p), |t| {
            let inputs = memory_inputs(t.memory);
            t.model.gradient_from_factors(inputs, t.factors, t.row)?;
            check_gradient(t.row, task, step)?;
            matmul(
                MatMut::row_major(std::slice::from_mut(t.formed_dot), 1, 1),
                MatRef::row_major(t.row, 1, p),
                MatRef::row_major(&grad, p, 1),
                false,
                1,
            );
            Ok(())
        });
        self.grad = grad;
        formed?;
        self.stats.memory_gradient_time += started.elapsed();
        let past = self.past_slots.len();
        Ok(self.dots[..past].iter().any(|&d| d < 0.0))
    }

    /// The batch's loss and gradient (into `grad`), keeping the gradient's factors when the
    /// model has them; returns the loss and whether it has.
    fn batch_gradient(&mut self, batch: &Batch<'_>, head: Range<usize>) -> Result<(f32, bool)> {
        let inputs = Inputs::Dense(batch.xs);
        match self.model.loss_and_factors(
            inputs,
            batch.ys,
            head.clone(),
            &mut self.batch_factors,
        )? {
            Some(loss) => {
                self.model
                    .gradient_from_factors(inputs, &self.batch_factors, &mut self.grad)?;
                Ok((loss, true))
            }
            None => {
                let loss = self
                    .model
                    .loss_and_grad(batch.xs, batch.ys, head, &mut self.grad)?;
                self.batch_statistics.clear();
                self.batch_statistics
                    .extend_from_slice(self.model.pass_statistics());
                Ok((loss, false))
            }
        }
    }

    /// <g, g_k> of the formed gradients, into `dots`; returns whether one is negative.
    fn formed_dots(&mut self, past: usize) -> bool {
        let p = self.grad.len();
        matmul(
            MatMut::row_major(&mut self.dots[..past], past, 1),
            MatRef::row_major(&self.past_grads[..past * p], past, p),
            MatRef::row_major(&self.grad, p, 1),
            false,
            1,
        );
        self.dots[..past].iter().any(|&d| d < 0.0)
    }
}

impl Gem {
    /// Whether the step violates a past task's constraint, with the past gradients formed
    /// (in `past_grads`) and their inner products in `dots` whenever it does.
    fn violation(&mut self, batch: &Batch<'_>, factored: bool) -> Result<bool> {
        let past = self.past_slots.len();
        let p = self.grad.len();
        if !factored {
            let started = Instant::now();
            self.memory_gradients()?;
            check_gradient(&self.past_grads[..past * p], batch.task, self.stats.steps)?;
            self.stats.memory_gradient_time += started.elapsed();
            let started = Instant::now();
            let violated = self.formed_dots(past);
            self.stats.violation_check_time += started.elapsed();
            return Ok(violated);
        }
        self.factored_check(batch)?;
        let flagged = self.factored_dots[..past].iter().any(|&d| d < 0.0);
        if !flagged && self.audit.is_none() {
            return Ok(false);
        }
        let violated = self.gradients_from_factors(batch.task)?;
        if let Some(audit) = &mut self.audit {
            audit.steps += 1;
            audit.agreements += u64::from(violated == flagged);
        }
        // The decision is the factored check's, confirmed by the formed gradients.
        Ok(flagged && violated)
    }
}

/// The gradient of the mean loss on `memory` (whose task predicts among `head`), into `row`.
pub(crate) fn memory_gradient(
    model: &mut dyn Model,
    memory: &RingMemory,
    head: Range<usize>,
    row: &mut [f32],
) -> Result<f32> {
    match memory.sparse_xs() {
        Some(xs) => model.loss_and_grad_sparse(xs, memory.ys(), head, row),
        None => model.loss_and_grad(memory.xs(), memory.ys(), head, row),
    }
}

impl Method for Gem {
    fn name(&self) -> &'static str {
        "gem"
    }

    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32> {
        let head = check_batch(self.model.as_ref(), &self.heads, batch)?;
        // Nothing changes until every check of the step has passed: a failed step leaves the
        // method as it was after the previous one (the last good state).
        let (loss, factored) = self.batch_gradient(batch, head)?;
        check_step(loss, &self.grad, batch.task, self.stats.steps)?;

        self.past_slots.clear();
        for (slot, (task, memory)) in self.memories.iter_mut().enumerate() {
            if *task != batch.task && !memory.is_empty() {
                memory.refresh_sparse();
                self.past_slots.push(slot);
            }
        }
        let past = self.past_slots.len();
        let violated = past > 0 && self.violation(batch, factored)?;
        if violated {
            let projection = self.project(past, batch.task);
            self.settle_projection(projection)?;
            check_gradient(&self.grad, batch.task, self.stats.steps)?;
        }
        self.carry_kept_first_layers(factored && !violated)?;

        self.sgd.step(self.model.params_mut(), &self.grad);
        self.workers_in_sync = false;
        if !factored {
            self.apply_pass_statistics(past);
        }
        let slot = self.memory_slot(batch.task);
        self.memories[slot].1.push_batch(batch.xs, batch.ys);
        // A memory that changed keeps nothing.
        for kept in self.past_kept.iter_mut().filter(|k| k.slot == Some(slot)) {
            kept.slot = None;
        }
        self.stats.steps += 1;
        Ok(loss)
    }

    one_network_predictions!();

    fn save(&self, state: &mut State) -> Result<()> {
        state.put_model("model", self.model.as_ref());
        self.sgd.save(state, "optimizer.velocity");
        save_memories(state, "memory", &self.memories)?;
        kept::save(state, &self.past_kept)?;
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_model("model", self.model.as_mut())?;
        let n = self.model.num_params();
        self.sgd.load(state, "optimizer.velocity", n)?;
        self.workers_in_sync = false;
        // Task indices only label GEM's memories; any number of tasks is allowed.
        let memories = load_memories(
            state,
            "memory",
            self.params.memories_per_task,
            self.model.as_ref(),
            usize::MAX,
        )?;
        self.memories.clear();
        for (task, memory) in memories {
            let slot = self.memory_slot(task);
            self.memories[slot].1 = memory;
        }
        self.past_kept = kept::load(state, self.memories.len())?;
        self.stats = state.get("stats")?;
        Ok(())
    }
}

#[cfg(test)]
mod resnet_tests;
#[cfg(test)]
mod tests;
