//! Sparse inputs for a first layer fed with mostly-zero data.
//!
//! MNIST images are about 80% zero pixels (and stay so under permutations and rotations).
//! For such inputs the first layer's product `X W` and its weight gradient `X' dZ` touch only
//! the weight rows of non-zero pixels: a fifth of the work of the dense products, which
//! dominate both GEM's memory gradients and evaluation. The results equal the dense products
//! up to floating-point summation order.
//!
//! A [`SparseBatch`] holds a batch's non-zeros both by row (for the forward product) and by
//! column (so the weight gradient is the same kernel on the transpose, each gradient row
//! written once). A caller whose inputs do not change between steps, such as an episodic
//! memory of a past task, builds it once and reuses it.
//!
//! The kernel is a plain loop that the compiler vectorises; it is compiled three times
//! (AVX-512, AVX2, baseline) and picked at run time. It uses separate multiply and add (no
//! fused multiply-add), so every variant gives bit-identical results.

mod fold;

pub use fold::FeatureFold;

/// The non-zero entries of a row-major matrix, row by row (compressed sparse rows).
#[derive(Debug, Clone, Default)]
struct SparseRows {
    row_starts: Vec<usize>,
    cols: Vec<u32>,
    values: Vec<f32>,
}

impl SparseRows {
    /// Fills from the row-major matrix `dense` of `cols` columns, if at most `max_density` of
    /// its entries are non-zero; returns whether it did.
    fn fill_if_sparse(&mut self, dense: &[f32], cols: usize, max_density: f64) -> bool {
        let limit = (max_density * dense.len() as f64) as usize;
        // Branch-free compaction: write every entry, advance only past non-zeros. The
        // buffers keep room for one more full row beyond the limit.
        let room = limit + cols + 1;
        if self.cols.len() < room {
            self.cols.resize(room, 0);
            self.values.resize(room, 0.0);
        }
        self.row_starts.clear();
        self.row_starts.push(0);
        let mut k = 0;
        for row in dense.chunks_exact(cols) {
            if k > limit {
                return false;
            }
            let (out_cols, out_values) =
                (&mut self.cols[k..k + cols], &mut self.values[k..k + cols]);
            let mut m = 0;
            for (j, &v) in row.iter().enumerate() {
                out_cols[m] = j as u32;
                out_values[m] = v;
                m += usize::from(v != 0.0);
            }
            k += m;
            self.row_starts.push(k);
        }
        k <= limit
    }

    /// Writes the transpose of this `rows x n_cols` matrix into `out` (no allocation once
    /// `out` has grown to size).
    fn transpose_into(&self, n_cols: usize, out: &mut Self) {
        let nnz = self.row_starts.last().copied().unwrap_or(0);
        // Count column j's entries in starts[j + 2], prefix-sum, then use starts[j + 1] as
        // column j's insertion cursor: once all are placed it is column j's end, which is
        // column j + 1's start.
        let starts = &mut out.row_starts;
        starts.clear();
        starts.resize(n_cols + 2, 0);
        for &j in &self.cols[..nnz] {
            starts[j as usize + 2] += 1;
        }
        for j in 2..n_cols + 2 {
            starts[j] += starts[j - 1];
        }
        if out.cols.len() < nnz {
            out.cols.resize(nnz, 0);
            out.values.resize(nnz, 0.0);
        }
        for r in 0..self.rows() {
            let (cols, values) = self.row(r);
            for (&j, &v) in cols.iter().zip(values) {
                let cursor = &mut starts[j as usize + 1];
                out.cols[*cursor] = r as u32;
                out.values[*cursor] = v;
                *cursor += 1;
            }
        }
        starts.truncate(n_cols + 1);
    }

    fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let range = self.row_starts[r]..self.row_starts[r + 1];
        (&self.cols[range.clone()], &self.values[range])
    }

    fn rows(&self) -> usize {
        self.row_starts.len().saturating_sub(1)
    }
}

/// A batch of inputs given by its non-zero entries, ready for a sparse first layer.
#[derive(Debug, Clone, Default)]
pub struct SparseBatch {
    by_row: SparseRows,
    by_col: SparseRows,
    /// Whether `by_col` matches `by_row` (needed for gradients only).
    has_transpose: bool,
    n_rows: usize,
    n_cols: usize,
    /// Feature `j` of the stored entries stands for feature `feature_map[j]` (empty: itself):
    /// the same images seen through a pixel permutation without copying them.
    feature_map: Vec<u32>,
    /// When set, the stored entries are base inputs read through this fold (see
    /// [`Self::set_feature_fold`]); never set together with `feature_map`.
    fold: Option<FeatureFold>,
}

