//! C code generation: a self-contained C99 project computing an [`IntGraph`] exactly as the
//! golden model does. Weights and activations are packed at their bit width (little-endian
//! within a byte, `crate::quant::pack`); activation buffers live at fixed offsets of
//! one arena, placed by a liveness-based first-fit allocator; the kernel library's kernels are
//! instantiated once per distinct (operation, precisions) combination the network uses, on the
//! PULP path the blocked ones where [`pulp::blocked_kernel`] says so (their 32-bit variants where
//! [`pulp::narrow_requant`] does). What
//! does not depend on the network (kernels, drivers, programs, Makefiles) is
//! [`super::library`]'s, written next to the generated `network.h` and `network.c`.

use super::integerize::{IntGraph, IntLayer, IntOp, IntTensor};
use super::library;
use super::pulp::{self, LayerTiling, PulpConfig};
use crate::escape::{c_comment, c_identifier, c_string_literal};
use crate::quant::{Requant, pack, packed_bytes};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Where each activation buffer lives in the arena.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    pub offsets: Vec<usize>,
    pub sizes: Vec<usize>,
    pub total: usize,
}

/// First-fit placement of the buffers by decreasing size, each live from its producer to its
/// last reader (the network input from the start, the output to the end).
pub(crate) fn plan_memory(graph: &IntGraph) -> MemoryPlan {
    let n = graph.tensors.len();
    let sizes: Vec<usize> = graph
        .tensors
        .iter()
        .map(|t| packed_bytes(t.shape.elements() as usize, t.bits))
        .collect();
    let mut start = vec![0usize; n];
    let mut end = vec![0usize; n];
    for (l, layer) in graph.layers.iter().enumerate() {
        start[layer.output] = l;
        end[layer.output] = end[layer.output].max(l);
        for &i in &layer.inputs {
            end[i] = end[i].max(l);
        }
    }
    end[graph.output] = graph.layers.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut offsets = vec![0usize; n];
    let mut placed: Vec<usize> = Vec::new();
    for &t in &order {
        let overlapping = |o: &usize| start[*o] <= end[t] && start[t] <= end[*o];
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|o| overlapping(o))
            .map(|&o| (offsets[o], offsets[o] + sizes[o]))
            .collect();
        busy.sort();
        let mut offset = 0;
        for (lo, hi) in busy {
            if offset + sizes[t] <= lo {
                break;
            }
            offset = offset.max(hi.next_multiple_of(4));
        }
        offsets[t] = offset;
        placed.push(t);
    }
    let total = (0..n).map(|t| offsets[t] + sizes[t]).max().unwrap_or(0);
    MemoryPlan {
        offsets,
        sizes,
        total,
    }
}

/// The files of the generated project.
pub struct Project {
    pub files: Vec<(String, String)>,
    pub plan: MemoryPlan,
    /// How each layer runs on the PULP cluster (`-DQSEARCH_PULP`).
    pub tiling: Vec<(String, LayerTiling)>,
    /// Bytes of constant data: packed weights, biases and requantization parameters.
    pub constant_bytes: usize,
}

/// A kernel's identity: what it computes and at which precisions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KernelKey {
    op: &'static str,
    weight_bits: u32,
    input: (u32, bool),
    other: (u32, bool),
    output: u32,
    wide: bool,
}

impl KernelKey {
    /// The C type of the accumulator.
    fn acc_type(&self) -> &'static str {
        if self.wide { "int64_t" } else { "int32_t" }
    }

    fn name(&self) -> String {
        let t = |(b, s): (u32, bool)| format!("{}{b}", if s { "s" } else { "u" });
        let mut name = format!("{}_", self.op);
        if self.weight_bits > 0 {
            name.push_str(&format!("w{}_", self.weight_bits));
        }
        name.push_str(&t(self.input));
        if self.op == "add" {
            name.push_str(&format!("_{}", t(self.other)));
        }
        name.push_str(&format!("_o{}", self.output));
        if self.wide {
            name.push_str("_acc64");
        }
        name
    }
}

