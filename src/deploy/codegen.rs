//! C code generation: a self-contained C99 project computing an [`IntGraph`] exactly as the
//! golden model does. Weights and activations are packed at their bit width (little-endian
//! within a byte, `crate::quant::pack`); activation buffers live at fixed offsets of
//! one arena, placed by a liveness-based first-fit allocator; one kernel is emitted per distinct
//! (operation, precisions) combination the network uses.

use super::integerize::{IntGraph, IntLayer, IntOp, IntTensor};
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

const RUNTIME: &str = r#"
/* Packed integer fields: value i of a buffer at B bits sits in byte i / (8 / B), from bit
   (i % (8 / B)) * B; signed fields are two's complement. */
static inline int32_t ld(const uint8_t *p, int32_t i, int bits, int is_signed)
{
    int32_t v;
    if (bits == 8) {
        return is_signed ? (int32_t)(int8_t)p[i] : (int32_t)p[i];
    }
    v = (p[i / (8 / bits)] >> ((i % (8 / bits)) * bits)) & ((1 << bits) - 1);
    if (is_signed && (v & (1 << (bits - 1)))) {
        v -= 1 << bits;
    }
    return v;
}

static inline void st(uint8_t *p, int32_t i, int bits, int32_t v)
{
    uint8_t mask;
    int shift;
    if (bits == 8) {
        p[i] = (uint8_t)v;
        return;
    }
    shift = (i % (8 / bits)) * bits;
    mask = (uint8_t)(((1 << bits) - 1) << shift);
    p[i / (8 / bits)] = (uint8_t)((p[i / (8 / bits)] & ~mask) | (((uint32_t)v << shift) & mask));
}

/* floor(v / 2^shift), portable for negative v (C leaves >> of negatives to the compiler). */
static inline int64_t floor_shift(int64_t v, int shift)
{
    return v >= 0 ? v >> shift : -((-v - 1) >> shift) - 1;
}

/* The requantization of docs/integer-semantics.md: clamp((k * acc + 2^(shift-1)) >> shift). */
static inline int32_t requant(int64_t acc, int32_t k, int shift, int32_t lo, int32_t hi)
{
    int64_t half = shift > 0 ? (int64_t)1 << (shift - 1) : 0;
    int64_t y = floor_shift((int64_t)k * acc + half, shift);
    return y < lo ? lo : (y > hi ? hi : (int32_t)y);
}
"#;

/// The initial value and the step of a pooling kernel's reduction over its window.
fn reduction(op: &str) -> (&'static str, &'static str) {
    if op.ends_with("maxpool") {
        ("INT32_MIN", "if (v > acc) acc = v;")
    } else {
        ("0", "acc += v;")
    }
}

/// The dot product of `n` packed weights and inputs a conv or linear kernel for `k` accumulates:
/// scalar, or on the PULP path four lanes per XpulpV2 `sdotp` (their sum fits int32 even where
/// the accumulator is int64).
fn dot(k: &KernelKey) -> String {
    let acc = k.acc_type();
    let (ib, is) = (k.input.0, k.input.1 as u8);
    let wb = k.weight_bits;
    let name = k.name();
    let lanes = if k.input.1 {
        format!("sdotsp4(lanes_s(x, xi + i, {ib}), lanes_s(w, wi + i, {wb})")
    } else {
        format!("sdotusp4(lanes_u(x, xi + i, {ib}), lanes_s(w, wi + i, {wb})")
    };
    let step = if k.wide {
        format!("acc += {lanes}, 0);")
    } else {
        format!("acc = {lanes}, acc);")
    };
    format!(
        r#"
static inline {acc} {name}_dot(const uint8_t *w, int32_t wi, const uint8_t *x, int32_t xi,
    int32_t n, {acc} acc)
{{
    int32_t i = 0;
#ifdef QSEARCH_PULP
    for (; i + 4 <= n; i += 4) {{
        {step}
    }}
#endif
    for (; i < n; i++) {{
        acc += ({acc})ld(w, wi + i, {wb}, 1) * ld(x, xi + i, {ib}, {is});
    }}
    return acc;
}}
"#
    )
}

