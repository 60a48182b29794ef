//! The PULP path of the generated C (`-DQSEARCH_PULP`): every layer runs on the cluster, its
//! output rows (or output neurons) split across the cores, its data moved through L1 in tiles
//! by DMA with double buffering (the next tile's input loads while the cores compute this one),
//! and 4-lane dot products on XpulpV2's `sdotp` instructions. The same source builds for the
//! PULP/GAP SDK (`Makefile.pulp`) and, with the builtins, the cluster fork and the DMA emulated
//! by plain C (`make network_pulp_emu`), on the host, where it is checked bit-exact like the
//! portable build.

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

/// What the kernels' PULP dot products need: the target layer and 4-lane loads of packed
/// values (one word load at 8 bit).
pub(super) const LANES: &str = r#"
#ifdef QSEARCH_PULP
#include "pulp_target.h"

/* Four packed values from index i as the lanes of a v4s (signed) or v4u (unsigned) vector. */
#define DEFINE_LANES(name, vector, lane, is_signed)                                 \
    static inline vector name(const uint8_t *p, int32_t i, int bits)               \
    {                                                                               \
        vector v;                                                                   \
        int k;                                                                      \
        if (bits == 8) {                                                            \
            memcpy(&v, p + i, 4);                                                   \
            return v;                                                               \
        }                                                                           \
        for (k = 0; k < 4; k++) {                                                   \
            v[k] = (lane)ld(p, i + k, bits, is_signed);                             \
        }                                                                           \
        return v;                                                                   \
    }
DEFINE_LANES(lanes_s, v4s, signed char, 1)
DEFINE_LANES(lanes_u, v4u, unsigned char, 0)
#endif
"#;

/// The tiled, parallel layer drivers of the PULP path.
pub(super) const RUNTIME: &str = r#"
/* ---- PULP path: layers on the cluster, tiled through L1 with double-buffered DMA ---- */
L1_DATA static uint8_t l1[L1_BYTES] __attribute__((aligned(4), unused));

typedef void (*conv_kernel)(const uint8_t *, uint8_t *, const uint8_t *, const int32_t *,
    const int32_t *, int, int32_t, int32_t, const conv_shape *);
typedef void (*pool_kernel)(const uint8_t *, uint8_t *, int32_t, int, int32_t, int32_t,
    const conv_shape *);
typedef void (*linear_kernel)(const uint8_t *, uint8_t *, const uint8_t *, const int32_t *,
    const int32_t *, int, int32_t, int32_t, int32_t, int32_t);
typedef void (*add_kernel)(const uint8_t *, const uint8_t *, uint8_t *, int32_t, int, int32_t,
    int, int32_t, int32_t, int32_t);

/* A convolution or pooling: `tile_rows` output rows per tile (0: straight from L2). */
typedef struct {
    conv_kernel conv;
    pool_kernel pool;
    const uint8_t *w;
    const int32_t *bias, *k;
    int32_t k0;
    int shift;
    int32_t lo, hi;
    const conv_shape *s;
    uint32_t in_row, out_row, w_bytes;
    int tile_rows, cores, weights_in_l1;
} windowed_layer;

/* A linear layer: `tile` output neurons per weight tile (0: straight from L2). */
typedef struct {
    linear_kernel f;
    const uint8_t *w;
    const int32_t *bias, *k;
    int shift;
    int32_t lo, hi, n_in, n_out;
    int w_bits, in_bits, out_bits;
    int32_t tile;
} linear_layer;

DRIVER uint32_t words(uint32_t bytes)
{
    return (bytes + 3u) & ~3u;
}

/* This core's share [first, last) of n items split across `cores` cores in multiples of
   `granule`; 0 when it has none. */
DRIVER int core_share(int32_t n, int32_t granule, int cores, int32_t *first, int32_t *last)
{
    int32_t per = ((n + cores - 1) / cores + granule - 1) / granule * granule;
    if (CORE_ID() >= cores) {
        return 0;
    }
    *first = CORE_ID() * per;
    *last = *first + per < n ? *first + per : n;
    return *first < n;
}

