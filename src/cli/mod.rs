//! The `qsearch` command line, private to the binary: clap flags mapped onto the library's run
//! configs ([`flags`]) and one function per command that calls the library and prints
//! ([`commands`]). It lives beside `main.rs` rather than in the library so that the library
//! never sees the command line: its callers (tests, benches, other tools) pass run configs.

mod commands;
mod flags;

pub use commands::run;
pub use flags::Cli;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

/// The command line, refusing the main flow's flags before a command (only the global ones,
/// `--quiet`, go anywhere).
pub fn parse() -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    if let Some((name, _)) = matches.subcommand() {
        let given: Vec<String> = command
            .get_arguments()
            .filter(|a| !a.is_global_set())
            .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
            .map(|a| format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))
            .collect();
        if !given.is_empty() {
            return Err(command.error(
                ErrorKind::ArgumentConflict,
                format!(
                    "the command '{name}' cannot be used with {}, which belong to the main flow; give the options after the command: qsearch {name} [OPTIONS]",
                    given.join(", ")
                ),
            ));
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}
