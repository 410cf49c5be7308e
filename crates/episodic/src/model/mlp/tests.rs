//! Tests of the MLP: gradients, initialisation, shapes, heads and factored gradients.

use super::*;
use crate::model::{GradientFactors, Inputs, SparseBatch};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn small() -> (Mlp, Vec<f32>, Vec<u32>) {
    let config = MlpConfig {
        input: 6,
        hidden: vec![5, 4],
        classes: 3,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mlp = Mlp::new(&config, 1, &mut rng).unwrap();
    let xs: Vec<f32> = (0..4 * 6).map(|_| rng.random_range(-1.0..1.0)).collect();
    (mlp, xs, vec![0, 2, 1, 2])
}

#[test]
fn gradient_matches_finite_differences_dense_and_sparse_input() {
    let (mlp, xs, ys) = small();
    check_gradient(mlp.clone(), &xs, &ys, 0..3);
    // Mostly-zero inputs take the sparse first layer.
    let sparse: Vec<f32> = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| if i % 4 == 0 { x } else { 0.0 })
        .collect();
    check_gradient(mlp, &sparse, &ys, 0..3);
}

fn check_gradient(mut mlp: Mlp, xs: &[f32], ys: &[u32], head: Range<usize>) {
    // Non-zero biases so that every parameter matters.
    let p = mlp.num_params();
    for (i, v) in mlp.params_mut().iter_mut().enumerate() {
        *v += 0.05 * ((i as f32) * 0.7).sin();
    }
    let mut grad = vec![0.0; p];
    mlp.loss_and_grad(xs, ys, head.clone(), &mut grad).unwrap();
    let mut scratch = vec![0.0; p];
    let h = 1e-3f32;
    let mut worst = 0.0f32;
    for (i, &analytic) in grad.iter().enumerate() {
        let orig = mlp.params()[i];
        mlp.params_mut()[i] = orig + h;
        let up = mlp
            .loss_and_grad(xs, ys, head.clone(), &mut scratch)
            .unwrap();
        mlp.params_mut()[i] = orig - h;
        let down = mlp
            .loss_and_grad(xs, ys, head.clone(), &mut scratch)
            .unwrap();
        mlp.params_mut()[i] = orig;
        let fd = (up - down) / (2.0 * h);
        let err = (fd - analytic).abs() / (1e-2 + analytic.abs());
        worst = worst.max(err);
    }
    assert!(worst < 2e-2, "worst relative gradient error {worst}");
    assert!(grad.iter().any(|g| g.abs() > 1e-3));
}

