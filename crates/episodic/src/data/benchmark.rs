//! The MNIST continua: tasks made of the base data set and a per-task pixel map.

use std::fmt;

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
}

impl BenchmarkKind {
    /// The command-line name.
    pub fn id(self) -> &'static str {
        match self {
            Self::MnistPermutations => "mnist-permutations",
            Self::MnistRotations => "mnist-rotations",
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
        let mut tasks: Vec<Task> = (0..spec.tasks)
            .map(|t| {
                let (map, descriptor) = match spec.kind {
                    BenchmarkKind::MnistPermutations => {
                        let map = PixelMap::random_permutation(IMAGE_PIXELS, &mut rng);
                        let sha256 = map.digest();
                        (map, TaskDescriptor::Permutation { sha256 })
                    }
                    BenchmarkKind::MnistRotations => {
                        let width = 180.0 / spec.tasks as f64;
                        let degrees = t as f64 * width + rng.random::<f64>() * width;
                        (
                            PixelMap::rotation(degrees),
                            TaskDescriptor::Rotation { degrees },
                        )
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
                    descriptor,
                }
            })
            .collect();
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

    /// Number of test examples of each task.
    pub fn test_len(&self) -> usize {
        self.data.test.len()
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

    /// Writes test examples `start..start + ys.len()`, transformed for `task`, into the sparse
    /// batch `xs` (visiting only the non-zero pixels) and `ys`.
    pub fn fill_test_sparse(
        &self,
        task: usize,
        start: usize,
        xs: &mut SparseBatch,
        ys: &mut [u32],
    ) {
        let inverse = &self.tasks[task].inverse;
        xs.clear(IMAGE_PIXELS);
        for (k, y) in (start..).zip(ys.iter_mut()) {
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
                    TaskDescriptor::Rotation { .. } => unreachable!(),
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
}
