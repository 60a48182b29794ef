/* Convolution and pointwise convolution, PULP-NN style: the receptive fields of 2 output pixels
 * unpacked into a per-core buffer (im2col, one byte per value), then a register-blocked matmul of
 * 4 output channels x 2 pixels (matmul.h); leftover channels one at a time, an odd last pixel
 * alone, K short of a whole weight word scalar. A 1x1 stride-1 unpadded convolution on 8-bit
 * inputs and weights reads its pixels in place, without im2col.
 *
 * QK_CONV_BLOCKED(name, WB, IB, IS, OB) defines
 *   void name(const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias,
 *             const int32_t *k, int shift, int32_t lo, int32_t hi, const conv_shape *s,
 *             uint8_t *scratch);
 * the generic conv kernel's call plus `scratch`: QK_CONV_BLOCKED_SCRATCH(s) bytes, word-aligned,
 * per core; and name##_narrow (QK_BLOCKED_KERNEL, matmul.h). Weights WB (2, 4, 8) bits signed,
 * inputs IB bits signed if IS, outputs OB bits; any groups; int32 accumulation. Falls back to
 * the generic kernel (kernels.h) where a channel's weights do not start on a byte (K * WB not a
 * multiple of 8, K = kernel_h * kernel_w * in_c / groups). */
#ifndef QSEARCH_KERNELS_CONV_BLOCKED_H
#define QSEARCH_KERNELS_CONV_BLOCKED_H

#include <stdint.h>
#include "kernels.h"
#include "matmul.h"
#include "packed.h"
#include "shape.h"
#include "simd.h"
#include "unpack.h"

#define QK_CONV_K(s) ((s)->kernel_h * (s)->kernel_w * ((s)->in_c / (s)->groups))
#define QK_CONV_BLOCKED_SCRATCH(s) (QK_BLOCK_PIXELS * QK_ROW_BYTES(QK_CONV_K(s)))

/* The activation row of output pixel (oy, ox) for group g: its receptive field unpacked into row
 * (padding taps as zeros) and chunk-permuted for WB, or the pixel's own input where that is the
 * row already. `s` is the caller's local copy of the shape. */
static inline __attribute__((always_inline)) const uint8_t *qk_im2col(uint8_t *row,
    const uint8_t *x, const conv_shape *s, int cin_g, int oy, int ox, int g, int wb, int ib,
    int is)
{
    int ky, kx, i;
    uint8_t *dst = row;
    if (wb == 8 && ib == 8 && s->kernel_h == 1 && s->kernel_w == 1 && s->stride_h == 1
        && s->stride_w == 1 && s->pad_top == 0 && s->pad_left == 0) {
        return x + (oy * s->in_w + ox) * s->in_c + g * cin_g;
    }
    for (ky = 0; ky < s->kernel_h; ky++) {
        int iy = oy * s->stride_h + ky - s->pad_top, ix = ox * s->stride_w - s->pad_left;
        /* Without groups, a kernel row wholly inside the input is one run of the input. */
        if (s->groups == 1 && iy >= 0 && iy < s->in_h && ix >= 0 && ix + s->kernel_w <= s->in_w) {
            qk_unpack_run(dst, x, (iy * s->in_w + ix) * s->in_c, s->kernel_w * cin_g, ib, is);
            dst += s->kernel_w * cin_g;
            continue;
        }
        for (kx = 0; kx < s->kernel_w; kx++, dst += cin_g) {
            int ix = ox * s->stride_w + kx - s->pad_left;
            if (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w) {
                for (i = 0; i < cin_g; i++) {
                    dst[i] = 0;
                }
            } else {
                qk_unpack_run(dst, x, (iy * s->in_w + ix) * s->in_c + g * cin_g, cin_g, ib, is);
            }
        }
    }
    qk_permute_chunks(row, s->kernel_h * s->kernel_w * cin_g / QK_CHUNK(wb), wb);
    return row;
}

/* Output channels [oc, oc_end) of `pixels` (1 or 2) consecutive output pixels from `first`,
 * whose activation rows are a[]: blocks of 4 channels, then the leftover ones. */
