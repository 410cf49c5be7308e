//! Tests every method shares: heads, mixed-task gradients, saving and resuming, refusing
//! states that do not fit, the optimiser.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A small setup: a 6-8-4-3 network, `tasks` tasks with `heads`, one thread, seed 0.
pub(crate) fn setup(tasks: usize, heads: Heads) -> Setup {
    Setup {
        model: ModelConfig::Mlp(crate::model::MlpConfig {
            input: 6,
            hidden: vec![8, 4],
            classes: 3,
        }),
        tasks,
        heads,
        threads: 1,
        seed: 0,
        optimizer: SgdConfig::default(),
    }
}

/// `n` random rows of `d` features with labels in `0..classes`.
pub(crate) fn random_batch(d: usize, classes: usize, n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    random_batch_in(d, 0..classes, n, seed)
}

/// `n` random rows of `d` features with labels in `head`.
pub(crate) fn random_batch_in(
    d: usize,
    head: Range<usize>,
    n: usize,
    seed: u64,
) -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let xs = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let ys = (0..n)
        .map(|_| rng.random_range(head.start as u32..head.end as u32))
        .collect();
    (xs, ys)
}

#[test]
fn heads_name_each_task_classes() {
    assert_eq!(Heads::Shared(10).of(17).unwrap(), 0..10);
    let heads = Heads::PerTask(vec![0..2, 2..4]);
    assert_eq!(heads.of(1).unwrap(), 2..4);
    assert!(heads.of(2).is_err());
}

#[test]
fn mixed_task_gradient_weights_each_head_by_its_rows() {
    let setup = setup(2, Heads::PerTask(vec![0..2, 1..3]));
    let mut model = setup.network().unwrap();
    let (xs, _) = random_batch(6, 3, 5, 3);
    let ys = [0, 2, 1, 1, 2];
    let tasks = [0, 1, 0, 1, 1];
    let p = model.num_params();
    let mut grad = vec![0.0; p];
    let loss = mixed_task_loss_and_grad(
        model.as_mut(),
        &setup.heads,
        &xs,
        &ys,
        &tasks,
        &mut grad,
        &mut MixedScratch::default(),
    )
    .unwrap();
    let rows = |idx: &[usize]| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| xs[i * 6..(i + 1) * 6].to_vec())
            .collect()
    };
    let (mut g0, mut g1) = (vec![0.0; p], vec![0.0; p]);
    let l0 = model
        .loss_and_grad(&rows(&[0, 2]), &[0, 1], 0..2, &mut g0)
        .unwrap();
    let l1 = model
        .loss_and_grad(&rows(&[1, 3, 4]), &[2, 1, 2], 1..3, &mut g1)
        .unwrap();
    assert!((loss - (0.4 * l0 + 0.6 * l1)).abs() < 1e-6);
    for i in 0..p {
        assert!((grad[i] - (0.4 * g0[i] + 0.6 * g1[i])).abs() < 1e-6);
    }
}

/// Every method with small hyper-parameters, on 3 tasks with a head each.
fn every_method() -> Vec<MethodConfig> {
    use crate::config::*;
    vec![
        MethodConfig::Single(SingleParams { learning_rate: 0.1 }),
        MethodConfig::Independent(IndependentParams {
            learning_rate: 0.1,
            finetune: true,
        }),
        MethodConfig::Multimodal(MultimodalParams { learning_rate: 0.1 }),
        MethodConfig::Ewc(EwcParams {
            learning_rate: 0.1,
            memories_per_task: 6,
            strength: 2.0,
        }),
        MethodConfig::Icarl(IcarlParams {
            learning_rate: 0.1,
            memory_size: 9,
            strength: 1.0,
        }),
        MethodConfig::Agem(AgemParams {
            learning_rate: 0.1,
            memories_per_task: 7,
            sample_size: 5,
        }),
        MethodConfig::Er(ErParams {
            learning_rate: 0.1,
            memories_per_task: 4,
        }),
        MethodConfig::Gem(GemParams {
            learning_rate: 0.1,
            memories_per_task: 7,
            margin: 0.5,
            eps: 1e-3,
        }),
    ]
}

const HEADS: [Range<usize>; 3] = [0..1, 1..2, 2..3];