impl SparseBatch {
    /// Inputs with at most this fraction of non-zero entries are worth a sparse first layer.
    pub const MAX_DENSITY: f64 = 0.4;

    /// Refills from the row-major `dense` inputs of `cols` features each, if they are sparse
    /// enough (at most [`Self::MAX_DENSITY`] non-zero); returns whether they were.
    pub fn refill(&mut self, dense: &[f32], cols: usize) -> bool {
        let sparse = self.refill_rows(dense, cols);
        if sparse {
            self.build_transpose();
        }
        sparse
    }

    /// [`Self::refill`] without the transpose: enough for a forward pass, not for gradients.
    pub fn refill_rows(&mut self, dense: &[f32], cols: usize) -> bool {
        self.has_transpose = false;
        self.feature_map.clear();
        self.fold = None;
        if cols == 0
            || dense.len() % cols != 0
            || !self.by_row.fill_if_sparse(dense, cols, Self::MAX_DENSITY)
        {
            self.n_rows = 0;
            return false;
        }
        self.n_rows = dense.len() / cols;
        self.n_cols = cols;
        true
    }

    /// Empties the batch, for inputs of `cols` features to be added with [`Self::push_row`].
    pub fn clear(&mut self, cols: usize) {
        // `fill_if_sparse` may leave slack beyond the last row; `push` appends from here.
        self.by_row.row_starts.clear();
        self.by_row.row_starts.push(0);
        self.by_row.cols.clear();
        self.by_row.values.clear();
        self.has_transpose = false;
        self.n_rows = 0;
        self.n_cols = cols;
        self.feature_map.clear();
        self.fold = None;
    }

    /// Reads every stored feature `j` as feature `map[j]` from now on (until [`Self::clear`]
    /// or another map), so that one batch of base images serves every permuted task: the
    /// products then equal, bit for bit, those of the batch built with the features moved.
    /// Refused (returns false, nothing changed) unless `map` is a permutation of the
    /// features.
    pub fn set_feature_map(&mut self, map: &[u32]) -> bool {
        if map.len() != self.n_cols {
            return false;
        }
        let mut seen = vec![false; self.n_cols];
        for &j in map {
            match seen.get_mut(j as usize) {
                Some(s) if !*s => *s = true,
                _ => return false,
            }
        }
        self.feature_map.clear();
        self.feature_map.extend_from_slice(map);
        self.fold = None;
        self.has_transpose = false;
        true
    }

    /// Reads the stored inputs through `fold` from now on (until [`Self::clear`] or another
    /// map or fold): as the inputs with each feature's value copied to all of its targets,
    /// so that one batch of base images serves every task whose transform drops and repeats
    /// pixels. Products equal those of the batch built with the features moved up to
    /// rounding (the first layer runs on folded weights). Refused (returns false, nothing
    /// changed) unless `fold` is over this batch's features.
    pub fn set_feature_fold(&mut self, fold: &FeatureFold) -> bool {
        if fold.features() != self.n_cols {
            return false;
        }
        self.feature_map.clear();
        match &mut self.fold {
            Some(own) => own.clone_from(fold),
            None => self.fold = Some(fold.clone()),
        }
        self.has_transpose = false;
        true
    }

    /// The feature map, if one is set.
    fn map(&self) -> Option<&[u32]> {
        (!self.feature_map.is_empty()).then_some(&self.feature_map[..])
    }

    /// Appends one input given by its non-zero entries `(feature, value)`, in any order.
    /// Entries with a feature index out of range, and zeros, are ignored.
    pub fn push_row(&mut self, entries: impl IntoIterator<Item = (u32, f32)>) {
        for (j, v) in entries {
            self.push(j, v);
        }
        self.end_row();
    }

    /// Adds the entry `(feature, value)` to the input being built (see [`Self::end_row`]);
    /// ignored if the feature is out of range or the value zero.
    #[inline]
    pub fn push(&mut self, feature: u32, value: f32) {
        if (feature as usize) < self.n_cols && value != 0.0 {
            self.by_row.cols.push(feature);
            self.by_row.values.push(value);
        }
    }