fn key(graph: &IntGraph, layer: &IntLayer) -> KernelKey {
    let t = |i: usize| {
        let t: &IntTensor = &graph.tensors[i];
        (t.bits, t.signed)
    };
    KernelKey {
        op: layer.op.name(),
        weight_bits: match &layer.op {
            IntOp::Conv { weight_bits, .. } | IntOp::Linear { weight_bits, .. } => *weight_bits,
            _ => 0,
        },
        input: t(layer.inputs[0]),
        other: layer.inputs.get(1).map_or((0, false), |&i| t(i)),
        output: graph.tensors[layer.output].bits,
        wide: layer.acc_type() == "int64",
    }
}

/// The definition of the kernel for `k`: its library kernel instantiated at `k`'s precisions
/// (`kernels/kernels.h`), e.g. `QK_CONV(conv_w4_u8_o8, 4, 8, 0, 8, int32_t)` or, a blocked
/// kernel, `QK_CONV_BLOCKED(conv_blocked_w4_u8_o8, 4, 8, 0, 8)`.
fn instantiation(k: &KernelKey) -> String {
    let name = k.name();
    let (ib, is) = (k.input.0, k.input.1 as u8);
    let (ob, acc) = (k.output, k.acc_type());
    let macro_name = format!("QK_{}", k.op.to_uppercase());
    match k.op {
        "conv_blocked" | "depthwise" | "linear_blocked" => {
            format!("{macro_name}({name}, {}, {ib}, {is}, {ob})", k.weight_bits)
        }
        "maxpool_blocked"
        | "avgpool_blocked"
        | "globalmaxpool_blocked"
        | "globalavgpool_blocked" => format!("{macro_name}({name}, {ib}, {is}, {ob})"),
        "conv" | "linear" => {
            format!(
                "{macro_name}({name}, {}, {ib}, {is}, {ob}, {acc})",
                k.weight_bits
            )
        }
        "add" => format!(
            "{macro_name}({name}, {ib}, {is}, {}, {}, {ob})",
            k.other.0, k.other.1 as u8
        ),
        _ => format!("{macro_name}({name}, {ib}, {is}, {ob}, {acc})"),
    }
}

/// Appends `bytes` to `s` as the elements of a C initializer, 20 to a line, each line starting
/// with a newline and `indent`.
pub(super) fn push_byte_rows(s: &mut String, bytes: &[u8], indent: &str) {
    for (i, b) in bytes.iter().enumerate() {
        if i % 20 == 0 {
            s.push('\n');
            s.push_str(indent);
        }
        let _ = write!(s, "{b},");
    }
}

fn bytes_array(name: &str, bytes: &[u8]) -> String {
    let mut s = format!("static const uint8_t {name}[{}] = {{", bytes.len().max(1));
    push_byte_rows(&mut s, bytes, "    ");
    s.push_str("\n};\n");
    s
}

fn int_array(ty: &str, name: &str, values: impl Iterator<Item = i64>) -> String {
    let values: Vec<i64> = values.collect();
    let mut s = format!("static const {ty} {name}[{}] = {{", values.len().max(1));
    for (i, v) in values.iter().enumerate() {
        if i % 10 == 0 {
            s.push_str("\n    ");
        }
        let _ = write!(s, "{v},");
    }
    s.push_str("\n};\n");
    s
}

/// Emits a layer's packed weights, biases and multipliers; returns their bytes.
fn weights_data(
    data: &mut String,
    id: &str,
    weights: &[i8],
    bias: &[i32],
    bits: u32,
    r: &Requant,
) -> usize {
    let packed = pack(
        &weights.iter().map(|&v| i32::from(v)).collect::<Vec<_>>(),
        bits,
    );
    data.push_str(&bytes_array(&format!("{id}_w"), &packed));
    data.push_str(&int_array(
        "int32_t",
        &format!("{id}_b"),
        bias.iter().map(|&b| i64::from(b)),
    ));
    data.push_str(&int_array(
        "int32_t",
        &format!("{id}_k"),
        r.multiplier.iter().copied(),
    ));
    packed.len() + 4 * bias.len() + 4 * r.multiplier.len()
}