fn train(method: &mut dyn Method, tasks: Range<usize>, seed: u64) -> Vec<f32> {
    let mut losses = Vec::new();
    for task in tasks {
        for step in 0..4 {
            let (xs, ys) =
                random_batch_in(6, HEADS[task].clone(), 3, seed + (task * 10 + step) as u64);
            losses.push(
                method
                    .observe(&Batch {
                        task,
                        xs: &xs,
                        ys: &ys,
                    })
                    .unwrap(),
            );
        }
        method.end_task(task).unwrap();
    }
    losses
}

#[test]
fn every_method_continues_identically_from_its_saved_state() {
    let momentum = SgdConfig {
        momentum: 0.9,
        weight_decay: 1e-3,
    };
    for (config, optimizer) in every_method()
        .into_iter()
        .flat_map(|c| [(c, SgdConfig::default()), (c, momentum)])
    {
        let setup = Setup {
            optimizer,
            ..setup(3, Heads::PerTask(HEADS.to_vec()))
        };
        let mut original = build(&config, &setup).unwrap();
        train(original.as_mut(), 0..2, 0);
        // Mid-task too: one batch of task 2 before saving.
        let (xs, ys) = random_batch_in(6, 2..3, 3, 99);
        original
            .observe(&Batch {
                task: 2,
                xs: &xs,
                ys: &ys,
            })
            .unwrap();
        let mut state = State::default();
        original.save(&mut state).unwrap();

        let mut resumed = build(&config, &setup).unwrap();
        resumed.load(&state).unwrap();
        let counters = |s: MethodStats| (s.steps, s.projected_steps, s.skipped_steps);
        assert_eq!(
            counters(resumed.stats()),
            counters(original.stats()),
            "{}",
            config.kind().id()
        );
        let a = train(original.as_mut(), 2..3, 7);
        let b = train(resumed.as_mut(), 2..3, 7);
        assert_eq!(a, b, "{}: losses differ after resuming", config.kind().id());
        let (mut sa, mut sb) = (State::default(), State::default());
        original.save(&mut sa).unwrap();
        resumed.save(&mut sb).unwrap();
        assert!(
            sa == sb,
            "{}: states differ after resuming",
            config.kind().id()
        );
        let (xs, _) = random_batch(6, 3, 5, 5);
        let (mut pa, mut pb) = ([0; 5], [0; 5]);
        for task in 0..3 {
            original.predict(&xs, task, &mut pa).unwrap();
            resumed.predict(&xs, task, &mut pb).unwrap();
            assert_eq!(pa, pb, "{}", config.kind().id());
        }
    }
}

