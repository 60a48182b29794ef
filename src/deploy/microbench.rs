//! The microbenchmark harness: one small program per kernel variant and shape of a grid, each the
//! generated code of a one-layer network, measured where the platform's cores run it
//! ([`Target`]). For rv32imc a `main` counts the instructions of the layer's kernel (`minstret`)
//! on QEMU, where `-icount` makes the count exact, and prints the CSV row `qsearch calibrate`
//! reads. For XpulpV2 cores the PULP path runs on the CV32E40P RTL in its one-core bare-metal
//! form (`main_rtl.c`): the layer's cycles minus its DMA copies, its output checked against the
//! golden model.

use super::DeployError;
use super::codegen::{generate, test_input_header};
use super::integerize::{IntGraph, IntLayer, IntOp, IntTensor};
use super::pulp::PulpConfig;
use super::verify::{io, make, run_qemu};
use crate::cost::calibrate::COLUMNS;
use crate::graph::{LayerKind, Padding, Shape, Window};
use crate::platform::Platform;
use crate::quant::{Requant, largest_product, multipliers, pack, signed_levels, unsigned_levels};
use crate::rtl::Rtl;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Where a platform's kernels are measured, by the instruction set of its cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// rv32imc: the portable kernels' instructions on QEMU (`-icount`, exact and repeatable).
    Qemu,
    /// XpulpV2: the PULP path's cycles on one CV32E40P (RTL on Verilator, clang-19).
    Rtl,
}

/// L1 of the one-core RTL programs: every layer of the grid, and of a small network, runs from
/// it untiled (the harness's RAM is 4 MiB).
pub const RTL_L1_BYTES: usize = 1 << 20;

/// Cycle limit of one case on the RTL: the grid's largest case takes a few million cycles with
/// the generic kernels; only a program that never ends reaches it (about 20 s of simulation).
const CASE_CYCLE_LIMIT: u64 = 25_000_000;

impl Target {
    /// The target that runs `platform`'s kernels, or why none does.
    pub fn of(platform: &Platform) -> Result<Target, DeployError> {
        match platform.isa.as_str() {
            "rv32imc" => Ok(Target::Qemu),
            "xpulpv2" => Ok(Target::Rtl),
            isa => Err(DeployError::Build(format!(
                "platform {}: no microbenchmark target runs isa '{isa}' (rv32imc runs on QEMU, xpulpv2 on the CV32E40P RTL)",
                platform.name
            ))),
        }
    }

    /// How the programs are tiled: the platform's cluster on QEMU (the portable path ignores
    /// it); on the RTL one core with the layer in L1, whatever the platform's cluster, so that
    /// the rows measure one core's kernel (`cores` = 1) and the cluster stays modelled.
    pub fn pulp_config(self, platform: &Platform) -> PulpConfig {
        match self {
            Target::Qemu => PulpConfig::of(platform),
            Target::Rtl => PulpConfig {
                cores: 1,
                l1_bytes: RTL_L1_BYTES,
            },
        }
    }

    /// What the measurement is, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Target::Qemu => "on QEMU (qemu-system-riscv32 -icount shift=0, minstret)",
            Target::Rtl => {
                "on one CV32E40P (RTL on Verilator, clang-19, PULP path bare-metal: mcycle around the layer minus its DMA copies; outputs equal to the golden model)"
            }
        }
    }
}

