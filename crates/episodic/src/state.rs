//! The saved state of a method: named flat tensors and small JSON values.
//!
//! Methods write everything they need to continue a run into a [`State`] (parameters,
//! memories, Fisher diagonals, exemplars, random-generator positions, counters) and read it
//! back with length and type checks, so that a checkpoint from another configuration or a
//! damaged one is refused with a message instead of being half-loaded. [`crate::checkpoint`]
//! stores a `State` as safetensors (tensors) plus a JSON manifest (values).

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Model;

/// A flat tensor of one element type.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// 32-bit floats (parameters, inputs, statistics).
    F32(Vec<f32>),
    /// 32-bit unsigned integers (labels).
    U32(Vec<u32>),
    /// 64-bit unsigned integers (task indices, counters).
    U64(Vec<u64>),
}

/// Named tensors and JSON values describing a method's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    tensors: BTreeMap<String, Tensor>,
    values: serde_json::Map<String, serde_json::Value>,
}

/// Where a random generator stands: its seed, stream and position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RngPosition {
    seed: [u8; 32],
    stream: u64,
    /// The word position (a u128), as a decimal string: JSON numbers cannot hold it.
    word_pos: String,
}

fn bad(reason: String) -> Error {
    Error::CheckpointContent { reason }
}

impl State {
    /// A state from its parts (as read from a checkpoint file).
    pub fn from_parts(
        tensors: BTreeMap<String, Tensor>,
        values: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        Self { tensors, values }
    }

    /// The tensors, by name.
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    /// The JSON values, by name.
    pub fn values(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.values
    }

    /// Stores 32-bit floats under `name`.
    pub fn put_f32(&mut self, name: impl Into<String>, data: &[f32]) {
        self.tensors.insert(name.into(), Tensor::F32(data.to_vec()));
    }

    /// Stores 32-bit labels under `name`.
    pub fn put_u32(&mut self, name: impl Into<String>, data: &[u32]) {
        self.tensors.insert(name.into(), Tensor::U32(data.to_vec()));
    }

    /// Stores 64-bit integers under `name`.
    pub fn put_u64(&mut self, name: impl Into<String>, data: &[u64]) {
        self.tensors.insert(name.into(), Tensor::U64(data.to_vec()));
    }

    /// Stores a JSON value under `name`.
    pub fn put<T: Serialize>(&mut self, name: impl Into<String>, value: &T) -> Result<()> {
        self.values
            .insert(name.into(), serde_json::to_value(value)?);
        Ok(())
    }

    /// The floats stored under `name`; `len`, when given, is the length they must have.
    pub fn f32(&self, name: &str, len: Option<usize>) -> Result<&[f32]> {
        match self.tensors.get(name) {
            Some(Tensor::F32(v)) => check_len(name, v, len),
            Some(_) => Err(bad(format!("tensor {name} is not f32"))),
            None => Err(bad(format!("tensor {name} is missing"))),
        }
    }

    /// The labels stored under `name`; `len`, when given, is the length they must have.
    pub fn u32(&self, name: &str, len: Option<usize>) -> Result<&[u32]> {
        match self.tensors.get(name) {
            Some(Tensor::U32(v)) => check_len(name, v, len),
            Some(_) => Err(bad(format!("tensor {name} is not u32"))),
            None => Err(bad(format!("tensor {name} is missing"))),
        }
    }

    /// The integers stored under `name`; `len`, when given, is the length they must have.
    pub fn u64(&self, name: &str, len: Option<usize>) -> Result<&[u64]> {
        match self.tensors.get(name) {
            Some(Tensor::U64(v)) => check_len(name, v, len),
            Some(_) => Err(bad(format!("tensor {name} is not u64"))),
            None => Err(bad(format!("tensor {name} is missing"))),
        }
    }

