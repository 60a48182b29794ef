//! The PULP path of the generated C (`-DQSEARCH_PULP`): every layer runs on the cluster, its
//! output rows (or output neurons) split across the cores, its data moved through L1 in tiles
//! by DMA with double buffering (the next tile's input loads while the cores compute this one),
//! and 4-lane dot products on XpulpV2's `sdotp` instructions. The layers that accumulate in
//! int32 run the library's blocked kernels ([`Blocked`]), with the scratch areas the kernel needs
//! ([`Scratch`]); the others the generic ones. The drivers are
//! the kernel library's (`kernels/pulp_layers.h`, runtime calls in `kernels/pulp_target.h`);
//! this module chooses each layer's kernel, plans its tiles and scratch and writes the
//! descriptor the drivers read. The same source builds
//! for the PULP/GAP SDK (`Makefile.pulp`), on the host with the cluster fork, the DMA and the
//! dot products emulated by plain C (`make network_pulp_emu`), where it is checked bit-exact
//! like the portable build, and on one bare-metal CV32E40P (`main_rtl.c`, see `super::rtl`).

use super::integerize::{IntGraph, IntLayer, IntOp};
use crate::escape::c_comment;
use crate::platform::Platform;
use crate::quant::packed_bytes;
use std::fmt::Write;

/// The cluster the tiling is planned for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PulpConfig {
    pub cores: usize,
    /// L1 bytes the tiles may use (the platform's usable L1, after the cores' stacks).
    pub l1_bytes: usize,
}

impl PulpConfig {
    pub fn of(platform: &Platform) -> PulpConfig {
        PulpConfig {
            cores: platform.cores(),
            l1_bytes: platform.hardware.l1_usable_bytes.value as usize,
        }
    }
}

/// The blocked kernel a layer runs on the PULP path (the kernel library's `conv_blocked.h`,
/// `depthwise.h`, `linear_blocked.h`, `pool_blocked.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Blocked {
    /// A convolution or pointwise convolution (groups == 1): `QK_CONV_BLOCKED`.
    Conv,
    /// A depthwise convolution (groups == in_c == out_c): `QK_DEPTHWISE`.
    Depthwise,
    /// A linear layer: `QK_LINEAR_BLOCKED`.
    Linear,
    /// The poolings, `QK_MAXPOOL_BLOCKED` and the like: the generic kernels' calls, no scratch.
    MaxPool,
    AvgPool,
    GlobalMaxPool,
    GlobalAvgPool,
}

impl Blocked {
    /// The kernel library's name for it (the instantiation macro is `QK_` and its upper case).
    pub fn op(self) -> &'static str {
        match self {
            Blocked::Conv => "conv_blocked",
            Blocked::Depthwise => "depthwise",
            Blocked::Linear => "linear_blocked",
            Blocked::MaxPool => "maxpool_blocked",
            Blocked::AvgPool => "avgpool_blocked",
            Blocked::GlobalMaxPool => "globalmaxpool_blocked",
            Blocked::GlobalAvgPool => "globalavgpool_blocked",
        }
    }
}

/// The blocked kernel `layer` runs on the PULP path: every convolution, pointwise, depthwise,
/// linear layer and pooling that accumulates in int32. The others keep the generic kernels:
/// layers that need an int64 accumulator, grouped convolutions that are not depthwise
/// (1 < groups < in_c, or a channel multiplier), and the adds.
pub fn blocked_kernel(graph: &IntGraph, layer: &IntLayer) -> Option<Blocked> {
    if layer.acc_type() != "int32" {
        return None;
    }
    let (in_c, out_c) = (
        graph.tensors[layer.inputs[0]].shape.c,
        graph.tensors[layer.output].shape.c,
    );
    match &layer.op {
        IntOp::Conv { groups: 1, .. } => Some(Blocked::Conv),
        IntOp::Conv { groups, .. } if *groups == in_c && *groups == out_c => {
            Some(Blocked::Depthwise)
        }
        IntOp::Linear { .. } => Some(Blocked::Linear),
        IntOp::MaxPool { .. } => Some(Blocked::MaxPool),
        IntOp::AvgPool { .. } => Some(Blocked::AvgPool),
        IntOp::GlobalMaxPool => Some(Blocked::GlobalMaxPool),
        IntOp::GlobalAvgPool => Some(Blocked::GlobalAvgPool),
        _ => None,
    }
}

