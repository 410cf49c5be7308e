//! A benchmark: a data set cut into tasks by a scenario, ready to fill training batches and
//! test chunks. Tasks are the base data plus a per-task pixel map, applied when a batch is
//! needed: no transformed copy of the data set is ever made.

use std::ops::Range;

use rand::seq::SliceRandom;

use super::dataset::{Dataset, Inputs};
use super::scenario::{Scenario, Sizes, TaskDescriptor};
use super::transform::{InverseMap, PixelMap};
use crate::error::Result;
use crate::model::{FeatureFold, SparseBatch};
use crate::rng::{self, Purpose};

/// One task: a transform of the base data and the training examples drawn for it.
#[derive(Debug, Clone)]
pub struct Task {
    /// The per-task transform of each channel, applied to training and test images alike.
    pub map: PixelMap,
    /// The transform run backwards, for transforming sparse images.
    inverse: InverseMap,
    /// When the task's test images are the base test set with its features permuted: base
    /// feature `j` is the task's feature `test_feature_map[j]` (see
    /// [`Benchmark::test_feature_map`]).
    test_feature_map: Option<Vec<u32>>,
    /// When the task's test images are the base test set through a transform that drops
    /// and repeats pixels (a rotation, on sparse test data): its fold (see
    /// [`Benchmark::test_feature_fold`]).
    test_feature_fold: Option<FeatureFold>,
    /// Indices into the base training set of the examples this task trains on.
    pub train_indices: Vec<u32>,
    /// Indices into the base test set of the task's test examples; `None`: all of them.
    test_indices: Option<Vec<u32>>,
    /// The outputs the task's head predicts among (every class on a shared-head benchmark).
    pub head: Range<usize>,
    /// How the task is reported.
    pub descriptor: TaskDescriptor,
}

/// How to build a benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchmarkSpec {
    /// How tasks are made.
    pub scenario: Scenario,
    /// Number of tasks.
    pub tasks: usize,
    /// Training examples drawn per task; `None`: all of each task's.
    pub samples_per_task: Option<usize>,
    /// Train the tasks in a random order instead of 0..T-1.
    pub shuffle_tasks: bool,
    /// The run's seed.
    pub seed: u64,
}

/// A data set with its tasks.
#[derive(Debug)]
pub struct Benchmark {
    scenario: Scenario,
    data: Dataset,
    /// The non-zero test features, shared by all tasks' test sets, when the test images are
    /// mostly zero (MNIST: about a fifth are not); `None`: test chunks are filled densely.
    test_nonzero: Option<NonZero>,
    /// Output index of each class, when a class split renumbers them.
    renumber: Option<Vec<u32>>,
    tasks: Vec<Task>,
}

/// Test inputs are scored through their non-zero entries when at least this fraction of
/// their values is zero (the density below which the models' sparse path pays).
const SPARSE_TEST_ZERO_FRACTION: f64 = 1.0 - SparseBatch::MAX_DENSITY;

/// The non-zero features of a set of examples, already scaled.
#[derive(Debug, Clone)]
struct NonZero {
    starts: Vec<usize>,
    features: Vec<u32>,
    values: Vec<f32>,
}

impl NonZero {
    fn of(inputs: &Inputs, features: usize) -> Self {
        let mut out = Self {
            starts: vec![0],
            features: Vec::new(),
            values: Vec::new(),
        };
        let examples = inputs.len() / features.max(1);
        for k in 0..examples {
            let range = k * features..(k + 1) * features;
            match inputs {
                Inputs::Bytes(all) => {
                    for (j, &v) in all[range].iter().enumerate().filter(|(_, &v)| v != 0) {
                        out.features.push(j as u32);
                        out.values.push(super::transform::scale_pixel(v));
                    }
                }
                Inputs::Floats(all) => {
                    for (j, &v) in all[range].iter().enumerate().filter(|(_, &v)| v != 0.0) {
                        out.features.push(j as u32);
                        out.values.push(v);
                    }
                }
            }
            out.starts.push(out.features.len());
        }
        out
    }