#[test]
fn init_follows_xavier_uniform_with_zero_bias() {
    let config = MlpConfig::default();
    let mlp = Mlp::new(&config, 1, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert_eq!(
        mlp.num_params(),
        784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    );
    let a1 = (3.0f32).sqrt() * (2.0f32 / 884.0).sqrt();
    let w1 = &mlp.params()[..78_400];
    assert!(w1.iter().all(|w| w.abs() <= a1));
    assert!(w1.iter().map(|w| w.abs()).fold(0.0, f32::max) > 0.95 * a1);
    assert!(mlp.params()[78_400..78_500].iter().all(|&b| b == 0.0));
}

#[test]
fn logits_agree_with_loss_and_batching() {
    let (mut mlp, xs, ys) = small();
    let mut all = vec![0.0; 4 * 3];
    mlp.logits(&xs, &mut all).unwrap();
    let mut one = vec![0.0; 3];
    mlp.logits(&xs[6..12], &mut one).unwrap();
    assert_eq!(&all[3..6], &one[..]);
    let expected: f32 = all
        .chunks(3)
        .zip(&ys)
        .map(|(r, &y)| {
            let lse = r.iter().map(|v| v.exp()).sum::<f32>().ln();
            lse - r[y as usize]
        })
        .sum::<f32>()
        / 4.0;
    let mut grad = vec![0.0; mlp.num_params()];
    let loss = mlp.loss_and_grad(&xs, &ys, 0..3, &mut grad).unwrap();
    assert!((loss - expected).abs() < 1e-5);
}

#[test]
fn rejects_bad_shapes_and_labels() {
    let (mut mlp, xs, _) = small();
    let mut grad = vec![0.0; mlp.num_params()];
    assert!(mlp.loss_and_grad(&xs[..5], &[0], 0..3, &mut grad).is_err());
    assert!(mlp.loss_and_grad(&xs, &[0, 1], 0..3, &mut grad).is_err());
    assert!(mlp
        .loss_and_grad(&xs, &[0, 1, 3, 0], 0..3, &mut grad)
        .is_err());
    assert!(mlp
        .loss_and_grad(&xs, &[0, 1, 2, 0], 0..3, &mut grad[1..])
        .is_err());
    let outside = mlp
        .loss_and_grad(&xs, &[0, 1, 2, 0], 1..3, &mut grad)
        .unwrap_err();
    assert!(matches!(outside, Error::LabelOutsideHead { label: 0, .. }));
    assert!(mlp
        .loss_and_grad(&xs, &[1, 1, 2, 1], 2..2, &mut grad)
        .is_err());
    assert!(mlp
        .loss_and_grad(&xs, &[1, 1, 2, 1], 1..4, &mut grad)
        .is_err());
    assert!(mlp.logits(&xs, &mut [0.0; 3]).is_err());
}

#[test]
fn masked_head_uses_only_its_logits() {
    let (mlp, xs, _) = small();
    let ys = vec![1, 2, 2, 1];
    check_gradient(mlp.clone(), &xs, &ys, 1..3);
    let mut mlp = mlp;
    let mut logits = vec![0.0; 4 * 3];
    mlp.logits(&xs, &mut logits).unwrap();
    let expected: f32 = logits
        .chunks(3)
        .zip(&ys)
        .map(|(r, &y)| {
            let lse = r[1..].iter().map(|v| v.exp()).sum::<f32>().ln();
            lse - r[y as usize]
        })
        .sum::<f32>()
        / 4.0;
    let mut grad = vec![0.0; mlp.num_params()];
    let loss = mlp.loss_and_grad(&xs, &ys, 1..3, &mut grad).unwrap();
    assert!((loss - expected).abs() < 1e-5);
    // The masked class's output bias gets no gradient.
    let p = mlp.num_params();
    assert_eq!(grad[p - 3], 0.0);
    assert!(grad[p - 2].abs() > 0.0);
}

#[test]
fn custom_objective_matches_cross_entropy() {
    let (mut mlp, xs, ys) = small();
    let mut expected = vec![0.0; mlp.num_params()];
    let want = mlp.loss_and_grad(&xs, &ys, 0..3, &mut expected).unwrap();
    let mut grad = vec![0.0; mlp.num_params()];
    let got = mlp
        .loss_and_grad_with(&xs, &mut grad, &mut |logits, dlogits| {
            crate::model::cross_entropy(logits, 3, &ys, 0..3, dlogits)
        })
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(grad, expected);
}

/// A 784-input network and a mostly-zero batch of `n` rows (a third of the entries non-zero).
fn mnist_like(n: usize, seed: u64) -> (Mlp, Vec<f32>, Vec<u32>) {
    let config = MlpConfig {
        input: 784,
        hidden: vec![100, 100],
        classes: 10,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mlp = Mlp::new(&config, 1, &mut rng).unwrap();
    for v in mlp.params_mut() {
        *v += 0.01 * rng.random_range(-1.0f32..1.0);
    }
    let xs = (0..n * 784)
        .map(|_| {
            if rng.random::<f32>() < 0.3 {
                rng.random()
            } else {
                0.0
            }
        })
        .collect();
    let ys = (0..n).map(|i| (i * 7 % 10) as u32).collect();
    (mlp, xs, ys)
}

#[test]
fn factored_gradients_are_the_formed_ones_bit_for_bit() {
    let (mut mlp, xs, ys) = mnist_like(40, 3);
    let p = mlp.num_params();
    let mut want = vec![0.0; p];
    let loss = mlp.loss_and_grad(&xs, &ys, 0..10, &mut want).unwrap();
    let mut sparse = SparseBatch::default();
    assert!(sparse.refill(&xs, 784));
    let mut factors = GradientFactors::default();
    for input in [Inputs::Dense(&xs), Inputs::Sparse(&sparse)] {
        let got = mlp
            .loss_and_factors(input, &ys, 0..10, &mut factors)
            .unwrap();
        assert_eq!(got, Some(loss));
        assert_eq!(factors.rows(), 40);
        let mut grad = vec![1.0; p];
        mlp.gradient_from_factors(input, &factors, &mut grad)
            .unwrap();
        assert_eq!(grad, want);
    }
    // Factors of other inputs are refused.
    let mut grad = vec![0.0; p];
    assert!(mlp
        .gradient_from_factors(Inputs::Dense(&xs[..784 * 39]), &factors, &mut grad)
        .is_err());
    assert!(mlp
        .loss_and_factors(Inputs::Dense(&xs), &ys[1..], 0..10, &mut factors)
        .is_err());
}

#[test]
fn factored_dot_equals_the_dot_of_the_formed_gradients() {
    let (mut mlp, batch, batch_ys) = mnist_like(10, 5);
    let (_, memory, memory_ys) = mnist_like(256, 6);
    let p = mlp.num_params();
    let (mut g, mut g_k) = (vec![0.0; p], vec![0.0; p]);
    mlp.loss_and_grad(&batch, &batch_ys, 0..10, &mut g).unwrap();
    mlp.loss_and_grad(&memory, &memory_ys, 0..10, &mut g_k)
        .unwrap();
    let direct: f64 = g
        .iter()
        .zip(&g_k)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    let mut sparse = SparseBatch::default();
    assert!(sparse.refill(&memory, 784));
    let (mut fa, mut fb) = (GradientFactors::default(), GradientFactors::default());
    mlp.loss_and_factors(Inputs::Dense(&batch), &batch_ys, 0..10, &mut fa)
        .unwrap();
    for memory_input in [Inputs::Dense(&memory), Inputs::Sparse(&sparse)] {
        mlp.loss_and_factors(memory_input, &memory_ys, 0..10, &mut fb)
            .unwrap();
        let dot = mlp
            .factored_dot(Inputs::Dense(&batch), &fa, memory_input, &mut fb)
            .unwrap();
        let scale = f64::from(norm(&g)) * f64::from(norm(&g_k));
        assert!(
            (dot - direct).abs() <= 1e-5 * scale,
            "factored {dot} against direct {direct} (norms' product {scale})"
        );
    }
    let memory_factors = fb.clone();
    assert!(mlp
        .factored_dot(
            Inputs::Dense(&batch),
            &memory_factors,
            Inputs::Sparse(&sparse),
            &mut fb
        )
        .is_err());
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn kept_first_layer_follows_a_plain_sgd_step() {
    let (mut mlp, batch, batch_ys) = mnist_like(10, 7);
    let (_, memory, memory_ys) = mnist_like(256, 8);
    let mut sparse = SparseBatch::default();
    assert!(sparse.refill(&memory, 784));
    let memory_input = Inputs::Sparse(&sparse);
    let mut fa = GradientFactors::default();
    mlp.loss_and_factors(Inputs::Dense(&batch), &batch_ys, 0..10, &mut fa)
        .unwrap();
    let mut g = vec![0.0; mlp.num_params()];
    mlp.gradient_from_factors(Inputs::Dense(&batch), &fa, &mut g)
        .unwrap();

    // Kept or computed, the factors are the same, bit for bit.
    let (mut plain, mut fresh, mut given) = (
        GradientFactors::default(),
        GradientFactors::default(),
        GradientFactors::default(),
    );
    let loss = mlp
        .loss_and_factors(memory_input, &memory_ys, 0..10, &mut plain)
        .unwrap();
    let mut first = Vec::new();
    let kept_loss = mlp
        .loss_and_factors_kept(
            memory_input,
            &memory_ys,
            0..10,
            &mut fresh,
            &mut first,
            true,
        )
        .unwrap();
    assert_eq!(first.len(), 256 * 100);
    let given_loss = mlp
        .loss_and_factors_kept(
            memory_input,
            &memory_ys,
            0..10,
            &mut given,
            &mut first,
            false,
        )
        .unwrap();
    assert_eq!((loss, kept_loss), (given_loss, given_loss));
    for f in [&fresh, &given] {
        assert_eq!(f.outputs, plain.outputs);
        assert_eq!(f.deltas, plain.deltas);
    }

    // No Gram matrix yet: nothing moves.
    let before = first.clone();
    assert!(!mlp
        .step_first_layer(memory_input, &given, &fa, 0.1, &mut first)
        .unwrap());
    assert_eq!(first, before);
    mlp.factored_dot(Inputs::Dense(&batch), &fa, memory_input, &mut given)
        .unwrap();
    assert!(mlp
        .step_first_layer(memory_input, &given, &fa, 0.1, &mut first)
        .unwrap());
    assert!(mlp
        .step_first_layer(memory_input, &given, &fa, 0.1, &mut first[1..])
        .is_err());

    // The same step taken by the parameters, and the pre-activations computed anew.
    for (w, d) in mlp.params_mut().iter_mut().zip(&g) {
        *w -= 0.1 * d;
    }
    let mut recomputed = Vec::new();
    mlp.loss_and_factors_kept(
        memory_input,
        &memory_ys,
        0..10,
        &mut fresh,
        &mut recomputed,
        true,
    )
    .unwrap();
    let moved = before
        .iter()
        .zip(&recomputed)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the step moves the pre-activations ({moved})");
    let scale = recomputed.iter().map(|v| v.abs()).fold(1.0f32, f32::max);
    for (kept, exact) in first.iter().zip(&recomputed) {
        assert!(
            (kept - exact).abs() <= 1e-5 * scale,
            "kept {kept} against recomputed {exact}"
        );
    }
}
