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

/// Two steps of the reference's own GEM (`model/gem.py`) on its ResNet18 (nf = 2, 10 classes,
/// two tasks of 5, 4 memories), written by `scripts/gem-step-fixture.py` with torch: a plain
/// step on task 0, then a step on task 1 whose gradient conflicts with task 0's memory and is
/// projected. Our GEM, from the same parameters and batches, takes the same two steps.
#[test]
fn two_steps_of_the_reference_s_gem_on_its_resnet_are_reproduced() {
    use crate::model::resnet::fixture::{assert_close, floats, labels, read};
    use safetensors::SafeTensors;

    let bytes = read("gem-step-nf2.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let config = ModelConfig::ResNet(ResNetConfig {
        nf: 2,
        blocks: [2, 2, 2, 2],
        classes: 10,
    });
    let mut model = config.build(1, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    model.params_mut().copy_from_slice(&floats(&st, "params0"));
    let params = GemParams {
        learning_rate: 0.1,
        memories_per_task: 4,
        margin: 0.5,
        eps: 1e-3,
    };
    let mut gem = Gem::new(model, params, Heads::PerTask(vec![0..5, 5..10]))
        .unwrap()
        .with_expected_tasks(2);
    let stats = |gem: &Gem| {
        let b = gem.model.buffers();
        let (means, vars) = b.split_at(b.len() / 2);
        (means.to_vec(), vars.to_vec())
    };
    // Step 1 on task 0's batch A, step 2 on task 1's batch B.
    for (task, step, x, y) in [(0, 1, "xA", "yA"), (1, 2, "xB", "yB")] {
        let (xs, ys) = (floats(&st, x), labels(&st, y));
        gem.observe(&Batch {
            task,
            xs: &xs,
            ys: &ys,
        })
        .unwrap();
        assert_close(
            &format!("parameters after step {step}"),
            gem.model.params(),
            &floats(&st, &format!("params{step}")),
        );
        let (means, vars) = stats(&gem);
        assert_close(
            &format!("running means after step {step}"),
            &means,
            &floats(&st, &format!("running_mean{step}")),
        );
        assert_close(
            &format!("running variances after step {step}"),
            &vars,
            &floats(&st, &format!("running_var{step}")),
        );
    }
    assert_eq!(gem.stats.projected_steps, 1, "the second step is projected");
    // The past task's memory gradient, as the reference stored it.
    assert_close(
        "task 0's memory gradient",
        &gem.past_grads[..gem.grad.len()],
        &floats(&st, "g0"),
    );
}