/// Whether `layer` runs the 32-bit variant of its blocked kernel (`_narrow`, `QK_BLOCKED_KERNEL`
/// in `kernels/matmul.h`): a blocked kernel whose every requantization product fits int32
/// (`IntLayer::product_bound`, below 2^31 for every layer at `--requant-bits 32`), so that `mul`
/// replaces the 64-bit product's `mulh`. The variant's outputs equal the kernel's under that bound.
pub fn narrow_requant(graph: &IntGraph, layer: &IntLayer) -> bool {
    blocked_kernel(graph, layer).is_some() && layer.product_bits() == 32
}

/// Bytes of an unpacked row of `k` values, word-aligned (`kernels/unpack.h`'s QK_ROW_BYTES).
fn row_bytes(k: usize) -> usize {
    k.next_multiple_of(4)
}

/// The bytes of one scratch area of `blocked` on `layer` when a core computes `rows` output rows
/// (a windowed layer; a linear layer's one area holds its unpacked input): the kernel's SCRATCH macro,
/// which the bytes here follow (`QK_CONV_BLOCKED_SCRATCH`, `QK_DEPTHWISE_SCRATCH`,
/// `QK_LINEAR_BLOCKED_SCRATCH`); a multiple of 4.
fn scratch_bytes(graph: &IntGraph, layer: &IntLayer, blocked: Blocked, rows: usize) -> usize {
    let x = &graph.tensors[layer.inputs[0]].shape;
    let y = &graph.tensors[layer.output].shape;
    match (&layer.op, blocked) {
        (IntOp::Conv { window, groups, .. }, Blocked::Conv) => {
            // QK_BLOCK_PIXELS rows of im2col.
            2 * row_bytes(window.kernel[0] * window.kernel[1] * (x.c / groups))
        }
        (IntOp::Conv { window, .. }, Blocked::Depthwise) => {
            // The channel's gathered plane (kernel rows padded to words), then its kernel's rows,
            // at least 3.
            let [kh, kw] = window.kernel;
            let [sh, sw] = window.stride;
            let kernel_row = row_bytes(kw);
            let plane_w = (y.w - 1) * sw + kernel_row;
            let plane_h = (rows.max(1) - 1) * sh + kh;
            row_bytes(plane_w * plane_h) + kh.max(3) * kernel_row
        }
        (IntOp::Linear { .. }, Blocked::Linear) => row_bytes(x.elements() as usize),
        _ => 0,
    }
}

/// The scratch areas of a layer's blocked kernel: a windowed layer's cores each have their own (its
/// im2col buffers or depthwise planes); a linear layer's cores share one, its input unpacked once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scratch {
    /// Bytes of one area (0 for a generic kernel).
    pub bytes: usize,
    /// Whether the cores share one area.
    pub shared: bool,
}

impl Scratch {
    /// The bytes of every area on `cores` cores.
    fn total(self, cores: usize) -> usize {
        if self.shared {
            self.bytes
        } else {
            cores * self.bytes
        }
    }
}

/// How one layer runs on the cluster, with its blocked kernel's scratch areas; a tiled layer's
/// are in L1, before its tiles.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerTiling {
    /// Output rows per tile (input rows with their halo, double-buffered in L1).
    Rows {
        rows: usize,
        tiles: usize,
        /// Whether the weights are copied to L1 once (`None` for a pooling).
        weights_in_l1: Option<bool>,
        scratch: Scratch,
        /// The L1 the layer uses: tiles, weights and every core's scratch.
        l1_bytes: usize,
    },
    /// Output neurons per weight tile (weights double-buffered; input and output vectors in L1).
    Neurons {
        neurons: usize,
        tiles: usize,
        scratch: Scratch,
        l1_bytes: usize,
    },
    /// Straight from L2 (no tile fits L1, rows are not byte-aligned, or a small layer); the
    /// cores' scratch areas at the start of L1, or in a static buffer in L2 where L1 cannot hold
    /// them.
    L2 {
        scratch: Scratch,
        scratch_in_l1: bool,
    },
}

impl LayerTiling {
    /// The blocked kernel's scratch areas.
    pub fn scratch(&self) -> Scratch {
        match *self {
            LayerTiling::Rows { scratch, .. }
            | LayerTiling::Neurons { scratch, .. }
            | LayerTiling::L2 { scratch, .. } => scratch,
        }
    }

