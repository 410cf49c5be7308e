//! Episodic memories: a fixed-capacity ring buffer of examples per task (GEM, A-GEM), and a
//! reservoir over the whole stream (experience replay).
//!
//! GEM writes every mini-batch of the current task into that task's memory; once full, the
//! oldest slot is overwritten. Unlike the reference (one write cursor shared by all tasks,
//! never reset, and the tail of a batch that crosses the buffer's end dropped), each task has
//! its own cursor and no example is dropped. A memory that is not full yet holds only the
//! examples written so far, so fewer training samples than memory slots is fine.
//!
//! A past task's memory does not change while later tasks train, yet GEM computes a gradient
//! on it at every step; the memory therefore keeps its inputs' sparse form, rebuilt only
//! after a write.

use rand::Rng;

use crate::error::Result;
use crate::model::SparseBatch;
use crate::state::{bounded, State};

/// A ring buffer of at most `capacity` examples of one task.
#[derive(Debug, Clone)]
pub struct RingMemory {
    capacity: usize,
    input_dim: usize,
    xs: Vec<f32>,
    ys: Vec<u32>,
    /// Slot the next example is written to.
    cursor: usize,
    /// Examples held (at most `capacity`).
    len: usize,
    /// The inputs' non-zero entries, valid when `sparse_state` is `Some(true)`.
    sparse: SparseBatch,
    /// `None`: not built since the last write; `Some(sparse enough?)` otherwise.
    sparse_state: Option<bool>,
}

impl RingMemory {
    /// An empty memory for `capacity` examples of `input_dim` features. Slots are allocated
    /// as they are first written, so a capacity beyond the examples a task has costs nothing.
    pub fn new(capacity: usize, input_dim: usize) -> Self {
        Self {
            capacity,
            input_dim,
            xs: Vec::new(),
            ys: Vec::new(),
            cursor: 0,
            len: 0,
            sparse: SparseBatch::default(),
            sparse_state: None,
        }
    }

    /// Writes the examples of a batch, overwriting the oldest once full.
    pub fn push_batch(&mut self, xs: &[f32], ys: &[u32]) {
        if self.capacity == 0 {
            return;
        }
        self.sparse_state = None;
        let d = self.input_dim;
        for (x, &y) in xs.chunks_exact(d).zip(ys) {
            if self.ys.len() <= self.cursor {
                // First write of this slot (and of any skipped one, which stays zero).
                self.ys.resize(self.cursor + 1, 0);
                self.xs.resize((self.cursor + 1) * d, 0.0);
            }
            self.xs[self.cursor * d..(self.cursor + 1) * d].copy_from_slice(x);
            self.ys[self.cursor] = y;
            self.cursor = (self.cursor + 1) % self.capacity;
            self.len = (self.len + 1).min(self.capacity);
        }
    }

    /// Number of examples held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the memory holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inputs held (`len * input_dim`, slot order).
    pub fn xs(&self) -> &[f32] {
        &self.xs[..self.len * self.input_dim]
    }

    /// Builds the sparse form of the inputs if a write made it stale (cheap otherwise).
    pub fn refresh_sparse(&mut self) {
        if self.sparse_state.is_none() && self.len > 0 {
            let built = self
                .sparse
                .refill(&self.xs[..self.len * self.input_dim], self.input_dim);
            self.sparse_state = Some(built);
        }
    }

    /// The inputs held as a [`SparseBatch`], if [`Self::refresh_sparse`] ran since the last
    /// write and they are sparse enough.
    pub fn sparse_xs(&self) -> Option<&SparseBatch> {
        (self.sparse_state == Some(true)).then_some(&self.sparse)
    }

    /// The labels held (slot order).
    pub fn ys(&self) -> &[u32] {
        &self.ys[..self.len]
    }
}

impl RingMemory {
    /// Saves the memory under `prefix` in `state`.
    pub fn save(&self, state: &mut State, prefix: &str) -> Result<()> {
        state.put_f32(format!("{prefix}.xs"), self.xs());
        state.put_u32(format!("{prefix}.ys"), self.ys());
        state.put(format!("{prefix}.cursor"), &self.cursor)
    }

    /// Loads a memory saved by [`RingMemory::save`], refusing one that does not fit this
    /// memory's capacity and input size or holds labels of `classes` or more.
    pub fn load(&mut self, state: &State, prefix: &str, classes: usize) -> Result<()> {
        let ys = state.u32(&format!("{prefix}.ys"), None)?;
        let len = ys.len();
        bounded(
            &format!("{prefix} size"),
            len as u64,
            self.capacity.saturating_add(1),
        )?;
        let xs = state.f32(&format!("{prefix}.xs"), Some(len * self.input_dim))?;
        check_examples(prefix, xs, ys, classes)?;
        let cursor: u64 = state.get(&format!("{prefix}.cursor"))?;
        let cursor = bounded(&format!("{prefix} cursor"), cursor, self.capacity.max(1))?;
        self.xs = xs.to_vec();
        self.ys = ys.to_vec();
        self.len = len;
        self.cursor = cursor;
        self.sparse_state = None;
        Ok(())
    }
}

