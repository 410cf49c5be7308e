//! `episodic`: continual-learning experiments from the command line.
//!
//! A thin layer over the `episodic` library: parse what the user typed, turn it into one
//! validated configuration, run, print and write the results. Every error ends the process
//! with a one-line message on stderr and exit code 2.
//!
//! The binary only calls [`main_entry`]; the library also exposes the parsers of
//! configuration files ([`parse_run_config`], [`parse_grid`]) for the fuzz targets.

/// `println!` that ignores a closed standard output (`episodic suite --list-jobs | head`)
/// instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed standard output.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod args;
mod bench;
mod options;
mod output;
mod progress;
mod report;
mod resolve;
mod run;
mod suite;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
pub use crate::options::Options;

/// What `main` does: parses the command line, runs the subcommand, and turns any error into
/// one line on stderr and exit code 2.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version: print as clap does, exit 0.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // Keep clap's first line ("error: invalid value '-3' for '--tasks <N>': ...") and
            // drop its usage block, so that every error is one line.
            let text = err.to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            let choices = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("[possible values: "));
            match choices {
                Some(choices) => eprintln!(
                    "{first}; possible values: {}",
                    choices.trim_end_matches(']')
                ),
                None => eprintln!("{first} (see --help)"),
            }
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Report(args) => report::report(&args),
        Command::Suite(args) => suite::suite(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line whatever a library's message holds.
            let text = format!("{err:#}");
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", line.join(" "));
            ExitCode::from(2)
        }
    }
}

/// Parses the text of a run configuration file (`episodic run --config FILE.toml`) as
/// `config.toml`; an error is one line naming the line and key.
pub fn parse_run_config(text: &str) -> anyhow::Result<Options> {
    Options::parse_toml(Path::new("config.toml"), text)
}

/// Parses the text of a suite grid file (`episodic suite --config FILE.toml`) as `grid.toml`
/// into its axes: each key with its values, in file order; an error is one line naming the
/// line and key.
pub fn parse_grid(text: &str) -> anyhow::Result<Vec<(String, Vec<toml::Value>)>> {
    suite::parse_grid_axes(Path::new("grid.toml"), text)
}
