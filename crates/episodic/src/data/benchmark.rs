//! The MNIST continua: tasks made of the base data set and a per-task pixel map, or (for
//! `mnist-split`) of a disjoint subset of the classes.

use std::fmt;
use std::ops::Range;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::mnist::{Mnist, IMAGE_PIXELS, NUM_CLASSES};
use super::transform::{scale_pixel, InverseMap, PixelMap};
use crate::error::{Error, Result};
use crate::model::SparseBatch;
use crate::rng::{self, Purpose};

/// Which continuum to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchmarkKind {
    /// Each task permutes the pixels with its own fixed random permutation.
    MnistPermutations,
    /// Task t rotates every image by an angle drawn in [t*180/T, (t+1)*180/T) degrees.
    MnistRotations,
    /// Class-split MNIST: task t holds digits t*10/T .. (t+1)*10/T (5 tasks of 2 digits by
    /// default), with one head per task: outputs outside the task's classes are masked in
    /// training and at test, as the paper does for CIFAR-100.
    MnistSplit,
}

impl BenchmarkKind {
    /// The command-line name.
    pub fn id(self) -> &'static str {
        match self {
            Self::MnistPermutations => "mnist-permutations",
            Self::MnistRotations => "mnist-rotations",
            Self::MnistSplit => "mnist-split",
        }
    }

    /// Every benchmark, in the order reports list them.
    pub const ALL: [Self; 3] = [
        Self::MnistPermutations,
        Self::MnistRotations,
        Self::MnistSplit,
    ];

    /// Whether each task has its own classes and output head (task-incremental).
    pub fn is_class_split(self) -> bool {
        matches!(self, Self::MnistSplit)
    }

    /// Number of tasks in the paper's protocol (20; 5 tasks of 2 digits for `mnist-split`).
    pub fn default_tasks(self) -> usize {
        match self {
            Self::MnistSplit => 5,
            _ => 20,
        }
    }
}

impl fmt::Display for BenchmarkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// What identifies a task's transform in a results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskDescriptor {
    /// A pixel permutation, by the SHA-256 of its source map.
    Permutation {
        /// Hex SHA-256 of the permutation.
        sha256: String,
    },
    /// A rotation by this many degrees, counter-clockwise.
    Rotation {
        /// The angle drawn for the task.
        degrees: f64,
    },
    /// The task's own digits (class-split benchmarks).
    Classes {
        /// The digits of the task.
        digits: Vec<u32>,
    },
}

/// One task: a transform of the base data and the training examples drawn for it.
#[derive(Debug, Clone)]
pub struct Task {
    /// The per-task transform, applied to training and test images alike.
    pub map: PixelMap,
    /// The transform run backwards, for transforming sparse images.
    inverse: InverseMap,
    /// Indices into the base training set of the examples this task trains on.
    pub train_indices: Vec<u32>,
    /// Indices into the base test set of the task's test examples; `None`: all of them.
    test_indices: Option<Vec<u32>>,
    /// The classes the task's head predicts among (every class on a shared-head benchmark).
    pub head: Range<usize>,
    /// How the transform is reported.
    pub descriptor: TaskDescriptor,
}

/// How to build a benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchmarkSpec {
    /// Which continuum.
    pub kind: BenchmarkKind,
    /// Number of tasks.
    pub tasks: usize,
    /// Training examples drawn per task.
    pub samples_per_task: usize,
    /// Train the tasks in a random order instead of 0..T-1.
    pub shuffle_tasks: bool,
    /// The run's seed.
    pub seed: u64,
}

/// A continuum of tasks over MNIST.
#[derive(Debug)]
pub struct Benchmark {
    kind: BenchmarkKind,
    data: Mnist,
    /// The non-zero pixels of every base test image, shared by all tasks' test sets.
    test_nonzero: NonZeroPixels,
    tasks: Vec<Task>,
}

/// The non-zero pixels of a set of images (MNIST: about a fifth of them).
#[derive(Debug, Clone)]
struct NonZeroPixels {
    starts: Vec<u32>,
    pixels: Vec<u16>,
    values: Vec<u8>,
}

impl NonZeroPixels {
    fn of(images: &[u8]) -> Self {
        let mut out = Self {
            starts: vec![0],
            pixels: Vec::new(),
            values: Vec::new(),
        };
        for image in images.chunks_exact(IMAGE_PIXELS) {
            for (j, &v) in image.iter().enumerate() {
                if v != 0 {
                    out.pixels.push(j as u16);
                    out.values.push(v);
                }
            }
            out.starts.push(out.pixels.len() as u32);
        }
        out
    }