/// Refuses saved examples with non-finite inputs or labels of `classes` or more.
pub(crate) fn check_examples(what: &str, xs: &[f32], ys: &[u32], classes: usize) -> Result<()> {
    if xs.iter().any(|v| !v.is_finite()) {
        return Err(crate::error::Error::CheckpointContent {
            reason: format!("{what} holds a NaN or infinite input"),
        });
    }
    if let Some(&y) = ys.iter().find(|&&y| y as usize >= classes) {
        return Err(crate::error::Error::CheckpointContent {
            reason: format!("{what} holds label {y}, beyond the {classes} classes"),
        });
    }
    Ok(())
}

/// A uniform sample of at most `capacity` examples of everything offered so far
/// (reservoir sampling, Vitter's algorithm R): the n-th example offered is kept with
/// probability `capacity / n`, replacing a uniformly chosen slot, so at any time every
/// example seen is held with the same probability.
#[derive(Debug, Clone)]
pub struct Reservoir {
    capacity: usize,
    input_dim: usize,
    xs: Vec<f32>,
    ys: Vec<u32>,
    tasks: Vec<usize>,
    /// Examples offered so far.
    seen: u64,
}

impl Reservoir {
    /// An empty reservoir for `capacity` examples of `input_dim` features.
    pub fn new(capacity: usize, input_dim: usize) -> Self {
        Self {
            capacity,
            input_dim,
            xs: Vec::new(),
            ys: Vec::new(),
            tasks: Vec::new(),
            seen: 0,
        }
    }

    /// The number of examples it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Raises the capacity by `extra` slots: the next offers fill them before any example
    /// is replaced (a budget that grows with the tasks seen).
    pub fn grow(&mut self, extra: usize) {
        self.capacity = self.capacity.saturating_add(extra);
    }

    /// Offers every example of a batch of `task`.
    pub fn offer_batch(&mut self, xs: &[f32], ys: &[u32], task: usize, rng: &mut impl Rng) {
        let d = self.input_dim;
        for (x, &y) in xs.chunks_exact(d).zip(ys) {
            self.seen += 1;
            if self.ys.len() < self.capacity {
                self.xs.extend_from_slice(x);
                self.ys.push(y);
                self.tasks.push(task);
            } else {
                let j = rng.random_range(0..self.seen);
                if let Ok(slot) = usize::try_from(j) {
                    if slot < self.capacity {
                        self.xs[slot * d..(slot + 1) * d].copy_from_slice(x);
                        self.ys[slot] = y;
                        self.tasks[slot] = task;
                    }
                }
            }
        }
    }

    /// Number of examples held (at most the capacity).
    pub fn len(&self) -> usize {
        self.ys.len()
    }

    /// Whether the reservoir holds nothing.
    pub fn is_empty(&self) -> bool {
        self.ys.is_empty()
    }

    /// Examples offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The inputs of slot `i`.
    pub fn x(&self, i: usize) -> &[f32] {
        &self.xs[i * self.input_dim..(i + 1) * self.input_dim]
    }

    /// The labels held, slot order.
    pub fn ys(&self) -> &[u32] {
        &self.ys
    }

    /// The task of each slot.
    pub fn tasks(&self) -> &[usize] {
        &self.tasks
    }

    /// Saves the reservoir under `prefix` in `state`.
    pub fn save(&self, state: &mut State, prefix: &str) -> Result<()> {
        state.put_f32(format!("{prefix}.xs"), &self.xs);
        state.put_u32(format!("{prefix}.ys"), &self.ys);
        let tasks: Vec<u64> = self.tasks.iter().map(|&t| t as u64).collect();
        state.put_u64(format!("{prefix}.tasks"), &tasks);
        state.put(format!("{prefix}.seen"), &self.seen)
    }

    /// Loads a reservoir saved by [`Reservoir::save`], refusing one that does not fit (size,
    /// input size, labels of `classes` or more, tasks of `tasks` or more).
    pub fn load(
        &mut self,
        state: &State,
        prefix: &str,
        classes: usize,
        tasks: usize,
    ) -> Result<()> {
        let ys = state.u32(&format!("{prefix}.ys"), None)?;
        let len = ys.len();
        bounded(
            &format!("{prefix} size"),
            len as u64,
            self.capacity.saturating_add(1),
        )?;
        let xs = state.f32(&format!("{prefix}.xs"), Some(len * self.input_dim))?;
        check_examples(prefix, xs, ys, classes)?;
        let saved_tasks = state.u64(&format!("{prefix}.tasks"), Some(len))?;
        let task_list = saved_tasks
            .iter()
            .map(|&t| bounded(&format!("{prefix} task"), t, tasks))
            .collect::<Result<Vec<_>>>()?;
        let seen: u64 = state.get(&format!("{prefix}.seen"))?;
        if seen < len as u64 {
            return Err(crate::error::Error::CheckpointContent {
                reason: format!("{prefix} holds {len} examples but saw only {seen}"),
            });
        }
        self.xs = xs.to_vec();
        self.ys = ys.to_vec();
        self.tasks = task_list;
        self.seen = seen;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: u32, n: u32) -> (Vec<f32>, Vec<u32>) {
        let ys: Vec<u32> = (from..from + n).collect();
        let xs = ys.iter().flat_map(|&y| [y as f32, -(y as f32)]).collect();
        (xs, ys)
    }