    /// Appends inputs whose entries `fill` writes, in order, into `cols` and `values` (room
    /// for `room` entries each, counted from the slices' start), pushing onto `ends` the
    /// number of entries written so far after each input it completes. Every feature must be
    /// below [`Self::n_cols`] and every value non-zero (not checked, unlike [`Self::push`]):
    /// for fills that copy entries known to be valid without a branch per entry, a whole
    /// chunk of inputs at a time.
    pub(crate) fn push_rows_with(
        &mut self,
        room: usize,
        fill: impl FnOnce(&mut [u32], &mut [f32], &mut Vec<usize>),
    ) {
        let start = self.by_row.cols.len();
        self.by_row.cols.resize(start + room, 0);
        self.by_row.values.resize(start + room, 0.0);
        let first = self.by_row.row_starts.len();
        fill(
            &mut self.by_row.cols[start..],
            &mut self.by_row.values[start..],
            &mut self.by_row.row_starts,
        );
        let mut written = 0;
        for end in &mut self.by_row.row_starts[first..] {
            // Ends never decrease and never pass the room given.
            written = (*end).clamp(written, room);
            *end = start + written;
        }
        debug_assert!(self.by_row.cols[start..start + written]
            .iter()
            .all(|&j| (j as usize) < self.n_cols));
        self.by_row.cols.truncate(start + written);
        self.by_row.values.truncate(start + written);
        self.n_rows += self.by_row.row_starts.len() - first;
        self.has_transpose = false;
    }

    /// Closes the input being built by [`Self::push`].
    pub fn end_row(&mut self) {
        self.by_row.row_starts.push(self.by_row.cols.len());
        self.has_transpose = false;
        self.n_rows += 1;
    }

    /// Builds the column-wise copy that gradients need.
    pub fn build_transpose(&mut self) {
        if let Some(fold) = &self.fold {
            fold.expand(&self.by_row)
                .transpose_into(self.n_cols, &mut self.by_col);
            self.has_transpose = true;
            return;
        }
        self.by_row.transpose_into(self.n_cols, &mut self.by_col);
        if let Some(map) = self.map() {
            // The columns become rows of the transpose: move them where the map says.
            let mut starts = vec![0];
            let mut cols = Vec::new();
            let mut values = Vec::new();
            let mut inverse = vec![u32::MAX; self.n_cols];
            for (j, &m) in map.iter().enumerate() {
                inverse[m as usize] = j as u32;
            }
            for &source in &inverse {
                if source != u32::MAX {
                    let (c, v) = self.by_col.row(source as usize);
                    cols.extend_from_slice(c);
                    values.extend_from_slice(v);
                }
                starts.push(cols.len());
            }
            self.by_col = SparseRows {
                row_starts: starts,
                cols,
                values,
            };
        }
        self.has_transpose = true;
    }

    /// Whether [`Self::build_transpose`] is up to date (gradients can be computed).
    pub fn has_transpose(&self) -> bool {
        self.has_transpose
    }

    /// Number of inputs (rows).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Features per input (columns).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// The dense row-major inputs.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut dense = vec![0.0; self.n_rows * self.n_cols];
        for (r, row) in dense
            .chunks_exact_mut(self.n_cols.max(1))
            .enumerate()
            .take(self.n_rows)
        {
            let (cols, values) = self.by_row.row(r);
            for (&j, &v) in cols.iter().zip(values) {
                match &self.fold {
                    Some(fold) => {
                        for &t in fold.targets(j as usize) {
                            row[t as usize] += v;
                        }
                    }
                    None => row[self.map().map_or(j, |m| m[j as usize]) as usize] = v,
                }
            }
        }
        dense
    }
}

/// `out += X W` for the sparse inputs `x`; `w` is `n_cols x width` row-major, `out` is
/// `n_rows x width`. Rows are shared among up to `threads` threads; each row's sum is
/// computed the same way whatever the thread count.
pub(crate) fn forward(x: &SparseBatch, w: &[f32], width: usize, out: &mut [f32], threads: usize) {
    // Through a map or a fold, the weight rows are first gathered (or summed) into the
    // stored features' order, once per product: the kernel then reads them without an index
    // per entry. A gathered row is the mapped row itself, so the sums are bit for bit those
    // of the map read entry by entry.
    let arranged = match (&x.fold, x.map()) {
        (Some(fold), _) => Some(fold.fold_rows(w, width)),
        (None, Some(map)) => Some(gather_rows(w, width, map)),
        (None, None) => None,
    };
    let w = arranged.as_deref().unwrap_or(w);
    accumulate_rows(&x.by_row, w, width, out, threads)
}

