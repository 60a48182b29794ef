//! The microbenchmark harness: one small program per kernel variant and shape of a grid, each the
//! generated code of a one-layer network plus a `main` that counts the instructions of the
//! layer's kernel (`minstret`) and prints the CSV row `qsearch calibrate` reads. On QEMU with
//! `-icount` the count is exact; on a board or GVSoC the same programs, built with the PULP SDK,
//! read the cycle counter instead.

use super::DeployError;
use super::codegen::{generate, test_input_header};
use super::integerize::{IntGraph, IntLayer, IntOp, IntTensor};
use super::pulp::PulpConfig;
use super::verify::{io, make, run_qemu};
use crate::cost::calibrate::COLUMNS;
use crate::graph::{LayerKind, Padding, Shape, Window};
use crate::quant::{Requant, packed_bytes, signed_levels, unsigned_levels};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// One kernel call of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub kind: LayerKind,
    pub input: Shape,
    pub out_c: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub bits: (u32, u32, u32),
}

impl Case {
    fn output(&self) -> Shape {
        match self.kind {
            LayerKind::Linear | LayerKind::GlobalAvgPool | LayerKind::GlobalMaxPool => {
                Shape::new(self.out_c, 1, 1)
            }
            LayerKind::Add => self.input,
            _ => {
                let side = |n: usize| (n + 2 * self.pad - self.kernel) / self.stride + 1;
                Shape::new(self.out_c, side(self.input.h), side(self.input.w))
            }
        }
    }

    /// The CSV row without the measured count (`COLUMNS` minus `cycles`).
    pub fn row(&self) -> String {
        let kind = match self.kind {
            LayerKind::Pointwise => "pointwise",
            LayerKind::Depthwise => "depthwise",
            LayerKind::GroupedConv => "grouped",
            k => k.name(),
        };
        let (w, x, y) = self.bits;
        let i = self.input;
        format!(
            "{kind},{},{},{},{},{k},{k},{},{},{},{w},{x},{y},1",
            i.c,
            i.h,
            i.w,
            self.out_c,
            self.stride,
            self.pad,
            self.groups,
            k = self.kernel
        )
    }
}

/// The grid: every kernel at every precision it takes, over a few shapes each.
pub fn grid() -> Vec<Case> {
    let bits = [8u32, 4, 2];
    let mut cases = Vec::new();
    let conv = |kind, c: usize, hw: usize, out_c, k, stride, pad, groups, b| Case {
        kind,
        input: Shape::new(c, hw, hw),
        out_c,
        kernel: k,
        stride,
        pad,
        groups,
        bits: b,
    };
    for &w in &bits {
        for &x in &bits {
            for &y in &bits {
                let b = (w, x, y);
                cases.push(conv(LayerKind::Conv, 8, 8, 16, 3, 1, 1, 1, b));
                cases.push(conv(LayerKind::Conv, 16, 6, 8, 3, 1, 0, 1, b));
                cases.push(conv(LayerKind::Conv, 4, 9, 8, 5, 2, 2, 1, b));
                cases.push(conv(LayerKind::Conv, 1, 12, 8, 3, 1, 1, 1, b));
                // Wide inputs, where the multiply-accumulates outweigh the per-tap overhead.
                cases.push(conv(LayerKind::Conv, 32, 5, 8, 3, 1, 1, 1, b));
                cases.push(conv(LayerKind::Pointwise, 32, 4, 16, 1, 1, 0, 1, b));
                cases.push(conv(LayerKind::Depthwise, 16, 8, 16, 3, 1, 1, 16, b));
                cases.push(conv(LayerKind::Linear, 96, 1, 12, 1, 1, 0, 1, b));
                cases.push(conv(LayerKind::Linear, 24, 1, 40, 1, 1, 0, 1, b));
            }
        }
    }
    for &x in &bits {
        for &y in &bits {
            let b = (8, x, y);
            cases.push(conv(LayerKind::MaxPool, 16, 8, 16, 2, 2, 0, 1, b));
            cases.push(conv(LayerKind::AvgPool, 8, 9, 8, 3, 3, 0, 1, b));
            cases.push(conv(LayerKind::GlobalAvgPool, 16, 6, 16, 1, 1, 0, 1, b));
            cases.push(conv(LayerKind::Add, 16, 6, 16, 1, 1, 0, 1, b));
        }
    }
    cases
}

