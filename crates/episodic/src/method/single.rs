//! `single`: one network fine-tuned on the stream with plain SGD.
//!
//! The paper's lower baseline: no memory, no regularisation, so earlier tasks are
//! forgotten as later ones are learned. Hyper-parameter: the learning rate
//! (0.03 on MNIST Permutations, 0.003 on MNIST Rotations). Same as the reference.

use super::{check_batch, check_step, Batch, Heads, Method, MethodStats};
use crate::config::SingleParams;
use crate::error::Result;
use crate::model::Model;
use crate::optim::{Sgd, SgdConfig};
use crate::state::State;

/// Fine-tuning of one network.
pub struct Single {
    model: Box<dyn Model>,
    params: SingleParams,
    /// Steps the model along the method's update direction.
    sgd: Sgd,
    heads: Heads,
    grad: Vec<f32>,
    logits: Vec<f32>,
    stats: MethodStats,
}

impl Single {
    /// Fine-tunes `model` with checked `params`; `heads` gives each task's classes.
    pub fn new(model: Box<dyn Model>, params: SingleParams, heads: Heads) -> Result<Self> {
        crate::config::MethodConfig::Single(params).validate()?;
        Ok(Self {
            sgd: Sgd::plain(params.learning_rate),
            heads,
            grad: vec![0.0; model.num_params()],
            model,
            params,
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
}

impl Method for Single {
    fn name(&self) -> &'static str {
        "single"
    }

    fn observe(&mut self, batch: &Batch<'_>) -> Result<f32> {
        let head = check_batch(self.model.as_ref(), &self.heads, batch)?;
        let loss = self
            .model
            .loss_and_grad(batch.xs, batch.ys, head, &mut self.grad)?;
        check_step(loss, &self.grad, batch.task, self.stats.steps)?;
        self.sgd.step(self.model.params_mut(), &self.grad);
        self.stats.steps += 1;
        Ok(loss)
    }

    one_network_predictions!();

    fn save(&self, state: &mut State) -> Result<()> {
        state.put_model("model", self.model.as_ref());
        self.sgd.save(state, "optimizer.velocity");
        state.put("stats", &self.stats)
    }

    fn load(&mut self, state: &State) -> Result<()> {
        state.load_model("model", self.model.as_mut())?;
        let n = self.model.num_params();
        self.sgd.load(state, "optimizer.velocity", n)?;
        self.stats = state.get("stats")?;
        Ok(())
    }
}
