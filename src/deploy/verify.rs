//! Verification of a generated project on the host: build it with the host compiler, run it
//! on images, and compare every layer's packed output with the golden model's, byte for byte.

use super::DeployError;
use super::golden;
use super::integerize::{IntGraph, IntTensor};
use crate::quant::pack;
use rayon::prelude::*;
use std::path::Path;
use std::process::Command;

/// What the host run showed.
pub struct HostCheck {
    /// Images whose every layer matched the golden model.
    pub exact: usize,
    pub total: usize,
    /// The program's output: per-layer checksums of the first image and the time per image.
    pub stdout: String,
    pub first_mismatch: Option<String>,
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |e| DeployError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Runs `make` in `dir` for `target` (the default one when `None`); `what` says what failed to
/// build and what it needs.
pub(super) fn make(dir: &Path, target: Option<&str>, what: &str) -> Result<(), DeployError> {
    let build = Command::new("make")
        .args(["-s", "-C"])
        .arg(dir)
        .args(target)
        .output()
        .map_err(|e| DeployError::Build(format!("cannot run make ({e}); install make and gcc")))?;
    if !build.status.success() {
        return Err(DeployError::Build(format!(
            "{what} in {} did not build:\n{}",
            dir.display(),
            String::from_utf8_lossy(&build.stderr)
        )));
    }
    Ok(())
}

/// What an rv32 program printed on QEMU's virt machine (semihosting; QEMU writes the console
/// to standard error), with `-icount shift=0` when `count_instructions` (exact `minstret`).
/// `None` when QEMU is not installed.
pub(super) fn run_qemu(elf: &Path, count_instructions: bool) -> Option<String> {
    let out = Command::new("timeout")
        .args([
            "300",
            "qemu-system-riscv32",
            "-machine",
            "virt",
            "-cpu",
            "rv32",
        ])
        .args([
            "-bios",
            "none",
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
        ])
        .args(
            count_instructions
                .then_some(["-icount", "shift=0"])
                .into_iter()
                .flatten(),
        )
        .args(["-semihosting-config", "enable=on", "-kernel"])
        .arg(elf)
        .output()
        .ok()
        .filter(|out| out.status.code() != Some(127))?;
    Some(String::from_utf8_lossy(&[&out.stdout[..], &out.stderr[..]].concat()).into_owned())
}

/// Builds `program` of the project written in `dir` (`network`, the portable build, or
/// `network_pulp_emu`, the PULP path emulated), runs it on `images` (bytes, HWC) and compares.
pub fn host_check(
    graph: &IntGraph,
    images: &[Vec<u8>],
    dir: &Path,
    program: &str,
) -> Result<HostCheck, DeployError> {
    make(dir, Some(program), "the generated C")?;
    let inputs = dir.join("inputs.bin");
    let outputs = dir.join("outputs.bin");
    crate::results::write_atomic(&inputs, &images.concat()).map_err(io(&inputs))?;
    let program = dir.join(program);
    let run = Command::new(&program)
        .arg(&inputs)
        .arg(&outputs)
        .output()
        .map_err(io(&program))?;
    if !run.status.success() {
        return Err(DeployError::Build(format!(
            "{} failed: {}",
            program.display(),
            String::from_utf8_lossy(&run.stderr)
        )));
    }
    let (exact, first_mismatch) =
        compare_with_golden(graph, images, &outputs, |values, t| pack(values, t.bits))?;
    Ok(HostCheck {
        exact,
        total: images.len(),
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        first_mismatch,
    })
}

/// Compares the file `outputs`, which another implementation wrote while running `images`
/// (every layer's output, image after image), with the golden model. `encode` turns a layer's
/// golden integers into the bytes that implementation writes for them. Returns the images
/// whose every layer matched and the first mismatch.
pub(super) fn compare_with_golden(
    graph: &IntGraph,
    images: &[Vec<u8>],
    outputs: &Path,
    encode: impl Fn(&[i32], &IntTensor) -> Vec<u8> + Sync,
) -> Result<(usize, Option<String>), DeployError> {
    let produced = std::fs::read(outputs).map_err(io(outputs))?;
    // The encoded size depends on the shape alone.
    let per_image: usize = graph
        .layers
        .iter()
        .map(|l| {
            let t = &graph.tensors[l.output];
            encode(&vec![0; t.shape.elements() as usize], t).len()
        })
        .sum();
    if produced.len() != per_image * images.len() {
        return Err(DeployError::Build(format!(
            "{} holds {} bytes; {} images of {per_image} bytes were expected",
            outputs.display(),
            produced.len(),
            images.len()
        )));
    }
    let mismatches: Vec<Option<String>> = images
        .par_iter()
        .enumerate()
        .map(|(i, image)| {
            let buffers = golden::run(graph, image);
            let mut at = i * per_image;
            for layer in &graph.layers {
                let expected = encode(&buffers[layer.output], &graph.tensors[layer.output]);
                if produced[at..at + expected.len()] != expected[..] {
                    return Some(format!("image {i}, layer '{}'", layer.name));
                }
                at += expected.len();
            }
            None
        })
        .collect();
    Ok((
        mismatches.iter().filter(|m| m.is_none()).count(),
        mismatches.into_iter().flatten().next(),
    ))
}

/// What the rv32imc bare-metal build showed.
pub struct CrossCheck {
    /// Section sizes of `network.elf` (network, test program and picolibc).
    pub text: u64,
    pub data: u64,
    pub bss: u64,
    /// Whether the emulator's output equals the golden model's (None without the emulator).
    pub emulated_exact: Option<bool>,
}

/// Builds `network.elf` for rv32imc with picolibc in `dir` (whose `test_input.h` holds `image`),
/// reads its section sizes, and runs it on QEMU when installed, comparing its output with the
/// golden model's.
pub fn cross_check(graph: &IntGraph, image: &[u8], dir: &Path) -> Result<CrossCheck, DeployError> {
    make(
        dir,
        Some("network.elf"),
        "the rv32imc build (it needs gcc-riscv64-unknown-elf and picolibc-riscv64-unknown-elf, which scripts/setup.sh installs)",
    )?;
    let size = Command::new("riscv64-unknown-elf-size")
        .arg(dir.join("network.elf"))
        .output()
        .map_err(|e| {
            DeployError::Build(format!(
                "cannot run riscv64-unknown-elf-size ({e}); install Debian's binutils-riscv64-unknown-elf (scripts/setup.sh does)"
            ))
        })?;
    let sizes: Vec<u64> = String::from_utf8_lossy(&size.stdout)
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    let [text, data, bss] = sizes[..] else {
        return Err(DeployError::Build(format!(
            "riscv64-unknown-elf-size printed no sizes: {}",
            String::from_utf8_lossy(&size.stdout)
        )));
    };
    let emulated_exact = run_qemu(&dir.join("network.elf"), false).map(|printed| {
        let buffers = golden::run(graph, image);
        let output = &graph.tensors[graph.output];
        let expected: String = pack(&buffers[graph.output], output.bits)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        printed.lines().any(|line| line.trim() == expected)
    });
    Ok(CrossCheck {
        text,
        data,
        bss,
        emulated_exact,
    })
}