/// The C kernel for `k`.
fn kernel(k: &KernelKey) -> String {
    match k.op {
        "conv" => conv_kernel(k),
        "linear" => linear_kernel(k),
        "maxpool" | "avgpool" => pool_kernel(k),
        "globalavgpool" | "globalmaxpool" => global_pool_kernel(k),
        _ => add_kernel(k),
    }
}

/// A convolution (grouped, depthwise or not) over HWC buffers: per output pixel and channel, the
/// dot products of the taps inside the input, then the requantization.
fn conv_kernel(k: &KernelKey) -> String {
    let acc = k.acc_type();
    let ob = k.output;
    let name = k.name();
    format!(
        r#"{dot}
KERNEL void {name}(const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias,
    const int32_t *k, int shift, int32_t lo, int32_t hi, const conv_shape *s)
{{
    int oy, ox, oc, ky, kx;
    int cin_g = s->in_c / s->groups, cout_g = s->out_c / s->groups;
    for (oy = 0; oy < s->out_h; oy++) {{
        for (ox = 0; ox < s->out_w; ox++) {{
            for (oc = 0; oc < s->out_c; oc++) {{
                int g = oc / cout_g;
                {acc} acc = bias[oc];
                for (ky = 0; ky < s->kernel_h; ky++) {{
                    int iy = oy * s->stride_h + ky - s->pad_top;
                    if (iy < 0 || iy >= s->in_h) continue;
                    for (kx = 0; kx < s->kernel_w; kx++) {{
                        int ix = ox * s->stride_w + kx - s->pad_left;
                        int32_t wbase = ((oc * s->kernel_h + ky) * s->kernel_w + kx) * cin_g;
                        int32_t xbase = (iy * s->in_w + ix) * s->in_c + g * cin_g;
                        if (ix < 0 || ix >= s->in_w) continue;
                        acc = {name}_dot(w, wbase, x, xbase, cin_g, acc);
                    }}
                }}
                st(y, (oy * s->out_w + ox) * s->out_c + oc, {ob}, requant(acc, k[oc], shift, lo, hi));
            }}
        }}
    }}
}}
"#,
        dot = dot(k)
    )
}

/// A linear layer: one dot product per output, then the requantization.
fn linear_kernel(k: &KernelKey) -> String {
    let acc = k.acc_type();
    let ob = k.output;
    let name = k.name();
    format!(
        r#"{dot}
KERNEL void {name}(const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias,
    const int32_t *k, int shift, int32_t lo, int32_t hi, int32_t n_in, int32_t n_out)
{{
    int32_t o;
    for (o = 0; o < n_out; o++) {{
        {acc} acc = {name}_dot(w, o * n_in, x, 0, n_in, bias[o]);
        st(y, o, {ob}, requant(acc, k[o], shift, lo, hi));
    }}
}}
"#,
        dot = dot(k)
    )
}

/// A max or average pooling: the reduction of the taps inside the input, then the
/// requantization.
fn pool_kernel(k: &KernelKey) -> String {
    let acc = k.acc_type();
    let (ib, is) = (k.input.0, k.input.1 as u8);
    let ob = k.output;
    let name = k.name();
    let (init, step) = reduction(k.op);
    format!(
        r#"
KERNEL void {name}(const uint8_t *x, uint8_t *y, int32_t k, int shift, int32_t lo, int32_t hi,
    const conv_shape *s)
{{
    int oy, ox, c, ky, kx;
    for (oy = 0; oy < s->out_h; oy++) {{
        for (ox = 0; ox < s->out_w; ox++) {{
            for (c = 0; c < s->out_c; c++) {{
                {acc} acc = {init};
                for (ky = 0; ky < s->kernel_h; ky++) {{
                    int iy = oy * s->stride_h + ky - s->pad_top;
                    if (iy < 0 || iy >= s->in_h) continue;
                    for (kx = 0; kx < s->kernel_w; kx++) {{
                        int ix = ox * s->stride_w + kx - s->pad_left;
                        {acc} v;
                        if (ix < 0 || ix >= s->in_w) continue;
                        v = ld(x, (iy * s->in_w + ix) * s->in_c + c, {ib}, {is});
                        {step}
                    }}
                }}
                st(y, (oy * s->out_w + ox) * s->out_c + c, {ob}, requant(acc, k, shift, lo, hi));
            }}
        }}
    }}
}}
"#
    )
}