    /// Whether the scratch areas are in L1 (every tiled layer's are).
    fn scratch_in_l1(&self) -> bool {
        !matches!(
            self,
            LayerTiling::L2 {
                scratch_in_l1: false,
                ..
            }
        )
    }
}

impl std::fmt::Display for LayerTiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerTiling::Rows {
                rows,
                tiles,
                weights_in_l1,
                l1_bytes,
                ..
            } => {
                write!(
                    f,
                    "{tiles} {} of {rows} output rows, {l1_bytes} B of L1",
                    plural(*tiles, "tile")
                )?;
                match weights_in_l1 {
                    Some(true) => write!(f, ", weights in L1")?,
                    Some(false) => write!(f, ", weights read from L2")?,
                    None => {}
                }
            }
            LayerTiling::Neurons {
                neurons,
                tiles,
                l1_bytes,
                ..
            } => write!(
                f,
                "{tiles} weight {} of {neurons} neurons, {l1_bytes} B of L1",
                plural(*tiles, "tile")
            )?,
            LayerTiling::L2 { .. } => write!(f, "from L2")?,
        }
        let scratch = self.scratch();
        let whose = if scratch.shared { "shared" } else { "per core" };
        match scratch.bytes {
            0 => Ok(()),
            bytes if self.scratch_in_l1() => write!(f, ", {bytes} B of scratch {whose}"),
            bytes => write!(f, ", {bytes} B of scratch {whose} in L2"),
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.into()
    } else {
        format!("{word}s")
    }
}

/// Whether `elements` packed values at `bits` fill whole bytes (so that rows can be copied and
/// split between cores without sharing a byte).
fn whole_bytes(elements: usize, bits: u32) -> bool {
    (elements * bits as usize).is_multiple_of(8)
}

/// The largest transfer the drivers issue: some PMSIS back-ends hold a transfer's size in 16 bits.
const MAX_DMA_BYTES: usize = 65_535;

/// Bytes rounded up to whole words, as the L1 buffers are laid out.
fn words(bytes: usize) -> usize {
    bytes.next_multiple_of(4)
}

/// The tiling of `layer` for `config`: the scratch areas (for a blocked kernel, the largest any
/// of the layer's tiles needs) reserved in L1 first, then the largest tiles that fit in what is
/// left.
pub(crate) fn plan_layer(graph: &IntGraph, layer: &IntLayer, config: PulpConfig) -> LayerTiling {
    let x = &graph.tensors[layer.inputs[0]];
    let y = &graph.tensors[layer.output];
    let blocked = blocked_kernel(graph, layer);
    let scratch = |rows: usize| Scratch {
        bytes: blocked.map_or(0, |b| scratch_bytes(graph, layer, b, rows)),
        shared: blocked == Some(Blocked::Linear),
    };
    // Straight from L2, with `cores` cores' scratch areas for `rows` output rows each.
    let from_l2 = |cores: usize, rows: usize| LayerTiling::L2 {
        scratch: scratch(rows),
        scratch_in_l1: scratch(rows).total(cores) <= config.l1_bytes,
    };
    match &layer.op {
        IntOp::Conv { window, .. } | IntOp::MaxPool { window } | IntOp::AvgPool { window } => {
            let (in_row, out_row) = (x.shape.w * x.shape.c, y.shape.w * y.shape.c);
            // The drivers split the rows across the cores only where they are whole bytes.
            let cores = if whole_bytes(out_row, y.bits) {
                config.cores
            } else {
                1
            };
            let untiled = from_l2(cores, y.shape.h.div_ceil(cores));
            if !whole_bytes(in_row, x.bits) || !whole_bytes(out_row, y.bits) {
                return untiled;
            }
            let (in_row, out_row) = (packed_bytes(in_row, x.bits), packed_bytes(out_row, y.bits));
            let weights = match &layer.op {
                IntOp::Conv {
                    weights,
                    weight_bits,
                    ..
                } => words(packed_bytes(weights.len(), *weight_bits)),
                _ => 0,
            };
            let weights_in_l1 = weights > 0 && weights <= (config.l1_bytes / 2).min(MAX_DMA_BYTES);
            let weights_l1 = if weights_in_l1 { weights } else { 0 };
            let in_rows =
                |rows: usize| ((rows - 1) * window.stride[0] + window.kernel[0]).min(x.shape.h);
            // A tile of `rows` rows gives each core at most rows / cores of them.
            let scratch_l1 = |rows: usize| scratch(rows.div_ceil(cores)).total(cores);
            let l1_bytes = |rows: usize| {
                scratch_l1(rows)
                    + weights_l1
                    + 2 * words(in_rows(rows) * in_row)
                    + 2 * words(rows * out_row)
            };
            let fits = |rows: usize| {
                l1_bytes(rows) <= config.l1_bytes
                    && in_rows(rows) * in_row <= MAX_DMA_BYTES
                    && rows * out_row <= MAX_DMA_BYTES
            };
            match (1..=y.shape.h).rev().find(|&r| fits(r)) {
                Some(rows) => LayerTiling::Rows {
                    rows,
                    tiles: y.shape.h.div_ceil(rows),
                    weights_in_l1: (weights > 0).then_some(weights_in_l1),
                    scratch: scratch(rows.div_ceil(cores)),
                    l1_bytes: l1_bytes(rows),
                },
                None => untiled,
            }
        }
        IntOp::Linear { weight_bits, .. } => {
            let n_in = x.shape.elements() as usize;
            let n_out = y.shape.elements() as usize;
            let (x_bytes, y_bytes) = (packed_bytes(n_in, x.bits), packed_bytes(n_out, y.bits));
            let untiled = from_l2(config.cores, 0);
            if x_bytes.max(y_bytes) > MAX_DMA_BYTES {
                return untiled;
            }
            let fixed = scratch(0).total(config.cores) + words(x_bytes) + words(y_bytes);
            // Tiles of a multiple of 8 neurons keep every tile's weights and outputs byte-aligned.
            let l1_bytes = |n: usize| fixed + 2 * words(packed_bytes(n * n_in, *weight_bits));
            let fitting = (1..=n_out.div_ceil(8))
                .rev()
                .map(|t| (8 * t).min(n_out))
                .find(|&n| {
                    l1_bytes(n) <= config.l1_bytes
                        && packed_bytes(n * n_in, *weight_bits) <= MAX_DMA_BYTES
                });
            match fitting {
                Some(neurons) => LayerTiling::Neurons {
                    neurons,
                    tiles: n_out.div_ceil(neurons),
                    scratch: scratch(0),
                    l1_bytes: l1_bytes(neurons),
                },
                None => untiled,
            }
        }
        _ => from_l2(config.cores, 0),
    }
}

