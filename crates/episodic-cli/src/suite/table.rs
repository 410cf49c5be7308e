//! The table a suite prints: mean and sample standard deviation over seeds per benchmark and
//! series.

use std::fmt::Write as _;

use episodic::config::MethodKind;

use crate::report::Run;

/// Mean and sample standard deviation (0 for one value) of the values present.
fn mean_std(values: impl Iterator<Item = Option<f64>>) -> Option<(f64, f64, usize)> {
    let values: Vec<f64> = values.flatten().collect();
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    Some((mean, var.sqrt(), n))
}

/// The summary as a Markdown table: mean ± standard deviation over seeds per method and
/// benchmark.
pub(super) fn summary_table(rows: &[Run]) -> String {
    let mut out = String::from(
        "| benchmark | method | seeds | ACC | BWT | FWT | seconds |\n|---|---|---|---|---|---|---|\n",
    );
    let cell = |v: Option<(f64, f64, usize)>| {
        v.map_or_else(|| "n/a".into(), |(m, s, _)| format!("{m:.3} ± {s:.3}"))
    };
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !groups.contains(&(r.benchmark.as_str(), r.method.as_str())) {
            groups.push((r.benchmark.as_str(), r.method.as_str()));
        }
    }
    let rank = |m: &str| {
        let name = m.split(' ').next().unwrap_or(m);
        MethodKind::ALL
            .iter()
            .position(|k| k.id() == name)
            .unwrap_or(MethodKind::ALL.len())
    };
    // Benchmarks in the order they ran; methods in report order inside each.
    let benchmarks: Vec<&str> = groups.iter().fold(Vec::new(), |mut acc, (b, _)| {
        if !acc.contains(b) {
            acc.push(*b);
        }
        acc
    });
    for benchmark in benchmarks {
        let mut methods: Vec<&str> = groups
            .iter()
            .filter(|(b, _)| *b == benchmark)
            .map(|(_, m)| *m)
            .collect();
        methods.sort_by_key(|m| rank(m));
        for method in methods {
            let group: Vec<&Run> = rows
                .iter()
                .filter(|r| r.benchmark == benchmark && r.method == method)
                .collect();
            let seconds = mean_std(group.iter().map(|r| r.seconds));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.1} |",
                benchmark,
                method,
                group.len(),
                cell(mean_std(group.iter().map(|r| Some(r.acc)))),
                cell(mean_std(group.iter().map(|r| r.bwt))),
                cell(mean_std(group.iter().map(|r| r.fwt))),
                seconds.map_or(0.0, |s| s.0)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &'static str, seed: u64, acc: f64, bwt: Option<f64>) -> Run {
        let mut run = crate::report::tests::run(method, "mnist-permutations", seed, 0.0);
        (run.acc, run.bwt, run.fwt, run.seconds) = (acc, bwt, None, Some(2.0));
        run
    }

    #[test]
    fn table_reports_mean_and_sample_spread_per_method() {
        let table = summary_table(&[
            row("gem", 0, 0.8, Some(0.0)),
            row("gem", 1, 0.9, Some(0.02)),
            row("single", 0, 0.5, None),
        ]);
        assert!(
            table.contains(
                "| mnist-permutations | gem | 2 | 0.850 ± 0.071 | 0.010 ± 0.014 | n/a | 2.0 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| single | 1 | 0.500 ± 0.000 | n/a |"),
            "{table}"
        );
        // single is listed before gem (report order).
        assert!(table.find("single").unwrap() < table.find("gem").unwrap());
    }
}