/// Rows `map[0], map[1], ...` of the row-major `w` (rows of `width`), in that order.
fn gather_rows(w: &[f32], width: usize, map: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(map.len() * width);
    for &j in map {
        out.extend_from_slice(&w[j as usize * width..(j as usize + 1) * width]);
    }
    out
}

/// `grad_w = X' delta` (overwritten, `n_cols x width`) for the sparse inputs `x` and the
/// `n_rows x width` output gradient `delta`.
pub(crate) fn weight_gradient(
    x: &SparseBatch,
    delta: &[f32],
    width: usize,
    grad_w: &mut [f32],
    threads: usize,
) {
    grad_w.fill(0.0);
    // The transpose's rows are already where the feature map puts them.
    accumulate_rows(&x.by_col, delta, width, grad_w, threads)
}

/// Fewer rows than this are not worth splitting among threads.
const MIN_ROWS_PER_THREAD: usize = 64;

/// `out[r, :] += sum_j x[r, j] * w[j, :]` for every row of `x`.
fn accumulate_rows(x: &SparseRows, w: &[f32], width: usize, out: &mut [f32], threads: usize) {
    use rayon::prelude::*;
    let rows = x.rows();
    if threads <= 1 || rows < 2 * MIN_ROWS_PER_THREAD || width == 0 {
        return accumulate_rows_from(x, 0, w, width, out);
    }
    let block = rows.div_ceil(threads).max(MIN_ROWS_PER_THREAD);
    out[..rows * width]
        .par_chunks_mut(block * width)
        .enumerate()
        .for_each(|(b, chunk)| accumulate_rows_from(x, b * block, w, width, chunk));
}

/// Rows `first_row..` of `x` into `out` (which starts at that row), with the best
/// instruction set the CPU has.
fn accumulate_rows_from(
    x: &SparseRows,
    first_row: usize,
    w: &[f32],
    width: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: each variant runs only on a CPU that has its instruction set.
        if std::arch::is_x86_feature_detected!("avx512f") {
            return unsafe { x86::accumulate_rows_avx512(x, first_row, w, width, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return unsafe { x86::accumulate_rows_avx2(x, first_row, w, width, out) };
        }
    }
    accumulate_rows_body(x, first_row, w, width, out)
}

#[inline(always)]
fn accumulate_rows_body(
    x: &SparseRows,
    first_row: usize,
    w: &[f32],
    width: usize,
    out: &mut [f32],
) {
    let w_row = |j: u32| &w[j as usize * width..(j as usize + 1) * width];
    let rows = x.rows().saturating_sub(first_row);
    for (r, out_row) in out.chunks_exact_mut(width).enumerate().take(rows) {
        let (cols, values) = x.row(first_row + r);
        // Four weight rows per pass over the output row: a quarter of its loads and stores.
        let mut quads = cols.chunks_exact(4).zip(values.chunks_exact(4));
        for (j, v) in &mut quads {
            let (w0, w1, w2, w3) = (w_row(j[0]), w_row(j[1]), w_row(j[2]), w_row(j[3]));
            let rows = w0.iter().zip(w1).zip(w2).zip(w3);
            for (o, (((&a, &b), &c), &d)) in out_row.iter_mut().zip(rows) {
                *o += v[0] * a + v[1] * b + v[2] * c + v[3] * d;
            }
        }
        let tail = cols.len() / 4 * 4;
        for (&j, &v) in cols[tail..].iter().zip(&values[tail..]) {
            for (o, &wj) in out_row.iter_mut().zip(w_row(j)) {
                *o += v * wj;
            }
        }
    }
}

/// The kernel compiled for wider vector units.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{accumulate_rows_body, SparseRows};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn accumulate_rows_avx512(
        x: &SparseRows,
        first_row: usize,
        w: &[f32],
        width: usize,
        out: &mut [f32],
    ) {
        accumulate_rows_body(x, first_row, w, width, out)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn accumulate_rows_avx2(
        x: &SparseRows,
        first_row: usize,
        w: &[f32],
        width: usize,
        out: &mut [f32],
    ) {
        accumulate_rows_body(x, first_row, w, width, out)
    }
}

#[cfg(test)]
mod tests;
