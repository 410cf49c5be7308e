//! `agem`: Averaged Gradient Episodic Memory.
//!
//! Chaudhry, Ranzato, Rohrbach and Elhoseiny, "Efficient Lifelong Learning with A-GEM",
//! ICLR 2019 (arXiv:1812.00420). GEM's T - 1 constraints are replaced by one on the average
//! loss over the episodic memory: at every step, draw `sample_size` examples uniformly from
//! the memories of all earlier tasks together and take the gradient g_ref of their mean
//! loss. If the batch gradient g conflicts with it (<g, g_ref> < 0), step with
//!
//! ```text
//! g~ = g - (<g, g_ref> / <g_ref, g_ref>) g_ref
//! ```
//!
//! (closed form, no QP), otherwise with g. The memory is GEM's: a ring buffer of
//! `memories_per_task` examples per task, written from every batch.
//!
//! Hyper-parameters (ours, as Avalanche's comparison in peers.md): learning rate 0.1, 256
//! memories per task (GEM's budget), 256 examples per reference gradient.
//!
//! On a class-split benchmark each sampled example's loss uses its own task's head (the
//! multi-head fix of Avalanche PRs #790/#791).

use rand::seq::index;
use rand_chacha::ChaCha8Rng;

use super::{
    check_batch, check_gradient, check_step, dot, load_memories, mixed_task_loss_and_grad,
    restoring_rng_on_error, save_memories, Batch, Heads, Method, MethodStats, MixedScratch,
};
use crate::config::AgemParams;
use crate::error::Result;
use crate::memory::RingMemory;
use crate::model::Model;
use crate::optim::{Sgd, SgdConfig};
use crate::rng::{self, Purpose};
use crate::state::State;

/// Averaged GEM.
pub struct Agem {
    model: Box<dyn Model>,
    params: AgemParams,
    /// Steps the model along the method's update direction.
    sgd: Sgd,
    heads: Heads,
    /// (task, memory) in the order tasks were first observed.
    memories: Vec<(usize, RingMemory)>,
    rng: ChaCha8Rng,
    grad: Vec<f32>,
    reference: Vec<f32>,
    sample_xs: Vec<f32>,
    sample_ys: Vec<u32>,
    sample_tasks: Vec<usize>,
    scratch: MixedScratch,
    logits: Vec<f32>,
    stats: MethodStats,
}

impl Agem {
    /// A-GEM around `model` (`heads`: each task's classes) with checked hyper-parameters;
    /// memories are added as tasks appear. The memory sample is drawn from seed 0 unless
    /// [`Self::with_seed`] says otherwise.
    pub fn new(model: Box<dyn Model>, params: AgemParams, heads: Heads) -> Result<Self> {
        crate::config::MethodConfig::Agem(params).validate()?;
        let p = model.num_params();
        Ok(Self {
            sgd: Sgd::plain(params.learning_rate),
            model,
            params,
            heads,
            memories: Vec::new(),
            rng: rng::stream(0, Purpose::Method),
            grad: vec![0.0; p],
            reference: vec![0.0; p],
            sample_xs: Vec::new(),
            sample_ys: Vec::new(),
            sample_tasks: Vec::new(),
            scratch: MixedScratch::default(),
            logits: Vec::new(),
            stats: MethodStats::default(),
        })
    }

    /// The same stepping with the momentum and weight decay of `config` (plain SGD, the
    /// paper's, unless told otherwise).
    pub fn with_optimizer(mut self, config: SgdConfig) -> Self {
        self.sgd = Sgd::new(self.params.learning_rate, config);
        self
    }

    /// The same with its memory samples drawn from `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = rng::stream(seed, Purpose::Method);
        self
    }

    /// Draws the reference sample from the memories of tasks other than `task`; returns
    /// whether there was anything to draw.
    fn draw_sample(&mut self, task: usize) -> bool {
        let past: Vec<&(usize, RingMemory)> =
            self.memories.iter().filter(|(t, _)| *t != task).collect();
        let total: usize = past.iter().map(|(_, m)| m.len()).sum();
        self.sample_xs.clear();
        self.sample_ys.clear();
        self.sample_tasks.clear();
        if total == 0 {
            return false;
        }
        let d = self.model.input_dim();
        let mut picks =
            index::sample(&mut self.rng, total, self.params.sample_size.min(total)).into_vec();
        picks.sort_unstable();
        let (mut offset, mut memory) = (0, 0);
        for i in picks {
            while i >= offset + past[memory].1.len() {
                offset += past[memory].1.len();
                memory += 1;
            }
            let (t, m) = past[memory];
            let k = i - offset;
            self.sample_xs
                .extend_from_slice(&m.xs()[k * d..(k + 1) * d]);
            self.sample_ys.push(m.ys()[k]);
            self.sample_tasks.push(*t);
        }
        true
    }
}

