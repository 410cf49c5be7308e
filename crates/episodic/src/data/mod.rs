//! Data: MNIST files, per-task transforms, benchmarks built from them, and the stream.

mod benchmark;
pub mod mnist;
mod stream;
pub mod transform;

pub use benchmark::{Benchmark, BenchmarkKind, BenchmarkSpec, Task, TaskDescriptor};
pub use mnist::{Checksums, Mnist, MnistSplit};
pub use stream::{BatchSpan, Stream};
pub use transform::PixelMap;
