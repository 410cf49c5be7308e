//! Tests of GEM: constraints, memories, faults, threads and the factored violation check.

use super::*;
use crate::method::dot;
use crate::model::{Mlp, MlpConfig};
use crate::qp::QpError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gem(margin: f64) -> Gem {
    gem_with_threads(margin, 1)
}

fn gem_with_threads(margin: f64, threads: usize) -> Gem {
    let config = MlpConfig {
        input: 8,
        hidden: vec![6],
        classes: 3,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let model = Mlp::new(&config, threads, &mut rng).unwrap();
    let params = GemParams {
        learning_rate: 0.1,
        memories_per_task: 16,
        margin,
        eps: 1e-3,
    };
    Gem::new(Box::new(model), params, Heads::Shared(3))
        .unwrap()
        .with_expected_tasks(4)
        .with_threads(threads)
}

#[test]
fn thread_count_does_not_change_the_trajectory() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let run = |threads: usize| {
        let mut gem = gem_with_threads(0.5, threads);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for task in 0..4 {
            for _ in 0..10 {
                let (xs, ys) = batch_data(&mut rng, 5, task as f32 * 0.5);
                let batch = Batch {
                    task,
                    xs: &xs,
                    ys: &ys,
                };
                pool.install(|| gem.observe(&batch)).unwrap();
            }
        }
        (gem.model.params().to_vec(), gem.stats.projected_steps)
    };
    let one = run(1);
    assert!(one.1 > 0, "no projection exercised");
    assert_eq!(one, run(3));
}

fn batch_data(rng: &mut ChaCha8Rng, n: usize, shift: f32) -> (Vec<f32>, Vec<u32>) {
    let xs = (0..n * 8)
        .map(|_| rng.random_range(-1.0..1.0) + shift)
        .collect();
    let ys = (0..n).map(|_| rng.random_range(0..3)).collect();
    (xs, ys)
}