static inline __attribute__((always_inline)) void qk_conv_channels(uint8_t *y, const uint8_t *w,
    const int32_t *bias, const int32_t *k, int shift, int path, int32_t lo, int32_t hi, int out_c,
    int32_t first, const uint8_t *const a[QK_BLOCK_PIXELS], int oc, int oc_end, int32_t kk,
    int pixels, int wb, int is, int ob)
{
    const int32_t row_bytes = kk * wb / 8;
    int32_t kv[QK_BLOCK_ROWS];
    int r, p;
    for (; oc + QK_BLOCK_ROWS <= oc_end; oc += QK_BLOCK_ROWS) {
        int32_t acc[QK_BLOCK_ROWS][QK_BLOCK_PIXELS];
        QK_UNROLL
        for (r = 0; r < QK_BLOCK_ROWS; r++) {
            QK_UNROLL
            for (p = 0; p < pixels; p++) {
                acc[r][p] = bias[oc + r];
            }
        }
        qk_mm_block(acc, w + oc * row_bytes, row_bytes, a, kk, QK_BLOCK_ROWS, pixels, wb, is);
        /* The multipliers loaded once for both pixels: past the first pixel's byte stores, the
         * compiler would load them again (bytes may alias them). */
        QK_UNROLL
        for (r = 0; r < QK_BLOCK_ROWS; r++) {
            kv[r] = k[oc + r];
        }
        QK_UNROLL
        for (p = 0; p < pixels; p++) {
            qk_store_block(y, (first + p) * out_c + oc, acc, p, QK_BLOCK_ROWS, kv, shift, path, lo,
                hi, ob);
        }
    }
    for (; oc < oc_end; oc++) {
        int32_t acc[QK_BLOCK_ROWS][QK_BLOCK_PIXELS];
        QK_UNROLL
        for (p = 0; p < pixels; p++) {
            acc[0][p] = bias[oc];
        }
        qk_mm_block(acc, w + oc * row_bytes, row_bytes, a, kk, 1, pixels, wb, is);
        QK_UNROLL
        for (p = 0; p < pixels; p++) {
            qk_store_block(y, (first + p) * out_c + oc, acc, p, 1, k + oc, shift, path, lo, hi,
                ob);
        }
    }
}

/* Every group's output pixels, in pairs and an odd last one. `s` is a local copy of the shape. */
static inline __attribute__((always_inline)) void qk_conv_pixels(const uint8_t *x, uint8_t *y,
    const uint8_t *w, const int32_t *bias, const int32_t *k, int shift, int path, int32_t lo,
    int32_t hi, const conv_shape *s, uint8_t *scratch, int wb, int ib, int is, int ob)
{
    const int cin_g = s->in_c / s->groups, cout_g = s->out_c / s->groups;
    const int32_t kk = s->kernel_h * s->kernel_w * cin_g, pixels = s->out_h * s->out_w;
    uint8_t *second = scratch + QK_ROW_BYTES(kk);
    int g, oy, ox;
    for (g = 0; g < s->groups; g++) {
        const int oc = g * cout_g;
        int32_t p = 0;
        /* (oy, ox) is pixel p; the second of a pair may start the next row. */
        for (oy = 0, ox = 0; p + 2 <= pixels; p += 2) {
            const uint8_t *a[QK_BLOCK_PIXELS];
            a[0] = qk_im2col(scratch, x, s, cin_g, oy, ox, g, wb, ib, is);
            if (++ox == s->out_w) {
                ox = 0;
                oy++;
            }
            a[1] = qk_im2col(second, x, s, cin_g, oy, ox, g, wb, ib, is);
            if (++ox == s->out_w) {
                ox = 0;
                oy++;
            }
            qk_conv_channels(y, w, bias, k, shift, path, lo, hi, s->out_c, p, a, oc, oc + cout_g,
                kk, 2, wb, is, ob);
        }
        if (p < pixels) {
            const uint8_t *a[QK_BLOCK_PIXELS];
            a[0] = a[1] = qk_im2col(scratch, x, s, cin_g, oy, ox, g, wb, ib, is);
            qk_conv_channels(y, w, bias, k, shift, path, lo, hi, s->out_c, p, a, oc, oc + cout_g,
                kk, 1, wb, is, ob);
        }
    }
}

static inline __attribute__((always_inline)) void qk_conv_blocked(const uint8_t *x, uint8_t *y,
    const uint8_t *w, const int32_t *bias, const int32_t *k, int shift, int32_t lo, int32_t hi,
    const conv_shape *shape, uint8_t *scratch, qk_dot_fn_int32_t dot, int wb, int ib, int is,
    int ob, int narrow)
{
    /* A local copy: through the pointer, every byte im2col stores would reload the fields. */
    const conv_shape s = *shape;
    if (s.kernel_h * s.kernel_w * (s.in_c / s.groups) * wb % 8 != 0) {
        qk_conv_int32_t(x, y, w, bias, k, shift, lo, hi, shape, dot, ob);
        return;
    }
    QK_UNSWITCH_REQUANT_CLIP(shift, lo, hi, narrow, qk_conv_pixels(x, y, w, bias, k, shift, path,
        lo, hi, &s, scratch, wb, ib, is, ob));
}

#define QK_CONV_BLOCKED(name, WB, IB, IS, OB)                                                    \
    QK_DOT(name, WB, IB, IS, int32_t)                                                            \
    QK_BLOCKED_KERNEL(name, (const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias, \
        const int32_t *k, int shift, int32_t lo, int32_t hi, const conv_shape *s,                \
        uint8_t *scratch),                                                                       \
        qk_conv_blocked(x, y, w, bias, k, shift, lo, hi, s, scratch, name##_dot, WB, IB, IS, OB, \
            narrow))

#endif