    fn example(&self, k: usize) -> (&[u32], &[f32]) {
        let range = self.starts[k]..self.starts[k + 1];
        (&self.features[range.clone()], &self.values[range])
    }
}

impl Benchmark {
    /// Draws the tasks of `spec` from its seed over `data`.
    pub fn new(data: Dataset, spec: &BenchmarkSpec) -> Result<Self> {
        let mut rng = rng::stream(spec.seed, Purpose::Benchmark);
        let sizes = Sizes {
            tasks: spec.tasks,
            samples_per_task: spec.samples_per_task,
        };
        let (plans, renumber) = spec.scenario.plan(&data, sizes, &mut rng)?;
        let pixels = data.shape().pixels();
        let mut tasks: Vec<Task> = plans
            .into_iter()
            .map(|p| Task {
                test_feature_map: None,
                test_feature_fold: None,
                inverse: p.map.inverse(pixels),
                map: p.map,
                train_indices: p.train_indices,
                test_indices: p.test_indices,
                head: p.head,
                descriptor: p.descriptor,
            })
            .collect();
        if spec.shuffle_tasks {
            tasks.shuffle(&mut rng::stream(spec.seed, Purpose::TaskOrder));
        }
        let test = &data.test().inputs;
        let test_nonzero = (test.zero_fraction() >= SPARSE_TEST_ZERO_FRACTION)
            .then(|| NonZero::of(test, data.shape().features()));
        if test_nonzero.is_some() {
            let features = data.shape().features();
            for task in tasks.iter_mut().filter(|t| t.test_indices.is_none()) {
                task.test_feature_map = feature_permutation(&task.inverse, pixels, features);
                if task.test_feature_map.is_none() {
                    task.test_feature_fold = Some(FeatureFold::new(features, |j| {
                        let plane = (j / pixels * pixels) as u32;
                        task.inverse
                            .targets(j % pixels)
                            .iter()
                            .map(move |&t| plane + t)
                    })?);
                }
            }
        }
        Ok(Self {
            scenario: spec.scenario,
            test_nonzero,
            renumber,
            data,
            tasks,
        })
    }

    /// How the tasks were made.
    pub fn scenario(&self) -> Scenario {
        self.scenario
    }

    /// The data set.
    pub fn data(&self) -> &Dataset {
        &self.data
    }

    /// The tasks in training order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Input features per example.
    pub fn input_dim(&self) -> usize {
        self.data.shape().features()
    }

    /// Number of outputs (the data set's classes).
    pub fn num_classes(&self) -> usize {
        self.data.classes()
    }

    /// Number of test examples of `task`.
    pub fn test_len(&self, task: usize) -> usize {
        match &self.tasks[task].test_indices {
            Some(indices) => indices.len(),
            None => self.data.test().len(),
        }
    }

    /// Each task's head (the outputs it predicts among), in training order.
    pub fn heads(&self) -> Vec<Range<usize>> {
        self.tasks.iter().map(|t| t.head.clone()).collect()
    }

    /// Whether test chunks come sparse ([`Self::fill_test_sparse`]) rather than dense
    /// ([`Self::fill_test`]).
    pub fn sparse_test(&self) -> bool {
        self.test_nonzero.is_some()
    }

    fn output_of(&self, label: u32) -> u32 {
        self.renumber.as_ref().map_or(label, |r| r[label as usize])
    }

    /// Writes base training examples `indices`, transformed for `task`, into `xs` and `ys`.
    pub fn fill_train(&self, task: usize, indices: &[u32], xs: &mut [f32], ys: &mut [u32]) {
        let split = self.data.train();
        let d = self.input_dim();
        let channels = self.data.shape().channels;
        let map = &self.tasks[task].map;
        for ((&i, x), y) in indices
            .iter()
            .zip(xs.chunks_exact_mut(d))
            .zip(ys.iter_mut())
        {
            map.apply_example(&split.inputs, i as usize, channels, x);
            *y = self.output_of(split.labels[i as usize]);
        }
    }

