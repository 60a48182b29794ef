//! The project's CV32E40P harness (`rtl/` in the repository: SystemVerilog wrapper, C++ main,
//! startup code, linker script), built by Verilator once per version of the RTL and the harness
//! into `~/.cache/qsearch/rtl/<hash>`.

use super::RtlError;
use super::error::io;
use super::tools::Tools;
use crate::hash::{fnv, fnv_extend};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The harness sources, written next to the built simulator; programs compile against the
/// startup code, linker script and headers of the same folder.
const SOURCES: [(&str, &str); 6] = [
    ("tb.sv", include_str!("../../rtl/tb.sv")),
    ("sim.cpp", include_str!("../../rtl/sim.cpp")),
    ("mmio.h", include_str!("../../rtl/mmio.h")),
    ("crt0.S", include_str!("../../rtl/crt0.S")),
    ("link.ld", include_str!("../../rtl/link.ld")),
    ("qsearch_rtl.h", include_str!("../../rtl/qsearch_rtl.h")),
];

/// Verilator's flags. 5.006 stops on `BLKANDNBLK` in `cv32e40p_cs_registers.sv` (the counters
/// still work) and warns on much of the RTL's style; warnings stay in the build log, not fatal.
const VERILATOR_FLAGS: [&str; 12] = [
    "--cc",
    "--exe",
    "--build",
    "-O3",
    "-Wno-fatal",
    "-Wno-BLKANDNBLK",
    "-Wno-lint",
    "-Wno-style",
    "--top-module",
    "qsearch_tb",
    "-CFLAGS",
    // make runs in obj/, next to which the harness's headers are.
    "-I.. -O2",
];

/// The simulator, built and ready, with the tools that compile programs for it.
pub struct Rtl {
    pub(super) tools: Tools,
    /// The cached harness folder: the `sim` binary and [`SOURCES`].
    pub(super) dir: PathBuf,
}

impl Rtl {
    /// Finds the tools and builds the harness, unless this version of it is in the cache
    /// (about 20 s on two cores the first time).
    pub fn init() -> Result<Rtl, RtlError> {
        let tools = Tools::find()?;
        let files = rtl_files(&tools.rtl)?;
        let root = crate::cache::dir().join("rtl");
        let dir = root.join(format!("{:016x}", key(&files)?));
        if !dir.join("sim").is_file() {
            build(&tools, &files, &root, &dir)?;
        }
        Ok(Rtl { tools, dir })
    }
}

/// The file list's entries (`+incdir+` lines and sources) with `${DESIGN_RTL_DIR}` resolved,
/// without the package's own testbench wrapper and tracer (simulation-only modules the core does
/// not instantiate).
fn rtl_files(package: &Path) -> Result<Vec<String>, RtlError> {
    let flist = package.join("cv32e40p_manifest.flist");
    let text = std::fs::read_to_string(&flist).map_err(io(&flist))?;
    let rtl_dir = package.join("rtl");
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("//"))
        .filter(|line| !line.contains("tb_wrapper") && !line.contains("tracer"))
        .map(|line| line.replace("${DESIGN_RTL_DIR}", &rtl_dir.to_string_lossy()))
        .collect())
}

/// The cache key: the RTL sources, the harness sources and Verilator's flags.
fn key(files: &[String]) -> Result<u64, RtlError> {
    let mut h = fnv(VERILATOR_FLAGS.concat().as_bytes());
    for file in files.iter().filter(|f| !f.starts_with('+')) {
        let bytes = std::fs::read(file).map_err(io(Path::new(file)))?;
        h = fnv_extend(fnv_extend(h, file.as_bytes()), &bytes);
    }
    for (name, text) in SOURCES {
        h = fnv_extend(fnv_extend(h, name.as_bytes()), text.as_bytes());
    }
    Ok(h)
}

/// Builds in a fresh folder under `root` and renames it to `dir`, so that a reader never sees a
/// half-built harness and concurrent builds do not collide (the first rename wins).
fn build(tools: &Tools, files: &[String], root: &Path, dir: &Path) -> Result<(), RtlError> {
    static BUILDS: AtomicU64 = AtomicU64::new(0);
    let temp = root.join(format!(
        ".build-{}-{}",
        std::process::id(),
        BUILDS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir_all(&temp).map_err(io(&temp))?;
    let result = build_in(tools, files, &temp).and_then(|()| match std::fs::rename(&temp, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.join("sim").is_file() => Ok(()),
        Err(e) => Err(io(dir)(e)),
    });
    let _ = std::fs::remove_dir_all(&temp);
    result
}

fn build_in(tools: &Tools, files: &[String], dir: &Path) -> Result<(), RtlError> {
    for (name, text) in SOURCES {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    let flist = dir.join("files.f");
    std::fs::write(&flist, files.join("\n")).map_err(io(&flist))?;
    let failed = |log: String| RtlError::HarnessBuild {
        dir: dir.display().to_string(),
        log,
    };
    let out = Command::new(&tools.verilator)
        .current_dir(dir)
        .args(VERILATOR_FLAGS)
        .args(["-j", "2", "-f", "files.f", "tb.sv", "sim.cpp"])
        .args(["--Mdir", "obj", "-o", "sim"])
        .output()
        .map_err(|e| failed(format!("cannot run {}: {e}", tools.verilator.display())))?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        return Err(failed(
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        ));
    }
    // Only the binary is needed from Verilator's output folder.
    let sim = dir.join("sim");
    std::fs::rename(dir.join("obj/sim"), &sim).map_err(io(&sim))?;
    let obj = dir.join("obj");
    std::fs::remove_dir_all(&obj).map_err(io(&obj))
}
