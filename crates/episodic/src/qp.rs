//! Exact solver for the small dual quadratic program of Gradient Episodic Memory.
//!
//! When the current gradient `g` conflicts with the gradients of past tasks (the rows of `G`),
//! GEM projects it by solving the dual problem
//!
//! ```text
//! minimise_v  1/2 v'Pv + q'v   subject to  v_i >= lower  for every i
//! ```
//!
//! with `P = G G' + eps I` (symmetric positive definite, `n x n`, row-major) and `q = G g`;
//! `n` is the number of past tasks, rarely more than about 20.
//!
//! **Substitution.** With `u = v - lower` the bounds become `u >= 0` and the linear term becomes
//! `c = q + P (lower 1)`, a strictly convex QP over the non-negative orthant.
//!
//! **Method.** A primal active-set method in the style of Lawson and Hanson's NNLS. It starts at
//! `u = 0` with every variable at its bound, then repeatedly frees the bound variable with the
//! most negative multiplier `lambda = P u + c` and solves the equality-constrained subproblem
//! `P_FF u_F = -c_F` on the free set `F` by Cholesky. When that point leaves the feasible set it
//! steps from the current point towards it only as far as the first bound, fixes the variables
//! that reached the bound, and solves again. It stops once every bound variable has
//! `lambda_i >= -tol`, where `tol` is a tiny multiple of the rounding scale of `lambda`.
//!
//! **Why it is exact.** Each subproblem is solved directly, not iterated to a tolerance; the
//! objective strictly decreases from one outer step to the next, so no free set repeats and the
//! method ends after finitely many steps at a point satisfying the KKT conditions, which for a
//! positive-definite `P` characterise the unique minimiser. The only error left is floating-point
//! rounding. An iteration cap turns any numerical cycling into an error instead of a hang.

use thiserror::Error;

/// Relative tolerance on multipliers of bound variables (relative to their rounding scale).
const DUAL_TOL: f64 = 1e-12;
/// A Cholesky pivot at most this fraction of its diagonal entry counts as non-positive.
const PIVOT_TOL: f64 = 1e-13;
/// `QpWorkspace::new` preallocates for at most this many variables; larger solves grow it.
const MAX_PREALLOC: usize = 1024;

/// Errors of the QP solver.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QpError {
    /// Shapes disagree (the message says which).
    #[error("QP dimension mismatch: {what} has length {found}, expected {expected}")]
    DimensionMismatch {
        /// Which argument has the wrong length.
        what: &'static str,
        /// The length it should have.
        expected: usize,
        /// The length it has.
        found: usize,
    },
    /// A NaN or infinite entry in P, q or lower (or an overflow while solving).
    #[error("QP {what} contains a NaN or infinite value")]
    NonFinite {
        /// Which quantity is not finite.
        what: &'static str,
    },
    /// P restricted to the free set is not positive definite (a Cholesky pivot is too small).
    #[error("QP matrix is not positive definite")]
    NotPositiveDefinite,
    /// No convergence within the iteration cap.
    #[error("QP solver did not converge within {iterations} iterations")]
    IterationLimit {
        /// Subproblem solves performed before giving up.
        iterations: usize,
    },
}

/// What a solve did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QpStats {
    /// Number of equality-constrained subproblems solved (Cholesky factorisations).
    pub iterations: usize,
    /// Number of variables at the bound in the solution.
    pub active: usize,
}

/// KKT residuals of a candidate solution: used by tests and run-time sanity checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kkt {
    /// `max_i max(lower - v_i, 0)`.
    pub primal_infeasibility: f64,
    /// `max_i max(-lambda_i, 0)` with `lambda = P v + q`.
    pub dual_infeasibility: f64,
    /// `max_i |lambda_i (v_i - lower)|`.
    pub complementarity: f64,
}

/// Reusable buffers for the solver.
#[derive(Debug, Clone, Default)]
pub struct QpWorkspace {
    cap: usize,
    u: Vec<f64>,
    c: Vec<f64>,
    w: Vec<f64>,
    z: Vec<f64>,
    free: Vec<bool>,
    skip: Vec<bool>,
    idx: Vec<usize>,
    chol: Vec<f64>,
}

