//! The paper's metrics, plain functions of the accuracy matrix.
//!
//! `b[j]` is the test accuracy on task j at random initialisation; `r[i][j]` is the test
//! accuracy on task j right after training on task i (0-based here). For T tasks:
//!
//! ```text
//! ACC = 1/T     * sum_{i=0..T-1} R[T-1][i]
//! BWT = 1/(T-1) * sum_{i=0..T-2} (R[T-1][i] - R[i][i])
//! FWT = 1/(T-1) * sum_{i=1..T-1} (R[i-1][i] - b[i])
//! ```
//!
//! The reference code divides BWT and FWT by T instead (a zero term included), so its values
//! are (T-1)/T times these; [`reference_convention`] gives them, labelled as such, for
//! comparison with published reference output.

use serde::{Deserialize, Serialize};

/// Average accuracy and backward/forward transfer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Average final accuracy over all tasks.
    pub acc: f64,
    /// Backward transfer (negative: forgetting); `None` with one task.
    pub bwt: Option<f64>,
    /// Forward transfer (zero-shot gain over initialisation); `None` with one task.
    pub fwt: Option<f64>,
}

/// ACC, BWT and FWT by the paper's definitions. `r` must have one row per task and be square.
pub fn paper(b: &[f64], r: &[Vec<f64>]) -> Metrics {
    let t = r.len();
    if t == 0 {
        return Metrics {
            acc: 0.0,
            bwt: None,
            fwt: None,
        };
    }
    let last = &r[t - 1];
    let acc = last.iter().sum::<f64>() / t as f64;
    if t == 1 {
        return Metrics {
            acc,
            bwt: None,
            fwt: None,
        };
    }
    let bwt = (0..t - 1).map(|i| last[i] - r[i][i]).sum::<f64>() / (t - 1) as f64;
    let fwt = (1..t).map(|i| r[i - 1][i] - b[i]).sum::<f64>() / (t - 1) as f64;
    Metrics {
        acc,
        bwt: Some(bwt),
        fwt: Some(fwt),
    }
}

/// The same metrics with BWT and FWT averaged over T entries, as the reference code prints them.
pub fn reference_convention(paper: &Metrics, tasks: usize) -> Metrics {
    let factor = if tasks == 0 {
        0.0
    } else {
        (tasks as f64 - 1.0) / tasks as f64
    };
    Metrics {
        acc: paper.acc,
        bwt: paper.bwt.map(|v| v * factor),
        fwt: paper.fwt.map(|v| v * factor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_three_task_matrix() {
        let b = [0.1, 0.2, 0.05];
        let r = vec![
            vec![0.90, 0.30, 0.10],
            vec![0.80, 0.95, 0.20],
            vec![0.70, 0.85, 0.92],
        ];
        let m = paper(&b, &r);
        // ACC = (0.70 + 0.85 + 0.92) / 3
        assert!((m.acc - 0.823_333_333).abs() < 1e-9);
        // BWT = ((0.70 - 0.90) + (0.85 - 0.95)) / 2 = -0.15
        assert!((m.bwt.unwrap() + 0.15).abs() < 1e-12);
        // FWT = ((0.30 - 0.20) + (0.20 - 0.05)) / 2 = 0.125
        assert!((m.fwt.unwrap() - 0.125).abs() < 1e-12);
        let reference = reference_convention(&m, 3);
        assert!((reference.bwt.unwrap() + 0.10).abs() < 1e-12);
        assert!((reference.fwt.unwrap() - 0.125 * 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(reference.acc, m.acc);
    }

    #[test]
    fn single_task_has_no_transfer() {
        let m = paper(&[0.1], &[vec![0.9]]);
        assert_eq!(m.acc, 0.9);
        assert_eq!((m.bwt, m.fwt), (None, None));
    }
}
