//! The blocked kernels of `kernels/` on the cycle-accurate CV32E40P: PULP-NN's benchmark layer (3x3
//! convolution, 32 -> 64 channels, 16x16 output, stride 1, padding 1; im2col and requantization
//! included; one core, zero-wait memory) in MAC/cycle at 8-bit weights and activations (target:
//! at least 1.9) with qsearch's default 64-bit requantization and with the 32-bit one of
//! `qsearch deploy --requant-bits 32` (PULP-NN's), at 4- and 2-bit weights and at 4-bit
//! activations, each next to what PULP-NN's or
//! pulp-nn-mixed's structure gets (`/work/shared/reference/pulp_published_figures.csv`), and
//! next to the same layer through the scalar loops of the generic kernels for the speed-up; then
//! a pointwise, a depthwise and a linear layer; then 2x2 stride-2 poolings (64 channels, 32x32 ->
//! 16x16: max at 8 and 4 bits, average at 8) in cycles per output. Every output is checked byte
//! for byte against the scalar loop in the same run. The simulation is deterministic (same ELF, same cycles), so
//! each layer runs once. Writes `results/bench/rtl.json`.
//!
//! Run: `cargo bench --bench rtl`

use qsearch::rtl::{Rtl, RtlError, SimConfig};
use serde_json::json;
use std::path::{Path, PathBuf};

/// PULP-NN's 8-bit 3x3 convolution: 15.5 MAC/cycle on GAP8's 8 cores, 1.94 per core.
const PULP_NN_8BIT: f64 = 15.5 / 8.0;
/// pulp-nn-mixed's XpulpV2 matmul with 4-bit weights unpacks them in software: 88 instructions
/// per 64 MAC against PULP-NN's 14 per 32, about 3x slower than 8 bit.
const PULP_NN_MIXED_I4: f64 = PULP_NN_8BIT / 3.0;

#[derive(Clone, Copy)]
enum Geometry {
    /// A `conv_shape` in field order, windowed kernels (conv and depthwise).
    Window([i32; 13]),
    /// Inputs and outputs of a linear layer.
    Linear(i32, i32),
}

#[derive(Clone, Copy)]
struct Layer {
    name: &'static str,
    kind: &'static str,
    weight_bits: u32,
    input_bits: u32,
    input_signed: bool,
    output_bits: u32,
    geometry: Geometry,
    /// Requantizes in 32 bits: the kernel's `_narrow` variant, multipliers that keep every
    /// product below 2^31.
    narrow: bool,
    /// What PULP-NN's or pulp-nn-mixed's structure gets on one core, and where that comes from.
    expectation: Option<(f64, &'static str)>,
}

/// in_c, in_h, in_w, out_c, out_h, out_w, kernel_h, kernel_w, stride_h, stride_w, pad_top,
/// pad_left, groups
const PULP_NN_LAYER: [i32; 13] = [32, 16, 16, 64, 16, 16, 3, 3, 1, 1, 1, 1, 1];

fn layers() -> Vec<Layer> {
    let conv = |name, weight_bits, input_bits, output_bits, expectation| Layer {
        name,
        kind: "conv",
        weight_bits,
        input_bits,
        input_signed: false,
        output_bits,
        geometry: Geometry::Window(PULP_NN_LAYER),
        narrow: false,
        expectation: Some(expectation),
    };
    let other = |name, kind, geometry| Layer {
        name,
        kind,
        weight_bits: 8,
        input_bits: 8,
        input_signed: false,
        output_bits: 8,
        geometry,
        narrow: false,
        expectation: None,
    };
    let pulp_nn = (
        PULP_NN_8BIT,
        "PULP-NN: 15.5 MAC/cycle on 8 GAP8 cores (Garofalo et al. 2020), per core",
    );
    vec![
        conv("conv3x3 w8 a8", 8, 8, 8, pulp_nn),
        Layer {
            narrow: true,
            ..conv("conv3x3 w8 a8, 32-bit requant", 8, 8, 8, pulp_nn)
        },
        conv(
            "conv3x3 w4 a8",
            4,
            8,
            8,
            (
                PULP_NN_MIXED_I4,
                "pulp-nn-mixed XpulpV2 u8 x i4 matmul: weights unpacked in software, ~3x below 8 bit",
            ),
        ),
        conv(
            "conv3x3 w2 a8",
            2,
            8,
            8,
            (
                PULP_NN_MIXED_I4,
                "pulp-nn-mixed's software unpacking as for i4 (no published i2 figure): at best ~3x below 8 bit",
            ),
        ),
        conv(
            "conv3x3 w8 a4",
            8,
            4,
            4,
            (
                PULP_NN_8BIT,
                "pulp-nn-mixed unpacks 4-bit inputs to 8 bit in im2col, then PULP-NN's 8-bit matmul",
            ),
        ),
        other(
            "pointwise 64->64 16x16 w8 a8",
            "conv",
            Geometry::Window([64, 16, 16, 64, 16, 16, 1, 1, 1, 1, 0, 0, 1]),
        ),
        other(
            "depthwise 3x3 64ch 16x16 w8 a8",
            "depthwise",
            Geometry::Window([64, 16, 16, 64, 16, 16, 3, 3, 1, 1, 1, 1, 64]),
        ),
        other(
            "linear 1024->64 w8 a8",
            "linear",
            Geometry::Linear(1024, 64),
        ),
        pool("maxpool 2x2/2 64ch 32x32 a8", "maxpool", 8),
        pool("maxpool 2x2/2 64ch 32x32 a4", "maxpool", 4),
        pool("avgpool 2x2/2 64ch 32x32 a8", "avgpool", 8),
    ]
}

/// A 2x2 stride-2 pooling of 64 channels, 32x32 -> 16x16, at `bits` in and out.
fn pool(name: &'static str, kind: &'static str, bits: u32) -> Layer {
    Layer {
        name,
        kind,
        weight_bits: 0,
        input_bits: bits,
        input_signed: false,
        output_bits: bits,
        geometry: Geometry::Window([64, 32, 32, 64, 16, 16, 2, 2, 2, 2, 0, 0, 1]),
        narrow: false,
        expectation: None,
    }
}

impl Layer {
    fn is_pooling(&self) -> bool {
        self.kind.ends_with("pool")
    }

