//! `episodic report`: results files in, figures, `summary.csv` and one HTML page out.
//!
//! This module loads and checks the results files, groups the runs by (benchmark, method)
//! and averages them over seeds; [`figures`] draws, [`html`] writes the page.
//!
//! Results files are read through small structs of their own holding only the fields the
//! report needs, so that fields added to `RunResults` later do not break reading.

mod csv;
mod figures;
mod html;
mod load;
mod model;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use csv::*;
pub(crate) use load::*;
pub(crate) use model::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use episodic::results;
use serde::Deserialize;

use crate::args::ReportArgs;

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// The page, `DIR/index.html`.
    pub index: PathBuf,
    /// Every file written, the page included.
    pub files: Vec<PathBuf>,
    /// Number of runs reported.
    pub runs: usize,
}

/// `episodic report`: writes the report and says where it is.
pub fn report(args: &ReportArgs) -> Result<()> {
    let paths = expand_results_paths(&args.results, &args.out)?;
    let summary = write_report(&paths, &args.out)?;
    outln!(
        "report of {} run(s), {} files: {}",
        summary.runs,
        summary.files.len(),
        summary.index.display()
    );
    Ok(())
}

/// The results files named by `given`: files as they are, folders searched recursively for
/// results JSON files (other JSON files, and the report folder `out` itself, are skipped), in
/// sorted order so that a merged report does not depend on the order folders list files.
pub fn expand_results_paths(given: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                if path != out {
                    walk(&path, out, found)?;
                }
            } else if path.extension().is_some_and(|e| e == "json") && looks_like_results(&path) {
                found.push(path);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    for path in given {
        if path.is_dir() {
            let before = found.len();
            walk(path, out, &mut found)?;
            if found.len() == before {
                bail!("{} holds no results files", path.display());
            }
        } else {
            found.push(path.clone());
        }
    }
    Ok(found)
}

/// Whether the JSON file at `path` is a results file (has a configuration and an accuracy
/// matrix); unreadable files count as results so that their error is reported.
fn looks_like_results(path: &Path) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        config: serde::de::IgnoredAny,
        #[allow(dead_code)]
        accuracy_matrix: serde::de::IgnoredAny,
    }
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<Probe>(&text).is_ok(),
        Err(_) => true,
    }
}

/// Reads the results files `paths` and writes into `out` (created if needed) the figures
/// (SVG and PNG), `summary.csv` and `index.html`, which shows them all.
///
/// Fails, naming the file, on a results file that cannot be read or is not a results file,
/// and on two files that describe the same (method, benchmark, seed).
pub fn write_report(paths: &[PathBuf], out: &Path) -> Result<ReportSummary> {
    if paths.is_empty() {
        bail!("no results files given");
    }
    let model = Model::new(load_runs(paths)?)?;

    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut files = figures::write_all(&model, out)?;
    let csv_path = out.join(SUMMARY_CSV);
    results::write_atomically(&csv_path, summary_csv(&model.runs).trim_end().as_bytes())?;
    files.push(csv_path);

    let page = html::page(&model, &files);
    let index = out.join("index.html");
    results::write_atomically(&index, page.as_bytes())?;
    files.push(index.clone());
    remove_stale_files(out, &files)?;
    Ok(ReportSummary {
        index,
        files,
        runs: model.runs.len(),
    })
}

/// The list of the files a report wrote into its directory, kept there so that the next
/// report into the same directory removes those it does not write again (and nothing else).
const MANIFEST: &str = ".episodic-report-files";

/// Removes the files the previous report in `out` wrote (its manifest says which) that are
/// not among `written`, then records `written` as the new manifest. Only plain file names
/// are ever removed, never anything the report did not write.
fn remove_stale_files(out: &Path, written: &[PathBuf]) -> Result<()> {
    let manifest = out.join(MANIFEST);
    let names: BTreeSet<String> = written
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    if let Ok(previous) = std::fs::read_to_string(&manifest) {
        for name in previous.lines() {
            let plain = !name.is_empty()
                && name != "."
                && name != ".."
                && name != MANIFEST
                && !name.contains(['/', '\\']);
            if plain && !names.contains(name) {
                match std::fs::remove_file(out.join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => bail!("cannot remove the stale {}: {e}", out.join(name).display()),
                }
            }
        }
    }
    let list: Vec<&str> = names.iter().map(String::as_str).collect();
    results::write_atomically(&manifest, list.join("\n").as_bytes())?;
    Ok(())
}

/// Reads and checks the results files `paths`; runs of one method and benchmark that differ
/// in settings are labelled as different series (see [`label_series`]).
pub(crate) fn load_runs(paths: &[PathBuf]) -> Result<Vec<Run>> {
    let mut runs = paths
        .iter()
        .map(|p| load_run(p))
        .collect::<Result<Vec<_>>>()?;
    label_series(&mut runs);
    Ok(runs)
}

/// Name of the per-run table in the output directory.
const SUMMARY_CSV: &str = "summary.csv";