impl QpWorkspace {
    /// Creates buffers for problems of up to `max_vars` variables (larger ones grow them).
    pub fn new(max_vars: usize) -> Self {
        let mut ws = Self::default();
        ws.grow(max_vars.min(MAX_PREALLOC));
        ws
    }

    fn grow(&mut self, n: usize) {
        if n <= self.cap {
            return;
        }
        self.cap = n;
        for buf in [&mut self.u, &mut self.c, &mut self.w, &mut self.z] {
            buf.resize(n, 0.0);
        }
        self.free.resize(n, false);
        self.skip.resize(n, false);
        self.idx.resize(n, 0);
        self.chol.resize(n * n, 0.0);
    }

    /// Solves; writes the minimiser into `v` (len n) and returns stats.
    ///
    /// `p` is the row-major `n x n` matrix `P` (assumed symmetric), `q` has length `n`, and
    /// `lower` is the common lower bound. On error `v` is left unchanged.
    pub fn solve(
        &mut self,
        p: &[f64],
        q: &[f64],
        lower: f64,
        v: &mut [f64],
    ) -> Result<QpStats, QpError> {
        let n = q.len();
        for (what, expected, found) in [
            ("P (n*n entries, n = q.len())", n.saturating_mul(n), p.len()),
            ("v (n = q.len())", n, v.len()),
        ] {
            if found != expected {
                return Err(QpError::DimensionMismatch {
                    what,
                    expected,
                    found,
                });
            }
        }
        for (what, bad) in [
            ("P", p.iter().any(|x| !x.is_finite())),
            ("q", q.iter().any(|x| !x.is_finite())),
            ("lower", !lower.is_finite()),
        ] {
            if bad {
                return Err(QpError::NonFinite { what });
            }
        }
        if n == 0 {
            return Ok(QpStats {
                iterations: 0,
                active: 0,
            });
        }
        self.grow(n);
        let u = &mut self.u[..n];
        let c = &mut self.c[..n];
        let w = &mut self.w[..n];
        let free = &mut self.free[..n];
        let skip = &mut self.skip[..n];
        for (ci, (row, qi)) in c.iter_mut().zip(p.chunks_exact(n).zip(q)) {
            *ci = qi + lower * row.iter().sum::<f64>();
            if !ci.is_finite() {
                return Err(QpError::NonFinite {
                    what: "linear term q + P*lower",
                });
            }
        }
        u.fill(0.0);
        free.fill(false);
        skip.fill(false);
        let cap = 10 * n + 50;
        let mut iterations = 0;
        loop {
            // Multipliers lambda = P u + c and the scale of their rounding error.
            let mut scale = 0.0f64;
            for ((wi, row), ci) in w.iter_mut().zip(p.chunks_exact(n)).zip(c.iter()) {
                let (mut s, mut a) = (*ci, ci.abs());
                for (pij, uj) in row.iter().zip(u.iter()) {
                    s += pij * uj;
                    a += (pij * uj).abs();
                }
                if !(s.is_finite() && a.is_finite()) {
                    return Err(QpError::NonFinite {
                        what: "multipliers (overflow)",
                    });
                }
                *wi = s;
                scale = scale.max(a);
            }
            let mut most_negative = -DUAL_TOL * scale;
            let mut entering = None;
            for (i, &wi) in w.iter().enumerate() {
                if !free[i] && !skip[i] && wi < most_negative {
                    most_negative = wi;
                    entering = Some(i);
                }
            }
            let Some(j) = entering else { break };
            free[j] = true;
            let mut first = true;
            loop {
                if iterations >= cap {
                    return Err(QpError::IterationLimit { iterations });
                }
                iterations += 1;
                let k = solve_free(p, c, free, &mut self.idx, &mut self.chol, &mut self.z)?;
                let (idx, z) = (&self.idx[..k], &self.z[..k]);
                if z.iter().all(|&zt| zt > 0.0) {
                    for (&i, &zt) in idx.iter().zip(z) {
                        u[i] = zt;
                    }
                    skip.fill(false);
                    break;
                }
                let zj = idx.iter().zip(z).find(|(&i, _)| i == j).map(|(_, &zt)| zt);
                if first && zj.is_some_and(|zt| zt <= 0.0) {
                    // Only rounding can make the entering variable non-positive: undo, skip it.
                    free[j] = false;
                    skip[j] = true;
                    break;
                }
                first = false;
                let mut alpha = f64::INFINITY;
                let mut blocking = j;
                for (&i, &zt) in idx.iter().zip(z) {
                    if zt <= 0.0 {
                        let d = u[i] - zt;
                        let a = if d > 0.0 { u[i] / d } else { 0.0 };
                        if a < alpha {
                            alpha = a;
                            blocking = i;
                        }
                    }
                }
                for (&i, &zt) in idx.iter().zip(z) {
                    u[i] += alpha * (zt - u[i]);
                    if u[i] <= 0.0 || i == blocking {
                        u[i] = 0.0;
                        free[i] = false;
                    }
                }
            }
        }
        if u.iter().any(|&ui| !(lower + ui).is_finite()) {
            return Err(QpError::NonFinite {
                what: "solution (overflow)",
            });
        }
        let mut active = 0;
        for ((vi, &ui), &fi) in v.iter_mut().zip(u.iter()).zip(free.iter()) {
            *vi = if fi { lower + ui } else { lower };
            active += usize::from(!fi);
        }
        Ok(QpStats { iterations, active })
    }
}

