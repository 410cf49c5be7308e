//! Where results go: a run's id and default file name, `--out -` for standard output, and
//! the rule that a results file of another configuration is never silently replaced.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use episodic::config::ExperimentConfig;
use episodic::results::{self, RunResults};
use sha2::{Digest, Sha256};

/// A digest of everything that determines a run's results (the thread count does not).
pub fn config_digest(config: &ExperimentConfig) -> String {
    let mut c = config.clone();
    c.threads = 0;
    let text = serde_json::to_string(&c).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A run's stable id: method, benchmark, seed (readable) and the first 8 hex digits of its
/// configuration's digest, so that runs at other settings get other names.
pub fn run_id(config: &ExperimentConfig) -> String {
    format!(
        "{}-{}-seed{}-{}",
        config.method.kind().id(),
        config.benchmark,
        config.seed,
        &config_digest(config)[..8]
    )
}

/// `results/RUN-ID.json`: where `episodic run` writes unless told otherwise.
pub fn default_results_path(config: &ExperimentConfig) -> PathBuf {
    PathBuf::from("results").join(format!("{}.json", run_id(config)))
}

/// Where a run's results JSON goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `--out -`: standard output (the summary then goes to standard error).
    Stdout,
    /// A file (a symbolic link is written through to its target).
    File(PathBuf),
}

impl Destination {
    /// `-` is standard output; anything else a file.
    pub fn of(path: &Path) -> Self {
        if path == Path::new("-") {
            Self::Stdout
        } else {
            Self::File(path.to_path_buf())
        }
    }

    /// The path as recorded in a checkpoint (`-` for standard output, a file made absolute so
    /// that a run resumed from another directory writes to the same place).
    pub fn recorded(&self) -> PathBuf {
        match self {
            Self::Stdout => PathBuf::from("-"),
            Self::File(path) => std::path::absolute(path).unwrap_or_else(|_| path.clone()),
        }
    }

    /// Fails now, not after a long run, if the results could not be written, or if they
    /// would replace a file that is not a results file of `config` (unless `force`).
    pub fn check(&self, config: &ExperimentConfig, force: bool) -> Result<()> {
        let Self::File(path) = self else {
            return Ok(());
        };
        results::check_writable(path)?;
        if !force {
            refuse_replacing_other(path, config)?;
        }
        Ok(())
    }

    /// Writes `results` here.
    pub fn write(&self, results: &RunResults) -> Result<()> {
        match self {
            Self::Stdout => {
                use std::io::Write as _;
                let json = serde_json::to_string_pretty(results)?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{json}")
                    .and_then(|()| out.flush())
                    .map_err(|e| {
                        anyhow::anyhow!("cannot write the results to standard output: {e}")
                    })
            }
            Self::File(path) => Ok(results.write_json(path)?),
        }
    }

    /// How the summary names it.
    pub fn describe(&self) -> String {
        match self {
            Self::Stdout => "standard output".into(),
            Self::File(path) => path.display().to_string(),
        }
    }
}

/// Fails if `path` exists and is anything but a results file of `config` (any thread
/// count): another run's results, or a file that is not a results file at all.
pub fn refuse_replacing_other(path: &Path, config: &ExperimentConfig) -> Result<()> {
    let Ok(text) = std::fs::read(path) else {
        return Ok(());
    };
    let existing: Option<RunResults> = serde_json::from_slice(&text).ok();
    let what = match existing {
        Some(existing) if existing.config.same_experiment(config) => return Ok(()),
        Some(existing) => format!(
            "results of another configuration ({} on {}, seed {}, digest {})",
            existing.config.method.kind().id(),
            existing.config.benchmark,
            existing.config.seed,
            &config_digest(&existing.config)[..8]
        ),
        None => "a file that is not a results file of this run".to_string(),
    };
    bail!(
        "{} holds {what}; give another --out, or --force to replace it",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use episodic::config::MethodKind;
    use episodic::data::Preset;

    fn config() -> ExperimentConfig {
        ExperimentConfig::paper(Preset::MnistPermutations, MethodKind::Gem, 1)
    }

    #[test]
    fn ids_differ_by_configuration_not_by_threads() {
        let a = config();
        let mut b = a.clone();
        b.threads = 7;
        assert_eq!(run_id(&a), run_id(&b));
        let mut c = a.clone();
        c.tasks = 2;
        assert_ne!(run_id(&a), run_id(&c));
        assert!(run_id(&a).starts_with("gem-mnist-permutations-seed0-"));
        assert_eq!(
            default_results_path(&a),
            Path::new("results").join(format!("{}.json", run_id(&a)))
        );
    }

    #[test]
    fn only_results_of_the_same_experiment_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let a = config();
        let mut other = a.clone();
        other.tasks = 3;
        refuse_replacing_other(&path, &a).unwrap();
        std::fs::write(&path, "notes").unwrap();
        let err = refuse_replacing_other(&path, &a).unwrap_err().to_string();
        assert!(err.contains("not a results file"), "{err}");
        let mut results = fake_results(&other);
        results.config.threads = 5;
        results.write_json(&path).unwrap();
        let err = refuse_replacing_other(&path, &a).unwrap_err().to_string();
        assert!(
            err.contains("another configuration") && err.contains("--force"),
            "{err}"
        );
        refuse_replacing_other(&path, &other).unwrap();
        Destination::File(path.clone()).check(&a, true).unwrap();
    }

    fn fake_results(config: &ExperimentConfig) -> RunResults {
        RunResults {
            episodic_version: "0".into(),
            git_revision: None,
            matrix_kernels: None,
            config: config.clone(),
            tasks: Vec::new(),
            metrics: episodic::metrics::Metrics {
                acc: 0.5,
                bwt: None,
                fwt: None,
            },
            metrics_reference_convention: episodic::metrics::Metrics {
                acc: 0.5,
                bwt: None,
                fwt: None,
            },
            baseline: vec![0.1],
            accuracy_matrix: vec![vec![0.5]],
            evaluations: Vec::new(),
            steps: 1,
            projected_steps: 0,
            skipped_steps: 0,
            timing: Default::default(),
        }
    }

    #[test]
    fn a_dash_is_standard_output() {
        assert_eq!(Destination::of(Path::new("-")), Destination::Stdout);
        assert_eq!(
            Destination::of(Path::new("x.json")),
            Destination::File("x.json".into())
        );
        assert_eq!(Destination::Stdout.recorded(), Path::new("-"));
        assert!(Destination::of(Path::new("x.json"))
            .recorded()
            .is_absolute());
    }
}
