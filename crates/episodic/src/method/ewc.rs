//! `ewc`: Elastic Weight Consolidation.
//!
//! Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017,
//! as implemented by the GEM reference (`model/ewc.py`). When task k ends, its Fisher
//! information is estimated as the element-wise square of the gradient of the mean loss on
//! the task's first `memories_per_task` examples, and the parameters are stored as the
//! task's anchor theta*_k. Training on task t then minimises
//!
//! ```text
//! loss(batch) + sum_{k < t} strength * sum_i F_k[i] * (theta[i] - theta*_k[i])^2
//! ```
//!
//! with plain SGD (no 1/2 factor, as in the reference).
//!
//! Hyper-parameters (paper): MNIST Rotations lr 0.01, 1000 examples, strength 1000; MNIST
//! Permutations lr 0.1, 10 examples, strength 3.
//!
//! Differences from the reference: none in the algorithm. The reference consolidates a task
//! when the first batch of the next one arrives; we do it at [`Method::end_task`] (the same
//! parameters and examples), or on a new task's first batch if `end_task` was not called.

use super::{check_batch, check_step, Batch, Heads, Method, MethodStats};
use crate::config::EwcParams;
use crate::error::{Error, Result};
use crate::memory::check_examples;
use crate::model::Model;
use crate::optim::{Sgd, SgdConfig};
use crate::state::{bounded, State};

/// A consolidated task: its Fisher diagonal and its anchor parameters.
struct Consolidated {
    fisher: Vec<f32>,
    anchor: Vec<f32>,
}

/// Elastic Weight Consolidation.
pub struct Ewc {
    model: Box<dyn Model>,
    params: EwcParams,
    /// Steps the model along the method's update direction.
    sgd: Sgd,
    heads: Heads,
    /// The task being learned, and whether it has been consolidated.
    current: Option<(usize, bool)>,
    /// The current task's first examples (inputs and labels).
    memory_xs: Vec<f32>,
    memory_ys: Vec<u32>,
    consolidated: Vec<Consolidated>,
    grad: Vec<f32>,
    logits: Vec<f32>,
    stats: MethodStats,
}