/// Factors the free-set block of `p` (lower triangle) and solves `P_FF z = -c_F`.
///
/// Free indices go to `idx` in ascending order and the solution to `z`, both as prefixes of
/// length `k`; returns `k`.
fn solve_free(
    p: &[f64],
    c: &[f64],
    free: &[bool],
    idx: &mut [usize],
    l: &mut [f64],
    z: &mut [f64],
) -> Result<usize, QpError> {
    let n = free.len();
    let mut k = 0;
    for (i, _) in free.iter().enumerate().filter(|(_, &f)| f) {
        idx[k] = i;
        k += 1;
    }
    let (idx, l, z) = (&idx[..k], &mut l[..k * k], &mut z[..k]);
    for a in 0..k {
        for b in 0..=a {
            let mut s = p[idx[a] * n + idx[b]];
            for t in 0..b {
                s -= l[a * k + t] * l[b * k + t];
            }
            if a == b {
                let threshold = PIVOT_TOL * p[idx[a] * (n + 1)].max(0.0);
                if s.is_nan() || s <= threshold {
                    return Err(QpError::NotPositiveDefinite);
                }
                l[a * k + a] = s.sqrt();
            } else {
                l[a * k + b] = s / l[b * k + b];
            }
        }
    }
    for a in 0..k {
        let mut s = -c[idx[a]];
        for t in 0..a {
            s -= l[a * k + t] * z[t];
        }
        z[a] = s / l[a * k + a];
    }
    for a in (0..k).rev() {
        let mut s = z[a];
        for t in a + 1..k {
            s -= l[t * k + a] * z[t];
        }
        z[a] = s / l[a * k + a];
    }
    Ok(k)
}

/// Returns the KKT residuals of `v` (infinite if the shapes disagree, NaN if an entry is NaN).
pub fn kkt(p: &[f64], q: &[f64], lower: f64, v: &[f64]) -> Kkt {
    let n = v.len();
    if q.len() != n || n.checked_mul(n) != Some(p.len()) {
        let inf = f64::INFINITY;
        return Kkt {
            primal_infeasibility: inf,
            dual_infeasibility: inf,
            complementarity: inf,
        };
    }
    // Like f64::max, but a NaN anywhere makes the result NaN.
    let worse = |acc: f64, x: f64| if x.is_nan() || x > acc { x } else { acc };
    let mut r = Kkt {
        primal_infeasibility: 0.0,
        dual_infeasibility: 0.0,
        complementarity: 0.0,
    };
    for ((&vi, &qi), row) in v.iter().zip(q).zip(p.chunks_exact(n.max(1))) {
        let lambda = qi + row.iter().zip(v).map(|(a, b)| a * b).sum::<f64>();
        r.primal_infeasibility = worse(r.primal_infeasibility, lower - vi);
        r.dual_infeasibility = worse(r.dual_infeasibility, -lambda);
        r.complementarity = worse(r.complementarity, (lambda * (vi - lower)).abs());
    }
    r
}

#[cfg(test)]
mod tests;
