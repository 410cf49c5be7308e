//! Feature folds: one batch of base images read as a transform of them that drops and repeats
//! features (a rotation), without building the transformed batch.
//!
//! A transform that copies each output feature from at most one source feature is the
//! linear map `X F`, with `F[j, t] = 1` when output `t` copies source `j`. The first layer
//! of the transformed inputs, `(X F) W`, is then `X (F W)`: the base inputs through the
//! folded weights `F W`, whose row `j` is the sum of the weight rows of `j`'s targets. Built
//! once per product, the folded weights cost one pass over `W`, and the base batch serves
//! every transform; the sums differ from the transformed batch's only in rounding.

use super::SparseRows;
use crate::error::{Error, Result};

/// For each source feature, the features that copy it (none, one or several): the linear
/// map `F` that a [`super::SparseBatch`] is read through once
/// [`super::SparseBatch::set_feature_fold`] is given it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureFold {
    /// Source feature `j`'s targets are `targets[starts[j]..starts[j + 1]]`.
    starts: Vec<u32>,
    targets: Vec<u32>,
}

impl FeatureFold {
    /// The fold of `features` source features in which feature `j`'s targets are
    /// `targets_of(j)`, each below `features`.
    pub fn new<I: IntoIterator<Item = u32>>(
        features: usize,
        mut targets_of: impl FnMut(usize) -> I,
    ) -> Result<Self> {
        let mut fold = Self {
            starts: Vec::with_capacity(features + 1),
            targets: Vec::with_capacity(features),
        };
        fold.starts.push(0);
        for j in 0..features {
            for t in targets_of(j) {
                if t as usize >= features {
                    return Err(Error::InvalidOption {
                        option: "scenario",
                        reason: format!(
                            "feature {j} is copied to feature {t}, beyond the {features} features"
                        ),
                    });
                }
                fold.targets.push(t);
            }
            fold.starts.push(fold.targets.len() as u32);
        }
        Ok(fold)
    }

    /// Source features (and targets: the fold maps features to features of the same set).
    pub fn features(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// The features that copy source feature `j`.
    pub fn targets(&self, j: usize) -> &[u32] {
        &self.targets[self.starts[j] as usize..self.starts[j + 1] as usize]
    }

    /// The folded weights `F W` of the `features x width` row-major `w`: row `j` the sum,
    /// in target order, of the rows of `j`'s targets (zero when it has none).
    pub(super) fn fold_rows(&self, w: &[f32], width: usize) -> Vec<f32> {
        let mut folded = vec![0.0; self.features() * width];
        for (j, out) in folded.chunks_exact_mut(width.max(1)).enumerate() {
            for &t in self.targets(j) {
                let row = &w[t as usize * width..(t as usize + 1) * width];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
        }
        folded
    }

    /// `rows` with every entry `(j, v)` replaced by `(t, v)` for each of `j`'s targets `t`:
    /// the transformed inputs themselves.
    pub(super) fn expand(&self, rows: &SparseRows) -> SparseRows {
        let mut out = SparseRows {
            row_starts: vec![0],
            cols: Vec::new(),
            values: Vec::new(),
        };
        for r in 0..rows.rows() {
            let (cols, values) = rows.row(r);
            for (&j, &v) in cols.iter().zip(values) {
                for &t in self.targets(j as usize) {
                    out.cols.push(t);
                    out.values.push(v);
                }
            }
            out.row_starts.push(out.cols.len());
        }
        out
    }
}
