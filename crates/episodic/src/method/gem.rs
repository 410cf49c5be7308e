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

use std::ops::Range;
use std::time::Instant;

use rayon::prelude::*;

use super::{
    check_batch, check_gradient, check_step, load_memories, save_memories, sgd_step, Batch, Heads,
    Method, MethodStats,
};
use crate::config::GemParams;
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};
use crate::memory::RingMemory;
use crate::model::Model;
use crate::qp::{QpError, QpWorkspace};
use crate::state::State;

/// Gradient Episodic Memory.
pub struct Gem {
    model: Box<dyn Model>,
    /// Copies of the model for the other threads' memory gradients.
    workers: Vec<Box<dyn Model>>,
    /// Indices into `memories` of the past tasks of the current step.
    past_slots: Vec<usize>,
    params: GemParams,
    heads: Heads,
    /// (task, memory) in the order tasks were first observed.
    memories: Vec<(usize, RingMemory)>,
    /// Row r: gradient on the memory of the r-th observed task (past tasks only are filled).
    past_grads: Vec<f32>,
    grad: Vec<f32>,
    /// <g, g_k> for each past task.
    dots: Vec<f32>,
    gram: Vec<f32>,
    qp_matrix: Vec<f64>,
    qp_linear: Vec<f64>,
    dual: Vec<f64>,
    dual_f32: Vec<f32>,
    qp: QpWorkspace,
    logits: Vec<f32>,
    stats: MethodStats,
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

    /// The same with buffers allocated for `tasks` tasks at once (no growth on the way).
    pub fn with_expected_tasks(self, tasks: usize) -> Self {
        let threads = self.workers.len() + 1;
        Self::sized(self.model, self.params, self.heads, tasks, threads)
    }

    /// The same computing the past tasks' memory gradients on up to `threads` threads
    /// (results do not depend on it).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.workers = (1..threads.max(1)).map(|_| self.model.fork()).collect();
        self
    }

    fn sized(
        model: Box<dyn Model>,
        params: GemParams,
        heads: Heads,
        tasks: usize,
        threads: usize,
    ) -> Self {
        let p = model.num_params();
        let t = tasks.max(1);
        Self {
            workers: (1..threads.max(1)).map(|_| model.fork()).collect(),
            past_slots: Vec::with_capacity(t),
            past_grads: vec![0.0; t * p],
            grad: vec![0.0; p],
            dots: vec![0.0; t],
            gram: vec![0.0; t * t],
            qp_matrix: vec![0.0; t * t],
            qp_linear: vec![0.0; t],
            dual: vec![0.0; t],
            dual_f32: vec![0.0; t],
            qp: QpWorkspace::new(t),
            memories: Vec::with_capacity(t),
            model,
            params,
            heads,
            logits: Vec::new(),
            stats: MethodStats::default(),
        }
    }

    /// Index of `task`'s memory, creating it on first sight.
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
        self.memories.len() - 1
    }

    /// Fills row r of `past_grads` with the gradient on the memory `past_slots[r]`, sharing
    /// the rows among the model and its worker copies.
    fn memory_gradients(&mut self) -> Result<()> {
        let p = self.model.num_params();
        let past = self.past_slots.len();
        let groups = (self.workers.len() + 1).min(past);
        let memories = &self.memories;
        let heads = &self.heads;
        if groups <= 1 {
            let rows = self.past_grads[..past * p].chunks_exact_mut(p);
            for (&slot, row) in self.past_slots.iter().zip(rows) {
                let (task, memory) = &memories[slot];
                memory_gradient(self.model.as_mut(), memory, heads.of(*task)?, row)?;
            }
            return Ok(());
        }
        let params = self.model.params();
        for worker in &mut self.workers[..groups - 1] {
            worker.params_mut().copy_from_slice(params);
        }
        let per = past.div_ceil(groups);
        let models = std::iter::once(&mut self.model).chain(self.workers.iter_mut());
        let jobs: Vec<_> = models
            .zip(self.past_slots.chunks(per))
            .zip(self.past_grads[..past * p].chunks_mut(per * p))
            .collect();
        jobs.into_par_iter().try_for_each(|((model, slots), rows)| {
            for (&slot, row) in slots.iter().zip(rows.chunks_exact_mut(p)) {
                let (task, memory) = &memories[slot];
                memory_gradient(model.as_mut(), memory, heads.of(*task)?, row)?;
            }
            Ok(())
        })
    }

    /// Replaces `self.grad` by its projection onto the cone of the past tasks' constraints.
    fn project(&mut self, past: usize, task: usize) -> Result<()> {
        let p = self.model.num_params();
        let g_mat = MatRef::row_major(&self.past_grads[..past * p], past, p);
        matmul(
            MatMut::row_major(&mut self.gram[..past * past], past, past),
            g_mat,
            g_mat.t(),
            false,
            1,
        );
        for i in 0..past {
            for j in 0..past {
                // Symmetrise (the f32 product need not be exactly symmetric) and regularise.
                let sym =
                    0.5 * (f64::from(self.gram[i * past + j]) + f64::from(self.gram[j * past + i]));
                self.qp_matrix[i * past + j] = sym + if i == j { self.params.eps } else { 0.0 };
            }
            self.qp_linear[i] = f64::from(self.dots[i]);
        }
        self.qp
            .solve(
                &self.qp_matrix[..past * past],
                &self.qp_linear[..past],
                self.params.margin,
                &mut self.dual[..past],
            )
            .map_err(|source| Error::Qp {
                task,
                step: self.stats.steps as usize,
                source,
            })?;
        for (d, &v) in self.dual_f32.iter_mut().zip(&self.dual[..past]) {
            *d = v as f32;
        }
        // g~ = G' v + g
        matmul(
            MatMut::row_major(&mut self.grad, p, 1),
            g_mat.t(),
            MatRef::row_major(&self.dual_f32[..past], past, 1),
            true,
            1,
        );
        Ok(())
    }
}