fn shape_init(
    graph: &IntGraph,
    layer: &IntLayer,
    window: crate::graph::Window,
    groups: usize,
) -> String {
    let i = graph.tensors[layer.inputs[0]].shape;
    let o = graph.tensors[layer.output].shape;
    format!(
        "{{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}}",
        i.c,
        i.h,
        i.w,
        o.c,
        o.h,
        o.w,
        window.kernel[0],
        window.kernel[1],
        window.stride[0],
        window.stride[1],
        window.padding.top,
        window.padding.left,
        groups
    )
}

/// Generates the project: `network.h`, `network.c` (portable, and the PULP path tiled for
/// `pulp`), and the kernel library and programs of [`library`]: the host test program `main.c`,
/// the bare-metal one `main_target.c`, the PULP one `main_pulp.c`, the CV32E40P one `main_rtl.c`
/// and the Makefiles.
pub fn generate(graph: &IntGraph, pulp: PulpConfig) -> Project {
    let plan = plan_memory(graph);
    let mut code = LayerCode::default();
    for (l, layer) in graph.layers.iter().enumerate() {
        code.add(graph, &plan, pulp, l, layer);
    }
    let mut files = vec![
        ("network.h".to_string(), header(graph, &plan)),
        ("network.c".to_string(), source(graph, &plan, pulp, &code)),
    ];
    files.extend(
        library::KERNELS
            .iter()
            .chain(&library::PROGRAMS)
            .map(|(name, text)| (name.to_string(), text.to_string())),
    );
    Project {
        files,
        plan,
        tiling: code.tiling,
        constant_bytes: code.constant_bytes,
    }
}

/// The per-layer parts of `network.c`, gathered layer after layer.
#[derive(Default)]
struct LayerCode {
    /// The kernels the layers call on the portable path and on the PULP path.
    keys: BTreeSet<KernelKey>,
    pulp_keys: BTreeSet<KernelKey>,
    /// Constants: packed weights, biases, multipliers and shapes.
    data: String,
    /// The portable path's calls.
    calls: String,
    /// The PULP path's constants and calls.
    pulp_data: String,
    pulp_calls: String,
    tiling: Vec<(String, LayerTiling)>,
    /// Bytes of constant data: packed weights, biases and requantization parameters.
    constant_bytes: usize,
}

impl LayerCode {
    /// Adds layer `l`: its constants, its portable call and its PULP path.
    fn add(
        &mut self,
        graph: &IntGraph,
        plan: &MemoryPlan,
        pulp: PulpConfig,
        l: usize,
        layer: &IntLayer,
    ) {
        let k = key(graph, layer);
        let kname = k.name();
        let pulp_key = match pulp::blocked_kernel(graph, layer) {
            Some(blocked) => KernelKey {
                op: blocked.op(),
                ..k.clone()
            },
            None => k.clone(),
        };
        let pulp_kname = pulp_key.name();
        self.keys.insert(k);
        self.pulp_keys.insert(pulp_key);
        let id = format!("l{l}_{}", c_identifier(&layer.name));
        let buf = |t: usize| format!("(arena + {})", plan.offsets[t]);
        let (x, y) = (buf(layer.inputs[0]), buf(layer.output));
        let other = layer.inputs.get(1).map(|&t| buf(t)).unwrap_or_default();
        let layer_tiling = pulp::plan_layer(graph, layer, pulp);
        let (data_p, call_p) = pulp::layer_call(
            graph,
            layer,
            &layer_tiling,
            &pulp_kname,
            &id,
            (&x, &y, &other),
        );
        self.pulp_data.push_str(&data_p);
        self.tiling.push((layer.name.clone(), layer_tiling));
        let bytes = plan.sizes[layer.output];
        let call = self.kernel_call(graph, layer, &kname, &id, (&x, &y, &other));
        let calls = &mut self.calls;
        let _ = writeln!(calls, "    /* {} */", c_comment(&layer.name));
        let _ = writeln!(calls, "    memset({y}, 0, {bytes});");
        let _ = writeln!(calls, "    LAYER_START({l});");
        let _ = writeln!(calls, "    {call}");
        let _ = writeln!(calls, "    LAYER_DONE({l}, {y}, {bytes});");
        let _ = writeln!(
            self.pulp_calls,
            "    memset({y}, 0, {bytes});\n    LAYER_START({l});\n    {call_p}\n    LAYER_DONE({l}, {y}, {bytes});"
        );
    }

