//! The exit codes of the `qsearch` command (`qsearch --help` lists them) and the line a failed
//! command's standard error ends with.

/// The command did what was asked.
pub const OK: i32 = 0;
/// The command failed: bad input (a file, a model, a name), a run that could not finish, or a
/// check that did not pass (a deployment that is not bit-exact, a fit that got worse, failed
/// batch tasks). The error says which, above the exit-code line.
pub const ERROR: i32 = 1;
/// The command line itself is wrong: an unknown command or flag, a missing or malformed value.
pub const USAGE: i32 = 2;

/// The start of the last line on standard error of a failed command.
pub const LINE: &str = "qsearch: exit code";

/// The last line of a failed command: `qsearch: exit code 1 (error)`.
pub fn line(code: i32) -> String {
    let meaning = match code {
        ERROR => "error",
        USAGE => "usage error",
        _ => "failure",
    };
    format!("{LINE} {code} ({meaning})")
}