impl Gem {
    /// Counts a projection, or falls back when the QP had no trustworthy solution (its
    /// matrix was numerically singular, or it did not converge): the update becomes zero,
    /// the one step that cannot increase any past task's loss, and the step is counted as
    /// skipped. Non-finite input is not masked: that error stops the run.
    fn settle_projection(&mut self, projection: Result<()>) -> Result<()> {
        match projection {
            Ok(()) => self.stats.projected_steps += 1,
            Err(Error::Qp {
                source: QpError::NotPositiveDefinite | QpError::IterationLimit { .. },
                ..
            }) => {
                self.grad.fill(0.0);
                self.stats.skipped_steps += 1;
            }
            Err(err) => return Err(err),
        }
        Ok(())
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
        let p = self.model.num_params();
        // Nothing changes until every check of the step has passed: a failed step leaves the
        // method as it was after the previous one (the last good state).
        let loss = self
            .model
            .loss_and_grad(batch.xs, batch.ys, head, &mut self.grad)?;
        check_step(loss, &self.grad, batch.task, self.stats.steps)?;

        // Gradients on every earlier task's memory, one row each.
        let started = Instant::now();
        self.past_slots.clear();
        for (slot, (task, memory)) in self.memories.iter_mut().enumerate() {
            if *task != batch.task && !memory.is_empty() {
                memory.refresh_sparse();
                self.past_slots.push(slot);
            }
        }
        let past = self.past_slots.len();
        self.memory_gradients()?;
        check_gradient(&self.past_grads[..past * p], batch.task, self.stats.steps)?;
        self.stats.memory_gradient_time += started.elapsed();

        if past > 0 {
            let started = Instant::now();
            matmul(
                MatMut::row_major(&mut self.dots[..past], past, 1),
                MatRef::row_major(&self.past_grads[..past * p], past, p),
                MatRef::row_major(&self.grad, p, 1),
                false,
                1,
            );
            if self.dots[..past].iter().any(|&d| d < 0.0) {
                let projection = self.project(past, batch.task);
                self.settle_projection(projection)?;
                check_gradient(&self.grad, batch.task, self.stats.steps)?;
            }
            self.stats.projection_time += started.elapsed();
        }

        sgd_step(
            self.model.params_mut(),
            &self.grad,
            self.params.learning_rate as f32,
        );
        let slot = self.memory_slot(batch.task);
        self.memories[slot].1.push_batch(batch.xs, batch.ys);
        self.stats.steps += 1;
        Ok(loss)
    }

    one_network_predictions!();