    /// The portable path's call of the layer's kernel `kname` on buffers `x`, `y` (and the
    /// residual's `other`); emits the constants it reads, named after `id`.
    fn kernel_call(
        &mut self,
        graph: &IntGraph,
        layer: &IntLayer,
        kname: &str,
        id: &str,
        (x, y, other): (&str, &str, &str),
    ) -> String {
        let r = &layer.requant;
        let data = &mut self.data;
        match &layer.op {
            IntOp::Conv {
                weights,
                bias,
                weight_bits,
                window,
                groups,
            } => {
                self.constant_bytes += weights_data(data, id, weights, bias, *weight_bits, r);
                let shape = shape_init(graph, layer, *window, *groups);
                let _ = writeln!(data, "static const conv_shape {id}_s = {shape};");
                format!(
                    "{kname}({x}, {y}, {id}_w, {id}_b, {id}_k, {}, {}, {}, &{id}_s);",
                    r.shift, r.lo, r.hi
                )
            }
            IntOp::Linear {
                weights,
                bias,
                weight_bits,
            } => {
                self.constant_bytes += weights_data(data, id, weights, bias, *weight_bits, r);
                format!(
                    "{kname}({x}, {y}, {id}_w, {id}_b, {id}_k, {}, {}, {}, {}, {});",
                    r.shift,
                    r.lo,
                    r.hi,
                    graph.tensors[layer.inputs[0]].shape.elements(),
                    graph.tensors[layer.output].shape.elements()
                )
            }
            IntOp::MaxPool { window } | IntOp::AvgPool { window } => {
                let shape = shape_init(graph, layer, *window, 1);
                let _ = writeln!(data, "static const conv_shape {id}_s = {shape};");
                format!(
                    "{kname}({x}, {y}, {}, {}, {}, {}, &{id}_s);",
                    r.multiplier[0], r.shift, r.lo, r.hi
                )
            }
            IntOp::GlobalAvgPool | IntOp::GlobalMaxPool => {
                let s = graph.tensors[layer.inputs[0]].shape;
                format!(
                    "{kname}({x}, {y}, {}, {}, {}, {}, {}, {});",
                    r.multiplier[0],
                    r.shift,
                    r.lo,
                    r.hi,
                    s.h * s.w,
                    s.c
                )
            }
            IntOp::Add { rescale: [ra, rb] } => format!(
                "{kname}({x}, {other}, {y}, {}, {}, {}, {}, {}, {}, {});",
                ra.multiplier[0],
                ra.shift,
                rb.multiplier[0],
                rb.shift,
                r.lo,
                r.hi,
                graph.tensors[layer.output].shape.elements()
            ),
        }
    }
}

/// `network.h`: the network's sizes and `network_run`.
fn header(graph: &IntGraph, plan: &MemoryPlan) -> String {
    let input = &graph.tensors[graph.input];
    let output = &graph.tensors[graph.output];
    format!(
        r#"/* {name}: integer network generated by qsearch deploy (see docs/integer-semantics.md). */
#ifndef NETWORK_H
#define NETWORK_H
#include <stdint.h>

#define NETWORK_INPUT_BYTES {in_bytes}   /* packed input, HWC {ic}x{ih}x{iw} (C x H x W) */
#define NETWORK_OUTPUT_VALUES {out_values}
#define NETWORK_OUTPUT_BITS {out_bits}
#define NETWORK_OUTPUT_SIGNED {out_signed}
#define NETWORK_OUTPUT_BYTES {out_bytes}
#define NETWORK_LAYERS {layers}
#define NETWORK_ARENA_BYTES {arena}

/* Called with -1 - l before layer l computes, and with l and its packed output after. */
typedef void (*network_trace_fn)(int layer, const uint8_t *output, uint32_t bytes);

extern const char *const network_layer_names[NETWORK_LAYERS];
extern const uint32_t network_layer_bytes[NETWORK_LAYERS];

/* Runs the network on one image; writes the packed output buffer. */
void network_run(const uint8_t *input, uint8_t *output, network_trace_fn trace);

#endif
"#,
        name = c_comment(&graph.name),
        in_bytes = plan.sizes[graph.input],
        ic = input.shape.c,
        ih = input.shape.h,
        iw = input.shape.w,
        out_values = output.shape.elements(),
        out_bits = output.bits,
        out_signed = output.signed as u8,
        out_bytes = plan.sizes[graph.output],
        layers = graph.layers.len(),
        arena = plan.total,
    )
}

