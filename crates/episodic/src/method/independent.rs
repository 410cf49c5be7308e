//! `independent`: one small network per task.
//!
//! The paper's "independent" baseline (Lopez-Paz and Ranzato, NIPS 2017, section 5): task t
//! trains and predicts with its own network, so nothing learned on one task can be forgotten
//! on another, and nothing transfers either. To keep the total size of the T networks that
//! of one, each is 1/T as wide (every hidden layer `h / T` units, at least 1: 784-5-5-10 on
//! the 20-task MNIST continua). With `finetune` on (the reference's `--finetune yes`, the
//! paper's setting), a task's network starts as a copy of the previous task's network the
//! first time the task is seen; otherwise it keeps its own initialisation.
//!
//! Hyper-parameters (paper): learning rate 0.1 on MNIST Rotations, 0.03 on MNIST
//! Permutations; finetune on. Plain SGD, one optimiser per network, as in the reference.
//!
//! Differences from the reference: none in the algorithm. The T networks are initialised
//! one after another from the run's seed (the reference uses torch's global generator).

use super::{
    check_batch, check_step, predict_argmax, predict_argmax_sparse, Batch, Heads, Method,
    MethodStats, Setup,
};
use crate::config::IndependentParams;
use crate::error::{Error, Result};
use crate::model::{Model, SparseBatch};
use crate::optim::Sgd;
use crate::rng::{self, Purpose};
use crate::state::{bounded, State};

/// One network per task.
pub struct Independent {
    /// Network t serves task t; no parameter is shared between them.
    nets: Vec<Box<dyn Model>>,
    /// Whether task t has been trained on (so that fine-tuning copies only once).
    started: Vec<bool>,
    /// The task trained most recently.
    last_task: Option<usize>,
    params: IndependentParams,
    /// Optimiser t steps network t (each its own, as the reference's).
    sgds: Vec<Sgd>,
    heads: Heads,
    grad: Vec<f32>,
    logits: Vec<f32>,
    stats: MethodStats,
}

impl Independent {
    /// `setup.tasks` networks, each with hidden layers `1 / tasks` as wide as `setup.model`'s.
    pub fn new(setup: &Setup, params: IndependentParams) -> Result<Self> {
        crate::config::MethodConfig::Independent(params).validate()?;
        setup.optimizer.validate()?;
        let t = setup.tasks.max(1);
        let config = setup.model.one_of(t);
        let mut rng = rng::stream(setup.seed, Purpose::ModelInit);
        let nets = (0..t)
            .map(|_| config.build(setup.threads, &mut rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            grad: vec![0.0; config.num_params()],
            started: vec![false; t],
            sgds: vec![Sgd::new(params.learning_rate, setup.optimizer); t],
            nets,
            last_task: None,
            params,
            heads: setup.heads.clone(),
            logits: Vec::new(),
            stats: MethodStats::default(),
        })
    }

    /// The network of `task`.
    fn net(&mut self, task: usize) -> Result<&mut Box<dyn Model>> {
        let count = self.nets.len();
        self.nets.get_mut(task).ok_or(Error::InvalidOption {
            option: "task",
            reason: format!(
                "task {} has no network: independent was built for {count} tasks",
                task + 1
            ),
        })
    }

    /// The parameters of task `task`'s network.
    pub fn task_params(&self, task: usize) -> Option<&[f32]> {
        self.nets.get(task).map(|net| net.params())
    }
}