impl Ewc {
    /// EWC around `model` (`heads`: each task's classes) with checked hyper-parameters; a
    /// task is consolidated when it ends, however many follow.
    pub fn new(model: Box<dyn Model>, params: EwcParams, heads: Heads) -> Result<Self> {
        crate::config::MethodConfig::Ewc(params).validate()?;
        Ok(Self {
            sgd: Sgd::plain(params.learning_rate),
            grad: vec![0.0; model.num_params()],
            model,
            params,
            heads,
            current: None,
            memory_xs: Vec::new(),
            memory_ys: Vec::new(),
            consolidated: Vec::new(),
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

    /// The quadratic penalty at the current parameters, and (if `grad` is given) its
    /// gradient added into `grad`.
    pub fn penalty(&self, grad: Option<&mut [f32]>) -> f64 {
        penalty(
            &self.consolidated,
            self.model.params(),
            self.params.strength,
            grad,
        )
    }

    /// Estimates the Fisher diagonal of the current task and stores its anchor.
    fn consolidate(&mut self) -> Result<()> {
        let Some((task, false)) = self.current else {
            return Ok(());
        };
        let head = self.heads.of(task)?;
        let mut fisher = vec![0.0; self.model.num_params()];
        self.model
            .loss_and_grad(&self.memory_xs, &self.memory_ys, head, &mut fisher)?;
        fisher.iter_mut().for_each(|g| *g *= *g);
        self.consolidated.push(Consolidated {
            fisher,
            anchor: self.model.params().to_vec(),
        });
        self.current = Some((task, true));
        Ok(())
    }
}

/// `strength * sum_k sum_i F_k[i] (theta[i] - anchor_k[i])^2`; adds its gradient
/// `2 strength sum_k F_k (theta - anchor_k)` into `grad` when given.
fn penalty(
    tasks: &[Consolidated],
    theta: &[f32],
    strength: f64,
    mut grad: Option<&mut [f32]>,
) -> f64 {
    let mut total = 0.0f64;
    let s = strength as f32;
    for task in tasks {
        let mut sum = 0.0f64;
        for (i, (&f, (&p, &a))) in task
            .fisher
            .iter()
            .zip(theta.iter().zip(&task.anchor))
            .enumerate()
        {
            let diff = p - a;
            sum += f64::from(f * diff * diff);
            if let Some(g) = grad.as_deref_mut() {
                g[i] += 2.0 * s * f * diff;
            }
        }
        total += strength * sum;
    }
    total
}

impl Method for Ewc {
    fn name(&self) -> &'static str {
        "ewc"
    }

    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32> {
        let head = check_batch(self.model.as_ref(), &self.heads, batch)?;
        if self.current.is_some_and(|(task, _)| task != batch.task) {
            self.consolidate()?;
        }
        if self.current.is_none_or(|(task, _)| task != batch.task) {
            self.current = Some((batch.task, false));
            self.memory_xs.clear();
            self.memory_ys.clear();
        }

        let loss = self
            .model
            .loss_and_grad(batch.xs, batch.ys, head, &mut self.grad)?;
        let penalty = penalty(
            &self.consolidated,
            self.model.params(),
            self.params.strength,
            Some(&mut self.grad),
        );
        let loss = loss + penalty as f32;
        check_step(loss, &self.grad, batch.task, self.stats.steps)?;
        self.sgd.step(self.model.params_mut(), &self.grad);
        let d = self.model.input_dim();
        let room = self.params.memories_per_task - self.memory_ys.len();
        let take = room.min(batch.ys.len());
        self.memory_xs.extend_from_slice(&batch.xs[..take * d]);
        self.memory_ys.extend_from_slice(&batch.ys[..take]);
        self.stats.steps += 1;
        Ok(loss)
    }

    fn end_task(&mut self, _task: usize) -> Result<()> {
        self.consolidate()
    }

    one_network_predictions!();

    fn save(&self, state: &mut State) -> Result<()> {
        state.put_model("model", self.model.as_ref());
        self.sgd.save(state, "optimizer.velocity");
        state.put("current", &self.current)?;
        state.put_f32("memory.xs", &self.memory_xs);
        state.put_u32("memory.ys", &self.memory_ys);
        state.put("consolidated", &self.consolidated.len())?;
        for (k, task) in self.consolidated.iter().enumerate() {
            state.put_f32(format!("fisher.{k}"), &task.fisher);
            state.put_f32(format!("anchor.{k}"), &task.anchor);
        }
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_model("model", self.model.as_mut())?;
        let n = self.model.num_params();
        self.sgd.load(state, "optimizer.velocity", n)?;
        let p = self.model.num_params();
        self.current = state.get("current")?;
        let ys = state.u32("memory.ys", None)?;
        bounded(
            "EWC memory size",
            ys.len() as u64,
            self.params.memories_per_task + 1,
        )?;
        let xs = state.f32("memory.xs", Some(ys.len() * self.model.input_dim()))?;
        check_examples("EWC memory", xs, ys, self.model.num_classes())?;
        let count: usize = state.get("consolidated")?;
        let mut consolidated = Vec::new();
        for k in 0..count {
            let fisher = state.f32(&format!("fisher.{k}"), Some(p))?;
            let anchor = state.f32(&format!("anchor.{k}"), Some(p))?;
            if fisher.iter().chain(anchor).any(|v| !v.is_finite()) {
                return Err(Error::CheckpointContent {
                    reason: format!("consolidated task {k} holds a NaN or infinite value"),
                });
            }
            consolidated.push(Consolidated {
                fisher: fisher.to_vec(),
                anchor: anchor.to_vec(),
            });
        }
        self.memory_xs = xs.to_vec();
        self.memory_ys = ys.to_vec();
        self.consolidated = consolidated;
        self.stats = state.get("stats")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::tests::{random_batch, setup};

    fn trained_on_one_task() -> Ewc {
        let setup = setup(2, Heads::Shared(3));
        let params = EwcParams {
            learning_rate: 0.1,
            memories_per_task: 7,
            strength: 5.0,
        };
        let mut ewc = Ewc::new(setup.network().unwrap(), params, setup.heads.clone()).unwrap();
        for step in 0..4 {
            let (xs, ys) = random_batch(6, 3, 4, step);
            ewc.observe(&Batch {
                task: 0,
                xs: &xs,
                ys: &ys,
            })
            .unwrap();
        }
        ewc.end_task(0).unwrap();
        ewc
    }

    #[test]
    fn fisher_comes_from_the_first_examples_and_penalty_vanishes_at_the_anchor() {
        let ewc = trained_on_one_task();
        assert_eq!(ewc.memory_ys.len(), 7, "the task's first 7 examples");
        assert_eq!(ewc.consolidated.len(), 1);
        let task = &ewc.consolidated[0];
        assert!(task.fisher.iter().all(|&f| f >= 0.0));
        assert!(task.fisher.iter().any(|&f| f > 0.0));
        let mut grad = vec![0.0; ewc.model.num_params()];
        assert_eq!(ewc.penalty(Some(&mut grad)), 0.0);
        assert!(grad.iter().all(|&g| g == 0.0));
    }

    #[test]
    fn penalty_gradient_points_back_to_the_anchor() {
        let mut ewc = trained_on_one_task();
        let anchor = ewc.consolidated[0].anchor.clone();
        // Move away from the anchor; the penalty's gradient must point away from it too,
        // so that a step against the gradient goes back.
        for (i, p) in ewc.model.params_mut().iter_mut().enumerate() {
            *p += if i % 2 == 0 { 0.3 } else { -0.2 };
        }
        let mut grad = vec![0.0; ewc.model.num_params()];
        let moved = ewc.penalty(Some(&mut grad));
        assert!(moved > 0.0);
        for ((&g, &p), (&a, &f)) in grad
            .iter()
            .zip(ewc.model.params())
            .zip(anchor.iter().zip(&ewc.consolidated[0].fisher))
        {
            if f > 0.0 {
                assert!(
                    g * (p - a) > 0.0,
                    "gradient does not point away from the anchor"
                );
            } else {
                assert_eq!(g, 0.0);
            }
        }
        // A small step against the gradient lowers the penalty.
        let params: Vec<f32> = ewc
            .model
            .params()
            .iter()
            .zip(&grad)
            .map(|(p, g)| p - 1e-3 * g)
            .collect();
        ewc.model.params_mut().copy_from_slice(&params);
        assert!(ewc.penalty(None) < moved);
    }

    #[test]
    fn a_new_task_consolidates_the_previous_one_without_end_task() {
        let setup = setup(2, Heads::Shared(3));
        let params = EwcParams {
            learning_rate: 0.1,
            memories_per_task: 10,
            strength: 1.0,
        };
        let mut ewc = Ewc::new(setup.network().unwrap(), params, setup.heads.clone()).unwrap();
        for task in 0..2 {
            let (xs, ys) = random_batch(6, 3, 4, task as u64);
            ewc.observe(&Batch {
                task,
                xs: &xs,
                ys: &ys,
            })
            .unwrap();
        }
        assert_eq!(ewc.consolidated.len(), 1);
        ewc.end_task(1).unwrap();
        ewc.end_task(1).unwrap();
        assert_eq!(ewc.consolidated.len(), 2, "end_task consolidates once");
    }
}
