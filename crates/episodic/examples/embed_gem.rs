//! Embedding GEM in an application that learns from its own stream.
//!
//! Two synthetic tasks whose labels depend on opposite halves of the input: after learning
//! the second task, GEM keeps the first (its episodic memory constrains every update), while
//! plain fine-tuning forgets it. Each method is built from its named hyper-parameters
//! (`Default` is the paper's values; change what you need) and needs no number of tasks in
//! advance: memories grow as tasks appear.
//!
//! `cargo run --release -p episodic --example embed_gem`

use episodic::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FEATURES: usize = 20;

/// A batch of task `task`: the label is the sign of the sum of one half of the features.
fn batch(rng: &mut ChaCha8Rng, task: usize, n: usize) -> (Vec<f32>, Vec<u32>) {
    let xs: Vec<f32> = (0..n * FEATURES)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let half = FEATURES / 2;
    let ys = xs
        .chunks(FEATURES)
        .map(|x| {
            let s: f32 = x[task * half..(task + 1) * half].iter().sum();
            u32::from(s > 0.0)
        })
        .collect();
    (xs, ys)
}

fn accuracy(method: &mut dyn Method, task: usize) -> episodic::Result<f64> {
    let (xs, ys) = batch(
        &mut ChaCha8Rng::seed_from_u64(100 + task as u64),
        task,
        2000,
    );
    let mut predictions = vec![0; ys.len()];
    method.predict(&xs, task, &mut predictions)?;
    let correct = predictions.iter().zip(&ys).filter(|(p, y)| p == y).count();
    Ok(correct as f64 / ys.len() as f64)
}

fn main() -> episodic::Result<()> {
    let config = MlpConfig {
        input: FEATURES,
        hidden: vec![64],
        classes: 2,
    };
    let net = || -> episodic::Result<Box<dyn Model>> {
        Ok(Box::new(Mlp::new(
            &config,
            1,
            &mut ChaCha8Rng::seed_from_u64(0),
        )?))
    };
    let heads = || Heads::Shared(2);
    let mut methods: Vec<Box<dyn Method>> = vec![
        Box::new(Single::new(
            net()?,
            SingleParams { learning_rate: 0.1 },
            heads(),
        )?),
        Box::new(Ewc::new(
            net()?,
            EwcParams {
                memories_per_task: 256,
                ..EwcParams::default()
            },
            heads(),
        )?),
        Box::new(Agem::new(net()?, AgemParams::default(), heads())?.with_seed(1)),
        Box::new(Er::new(net()?, ErParams::default(), heads())?.with_seed(1)),
        Box::new(Gem::new(net()?, GemParams::default(), heads())?),
    ];
    for method in &mut methods {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for task in 0..2 {
            for _ in 0..300 {
                let (xs, ys) = batch(&mut rng, task, 10);
                method.observe(&Batch {
                    task,
                    xs: &xs,
                    ys: &ys,
                })?;
            }
            method.end_task(task)?;
        }
        let stats = method.stats();
        println!(
            "{:>6}: task 0 {:.3}, task 1 {:.3} ({} of {} steps projected)",
            method.name(),
            accuracy(method.as_mut(), 0)?,
            accuracy(method.as_mut(), 1)?,
            stats.projected_steps,
            stats.steps
        );
    }
    Ok(())
}