/// After every projection, <g~, g_k> >= -eps * v_k for each past task k: the exact
/// guarantee of the regularised dual (G g~ = lambda - eps v, lambda >= 0).
#[test]
fn projected_gradient_satisfies_every_past_constraint() {
    for margin in [0.0, 0.5] {
        let mut gem = gem(margin);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut checked = 0;
        for task in 0..4 {
            for _ in 0..30 {
                let (xs, ys) = batch_data(&mut rng, 5, task as f32 * 0.7);
                let before = gem.stats.projected_steps;
                gem.observe(&Batch {
                    task,
                    xs: &xs,
                    ys: &ys,
                })
                .unwrap();
                if gem.stats.projected_steps == before {
                    continue;
                }
                let p = gem.model.num_params();
                let past = task;
                for k in 0..past {
                    let gk = &gem.past_grads[k * p..(k + 1) * p];
                    let dot: f64 = gk
                        .iter()
                        .zip(&gem.grad)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum();
                    let v = gem.dual[k];
                    assert!(v >= margin - 1e-12, "dual below margin");
                    let norm =
                        |x: &[f32]| x.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
                    let rounding = 1e-5 * norm(gk) * norm(&gem.grad);
                    assert!(
                        dot >= -1e-3 * v - rounding,
                        "task {task}, k {k}: <g~, g_k> = {dot}, v_k = {v}"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 5, "only {checked} projections exercised");
    }
}

#[test]
fn no_projection_on_the_first_task_and_memories_stay_per_task() {
    let mut gem = gem(0.5);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..5 {
        let (xs, ys) = batch_data(&mut rng, 10, 0.0);
        gem.observe(&Batch {
            task: 0,
            xs: &xs,
            ys: &ys,
        })
        .unwrap();
    }
    assert_eq!(gem.stats.projected_steps, 0);
    assert_eq!(gem.memories.len(), 1);
    assert_eq!(gem.memories[0].1.len(), 16);
    let (xs, ys) = batch_data(&mut rng, 3, 0.0);
    gem.observe(&Batch {
        task: 1,
        xs: &xs,
        ys: &ys,
    })
    .unwrap();
    assert_eq!(
        gem.memories[1].1.len(),
        3,
        "fewer samples than memory slots is fine"
    );
    assert_eq!(
        gem.memories[0].1.len(),
        16,
        "the new task does not write into the old memory"
    );
}

#[test]
fn bad_batches_are_rejected_before_touching_memory() {
    let mut gem = gem(0.5);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (xs, mut ys) = batch_data(&mut rng, 4, 0.0);
    ys[2] = 3;
    assert!(matches!(
        gem.observe(&Batch {
            task: 0,
            xs: &xs,
            ys: &ys
        }),
        Err(Error::LabelOutOfRange { label: 3, .. })
    ));
    assert!(gem
        .observe(&Batch {
            task: 0,
            xs: &xs[1..],
            ys: &[0, 1, 2, 0]
        })
        .is_err());
    assert!(gem
        .observe(&Batch {
            task: 0,
            xs: &[],
            ys: &[]
        })
        .is_err());
    assert!(gem.memories.iter().all(|(_, m)| m.is_empty()));
    assert_eq!(gem.stats.steps, 0);
}

fn observe_task(gem: &mut Gem, task: usize, xs: &[f32], ys: &[u32]) -> Result<f32> {
    gem.observe(&Batch { task, xs, ys })
}

/// Zero past gradients (a model with all-zero parameters on a class-balanced memory)
/// put no constraint on the update: the step uses the batch gradient unchanged.
#[test]
fn zero_past_gradients_leave_the_update_alone() {
    let mut gem = gem(0.5);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (xs, _) = batch_data(&mut rng, 6, 0.0);
    observe_task(&mut gem, 0, &xs, &[0, 1, 2, 0, 1, 2]).unwrap();
    gem.model.params_mut().fill(0.0);
    let (xs1, ys1) = batch_data(&mut rng, 6, 1.0);
    let mut raw = vec![0.0; gem.model.num_params()];
    gem.model.loss_and_grad(&xs1, &ys1, 0..3, &mut raw).unwrap();
    observe_task(&mut gem, 1, &xs1, &ys1).unwrap();
    let p = gem.model.num_params();
    let row_norm = dot(&gem.past_grads[..p], &gem.past_grads[..p]).sqrt();
    assert!(row_norm < 1e-6, "the past gradient is {row_norm}, not zero");
    let diff: Vec<f32> = gem.grad.iter().zip(&raw).map(|(a, b)| a - b).collect();
    assert!(dot(&diff, &diff).sqrt() <= 1e-5 * dot(&raw, &raw).sqrt().max(1e-12));
}

/// Two past tasks with identical memories give duplicated rows of G (up to rounding): the
/// regularised QP still has a unique solution and the projected gradient respects both.
#[test]
fn duplicated_past_gradients_are_projected_exactly() {
    let mut gem = gem(0.5);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (xs, ys) = batch_data(&mut rng, 6, 0.0);
    observe_task(&mut gem, 0, &xs, &ys).unwrap();
    observe_task(&mut gem, 1, &xs, &ys).unwrap();
    let mut projected = 0;
    for _ in 0..30 {
        let (xs2, ys2) = batch_data(&mut rng, 6, 1.5);
        let before = gem.stats.projected_steps;
        observe_task(&mut gem, 2, &xs2, &ys2).unwrap();
        if gem.stats.projected_steps > before {
            projected += 1;
            let p = gem.model.num_params();
            // Equal up to rounding: task 0's first-layer pre-activations were carried
            // over task 1's steps, task 1's computed anew.
            let (g0, g1) = (&gem.past_grads[..p], &gem.past_grads[p..2 * p]);
            let scale = g0.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            for (a, b) in g0.iter().zip(g1) {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "duplicated rows: {a} against {b}"
                );
            }
            for k in 0..2 {
                let gk = &gem.past_grads[k * p..(k + 1) * p];
                let dot: f64 = gk
                    .iter()
                    .zip(&gem.grad)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                assert!(dot >= -1e-3 * gem.dual[k] - 1e-6, "row {k}: {dot}");
            }
        }
    }
    assert!(projected > 0, "no projection exercised");
    assert_eq!(gem.stats.skipped_steps, 0);
}

/// A QP without a trustworthy solution makes GEM skip the update (no step is safer than
/// an unverified one); any other failure stops the run.
#[test]
fn an_unsolvable_qp_skips_the_update_instead_of_applying_garbage() {
    let mut gem = gem(0.5);
    for source in [
        QpError::NotPositiveDefinite,
        QpError::IterationLimit { iterations: 100 },
    ] {
        gem.grad.fill(1.0);
        let skipped = gem.stats.skipped_steps;
        gem.settle_projection(Err(Error::Qp {
            task: 1,
            step: 0,
            source,
        }))
        .unwrap();
        assert!(gem.grad.iter().all(|&g| g == 0.0));
        assert_eq!(gem.stats.skipped_steps, skipped + 1);
    }
    let err = gem.settle_projection(Err(Error::Qp {
        task: 1,
        step: 0,
        source: QpError::NonFinite { what: "P" },
    }));
    assert!(
        err.is_err(),
        "non-finite input is an error, not a skipped step"
    );
    gem.settle_projection(Ok(())).unwrap();
    assert_eq!(gem.stats.projected_steps, 1);
}

/// A NaN in a batch stops the step with an error naming it, before anything changes.
#[test]
fn a_non_finite_gradient_stops_the_step_before_anything_changes() {
    let mut gem = gem(0.5);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (xs, ys) = batch_data(&mut rng, 4, 0.0);
    observe_task(&mut gem, 0, &xs, &ys).unwrap();
    let (mut bad, ys2) = batch_data(&mut rng, 4, 0.0);
    bad[5] = f32::NAN;
    let params = gem.model.params().to_vec();
    let memory = gem.memories[0].1.xs().to_vec();
    let err = observe_task(&mut gem, 1, &bad, &ys2).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFiniteLoss {
                task: 1,
                step: 1,
                ..
            } | Error::NonFiniteGradient { task: 1, step: 1 }
        ),
        "{err}"
    );
    assert_eq!(gem.model.params(), &params[..]);
    assert_eq!(gem.memories.len(), 1, "task 1's memory was not created");
    assert_eq!(gem.memories[0].1.xs(), &memory[..]);
    assert_eq!(gem.stats.steps, 1);
}