/// A global max or average pooling: the reduction of every pixel, per channel.
fn global_pool_kernel(k: &KernelKey) -> String {
    let acc = k.acc_type();
    let (ib, is) = (k.input.0, k.input.1 as u8);
    let ob = k.output;
    let name = k.name();
    let (init, step) = reduction(k.op);
    format!(
        r#"
KERNEL void {name}(const uint8_t *x, uint8_t *y, int32_t k, int shift, int32_t lo, int32_t hi,
    int32_t pixels, int32_t channels)
{{
    int32_t p, c;
    for (c = 0; c < channels; c++) {{
        {acc} acc = {init};
        for (p = 0; p < pixels; p++) {{
            {acc} v = ld(x, p * channels + c, {ib}, {is});
            {step}
        }}
        st(y, c, {ob}, requant(acc, k, shift, lo, hi));
    }}
}}
"#
    )
}

/// A residual add: each input rescaled and clamped, then the sum clamped.
fn add_kernel(k: &KernelKey) -> String {
    let (ib, is) = (k.input.0, k.input.1 as u8);
    let ob = k.output;
    let name = k.name();
    let (bb, bs) = (k.other.0, k.other.1 as u8);
    format!(
        r#"
KERNEL void {name}(const uint8_t *a, const uint8_t *b, uint8_t *y, int32_t ka, int sa,
    int32_t kb, int sb, int32_t lo, int32_t hi, int32_t n)
{{
    int32_t i;
    for (i = 0; i < n; i++) {{
        int64_t sum = (int64_t)requant(ld(a, i, {ib}, {is}), ka, sa, lo, hi)
            + requant(ld(b, i, {bb}, {bs}), kb, sb, lo, hi);
        st(y, i, {ob}, requant(sum, 1, 0, lo, hi));
    }}
}}
"#
    )
}

