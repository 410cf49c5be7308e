//! Tests of the QP solver: known answers, KKT on random and near-degenerate problems,
//! agreement with clarabel, and every error.

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
    let p = (0..t * t).map(|k| dot(&rows[k / t], &rows[k % t]) + eps * f64::from(k % (t + 1) == 0));
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
    let mut solver = DefaultSolver::new(&pm, q, &a, &vec![-lower; n], &cones, settings).unwrap();
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
