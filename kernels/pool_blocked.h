/* Poolings on the PULP path, PULP-NN style: the channels of a window's taps reduced a word at a
 * time (4 channels at 8 bits, 8 at 4 bits, 16 at 2 bits), each packed word read once per lane
 * slot and its values spread to four 8-bit lanes in place with two lane shifts (simd.h,
 * qk_lanes_s) instead of value by value; a maximum with one SIMD max per lane word and tap, a
 * sum with one sdotp per channel and tap (the lane's one-hot weight picks the channel), both in
 * registers; then the requantization of an unswitched path (matmul.h) and whole-byte stores.
 * Channels short of a word are reduced value by value. The results are the generic
 * kernels' (pool.h) bit for bit: the same maximum or sum over the taps inside the input (a window
 * wholly in the padding reduces to INT32_MIN or 0 as there), then the same requantization.
 *
 * QK_MAXPOOL_BLOCKED / QK_AVGPOOL_BLOCKED(name, IB, IS, OB) define the generic window pooling's
 * call (kernels.h), QK_GLOBALMAXPOOL_BLOCKED / QK_GLOBALAVGPOOL_BLOCKED(name, IB, IS, OB) the
 * global one's, each with its 32-bit variant name##_narrow (QK_BLOCKED_KERNEL, matmul.h); inputs
 * IB bits signed if IS, outputs OB bits, int32 sums. No scratch. Falls back to the generic kernel
 * where a pixel's channels do not end on a byte (in_c * IB not a multiple of 8). */
#ifndef QSEARCH_KERNELS_POOL_BLOCKED_H
#define QSEARCH_KERNELS_POOL_BLOCKED_H

#include <stdint.h>
#include "kernels.h"
#include "matmul.h"
#include "packed.h"
#include "shape.h"
#include "simd.h"

/* The four values of lane slot `slot` of a packed word of `bits`-bit values as 8-bit lanes:
 * lane b holds value b * (8 / bits) + slot, sign- or zero-extended. */
static inline __attribute__((always_inline)) uint32_t qk_pool_lanes(uint32_t w, int bits,
    int slot, int is_signed)
{
    if (bits == 8 || is_signed) {
        return qk_lanes_s(w, bits, slot);
    }
    return (w >> (bits * slot)) & (0x01010101u * ((1u << bits) - 1u));
}

/* Lane `lane` of w, sign- or zero-extended. */
static inline __attribute__((always_inline)) int32_t qk_lane(uint32_t w, int lane, int is_signed)
{
    return is_signed ? (int32_t)(int8_t)(w >> (8 * lane)) : (int32_t)(uint8_t)(w >> (8 * lane));
}

/* A reduction times 2^pre (see qk_pool_blocked). */
static inline __attribute__((always_inline)) int32_t qk_pre_scale(int32_t v, int pre)
{
    return (int32_t)((uint32_t)v << pre);
}

/* Requantizes the n (a multiple of 4) reductions v of consecutive channels and stores them as
 * values first.. of y: whole bytes where the run starts on one. */
static inline __attribute__((always_inline)) void qk_pool_store(uint8_t *y, int32_t first,
    const int32_t *v, int n, int32_t k, int shift, int pre, int path, int32_t lo, int32_t hi,
    int ob)
{
    int i;
    if (first % (8 / ob) == 0) {
        const int per_byte = 8 / ob;
        uint8_t *out = y + first / per_byte;
        QK_UNROLL
        for (i = 0; i < n; i += per_byte) {
            uint32_t bits = 0;
            int j;
            QK_UNROLL
            for (j = 0; j < per_byte; j++) {
                uint32_t r = (uint32_t)qk_requant_words(qk_pre_scale(v[i + j], pre), k, shift,
                    path, lo, hi);
                bits |= (r & ((1u << ob) - 1u)) << (j * ob);
            }
            *out++ = (uint8_t)bits;
        }
        return;
    }
    for (i = 0; i < n; i++) {
        qk_store(y, first + i, ob,
            qk_requant_words(qk_pre_scale(v[i], pre), k, shift, path, lo, hi));
    }
}

/* The taps of one output pixel: `rows` x `cols` pixels from byte `base` (that pixel's first
 * channel word), `row_bytes` and `col_bytes` apart. */
typedef struct {
    const uint8_t *base;
    int rows, cols;
    int32_t row_bytes, col_bytes;
} qk_pool_taps;

