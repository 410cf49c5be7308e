//! # episodic
//!
//! Continual learning with Gradient Episodic Memory (GEM; Lopez-Paz and Ranzato, NIPS 2017)
//! and its baselines, on the paper's MNIST continua, with the paper's metrics.
//!
//! The pieces, in the order data flows through them:
//!
//! - [`data`]: MNIST IDX files (checked on load), per-task pixel maps, [`data::Benchmark`]s
//!   (MNIST Permutations, MNIST Rotations, class-split MNIST) and the training [`data::Stream`];
//! - [`model`]: the [`model::Model`] trait (flat parameters, per-task heads) and a native MLP on
//!   `gemm`;
//! - [`method`]: the [`method::Method`] trait and the methods (`single`, `independent`,
//!   `multimodal`, `ewc`, `icarl`, `agem`, `er`, `gem`); [`memory`] and [`qp`] serve them;
//! - [`experiment`]: the one training/evaluation loop; [`metrics`]: ACC, BWT, FWT;
//!   [`results`]: the results JSON;
//! - [`checkpoint`] and [`state`]: saving a run and continuing it.
//!
//! ```no_run
//! use episodic::{config::{ExperimentConfig, MethodKind}, data::{Checksums, Preset, Vendored}};
//!
//! let data = Vendored::Mnist.load("data".as_ref(), Checksums::Verify)?;
//! let config = ExperimentConfig::paper(Preset::MnistPermutations, MethodKind::Gem, 1);
//! let results = episodic::experiment::run(&config, data, &mut |_| {})?;
//! println!("ACC {:.3}", results.metrics.acc);
//! # Ok::<(), episodic::Error>(())
//! ```

pub mod checkpoint;
pub mod config;
pub mod data;
mod error;
pub mod experiment;
pub(crate) mod linalg;
pub mod memory;
pub mod method;
pub mod metrics;
pub mod model;
pub mod qp;
pub mod results;
pub mod rng;
pub mod state;

pub use error::{Error, Result};
