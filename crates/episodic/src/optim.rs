//! The optimiser every method steps with: SGD with optional momentum and weight decay.
//!
//! A method forms its update direction (the gradient, GEM's projected gradient, EWC's
//! penalised gradient, ...) and hands it to [`Sgd::step`]. The paper's runs use plain SGD
//! (`params -= learning_rate * direction`), which is the default and bit-identical to the
//! update the methods made before this optimiser existed. Momentum and weight decay follow
//! `torch.optim.SGD` (dampening 0, not Nesterov): `d = direction + weight_decay * params`;
//! the velocity is `d` on the first step and `momentum * velocity + d` after it; then
//! `params -= learning_rate * velocity`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::State;

/// Momentum and weight decay of SGD; both 0 (plain SGD, the paper's) by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Momentum, in [0, 1) (`--momentum`).
    #[serde(default)]
    pub momentum: f64,
    /// L2 weight decay added to the direction, >= 0 (`--weight-decay`).
    #[serde(default)]
    pub weight_decay: f64,
}

impl SgdConfig {
    /// Whether this is plain SGD (no momentum, no decay).
    pub fn is_plain(&self) -> bool {
        self.momentum == 0.0 && self.weight_decay == 0.0
    }

    /// Checks both values, naming the offending option.
    pub fn validate(&self) -> Result<()> {
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::InvalidOption {
                option: "--momentum",
                reason: format!("must be in [0, 1), got {}", self.momentum),
            });
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::InvalidOption {
                option: "--weight-decay",
                reason: format!("must be a finite number >= 0, got {}", self.weight_decay),
            });
        }
        Ok(())
    }
}

/// SGD over one flat parameter vector, with its velocity when it has momentum.
#[derive(Debug, Clone)]
pub struct Sgd {
    learning_rate: f32,
    momentum: f32,
    weight_decay: f32,
    /// Empty until the first step with momentum; then one entry per parameter.
    velocity: Vec<f32>,
}

impl Sgd {
    /// SGD with step size `learning_rate` and the momentum and decay of `config`.
    pub fn new(learning_rate: f64, config: SgdConfig) -> Self {
        Self {
            learning_rate: learning_rate as f32,
            momentum: config.momentum as f32,
            weight_decay: config.weight_decay as f32,
            velocity: Vec::new(),
        }
    }

    /// Plain SGD with step size `learning_rate`.
    pub fn plain(learning_rate: f64) -> Self {
        Self::new(learning_rate, SgdConfig::default())
    }

    /// The step size.
    pub fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    /// Whether every step is `params -= learning_rate * direction` (no momentum, no decay):
    /// what methods that predict the effect of a step (GEM's kept first layers) rely on.
    pub fn is_plain(&self) -> bool {
        self.momentum == 0.0 && self.weight_decay == 0.0
    }

    /// The velocity (empty before the first step, and always without momentum).
    pub fn velocity(&self) -> &[f32] {
        &self.velocity
    }

    /// Takes the velocity of the parameters `shared` from `other`, the optimiser of another
    /// network of `len` parameters that shares them (multimodal's per-task networks), so that
    /// the shared parameters' momentum carries over from network to network. The others keep
    /// theirs, zero when this optimiser has not stepped yet (its first step then starts them
    /// at the direction, as it would have).
    pub fn share_velocity(&mut self, other: &Sgd, shared: std::ops::Range<usize>, len: usize) {
        if other.velocity.len() != len {
            return;
        }
        if self.velocity.len() != len {
            self.velocity = vec![0.0; len];
        }
        self.velocity[shared.clone()].copy_from_slice(&other.velocity[shared]);
    }

    /// One step of `params` along `direction` (same length).
    pub fn step(&mut self, params: &mut [f32], direction: &[f32]) {
        debug_assert_eq!(params.len(), direction.len());
        let rate = self.learning_rate;
        if self.is_plain() {
            params
                .iter_mut()
                .zip(direction)
                .for_each(|(p, g)| *p -= rate * g);
            return;
        }
        let decay = self.weight_decay;
        if self.momentum == 0.0 {
            params
                .iter_mut()
                .zip(direction)
                .for_each(|(p, g)| *p -= rate * (g + decay * *p));
            return;
        }
        let momentum = self.momentum;
        if self.velocity.len() != params.len() {
            self.velocity.clear();
            self.velocity
                .extend(params.iter().zip(direction).map(|(p, g)| g + decay * p));
        } else {
            self.velocity
                .iter_mut()
                .zip(params.iter().zip(direction))
                .for_each(|(v, (p, g))| *v = momentum * *v + (g + decay * p));
        }
        params
            .iter_mut()
            .zip(&self.velocity)
            .for_each(|(p, v)| *p -= rate * v);
    }