/// `network.c`: the arena, the runtime, the kernels, the constants and `network_run` with its
/// portable and PULP paths.
fn source(graph: &IntGraph, plan: &MemoryPlan, pulp: PulpConfig, code: &LayerCode) -> String {
    let names: Vec<String> = graph
        .layers
        .iter()
        .map(|l| c_string_literal(&l.name))
        .collect();
    let sizes: Vec<String> = graph
        .layers
        .iter()
        .map(|l| plan.sizes[l.output].to_string())
        .collect();
    let mut source = format!(
        r#"/* {name}: integer network generated by qsearch deploy (see docs/integer-semantics.md).
   Activation buffers: one arena of {arena} bytes, offsets from a liveness-based allocator. The
   kernels and the PULP path's drivers are the kernel library's (kernels.h, pulp_layers.h). */
#include "network.h"
#ifdef QSEARCH_PULP
#ifndef NUM_CORES
#define NUM_CORES {cores}
#endif
#if NUM_CORES > {cores}
#error "the L1 plan reserves scratch areas for {cores} cores"
#endif
#include "pulp_target.h"
#else
#include <string.h>
#endif
#include "kernels.h"

static uint8_t arena[{arena_alloc}];

const char *const network_layer_names[NETWORK_LAYERS] = {{{names}}};
const uint32_t network_layer_bytes[NETWORK_LAYERS] = {{{sizes}}};

#define LAYER_START(l) do {{ if (trace) trace(-1 - (l), 0, 0); }} while (0)
#define LAYER_DONE(l, buffer, bytes) do {{ if (trace) trace((l), (buffer), (bytes)); }} while (0)

/* The kernels the layers call: on the PULP path, the blocked ones for the layers that
   accumulate in int32. */
"#,
        name = c_comment(&graph.name),
        arena = plan.total,
        cores = pulp.cores,
        arena_alloc = plan.total.max(1),
        names = names.join(", "),
        sizes = sizes.join(", "),
    );
    source.push_str("#ifdef QSEARCH_PULP\n");
    for k in &code.pulp_keys {
        let _ = writeln!(source, "{}", instantiation(k));
    }
    source.push_str("#else\n");
    for k in &code.keys {
        let _ = writeln!(source, "{}", instantiation(k));
    }
    source.push_str("#endif\n\n");
    source.push_str(&code.data);
    let _ = write!(
        source,
        r#"
#ifdef QSEARCH_PULP
#define L1_BYTES {l1}
#include "pulp_layers.h"
{scratch_l2}
{pulp_data}#endif

void network_run(const uint8_t *input, uint8_t *output, network_trace_fn trace)
{{
    memcpy(arena + {in_off}, input, NETWORK_INPUT_BYTES);
#ifdef QSEARCH_PULP
{pulp_calls}#else
{calls}#endif
    memcpy(output, arena + {out_off}, NETWORK_OUTPUT_BYTES);
}}
"#,
        l1 = pulp.l1_bytes.max(4),
        scratch_l2 = match pulp::scratch_l2_bytes(code.tiling.iter().map(|(_, t)| t), pulp.cores) {
            0 => String::new(),
            bytes => format!(
                "/* The cores' scratch areas of the untiled layers whose areas L1 cannot hold. */\nstatic uint8_t {}[{bytes}] __attribute__((aligned(4)));\n",
                pulp::SCRATCH_L2
            ),
        },
        pulp_data = code.pulp_data,
        pulp_calls = code.pulp_calls,
        calls = code.calls,
        in_off = plan.offsets[graph.input],
        out_off = plan.offsets[graph.output],
    );
    source
}

/// `test_input.h`: one image for the bare-metal test program.
pub fn test_input_header(image: &[u8]) -> String {
    let mut s = String::from(
        "/* The test image of main_target.c (bytes, HWC). */\n\
         static const uint8_t test_input[NETWORK_INPUT_BYTES] = {",
    );
    push_byte_rows(&mut s, image, "    ");
    s.push_str("\n};\n");
    s
}