    #[test]
    fn a_huge_capacity_allocates_only_what_is_written() {
        // `--memories-per-task 18446744073709551615` used to overflow the up-front allocation.
        let mut m = RingMemory::new(usize::MAX, 2);
        let (xs, ys) = batch(0, 3);
        m.push_batch(&xs, &ys);
        assert_eq!(m.ys(), &[0, 1, 2]);
        assert_eq!(m.xs(), &[0.0, -0.0, 1.0, -1.0, 2.0, -2.0]);
        assert!(m.xs.capacity() < 1 << 20);
        let mut state = State::default();
        m.save(&mut state, "m").unwrap();
        let mut back = RingMemory::new(usize::MAX, 2);
        back.load(&state, "m", 10).unwrap();
        assert_eq!((back.xs(), back.ys()), (m.xs(), m.ys()));
    }

    #[test]
    fn fills_then_overwrites_the_oldest_without_dropping() {
        let mut m = RingMemory::new(5, 2);
        assert!(m.is_empty());
        let (x, y) = batch(0, 3);
        m.push_batch(&x, &y);
        assert_eq!(m.ys(), &[0, 1, 2]);
        // A batch that crosses the end wraps around: nothing is dropped.
        let (x, y) = batch(3, 4);
        m.push_batch(&x, &y);
        assert_eq!(m.len(), 5);
        assert_eq!(m.ys(), &[5, 6, 2, 3, 4]);
        assert_eq!(&m.xs()[..4], &[5.0, -5.0, 6.0, -6.0]);
        // The memory always holds the last `capacity` examples.
        let (x, y) = batch(7, 12);
        m.push_batch(&x, &y);
        let mut held = m.ys().to_vec();
        held.sort_unstable();
        assert_eq!(held, vec![14, 15, 16, 17, 18]);
    }

    #[test]
    fn partial_memory_exposes_only_written_examples() {
        let mut m = RingMemory::new(256, 2);
        let (x, y) = batch(0, 10);
        m.push_batch(&x, &y);
        assert_eq!(m.len(), 10);
        assert_eq!(m.xs().len(), 20);
    }

    #[test]
    fn sparse_form_follows_every_write() {
        let mut m = RingMemory::new(4, 5);
        m.refresh_sparse();
        assert!(m.sparse_xs().is_none());
        let xs = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0];
        m.push_batch(&xs, &[1, 2]);
        assert!(m.sparse_xs().is_none(), "stale until refreshed");
        m.refresh_sparse();
        assert_eq!(m.sparse_xs().unwrap().to_dense(), xs.to_vec());
        m.push_batch(&[0.0, 0.0, 0.0, 0.0, 3.0], &[3]);
        m.refresh_sparse();
        assert_eq!(m.sparse_xs().unwrap().n_rows(), 3);
        assert_eq!(m.sparse_xs().unwrap().to_dense()[14], 3.0);
        m.push_batch(&[1.0; 10], &[0, 0]);
        m.refresh_sparse();
        assert!(m.sparse_xs().is_none(), "dense inputs stay dense");
    }

    #[test]
    fn reservoir_never_exceeds_its_budget_and_is_uniform_over_the_stream() {
        use rand::SeedableRng;
        let (capacity, stream, trials) = (50usize, 1000usize, 400u64);
        let mut kept = vec![0u32; stream];
        for trial in 0..trials {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(trial);
            let mut reservoir = Reservoir::new(capacity, 1);
            for i in 0..stream {
                reservoir.offer_batch(&[i as f32], &[0], i / 100, &mut rng);
                assert!(reservoir.len() <= capacity);
                assert_eq!(reservoir.len(), (i + 1).min(capacity));
            }
            assert_eq!(reservoir.seen(), stream as u64);
            for slot in 0..reservoir.len() {
                let i = reservoir.x(slot)[0] as usize;
                assert_eq!(
                    reservoir.tasks()[slot],
                    i / 100,
                    "task travels with its example"
                );
                kept[i] += 1;
            }
        }
        // Each example is held with probability 50/1000; over 400 trials, a decile of the
        // stream (100 examples) is held 2000 times on average (sd about 43).
        for (decile, counts) in kept.chunks(100).enumerate() {
            let total: u32 = counts.iter().sum();
            assert!(
                (1800..=2200).contains(&total),
                "decile {decile} of the stream held {total} times, expected about 2000"
            );
        }
    }
}