/* One tile's work, split by output rows across the cores. */
typedef struct {
    const windowed_layer *l;
    const uint8_t *x, *w;
    uint8_t *y;
    conv_shape s;
} windowed_job;

DRIVER void windowed_worker(void *arg)
{
    const windowed_job *j = (const windowed_job *)arg;
    const windowed_layer *l = j->l;
    int32_t first, last;
    conv_shape s = j->s;
    uint8_t *y;
    if (!core_share(j->s.out_h, 1, l->cores, &first, &last)) {
        return;
    }
    s.out_h = last - first;
    s.pad_top -= first * s.stride_h;
    y = j->y + (uint32_t)first * l->out_row;
    if (l->conv) {
        l->conv(j->x, y, j->w, l->bias, l->k, l->shift, l->lo, l->hi, &s);
    } else {
        l->pool(j->x, y, l->k0, l->shift, l->lo, l->hi, &s);
    }
}

/* The input rows output rows [oy0, oy1) read, loaded into `buffer`; the job's shape becomes the
   tile's (its rows, its padding). */
DRIVER void load_rows(const windowed_layer *l, const uint8_t *x, uint8_t *buffer, int oy0,
    int oy1, windowed_job *job, dma_cmd *cmd)
{
    const conv_shape *s = l->s;
    int lo = oy0 * s->stride_h - s->pad_top;
    int hi = (oy1 - 1) * s->stride_h + s->kernel_h - s->pad_top;
    if (lo < 0) lo = 0;
    if (hi > s->in_h) hi = s->in_h;
    if (hi < lo) hi = lo; /* a tile that reads only padding */
    job->s = *s;
    job->s.in_h = hi - lo;
    job->s.out_h = oy1 - oy0;
    job->s.pad_top = s->pad_top + lo - oy0 * s->stride_h;
    DMA_IN(buffer, x + (uint32_t)lo * l->in_row, (uint32_t)(hi - lo) * l->in_row, cmd);
}

DRIVER void run_windowed(const windowed_layer *l, const uint8_t *x, uint8_t *y)
{
    const conv_shape *s = l->s;
    windowed_job job;
    uint8_t *in[2], *out[2];
    uint32_t in_bytes, out_bytes, at = 0;
    dma_cmd in_cmd, out_cmd, w_cmd;
    int tiles, t;
    job.l = l;
    job.w = l->w;
    if (l->tile_rows == 0) {
        job.x = x;
        job.y = y;
        job.s = *s;
        cluster_fork(windowed_worker, &job);
        return;
    }
    if (l->weights_in_l1) {
        DMA_IN(l1, l->w, l->w_bytes, &w_cmd);
        job.w = l1;
        at = words(l->w_bytes);
    }
    in_bytes = (uint32_t)((l->tile_rows - 1) * s->stride_h + s->kernel_h);
    if (in_bytes > (uint32_t)s->in_h) in_bytes = (uint32_t)s->in_h;
    in_bytes = words(in_bytes * l->in_row);
    out_bytes = words((uint32_t)l->tile_rows * l->out_row);
    in[0] = l1 + at;
    in[1] = in[0] + in_bytes;
    out[0] = in[1] + in_bytes;
    out[1] = out[0] + out_bytes;
    tiles = (s->out_h + l->tile_rows - 1) / l->tile_rows;
    load_rows(l, x, in[0], 0, l->tile_rows < s->out_h ? l->tile_rows : s->out_h, &job, &in_cmd);
    DMA_WAIT(&in_cmd);
    if (l->weights_in_l1) {
        DMA_WAIT(&w_cmd);
    }
    for (t = 0; t < tiles; t++) {
        int oy0 = t * l->tile_rows;
        int oy1 = oy0 + l->tile_rows < s->out_h ? oy0 + l->tile_rows : s->out_h;
        windowed_job next = job;
        /* The next tile's input loads while the cores compute this one. */
        if (t + 1 < tiles) {
            int ny1 = oy1 + l->tile_rows < s->out_h ? oy1 + l->tile_rows : s->out_h;
            load_rows(l, x, in[(t + 1) & 1], oy1, ny1, &next, &in_cmd);
        }
        job.x = in[t & 1];
        job.y = out[t & 1];
        memset(job.y, 0, (uint32_t)(oy1 - oy0) * l->out_row);
        cluster_fork(windowed_worker, &job);
        if (t > 0) {
            DMA_WAIT(&out_cmd);
        }
        DMA_OUT(y + (uint32_t)oy0 * l->out_row, out[t & 1], (uint32_t)(oy1 - oy0) * l->out_row,
            &out_cmd);
        if (t + 1 < tiles) {
            DMA_WAIT(&in_cmd);
            job.s = next.s;
        }
    }
    DMA_WAIT(&out_cmd);
}