/// The static buffer of `network.c` that holds the scratch areas of the untiled layers whose
/// areas L1 cannot hold.
pub(super) const SCRATCH_L2: &str = "scratch_l2";

/// The bytes of [`SCRATCH_L2`] for layers run as `tilings` on `cores` cores (0: none needed).
pub(super) fn scratch_l2_bytes<'a>(
    tilings: impl IntoIterator<Item = &'a LayerTiling>,
    cores: usize,
) -> usize {
    tilings
        .into_iter()
        .filter(|t| !t.scratch_in_l1())
        .map(|t| t.scratch().total(cores))
        .max()
        .unwrap_or(0)
}

/// The descriptor fields of a layer's scratch areas: their start and the bytes of one.
fn scratch_fields(tiling: &LayerTiling) -> String {
    match tiling.scratch().bytes {
        0 => "0, 0".into(),
        bytes if tiling.scratch_in_l1() => format!("l1, {bytes}"),
        bytes => format!("{SCRATCH_L2}, {bytes}"),
    }
}

/// The descriptor fields of a layer's generic and blocked kernel: `kname` in one, 0 in the other.
fn kernel_fields(graph: &IntGraph, layer: &IntLayer, kname: &str) -> String {
    if blocked_kernel(graph, layer).is_some() {
        format!("0, {kname}")
    } else {
        format!("{kname}, 0")
    }
}

