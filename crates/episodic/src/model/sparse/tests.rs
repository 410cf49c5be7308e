use super::*;

#[test]
fn a_feature_map_equals_the_batch_built_with_its_features_moved_bit_for_bit() {
    let (n, d, width) = (70, 13, 6);
    let x: Vec<f32> = (0..n * d)
        .map(|i| {
            if i % 4 == 1 {
                (i as f32 * 0.37).sin()
            } else {
                0.0
            }
        })
        .collect();
    let w: Vec<f32> = (0..d * width).map(|i| (i as f32 * 0.71).cos()).collect();
    let delta: Vec<f32> = (0..n * width).map(|i| (i as f32 * 0.23).sin()).collect();
    let map: Vec<u32> = (0..d as u32).map(|j| (j * 5 + 3) % d as u32).collect();
    // Built with the features moved, in the order of the base features (as the
    // benchmark's sparse fill does).
    let mut moved = SparseBatch::default();
    moved.clear(d);
    let mut mapped = SparseBatch::default();
    mapped.clear(d);
    for row in x.chunks(d) {
        let entries = row.iter().enumerate().filter(|(_, &v)| v != 0.0);
        moved.push_row(entries.clone().map(|(j, &v)| (map[j], v)));
        mapped.push_row(entries.map(|(j, &v)| (j as u32, v)));
    }
    assert!(
        !mapped.set_feature_map(&[0, 0, 1]),
        "not one entry per feature"
    );
    let mut not_a_permutation = map.clone();
    not_a_permutation[1] = not_a_permutation[0];
    assert!(!mapped.set_feature_map(&not_a_permutation));
    assert!(mapped.set_feature_map(&map));
    assert_eq!(mapped.to_dense(), moved.to_dense());
    for threads in [1, 2] {
        let (mut a, mut b) = (vec![0.5; n * width], vec![0.5; n * width]);
        forward(&moved, &w, width, &mut a, threads);
        forward(&mapped, &w, width, &mut b, threads);
        assert_eq!(a, b, "forward, {threads} thread(s)");
    }
    moved.build_transpose();
    mapped.build_transpose();
    let (mut a, mut b) = (vec![0.0; d * width], vec![0.0; d * width]);
    weight_gradient(&moved, &delta, width, &mut a, 1);
    weight_gradient(&mapped, &delta, width, &mut b, 1);
    assert_eq!(a, b, "weight gradient");
    mapped.clear(d);
    assert!(mapped.map().is_none(), "clear drops the map");
}

#[test]
fn sparse_products_match_dense_ones() {
    let (n, d, width) = (5, 9, 4);
    let x: Vec<f32> = (0..n * d)
        .map(|i| {
            if i % 3 == 0 {
                (i as f32 * 0.3).sin()
            } else {
                0.0
            }
        })
        .collect();
    let w: Vec<f32> = (0..d * width).map(|i| (i as f32 * 0.7).cos()).collect();
    let delta: Vec<f32> = (0..n * width).map(|i| (i as f32 * 0.2).sin()).collect();
    let mut pushed = SparseBatch::default();
    pushed.clear(d);
    for row in x.chunks(d) {
        // Any order, zeros and out-of-range features ignored.
        let entries: Vec<(u32, f32)> = row
            .iter()
            .enumerate()
            .rev()
            .map(|(j, &v)| (j as u32, v))
            .collect();
        pushed.push_row(entries.into_iter().chain([(d as u32 + 5, 1.0)]));
    }
    assert!(!pushed.has_transpose());
    assert_eq!(pushed.to_dense(), x);
    let mut sparse = SparseBatch::default();
    let dense_ones = vec![1.0; n * d];
    assert!(!sparse.refill(&dense_ones, d), "all non-zero is not sparse");
    assert!(sparse.refill(&x, d));
    assert_eq!((sparse.n_rows(), sparse.n_cols()), (n, d));
    assert_eq!(sparse.to_dense(), x);
    let mut out = vec![1.0; n * width];
    forward(&sparse, &w, width, &mut out, 1);
    let mut grad = vec![9.0; d * width];
    weight_gradient(&sparse, &delta, width, &mut grad, 1);
    for r in 0..n {
        for c in 0..width {
            let want: f32 = 1.0 + (0..d).map(|j| x[r * d + j] * w[j * width + c]).sum::<f32>();
            assert!((out[r * width + c] - want).abs() < 1e-5);
        }
    }
    for j in 0..d {
        for c in 0..width {
            let want: f32 = (0..n).map(|r| x[r * d + j] * delta[r * width + c]).sum();
            assert!((grad[j * width + c] - want).abs() < 1e-5);
        }
    }
}