/// Projects `grad` so that it does not conflict with `reference`; returns whether it did.
pub(crate) fn project_on_reference(grad: &mut [f32], reference: &[f32]) -> bool {
    let conflict = dot(grad, reference);
    let norm = dot(reference, reference);
    if conflict >= 0.0 || norm <= 0.0 {
        return false;
    }
    let scale = (conflict / norm) as f32;
    grad.iter_mut()
        .zip(reference)
        .for_each(|(g, &r)| *g -= scale * r);
    true
}

impl Agem {
    /// One step; on error nothing has changed but the generator, which the caller restores.
    fn step(&mut self, batch: &Batch<'_>) -> Result<f32> {
        let head = check_batch(self.model.as_ref(), &self.heads, batch)?;
        let loss = self
            .model
            .loss_and_grad(batch.xs, batch.ys, head, &mut self.grad)?;
        check_step(loss, &self.grad, batch.task, self.stats.steps)?;

        let started = std::time::Instant::now();
        let has_past = self.draw_sample(batch.task);
        if has_past {
            mixed_task_loss_and_grad(
                self.model.as_mut(),
                &self.heads,
                &self.sample_xs,
                &self.sample_ys,
                &self.sample_tasks,
                &mut self.reference,
                &mut self.scratch,
            )?;
        }
        self.stats.memory_gradient_time += started.elapsed();
        if has_past {
            check_gradient(&self.reference, batch.task, self.stats.steps)?;
            if project_on_reference(&mut self.grad, &self.reference) {
                self.stats.projected_steps += 1;
            }
        }
        self.sgd.step(self.model.params_mut(), &self.grad);

        let slot = match self.memories.iter().position(|(t, _)| *t == batch.task) {
            Some(slot) => slot,
            None => {
                let memory = RingMemory::new(self.params.memories_per_task, self.model.input_dim());
                self.memories.push((batch.task, memory));
                self.memories.len() - 1
            }
        };
        self.memories[slot].1.push_batch(batch.xs, batch.ys);
        self.stats.steps += 1;
        Ok(loss)
    }
}

impl Method for Agem {
    fn name(&self) -> &'static str {
        "agem"
    }

    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32> {
        restoring_rng_on_error(self, |m| &mut m.rng, |m| m.step(batch))
    }

    one_network_predictions!();

    fn save(&self, state: &mut State) -> Result<()> {
        state.put_model("model", self.model.as_ref());
        self.sgd.save(state, "optimizer.velocity");
        save_memories(state, "memory", &self.memories)?;
        state.put_rng("rng", &self.rng)?;
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_model("model", self.model.as_mut())?;
        let n = self.model.num_params();
        self.sgd.load(state, "optimizer.velocity", n)?;
        self.memories = load_memories(
            state,
            "memory",
            self.params.memories_per_task,
            self.model.as_ref(),
            usize::MAX,
        )?;
        self.rng = state.rng("rng")?;
        self.stats = state.get("stats")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::tests::{random_batch_in, setup};
    use rand::{Rng, SeedableRng};

    #[test]
    fn projection_leaves_no_conflict_with_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut projected = 0;
        for _ in 0..200 {
            let mut g: Vec<f32> = (0..30).map(|_| rng.random_range(-1.0..1.0)).collect();
            let r: Vec<f32> = (0..30).map(|_| rng.random_range(-1.0..1.0)).collect();
            let before = g.clone();
            if project_on_reference(&mut g, &r) {
                projected += 1;
                let scale = dot(&g, &g).sqrt() * dot(&r, &r).sqrt();
                assert!(
                    dot(&g, &r) >= -1e-5 * scale,
                    "<g~, g_ref> = {}",
                    dot(&g, &r)
                );
            } else {
                assert!(dot(&before, &r) >= 0.0);
                assert_eq!(g, before, "no conflict: the gradient is left alone");
            }
        }
        assert!(projected > 50);
    }

    #[test]
    fn every_step_after_the_first_task_respects_the_reference_gradient() {
        let setup = setup(3, Heads::PerTask(vec![0..1, 1..3, 0..3]));
        let params = AgemParams {
            learning_rate: 0.5,
            memories_per_task: 8,
            sample_size: 5,
        };
        let mut agem = Agem::new(setup.network().unwrap(), params, setup.heads.clone()).unwrap();
        let heads = [0..1, 1..3, 0..3];
        for (task, head) in heads.iter().enumerate() {
            for step in 0..12 {
                let (xs, ys) = random_batch_in(6, head.clone(), 4, (task * 100 + step) as u64);
                agem.observe(&Batch {
                    task,
                    xs: &xs,
                    ys: &ys,
                })
                .unwrap();
                if task > 0 {
                    assert_eq!(agem.sample_ys.len(), 5);
                    assert!(agem.sample_tasks.iter().all(|&t| t < task));
                    let scale = dot(&agem.grad, &agem.grad).sqrt()
                        * dot(&agem.reference, &agem.reference).sqrt();
                    assert!(dot(&agem.grad, &agem.reference) >= -1e-5 * scale);
                }
            }
            assert_eq!(
                agem.memories[task].1.len(),
                8,
                "ring memory keeps its budget"
            );
        }
        assert!(agem.stats.projected_steps > 0);
    }
}