/// Deterministic pseudo-random integers (a 64-bit LCG) in `[lo, hi]`.
fn values(count: usize, lo: i32, hi: i32, seed: u64) -> Vec<i32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((state >> 33) % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

/// The one-layer network of `case`, with pseudo-random weights.
pub fn case_graph(case: &Case, seed: u64) -> IntGraph {
    let (w, x, y) = case.bits;
    let tensor = |name: &str, shape, bits| IntTensor {
        name: name.into(),
        shape,
        bits,
        signed: false,
        scale: 1.0,
    };
    let output = case.output();
    let mut tensors = vec![tensor("input", case.input, x), tensor("output", output, y)];
    let mut inputs = vec![0];
    let window = Window {
        kernel: [case.kernel, case.kernel],
        stride: [case.stride, case.stride],
        padding: Padding::uniform(case.pad),
    };
    let levels = signed_levels(w);
    let weights = |n: usize| -> Vec<i8> {
        values(n, -levels, levels, seed)
            .into_iter()
            .map(|v| v as i8)
            .collect()
    };
    let op = match case.kind {
        LayerKind::Linear => IntOp::Linear {
            weights: weights(case.input.elements() as usize * case.out_c),
            bias: vec![0; case.out_c],
            weight_bits: w,
        },
        LayerKind::MaxPool => IntOp::MaxPool { window },
        LayerKind::AvgPool => IntOp::AvgPool { window },
        LayerKind::GlobalAvgPool => IntOp::GlobalAvgPool,
        LayerKind::GlobalMaxPool => IntOp::GlobalMaxPool,
        LayerKind::Add => {
            tensors.push(tensor("other", case.input, x));
            inputs.push(2);
            // Each input rescaled by about 1/4, so that their sum spans the output's range.
            let rescale = Requant {
                multiplier: vec![1 << 29],
                shift: 31,
                lo: 0,
                hi: unsigned_levels(y),
            };
            IntOp::Add {
                rescale: [rescale.clone(), rescale],
            }
        }
        _ => IntOp::Conv {
            weights: weights(case.out_c * case.kernel * case.kernel * case.input.c / case.groups),
            bias: values(case.out_c, -1000, 1000, seed + 1),
            weight_bits: w,
            window,
            groups: case.groups,
        },
    };
    let channels = if matches!(op, IntOp::Conv { .. } | IntOp::Linear { .. }) {
        case.out_c
    } else {
        1
    };
    // A multiplier that spreads the outputs over their range: with one that maps every
    // accumulator to the same value the compiler may prove the kernel constant and drop it.
    let x_max = f64::from(unsigned_levels(x));
    let taps = (case.kernel * case.kernel) as f64;
    let span = match case.kind {
        LayerKind::MaxPool => x_max,
        LayerKind::AvgPool => x_max * taps,
        LayerKind::GlobalAvgPool | LayerKind::GlobalMaxPool => {
            x_max * (case.input.h * case.input.w) as f64
        }
        // The add's rescales carry its multipliers; its own requantization only clamps.
        LayerKind::Add => 1.0,
        LayerKind::Linear => 0.25 * x_max * f64::from(levels) * case.input.elements() as f64,
        _ => 0.25 * x_max * f64::from(levels) * taps * (case.input.c / case.groups) as f64,
    };
    let multiplier =
        (f64::from(unsigned_levels(y)) * 2f64.powi(31) / span).clamp(1.0, 2f64.powi(31) - 1.0);
    let (multiplier, shift) = if case.kind == LayerKind::Add {
        (1, 0)
    } else {
        (multiplier as i64, 31)
    };
    IntGraph {
        name: format!("case{seed}"),
        tensors,
        layers: vec![IntLayer {
            name: "kernel".into(),
            op,
            inputs,
            output: 1,
            requant: Requant {
                multiplier: vec![multiplier; channels],
                shift,
                lo: 0,
                hi: unsigned_levels(y),
            },
            acc_bound: 0,
            product_bound: 0,
        }],
        input: 0,
        output: 1,
    }
}

/// The program that counts one network's kernel instructions: `minstret` read right before and
/// right after the layer (the trace hook), printed after the case's CSV row.
const BENCH_MAIN: &str = r#"/* Microbenchmark generated by qsearch microbench: instructions of the kernel of network.c. */
#include <stdio.h>
#include "network.h"
#include "test_input.h"
#include "case.h"

static uint32_t started, counted;

static inline uint32_t instret(void)
{
    uint32_t v;
    __asm__ volatile("csrr %0, minstret" : "=r"(v));
    return v;
}

static void trace(int layer, const uint8_t *output, uint32_t bytes)
{
    uint32_t now = instret();
    (void)output;
    (void)bytes;
    if (layer < 0) {
        started = now;
    } else {
        counted += now - started;
    }
}

int main(void)
{
    static uint8_t output[NETWORK_OUTPUT_BYTES];
    network_run(test_input, output, trace);
    printf("%s,%lu\n", CASE_ROW, (unsigned long)counted);
    return 0;
}
"#;

/// Extra `Makefile` rules of a microbenchmark: the counting program reads `minstret`, a CSR
/// instruction, which the ISA spec 2.2 still counts as part of rv32i (later ones call it Zicsr).
const BENCH_RULES: &str = r#"
bench.elf: main_bench.c network.c network.h test_input.h case.h
	$(RV32_CC) $(RV32_CFLAGS) -misa-spec=2.2 $(RV32_LIBC) -o $@ main_bench.c network.c $(RV32_MEMORY)
"#;

/// Writes the program counting `graph`'s kernel instructions into `dir`; `row` is printed first.
/// The project's PULP path is tiled for `pulp`.
pub fn write_bench(
    graph: &IntGraph,
    row: &str,
    dir: &Path,
    seed: u64,
    pulp: PulpConfig,
) -> Result<(), DeployError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let project = generate(graph, pulp);
    for (name, content) in &project.files {
        let content = if name == "Makefile" {
            format!("{content}{BENCH_RULES}")
        } else {
            content.clone()
        };
        std::fs::write(dir.join(name), content).map_err(io(dir))?;
    }
    let input = &graph.tensors[graph.input];
    let bytes = packed_bytes(input.shape.elements() as usize, input.bits);
    let image: Vec<u8> = values(bytes, 0, 255, seed + 2)
        .into_iter()
        .map(|v| v as u8)
        .collect();
    for (name, content) in [
        ("test_input.h", test_input_header(&image)),
        ("main_bench.c", BENCH_MAIN.to_string()),
        ("case.h", format!("#define CASE_ROW \"{row}\"\n")),
    ] {
        std::fs::write(dir.join(name), content).map_err(io(dir))?;
    }
    Ok(())
}