    /// Writes the velocity (when there is momentum) under `name`.
    pub fn save(&self, state: &mut State, name: &str) {
        if self.momentum != 0.0 {
            state.put_f32(name, &self.velocity);
        }
    }

    /// Reads what [`Sgd::save`] wrote under `name` for `len` parameters: a velocity of
    /// `len` entries, or an empty one (no step taken yet).
    pub fn load(&mut self, state: &State, name: &str, len: usize) -> Result<()> {
        if self.momentum == 0.0 {
            self.velocity.clear();
            return Ok(());
        }
        let velocity = state.f32(name, None)?;
        if !velocity.is_empty() && velocity.len() != len {
            return Err(Error::CheckpointContent {
                reason: format!(
                    "optimiser velocity {name} has {} entries for {len} parameters",
                    velocity.len()
                ),
            });
        }
        self.velocity = velocity.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(momentum: f64, weight_decay: f64) -> SgdConfig {
        SgdConfig {
            momentum,
            weight_decay,
        }
    }

    #[test]
    fn plain_sgd_is_the_plain_update() {
        let mut sgd = Sgd::plain(0.1);
        let mut p = vec![1.0f32, -2.0, 0.5];
        let g = [0.3f32, 0.7, -1.1];
        let expected: Vec<f32> = p.iter().zip(&g).map(|(p, g)| p - 0.1f32 * g).collect();
        sgd.step(&mut p, &g);
        assert_eq!(p, expected);
        assert!(sgd.velocity().is_empty());
    }

    /// The values torch.optim.SGD(lr=0.5, momentum=0.9, weight_decay=0.1) gives for
    /// p = [1, -2], gradients [0.5, 0.25] then [-1, 2], worked by hand:
    /// d1 = [0.6, 0.05], v1 = d1, p1 = [0.7, -2.025];
    /// d2 = [-0.93, 1.7975], v2 = 0.9 v1 + d2 = [-0.39, 1.8425], p2 = [0.895, -2.94625].
    #[test]
    fn momentum_and_decay_follow_torch() {
        let mut sgd = Sgd::new(0.5, config(0.9, 0.1));
        let mut p = vec![1.0f32, -2.0];
        sgd.step(&mut p, &[0.5, 0.25]);
        assert!(
            (p[0] - 0.7).abs() < 1e-6 && (p[1] + 2.025).abs() < 1e-6,
            "{p:?}"
        );
        sgd.step(&mut p, &[-1.0, 2.0]);
        assert!((p[0] - 0.895).abs() < 1e-6, "{p:?}");
        assert!((p[1] + 2.94625).abs() < 1e-6, "{p:?}");
        assert!((sgd.velocity()[1] - 1.8425).abs() < 1e-6);
    }

    #[test]
    fn decay_without_momentum_keeps_no_velocity() {
        let mut sgd = Sgd::new(0.5, config(0.0, 0.1));
        let mut p = vec![2.0f32];
        sgd.step(&mut p, &[1.0]);
        assert!((p[0] - (2.0 - 0.5 * 1.2)).abs() < 1e-6);
        assert!(sgd.velocity().is_empty());
    }

    #[test]
    fn velocity_survives_save_and_load() {
        let mut a = Sgd::new(0.1, config(0.5, 0.0));
        let mut p = vec![1.0f32, 2.0, 3.0];
        a.step(&mut p, &[1.0, 1.0, 1.0]);
        let mut state = State::default();
        a.save(&mut state, "optimizer.velocity");
        let mut b = Sgd::new(0.1, config(0.5, 0.0));
        b.load(&state, "optimizer.velocity", 3).unwrap();
        let mut q = p.clone();
        a.step(&mut p, &[0.5, -0.5, 2.0]);
        b.step(&mut q, &[0.5, -0.5, 2.0]);
        assert_eq!(p, q);
        let mut c = Sgd::new(0.1, config(0.5, 0.0));
        assert!(c.load(&state, "optimizer.velocity", 4).is_err());
        assert!(c.load(&State::default(), "optimizer.velocity", 3).is_err());
    }

    #[test]
    fn impossible_values_name_their_option() {
        for (m, wd, option) in [
            (1.0, 0.0, "--momentum"),
            (-0.1, 0.0, "--momentum"),
            (f64::NAN, 0.0, "--momentum"),
            (0.9, -1e-4, "--weight-decay"),
            (0.0, f64::INFINITY, "--weight-decay"),
        ] {
            match config(m, wd).validate() {
                Err(Error::InvalidOption { option: o, .. }) => assert_eq!(o, option),
                other => panic!("{m} {wd}: {other:?}"),
            }
        }
        assert!(config(0.9, 5e-4).validate().is_ok());
        assert!(SgdConfig::default().is_plain());
    }
}
