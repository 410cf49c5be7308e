//! Times forward + backward (training mode: batch statistics, cross-entropy over every
//! class) of the paper's reduced ResNet-18 (nf = 20, 100 classes) on random images, for the
//! back-end table of `docs/resnet-backend.md`. Work per image: 3 x 54.6 M multiply-adds
//! (the backward pass counted as twice the forward), 327.8 MFLOP.
//!
//! `cargo run --release -p episodic --example resnet_speed -- [BATCH,BATCH] [THREADS,THREADS] [SECONDS]`
//! (defaults: 10,256 1,2 10).
use std::time::Instant;

use episodic::model::{Model, ResNet, ResNetConfig};
use rand::{Rng, SeedableRng};

fn list(arg: Option<String>, default: &[usize]) -> Vec<usize> {
    arg.map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn main() -> episodic::Result<()> {
    let mut args = std::env::args().skip(1);
    let batches = list(args.next(), &[10, 256]);
    let threads = list(args.next(), &[1, 2]);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let config = ResNetConfig::paper(100);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let flop_per_image = 6.0 * config.multiply_adds() as f64;
    println!("| batch | threads | iterations | ms per iteration | images/s | GFLOP/s |");
    println!("|---|---|---|---|---|---|");
    for &t in &threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| episodic::Error::InvalidOption {
                option: "threads",
                reason: e.to_string(),
            })?;
        for &n in &batches {
            let mut net = ResNet::new(&config, t, &mut rng)?;
            let xs: Vec<f32> = (0..n * 3072).map(|_| rng.random()).collect();
            let ys: Vec<u32> = (0..n).map(|_| rng.random_range(0..100)).collect();
            let mut grad = vec![0.0; net.num_params()];
            let (iterations, elapsed) = pool.install(|| -> episodic::Result<(usize, f64)> {
                for _ in 0..2 {
                    net.loss_and_grad(&xs, &ys, 0..100, &mut grad)?;
                }
                let start = Instant::now();
                let mut iterations = 0;
                while iterations < 2 || start.elapsed().as_secs_f64() < seconds {
                    net.loss_and_grad(&xs, &ys, 0..100, &mut grad)?;
                    iterations += 1;
                }
                Ok((iterations, start.elapsed().as_secs_f64()))
            })?;
            let per = elapsed / iterations as f64;
            println!(
                "| {n} | {t} | {iterations} | {:.1} | {:.1} | {:.1} |",
                per * 1e3,
                n as f64 / per,
                n as f64 * flop_per_image / per / 1e9
            );
        }
    }
    Ok(())
}
