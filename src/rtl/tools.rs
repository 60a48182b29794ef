//! The programs the CV32E40P simulation needs, found on this machine, and the RTL package in the
//! project venv. A missing one is an error that says what installs it.

use super::RtlError;
use std::path::{Path, PathBuf};
use std::process::Command;

const SETUP: &str = "run scripts/setup.sh";

pub(super) struct Tools {
    pub verilator: PathBuf,
    pub clang: PathBuf,
    pub lld: PathBuf,
    /// The RTL package's `system_verilog` folder (file list `cv32e40p_manifest.flist`).
    pub rtl: PathBuf,
}

impl Tools {
    pub fn find() -> Result<Tools, RtlError> {
        // Verilator compiles the model it generates with make and a C++ compiler.
        program("make", "make")?;
        program("g++", "g++")?;
        Ok(Tools {
            verilator: program("verilator", "verilator")?,
            clang: program("clang-19", "clang-19")?,
            lld: program("ld.lld-19", "lld-19")?,
            rtl: rtl_package()?,
        })
    }
}

/// `name` on the `PATH`, else an error naming the Debian package that provides it.
fn program(name: &str, package: &str) -> Result<PathBuf, RtlError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
        .ok_or_else(|| RtlError::ToolMissing {
            tool: name.into(),
            install: format!("{SETUP}, or install the Debian package {package}"),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The CV32E40P RTL from PyPI's `pythondata-cpu-cv32e40p`, as the project venv's Python finds it.
fn rtl_package() -> Result<PathBuf, RtlError> {
    let python = crate::cache::venv_python();
    let missing = || RtlError::ToolMissing {
        tool: "the CV32E40P RTL (Python package pythondata-cpu-cv32e40p)".into(),
        install: format!(
            "{SETUP}, which installs it into the project venv ({})",
            python.display()
        ),
    };
    let out = Command::new(&python)
        .args([
            "-c",
            "import pythondata_cpu_cv32e40p as p; print(p.data_location)",
        ])
        .output()
        .map_err(|_| missing())?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !dir.join("cv32e40p_manifest.flist").is_file() {
        return Err(missing());
    }
    Ok(dir)
}
