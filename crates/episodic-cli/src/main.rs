//! `episodic`: continual-learning experiments from the command line.
//!
//! A thin layer over the `episodic` library: parse what the user typed, turn it into one
//! validated configuration, run, print and write the results. Every error ends the process
//! with a one-line message on stderr and exit code 2.

mod args;
mod bench;
mod run;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Bench(args) => bench::bench(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