fn bytes_array(name: &str, bytes: &[u8]) -> String {
    let mut s = format!("static const uint8_t {name}[{}] = {{", bytes.len().max(1));
    for (i, b) in bytes.iter().enumerate() {
        if i % 20 == 0 {
            s.push_str("\n    ");
        }
        let _ = write!(s, "{b},");
    }
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
/// `pulp`), the host test program `main.c`, the bare-metal one `main_target.c`, the PULP one
/// `main_pulp.c`, and the Makefiles.
pub fn generate(graph: &IntGraph, pulp: PulpConfig) -> Project {
    let plan = plan_memory(graph);
    let mut code = LayerCode::default();
    for (l, layer) in graph.layers.iter().enumerate() {
        code.add(graph, &plan, pulp, l, layer);
    }
    let files = vec![
        ("network.h".to_string(), header(graph, &plan)),
        ("network.c".to_string(), source(graph, &plan, pulp, &code)),
        ("main.c".to_string(), HOST_MAIN.to_string()),
        ("main_target.c".to_string(), TARGET_MAIN.to_string()),
        ("Makefile".to_string(), MAKEFILE.to_string()),
        ("pulp_target.h".to_string(), pulp::TARGET_HEADER.to_string()),
        ("main_pulp.c".to_string(), pulp::MAIN.to_string()),
        ("Makefile.pulp".to_string(), pulp::MAKEFILE.to_string()),
    ];
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
    /// The kernels the layers call.
    keys: BTreeSet<KernelKey>,
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
        self.keys.insert(k);
        let id = format!("l{l}_{}", c_identifier(&layer.name));
        let buf = |t: usize| format!("(arena + {})", plan.offsets[t]);
        let (x, y) = (buf(layer.inputs[0]), buf(layer.output));
        let other = layer.inputs.get(1).map(|&t| buf(t)).unwrap_or_default();
        let layer_tiling = pulp::plan_layer(graph, layer, pulp);
        let (data_p, call_p) =
            pulp::layer_call(graph, layer, &layer_tiling, &kname, &id, (&x, &y, &other));
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
   Activation buffers: one arena of {arena} bytes, offsets from a liveness-based allocator. */
#include <string.h>
#include "network.h"

typedef struct {{
    int in_c, in_h, in_w, out_c, out_h, out_w;
    int kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, groups;
}} conv_shape;

static uint8_t arena[{arena_alloc}];

const char *const network_layer_names[NETWORK_LAYERS] = {{{names}}};
const uint32_t network_layer_bytes[NETWORK_LAYERS] = {{{sizes}}};

/* Kernels are compiled once for every layer that calls them, never specialised to one layer's
   constants, so that their cost is the one the microbenchmarks measure. */
#if defined(__GNUC__) && !defined(__clang__)
#define KERNEL static __attribute__((noinline, noclone))
#elif defined(__GNUC__)
#define KERNEL static __attribute__((noinline))
#else
#define KERNEL static
#endif

#define LAYER_START(l) do {{ if (trace) trace(-1 - (l), 0, 0); }} while (0)
#define LAYER_DONE(l, buffer, bytes) do {{ if (trace) trace((l), (buffer), (bytes)); }} while (0)
{RUNTIME}"#,
        name = c_comment(&graph.name),
        arena = plan.total,
        arena_alloc = plan.total.max(1),
        names = names.join(", "),
        sizes = sizes.join(", "),
    );
    let _ = write!(
        source,
        "\n#if defined(QSEARCH_PULP) && !defined(NUM_CORES)\n#define NUM_CORES {}\n#endif",
        pulp.cores
    );
    source.push_str(pulp::LANES);
    for k in &code.keys {
        source.push_str(&kernel(k));
    }
    source.push('\n');
    source.push_str(&code.data);
    let _ = write!(
        source,
        r#"
#ifdef QSEARCH_PULP
#define L1_BYTES {l1}
{runtime}
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
        runtime = pulp::RUNTIME,
        pulp_data = code.pulp_data,
        pulp_calls = code.pulp_calls,
        calls = code.calls,
        in_off = plan.offsets[graph.input],
        out_off = plan.offsets[graph.output],
    );
    source
}

/// The host test program: runs every image of `inputs.bin`, writes every layer's packed output
/// to `outputs.bin`, prints per-layer checksums of the first image and the time per image.
const HOST_MAIN: &str = r#"/* Host test program generated by qsearch deploy. Usage: ./network inputs.bin outputs.bin */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "network.h"

static FILE *trace_file;
static uint32_t checksums[NETWORK_LAYERS];