/* A tile of neurons of a linear layer, split across the cores in multiples of 8 neurons (so
   that no two cores write the same byte of a packed output). */
typedef struct {
    const linear_layer *l;
    const uint8_t *x, *w;
    uint8_t *y;
    int32_t first, count;
} linear_job;

DRIVER void linear_worker(void *arg)
{
    const linear_job *j = (const linear_job *)arg;
    const linear_layer *l = j->l;
    int32_t a, b;
    if (!core_share(j->count, 8, NUM_CORES, &a, &b)) {
        return;
    }
    l->f(j->x, j->y + (uint32_t)(j->first + a) * (uint32_t)l->out_bits / 8u,
        j->w + (uint32_t)a * (uint32_t)l->n_in * (uint32_t)l->w_bits / 8u,
        l->bias + j->first + a, l->k + j->first + a, l->shift, l->lo, l->hi, l->n_in, b - a);
}

DRIVER void run_linear(const linear_layer *l, const uint8_t *x, uint8_t *y)
{
    linear_job job;
    uint32_t x_bytes = ((uint32_t)l->n_in * (uint32_t)l->in_bits + 7u) / 8u;
    uint32_t y_bytes = ((uint32_t)l->n_out * (uint32_t)l->out_bits + 7u) / 8u;
    uint32_t w_tile = ((uint32_t)l->tile * (uint32_t)l->n_in * (uint32_t)l->w_bits + 7u) / 8u;
    uint8_t *w[2];
    dma_cmd in_cmd, w_cmd;
    int32_t first;
    int t = 0;
    job.l = l;
    if (l->tile == 0) {
        job.x = x;
        job.y = y;
        job.w = l->w;
        job.first = 0;
        job.count = l->n_out;
        cluster_fork(linear_worker, &job);
        return;
    }
    job.x = l1;
    job.y = l1 + words(x_bytes);
    w[0] = job.y + words(y_bytes);
    w[1] = w[0] + words(w_tile);
    memset(job.y, 0, y_bytes);
    DMA_IN(l1, x, x_bytes, &in_cmd);
    DMA_IN(w[0], l->w, l->tile < l->n_out ? w_tile : ((uint32_t)l->n_out * (uint32_t)l->n_in * (uint32_t)l->w_bits + 7u) / 8u, &w_cmd);
    DMA_WAIT(&in_cmd);
    DMA_WAIT(&w_cmd);
    for (first = 0; first < l->n_out; first += l->tile, t++) {
        int32_t count = first + l->tile < l->n_out ? l->tile : l->n_out - first;
        int32_t next = first + l->tile;
        /* The next weight tile loads while the cores compute this one. */
        if (next < l->n_out) {
            int32_t n = next + l->tile < l->n_out ? l->tile : l->n_out - next;
            DMA_IN(w[(t + 1) & 1], l->w + (uint32_t)next * (uint32_t)l->n_in * (uint32_t)l->w_bits / 8u,
                ((uint32_t)n * (uint32_t)l->n_in * (uint32_t)l->w_bits + 7u) / 8u, &w_cmd);
        }
        job.w = w[t & 1];
        job.first = first;
        job.count = count;
        cluster_fork(linear_worker, &job);
        if (next < l->n_out) {
            DMA_WAIT(&w_cmd);
        }
    }
    DMA_OUT(y, job.y, y_bytes, &in_cmd);
    DMA_WAIT(&in_cmd);
}