    /// Writes test examples `start..start + ys.len()` of `task`, transformed for it, densely
    /// into `xs` (`ys.len()` rows) and `ys`.
    pub fn fill_test(&self, task: usize, start: usize, xs: &mut [f32], ys: &mut [u32]) {
        let split = self.data.test();
        let d = self.input_dim();
        let channels = self.data.shape().channels;
        let t = &self.tasks[task];
        for ((k, x), y) in (start..).zip(xs.chunks_exact_mut(d)).zip(ys.iter_mut()) {
            let k = t.test_indices.as_ref().map_or(k, |ix| ix[k] as usize);
            t.map.apply_example(&split.inputs, k, channels, x);
            *y = self.output_of(split.labels[k]);
        }
    }

    /// For a task whose test images are the whole base test set with its features permuted
    /// (a permutation scenario, on sparse test data): the map to give
    /// [`SparseBatch::set_feature_map`] so that base test chunks ([`Self::fill_base_test_sparse`])
    /// read as this task's, with results bit for bit those of [`Self::fill_test_sparse`].
    /// `None` for other tasks (rotations, subsets of the test set, dense data).
    pub fn test_feature_map(&self, task: usize) -> Option<&[u32]> {
        self.tasks[task].test_feature_map.as_deref()
    }

    /// For a task whose test images are the whole base test set through a transform that
    /// drops and repeats pixels (a rotation, on sparse test data): the fold to give
    /// [`SparseBatch::set_feature_fold`] so that base test chunks
    /// ([`Self::fill_base_test_sparse`]) read as this task's, with products equal to those
    /// of [`Self::fill_test_sparse`] up to rounding. `None` for other tasks (permutations,
    /// which have [`Self::test_feature_map`], subsets of the test set, dense data).
    pub fn test_feature_fold(&self, task: usize) -> Option<&FeatureFold> {
        self.tasks[task].test_feature_fold.as_ref()
    }

    /// Writes base test examples `start..start + ys.len()`, untransformed, into the sparse
    /// batch `xs` (its features in the order [`Self::fill_test_sparse`] visits them) and
    /// their outputs into `ys`; returns false, writing nothing, when the test set is not
    /// sparse.
    pub fn fill_base_test_sparse(
        &self,
        start: usize,
        xs: &mut SparseBatch,
        ys: &mut [u32],
    ) -> bool {
        let Some(nonzero) = &self.test_nonzero else {
            return false;
        };
        xs.clear(self.input_dim());
        for (k, y) in (start..).zip(ys.iter_mut()) {
            let (features, values) = nonzero.example(k);
            for (&j, &x) in features.iter().zip(values) {
                xs.push(j, x);
            }
            xs.end_row();
            *y = self.output_of(self.data.test().labels[k]);
        }
        true
    }

