//! Times the MLP's gradient and forward pass on a GEM-sized memory (256 examples of 784
//! features), with MNIST-like sparse inputs (19% non-zero) and with the same inputs made dense.
//! Each figure is the best of five trials (the machines here are noisy).
//!
//! `cargo run --release -p episodic --example mlp_gradient_speed [sparse|dense]`
use std::time::Instant;

use episodic::model::{GradientFactors, Inputs, Mlp, MlpConfig, Model, SparseBatch};
use rand::{Rng, SeedableRng};

/// Milliseconds per call of `f`, best of five trials of `reps` calls.
fn best_ms(reps: usize, mut f: impl FnMut() -> episodic::Result<()>) -> episodic::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64 * 1e3);
    }
    Ok(best)
}

fn main() -> episodic::Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut mlp = Mlp::new(&MlpConfig::default(), 1, &mut rng)?;
    let n = 256;
    let sparse: Vec<f32> = (0..n * 784)
        .map(|_| {
            if rng.random::<f32>() < 0.19 {
                rng.random()
            } else {
                0.0
            }
        })
        .collect();
    let dense: Vec<f32> = sparse
        .iter()
        .map(|&v| if v == 0.0 { 1e-30 } else { v })
        .collect();
    let ys: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    let mut grad = vec![0.0; mlp.num_params()];
    let mut logits = vec![0.0; n * 10];
    let which = std::env::args().nth(1).unwrap_or_default();
    for (name, xs) in [("sparse", &sparse), ("dense", &dense)] {
        if !which.is_empty() && which != name {
            continue;
        }
        let g = best_ms(100, || {
            mlp.loss_and_grad(xs, &ys, 0..10, &mut grad).map(drop)
        })?;
        let f = best_ms(100, || mlp.logits(xs, &mut logits))?;
        println!("{name}: gradient {g:.3} ms, forward {f:.3} ms (256 examples)");
    }
    // A memory's cached sparse form, as GEM uses it for past tasks.
    let mut cached = SparseBatch::default();
    if cached.refill(&sparse, 784) {
        let g = best_ms(200, || {
            mlp.loss_and_grad_sparse(&cached, &ys, 0..10, &mut grad)
                .map(drop)
        })?;
        let f = best_ms(200, || mlp.logits_sparse(&cached, &mut logits))?;
        println!("cached sparse: gradient {g:.3} ms, forward {f:.3} ms (256 examples)");
        // GEM's violation check: the memory's gradient factors, and their inner product with
        // a batch of 10's factored gradient.
        let (batch, batch_ys) = (&sparse[..10 * 784], &ys[..10]);
        let mut batch_factors = GradientFactors::default();
        let mut factors = GradientFactors::default();
        let input = Inputs::Sparse(&cached);
        mlp.loss_and_factors(Inputs::Dense(batch), batch_ys, 0..10, &mut batch_factors)?;
        let fa = best_ms(200, || {
            mlp.loss_and_factors(input, &ys, 0..10, &mut factors)
                .map(drop)
        })?;
        let dot = best_ms(200, || {
            mlp.factored_dot(Inputs::Dense(batch), &batch_factors, input, &mut factors)
                .map(drop)
        })?;
        let formed = best_ms(200, || {
            mlp.gradient_from_factors(input, &factors, &mut grad)
        })?;
        println!(
            "factored: factors {fa:.3} ms, dot with a batch of 10 {dot:.3} ms, gradient from factors {formed:.3} ms"
        );
    }
    Ok(())
}
