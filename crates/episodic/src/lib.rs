//! # episodic
//!
//! Continual learning with Gradient Episodic Memory (GEM; Lopez-Paz and Ranzato, NIPS 2017)
//! and its baselines, on the paper's benchmarks or any data set, with the paper's metrics.
//!
//! The pieces, in the order data flows through them:
//!
//! - [`data`]: data sets ([`data::Dataset`]) from IDX, CIFAR or NumPy files or built in
//!   memory; scenarios ([`data::Scenario`]) that cut them into tasks; presets
//!   ([`data::Preset`], the paper's benchmarks by name); the training [`data::Stream`];
//! - [`model`]: the [`model::Model`] trait (flat parameters, per-task heads) and a native MLP on
//!   `gemm`;
//! - [`method`]: the [`method::Method`] trait and the methods (`single`, `independent`,
//!   `multimodal`, `ewc`, `icarl`, `agem`, `er`, `gem`), each built from named
//!   hyper-parameters whose `Default` is the paper's; [`memory`] and [`qp`] serve them;
//! - [`experiment`]: the one training/evaluation loop; [`metrics`]: ACC, BWT, FWT;
//!   [`results`]: the results JSON;
//! - [`checkpoint`] and [`state`]: saving a run and continuing it.
//!
//! [`prelude`] re-exports what an application embedding a method needs.
//!
//! An application's own stream, one mini-batch at a time (here two synthetic tasks):
//!
//! ```
//! use episodic::prelude::*;
//! use rand::SeedableRng;
//!
//! let config = MlpConfig { input: 4, hidden: vec![16], classes: 2 };
//! let model = Mlp::new(&config, 1, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))?;
//! // The paper's GEM (256 memories per task, margin 0.5) with another learning rate; the
//! // number of tasks need not be known: memories grow as tasks appear.
//! let params = GemParams { learning_rate: 0.05, ..GemParams::default() };
//! let mut gem = Gem::new(Box::new(model), params, Heads::Shared(2))?;
//! for task in 0..2 {
//!     for step in 0..20 {
//!         // Task t's label is the sign of feature t.
//!         let xs: Vec<f32> = (0..40).map(|i| ((i * 7 + step * 3 + task) % 11) as f32 - 5.0).collect();
//!         let ys: Vec<u32> = xs.chunks(4).map(|x| u32::from(x[task] > 0.0)).collect();
//!         gem.observe(&Batch { task, xs: &xs, ys: &ys })?;
//!     }
//!     gem.end_task(task)?;
//! }
//! let mut predictions = [0u32; 2];
//! gem.predict(&[1.0, -1.0, 0.0, 0.0, -1.0, 1.0, 0.0, 0.0], 0, &mut predictions)?;
//! assert_eq!(gem.stats().steps, 40);
//! # Ok::<(), episodic::Error>(())
//! ```
//!
//! A whole experiment (baseline, evaluations, the accuracy matrix and ACC/BWT/FWT) on a data
//! set built in memory:
//!
//! ```
//! use episodic::prelude::*;
//!
//! // 40 training and 20 test examples of 6 features in 4 classes.
//! let split = |n: usize| Split {
//!     inputs: Inputs::Floats((0..n * 6).map(|i| ((i * 13) % 7) as f32 / 7.0).collect()),
//!     labels: (0..n as u32).map(|k| k % 4).collect(),
//!     tasks: None,
//! };
//! let data = Dataset::new("toy", Shape::flat(6), 4, None, "memory", split(40), split(20))?;
//! let source = DataSource::Memory { name: "toy".into() };
//! let scenario = Scenario::ClassSplit { classes_per_task: Some(2), order: ClassOrder::Consecutive };
//! let config = ExperimentConfig::for_data(source, &data, scenario, None, MethodKind::Gem, 1)?;
//! let results = episodic::experiment::run(&config, data, &mut |_| {})?;
//! assert_eq!(results.accuracy_matrix.len(), 2);
//! println!("ACC {:.3}", results.metrics.acc);
//! # Ok::<(), episodic::Error>(())
//! ```

pub mod checkpoint;
pub mod config;
pub mod cost;
pub mod data;
mod error;
pub mod experiment;
pub(crate) mod linalg;
pub mod memory;
pub mod method;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod qp;
pub mod results;
pub mod rng;
pub mod state;

pub use error::{Error, Result};

/// What an application embedding a method needs, in one `use episodic::prelude::*`.
pub mod prelude {
    pub use crate::config::{
        AgemParams, ErParams, EwcParams, ExperimentConfig, GemParams, IcarlParams,
        IndependentParams, MethodConfig, MethodKind, MultimodalParams, SingleParams,
    };
    pub use crate::data::{
        ClassOrder, DataSource, Dataset, Inputs, Preset, Scenario, Shape, Split,
    };
    pub use crate::method::{Agem, Batch, Er, Ewc, Gem, Heads, Icarl, Method, MethodStats, Single};
    pub use crate::model::{Mlp, MlpConfig, Model};
    pub use crate::results::RunResults;
    pub use crate::{Error, Result};
}

pub use config::{ExperimentConfig, MethodConfig, MethodKind};
pub use data::{Dataset, Preset, Scenario};
pub use method::{Batch, Heads, Method};
pub use model::{MlpConfig, Model};