/* A residual add from L2, its elements split across the cores in multiples of 8 (the job is
   the layer's constant descriptor). */
typedef struct {
    add_kernel f;
    const uint8_t *a, *b;
    uint8_t *y;
    int32_t ka, kb, lo, hi, n;
    int sa, sb, a_bits, b_bits, y_bits;
} add_job;

DRIVER void add_worker(void *arg)
{
    const add_job *j = (const add_job *)arg;
    int32_t first, last;
    if (!core_share(j->n, 8, NUM_CORES, &first, &last)) {
        return;
    }
    j->f(j->a + (uint32_t)first * (uint32_t)j->a_bits / 8u,
        j->b + (uint32_t)first * (uint32_t)j->b_bits / 8u,
        j->y + (uint32_t)first * (uint32_t)j->y_bits / 8u, j->ka, j->sa, j->kb, j->sb, j->lo,
        j->hi, last - first);
}
"#;

/// `pulp_target.h`: the PULP runtime (PMSIS) calls the drivers use, or their emulation in plain
/// C for the host check of the PULP path.
pub(super) const TARGET_HEADER: &str = r#"/* The PULP runtime calls of the generated network's PULP path. With the PULP/GAP SDK (PMSIS)
   they are the real ones; with QSEARCH_PULP_EMULATED the host runs the same code, the cores one
   after another, DMA transfers as copies and the XpulpV2 dot products in C. */
#ifndef PULP_TARGET_H
#define PULP_TARGET_H
#include <stdint.h>
#include <string.h>

#ifndef NUM_CORES
#define NUM_CORES 8
#endif

/* The drivers a network does not use are not an error. */
#define DRIVER static __attribute__((unused))

typedef signed char v4s __attribute__((vector_size(4)));
typedef unsigned char v4u __attribute__((vector_size(4)));

#ifdef QSEARCH_PULP_EMULATED

static int emulated_core;
#define CORE_ID() emulated_core
#define L1_DATA
typedef int dma_cmd;
#define DMA_IN(local, external, bytes, cmd) ((void)(cmd), memcpy((local), (external), (bytes)))
#define DMA_OUT(external, local, bytes, cmd) ((void)(cmd), memcpy((external), (local), (bytes)))
#define DMA_WAIT(cmd) ((void)(cmd))

DRIVER void cluster_fork(void (*entry)(void *), void *arg)
{
    for (emulated_core = 0; emulated_core < NUM_CORES; emulated_core++) {
        entry(arg);
    }
    emulated_core = 0;
}

static inline int32_t sdotsp4(v4s a, v4s b, int32_t acc)
{
    return acc + a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3];
}

static inline int32_t sdotusp4(v4u a, v4s b, int32_t acc)
{
    return acc + a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3];
}

#else

#include "pmsis.h"
#define CORE_ID() ((int)pi_core_id())
#define L1_DATA PI_L1
/* A transfer of zero bytes (a tile that reads only padding) is neither issued nor waited for. */
typedef struct {
    pi_cl_dma_cmd_t cmd;
    int pending;
} dma_cmd;

DRIVER void dma_start(uint32_t external, uint32_t local, uint32_t bytes, pi_cl_dma_dir_e dir,
    dma_cmd *c)
{
    c->pending = bytes > 0;
    if (c->pending) {
        pi_cl_dma_cmd(external, local, bytes, dir, &c->cmd);
    }
}

DRIVER void dma_wait(dma_cmd *c)
{
    if (c->pending) {
        pi_cl_dma_cmd_wait(&c->cmd);
    }
    c->pending = 0;
}

#define DMA_IN(local, external, bytes, cmd) \
    dma_start((uint32_t)(external), (uint32_t)(local), (bytes), PI_CL_DMA_DIR_EXT2LOC, (cmd))