#[test]
fn every_method_steps_with_the_optimiser_it_is_given() {
    let momentum = SgdConfig {
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let decay = SgdConfig {
        momentum: 0.0,
        weight_decay: 0.5,
    };
    // Heads of every class, so that losses and gradients are not zero.
    for config in every_method() {
        let id = config.kind().id();
        let run = |optimizer: SgdConfig| {
            let setup = Setup {
                optimizer,
                ..setup(3, Heads::PerTask(vec![0..3; 3]))
            };
            let mut method = build(&config, &setup).unwrap();
            let losses = train(method.as_mut(), 0..2, 0);
            let mut state = State::default();
            method.save(&mut state).unwrap();
            (losses, state)
        };
        let (plain, plain_state) = run(SgdConfig::default());
        let (with_momentum, momentum_state) = run(momentum);
        let (with_decay, _) = run(decay);
        assert_ne!(plain, with_momentum, "{id}: momentum changed nothing");
        assert_ne!(plain, with_decay, "{id}: weight decay changed nothing");
        let velocities = |state: &State| {
            state
                .tensors()
                .keys()
                .filter(|k| k.starts_with("optimizer."))
                .count()
        };
        assert_eq!(velocities(&plain_state), 0, "{id}");
        assert!(velocities(&momentum_state) > 0, "{id}: no velocity saved");
        // A state without the velocity does not fit a method with momentum.
        let setup = Setup {
            optimizer: momentum,
            ..setup(3, Heads::PerTask(vec![0..3; 3]))
        };
        let mut method = build(&config, &setup).unwrap();
        assert!(method.load(&plain_state).is_err(), "{id}");
    }
}

#[test]
fn an_impossible_optimiser_is_refused_by_every_method() {
    for config in every_method() {
        let setup = Setup {
            optimizer: SgdConfig {
                momentum: 1.0,
                weight_decay: 0.0,
            },
            ..setup(3, Heads::PerTask(HEADS.to_vec()))
        };
        assert!(
            matches!(
                build(&config, &setup),
                Err(Error::InvalidOption {
                    option: "--momentum",
                    ..
                })
            ),
            "{}",
            config.kind().id()
        );
    }
}

#[test]
fn a_state_that_does_not_fit_is_refused_without_panicking() {
    let setup = setup(3, Heads::PerTask(HEADS.to_vec()));
    let configs = every_method();
    let mut states = Vec::new();
    for config in &configs {
        let mut method = build(config, &setup).unwrap();
        train(method.as_mut(), 0..1, 3);
        let mut state = State::default();
        method.save(&mut state).unwrap();
        states.push(state);
    }
    // Another size of network.
    let mut wider = setup.clone();
    wider.model = ModelConfig::Mlp(crate::model::MlpConfig {
        input: 6,
        hidden: vec![9, 4],
        classes: 3,
    });
    for (config, state) in configs.iter().zip(&states) {
        let mut method = build(config, &wider).unwrap();
        assert!(
            method.load(state).is_err(),
            "{} accepted another network",
            config.kind().id()
        );
        // An empty state.
        assert!(method.load(&State::default()).is_err());
    }
    // A NaN parameter.
    let mut poisoned = states[0].clone();
    let mut params = poisoned.f32("model", None).unwrap().to_vec();
    params[3] = f32::NAN;
    poisoned.put_f32("model", &params);
    let mut single = build(&configs[0], &setup).unwrap();
    assert!(single.load(&poisoned).is_err());
}

#[test]
fn out_of_range_values_in_a_state_are_refused() {
    let setup = setup(3, Heads::PerTask(HEADS.to_vec()));
    let configs = every_method();
    let saved = |config: &MethodConfig| {
        let mut method = build(config, &setup).unwrap();
        train(method.as_mut(), 0..2, 4);
        let mut state = State::default();
        method.save(&mut state).unwrap();
        state
    };
    let refuses = |config: &MethodConfig, state: &State, what: &str| {
        let mut method = build(config, &setup).unwrap();
        let err = method.load(state).expect_err(what);
        assert!(
            matches!(err, Error::CheckpointContent { .. }),
            "{what}: {err}"
        );
    };
    // GEM (index 7): a label beyond the classes, a task index, a cursor, a memory size.
    let gem = &configs[7];
    let mut state = saved(gem);
    state.put_u32("memory.0.ys", &[0, 0, 0, 0, 0, 0, 9]);
    refuses(gem, &state, "label 9 of 3 classes");
    let mut state = saved(gem);
    state.put_u64("memory.tasks", &[0, u64::MAX]);
    refuses(gem, &state, "task index u64::MAX");
    let mut state = saved(gem);
    state.put("memory.0.cursor", &99u64).unwrap();
    refuses(gem, &state, "cursor beyond the capacity");
    let mut state = saved(gem);
    state.put_u32("memory.0.ys", &[0; 8]);
    state.put_f32("memory.0.xs", &[0.0; 8 * 6]);
    refuses(gem, &state, "more memories than the capacity");
    // ER (index 6): a reservoir that held more than it saw.
    let er = &configs[6];
    let mut state = saved(er);
    state.put("memory.seen", &1u64).unwrap();
    refuses(er, &state, "seen below the size");
    // Independent (index 1): a last task beyond the networks.
    let independent = &configs[1];
    let mut state = saved(independent);
    state.put("last_task", &Some(7u64)).unwrap();
    refuses(independent, &state, "last task 7 of 3");
    // iCaRL (index 4): a consolidated task without a head.
    let icarl = &configs[4];
    let mut state = saved(icarl);
    state.put("consolidated", &vec![0usize, 5]).unwrap();
    let mut method = build(icarl, &setup).unwrap();
    assert!(method.load(&state).is_err(), "task 5 has no head");
    // A generator position that is not a number.
    let agem = &configs[5];
    let mut state = saved(agem);
    state
        .put(
            "rng",
            &serde_json::json!({"seed": vec![0u8; 32], "stream": 4, "word_pos": "x"}),
        )
        .unwrap();
    refuses(agem, &state, "bad generator position");
}
