//! Seeded random streams: every random draw of a run comes from its seed.
//!
//! Each purpose gets its own ChaCha8 stream of the same seed, so that, for example, the
//! benchmark's draws (permutations, angles, training subsets) are the same whatever the
//! method, and adding a draw in one place does not shift the draws of another.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Task transforms and per-task training subsets.
    Benchmark = 1,
    /// Shuffling the examples inside each task.
    Stream = 2,
    /// Model initialisation.
    ModelInit = 3,
    /// A method's own draws.
    Method = 4,
    /// The order of the tasks, when shuffled.
    TaskOrder = 5,
    /// The examples held out as a test set when a data set has none.
    Holdout = 6,
}

/// The random stream for `purpose` under `seed`.
pub fn stream(seed: u64, purpose: Purpose) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose as u64);
    rng
}