    /// Writes test examples `start..start + ys.len()` of `task`, transformed for it, into the
    /// sparse batch `xs` (visiting only the non-zero features) and `ys`. Falls back to the
    /// dense fill when the test set is not sparse.
    pub fn fill_test_sparse(
        &self,
        task: usize,
        start: usize,
        xs: &mut SparseBatch,
        ys: &mut [u32],
    ) {
        let d = self.input_dim();
        let Some(nonzero) = &self.test_nonzero else {
            let mut dense = vec![0.0; ys.len() * d];
            self.fill_test(task, start, &mut dense, ys);
            xs.clear(d);
            for row in dense.chunks_exact(d) {
                xs.push_row(
                    row.iter()
                        .enumerate()
                        .filter(|(_, &v)| v != 0.0)
                        .map(|(j, &v)| (j as u32, v)),
                );
            }
            return;
        };
        let pixels = self.data.shape().pixels();
        let t = &self.tasks[task];
        let example = |k: usize| t.test_indices.as_ref().map_or(k, |ix| ix[k] as usize);
        xs.clear(d);
        if let Some((width, padded)) = t.inverse.padded() {
            // Every slot written, the cursor moved by the pixel's count: no branch on the
            // number of targets (0, 1 or 2 for a rotation), which mispredicts; the whole
            // chunk in one go.
            let room: usize = (start..start + ys.len())
                .map(|k| nonzero.example(example(k)).0.len() * width)
                .sum();
            xs.push_rows_with(room, |cols, vals, ends| {
                let mut n = 0;
                for (k, y) in (start..).zip(ys.iter_mut()) {
                    let k = example(k);
                    let (features, values) = nonzero.example(k);
                    let fill = Targets {
                        padded,
                        inverse: &t.inverse,
                        pixels: pixels as u32,
                    };
                    n = match width {
                        1 => fill.copy::<1>(features, values, cols, vals, n),
                        2 => fill.copy::<2>(features, values, cols, vals, n),
                        3 => fill.copy::<3>(features, values, cols, vals, n),
                        _ => fill.copy::<4>(features, values, cols, vals, n),
                    };
                    ends.push(n);
                    *y = self.output_of(self.data.test().labels[k]);
                }
            });
            return;
        }
        for (k, y) in (start..).zip(ys.iter_mut()) {
            let k = example(k);
            let (features, values) = nonzero.example(k);
            for (&j, &x) in features.iter().zip(values) {
                let (offset, pixel) = (j - j % pixels as u32, (j % pixels as u32) as usize);
                for &i in t.inverse.targets(pixel) {
                    xs.push(offset + i, x);
                }
            }
            xs.end_row();
            *y = self.output_of(self.data.test().labels[k]);
        }
    }
}

/// A transform's targets, `W` fixed slots per source pixel in `padded` (see
/// [`InverseMap::padded`]), for copying sparse examples through it.
struct Targets<'a> {
    padded: &'a [u32],
    inverse: &'a InverseMap,
    /// Pixels per channel.
    pixels: u32,
}

impl Targets<'_> {
    /// Writes the entries `(target, value)` of one sparse example's `(features, values)`
    /// from position `n` of `cols` and `vals`: every slot copied, the cursor moved by the
    /// pixel's count (no branch on the count, which mispredicts). Returns the new cursor.
    #[inline(always)]
    fn copy<const W: usize>(
        &self,
        features: &[u32],
        values: &[f32],
        cols: &mut [u32],
        vals: &mut [f32],
        mut n: usize,
    ) -> usize {
        // The planes (channels) of an example's features, tracked without a division per
        // feature: features come in ascending order.
        let (mut offset, mut plane_end) = (0u32, self.pixels);
        for (&j, &x) in features.iter().zip(values) {
            while j >= plane_end {
                offset = plane_end;
                plane_end += self.pixels;
            }
            let pixel = (j - offset) as usize;
            let slots: &[u32; W] = self.padded[pixel * W..(pixel + 1) * W]
                .try_into()
                .expect("W slots");
            let (c, v): (&mut [u32; W], &mut [f32; W]) = (
                (&mut cols[n..n + W]).try_into().expect("room"),
                (&mut vals[n..n + W]).try_into().expect("room"),
            );
            for s in 0..W {
                c[s] = offset + slots[s];
                v[s] = x;
            }
            n += self.inverse.count(pixel);
        }
        n
    }
}

/// The feature permutation of a pixel map that sends every source pixel to exactly one
/// target (the same in every channel), or `None` (a rotation drops and repeats pixels).
fn feature_permutation(inverse: &InverseMap, pixels: usize, features: usize) -> Option<Vec<u32>> {
    let mut map = Vec::with_capacity(features);
    for j in 0..features {
        let (plane, pixel) = (j / pixels, j % pixels);
        match inverse.targets(pixel) {
            &[target] => map.push((plane * pixels) as u32 + target),
            _ => return None,
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests;