    fn image(&self, k: usize) -> (&[u16], &[u8]) {
        let range = self.starts[k] as usize..self.starts[k + 1] as usize;
        (&self.pixels[range.clone()], &self.values[range])
    }
}

impl Benchmark {
    /// Draws the tasks of `spec` from its seed over the base data.
    pub fn new(data: Mnist, spec: &BenchmarkSpec) -> Result<Self> {
        let available = data.train.len();
        if spec.tasks == 0 {
            return Err(Error::InvalidOption {
                option: "--tasks",
                reason: "must be at least 1".into(),
            });
        }
        if spec.samples_per_task == 0 || spec.samples_per_task > available {
            return Err(Error::InvalidOption {
                option: "--samples-per-task",
                reason: format!(
                    "must be between 1 and the {available} training images, got {}",
                    spec.samples_per_task
                ),
            });
        }
        let mut rng = rng::stream(spec.seed, Purpose::Benchmark);
        let mut tasks = if spec.kind.is_class_split() {
            class_split_tasks(&data, spec, &mut rng)?
        } else {
            (0..spec.tasks)
                .map(|t| {
                    let (map, descriptor) = match spec.kind {
                        BenchmarkKind::MnistRotations => {
                            let width = 180.0 / spec.tasks as f64;
                            let degrees = t as f64 * width + rng.random::<f64>() * width;
                            (
                                PixelMap::rotation(degrees),
                                TaskDescriptor::Rotation { degrees },
                            )
                        }
                        _ => {
                            let map = PixelMap::random_permutation(IMAGE_PIXELS, &mut rng);
                            let sha256 = map.digest();
                            (map, TaskDescriptor::Permutation { sha256 })
                        }
                    };
                    let train_indices =
                        rand::seq::index::sample(&mut rng, available, spec.samples_per_task)
                            .into_iter()
                            .map(|i| i as u32)
                            .collect();
                    Task {
                        inverse: map.inverse(IMAGE_PIXELS),
                        map,
                        train_indices,
                        test_indices: None,
                        head: 0..NUM_CLASSES,
                        descriptor,
                    }
                })
                .collect()
        };
        if spec.shuffle_tasks {
            tasks.shuffle(&mut rng::stream(spec.seed, Purpose::TaskOrder));
        }
        Ok(Self {
            kind: spec.kind,
            test_nonzero: NonZeroPixels::of(&data.test.images),
            data,
            tasks,
        })
    }

    /// Which continuum this is.
    pub fn kind(&self) -> BenchmarkKind {
        self.kind
    }

    /// The tasks in training order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Input features per example.
    pub fn input_dim(&self) -> usize {
        IMAGE_PIXELS
    }

    /// Number of classes of the shared head.
    pub fn num_classes(&self) -> usize {
        NUM_CLASSES
    }

    /// Number of test examples of `task`.
    pub fn test_len(&self, task: usize) -> usize {
        match &self.tasks[task].test_indices {
            Some(indices) => indices.len(),
            None => self.data.test.len(),
        }
    }

    /// Each task's head (the classes it predicts among), in training order.
    pub fn heads(&self) -> Vec<Range<usize>> {
        self.tasks.iter().map(|t| t.head.clone()).collect()
    }

    /// Writes base training examples `indices`, transformed for `task`, into `xs` and `ys`.
    pub fn fill_train(&self, task: usize, indices: &[u32], xs: &mut [f32], ys: &mut [u32]) {
        let split = &self.data.train;
        let map = &self.tasks[task].map;
        for ((&i, x), y) in indices
            .iter()
            .zip(xs.chunks_exact_mut(IMAGE_PIXELS))
            .zip(ys.iter_mut())
        {
            map.apply_scaled(split.image(i as usize), x);
            *y = u32::from(split.labels[i as usize]);
        }
    }

    /// Writes test examples `start..start + ys.len()` of `task`, transformed for it, into the sparse
    /// batch `xs` (visiting only the non-zero pixels) and `ys`.
    pub fn fill_test_sparse(
        &self,
        task: usize,
        start: usize,
        xs: &mut SparseBatch,
        ys: &mut [u32],
    ) {
        let inverse = &self.tasks[task].inverse;
        let test_indices = self.tasks[task].test_indices.as_deref();
        xs.clear(IMAGE_PIXELS);
        for (k, y) in (start..).zip(ys.iter_mut()) {
            let k = test_indices.map_or(k, |indices| indices[k] as usize);
            let (pixels, values) = self.test_nonzero.image(k);
            for (&j, &v) in pixels.iter().zip(values) {
                let x = scale_pixel(v);
                for &i in inverse.targets(usize::from(j)) {
                    xs.push(i, x);
                }
            }
            xs.end_row();
            *y = u32::from(self.data.test.labels[k]);
        }
    }
}

