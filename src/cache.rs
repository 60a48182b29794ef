//! Where qsearch keeps what outlives a run on this machine: `$XDG_CACHE_HOME/qsearch`, else
//! `~/.cache/qsearch`. `scripts/setup.sh` creates the project venv there; [`crate::rtl`] keeps
//! its built simulators there.

use std::path::PathBuf;

pub(crate) fn dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| ".cache".into())
        .join("qsearch")
}

/// The Python interpreter of the project venv: `QSEARCH_VENV`, else `dir()/venv` (the same
/// rule as `scripts/setup.sh`).
pub(crate) fn venv_python() -> PathBuf {
    std::env::var_os("QSEARCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir().join("venv"))
        .join("bin/python")
}