/* Adds a tap's lane word x to a maximum m or to the four channels' sums. */
static inline __attribute__((always_inline)) void qk_pool_tap(uint32_t *m, int32_t sum[4],
    uint32_t x, int is_max, int is)
{
    int lane;
    if (is_max) {
        *m = qk_max_lanes(*m, x, is);
        return;
    }
    QK_UNROLL
    for (lane = 0; lane < 4; lane++) {
        sum[lane] = qk_dot4(x, 1u << (8 * lane), is, sum[lane]);
    }
}

/* The reductions of the 32 / ib channels of the word at t->base over the taps (at least one)
 * into v, in channel order. */
static inline __attribute__((always_inline)) void qk_pool_word(int32_t v[16],
    const qk_pool_taps *t, int is_max, int ib, int is)
{
    const int slots = 8 / ib;
    int slot, lane, r, c;
    QK_UNROLL
    for (slot = 0; slot < slots; slot++) {
        const uint8_t *row = t->base;
        uint32_t m = is ? 0x80808080u : 0u;
        int32_t sum[4] = {0, 0, 0, 0};
        if (t->rows == 2 && t->cols == 2) {
            /* The usual 2x2 window without loops (a taken branch costs the core 2 cycles). */
            const uint8_t *below = row + t->row_bytes;
            qk_pool_tap(&m, sum, qk_pool_lanes(qk_ld32(row), ib, slot, is), is_max, is);
            qk_pool_tap(&m, sum, qk_pool_lanes(qk_ld32(row + t->col_bytes), ib, slot, is),
                is_max, is);
            qk_pool_tap(&m, sum, qk_pool_lanes(qk_ld32(below), ib, slot, is), is_max, is);
            qk_pool_tap(&m, sum, qk_pool_lanes(qk_ld32(below + t->col_bytes), ib, slot, is),
                is_max, is);
        } else {
            for (r = 0; r < t->rows; r++, row += t->row_bytes) {
                const uint8_t *p = row;
                for (c = 0; c < t->cols; c++, p += t->col_bytes) {
                    qk_pool_tap(&m, sum, qk_pool_lanes(qk_ld32(p), ib, slot, is), is_max, is);
                }
            }
        }
        QK_UNROLL
        for (lane = 0; lane < 4; lane++) {
            v[lane * slots + slot] = is_max ? qk_lane(m, lane, is) : sum[lane];
        }
    }
}

/* Every output pixel of a window pooling. `s` is the caller's local copy of the shape. */
static inline __attribute__((always_inline)) void qk_pool_pixels(const uint8_t *x, uint8_t *y,
    int32_t k, int shift, int pre, int path, int32_t lo, int32_t hi, const conv_shape *s,
    int is_max, int ib, int is, int ob)
{
    const int per_word = 32 / ib, channels = s->in_c;
    const int32_t col_bytes = channels * ib / 8, row_bytes = s->in_w * col_bytes;
    int oy, ox;
    for (oy = 0; oy < s->out_h; oy++) {
        const int iy = oy * s->stride_h - s->pad_top;
        const int ky0 = iy < 0 ? -iy : 0;
        const int ky1 = s->in_h - iy < s->kernel_h ? s->in_h - iy : s->kernel_h;
        for (ox = 0; ox < s->out_w; ox++) {
            const int ix = ox * s->stride_w - s->pad_left;
            const int kx0 = ix < 0 ? -ix : 0;
            const int kx1 = s->in_w - ix < s->kernel_w ? s->in_w - ix : s->kernel_w;
            const int32_t out = (oy * s->out_w + ox) * s->out_c;
            qk_pool_taps t;
            int c;
            t.rows = ky1 > ky0 ? ky1 - ky0 : 0;
            t.cols = kx1 > kx0 ? kx1 - kx0 : 0;
            t.row_bytes = row_bytes;
            t.col_bytes = col_bytes;
            if (t.rows == 0 || t.cols == 0) {
                /* A window wholly in the padding: the empty maximum or sum. */
                for (c = 0; c < channels; c++) {
                    qk_store(y, out + c, ob,
                        qk_requant(is_max ? INT32_MIN : 0, k, shift - pre, lo, hi));
                }
                continue;
            }
            t.base = x + (iy + ky0) * row_bytes + (ix + kx0) * col_bytes;
            for (c = 0; c + per_word <= channels; c += per_word, t.base += 4) {
                int32_t v[16];
                qk_pool_word(v, &t, is_max, ib, is);
                qk_pool_store(y, out + c, v, per_word, k, shift, pre, path, lo, hi, ob);
            }
            /* The channels short of a word, value by value. */
            for (; c < channels; c++) {
                int32_t acc = is_max ? INT32_MIN : 0;
                int r, cc;
                for (r = ky0; r < ky0 + t.rows; r++) {
                    for (cc = kx0; cc < kx0 + t.cols; cc++) {
                        int32_t v = qk_load(x, ((iy + r) * s->in_w + ix + cc) * channels + c, ib,
                            is);
                        acc = is_max ? (v > acc ? v : acc) : acc + v;
                    }
                }
                qk_store(y, out + c, ob,
                    qk_requant_words(qk_pre_scale(acc, pre), k, shift, path, lo, hi));
            }
        }
    }
}