impl Method for Independent {
    fn name(&self) -> &'static str {
        "independent"
    }

    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32> {
        let task = batch.task;
        self.net(task)?;
        let head = check_batch(self.nets[task].as_ref(), &self.heads, batch)?;
        // A task's first batch starts its network from the previous task's; if the step
        // then fails, the network is put back so that nothing has changed.
        let restore = match (self.started[task], self.params.finetune, self.last_task) {
            (false, true, Some(previous)) => {
                let own = self.nets[task].params().to_vec();
                let source = self.nets[previous].params().to_vec();
                self.nets[task].params_mut().copy_from_slice(&source);
                Some(own)
            }
            _ => None,
        };
        let net = &mut self.nets[task];
        let checked = net
            .loss_and_grad(batch.xs, batch.ys, head, &mut self.grad)
            .and_then(|loss| check_step(loss, &self.grad, task, self.stats.steps).map(|()| loss));
        let loss = match checked {
            Ok(loss) => loss,
            Err(err) => {
                if let Some(own) = restore {
                    net.params_mut().copy_from_slice(&own);
                }
                return Err(err);
            }
        };
        self.started[task] = true;
        self.last_task = Some(task);
        self.sgds[task].step(net.params_mut(), &self.grad);
        self.stats.steps += 1;
        Ok(loss)
    }

    fn predict(&mut self, xs: &[f32], task: usize, out: &mut [u32]) -> Result<()> {
        let head = self.heads.of(task)?;
        self.net(task)?;
        predict_argmax(self.nets[task].as_mut(), &mut self.logits, xs, head, out)
    }

    fn predict_sparse(&mut self, xs: &SparseBatch, task: usize, out: &mut [u32]) -> Result<()> {
        let head = self.heads.of(task)?;
        self.net(task)?;
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
        state.put("started", &self.started)?;
        state.put("last_task", &self.last_task)?;
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_models("net", &mut self.nets)?;
        for (t, (sgd, net)) in self.sgds.iter_mut().zip(&self.nets).enumerate() {
            sgd.load(state, &format!("optimizer.{t}.velocity"), net.num_params())?;
        }
        let started: Vec<bool> = state.get("started")?;
        if started.len() != self.nets.len() {
            return Err(Error::CheckpointContent {
                reason: format!(
                    "{} task flags for {} networks",
                    started.len(),
                    self.nets.len()
                ),
            });
        }
        let last: Option<u64> = state.get("last_task")?;
        self.last_task = last
            .map(|t| bounded("last task", t, self.nets.len()))
            .transpose()?;
        self.started = started;
        self.stats = state.get("stats")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::tests::{random_batch, setup};

    #[test]
    fn task_networks_are_small_and_never_share_parameters() {
        let setup = setup(4, Heads::Shared(3));
        let params = IndependentParams {
            learning_rate: 0.1,
            finetune: true,
        };
        let mut method = Independent::new(&setup, params).unwrap();
        // Hidden widths 8 and 4 over 4 tasks: 2 and 1.
        assert_eq!(method.nets[0].num_params(), 6 * 2 + 2 + 2 + 1 + 3 + 3);
        let initial: Vec<Vec<f32>> = method.nets.iter().map(|n| n.params().to_vec()).collect();
        for task in 0..4 {
            let before: Vec<Vec<f32>> = method.nets.iter().map(|n| n.params().to_vec()).collect();
            for step in 0..5 {
                let (xs, ys) = random_batch(6, 3, 4, (task * 10 + step) as u64);
                method
                    .observe(&Batch {
                        task,
                        xs: &xs,
                        ys: &ys,
                    })
                    .unwrap();
            }
            for other in (0..4).filter(|&o| o != task) {
                assert_eq!(
                    method.nets[other].params(),
                    &before[other][..],
                    "training task {task} changed network {other}"
                );
            }
            assert_ne!(method.nets[task].params(), &before[task][..]);
        }
        // Fine-tuning started each network from the previous one, not from its own init.
        assert_ne!(method.nets[1].params(), &initial[1][..]);
    }

    #[test]
    fn without_finetune_each_network_starts_from_its_own_initialisation() {
        let setup = setup(2, Heads::Shared(3));
        let params = IndependentParams {
            learning_rate: 1e-9,
            finetune: false,
        };
        let mut method = Independent::new(&setup, params).unwrap();
        let init1 = method.nets[1].params().to_vec();
        let (xs, ys) = random_batch(6, 3, 4, 1);
        for task in 0..2 {
            method
                .observe(&Batch {
                    task,
                    xs: &xs,
                    ys: &ys,
                })
                .unwrap();
        }
        let moved: f32 = method.nets[1]
            .params()
            .iter()
            .zip(&init1)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(moved < 1e-6);
        assert!(method
            .observe(&Batch {
                task: 2,
                xs: &xs,
                ys: &ys
            })
            .is_err());
    }
}