/// Writes one program per case of the grid under `dir/cases/` (PULP path tiled for `pulp`);
/// returns the case folders.
pub(crate) fn write_grid(
    dir: &Path,
    pulp: PulpConfig,
) -> Result<Vec<(Case, PathBuf)>, DeployError> {
    grid()
        .into_iter()
        .enumerate()
        .map(|(i, case)| {
            let case_dir = dir.join("cases").join(format!("{i:03}"));
            write_bench(
                &case_graph(&case, i as u64),
                &case.row(),
                &case_dir,
                i as u64,
                pulp,
            )?;
            Ok((case, case_dir))
        })
        .collect()
}

/// Builds `bench.elf` in `dir` and runs it on QEMU (`-icount shift=0`: `minstret` counts
/// instructions exactly); returns the printed CSV row.
pub fn run_on_qemu(dir: &Path) -> Result<String, DeployError> {
    make(
        dir,
        Some("bench.elf"),
        "the microbenchmark (it needs gcc-riscv64-unknown-elf and picolibc-riscv64-unknown-elf, which scripts/setup.sh installs)",
    )?;
    let printed = run_qemu(&dir.join("bench.elf"), true).ok_or_else(|| {
        DeployError::Build(
            "cannot run qemu-system-riscv32; install Debian's qemu-system-misc (scripts/setup.sh does)"
                .into(),
        )
    })?;
    printed
        .lines()
        .map(str::trim)
        .find(|l| l.split(',').count() == COLUMNS.len())
        .map(str::to_string)
        .ok_or_else(|| {
            DeployError::Build(format!(
                "{}: QEMU printed no measurement: {printed}",
                dir.display()
            ))
        })
}

/// Runs every case folder on QEMU (in parallel), counting them on `progress`, and returns the
/// measurements CSV.
pub(crate) fn run_grid(
    cases: &[(Case, PathBuf)],
    progress: &indicatif::ProgressBar,
) -> Result<String, DeployError> {
    let rows: Vec<String> = cases
        .par_iter()
        .map(|(_, dir)| {
            let row = run_on_qemu(dir);
            progress.inc(1);
            row
        })
        .collect::<Result<_, _>>()?;
    progress.finish_and_clear();
    Ok(format!("{}\n{}\n", COLUMNS.join(","), rows.join("\n")))
}