static inline __attribute__((always_inline)) void qk_pool_blocked(const uint8_t *x, uint8_t *y,
    int32_t k, int shift, int32_t lo, int32_t hi, const conv_shape *shape, int is_max, int ib,
    int is, int ob, int narrow)
{
    /* A local copy: through the pointer, every byte stored would reload the fields. */
    const conv_shape s = *shape;
    if (s.in_c * ib % 8 != 0) {
        qk_pool_int32_t(x, y, k, shift, lo, hi, shape, is_max, ib, is, ob);
        return;
    }
    /* A pooling that keeps its scale has shift 31 (k just below 2^31), short of the wide
     * requantization (matmul.h). Its reductions are small: times 2^pre, with shift + pre, they
     * give the same outputs on the wide path wherever the largest one stays below 2^31. The
     * narrow path needs no such help. */
    const int32_t largest = (1 << ib) * (is_max ? 1 : s.kernel_h * s.kernel_w);
    int pre = shift < 33 ? 33 - shift : 0;
    if (narrow || pre > 30 || largest > INT32_MAX >> pre) {
        pre = 0;
    }
    QK_UNSWITCH_REQUANT(shift + pre, narrow, qk_pool_pixels(x, y, k, shift + pre, pre, path, lo,
        hi, &s, is_max, ib, is, ob));
}

/* A global pooling is a window pooling of one output pixel whose window is every pixel. */
static inline __attribute__((always_inline)) void qk_global_pool_blocked(const uint8_t *x,
    uint8_t *y, int32_t k, int shift, int32_t lo, int32_t hi, int32_t pixels, int32_t channels,
    int is_max, int ib, int is, int ob, int narrow)
{
    const conv_shape s = {channels, 1, pixels, channels, 1, 1, 1, pixels, 1, 1, 0, 0, 1};
    qk_pool_blocked(x, y, k, shift, lo, hi, &s, is_max, ib, is, ob, narrow);
}

#define QK_POOL_BLOCKED(name, is_max, IB, IS, OB)                                                \
    QK_BLOCKED_KERNEL(name, (const uint8_t *x, uint8_t *y, int32_t k, int shift, int32_t lo,     \
        int32_t hi, const conv_shape *s),                                                        \
        qk_pool_blocked(x, y, k, shift, lo, hi, s, is_max, IB, IS, OB, narrow))
#define QK_MAXPOOL_BLOCKED(name, IB, IS, OB) QK_POOL_BLOCKED(name, 1, IB, IS, OB)
#define QK_AVGPOOL_BLOCKED(name, IB, IS, OB) QK_POOL_BLOCKED(name, 0, IB, IS, OB)

#define QK_GLOBAL_POOL_BLOCKED(name, is_max, IB, IS, OB)                                         \
    QK_BLOCKED_KERNEL(name, (const uint8_t *x, uint8_t *y, int32_t k, int shift, int32_t lo,     \
        int32_t hi, int32_t pixels, int32_t channels),                                           \
        qk_global_pool_blocked(x, y, k, shift, lo, hi, pixels, channels, is_max, IB, IS, OB,     \
            narrow))
#define QK_GLOBALMAXPOOL_BLOCKED(name, IB, IS, OB) QK_GLOBAL_POOL_BLOCKED(name, 1, IB, IS, OB)
#define QK_GLOBALAVGPOOL_BLOCKED(name, IB, IS, OB) QK_GLOBAL_POOL_BLOCKED(name, 0, IB, IS, OB)

#endif