/// One written microbenchmark: its CSV row without the measurement, its folder, its network and
/// input image.
#[derive(Clone, Debug)]
pub struct Bench {
    pub row: String,
    pub dir: PathBuf,
    pub graph: IntGraph,
    pub image: Vec<u8>,
}

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
                // Shapes with the leftovers blocked kernels handle apart: output channels not
                // a multiple of 4 (6, 13), odd pixel counts (25), reductions not a multiple
                // of 8 or 16 (20, 36, 92, 100), stride 2 and padding. Every weight row starts on
                // a byte at every width (the reduction times the weight bits is a multiple of 8),
                // as the blocked kernels need; the scalar loops they fall back to otherwise are
                // not what the cost model describes.
                cases.push(conv(LayerKind::Conv, 8, 8, 16, 3, 1, 1, 1, b));
                cases.push(conv(LayerKind::Conv, 16, 7, 6, 3, 1, 0, 1, b));
                cases.push(conv(LayerKind::Conv, 4, 9, 8, 5, 2, 2, 1, b));
                cases.push(conv(LayerKind::Conv, 4, 12, 8, 3, 1, 1, 1, b));
                // Wide inputs, where the multiply-accumulates outweigh the per-tap overhead.
                cases.push(conv(LayerKind::Conv, 32, 5, 8, 3, 1, 1, 1, b));
                cases.push(conv(LayerKind::Pointwise, 20, 5, 12, 1, 1, 0, 1, b));
                cases.push(conv(LayerKind::Depthwise, 16, 8, 16, 3, 1, 1, 16, b));
                cases.push(conv(LayerKind::Linear, 92, 1, 13, 1, 1, 0, 1, b));
                cases.push(conv(LayerKind::Linear, 24, 1, 40, 1, 1, 0, 1, b));
                // Network-sized layers: many output channels per pixel and long reductions, so
                // that the per-MAC, per-output and per-pixel costs are told apart.
                cases.push(conv(LayerKind::Conv, 16, 8, 64, 3, 1, 1, 1, b));
                cases.push(conv(LayerKind::Conv, 32, 6, 32, 3, 1, 1, 1, b));
                cases.push(conv(LayerKind::Pointwise, 64, 4, 64, 1, 1, 0, 1, b));
                cases.push(conv(LayerKind::Linear, 256, 1, 32, 1, 1, 0, 1, b));
            }
        }
    }
    for &x in &bits {
        for &y in &bits {
            let b = (8, x, y);
            cases.push(conv(LayerKind::MaxPool, 16, 8, 16, 2, 2, 0, 1, b));
            cases.push(conv(LayerKind::AvgPool, 16, 9, 16, 3, 3, 0, 1, b));
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
    let tensors = vec![tensor("input", case.input, x), tensor("output", output, y)];
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
        // Both operands read the input: the same loads as two buffers of its precision, and a
        // network the golden model can run.
        LayerKind::Add => {
            inputs.push(0);
            // Each input rescaled by about 1/4, so that their sum spans the output's range.
            let (multiplier, shift) = multipliers(&[0.25], &[i64::from(unsigned_levels(x))], 64);
            let rescale = Requant {
                multiplier,
                shift,
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
    // The multiplier and shift the integerizer would choose (64-bit products), so that the
    // kernel runs the requantization path a deployed network runs. A convolution's or linear
    // layer's scale ratio stays below 1/4 (shifts above 32), as a trained network's do.
    let ratio = f64::from(unsigned_levels(y)) / span;
    let acc_bound = (4.0 * span) as i64 + 1000;
    let (multiplier, shift) = if case.kind == LayerKind::Add {
        (1, 0)
    } else {
        let ratio = if case.kind.has_weights() {
            ratio.min(0.25)
        } else {
            ratio
        };
        let (k, shift) = multipliers(&[ratio], &[acc_bound], 64);
        (k[0], shift)
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
            // The bound the multiplier was chosen for: the 64-bit path, as deployed by default.
            product_bound: largest_product(&[multiplier], shift, &[acc_bound]),
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

/// Writes the project of `graph` with the program counting its kernel instructions into `dir`;
/// `row` is printed first. The project's PULP path is tiled for `pulp`. Returns the benchmark.
pub fn write_bench(
    graph: &IntGraph,
    row: &str,
    dir: &Path,
    seed: u64,
    pulp: PulpConfig,
) -> Result<Bench, DeployError> {
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
    // The input's values over their whole range, one per element (what the golden model reads),
    // and packed at the input's width (what the program reads).
    let input = &graph.tensors[graph.input];
    let levels = values(
        input.shape.elements() as usize,
        0,
        unsigned_levels(input.bits),
        seed + 2,
    );
    let image: Vec<u8> = levels.iter().map(|&v| v as u8).collect();
    for (name, content) in [
        (
            "test_input.h",
            test_input_header(&pack(&levels, input.bits)),
        ),
        ("main_bench.c", BENCH_MAIN.to_string()),
        ("case.h", format!("#define CASE_ROW \"{row}\"\n")),
    ] {
        std::fs::write(dir.join(name), content).map_err(io(dir))?;
    }
    Ok(Bench {
        row: row.to_string(),
        dir: dir.to_path_buf(),
        graph: graph.clone(),
        image,
    })
}

/// Writes one program per case of the grid under `dir/cases/` (PULP path tiled for `pulp`).
pub(crate) fn write_grid(dir: &Path, pulp: PulpConfig) -> Result<Vec<Bench>, DeployError> {
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
            )
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

/// Runs `bench`'s PULP path on one CV32E40P: the layer's cycles without its DMA copies (summed
/// over the layers of a network), its outputs compared with the golden model's.
pub fn run_on_rtl(rtl: &Rtl, bench: &Bench, cycle_limit: u64) -> Result<u64, DeployError> {
    let run = super::rtl::run(
        rtl,
        &bench.graph,
        std::slice::from_ref(&bench.image),
        &bench.dir,
        cycle_limit,
    )?;
    Ok(run.layers.iter().map(|l| l.core[0]).sum())
}

/// Measures every benchmark on `target` (in parallel), counting them on `progress`, and returns
/// the measurements CSV.
pub(crate) fn run_grid(
    benches: &[Bench],
    target: Target,
    progress: &indicatif::ProgressBar,
) -> Result<String, DeployError> {
    let rtl = match target {
        Target::Rtl => Some(Rtl::init()?),
        Target::Qemu => None,
    };
    let rows: Vec<String> = benches
        .par_iter()
        .map(|bench| {
            let row = match &rtl {
                Some(rtl) => run_on_rtl(rtl, bench, CASE_CYCLE_LIMIT)
                    .map(|cycles| format!("{},{cycles}", bench.row)),
                None => run_on_qemu(&bench.dir),
            };
            progress.inc(1);
            row
        })
        .collect::<Result<_, _>>()?;
    progress.finish_and_clear();
    Ok(format!("{}\n{}\n", COLUMNS.join(","), rows.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_isa_chooses_where_its_kernels_are_measured() {
        let target = |name: &str| Target::of(&Platform::load(name).unwrap());
        assert_eq!(target("rv32imc").unwrap(), Target::Qemu);
        for name in ["cv32e40p", "gap8", "gap9", "pulp-open"] {
            assert_eq!(target(name).unwrap(), Target::Rtl, "{name}");
        }
        let xpulpnn = target("xpulpnn").unwrap_err().to_string();
        assert!(xpulpnn.contains("isa 'xpulpnn'"), "{xpulpnn}");
        // On the RTL every platform is measured on one core with its layers in L1.
        let gap8 = Platform::load("gap8").unwrap();
        let one_core = Target::Rtl.pulp_config(&gap8);
        assert_eq!((one_core.cores, one_core.l1_bytes), (1, RTL_L1_BYTES));
    }

    #[test]
    fn every_case_is_a_network_the_golden_model_runs() {
        for (i, case) in grid().iter().enumerate() {
            let graph = case_graph(case, i as u64);
            let input = &graph.tensors[graph.input];
            let image = vec![1u8; input.shape.elements() as usize];
            let buffers = super::super::golden::run(&graph, &image);
            assert_eq!(
                buffers[graph.output].len() as u64,
                graph.tensors[graph.output].shape.elements(),
                "{}",
                case.row()
            );
        }
    }
}
