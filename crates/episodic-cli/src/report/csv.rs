//! Names safe for files, and `summary.csv`, its one writer.

use std::fmt::Write as _;

use super::{method_rank, Run};

/// `name` made safe as part of a file name: ASCII letters, digits, '-' and '_' are kept,
/// anything else becomes '_'.
pub(crate) fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One CSV field, quoted when it must be.
pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// `summary.csv`, the one writer of it (the report's and the suite's): one row per run, in
/// report order, every value at full precision; empty fields where a value is missing.
pub(crate) fn summary_csv(runs: &[Run]) -> String {
    let mut runs: Vec<&Run> = runs.iter().collect();
    runs.sort_by(|a, b| {
        (&a.benchmark, method_rank(&a.method), a.seed).cmp(&(
            &b.benchmark,
            method_rank(&b.method),
            b.seed,
        ))
    });
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
    let mut csv = String::from("method,benchmark,seed,ACC,BWT,FWT,seconds\n");
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{}",
            csv_field(&r.method),
            csv_field(&r.benchmark),
            r.seed,
            r.acc,
            opt(r.bwt),
            opt(r.fwt),
            opt(r.seconds)
        );
    }
    csv
}