static void trace(int layer, const uint8_t *output, uint32_t bytes)
{
    uint32_t h = 2166136261u, i;
    if (layer < 0) {
        return;
    }
    for (i = 0; i < bytes; i++) {
        h = (h ^ output[i]) * 16777619u;
    }
    checksums[layer] = h;
    if (fwrite(output, 1, bytes, trace_file) != bytes) {
        perror("outputs");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    static uint8_t image[NETWORK_INPUT_BYTES], output[NETWORK_OUTPUT_BYTES];
    FILE *in;
    long images = 0;
    clock_t started;
    int l;
    if (argc != 3) {
        fprintf(stderr, "usage: %s inputs.bin outputs.bin\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    trace_file = fopen(argv[2], "wb");
    if (!in || !trace_file) {
        perror("open");
        return 1;
    }
    started = clock();
    while (fread(image, 1, NETWORK_INPUT_BYTES, in) == NETWORK_INPUT_BYTES) {
        network_run(image, output, trace);
        if (images == 0) {
            for (l = 0; l < NETWORK_LAYERS; l++) {
                printf("layer %2d %-12s %6u bytes  checksum %08x\n", l, network_layer_names[l],
                       (unsigned)network_layer_bytes[l], (unsigned)checksums[l]);
            }
        }
        images++;
    }
    printf("%ld images, %.1f us per image on the host\n", images,
           images ? 1e6 * (double)(clock() - started) / CLOCKS_PER_SEC / (double)images : 0.0);
    fclose(in);
    return fclose(trace_file) != 0;
}
"#;

/// The bare-metal test program: runs the network on the image in `test_input.h` and prints the
/// packed output in hex (through semihosting on an emulator or a debug probe).
const TARGET_MAIN: &str = r#"/* Bare-metal test program generated by qsearch deploy: prints the packed output of the
   network on test_input.h in hex. */
#include <stdio.h>
#include "network.h"
#include "test_input.h"

int main(void)
{
    static uint8_t output[NETWORK_OUTPUT_BYTES];
    int i;
    network_run(test_input, output, 0);
    for (i = 0; i < NETWORK_OUTPUT_BYTES; i++) {
        printf("%02x", output[i]);
    }
    printf("\n");
    return 0;
}
"#;

/// Host build and test (`make`), the PULP path emulated on the host (`make network_pulp_emu`),
/// the rv32imc bare-metal build with picolibc (`make network.elf`) and its run on QEMU's `virt`
/// machine with semihosting (`make run-qemu`). `Makefile.pulp` builds for the PULP/GAP SDK.
const MAKEFILE: &str = r#"# Builds of the generated network.
CC ?= gcc
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Werror -pedantic

RV32_CC ?= riscv64-unknown-elf-gcc
RV32_CFLAGS ?= -march=rv32imc -mabi=ilp32 -Os -std=c99 -Wall -Wextra -Werror
RV32_LIBC ?= --specs=picolibc.specs --oslib=semihost --crt0=semihost
# QEMU virt: code and constants from 0x80000000, RAM from 0x80400000.
RV32_MEMORY ?= -Wl,--defsym=__flash=0x80000000 -Wl,--defsym=__flash_size=0x400000 \
	-Wl,--defsym=__ram=0x80400000 -Wl,--defsym=__ram_size=0x100000

network: main.c network.c network.h
	$(CC) $(CFLAGS) -o $@ main.c network.c

# The PULP path on the host: cluster fork, DMA and XpulpV2 dot products emulated in C.
network_pulp_emu: main.c network.c network.h pulp_target.h
	$(CC) -std=gnu99 -O2 -Wall -Wextra -Werror -DQSEARCH_PULP -DQSEARCH_PULP_EMULATED \
		-o $@ main.c network.c

network.elf: main_target.c network.c network.h test_input.h
	$(RV32_CC) $(RV32_CFLAGS) $(RV32_LIBC) -o $@ main_target.c network.c $(RV32_MEMORY)

run-qemu: network.elf
	qemu-system-riscv32 -machine virt -cpu rv32 -bios none -nographic -monitor none \
		-serial none -semihosting-config enable=on -kernel network.elf

clean:
	rm -f network network_pulp_emu network.elf
"#;

/// `test_input.h`: one image for the bare-metal test program.
pub fn test_input_header(image: &[u8]) -> String {
    let mut s = String::from(
        "/* The test image of main_target.c (bytes, HWC). */\n\
         static const uint8_t test_input[NETWORK_INPUT_BYTES] = {",
    );
    for (i, b) in image.iter().enumerate() {
        if i % 20 == 0 {
            s.push_str("\n    ");
        }
        let _ = write!(s, "{b},");
    }
    s.push_str("\n};\n");
    s
}
