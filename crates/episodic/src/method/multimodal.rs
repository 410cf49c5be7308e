//! `multimodal`: a task-specific input layer, the rest of the network shared.
//!
//! The paper's "multimodal" baseline (Lopez-Paz and Ranzato, NIPS 2017, section 5): like
//! `single`, but each task reads its input through its own first layer, so tasks with
//! different input statistics (permuted or rotated pixels) need not share one input map.
//! The reference's network is: task t's input layer `input -> h`, then `n_layers - 1`
//! shared hidden layers `h -> h` and the shared output layer (its `main.py` lowers
//! `n_layers` by one for this model), so on MNIST 784-100 per task, then 100-100 and 100-10
//! shared: the same depth as the other methods' 784-100-100-10. We build the same: the
//! model's first layer `input -> hidden[0]` per task, the rest of the model
//! (`hidden[0] -> ... -> hidden[last] -> classes`) shared.
//!
//! Hyper-parameter (paper): learning rate 0.1 on both MNIST continua. Plain SGD.
//!
//! Implementation: one full network per task whose shared part is kept in sync (the task
//! being trained or evaluated holds the current shared weights; switching task copies them
//! over), so every forward and backward pass is an ordinary [`Mlp`] pass.
//!
//! Differences from the reference: all layers use the reference MLP's Xavier-uniform
//! initialisation with zero biases (its multimodal network keeps torch's default
//! `nn.Linear` initialisation and zeroes only some biases).

use super::{
    check_batch, check_step, predict_argmax, predict_argmax_sparse, Batch, Heads, Method,
    MethodStats, Setup,
};
use crate::config::MultimodalParams;
use crate::error::{Error, Result};
use crate::model::{Mlp, Model, SparseBatch};
use crate::optim::Sgd;
use crate::rng::{self, Purpose};
use crate::state::{bounded, State};

/// Per-task input layers over a shared network.
pub struct Multimodal {
    /// Network t: task t's input layer followed by (a copy of) the shared layers.
    nets: Vec<Box<dyn Model>>,
    /// Length of the task-specific input layer at the front of each parameter vector.
    input_layer_len: usize,
    /// The network whose shared layers are current.
    owner: usize,
    /// Optimiser t steps network t; the shared layers' velocity moves with `owner`.
    sgds: Vec<Sgd>,
    heads: Heads,
    grad: Vec<f32>,
    logits: Vec<f32>,
    stats: MethodStats,
}

impl Multimodal {
    /// One input layer per task of `setup.tasks` (the first layer of `setup.model`), over
    /// the rest of `setup.model`, shared.
    pub fn new(setup: &Setup, params: MultimodalParams) -> Result<Self> {
        crate::config::MethodConfig::Multimodal(params).validate()?;
        setup.optimizer.validate()?;
        let mlp = setup.model.mlp("multimodal")?;
        let first = *mlp.hidden.first().ok_or(Error::InvalidOption {
            option: "model",
            reason: "multimodal needs at least one hidden layer".into(),
        })?;
        let config = mlp.clone();
        let mut rng = rng::stream(setup.seed, Purpose::ModelInit);
        let nets = (0..setup.tasks.max(1))
            .map(|_| Ok(Box::new(Mlp::new(&config, setup.threads, &mut rng)?) as Box<dyn Model>))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            grad: vec![0.0; config.num_params()],
            input_layer_len: config.input * first + first,
            nets,
            owner: 0,
            sgds: vec![Sgd::new(params.learning_rate, setup.optimizer); setup.tasks.max(1)],
            heads: setup.heads.clone(),
            logits: Vec::new(),
            stats: MethodStats::default(),
        })
    }

    /// Makes `task`'s network hold the current shared layers.
    fn activate(&mut self, task: usize) -> Result<()> {
        if task >= self.nets.len() {
            return Err(Error::InvalidOption {
                option: "task",
                reason: format!(
                    "task {} has no input layer: multimodal was built for {} tasks",
                    task + 1,
                    self.nets.len()
                ),
            });
        }
        if task != self.owner {
            let k = self.input_layer_len;
            let (owner, target) = if self.owner < task {
                let (a, b) = self.nets.split_at_mut(task);
                (&a[self.owner], &mut b[0])
            } else {
                let (a, b) = self.nets.split_at_mut(self.owner);
                (&b[0], &mut a[task])
            };
            target.params_mut()[k..].copy_from_slice(&owner.params()[k..]);
            let n = owner.num_params();
            let (from, to) = if self.owner < task {
                let (a, b) = self.sgds.split_at_mut(task);
                (&a[self.owner], &mut b[0])
            } else {
                let (a, b) = self.sgds.split_at_mut(self.owner);
                (&b[0], &mut a[task])
            };
            to.share_velocity(from, k..n, n);
            self.owner = task;
        }
        Ok(())
    }

    /// Task `task`'s input layer and the shared layers as it last saw them.
    pub fn task_params(&self, task: usize) -> Option<&[f32]> {
        self.nets.get(task).map(|net| net.params())
    }
}

