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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type Solved = Result<(Vec<f64>, QpStats), QpError>;

    fn solve(p: &[f64], q: &[f64], lower: f64) -> Solved {
        let mut v = vec![f64::NAN; q.len()];
        let stats = QpWorkspace::new(q.len()).solve(p, q, lower, &mut v)?;
        Ok((v, stats))
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// `P = G G' + eps I` and `q = G g`, with `rows` the rows of `G`.
    fn gem_problem(rows: &[Vec<f64>], g: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>) {
        let t = rows.len();
        let p =
            (0..t * t).map(|k| dot(&rows[k / t], &rows[k % t]) + eps * f64::from(k % (t + 1) == 0));
        (p.collect(), rows.iter().map(|r| dot(r, g)).collect())
    }

    fn random_vec(rng: &mut ChaCha8Rng, len: usize) -> Vec<f64> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// A random GEM problem with `t` rows of length 5..=200 and eps 1e-3.
    fn random_problem(rng: &mut ChaCha8Rng, t: usize) -> (Vec<f64>, Vec<f64>) {
        let dim = rng.random_range(5..=200);
        let rows: Vec<_> = (0..t).map(|_| random_vec(rng, dim)).collect();
        gem_problem(&rows, &random_vec(rng, dim), 1e-3)
    }

    fn objective(p: &[f64], q: &[f64], v: &[f64]) -> f64 {
        let n = v.len();
        (0..n)
            .map(|i| v[i] * (q[i] + 0.5 * dot(&p[i * n..(i + 1) * n], v)))
            .sum()
    }

    /// Asserts all KKT residuals are below 1e-8 relative to the problem's magnitude.
    fn assert_kkt(p: &[f64], q: &[f64], lower: f64, v: &[f64]) {
        let amax = |x: &[f64]| x.iter().fold(0.0f64, |m, a| m.max(a.abs()));
        let vmax = amax(v).max(lower.abs()) + f64::MIN_POSITIVE;
        let scale = amax(q) + v.len() as f64 * amax(p) * vmax + f64::MIN_POSITIVE;
        let r = kkt(p, q, lower, v);
        assert!(r.primal_infeasibility <= 1e-8 * vmax, "{r:?} {v:?}");
        assert!(r.dual_infeasibility < 1e-8 * scale, "{r:?} scale {scale}");
        assert!(
            r.complementarity < 1e-8 * scale * vmax,
            "{r:?} scale {scale}"
        );
    }

    fn assert_close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        let far = a
            .iter()
            .zip(b)
            .any(|(x, y)| (x - y).abs() > tol * (1.0 + y.abs()));
        assert!(!far, "{a:?} vs {b:?}");
    }

    #[test]
    fn one_dimensional_known_answers() {
        // 1/2 2 v^2 + q v: unconstrained minimiser -q/2.
        for (q, lower, want, active) in [
            (-4.0, 0.0, 2.0, 0),
            (4.0, 0.0, 0.0, 1),
            (-4.0, 0.5, 2.0, 0),
            (-0.5, 0.5, 0.5, 1),
        ] {
            let (v, stats) = solve(&[2.0], &[q], lower).unwrap();
            assert_close(&v, &[want], 1e-14);
            assert_eq!(stats.active, active, "q {q} lower {lower}");
        }
    }

    #[test]
    fn two_dimensional_known_answers() {
        let p = [2.0, 1.0, 1.0, 2.0];
        for (q, lower, want, active) in [
            ([-3.0, -3.0], 0.0, [1.0, 1.0], 0),  // interior
            ([-1.0, 1.0], 0.0, [0.5, 0.0], 1),   // second at the bound, multiplier 1.5
            ([1.0, 1.0], 0.0, [0.0, 0.0], 2),    // both at the bound
            ([-1.0, 1.0], -2.0, [1.0, -1.0], 0), // bound loose enough
            ([-1.0, 1.0], 0.5, [0.5, 0.5], 2),   // multipliers 0.5 and 2.5
        ] {
            let (v, stats) = solve(&p, &q, lower).unwrap();
            assert_close(&v, &want, 1e-14);
            assert_eq!(stats.active, active, "q {q:?} lower {lower}");
            assert_kkt(&p, &q, lower, &v);
        }
    }

    #[test]
    fn random_problems_satisfy_kkt() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut some_active, mut some_free, mut stepped_back) = (false, false, false);
        let mut ws = QpWorkspace::new(20);
        for case in 0..400 {
            let t = rng.random_range(1..=20);
            let (p, q) = random_problem(&mut rng, t);
            let lower = [0.0, 0.5][case % 2];
            let mut v = vec![0.0; t];
            let stats = ws.solve(&p, &q, lower, &mut v).unwrap();
            assert_kkt(&p, &q, lower, &v);
            some_active |= stats.active > 0;
            some_free |= stats.active < t;
            // Without a step back to the bound, each subproblem adds one free variable.
            stepped_back |= stats.iterations > t - stats.active;
        }
        assert!(some_active && some_free && stepped_back);
    }

    #[test]
    fn near_degenerate_problems_satisfy_kkt() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for case in 0..90 {
            let dim = rng.random_range(5..=100);
            let mut rows: Vec<_> = (0..12).map(|_| random_vec(&mut rng, dim)).collect();
            match case % 3 {
                0 => {
                    // duplicated rows and zero rows
                    (rows[1], rows[2]) = (rows[0].clone(), rows[0].clone());
                    (rows[5], rows[7]) = (vec![0.0; dim], vec![0.0; dim]);
                }
                1 => {
                    // nearly parallel rows
                    for r in 1..6 {
                        rows[r] = rows[0]
                            .iter()
                            .map(|x| x * (1.0 + 1e-9 * r as f64))
                            .collect();
                        rows[r][0] += 1e-10;
                    }
                }
                _ => {
                    // rank 3 < 12: every row a combination of three
                    let basis: Vec<_> = (0..3).map(|_| random_vec(&mut rng, dim)).collect();
                    for row in rows.iter_mut() {
                        let w = random_vec(&mut rng, 3);
                        for (d, x) in row.iter_mut().enumerate() {
                            *x = (0..3).map(|b| w[b] * basis[b][d]).sum();
                        }
                    }
                }
            }
            let g = random_vec(&mut rng, dim);
            for scale in [1e-6, 1.0, 1e6] {
                // Scaling G and g by `scale` (and eps by scale^2) scales P and q by scale^2.
                let (p, q) = gem_problem(&rows, &g, 1e-3);
                let p: Vec<_> = p.iter().map(|x| x * scale * scale).collect();
                let q: Vec<_> = q.iter().map(|x| x * scale * scale).collect();
                for lower in [0.0, 0.5] {
                    let (v, _) = solve(&p, &q, lower).unwrap();
                    assert_kkt(&p, &q, lower, &v);
                }
            }
        }
    }

    fn clarabel_solve(p: &[f64], q: &[f64], lower: f64) -> Vec<f64> {
        use clarabel::algebra::CscMatrix;
        use clarabel::solver::SupportedConeT::NonnegativeConeT;
        use clarabel::solver::{DefaultSettings, DefaultSolver, IPSolver, SolverStatus};
        let n = q.len();
        // Upper triangle of P, column by column: column j holds rows 0..=j.
        let colptr = (0..=n).map(|j| j * (j + 1) / 2).collect();
        let rowval = (0..n).flat_map(|j| 0..=j).collect();
        let nzval = (0..n)
            .flat_map(|j| (0..=j).map(move |i| p[i * n + j]))
            .collect();
        let pm = CscMatrix::new(n, n, colptr, rowval, nzval);
        // A v + s = b with s >= 0, A = -I, b = -lower: s = v - lower.
        let a = CscMatrix::new(n, n, (0..=n).collect(), (0..n).collect(), vec![-1.0; n]);
        let settings = DefaultSettings {
            verbose: false,
            tol_gap_abs: 1e-12,
            tol_gap_rel: 1e-12,
            tol_feas: 1e-12,
            ..DefaultSettings::default()
        };
        let cones = [NonnegativeConeT(n)];
        let mut solver =
            DefaultSolver::new(&pm, q, &a, &vec![-lower; n], &cones, settings).unwrap();
        solver.solve();
        let status = solver.solution.status;
        assert!(
            matches!(status, SolverStatus::Solved | SolverStatus::AlmostSolved),
            "{status:?}"
        );
        solver.solution.x
    }

    #[test]
    fn agrees_with_clarabel() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for case in 0..50 {
            let t = rng.random_range(1..=20);
            let (p, q) = random_problem(&mut rng, t);
            let lower = [0.0, 0.5][case % 2];
            let (ours, _) = solve(&p, &q, lower).unwrap();
            let theirs = clarabel_solve(&p, &q, lower);
            assert_close(&ours, &theirs, 1e-5);
            let (fo, ft) = (objective(&p, &q, &ours), objective(&p, &q, &theirs));
            assert!(
                fo <= ft + 1e-9 * (1.0 + ft.abs()),
                "ours {fo} clarabel {ft}"
            );
        }
    }

    #[test]
    fn invalid_inputs_are_rejected() {
        let p = [2.0, 1.0, 1.0, 2.0];
        let non_finite = |what| Err(QpError::NonFinite { what });
        assert_eq!(solve(&p, &[f64::NAN, 1.0], 0.0), non_finite("q"));
        assert_eq!(
            solve(&[2.0, f64::INFINITY, 1.0, 2.0], &[1.0; 2], 0.0),
            non_finite("P")
        );
        assert_eq!(solve(&p, &[1.0; 2], f64::NEG_INFINITY), non_finite("lower"));
        let overflow = solve(&[1e300; 4], &[1.0; 2], 1e300);
        assert!(matches!(overflow, Err(QpError::NonFinite { .. })));
        let mut v = [0.0; 2];
        let r = QpWorkspace::new(2).solve(&p[..3], &[1.0; 2], 0.0, &mut v);
        assert!(matches!(
            r,
            Err(QpError::DimensionMismatch {
                expected: 4,
                found: 3,
                ..
            })
        ));
        let r = QpWorkspace::new(2).solve(&p, &[1.0; 2], 0.0, &mut v[..1]);
        assert!(matches!(
            r,
            Err(QpError::DimensionMismatch {
                expected: 2,
                found: 1,
                ..
            })
        ));
        assert_eq!(v, [0.0; 2], "v is left alone on error");
    }

    #[test]
    fn non_positive_definite_is_rejected() {
        let not_pd = Err(QpError::NotPositiveDefinite);
        assert_eq!(solve(&[0.0; 4], &[-1.0, -1.0], 0.0), not_pd);
        assert_eq!(solve(&[-1.0, 0.0, 0.0, 1.0], &[-1.0, -1.0], 0.0), not_pd);
        // Indefinite: fine while one variable is free, fails once both are.
        assert_eq!(solve(&[1.0, -2.0, -2.0, 1.0], &[-1.0, -1.0], 0.0), not_pd);
    }

    #[test]
    fn empty_problem_is_ok() {
        let stats = QpWorkspace::new(0).solve(&[], &[], 0.5, &mut []).unwrap();
        assert_eq!(
            stats,
            QpStats {
                iterations: 0,
                active: 0
            }
        );
        assert_eq!(kkt(&[], &[], 0.0, &[]).complementarity, 0.0);
    }

    #[test]
    fn arbitrary_inputs_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut ws = QpWorkspace::new(usize::MAX); // preallocation is capped
        let (mut oks, mut errs) = (0, 0);
        for _ in 0..2000 {
            // Not symmetric, often indefinite, with entries over many magnitudes.
            let n = rng.random_range(0..=8);
            let mag = 10f64.powi(rng.random_range(-200..=200));
            let p: Vec<f64> = random_vec(&mut rng, n * n)
                .iter()
                .map(|x| x * mag)
                .collect();
            let mut v = vec![0.0; n];
            match ws.solve(
                &p,
                &random_vec(&mut rng, n),
                rng.random_range(-1.0..1.0),
                &mut v,
            ) {
                Ok(_) => oks += 1,
                Err(_) => errs += 1,
            }
        }
        assert!(oks > 0 && errs > 0);
    }

    #[test]
    fn workspace_reuse_matches_fresh_workspaces() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut shared = QpWorkspace::new(4);
        for (round, t) in [5, 2, 12, 0, 7, 20, 3, 20, 1].into_iter().enumerate() {
            let (p, q) = random_problem(&mut rng, t);
            let lower = [0.0, 0.5][round % 2];
            let (mut a, mut b) = (vec![0.0; t], vec![0.0; t]);
            let sa = shared.solve(&p, &q, lower, &mut a).unwrap();
            let sb = QpWorkspace::new(t).solve(&p, &q, lower, &mut b).unwrap();
            assert_eq!((a, sa), (b, sb));
        }
    }

    #[test]
    fn kkt_detects_wrong_candidates() {
        let (p, q) = ([2.0, 1.0, 1.0, 2.0], [-1.0, 1.0]);
        assert_eq!(kkt(&p, &q, 0.0, &[0.5, 0.0]).dual_infeasibility, 0.0);
        let r = kkt(&p, &q, 0.0, &[0.0, 0.0]); // lambda = (-1, 1)
        assert_eq!((r.primal_infeasibility, r.dual_infeasibility), (0.0, 1.0));
        assert_eq!(kkt(&p, &q, 0.0, &[1.0, -1.0]).primal_infeasibility, 1.0);
        assert_eq!(kkt(&p, &q, 0.0, &[1.0, 1.0]).complementarity, 4.0); // lambda = (2, 4)
        assert!(kkt(&p, &q, 0.0, &[f64::NAN, 0.0]).complementarity.is_nan());
        assert!(kkt(&p, &q, 0.0, &[0.0]).dual_infeasibility.is_infinite());
    }

    #[test]
    fn error_messages_are_one_liners() {
        let errors = [
            QpError::DimensionMismatch {
                what: "v",
                expected: 2,
                found: 1,
            },
            QpError::NonFinite { what: "q" },
            QpError::NotPositiveDefinite,
            QpError::IterationLimit { iterations: 70 },
        ];
        for s in errors.map(|e| e.to_string()) {
            assert!(s.starts_with("QP ") && !s.contains('\n'), "{s}");
        }
        assert_eq!(
            QpError::NotPositiveDefinite.to_string(),
            "QP matrix is not positive definite"
        );
    }
}
