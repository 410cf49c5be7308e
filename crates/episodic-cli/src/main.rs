//! `episodic`: continual-learning experiments from the command line (see the library,
//! `episodic_cli`, for what it does).

fn main() -> std::process::ExitCode {
    episodic_cli::main_entry()
}
