use super::*;
use crate::data::dataset::{Shape, Split};
use crate::data::scenario::ClassOrder;

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;

/// A tiny synthetic MNIST: `n` images per split, image k filled with k % 256 (so mostly
/// non-zero: dense), or with one non-zero pixel in `sparse` form.
fn tiny(n: usize) -> Dataset {
    tiny_with(n, false)
}

fn tiny_with(n: usize, sparse: bool) -> Dataset {
    let split = Split {
        inputs: Inputs::Bytes(
            (0..n * PIXELS)
                .map(|i| {
                    let k = i / PIXELS;
                    if !sparse || i % PIXELS == k % PIXELS {
                        (k % 255 + 1) as u8
                    } else {
                        0
                    }
                })
                .collect(),
        ),
        labels: (0..n as u32).map(|k| k % 10).collect(),
        tasks: None,
    };
    let shape = Shape {
        channels: 1,
        height: SIDE,
        width: SIDE,
    };
    Dataset::new("tiny", shape, 10, None, "test", split.clone(), split).unwrap()
}

fn spec(scenario: Scenario, shuffle_tasks: bool, seed: u64) -> BenchmarkSpec {
    BenchmarkSpec {
        scenario,
        tasks: 5,
        samples_per_task: Some(7),
        shuffle_tasks,
        seed,
    }
}

fn split_scenario() -> Scenario {
    Scenario::ClassSplit {
        classes_per_task: None,
        order: ClassOrder::Consecutive,
    }
}

#[test]
fn rotation_angles_fall_in_their_bins_and_come_from_the_seed() {
    let b = Benchmark::new(tiny(30), &spec(Scenario::Rotations, false, 1)).unwrap();
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
    let again = Benchmark::new(tiny(30), &spec(Scenario::Rotations, false, 1)).unwrap();
    let other = Benchmark::new(tiny(30), &spec(Scenario::Rotations, false, 2)).unwrap();
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
    let ordered = Benchmark::new(tiny(30), &spec(Scenario::Permutations, false, 3)).unwrap();
    let shuffled = Benchmark::new(tiny(30), &spec(Scenario::Permutations, true, 3)).unwrap();
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
fn sparse_and_dense_test_chunks_equal_the_transform() {
    for sparse in [true, false] {
        for scenario in [Scenario::Permutations, Scenario::Rotations] {
            let b = Benchmark::new(tiny_with(12, sparse), &spec(scenario, false, 4)).unwrap();
            assert_eq!(b.sparse_test(), sparse);
            let mut xs = SparseBatch::default();
            let mut ys = vec![0; 4];
            b.fill_test_sparse(2, 5, &mut xs, &mut ys);
            assert_eq!(ys, vec![5, 6, 7, 8]);
            assert_eq!(b.test_len(2), 12);
            let mut expected = vec![0.0; 4 * PIXELS];
            for (k, x) in expected.chunks_exact_mut(PIXELS).enumerate() {
                b.tasks()[2]
                    .map
                    .apply_example(&b.data.test().inputs, 5 + k, 1, x);
            }
            assert_eq!(xs.to_dense(), expected);
            let mut dense = vec![0.0; 4 * PIXELS];
            b.fill_test(2, 5, &mut dense, &mut ys);
            assert_eq!(dense, expected);
            // The base chunk read through the task's permutation or fold is the same.
            let mut base = SparseBatch::default();
            assert_eq!(b.fill_base_test_sparse(5, &mut base, &mut ys), sparse);
            if sparse {
                let read = match scenario {
                    Scenario::Permutations => {
                        assert!(b.test_feature_fold(2).is_none());
                        base.set_feature_map(b.test_feature_map(2).unwrap())
                    }
                    _ => {
                        assert!(b.test_feature_map(2).is_none(), "a rotation drops pixels");
                        base.set_feature_fold(b.test_feature_fold(2).unwrap())
                    }
                };
                assert!(read);
                assert_eq!(base.to_dense(), expected);
            } else {
                assert!(b.test_feature_map(2).is_none() && b.test_feature_fold(2).is_none());
            }
        }
    }
}

#[test]
fn default_task_counts_name_what_is_missing() {
    let data = tiny(30);
    let split = |c| Scenario::ClassSplit {
        classes_per_task: Some(c),
        order: ClassOrder::Consecutive,
    };
    assert_eq!(split(2).default_tasks(&data).unwrap(), 5);
    for c in [11, usize::MAX] {
        let err = split(c).default_tasks(&data).unwrap_err().to_string();
        assert!(
            err.contains("--classes-per-task") && err.contains("tiny has 10 classes"),
            "{err}"
        );
    }
    let err = Scenario::Given
        .default_tasks(&data)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--scenario") && err.contains("given needs task ids"),
        "{err}"
    );
}

#[test]
fn rejects_impossible_sizes() {
    let err = Benchmark::new(tiny(5), &spec(Scenario::Permutations, false, 0)).unwrap_err();
    assert!(err.to_string().contains("--samples-per-task"), "{err}");
    let mut zero_tasks = spec(Scenario::Permutations, false, 0);
    zero_tasks.tasks = 0;
    assert!(Benchmark::new(tiny(30), &zero_tasks)
        .unwrap_err()
        .to_string()
        .contains("--tasks"));
}

