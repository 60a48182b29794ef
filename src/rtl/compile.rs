//! C for the CV32E40P: clang-19 with the CORE-V extensions LLVM 19 knows (SIMD, ALU, MAC,
//! post-increment memory, bit manipulation, immediate branches; no hardware loops), linked with
//! the harness's startup code and linker script.

use super::error::io;
use super::{Rtl, RtlError};
use std::path::Path;
use std::process::Command;

/// The target: RV32IMC with the CV32E40P's PULP extensions, no floating point (FPU=0).
const TARGET: [&str; 3] = [
    "--target=riscv32",
    "-march=rv32imc_zicsr_xcvsimd_xcvalu_xcvmac_xcvmem_xcvbitmanip_xcvbi",
    "-mabi=ilp32",
];

impl Rtl {
    /// Compiles and links `sources` (C or assembly) at -O2 into the executable `elf`. Programs
    /// include `qsearch_rtl.h` for output and counters; `main`'s return value is the exit code.
    pub fn compile(&self, sources: &[&Path], elf: &Path) -> Result<(), RtlError> {
        let program = elf.display().to_string();
        let out = Command::new(&self.tools.clang)
            .args(TARGET)
            .args(["-O2", "-Wall", "-ffreestanding", "-nostdlib"])
            .arg(format!("--ld-path={}", self.tools.lld.display()))
            .arg("-I")
            .arg(&self.dir)
            .arg("-T")
            .arg(self.dir.join("link.ld"))
            .arg(self.dir.join("crt0.S"))
            .args(sources)
            .arg("-o")
            .arg(elf)
            .output()
            .map_err(io(&self.tools.clang))?;
        if !out.status.success() {
            return Err(RtlError::Compile {
                program,
                log: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }
}
