//! GEM on the ResNet: BatchNorm's running statistics move as the reference's training
//! passes move them (past memories in task order, then the batch), at any thread count.

use super::*;
use crate::model::{ModelConfig, ResNetConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HEADS: [Range<usize>; 3] = [0..2, 2..4, 0..4];

fn resnet_gem(threads: usize) -> Gem {
    let config = ModelConfig::ResNet(ResNetConfig {
        nf: 1,
        blocks: [1, 1, 1, 1],
        classes: 4,
    });
    let model = config
        .build(threads, &mut ChaCha8Rng::seed_from_u64(3))
        .unwrap();
    let params = GemParams {
        learning_rate: 0.1,
        memories_per_task: 4,
        margin: 0.5,
        eps: 1e-3,
    };
    Gem::new(model, params, Heads::PerTask(HEADS.to_vec()))
        .unwrap()
        .with_expected_tasks(3)
        .with_threads(threads)
}

fn images(rng: &mut ChaCha8Rng, task: usize) -> (Vec<f32>, Vec<u32>) {
    let n = 2;
    let xs = (0..n * 3072).map(|_| rng.random_range(0.0..1.0)).collect();
    let ys = (0..n)
        .map(|_| rng.random_range(HEADS[task].clone()) as u32)
        .collect();
    (xs, ys)
}

fn train(gem: &mut Gem, tasks: Range<usize>, rng: &mut ChaCha8Rng) {
    for task in tasks {
        for _ in 0..2 {
            let (xs, ys) = images(rng, task);
            gem.observe(&Batch {
                task,
                xs: &xs,
                ys: &ys,
            })
            .unwrap();
        }
    }
}

#[test]
fn running_statistics_move_with_each_past_memory_then_the_batch() {
    let mut gem = resnet_gem(1);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    train(&mut gem, 0..2, &mut rng);
    // The reference's step on task 2: a training pass on task 0's memory, one on task 1's,
    // then one on the batch, each moving the running statistics.
    let mut reference = gem.model.fork();
    reference.set_buffer_updates(true);
    let mut grad = vec![0.0; reference.num_params()];
    for (task, memory) in &gem.memories {
        reference
            .loss_and_grad(memory.xs(), memory.ys(), HEADS[*task].clone(), &mut grad)
            .unwrap();
    }
    let (xs, ys) = images(&mut rng, 2);
    reference
        .loss_and_grad(&xs, &ys, HEADS[2].clone(), &mut grad)
        .unwrap();
    let before = gem.model.buffers().to_vec();
    gem.observe(&Batch {
        task: 2,
        xs: &xs,
        ys: &ys,
    })
    .unwrap();
    assert_ne!(gem.model.buffers(), &before[..]);
    assert_eq!(gem.model.buffers(), reference.buffers());
}

#[test]
fn thread_count_does_not_change_parameters_or_running_statistics() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let run = |threads: usize| {
        let mut gem = resnet_gem(threads);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        pool.install(|| train(&mut gem, 0..3, &mut rng));
        (gem.model.params().to_vec(), gem.model.buffers().to_vec())
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn running_statistics_survive_save_and_load() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut original = resnet_gem(1);
    train(&mut original, 0..2, &mut rng);
    let mut state = State::default();
    original.save(&mut state).unwrap();
    let mut resumed = resnet_gem(1);
    resumed.load(&state).unwrap();
    assert_eq!(resumed.model.buffers(), original.model.buffers());
    let mut again = rng.clone();
    train(&mut original, 2..3, &mut rng);
    train(&mut resumed, 2..3, &mut again);
    assert_eq!(resumed.model.params(), original.model.params());
    assert_eq!(resumed.model.buffers(), original.model.buffers());
    // A checkpoint without them does not fit.
    use crate::state::Tensor;
    let mut tensors = state.tensors().clone();
    assert!(tensors.remove("model.buffers").is_some());
    let damaged = State::from_parts(tensors.clone(), state.values().clone());
    assert!(resnet_gem(1).load(&damaged).is_err());
    // ... while everything else of it does (the refusal is the buffers').
    let mut intact = tensors;
    intact.insert(
        "model.buffers".into(),
        Tensor::F32(original_buffers(&state)),
    );
    resnet_gem(1)
        .load(&State::from_parts(intact, state.values().clone()))
        .unwrap();
}

fn original_buffers(state: &State) -> Vec<f32> {
    state.f32("model.buffers", None).unwrap().to_vec()
}