/// A small permuted continuum with mostly-zero inputs (the memories take the sparse path):
/// `tasks` tasks of `steps` batches of 10, labels from a fixed random teacher.
fn permuted_continuum(tasks: usize, steps: usize, seed: u64) -> Vec<(usize, Vec<f32>, Vec<u32>)> {
    let (d, classes) = (64, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let teacher: Vec<f32> = (0..d * classes)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut batches = Vec::new();
    for task in 0..tasks {
        let mut perm: Vec<usize> = (0..d).collect();
        for i in (1..d).rev() {
            perm.swap(i, rng.random_range(0..=i));
        }
        for _ in 0..steps {
            let mut xs = vec![0.0f32; 10 * d];
            let mut ys = Vec::with_capacity(10);
            for row in xs.chunks_exact_mut(d) {
                let base: Vec<f32> = (0..d)
                    .map(|_| {
                        if rng.random::<f32>() < 0.25 {
                            rng.random()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let scores = (0..classes).map(|c| {
                    (0..d)
                        .map(|j| base[j] * teacher[j * classes + c])
                        .sum::<f32>()
                });
                let label = scores
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |best, (c, s)| if s > best.1 { (c, s) } else { best },
                    )
                    .0;
                for (j, &v) in base.iter().enumerate() {
                    row[perm[j]] = v;
                }
                ys.push(label as u32);
            }
            batches.push((task, xs, ys));
        }
    }
    batches
}

fn continuum_gem(audit: bool) -> Gem {
    let config = MlpConfig {
        input: 64,
        hidden: vec![32, 32],
        classes: 5,
    };
    let model = Mlp::new(&config, 1, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
    let params = GemParams {
        learning_rate: 0.1,
        memories_per_task: 64,
        margin: 0.5,
        eps: 1e-3,
    };
    let gem = Gem::new(Box::new(model), params, Heads::Shared(5)).unwrap();
    if audit {
        gem.with_decision_audit()
    } else {
        gem
    }
}

/// The factored violation check decides as the inner products of the formed gradients on
/// at least 99.9% of the steps of a continuum, and auditing it leaves the trajectory alone.
#[test]
fn the_factored_check_decides_as_the_formed_gradients() {
    let batches = permuted_continuum(6, 250, 12);
    let (mut audited, mut plain) = (continuum_gem(true), continuum_gem(false));
    for (task, xs, ys) in &batches {
        let batch = Batch {
            task: *task,
            xs,
            ys,
        };
        audited.observe(&batch).unwrap();
        plain.observe(&batch).unwrap();
    }
    let audit = audited.decision_audit().unwrap();
    eprintln!("decision audit: {audit:?}");
    assert_eq!(
        audit.steps,
        5 * 250,
        "every step with a past task is audited"
    );
    assert!(
        audit.agreements * 1000 >= audit.steps * 999,
        "decisions agree on {} of {} steps",
        audit.agreements,
        audit.steps
    );
    let projected = audited.stats.projected_steps;
    assert!(
        projected > 100 && projected < audit.steps - 100,
        "both decisions exercised: {projected} projected of {}",
        audit.steps
    );
    assert!(
        audited.memories[0].1.sparse_xs().is_some(),
        "the sparse path is exercised"
    );
    assert_eq!(audited.model.params(), plain.model.params());
    let counts = |g: &Gem| {
        (
            g.stats.steps,
            g.stats.projected_steps,
            g.stats.skipped_steps,
        )
    };
    assert_eq!(counts(&audited), counts(&plain));
    assert!(plain.decision_audit().is_none());
}

/// The past tasks' kept first-layer pre-activations stay within rounding of the ones the
/// current parameters give, step after step, and are carried on most steps.
#[test]
fn kept_first_layers_stay_those_of_the_current_parameters() {
    let batches = permuted_continuum(5, 120, 21);
    let mut gem = continuum_gem(false);
    let (mut checked, mut carried) = (0, 0);
    let mut worst = 0.0f32;
    for (task, xs, ys) in &batches {
        let batch = Batch {
            task: *task,
            xs,
            ys,
        };
        gem.observe(&batch).unwrap();
        for kept in &gem.past_kept {
            let Some(slot) = kept.slot else { continue };
            let memory = &gem.memories[slot].1;
            let head = gem.heads.of(gem.memories[slot].0).unwrap();
            let (mut factors, mut exact) = (GradientFactors::default(), Vec::new());
            gem.model
                .loss_and_factors_kept(
                    past::memory_inputs(memory),
                    memory.ys(),
                    head,
                    &mut factors,
                    &mut exact,
                    true,
                )
                .unwrap();
            assert_eq!(kept.values.len(), exact.len());
            let scale = exact.iter().map(|v| v.abs()).fold(1.0f32, f32::max);
            for (a, b) in kept.values.iter().zip(&exact) {
                worst = worst.max((a - b).abs() / scale);
            }
            checked += 1;
            carried += usize::from(kept.values != exact);
        }
    }
    eprintln!("kept first layers: {checked} checked, {carried} carried, worst {worst:e}");
    assert!(worst <= 1e-5, "kept pre-activations drifted by {worst:e}");
    assert!(carried > checked / 4, "{carried} of {checked} carried");
}

/// A GEM saved while it keeps first-layer pre-activations continues, once loaded, exactly as
/// the original does (they are part of its state).
#[test]
fn kept_first_layers_survive_save_and_load() {
    let batches = permuted_continuum(3, 60, 5);
    let mut original = continuum_gem(false);
    let observe = |gem: &mut Gem, (task, xs, ys): &(usize, Vec<f32>, Vec<u32>)| {
        gem.observe(&Batch {
            task: *task,
            xs,
            ys,
        })
        .unwrap();
    };
    // Up to a step of task 2 after which something is kept.
    let mut next = 0;
    while next < batches.len()
        && (batches[next].0 < 2 || original.past_kept.iter().all(|k| k.slot.is_none()))
    {
        observe(&mut original, &batches[next]);
        next += 1;
    }
    assert!(next < batches.len(), "nothing was ever kept");
    let mut state = State::default();
    original.save(&mut state).unwrap();
    let mut resumed = continuum_gem(false);
    resumed.load(&state).unwrap();
    for batch in &batches[next..] {
        observe(&mut original, batch);
        observe(&mut resumed, batch);
    }
    assert!(
        original.model.params() == resumed.model.params(),
        "parameters differ after save and load"
    );
}

/// A saved state whose kept first layers do not fit is refused when loaded, or stops the
/// next step with an error, never a panic.
#[test]
fn kept_first_layers_that_do_not_fit_are_refused() {
    let batches = permuted_continuum(2, 30, 9);
    let mut gem = continuum_gem(false);
    let mut r = None;
    for (task, xs, ys) in &batches {
        gem.observe(&Batch {
            task: *task,
            xs,
            ys,
        })
        .unwrap();
        r = gem.past_kept.iter().position(|k| k.slot.is_some());
        if r.is_some() {
            break;
        }
    }
    let r = r.expect("something is kept after a plain step");
    let mut state = State::default();
    gem.save(&mut state).unwrap();

    let mut bad_slot = state.clone();
    let mut slots = vec![None; gem.past_kept.len()];
    slots[r] = Some(99usize);
    bad_slot.put("kept_first_layer.slots", &slots).unwrap();
    let err = continuum_gem(false).load(&bad_slot).unwrap_err();
    assert!(err.to_string().contains("names memory 100"), "{err}");

    let mut short = state.clone();
    short.put_f32(format!("kept_first_layer.{r}"), &[0.0; 3]);
    let mut resumed = continuum_gem(false);
    resumed.load(&short).unwrap();
    let (task, xs, ys) = &batches[batches.len() - 1];
    let err = resumed
        .observe(&Batch {
            task: *task,
            xs,
            ys,
        })
        .unwrap_err();
    assert!(err.to_string().contains("kept first-layer"), "{err}");
}