impl Method for Multimodal {
    fn name(&self) -> &'static str {
        "multimodal"
    }

    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32> {
        self.activate(batch.task)?;
        let net = &mut self.nets[batch.task];
        let head = check_batch(net.as_ref(), &self.heads, batch)?;
        let loss = net.loss_and_grad(batch.xs, batch.ys, head, &mut self.grad)?;
        check_step(loss, &self.grad, batch.task, self.stats.steps)?;
        self.sgds[batch.task].step(net.params_mut(), &self.grad);
        self.stats.steps += 1;
        Ok(loss)
    }

    fn predict(&mut self, xs: &[f32], task: usize, out: &mut [u32]) -> Result<()> {
        let head = self.heads.of(task)?;
        self.activate(task)?;
        predict_argmax(self.nets[task].as_mut(), &mut self.logits, xs, head, out)
    }

    fn predict_sparse(&mut self, xs: &SparseBatch, task: usize, out: &mut [u32]) -> Result<()> {
        let head = self.heads.of(task)?;
        self.activate(task)?;
        predict_argmax_sparse(self.nets[task].as_mut(), &mut self.logits, xs, head, out)
    }

    fn stats(&self) -> MethodStats {
        self.stats
    }

    fn save(&self, state: &mut State) -> Result<()> {
        state.put_models("net", &self.nets);
        for (t, sgd) in self.sgds.iter().enumerate() {
            sgd.save(state, &format!("optimizer.{t}.velocity"));
        }
        state.put("owner", &self.owner)?;
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_models("net", &mut self.nets)?;
        for (t, (sgd, net)) in self.sgds.iter_mut().zip(&self.nets).enumerate() {
            sgd.load(state, &format!("optimizer.{t}.velocity"), net.num_params())?;
        }
        let owner: u64 = state.get("owner")?;
        self.owner = bounded("owner", owner, self.nets.len())?;
        self.stats = state.get("stats")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::tests::{random_batch, setup};

    #[test]
    fn input_layers_are_per_task_and_the_rest_is_shared() {
        let setup = setup(3, Heads::Shared(3));
        let mut method = Multimodal::new(&setup, MultimodalParams { learning_rate: 0.1 }).unwrap();
        let k = method.input_layer_len;
        assert_eq!(k, 6 * 8 + 8);
        // 6-8 | 8-4-3: the model's own depth, as the reference (its 784-100 | 100-100-10)
        assert_eq!(method.nets[0].num_params(), k + 8 * 4 + 4 + 4 * 3 + 3);
        for task in 0..3 {
            let inputs: Vec<Vec<f32>> = method
                .nets
                .iter()
                .map(|n| n.params()[..k].to_vec())
                .collect();
            let (xs, ys) = random_batch(6, 3, 4, task as u64);
            method
                .observe(&Batch {
                    task,
                    xs: &xs,
                    ys: &ys,
                })
                .unwrap();
            for other in (0..3).filter(|&o| o != task) {
                assert_eq!(&method.nets[other].params()[..k], &inputs[other][..]);
            }
            assert_ne!(&method.nets[task].params()[..k], &inputs[task][..]);
        }
        // Task 2 trained last and holds the shared layers; evaluating task 0 hands them over.
        let shared = method.nets[2].params()[k..].to_vec();
        let (xs, _) = random_batch(6, 3, 2, 9);
        let mut out = [0; 2];
        method.predict(&xs, 0, &mut out).unwrap();
        assert_eq!(&method.nets[0].params()[k..], &shared[..]);
        assert_ne!(&method.nets[0].params()[..k], &method.nets[2].params()[..k]);
        assert!(method.predict(&xs, 3, &mut out).is_err());
    }
}