#[test]
fn threads_split_rows_without_changing_results() {
    let (n, d, width) = (300, 40, 7);
    let x: Vec<f32> = (0..n * d)
        .map(|i| {
            if i % 5 == 0 {
                (i as f32 * 0.13).sin()
            } else {
                0.0
            }
        })
        .collect();
    let w: Vec<f32> = (0..d * width).map(|i| (i as f32 * 0.29).cos()).collect();
    let mut sparse = SparseBatch::default();
    assert!(sparse.refill(&x, d));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let mut one = vec![0.5; n * width];
    forward(&sparse, &w, width, &mut one, 1);
    let mut three = vec![0.5; n * width];
    pool.install(|| forward(&sparse, &w, width, &mut three, 3));
    assert_eq!(one, three);
}

#[test]
fn a_fold_reads_as_the_batch_built_with_its_features_copied() {
    let (n, d, width) = (70, 13, 6);
    let x: Vec<f32> = (0..n * d)
        .map(|i| {
            if i % 3 == 1 {
                (i as f32 * 0.41).sin()
            } else {
                0.0
            }
        })
        .collect();
    let w: Vec<f32> = (0..d * width).map(|i| (i as f32 * 0.71).cos()).collect();
    let delta: Vec<f32> = (0..n * width).map(|i| (i as f32 * 0.23).sin()).collect();
    // Like a rotation: feature 0 dropped, 1 copied twice, the others moved.
    let targets = |j: usize| -> Vec<u32> {
        match j {
            0 => vec![],
            1 => vec![1, 0],
            _ => vec![(d - 1 - (j - 2)) as u32],
        }
    };
    let fold = FeatureFold::new(d, &targets).unwrap();
    assert_eq!(fold.features(), d);
    assert_eq!(fold.targets(1), &[1, 0]);
    let mut moved = SparseBatch::default();
    moved.clear(d);
    let mut folded = SparseBatch::default();
    folded.clear(d);
    for row in x.chunks(d) {
        let entries = row.iter().enumerate().filter(|(_, &v)| v != 0.0);
        moved.push_row(
            entries
                .clone()
                .flat_map(|(j, &v)| targets(j).into_iter().map(move |t| (t, v))),
        );
        folded.push_row(entries.map(|(j, &v)| (j as u32, v)));
    }
    assert!(!folded.set_feature_fold(&FeatureFold::new(d - 1, |_| []).unwrap()));
    assert!(folded.set_feature_fold(&fold));
    assert_eq!(folded.to_dense(), moved.to_dense());
    for threads in [1, 2] {
        let (mut a, mut b) = (vec![0.5; n * width], vec![0.5; n * width]);
        forward(&moved, &w, width, &mut a, threads);
        forward(&folded, &w, width, &mut b, threads);
        for (a, b) in a.iter().zip(&b) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                "forward: {a} against {b}"
            );
        }
    }
    moved.build_transpose();
    folded.build_transpose();
    let (mut a, mut b) = (vec![0.0; d * width], vec![0.0; d * width]);
    weight_gradient(&moved, &delta, width, &mut a, 1);
    weight_gradient(&folded, &delta, width, &mut b, 1);
    assert_eq!(a, b, "weight gradient");
    // A map replaces the fold; a refill or a clear drops it.
    let identity: Vec<u32> = (0..d as u32).collect();
    assert!(folded.set_feature_map(&identity));
    assert!(folded.fold.is_none());
    assert!(folded.set_feature_fold(&fold));
    folded.clear(d);
    assert!(folded.fold.is_none() && folded.map().is_none());
}

#[test]
fn a_fold_refuses_targets_beyond_its_features() {
    let err = FeatureFold::new(3, |j| [j as u32 + 1]).unwrap_err();
    assert!(
        err.to_string().contains("feature 2 is copied to feature 3"),
        "{err}"
    );
}
