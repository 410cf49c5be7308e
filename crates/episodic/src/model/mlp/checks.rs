//! The MLP's checks of its inputs, labels and gradient buffers (each a one-line error).

use std::ops::Range;

use super::Mlp;
use crate::error::{Error, Result};
use crate::model::{check_labels, Model};

impl Mlp {
    pub(super) fn check_inputs(&self, xs: &[f32]) -> Result<usize> {
        let d = self.widths[0];
        if xs.len() % d != 0 || xs.is_empty() {
            return Err(Error::Shape {
                what: "model input (a whole number of rows)",
                expected: d * (xs.len() / d).max(1),
                actual: xs.len(),
            });
        }
        Ok(xs.len() / d)
    }

    pub(super) fn check_grad(&self, grad: &[f32]) -> Result<()> {
        if grad.len() != self.params.len() {
            return Err(Error::Shape {
                what: "gradient buffer",
                expected: self.params.len(),
                actual: grad.len(),
            });
        }
        Ok(())
    }

    pub(super) fn check_targets(
        &self,
        n: usize,
        ys: &[u32],
        head: &Range<usize>,
        grad: &[f32],
    ) -> Result<()> {
        if ys.len() != n {
            return Err(Error::Shape {
                what: "labels (one per input row)",
                expected: n,
                actual: ys.len(),
            });
        }
        self.check_grad(grad)?;
        check_labels(ys, head, self.num_classes())
    }
}
