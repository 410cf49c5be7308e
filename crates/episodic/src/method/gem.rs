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
//! `memories_per_task` 256, `margin` 0.5, `eps` 1e-3.
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
    check_batch, check_loss, predict_argmax, predict_argmax_sparse, sgd_step, Batch, Heads,
    Method, MethodStats,
};
use crate::config::GemParams;
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};
use crate::memory::RingMemory;
use crate::model::{Model, SparseBatch};
use crate::qp::QpWorkspace;

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
    /// GEM around `model` (`heads`: each task's classes), with buffers sized for `tasks`
    /// tasks (they grow if more arrive), computing memory gradients on up to `threads`
    /// threads.
    pub fn new(
        model: Box<dyn Model>,
        params: GemParams,
        heads: Heads,
        tasks: usize,
        threads: usize,
    ) -> Self {
        let p = model.num_params();
        let t = tasks.max(1);
        Self {
            workers: (1..threads.min(t)).map(|_| model.fork()).collect(),
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
        let slot = self.memory_slot(batch.task);
        self.memories[slot].1.push_batch(batch.xs, batch.ys);
        let p = self.model.num_params();

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
        self.stats.memory_gradient_time += started.elapsed();

        let loss = self
            .model
            .loss_and_grad(batch.xs, batch.ys, head, &mut self.grad)?;
        check_loss(loss, batch.task, self.stats.steps)?;

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
                self.project(past, batch.task)?;
                self.stats.projected_steps += 1;
            }
            self.stats.projection_time += started.elapsed();
        }

        sgd_step(
            self.model.params_mut(),
            &self.grad,
            self.params.learning_rate as f32,
        );
        self.stats.steps += 1;
        Ok(loss)
    }

    fn predict(&mut self, xs: &[f32], task: usize, out: &mut [u32]) -> Result<()> {
        let head = self.heads.of(task)?;
        predict_argmax(self.model.as_mut(), &mut self.logits, xs, head, out)
    }

    fn predict_sparse(&mut self, xs: &SparseBatch, task: usize, out: &mut [u32]) -> Result<()> {
        let head = self.heads.of(task)?;
        predict_argmax_sparse(self.model.as_mut(), &mut self.logits, xs, head, out)
    }

    fn stats(&self) -> MethodStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        Gem::new(Box::new(model), params, Heads::Shared(3), 4, threads)
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
}