#define DMA_OUT(external, local, bytes, cmd) \
    dma_start((uint32_t)(external), (uint32_t)(local), (bytes), PI_CL_DMA_DIR_LOC2EXT, (cmd))
#define DMA_WAIT(cmd) dma_wait(cmd)

DRIVER void cluster_fork(void (*entry)(void *), void *arg)
{
    pi_cl_team_fork(NUM_CORES, entry, arg);
}

#define sdotsp4(a, b, acc) __builtin_pulp_sdotsp4((a), (b), (acc))
#define sdotusp4(a, b, acc) __builtin_pulp_sdotusp4((a), (b), (acc))

#endif
#endif
"#;

/// `main_pulp.c`: runs the network on the cluster on `test_input.h` and prints every layer's
/// cycles and checksum, then the packed output in hex.
pub(super) const MAIN: &str = r#"/* PULP/GAP SDK test program generated by qsearch deploy: runs the network on the cluster on
   test_input.h, prints per-layer cycles and checksums (as the host program's) and the output. */
#include <stdio.h>
#include <string.h>
#include "pmsis.h"
#include "network.h"
#include "test_input.h"

static PI_L2 uint8_t input[NETWORK_INPUT_BYTES];
static PI_L2 uint8_t output[NETWORK_OUTPUT_BYTES];
static uint32_t started, cycles[NETWORK_LAYERS], checksums[NETWORK_LAYERS];

static void trace(int layer, const uint8_t *out, uint32_t bytes)
{
    uint32_t now = pi_perf_read(PI_PERF_CYCLES), h = 2166136261u, i;
    if (layer < 0) {
        started = now;
        return;
    }
    cycles[layer] = now - started;
    for (i = 0; i < bytes; i++) {
        h = (h ^ out[i]) * 16777619u;
    }
    checksums[layer] = h;
}

static void on_cluster(void *arg)
{
    (void)arg;
    pi_perf_conf(1 << PI_PERF_CYCLES);
    pi_perf_reset();
    pi_perf_start();
    network_run(input, output, trace);
    pi_perf_stop();
}

static void run(void)
{
    struct pi_device cluster;
    struct pi_cluster_conf conf;
    struct pi_cluster_task task;
    uint32_t total = 0;
    int l;
    memcpy(input, test_input, NETWORK_INPUT_BYTES);
    pi_cluster_conf_init(&conf);
    pi_open_from_conf(&cluster, &conf);
    if (pi_cluster_open(&cluster)) {
        printf("cannot open the cluster\n");
        pmsis_exit(-1);
    }
    pi_cluster_task(&task, on_cluster, NULL);
    pi_cluster_send_task_to_cl(&cluster, &task);
    pi_cluster_close(&cluster);
    for (l = 0; l < NETWORK_LAYERS; l++) {
        total += cycles[l];
        printf("layer %2d %-12s %6u bytes  checksum %08x  %9u cycles\n", l, network_layer_names[l],
               (unsigned)network_layer_bytes[l], (unsigned)checksums[l], (unsigned)cycles[l]);
    }
    printf("%u cycles\n", (unsigned)total);
    for (l = 0; l < NETWORK_OUTPUT_BYTES; l++) {
        printf("%02x", output[l]);
    }
    printf("\n");
    pmsis_exit(0);
}

/* PMSIS starts the program through pmsis_kickoff on every back-end (FreeRTOS, PulpOS). */
int main(void)
{
    return pmsis_kickoff((void *)run);
}
"#;

/// `Makefile.pulp`: the PULP/GAP SDK build of the PULP path.
pub(super) const MAKEFILE: &str = r#"# PULP SDK / GAP SDK build of the generated network (PULP path, cluster + DMA + XpulpV2).
# Source the SDK's environment first (e.g. `source sourceme.sh`), then:
#   make -f Makefile.pulp clean all run            (GVSoC: add platform=gvsoc)
APP = network
APP_SRCS = main_pulp.c network.c
APP_CFLAGS += -O3 -DQSEARCH_PULP -w
include $(RULES_DIR)/pmsis_rules.mk
"#;
