//! GEM's projection: the dual QP over the past gradients and the projected update.

use super::Gem;
use crate::error::{Error, Result};
use crate::linalg::{matmul, MatMut, MatRef};
use crate::qp::QpError;
use std::time::Instant;

impl Gem {
    /// Replaces `self.grad` by its projection onto the cone of the past tasks' constraints.
    pub(super) fn project(&mut self, past: usize, task: usize) -> Result<()> {
        let started = Instant::now();
        let p = self.model.num_params();
        let g_mat = MatRef::row_major(&self.past_grads[..past * p], past, p);
        matmul(
            MatMut::row_major(&mut self.gram[..past * past], past, past),
            g_mat,
            g_mat.t(),
            false,
            1,
        );
        for i in 0..past {
            for j in 0..past {
                // Symmetrise (the f32 product need not be exactly symmetric) and regularise.
                let sym =
                    0.5 * (f64::from(self.gram[i * past + j]) + f64::from(self.gram[j * past + i]));
                self.qp_matrix[i * past + j] = sym + if i == j { self.params.eps } else { 0.0 };
            }
            self.qp_linear[i] = f64::from(self.dots[i]);
        }
        let solved = self
            .qp
            .solve(
                &self.qp_matrix[..past * past],
                &self.qp_linear[..past],
                self.params.margin,
                &mut self.dual[..past],
            )
            .map_err(|source| Error::Qp {
                task,
                step: self.stats.steps as usize,
                source,
            });
        self.stats.qp_time += started.elapsed();
        solved?;
        let started = Instant::now();
        for (d, &v) in self.dual_f32.iter_mut().zip(&self.dual[..past]) {
            *d = v as f32;
        }
        // g~ = G' v + g
        matmul(
            MatMut::row_major(&mut self.grad, p, 1),
            g_mat.t(),
            MatRef::row_major(&self.dual_f32[..past], past, 1),
            true,
            1,
        );
        self.stats.projection_time += started.elapsed();
        Ok(())
    }

    /// Counts a projection, or falls back when the QP had no trustworthy solution (its
    /// matrix was numerically singular, or it did not converge): the update becomes zero,
    /// the one step that cannot increase any past task's loss, and the step is counted as
    /// skipped. Non-finite input is not masked: that error stops the run.
    pub(super) fn settle_projection(&mut self, projection: Result<()>) -> Result<()> {
        match projection {
            Ok(()) => self.stats.projected_steps += 1,
            Err(Error::Qp {
                source: QpError::NotPositiveDefinite | QpError::IterationLimit { .. },
                ..
            }) => {
                self.grad.fill(0.0);
                self.stats.skipped_steps += 1;
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }
}
