/* The PULP path's layer drivers: every layer on the cluster (NUM_CORES cores), its output rows
 * or neurons split across the cores, its data moved through L1 (L1_BYTES) in tiles by DMA with
 * double buffering: the next tile's input loads while the cores compute this one. The runtime
 * calls (cluster fork, DMA, core id) are pulp_target.h's; the kernels are kernels.h's, called
 * through the descriptors the generated network.c defines per layer, before which it defines
 * L1_BYTES.
 *
 * A windowed layer on a blocked kernel (conv_blocked.h, depthwise.h) gives each core its own
 * scratch area of `scratch_bytes` (a multiple of 4) from `scratch`; a linear layer on one
 * (linear_blocked.h) has one area, its input unpacked once for every core and weight tile. A
 * tiled layer's areas are at the start of L1, its tiles after them; an untiled layer's are at
 * the start of L1 or, where L1 cannot hold them, in a static buffer of network.c. */
#ifndef QSEARCH_KERNELS_PULP_LAYERS_H
#define QSEARCH_KERNELS_PULP_LAYERS_H

#include <stdint.h>
#include "pulp_target.h"
#include "shape.h"

L1_DATA static uint8_t l1[L1_BYTES] __attribute__((aligned(4), unused));

typedef void (*conv_kernel)(const uint8_t *, uint8_t *, const uint8_t *, const int32_t *,
    const int32_t *, int, int32_t, int32_t, const conv_shape *);
typedef void (*blocked_conv_kernel)(const uint8_t *, uint8_t *, const uint8_t *,
    const int32_t *, const int32_t *, int, int32_t, int32_t, const conv_shape *, uint8_t *);
typedef void (*pool_kernel)(const uint8_t *, uint8_t *, int32_t, int, int32_t, int32_t,
    const conv_shape *);
typedef void (*linear_kernel)(const uint8_t *, uint8_t *, const uint8_t *, const int32_t *,
    const int32_t *, int, int32_t, int32_t, int32_t, int32_t);
typedef const uint8_t *(*linear_operand)(const uint8_t *, uint8_t *, int32_t);
typedef void (*add_kernel)(const uint8_t *, const uint8_t *, uint8_t *, int32_t, int, int32_t,
    int, int32_t, int32_t, int32_t);

/* A convolution (a generic or a blocked kernel) or pooling: `tile_rows` output rows per tile
   (0: straight from L2). */
typedef struct {
    conv_kernel conv;
    blocked_conv_kernel blocked;
    pool_kernel pool;
    const uint8_t *w;
    const int32_t *bias, *k;
    int32_t k0;
    int shift;
    int32_t lo, hi;
    const conv_shape *s;
    uint32_t in_row, out_row, w_bytes;
    int tile_rows, cores, weights_in_l1;
    uint8_t *scratch;
    uint32_t scratch_bytes;
} windowed_layer;

/* A linear layer: `tile` output neurons per weight tile (0: straight from L2). A blocked kernel
   `f` reads the operand its `operand` makes of the input (0 for a generic kernel). */
typedef struct {
    linear_kernel f;
    linear_operand operand;
    const uint8_t *w;
    const int32_t *bias, *k;
    int shift;
    int32_t lo, hi, n_in, n_out;
    int w_bits, in_bits, out_bits;
    int32_t tile;
    uint8_t *scratch;
    uint32_t scratch_bytes;
} linear_layer;

DRIVER uint32_t words(uint32_t bytes)
{
    return (bytes + 3u) & ~3u;
}

/* This core's scratch area of a blocked kernel. */
DRIVER uint8_t *core_scratch(uint8_t *scratch, uint32_t bytes)
{
    return scratch + (uint32_t)CORE_ID() * bytes;
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
    if (l->blocked) {
        l->blocked(j->x, y, j->w, l->bias, l->k, l->shift, l->lo, l->hi, &s,
            core_scratch(l->scratch, l->scratch_bytes));
    } else if (l->conv) {
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
    at = NUM_CORES * l->scratch_bytes;
    if (l->weights_in_l1) {
        DMA_IN(l1 + at, l->w, l->w_bytes, &w_cmd);
        job.w = l1 + at;
        at += words(l->w_bytes);
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
    uint8_t *y;
    const uint8_t *w;
    if (!core_share(j->count, 8, NUM_CORES, &a, &b)) {
        return;
    }
    y = j->y + (uint32_t)(j->first + a) * (uint32_t)l->out_bits / 8u;
    w = j->w + (uint32_t)a * (uint32_t)l->n_in * (uint32_t)l->w_bits / 8u;
    l->f(j->x, y, w, l->bias + j->first + a, l->k + j->first + a, l->shift, l->lo, l->hi, l->n_in,
        b - a);
}

/* The input `x` as the layer's kernel reads it: unpacked once, by the core that runs the layer. */
DRIVER const uint8_t *linear_input(const linear_layer *l, const uint8_t *x)
{
    return l->operand ? l->operand(x, l->scratch, l->n_in) : x;
}

DRIVER void run_linear(const linear_layer *l, const uint8_t *x, uint8_t *y)
{
    linear_job job;
    uint32_t x_bytes = ((uint32_t)l->n_in * (uint32_t)l->in_bits + 7u) / 8u;
    uint32_t y_bytes = ((uint32_t)l->n_out * (uint32_t)l->out_bits + 7u) / 8u;
    uint32_t w_tile = ((uint32_t)l->tile * (uint32_t)l->n_in * (uint32_t)l->w_bits + 7u) / 8u;
    uint8_t *w[2], *local;
    dma_cmd in_cmd, w_cmd;
    int32_t first;
    int t = 0;
    job.l = l;
    if (l->tile == 0) {
        job.x = linear_input(l, x);
        job.y = y;
        job.w = l->w;
        job.first = 0;
        job.count = l->n_out;
        cluster_fork(linear_worker, &job);
        return;
    }
    /* The scratch area, then the input and output vectors and the weight tiles. */
    local = l1 + l->scratch_bytes;
    job.y = local + words(x_bytes);
    w[0] = job.y + words(y_bytes);
    w[1] = w[0] + words(w_tile);
    memset(job.y, 0, y_bytes);
    DMA_IN(local, x, x_bytes, &in_cmd);
    DMA_IN(w[0], l->w, l->tile < l->n_out ? w_tile : ((uint32_t)l->n_out * (uint32_t)l->n_in * (uint32_t)l->w_bits + 7u) / 8u, &w_cmd);
    DMA_WAIT(&in_cmd);
    job.x = linear_input(l, local);
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

#endif