/// The tasks of a class-split benchmark: task t holds digits `t * c .. (t + 1) * c` with
/// `c = 10 / T`, trains on `samples_per_task` of their training images drawn without
/// repetition, and is tested on all their test images.
fn class_split_tasks(data: &Mnist, spec: &BenchmarkSpec, rng: &mut impl Rng) -> Result<Vec<Task>> {
    if NUM_CLASSES % spec.tasks != 0 {
        return Err(Error::InvalidOption {
            option: "--tasks",
            reason: format!(
                "{} splits the {NUM_CLASSES} digits into equal tasks only for 1, 2, 5 or 10 tasks, got {}",
                spec.kind, spec.tasks
            ),
        });
    }
    let per_task = NUM_CLASSES / spec.tasks;
    let of_classes = |labels: &[u8], head: &Range<usize>| -> Vec<u32> {
        labels
            .iter()
            .enumerate()
            .filter(|(_, &y)| head.contains(&usize::from(y)))
            .map(|(i, _)| i as u32)
            .collect()
    };
    (0..spec.tasks)
        .map(|t| {
            let head = t * per_task..(t + 1) * per_task;
            let pool = of_classes(&data.train.labels, &head);
            if spec.samples_per_task > pool.len() {
                return Err(Error::InvalidOption {
                    option: "--samples-per-task",
                    reason: format!(
                        "task {t} (digits {}..{}) has only {} training images, got {}",
                        head.start,
                        head.end - 1,
                        pool.len(),
                        spec.samples_per_task
                    ),
                });
            }
            let train_indices = rand::seq::index::sample(rng, pool.len(), spec.samples_per_task)
                .into_iter()
                .map(|i| pool[i])
                .collect();
            let map = PixelMap::identity(IMAGE_PIXELS);
            Ok(Task {
                inverse: map.inverse(IMAGE_PIXELS),
                map,
                train_indices,
                test_indices: Some(of_classes(&data.test.labels, &head)),
                descriptor: TaskDescriptor::Classes {
                    digits: head.clone().map(|d| d as u32).collect(),
                },
                head,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mnist::MnistSplit;

    /// A tiny synthetic MNIST: `n` images per split, image k filled with k % 256.
    fn tiny(n: usize) -> Mnist {
        let split = MnistSplit {
            images: (0..n * IMAGE_PIXELS)
                .map(|i| ((i / IMAGE_PIXELS) % 256) as u8)
                .collect(),
            labels: (0..n).map(|k| (k % 10) as u8).collect(),
        };
        Mnist {
            train: split.clone(),
            test: split,
        }
    }

    fn spec(kind: BenchmarkKind, shuffle_tasks: bool, seed: u64) -> BenchmarkSpec {
        BenchmarkSpec {
            kind,
            tasks: 5,
            samples_per_task: 7,
            shuffle_tasks,
            seed,
        }
    }

    #[test]
    fn rotation_angles_fall_in_their_bins_and_come_from_the_seed() {
        let b = Benchmark::new(tiny(30), &spec(BenchmarkKind::MnistRotations, false, 1)).unwrap();
        for (t, task) in b.tasks().iter().enumerate() {
            let TaskDescriptor::Rotation { degrees } = task.descriptor else {
                panic!("not a rotation")
            };
            assert!(
                (t as f64 * 36.0..(t + 1) as f64 * 36.0).contains(&degrees),
                "task {t}: {degrees}"
            );
            assert_eq!(task.train_indices.len(), 7);
            let mut unique = task.train_indices.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), 7, "a subset without repetition");
        }
        let again =
            Benchmark::new(tiny(30), &spec(BenchmarkKind::MnistRotations, false, 1)).unwrap();
        let other =
            Benchmark::new(tiny(30), &spec(BenchmarkKind::MnistRotations, false, 2)).unwrap();
        let descriptors = |b: &Benchmark| {
            b.tasks()
                .iter()
                .map(|t| t.descriptor.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(descriptors(&b), descriptors(&again));
        assert_ne!(descriptors(&b), descriptors(&other));
    }

    #[test]
    fn shuffled_task_order_is_a_permutation_of_the_same_tasks() {
        let ordered =
            Benchmark::new(tiny(30), &spec(BenchmarkKind::MnistPermutations, false, 3)).unwrap();
        let shuffled =
            Benchmark::new(tiny(30), &spec(BenchmarkKind::MnistPermutations, true, 3)).unwrap();
        let hashes = |b: &Benchmark| {
            b.tasks()
                .iter()
                .map(|t| match &t.descriptor {
                    TaskDescriptor::Permutation { sha256 } => sha256.clone(),
                    _ => unreachable!(),
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (hashes(&ordered), hashes(&shuffled));
        assert_ne!(a, b, "seed 3 shuffles 5 tasks into another order");
        let (mut a_sorted, mut b_sorted) = (a.clone(), b.clone());
        a_sorted.sort();
        b_sorted.sort();
        assert_eq!(a_sorted, b_sorted);
    }

    #[test]
    fn sparse_test_batches_equal_the_dense_transform() {
        for kind in [
            BenchmarkKind::MnistPermutations,
            BenchmarkKind::MnistRotations,
        ] {
            let b = Benchmark::new(tiny(12), &spec(kind, false, 4)).unwrap();
            let mut sparse = SparseBatch::default();
            let mut ys = vec![0; 4];
            b.fill_test_sparse(2, 5, &mut sparse, &mut ys);
            assert_eq!(ys, vec![5, 6, 7, 8]);
            assert_eq!(b.test_len(2), 12);
            let mut dense = vec![0.0; 4 * IMAGE_PIXELS];
            for (k, x) in dense.chunks_exact_mut(IMAGE_PIXELS).enumerate() {
                b.tasks()[2].map.apply_scaled(b.data.test.image(5 + k), x);
            }
            assert_eq!(sparse.to_dense(), dense);
        }
    }

    #[test]
    fn rejects_impossible_sizes() {
        let err =
            Benchmark::new(tiny(5), &spec(BenchmarkKind::MnistPermutations, false, 0)).unwrap_err();
        assert!(err.to_string().contains("--samples-per-task"), "{err}");
        let mut zero_tasks = spec(BenchmarkKind::MnistPermutations, false, 0);
        zero_tasks.tasks = 0;
        assert!(Benchmark::new(tiny(30), &zero_tasks)
            .unwrap_err()
            .to_string()
            .contains("--tasks"));
    }

    #[test]
    fn class_split_tasks_hold_their_own_digits_and_heads() {
        let mut s = spec(BenchmarkKind::MnistSplit, false, 5);
        s.samples_per_task = 4;
        let b = Benchmark::new(tiny(60), &s).unwrap();
        assert_eq!(b.tasks().len(), 5);
        for (t, task) in b.tasks().iter().enumerate() {
            assert_eq!(task.head, 2 * t..2 * t + 2);
            assert_eq!(task.train_indices.len(), 4);
            let mut xs = vec![0.0; 4 * IMAGE_PIXELS];
            let mut ys = vec![0; 4];
            b.fill_train(t, &task.train_indices, &mut xs, &mut ys);
            assert!(ys.iter().all(|&y| task.head.contains(&(y as usize))));
            // 60 images with labels k % 10: 6 test images per digit, 12 per task.
            assert_eq!(b.test_len(t), 12);
            let mut sparse = SparseBatch::default();
            let mut test_ys = vec![0; 12];
            b.fill_test_sparse(t, 0, &mut sparse, &mut test_ys);
            assert!(test_ys.iter().all(|&y| task.head.contains(&(y as usize))));
            // No transform: the sparse rows are the raw test images.
            let k = task.test_indices.as_ref().unwrap()[3] as usize;
            let mut raw = vec![0.0; IMAGE_PIXELS];
            PixelMap::identity(IMAGE_PIXELS).apply_scaled(b.data.test.image(k), &mut raw);
            assert_eq!(
                &sparse.to_dense()[3 * IMAGE_PIXELS..4 * IMAGE_PIXELS],
                &raw[..]
            );
        }
        assert_eq!(b.heads()[4], 8..10);
    }

    #[test]
    fn class_split_rejects_uneven_splits_and_oversized_tasks() {
        let mut s = spec(BenchmarkKind::MnistSplit, false, 5);
        s.tasks = 3;
        let err = Benchmark::new(tiny(60), &s).unwrap_err().to_string();
        assert!(err.contains("--tasks"), "{err}");
        s.tasks = 5;
        s.samples_per_task = 13;
        let err = Benchmark::new(tiny(60), &s).unwrap_err().to_string();
        assert!(
            err.contains("--samples-per-task") && err.contains("only 12"),
            "{err}"
        );
    }
}
