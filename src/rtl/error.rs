//! How building the harness, compiling a program for the CV32E40P or running one fails.

#[derive(Debug, thiserror::Error)]
pub enum RtlError {
    #[error("{tool} not found; {install}")]
    ToolMissing { tool: String, install: String },
    #[error("the CV32E40P harness did not build in {dir}:\n{log}")]
    HarnessBuild { dir: String, log: String },
    #[error("{program} did not compile for the CV32E40P:\n{log}")]
    Compile { program: String, log: String },
    #[error("{program} cannot be loaded on the CV32E40P harness: {reason}")]
    BadElf { program: String, reason: String },
    #[error(
        "{program} trapped on the CV32E40P: mcause {mcause} ({}) at mepc {mepc:#010x}",
        cause(*mcause)
    )]
    Trap {
        program: String,
        mcause: u32,
        mepc: u32,
    },
    #[error("{program} accessed {address:#010x}, outside the harness's RAM and MMIO registers")]
    BadAccess { program: String, address: u32 },
    #[error("{program} did not exit within its limit of {cycles} cycles on the CV32E40P")]
    CycleLimit { program: String, cycles: u64 },
    #[error("{program}: the simulator was killed after {seconds} s of wall-clock time")]
    Timeout { program: String, seconds: u64 },
    #[error("{program}: the simulator failed: {message}")]
    Simulator { program: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// What an exception's `mcause` means (the privileged spec's codes the CV32E40P raises).
fn cause(mcause: u32) -> &'static str {
    match mcause {
        0 => "instruction address misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        5 => "load access fault",
        7 => "store access fault",
        11 => "environment call from M-mode",
        c if c & 0x8000_0000 != 0 => "interrupt",
        _ => "unknown cause",
    }
}

/// Turns an I/O error on `path` into an [`RtlError::Io`].
pub(super) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RtlError + '_ {
    move |e| RtlError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
