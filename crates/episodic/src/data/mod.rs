//! Data: data sets and their loaders, scenarios that cut them into tasks, per-task transforms,
//! presets (the paper's benchmarks by name) and the stream.
//!
//! - a data set ([`Dataset`]) comes from a loader: [`idx`] (MNIST, Fashion-MNIST and any IDX
//!   pair), [`cifar`] (CIFAR-10 and CIFAR-100, binary and python layouts), [`npz`] (a user's
//!   NumPy arrays); [`DataSource`] records which, for a run's configuration;
//! - a [`Scenario`] makes tasks from it (permutations, rotations, class split, given tasks);
//! - a [`Preset`] names a data set, a scenario and the protocol's defaults;
//! - a [`Benchmark`] is a data set with its tasks; the [`Stream`] orders its training examples.

mod benchmark;
pub mod cifar;
pub mod dataset;
pub mod idx;
pub mod npz;
pub mod pickle;
pub mod presets;
pub mod scenario;
mod source;
mod stream;
pub mod transform;

pub use benchmark::{Benchmark, BenchmarkSpec, Task};
pub use cifar::{load_cifar, CifarVariant};
pub use dataset::{Dataset, Inputs, Shape, Split, MAX_CLASSES};
pub use idx::{Checksums, IdxFiles, Vendored};
pub use npz::{load_arrays, Holdout};
pub use presets::{Preset, Protocol};
pub use scenario::{ClassOrder, Scenario, TaskDescriptor};
pub use source::DataSource;
pub use stream::{BatchSpan, Stream, MAX_STREAM_EXAMPLES};
pub use transform::PixelMap;