    fn save(&self, state: &mut State) -> Result<()> {
        state.put_model("model", self.model.as_ref());
        save_memories(state, "memory", &self.memories)?;
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_model("model", self.model.as_mut())?;
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
        self.stats = state.get("stats")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::dot;
    use crate::model::{Mlp, MlpConfig};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn gem(margin: f64) -> Gem {
        gem_with_threads(margin, 1)
    }

    fn gem_with_threads(margin: f64, threads: usize) -> Gem {
        let config = MlpConfig {
            input: 8,
            hidden: vec![6],
            classes: 3,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let model = Mlp::new(&config, threads, &mut rng).unwrap();
        let params = GemParams {
            learning_rate: 0.1,
            memories_per_task: 16,
            margin,
            eps: 1e-3,
        };
        Gem::new(Box::new(model), params, Heads::Shared(3))
            .unwrap()
            .with_expected_tasks(4)
            .with_threads(threads)
    }

    #[test]
    fn thread_count_does_not_change_the_trajectory() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let run = |threads: usize| {
            let mut gem = gem_with_threads(0.5, threads);
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            for task in 0..4 {
                for _ in 0..10 {
                    let (xs, ys) = batch_data(&mut rng, 5, task as f32 * 0.5);
                    let batch = Batch {
                        task,
                        xs: &xs,
                        ys: &ys,
                    };
                    pool.install(|| gem.observe(&batch)).unwrap();
                }
            }
            (gem.model.params().to_vec(), gem.stats.projected_steps)
        };
        let one = run(1);
        assert!(one.1 > 0, "no projection exercised");
        assert_eq!(one, run(3));
    }

    fn batch_data(rng: &mut ChaCha8Rng, n: usize, shift: f32) -> (Vec<f32>, Vec<u32>) {
        let xs = (0..n * 8)
            .map(|_| rng.random_range(-1.0..1.0) + shift)
            .collect();
        let ys = (0..n).map(|_| rng.random_range(0..3)).collect();
        (xs, ys)
    }

    /// After every projection, <g~, g_k> >= -eps * v_k for each past task k: the exact
    /// guarantee of the regularised dual (G g~ = lambda - eps v, lambda >= 0).
    #[test]
    fn projected_gradient_satisfies_every_past_constraint() {
        for margin in [0.0, 0.5] {
            let mut gem = gem(margin);
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            let mut checked = 0;
            for task in 0..4 {
                for _ in 0..30 {
                    let (xs, ys) = batch_data(&mut rng, 5, task as f32 * 0.7);
                    let before = gem.stats.projected_steps;
                    gem.observe(&Batch {
                        task,
                        xs: &xs,
                        ys: &ys,
                    })
                    .unwrap();
                    if gem.stats.projected_steps == before {
                        continue;
                    }
                    let p = gem.model.num_params();
                    let past = task;
                    for k in 0..past {
                        let gk = &gem.past_grads[k * p..(k + 1) * p];
                        let dot: f64 = gk
                            .iter()
                            .zip(&gem.grad)
                            .map(|(&a, &b)| f64::from(a) * f64::from(b))
                            .sum();
                        let v = gem.dual[k];
                        assert!(v >= margin - 1e-12, "dual below margin");
                        let norm =
                            |x: &[f32]| x.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
                        let rounding = 1e-5 * norm(gk) * norm(&gem.grad);
                        assert!(
                            dot >= -1e-3 * v - rounding,
                            "task {task}, k {k}: <g~, g_k> = {dot}, v_k = {v}"
                        );
                    }
                    checked += 1;
                }
            }
            assert!(checked > 5, "only {checked} projections exercised");
        }
    }

    #[test]
    fn no_projection_on_the_first_task_and_memories_stay_per_task() {
        let mut gem = gem(0.5);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..5 {
            let (xs, ys) = batch_data(&mut rng, 10, 0.0);
            gem.observe(&Batch {
                task: 0,
                xs: &xs,
                ys: &ys,
            })
            .unwrap();
        }
        assert_eq!(gem.stats.projected_steps, 0);
        assert_eq!(gem.memories.len(), 1);
        assert_eq!(gem.memories[0].1.len(), 16);
        let (xs, ys) = batch_data(&mut rng, 3, 0.0);
        gem.observe(&Batch {
            task: 1,
            xs: &xs,
            ys: &ys,
        })
        .unwrap();
        assert_eq!(
            gem.memories[1].1.len(),
            3,
            "fewer samples than memory slots is fine"
        );
        assert_eq!(
            gem.memories[0].1.len(),
            16,
            "the new task does not write into the old memory"
        );
    }

    #[test]
    fn bad_batches_are_rejected_before_touching_memory() {
        let mut gem = gem(0.5);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (xs, mut ys) = batch_data(&mut rng, 4, 0.0);
        ys[2] = 3;
        assert!(matches!(
            gem.observe(&Batch {
                task: 0,
                xs: &xs,
                ys: &ys
            }),
            Err(Error::LabelOutOfRange { label: 3, .. })
        ));
        assert!(gem
            .observe(&Batch {
                task: 0,
                xs: &xs[1..],
                ys: &[0, 1, 2, 0]
            })
            .is_err());
        assert!(gem
            .observe(&Batch {
                task: 0,
                xs: &[],
                ys: &[]
            })
            .is_err());
        assert!(gem.memories.iter().all(|(_, m)| m.is_empty()));
        assert_eq!(gem.stats.steps, 0);
    }

    fn observe_task(gem: &mut Gem, task: usize, xs: &[f32], ys: &[u32]) -> Result<f32> {
        gem.observe(&Batch { task, xs, ys })
    }

    /// Zero past gradients (a model with all-zero parameters on a class-balanced memory)
    /// put no constraint on the update: the step uses the batch gradient unchanged.
    #[test]
    fn zero_past_gradients_leave_the_update_alone() {
        let mut gem = gem(0.5);
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let (xs, _) = batch_data(&mut rng, 6, 0.0);
        observe_task(&mut gem, 0, &xs, &[0, 1, 2, 0, 1, 2]).unwrap();
        gem.model.params_mut().fill(0.0);
        let (xs1, ys1) = batch_data(&mut rng, 6, 1.0);
        let mut raw = vec![0.0; gem.model.num_params()];
        gem.model.loss_and_grad(&xs1, &ys1, 0..3, &mut raw).unwrap();
        observe_task(&mut gem, 1, &xs1, &ys1).unwrap();
        let p = gem.model.num_params();
        let row_norm = dot(&gem.past_grads[..p], &gem.past_grads[..p]).sqrt();
        assert!(row_norm < 1e-6, "the past gradient is {row_norm}, not zero");
        let diff: Vec<f32> = gem.grad.iter().zip(&raw).map(|(a, b)| a - b).collect();
        assert!(dot(&diff, &diff).sqrt() <= 1e-5 * dot(&raw, &raw).sqrt().max(1e-12));
    }

    /// Two past tasks with identical memories give duplicated rows of G: the regularised
    /// QP still has a unique solution and the projected gradient respects both.
    #[test]
    fn duplicated_past_gradients_are_projected_exactly() {
        let mut gem = gem(0.5);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (xs, ys) = batch_data(&mut rng, 6, 0.0);
        observe_task(&mut gem, 0, &xs, &ys).unwrap();
        observe_task(&mut gem, 1, &xs, &ys).unwrap();
        let mut projected = 0;
        for _ in 0..30 {
            let (xs2, ys2) = batch_data(&mut rng, 6, 1.5);
            let before = gem.stats.projected_steps;
            observe_task(&mut gem, 2, &xs2, &ys2).unwrap();
            if gem.stats.projected_steps > before {
                projected += 1;
                let p = gem.model.num_params();
                assert_eq!(
                    &gem.past_grads[..p],
                    &gem.past_grads[p..2 * p],
                    "duplicated rows"
                );
                for k in 0..2 {
                    let gk = &gem.past_grads[k * p..(k + 1) * p];
                    let dot: f64 = gk
                        .iter()
                        .zip(&gem.grad)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum();
                    assert!(dot >= -1e-3 * gem.dual[k] - 1e-6, "row {k}: {dot}");
                }
            }
        }
        assert!(projected > 0, "no projection exercised");
        assert_eq!(gem.stats.skipped_steps, 0);
    }

    /// A QP without a trustworthy solution makes GEM skip the update (no step is safer than
    /// an unverified one); any other failure stops the run.
    #[test]
    fn an_unsolvable_qp_skips_the_update_instead_of_applying_garbage() {
        let mut gem = gem(0.5);
        for source in [
            QpError::NotPositiveDefinite,
            QpError::IterationLimit { iterations: 100 },
        ] {
            gem.grad.fill(1.0);
            let skipped = gem.stats.skipped_steps;
            gem.settle_projection(Err(Error::Qp {
                task: 1,
                step: 0,
                source,
            }))
            .unwrap();
            assert!(gem.grad.iter().all(|&g| g == 0.0));
            assert_eq!(gem.stats.skipped_steps, skipped + 1);
        }
        let err = gem.settle_projection(Err(Error::Qp {
            task: 1,
            step: 0,
            source: QpError::NonFinite { what: "P" },
        }));
        assert!(
            err.is_err(),
            "non-finite input is an error, not a skipped step"
        );
        gem.settle_projection(Ok(())).unwrap();
        assert_eq!(gem.stats.projected_steps, 1);
    }

    /// A NaN in a batch stops the step with an error naming it, before anything changes.
    #[test]
    fn a_non_finite_gradient_stops_the_step_before_anything_changes() {
        let mut gem = gem(0.5);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (xs, ys) = batch_data(&mut rng, 4, 0.0);
        observe_task(&mut gem, 0, &xs, &ys).unwrap();
        let (mut bad, ys2) = batch_data(&mut rng, 4, 0.0);
        bad[5] = f32::NAN;
        let params = gem.model.params().to_vec();
        let memory = gem.memories[0].1.xs().to_vec();
        let err = observe_task(&mut gem, 1, &bad, &ys2).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NonFiniteLoss {
                    task: 1,
                    step: 1,
                    ..
                } | Error::NonFiniteGradient { task: 1, step: 1 }
            ),
            "{err}"
        );
        assert_eq!(gem.model.params(), &params[..]);
        assert_eq!(gem.memories.len(), 1, "task 1's memory was not created");
        assert_eq!(gem.memories[0].1.xs(), &memory[..]);
        assert_eq!(gem.stats.steps, 1);
    }
}