/// The PULP call of a layer run as `tiling` plans, and the descriptor it reads: `(data, call)`.
/// `kname` is the layer's kernel on the PULP path (blocked where [`blocked_kernel`] says so; its
/// `_narrow` variant is called where [`narrow_requant`] says so), `id` its C identifier, `x`/`y`
/// its input/output buffers and `other` the second input of an add.
pub(super) fn layer_call(
    graph: &IntGraph,
    layer: &IntLayer,
    tiling: &LayerTiling,
    kname: &str,
    id: &str,
    buffers: (&str, &str, &str),
) -> (String, String) {
    let (x, y, other) = buffers;
    let xt = &graph.tensors[layer.inputs[0]];
    let yt = &graph.tensors[layer.output];
    let r = &layer.requant;
    let kernel = if narrow_requant(graph, layer) {
        format!("{kname}_narrow")
    } else {
        kname.to_string()
    };
    let mut data = String::new();
    let call = match &layer.op {
        IntOp::Conv { .. } | IntOp::MaxPool { .. } | IntOp::AvgPool { .. } => {
            data.push_str(&windowed_descriptor(graph, layer, tiling, &kernel, id));
            format!("run_windowed(&{id}_p, {x}, {y});")
        }
        IntOp::Linear { weight_bits, .. } => {
            let neurons = match *tiling {
                LayerTiling::Neurons { neurons, .. } => neurons,
                _ => 0,
            };
            // A blocked kernel's input is made into its operand once per layer.
            let operand = match blocked_kernel(graph, layer) {
                Some(_) => format!("{kname}_operand"),
                None => "0".into(),
            };
            let _ = writeln!(
                data,
                "static const linear_layer {id}_p = {{{kernel}, {operand}, {id}_w, {id}_b, {id}_k, {}, {}, {}, {}, {}, {weight_bits}, {}, {}, {neurons}, {}}};",
                r.shift,
                r.lo,
                r.hi,
                xt.shape.elements(),
                yt.shape.elements(),
                xt.bits,
                yt.bits,
                scratch_fields(tiling),
            );
            format!("run_linear(&{id}_p, {x}, {y});")
        }
        IntOp::Add { rescale: [ra, rb] } => {
            let ot = &graph.tensors[layer.inputs[1]];
            let _ = writeln!(
                data,
                "static const add_job {id}_p = {{{kernel}, {x}, {other}, {y}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}};",
                ra.multiplier[0],
                rb.multiplier[0],
                r.lo,
                r.hi,
                yt.shape.elements(),
                ra.shift,
                rb.shift,
                xt.bits,
                ot.bits,
                yt.bits
            );
            format!("cluster_fork(add_worker, (void *)&{id}_p);")
        }
        // Global poolings are small: the cluster's first core runs them from L2.
        IntOp::GlobalAvgPool | IntOp::GlobalMaxPool => format!(
            "{kernel}({x}, {y}, {}, {}, {}, {}, {}, {});",
            r.multiplier[0],
            r.shift,
            r.lo,
            r.hi,
            xt.shape.h * xt.shape.w,
            xt.shape.c
        ),
    };
    let _ = writeln!(data, "/* {}: {tiling} */", c_comment(&layer.name));
    (data, call)
}

/// The `windowed_layer` descriptor of a convolution or pooling run as `tiling` plans (rows of
/// output per tile, weights in L1 or not).
fn windowed_descriptor(
    graph: &IntGraph,
    layer: &IntLayer,
    tiling: &LayerTiling,
    kname: &str,
    id: &str,
) -> String {
    let xt = &graph.tensors[layer.inputs[0]];
    let yt = &graph.tensors[layer.output];
    let r = &layer.requant;
    let (rows, weights_in_l1) = match *tiling {
        LayerTiling::Rows {
            rows,
            weights_in_l1,
            ..
        } => (rows, weights_in_l1 == Some(true)),
        _ => (0, false),
    };
    let aligned = whole_bytes(yt.shape.w * yt.shape.c, yt.bits);
    let (conv, pool, w, b, k, w_bytes) = match &layer.op {
        IntOp::Conv {
            weights,
            weight_bits,
            ..
        } => (
            kernel_fields(graph, layer, kname),
            "0".to_string(),
            format!("{id}_w"),
            format!("{id}_b"),
            format!("{id}_k"),
            packed_bytes(weights.len(), *weight_bits),
        ),
        _ => (
            "0, 0".into(),
            kname.to_string(),
            "0".into(),
            "0".into(),
            "0".into(),
            0,
        ),
    };
    let mut data = String::new();
    let _ = writeln!(
        data,
        "static const windowed_layer {id}_p = {{{conv}, {pool}, {w}, {b}, {k}, {}, {}, {}, {}, &{id}_s, {}, {}, {w_bytes}, {rows}, {}, {}, {}}};",
        r.multiplier[0],
        r.shift,
        r.lo,
        r.hi,
        packed_bytes(xt.shape.w * xt.shape.c, xt.bits),
        packed_bytes(yt.shape.w * yt.shape.c, yt.bits),
        if aligned { "NUM_CORES" } else { "1" },
        weights_in_l1 as u8,
        scratch_fields(tiling),
    );
    data
}