    /// The JSON value stored under `name`, as a `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self
            .values
            .get(name)
            .ok_or_else(|| bad(format!("value {name} is missing")))?;
        serde_json::from_value(value.clone()).map_err(|e| bad(format!("value {name}: {e}")))
    }

    /// Stores the parameters of `model` under `name`.
    pub fn put_model(&mut self, name: &str, model: &dyn Model) {
        self.put_f32(name, model.params());
        if !model.buffers().is_empty() {
            self.put_f32(format!("{name}.buffers"), model.buffers());
        }
    }

    /// Loads parameters saved by [`State::put_model`] into `model`, refusing any other size.
    pub fn load_model(&self, name: &str, model: &mut dyn Model) -> Result<()> {
        let params = self.f32(name, Some(model.num_params()))?;
        if params.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!(
                "tensor {name} holds a NaN or infinite parameter"
            )));
        }
        let buffers = if model.buffers().is_empty() {
            None
        } else {
            let key = format!("{name}.buffers");
            let buffers = self.f32(&key, Some(model.buffers().len()))?;
            if buffers.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!("tensor {key} holds a NaN or infinite value")));
            }
            Some(buffers)
        };
        model.params_mut().copy_from_slice(params);
        if let Some(buffers) = buffers {
            model.buffers_mut().copy_from_slice(buffers);
        }
        Ok(())
    }

    /// Stores the parameters (and buffers) of each of `models` under `prefix.0`, `prefix.1`, ...
    pub fn put_models(&mut self, prefix: &str, models: &[Box<dyn Model>]) {
        for (i, model) in models.iter().enumerate() {
            self.put_model(&format!("{prefix}.{i}"), model.as_ref());
        }
    }

    /// Loads parameters saved by [`State::put_models`] into `models`, one by one.
    pub fn load_models(&self, prefix: &str, models: &mut [Box<dyn Model>]) -> Result<()> {
        for (i, model) in models.iter_mut().enumerate() {
            self.load_model(&format!("{prefix}.{i}"), model.as_mut())?;
        }
        Ok(())
    }

    /// Stores where `rng` stands under `name`.
    pub fn put_rng(&mut self, name: &str, rng: &ChaCha8Rng) -> Result<()> {
        self.put(
            name,
            &RngPosition {
                seed: rng.get_seed(),
                stream: rng.get_stream(),
                word_pos: rng.get_word_pos().to_string(),
            },
        )
    }

    /// A generator at the position saved by [`State::put_rng`].
    pub fn rng(&self, name: &str) -> Result<ChaCha8Rng> {
        use rand::SeedableRng;
        let at: RngPosition = self.get(name)?;
        let word_pos: u128 = at
            .word_pos
            .parse()
            .map_err(|_| bad(format!("value {name}: bad word position {:?}", at.word_pos)))?;
        let mut rng = ChaCha8Rng::from_seed(at.seed);
        rng.set_stream(at.stream);
        rng.set_word_pos(word_pos);
        Ok(rng)
    }
}

fn check_len<'a, T>(name: &str, v: &'a [T], len: Option<usize>) -> Result<&'a [T]> {
    match len {
        Some(len) if v.len() != len => Err(bad(format!(
            "tensor {name} has {} entries, expected {len}",
            v.len()
        ))),
        _ => Ok(v),
    }
}

/// A task index or count read back from a checkpoint, refused if it is `limit` or more.
pub(crate) fn bounded(name: &str, value: u64, limit: usize) -> Result<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v < limit)
        .ok_or_else(|| bad(format!("{name} {value} is out of range (limit {limit})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn values_round_trip_and_lengths_are_checked() {
        let mut state = State::default();
        state.put_f32("w", &[1.0, 2.0]);
        state.put_u32("y", &[3]);
        state.put_u64("t", &[4, 5]);
        state.put("n", &7u64).unwrap();
        assert_eq!(state.f32("w", Some(2)).unwrap(), &[1.0, 2.0]);
        assert!(state.f32("w", Some(3)).is_err());
        assert!(state.f32("y", None).is_err(), "wrong type");
        assert!(state.u32("missing", None).is_err());
        assert_eq!(state.u64("t", None).unwrap(), &[4, 5]);
        assert_eq!(state.get::<u64>("n").unwrap(), 7);
        assert!(state.get::<String>("n").is_err());
        assert!(bounded("task", 3, 3).is_err());
        assert_eq!(bounded("task", 2, 3).unwrap(), 2);
    }

    #[test]
    fn a_restored_generator_continues_the_same_sequence() {
        let mut rng = crate::rng::stream(9, crate::rng::Purpose::Method);
        for _ in 0..37 {
            rng.random::<u32>();
        }
        let mut state = State::default();
        state.put_rng("rng", &rng).unwrap();
        let mut restored = state.rng("rng").unwrap();
        let a: Vec<u64> = (0..10).map(|_| rng.random()).collect();
        let b: Vec<u64> = (0..10).map(|_| restored.random()).collect();
        assert_eq!(a, b);
        let _ = ChaCha8Rng::seed_from_u64(0);
    }
}
