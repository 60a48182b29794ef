//! The PULP path of the generated C (`-DQSEARCH_PULP`): every layer runs on the cluster, its
//! output rows (or output neurons) split across the cores, its data moved through L1 in tiles
//! by DMA with double buffering (the next tile's input loads while the cores compute this one),
//! and 4-lane dot products on XpulpV2's `sdotp` instructions. The drivers are the kernel
//! library's (`kernels/pulp_layers.h`, runtime calls in `kernels/pulp_target.h`); this module
//! plans each layer's tiles and writes the descriptor the drivers read. The same source builds
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

/// How one layer runs on the cluster.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerTiling {
    /// Output rows per tile (input rows with their halo, double-buffered in L1).
    Rows {
        rows: usize,
        tiles: usize,
        /// Whether the weights are copied to L1 once (`None` for a pooling).
        weights_in_l1: Option<bool>,
        l1_bytes: usize,
    },
    /// Output neurons per weight tile (weights double-buffered; input and output vectors in L1).
    Neurons {
        neurons: usize,
        tiles: usize,
        l1_bytes: usize,
    },
    /// Straight from L2 (no tile fits L1, rows are not byte-aligned, or a small layer).
    L2,
}

impl std::fmt::Display for LayerTiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerTiling::Rows {
                rows,
                tiles,
                weights_in_l1,
                l1_bytes,
            } => {
                write!(
                    f,
                    "{tiles} {} of {rows} output rows, {l1_bytes} B of L1",
                    plural(*tiles, "tile")
                )?;
                match weights_in_l1 {
                    Some(true) => write!(f, ", weights in L1"),
                    Some(false) => write!(f, ", weights read from L2"),
                    None => Ok(()),
                }
            }
            LayerTiling::Neurons {
                neurons,
                tiles,
                l1_bytes,
            } => write!(
                f,
                "{tiles} weight {} of {neurons} neurons, {l1_bytes} B of L1",
                plural(*tiles, "tile")
            ),
            LayerTiling::L2 => write!(f, "from L2"),
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

/// The tiling of `layer` for `config`.
pub(crate) fn plan_layer(graph: &IntGraph, layer: &IntLayer, config: PulpConfig) -> LayerTiling {
    let x = &graph.tensors[layer.inputs[0]];
    let y = &graph.tensors[layer.output];
    match &layer.op {
        IntOp::Conv { window, .. } | IntOp::MaxPool { window } | IntOp::AvgPool { window } => {
            let (in_row, out_row) = (x.shape.w * x.shape.c, y.shape.w * y.shape.c);
            if !whole_bytes(in_row, x.bits) || !whole_bytes(out_row, y.bits) {
                return LayerTiling::L2;
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
            let budget = config.l1_bytes - if weights_in_l1 { weights } else { 0 };
            let in_rows =
                |rows: usize| ((rows - 1) * window.stride[0] + window.kernel[0]).min(x.shape.h);
            let tile_bytes =
                |rows: usize| 2 * words(in_rows(rows) * in_row) + 2 * words(rows * out_row);
            let fits = |rows: usize| {
                tile_bytes(rows) <= budget
                    && in_rows(rows) * in_row <= MAX_DMA_BYTES
                    && rows * out_row <= MAX_DMA_BYTES
            };
            match (1..=y.shape.h).rev().find(|&r| fits(r)) {
                Some(rows) => LayerTiling::Rows {
                    rows,
                    tiles: y.shape.h.div_ceil(rows),
                    weights_in_l1: (weights > 0).then_some(weights_in_l1),
                    l1_bytes: tile_bytes(rows) + if weights_in_l1 { weights } else { 0 },
                },
                None => LayerTiling::L2,
            }
        }
        IntOp::Linear { weight_bits, .. } => {
            let n_in = x.shape.elements() as usize;
            let n_out = y.shape.elements() as usize;
            let (x_bytes, y_bytes) = (packed_bytes(n_in, x.bits), packed_bytes(n_out, y.bits));
            if x_bytes.max(y_bytes) > MAX_DMA_BYTES {
                return LayerTiling::L2;
            }
            let vectors = words(x_bytes) + words(y_bytes);
            // Tiles of a multiple of 8 neurons keep every tile's weights and outputs byte-aligned.
            let tile_bytes = |n: usize| vectors + 2 * words(packed_bytes(n * n_in, *weight_bits));
            let fitting = (1..=n_out.div_ceil(8))
                .rev()
                .map(|t| (8 * t).min(n_out))
                .find(|&n| {
                    tile_bytes(n) <= config.l1_bytes
                        && packed_bytes(n * n_in, *weight_bits) <= MAX_DMA_BYTES
                });
            match fitting {
                Some(neurons) => LayerTiling::Neurons {
                    neurons,
                    tiles: n_out.div_ceil(neurons),
                    l1_bytes: tile_bytes(neurons),
                },
                None => LayerTiling::L2,
            }
        }
        _ => LayerTiling::L2,
    }
}

/// The PULP call of a layer run as `tiling` plans, and the descriptor it reads: `(data, call)`.
/// `kname` is the layer's kernel, `id` its C identifier, `x`/`y` its input/output buffers and
/// `other` the second input of an add.
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
    let mut data = String::new();
    let call = match &layer.op {
        IntOp::Conv { .. } | IntOp::MaxPool { .. } | IntOp::AvgPool { .. } => {
            data.push_str(&windowed_descriptor(graph, layer, tiling, kname, id));
            format!("run_windowed(&{id}_p, {x}, {y});")
        }
        IntOp::Linear { weight_bits, .. } => {
            let neurons = match *tiling {
                LayerTiling::Neurons { neurons, .. } => neurons,
                _ => 0,
            };
            let _ = writeln!(
                data,
                "static const linear_layer {id}_p = {{{kname}, {id}_w, {id}_b, {id}_k, {}, {}, {}, {}, {}, {weight_bits}, {}, {}, {neurons}}};",
                r.shift,
                r.lo,
                r.hi,
                xt.shape.elements(),
                yt.shape.elements(),
                xt.bits,
                yt.bits,
            );
            format!("run_linear(&{id}_p, {x}, {y});")
        }
        IntOp::Add { rescale: [ra, rb] } => {
            let ot = &graph.tensors[layer.inputs[1]];
            let _ = writeln!(
                data,
                "static const add_job {id}_p = {{{kname}, {x}, {other}, {y}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}};",
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
            "{kname}({x}, {y}, {}, {}, {}, {}, {}, {});",
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
            kname.to_string(),
            "0".to_string(),
            format!("{id}_w"),
            format!("{id}_b"),
            format!("{id}_k"),
            packed_bytes(weights.len(), *weight_bits),
        ),
        _ => (
            "0".into(),
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
        "static const windowed_layer {id}_p = {{{conv}, {pool}, {w}, {b}, {k}, {}, {}, {}, {}, &{id}_s, {}, {}, {w_bytes}, {rows}, {}, {}}};",
        r.multiplier[0],
        r.shift,
        r.lo,
        r.hi,
        packed_bytes(xt.shape.w * xt.shape.c, xt.bits),
        packed_bytes(yt.shape.w * yt.shape.c, yt.bits),
        if aligned { "NUM_CORES" } else { "1" },
        weights_in_l1 as u8,
    );
    data
}