#[test]
fn class_split_tasks_hold_their_own_classes_and_heads() {
    let mut s = spec(split_scenario(), false, 5);
    s.samples_per_task = Some(4);
    let b = Benchmark::new(tiny(60), &s).unwrap();
    assert_eq!(b.tasks().len(), 5);
    for (t, task) in b.tasks().iter().enumerate() {
        assert_eq!(task.head, 2 * t..2 * t + 2);
        assert_eq!(task.train_indices.len(), 4);
        let mut xs = vec![0.0; 4 * PIXELS];
        let mut ys = vec![0; 4];
        b.fill_train(t, &task.train_indices, &mut xs, &mut ys);
        assert!(ys.iter().all(|&y| task.head.contains(&(y as usize))));
        // 60 images with labels k % 10: 6 test images per class, 12 per task.
        assert_eq!(b.test_len(t), 12);
        let mut sparse = SparseBatch::default();
        let mut test_ys = vec![0; 12];
        b.fill_test_sparse(t, 0, &mut sparse, &mut test_ys);
        assert!(test_ys.iter().all(|&y| task.head.contains(&(y as usize))));
        // No transform: the rows are the raw test images.
        let k = task.test_indices.as_ref().unwrap()[3] as usize;
        let mut raw = vec![0.0; PIXELS];
        PixelMap::identity(PIXELS).apply_example(&b.data.test().inputs, k, 1, &mut raw);
        assert_eq!(&sparse.to_dense()[3 * PIXELS..4 * PIXELS], &raw[..]);
    }
    assert_eq!(b.heads()[4], 8..10);
}

#[test]
fn class_split_in_random_order_renumbers_classes_into_contiguous_heads() {
    let scenario = Scenario::ClassSplit {
        classes_per_task: Some(3),
        order: ClassOrder::Random,
    };
    let mut s = spec(scenario, false, 9);
    s.tasks = 3;
    s.samples_per_task = None;
    let b = Benchmark::new(tiny(60), &s).unwrap();
    let mut seen = Vec::new();
    for (t, task) in b.tasks().iter().enumerate() {
        let TaskDescriptor::Classes { classes } = &task.descriptor else {
            panic!("not a class split")
        };
        assert_eq!(classes.len(), 3);
        seen.extend(classes.iter().copied());
        assert_eq!(task.head, 3 * t..3 * t + 3);
        // All of the task's 3 x 6 training images, each labelled inside its head.
        assert_eq!(task.train_indices.len(), 18);
        let mut xs = vec![0.0; 18 * PIXELS];
        let mut ys = vec![0; 18];
        b.fill_train(t, &task.train_indices, &mut xs, &mut ys);
        for (&i, &y) in task.train_indices.iter().zip(&ys) {
            let original = b.data.train().labels[i as usize];
            let position = classes.iter().position(|&c| c == original).unwrap();
            assert_eq!(y as usize, 3 * t + position);
        }
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 9, "9 distinct classes of the 10");
    let consecutive: Vec<u32> = (0..9).collect();
    let mut drawn = Vec::new();
    for task in b.tasks() {
        if let TaskDescriptor::Classes { classes } = &task.descriptor {
            drawn.extend(classes.iter().copied());
        }
    }
    assert_ne!(drawn, consecutive, "seed 9 shuffles the classes");
}

#[test]
fn class_split_rejects_uneven_splits_and_oversized_tasks() {
    let mut s = spec(split_scenario(), false, 5);
    s.tasks = 3;
    let err = Benchmark::new(tiny(60), &s).unwrap_err().to_string();
    assert!(err.contains("--tasks"), "{err}");
    s.tasks = 5;
    s.samples_per_task = Some(13);
    let err = Benchmark::new(tiny(60), &s).unwrap_err().to_string();
    assert!(
        err.contains("--samples-per-task") && err.contains("the 12 training examples"),
        "{err}"
    );
    for (classes_per_task, tasks, expected) in [
        (Some(0), 2, "--classes-per-task"),
        (Some(3), 4, "need 12 classes"),
    ] {
        let scenario = Scenario::ClassSplit {
            classes_per_task,
            order: ClassOrder::Consecutive,
        };
        let mut s = spec(scenario, false, 5);
        s.tasks = tasks;
        let err = Benchmark::new(tiny(60), &s).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn given_tasks_follow_the_file_and_rotations_need_square_images() {
    let mut data = tiny(20);
    let mut train = data.train().clone();
    train.tasks = Some((0..20).map(|k| k % 2).collect());
    let mut test = data.test().clone();
    test.tasks = Some((0..20).map(|k| u32::from(k >= 15)).collect());
    data = Dataset::new("given", data.shape(), 10, None, "t", train, test).unwrap();
    let mut s = spec(Scenario::Given, false, 0);
    s.tasks = 2;
    s.samples_per_task = None;
    let b = Benchmark::new(data.clone(), &s).unwrap();
    assert_eq!(
        b.tasks()[0].train_indices,
        (0..20).step_by(2).collect::<Vec<u32>>()
    );
    assert_eq!(b.test_len(0), 15);
    assert_eq!(b.test_len(1), 5);
    assert_eq!(b.tasks()[1].head, 0..10);
    s.tasks = 3;
    let err = Benchmark::new(data, &s).unwrap_err().to_string();
    assert!(err.contains("states 2 tasks"), "{err}");
    let err = Benchmark::new(tiny(20), &spec(Scenario::Given, false, 0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has none"), "{err}");

    let split = Split {
        inputs: Inputs::Bytes(vec![1; 4 * 6]),
        labels: vec![0, 1, 0, 1],
        tasks: None,
    };
    let shape = Shape {
        channels: 1,
        height: 2,
        width: 3,
    };
    let wide = Dataset::new("wide", shape, 2, None, "t", split.clone(), split).unwrap();
    let err = Benchmark::new(wide, &spec(Scenario::Rotations, false, 0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("square images") && err.contains("1x2x3"),
        "{err}"
    );
}
