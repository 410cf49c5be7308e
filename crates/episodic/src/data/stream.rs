//! The training stream: the order in which examples reach the learner.
//!
//! For each task in training order: its examples are shuffled, once per epoch (epochs of a
//! task are consecutive), and the concatenation is cut into mini-batches that never cross a
//! task boundary (the last batch of a task may be short).

use std::ops::Range;

use rand::seq::SliceRandom;

use crate::rng::{self, Purpose};

/// The most example positions a stream holds (tasks x examples x epochs; 1 GiB of indices): a
/// guard against options that would exhaust memory before the first step.
pub const MAX_STREAM_EXAMPLES: usize = 1 << 28;

/// One mini-batch: a task and a range of positions into [`Stream::positions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpan {
    /// The task the batch belongs to (training order).
    pub task: usize,
    /// Positions of its examples in [`Stream::positions`].
    pub range: Range<usize>,
}

/// The whole training stream of a run, as indices into the base training set.
#[derive(Debug, Clone)]
pub struct Stream {
    positions: Vec<u32>,
    batches: Vec<BatchSpan>,
}

impl Stream {
    /// Lays out the stream for tasks with the given training examples (indices into the base
    /// training set), shuffling from `seed`.
    pub fn new(task_examples: &[&[u32]], epochs: usize, batch_size: usize, seed: u64) -> Self {
        let mut rng = rng::stream(seed, Purpose::Stream);
        let mut positions = Vec::new();
        let mut batches = Vec::new();
        for (task, examples) in task_examples.iter().enumerate() {
            let start = positions.len();
            for _ in 0..epochs {
                let mut epoch = examples.to_vec();
                epoch.shuffle(&mut rng);
                positions.extend_from_slice(&epoch);
            }
            let end = positions.len();
            let mut from = start;
            while from < end {
                let to = from.saturating_add(batch_size.max(1)).min(end);
                batches.push(BatchSpan {
                    task,
                    range: from..to,
                });
                from = to;
            }
        }
        Self { positions, batches }
    }

    /// Indices into the base training set, in stream order.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// The mini-batches, in order.
    pub fn batches(&self) -> &[BatchSpan] {
        &self.batches
    }

    /// The base-training-set indices of one batch.
    pub fn examples(&self, batch: &BatchSpan) -> &[u32] {
        &self.positions[batch.range.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_never_cross_tasks_and_cover_every_epoch() {
        let a: Vec<u32> = (0..25).collect();
        let b: Vec<u32> = (100..107).collect();
        let s = Stream::new(&[&a, &b], 2, 10, 3);
        let sizes: Vec<(usize, usize)> = s
            .batches()
            .iter()
            .map(|b| (b.task, b.range.len()))
            .collect();
        // Task 0: 50 examples (2 epochs) -> 10,10,10,10,10; task 1: 14 -> 10, 4.
        assert_eq!(
            sizes,
            vec![(0, 10), (0, 10), (0, 10), (0, 10), (0, 10), (1, 10), (1, 4)]
        );
        for batch in s.batches() {
            let ex = s.examples(batch);
            let from_a = ex.iter().all(|&i| i < 25);
            let from_b = ex.iter().all(|&i| i >= 100);
            assert!(if batch.task == 0 { from_a } else { from_b });
        }
        // Each epoch is a permutation of the task's examples.
        for epoch in s.positions()[..50].chunks(25) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            assert_eq!(e, a);
        }
        assert_ne!(
            &s.positions()[..25],
            &s.positions()[25..50],
            "epochs are reshuffled"
        );
    }

    #[test]
    fn order_comes_from_the_seed() {
        let a: Vec<u32> = (0..100).collect();
        let s1 = Stream::new(&[&a], 1, 10, 5);
        let s2 = Stream::new(&[&a], 1, 10, 5);
        let s3 = Stream::new(&[&a], 1, 10, 6);
        assert_eq!(s1.positions(), s2.positions());
        assert_ne!(s1.positions(), s3.positions());
        assert_ne!(s1.positions(), &a[..], "shuffled");
    }
}
