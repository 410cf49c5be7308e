//! GEM's passes over the past tasks' memories, shared among the model and its worker copies.
//!
//! Each past task's work (its memory's loss and gradient factors, its inner product with the
//! batch gradient, its formed gradient) goes to one model copy; the tasks are split into as
//! many consecutive groups as there are copies, and every task's result is computed exactly
//! as it would be on one thread, so the thread count does not change the results.

use std::ops::Range;

use rayon::prelude::*;

use super::kept::KeptFirstLayer;
use crate::error::Result;
use crate::memory::RingMemory;
use crate::model::{GradientFactors, Inputs, Model};

/// One past task's share of a pass: the model copy that runs it and the task's slots.
pub(super) struct PastTask<'a> {
    pub(super) model: &'a mut dyn Model,
    /// The task's memory slot.
    pub(super) slot: usize,
    pub(super) memory: &'a RingMemory,
    pub(super) head: Range<usize>,
    /// The task's gradient factors (kept between the passes of a step).
    pub(super) factors: &'a mut GradientFactors,
    /// The task's first-layer pre-activations (kept between steps).
    pub(super) kept: &'a mut KeptFirstLayer,
    /// The task's row of the gradient matrix.
    pub(super) row: &'a mut [f32],
    /// The task's inner product with the batch gradient, as the factors give it.
    pub(super) dot: &'a mut f64,
    /// The same from the formed gradient.
    pub(super) formed_dot: &'a mut f32,
    /// The statistics of the task's memory pass that move the model's buffers (BatchNorm's
    /// running statistics), applied in task order once the step is taken.
    pub(super) statistics: &'a mut Vec<f32>,
}

/// The inputs of `memory`, sparse when they are sparse enough.
pub(super) fn memory_inputs(memory: &RingMemory) -> Inputs<'_> {
    match memory.sparse_xs() {
        Some(xs) => Inputs::Sparse(xs),
        None => Inputs::Dense(memory.xs()),
    }
}

/// The buffers a pass hands out, one entry per past task (in the order of `slots`).
pub(super) struct PastBuffers<'a> {
    pub(super) model: &'a mut Box<dyn Model>,
    pub(super) workers: &'a mut [Box<dyn Model>],
    /// `(task, memory)` of every observed task; `slots` picks the past ones.
    pub(super) memories: &'a [(usize, RingMemory)],
    pub(super) slots: &'a [usize],
    pub(super) heads: &'a super::Heads,
    pub(super) factors: &'a mut [GradientFactors],
    pub(super) kept: &'a mut [KeptFirstLayer],
    /// Row-major, one row of `params` floats per past task.
    pub(super) rows: &'a mut [f32],
    pub(super) dots: &'a mut [f64],
    pub(super) formed_dots: &'a mut [f32],
    pub(super) statistics: &'a mut [Vec<f32>],
    pub(super) params: usize,
    /// Whether the workers must first take the model's parameters (once per step).
    pub(super) sync_workers: bool,
}

/// The past tasks one model copy runs, with their buffers.
struct Group<'a> {
    model: &'a mut Box<dyn Model>,
    slots: &'a [usize],
    rows: &'a mut [f32],
    factors: &'a mut [GradientFactors],
    kept: &'a mut [KeptFirstLayer],
    dots: &'a mut [f64],
    formed_dots: &'a mut [f32],
    statistics: &'a mut [Vec<f32>],
}

/// Runs `job` for every past task, the tasks split in consecutive groups among the model
/// and its workers (which first take the model's parameters when `sync_workers`).
pub(super) fn each_past_task<F>(buffers: PastBuffers<'_>, job: F) -> Result<()>
where
    F: Fn(PastTask<'_>) -> Result<()> + Sync,
{
    let PastBuffers {
        model,
        workers,
        memories,
        slots,
        heads,
        factors,
        kept,
        rows,
        dots,
        formed_dots,
        statistics,
        params: p,
        sync_workers,
    } = buffers;
    let past = slots.len();
    if past == 0 {
        return Ok(());
    }
    let groups = (workers.len() + 1).min(past);
    let per = past.div_ceil(groups);
    if groups > 1 && sync_workers {
        let params = model.params();
        for worker in &mut workers[..groups - 1] {
            worker.params_mut().copy_from_slice(params);
        }
    }
    let run = |group: Group<'_>| -> Result<()> {
        let tasks = group
            .slots
            .iter()
            .zip(group.rows.chunks_exact_mut(p))
            .zip(group.factors)
            .zip(group.kept)
            .zip(group.dots)
            .zip(group.formed_dots.iter_mut().zip(group.statistics));
        for (((((&slot, row), factors), kept), dot), (formed_dot, statistics)) in tasks {
            let (task, memory) = &memories[slot];
            job(PastTask {
                model: group.model.as_mut(),
                slot,
                memory,
                head: heads.of(*task)?,
                factors,
                kept,
                row,
                dot,
                formed_dot,
                statistics,
            })?;
        }
        Ok(())
    };
    let models = std::iter::once(model).chain(workers.iter_mut());
    let jobs = models
        .zip(slots.chunks(per))
        .zip(rows[..past * p].chunks_mut(per * p))
        .zip(factors[..past].chunks_mut(per))
        .zip(kept[..past].chunks_mut(per))
        .zip(dots[..past].chunks_mut(per))
        .zip(formed_dots[..past].chunks_mut(per))
        .zip(statistics[..past].chunks_mut(per))
        .map(
            |(((((((model, slots), rows), factors), kept), dots), formed_dots), statistics)| {
                Group {
                    model,
                    slots,
                    rows,
                    factors,
                    kept,
                    dots,
                    formed_dots,
                    statistics,
                }
            },
        );
    if groups <= 1 {
        return jobs.into_iter().try_for_each(run);
    }
    jobs.collect::<Vec<_>>().into_par_iter().try_for_each(run)
}