    fn outputs(&self) -> u64 {
        match self.geometry {
            Geometry::Window(s) => (s[3] * s[4] * s[5]) as u64,
            Geometry::Linear(_, n_out) => n_out as u64,
        }
    }

    fn macs(&self) -> u64 {
        match self.geometry {
            Geometry::Window(s) => {
                let taps = s[6] * s[7] * (s[0] / s[12]);
                (s[3] * s[4] * s[5] * taps) as u64
            }
            Geometry::Linear(n_in, n_out) => (n_in * n_out) as u64,
        }
    }

    /// The largest |accumulator| of `benches/rtl/layer.c`'s operands: K products of the largest
    /// input and weight magnitudes, plus the largest |bias| (2048).
    fn acc_bound(&self) -> i64 {
        let input = if self.input_signed {
            1 << (self.input_bits - 1)
        } else {
            (1 << self.input_bits) - 1
        };
        i64::from(self.k()) * input * (1 << (self.weight_bits - 1)) + 2048
    }

    /// Values each output sums (K).
    fn k(&self) -> i32 {
        match self.geometry {
            Geometry::Window(s) => s[6] * s[7] * (s[0] / s[12]),
            Geometry::Linear(n_in, _) => n_in,
        }
    }

    /// The C that instantiates `benches/rtl/layer.c` for this layer: unsigned outputs, a
    /// multiplier that maps a typical accumulator (sqrt(K) times a typical product) onto them at
    /// shift 40 (plus 24 random bits); a pooling's as the integerizer chooses it for a pooling
    /// that keeps the scale (about 2^31 at shift 31, the average's division by 4 at shift 33).
    /// In 32 bits, as the integerizer chooses at `--requant-bits 32`: the largest shift whose
    /// multipliers (plus a quarter at most) keep every product of the layer's operands
    /// (`acc_bound`) below 2^31.
    fn program(&self) -> String {
        let ratio = || {
            let typical = f64::from(self.k()).sqrt()
                * 2f64.powi(self.input_bits as i32 - 1)
                * 2f64.powi(self.weight_bits as i32 - 2);
            2f64.powi(self.output_bits as i32) / typical
        };
        let (k_base, spread, shift) = match self.kind {
            "maxpool" => (0x7f00_0000, 24, 31),
            "avgpool" => (0x7f00_0000, 24, 33),
            _ if self.narrow => (1..=31)
                .rev()
                .map(|shift| {
                    let k = (ratio() * 2f64.powi(shift)) as i64;
                    let spread = k.max(4).ilog2() - 2;
                    (k, spread, shift)
                })
                .find(|&(k, spread, shift)| {
                    let largest = i128::from(k + (1 << spread) - 1) * i128::from(self.acc_bound())
                        + (1i128 << (shift - 1));
                    largest < 1 << 31
                })
                .expect("a shift whose products fit int32"),
            _ => {
                let k = ratio() * 2f64.powi(40);
                (k.min(2f64.powi(30)) as i64, 24, 40)
            }
        };
        let geometry = match self.geometry {
            Geometry::Window(s) => format!(
                "#define SHAPE {{{}}}\n",
                s.map(|v| v.to_string()).join(", ")
            ),
            Geometry::Linear(n_in, n_out) => {
                format!("#define N_IN {n_in}\n#define N_OUT {n_out}\n")
            }
        };
        let kind = match self.kind {
            "depthwise" => "DEPTHWISE",
            "linear" => "LINEAR",
            "maxpool" => "MAXPOOL",
            "avgpool" => "AVGPOOL",
            _ => "CONV",
        };
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/rtl/layer.c");
        format!(
            "#define WB {}\n#define IB {}\n#define IS {}\n#define OB {}\n#define KIND {kind}\n\
             #define LO 0\n#define HI {}\n#define SHIFT {shift}\n#define K_BASE {k_base}\n\
             #define K_SPREAD {spread}\n{}{geometry}#include \"{}\"\n",
            self.weight_bits,
            self.input_bits,
            u8::from(self.input_signed),
            self.output_bits,
            (1 << self.output_bits) - 1,
            if self.narrow { "#define NARROW\n" } else { "" },
            source.display()
        )
    }
}

/// Cycles of the blocked kernel and of the scalar loop, outputs identical.
struct Measured {
    blocked: u64,
    reference: u64,
}

fn measure(rtl: &Rtl, dir: &Path, index: usize, layer: &Layer) -> Measured {
    let source = dir.join(format!("layer{index}.c"));
    let elf = dir.join(format!("layer{index}.elf"));
    std::fs::write(&source, layer.program()).expect("write the layer's program");
    rtl.compile(&[&source], &elf)
        .unwrap_or_else(|e| panic!("{}: {e}", layer.name));
    let config = SimConfig {
        max_cycles: 400_000_000,
        ..SimConfig::default()
    };
    let out = rtl
        .run(&elf, &config)
        .unwrap_or_else(|e| panic!("{}: {e}", layer.name));
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let field = |name: &str| -> u64 {
        let at = words.iter().position(|w| *w == name);
        at.and_then(|i| words.get(i + 1)?.parse().ok())
            .unwrap_or_else(|| panic!("{}: no '{name}' in {:?}", layer.name, out.stdout))
    };
    assert_eq!(
        (out.exit_code, field("mismatches")),
        (0, 0),
        "{}: the blocked kernel's outputs differ from the scalar loop's: {}",
        layer.name,
        out.stdout
    );
    Measured {
        blocked: field("blocked"),
        reference: field("reference"),
    }
}

/// Prints a pooling's cycles per output and speed-up; its JSON row.
fn pooling_row(layer: &Layer, m: &Measured) -> serde_json::Value {
    let outputs = layer.outputs();
    let per_output = m.blocked as f64 / outputs as f64;
    let scalar_per_output = m.reference as f64 / outputs as f64;
    let speedup = m.reference as f64 / m.blocked as f64;
    println!(
        "{:<32} {outputs:>10} out {:>10} cycles {per_output:>5.2} cycles/output; scalar {:>11} \
         cycles {scalar_per_output:.1} cycles/output, speed-up {speedup:.1}x",
        layer.name, m.blocked, m.reference
    );
    let Geometry::Window(s) = layer.geometry else {
        unreachable!("a pooling is windowed")
    };
    json!({
        "layer": layer.name,
        "kind": layer.kind,
        "input_bits": layer.input_bits,
        "input_signed": layer.input_signed,
        "output_bits": layer.output_bits,
        "shape": {
            "in_c": s[0], "in_h": s[1], "in_w": s[2], "out_c": s[3], "out_h": s[4],
            "out_w": s[5], "kernel_h": s[6], "kernel_w": s[7], "stride_h": s[8],
            "stride_w": s[9], "pad_top": s[10], "pad_left": s[11],
        },
        "outputs": outputs,
        "cycles": m.blocked,
        "cycles_per_output": per_output,
        "scalar_cycles": m.reference,
        "scalar_cycles_per_output": scalar_per_output,
        "speedup_vs_scalar": speedup,
        "bit_exact": true,
    })
}

fn main() {
    let rtl = match Rtl::init() {
        Ok(rtl) => rtl,
        Err(RtlError::ToolMissing { tool, install }) => {
            println!("skipped: {tool} not found; {install}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let dir = std::env::temp_dir().join(format!("qsearch-bench-rtl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp folder");
    let layers = layers();
    // Two simulations at a time: the machines this runs on have two cores.
    let mut measured: Vec<Measured> = Vec::new();
    for (chunk_index, chunk) in layers.chunks(2).enumerate() {
        let results: Vec<Measured> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, layer)| {
                    let (rtl, dir) = (&rtl, &dir);
                    scope.spawn(move || measure(rtl, dir, chunk_index * 2 + i, layer))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        measured.extend(results);
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "CV32E40P RTL (Verilator), one core, zero-wait memory; deterministic, one run per layer; \
         outputs bit-exact against the scalar loop"
    );
    let mut rows = Vec::new();
    for (layer, m) in layers.iter().zip(&measured) {
        if layer.is_pooling() {
            rows.push(pooling_row(layer, m));
            continue;
        }
        let macs = layer.macs();
        let rate = macs as f64 / m.blocked as f64;
        let scalar_rate = macs as f64 / m.reference as f64;
        let expected = layer
            .expectation
            .map(|(v, _)| format!("; PULP-NN structure {v:.2}"))
            .unwrap_or_default();
        println!(
            "{:<32} {:>10} MAC {:>10} cycles {:>5.2} MAC/cycle{expected}; scalar {:>11} cycles \
             {:.3} MAC/cycle, speed-up {:.1}x",
            layer.name,
            macs,
            m.blocked,
            rate,
            m.reference,
            scalar_rate,
            m.reference as f64 / m.blocked as f64
        );
        let shape = match layer.geometry {
            Geometry::Window(s) => json!({
                "in_c": s[0], "in_h": s[1], "in_w": s[2], "out_c": s[3], "out_h": s[4],
                "out_w": s[5], "kernel_h": s[6], "kernel_w": s[7], "stride_h": s[8],
                "stride_w": s[9], "pad_top": s[10], "pad_left": s[11], "groups": s[12],
            }),
            Geometry::Linear(n_in, n_out) => json!({"n_in": n_in, "n_out": n_out}),
        };
        rows.push(json!({
            "layer": layer.name,
            "kind": layer.kind,
            "weight_bits": layer.weight_bits,
            "input_bits": layer.input_bits,
            "input_signed": layer.input_signed,
            "output_bits": layer.output_bits,
            "requantization_bits": if layer.narrow { 32 } else { 64 },
            "shape": shape,
            "macs": macs,
            "cycles": m.blocked,
            "mac_per_cycle": rate,
            "scalar_cycles": m.reference,
            "scalar_mac_per_cycle": scalar_rate,
            "speedup_vs_scalar": m.reference as f64 / m.blocked as f64,
            "expectation_mac_per_cycle": layer.expectation.map(|(v, _)| v),
            "expectation_source": layer.expectation.map(|(_, s)| s),
            "bit_exact": true,
        }));
    }
    // The first two layers: PULP-NN's, requantized in 64 bits (qsearch's default semantics) and
    // in 32 (`--requant-bits 32`, as PULP-NN does).
    let rate = layers[0].macs() as f64 / measured[0].blocked as f64;
    let rate32 = layers[1].macs() as f64 / measured[1].blocked as f64;
    let verdict = |r: f64| if r >= 1.9 { "met" } else { "not met" };
    println!(
        "target: 8-bit PULP-NN layer >= 1.9 MAC/cycle on one core: {rate:.2} with 64-bit \
         requantization, qsearch's default ({}); {rate32:.2} with 32-bit requantization \
         (--requant-bits 32, PULP-NN's) ({})",
        verdict(rate),
        verdict(rate32)
    );
    let results = json!({
        "command": "cargo bench --bench rtl",
        "core": "CV32E40P v2 RTL (pythondata-cpu-cv32e40p), Verilator, one core, zero-wait memory",
        "compiler": "clang-19 -O2, rv32imc_zicsr_xcvsimd_xcvalu_xcvmac_xcvmem_xcvbitmanip_xcvbi",
        "deterministic": true,
        "runs_per_layer": 1,
        "requantization_shift": 40,
        "pooling_requantization_shift": {"maxpool": 31, "avgpool": 33},
        "target": {
            "layer": layers[0].name,
            "at_least": 1.9,
            "mac_per_cycle": rate,
            "met": rate >= 1.9,
            "requant_32_layer": layers[1].name,
            "requant_32_mac_per_cycle": rate32,
            "requant_32_met": rate32 >= 1.9,
        },
        "layers": rows,
    });
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/bench/rtl.json");
    std::fs::create_dir_all(path.parent().unwrap()).expect("results/bench");
    qsearch::results::write_json(&path, &results).expect("write results/bench/rtl.json");
    println!("wrote results/bench/rtl.json");
}
