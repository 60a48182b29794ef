/* Depthwise convolution (groups == in_c == out_c) over HWC buffers. Channel by channel: the
 * channel's input plane gathered into the scratch buffer one byte per value with its padding as
 * zeros, and the channel's kernel unpacked with each row zero-padded to whole words; then every
 * output is kernel_h x ceil(kernel_w / 4) sdotp over unaligned word loads of the plane (the pad
 * lanes multiply zero weights). A 3x3 output costs 3 loads of the plane, 3 of the kernel and 3
 * sdotp; no layout needs a fallback (the kernel unpacks with qk_load).
 *
 * QK_DEPTHWISE(name, WB, IB, IS, OB) defines
 *   void name(const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias,
 *             const int32_t *k, int shift, int32_t lo, int32_t hi, const conv_shape *s,
 *             uint8_t *scratch);
 * with QK_DEPTHWISE_SCRATCH(s) bytes of word-aligned scratch; and name##_narrow (QK_BLOCKED_KERNEL,
 * matmul.h). */
#ifndef QSEARCH_KERNELS_DEPTHWISE_H
#define QSEARCH_KERNELS_DEPTHWISE_H

#include <stdint.h>
#include "attributes.h"
#include "matmul.h"
#include "packed.h"
#include "shape.h"
#include "simd.h"
#include "unpack.h"

/* A kernel row in whole words, the gathered plane's width and height, the kernel's rows in the
 * scratch buffer. */
#define QK_DW_ROW(s) QK_ROW_BYTES((s)->kernel_w)
#define QK_DW_PLANE_W(s) (((s)->out_w - 1) * (s)->stride_w + QK_DW_ROW(s))
#define QK_DW_PLANE_H(s) (((s)->out_h - 1) * (s)->stride_h + (s)->kernel_h)
#define QK_DW_KERNEL_ROWS(s) ((s)->kernel_h > 3 ? (s)->kernel_h : 3)
#define QK_DEPTHWISE_SCRATCH(s)                                                                  \
    (QK_ROW_BYTES(QK_DW_PLANE_W(s) * QK_DW_PLANE_H(s)) + QK_DW_KERNEL_ROWS(s) * QK_DW_ROW(s))

/* Channel c's input plane into `plane` (QK_DW_PLANE_H x QK_DW_PLANE_W bytes), padding as zeros:
 * rows and columns outside the input zero-filled, the inside read with the HWC stride in_c. */
static inline __attribute__((always_inline)) void qk_dw_gather(uint8_t *plane, const uint8_t *x,
    const conv_shape *s, int c, int ib, int is)
{
    const int plane_w = QK_DW_PLANE_W(s), plane_h = QK_DW_PLANE_H(s);
    const int first = s->pad_left < plane_w ? s->pad_left : plane_w;
    const int inside = s->in_w < plane_w - first ? s->in_w : plane_w - first;
    int r, col;
    for (r = 0; r < plane_h; r++, plane += plane_w) {
        int iy = r - s->pad_top;
        if (iy < 0 || iy >= s->in_h) {
            for (col = 0; col < plane_w; col++) {
                plane[col] = 0;
            }
            continue;
        }
        for (col = 0; col < first; col++) {
            plane[col] = 0;
        }
        if (ib == 8) {
            const uint8_t *from = x + iy * s->in_w * s->in_c + c;
            for (col = 0; col < inside; col++, from += s->in_c) {
                plane[first + col] = *from;
            }
        } else {
            int32_t index = iy * s->in_w * s->in_c + c;
            for (col = 0; col < inside; col++, index += s->in_c) {
                plane[first + col] = (uint8_t)qk_load(x, index, ib, is);
            }
        }
        for (col = first + inside; col < plane_w; col++) {
            plane[col] = 0;
        }
    }
}

/* Channel c's outputs from its gathered plane and unpacked kernel; a 3x3 (any kernel of 3 rows
 * of at most 4 taps) keeps its kernel's 3 words in registers. */
static inline __attribute__((always_inline)) void qk_dw_outputs(uint8_t *y, const uint8_t *plane,
    const uint8_t *kern, int32_t bias, int32_t k, int shift, int path, int32_t lo, int32_t hi,
    const conv_shape *s, int c, int is, int ob)
{
    const int row = QK_DW_ROW(s), plane_w = QK_DW_PLANE_W(s), words = row / 4;
    const int three = s->kernel_h == 3 && words == 1;
    const uint32_t k0 = qk_ld32(kern), k1 = qk_ld32(kern + row), k2 = qk_ld32(kern + 2 * row);
    int32_t out = c;
    int oy, ox, ky, q;
    for (oy = 0; oy < s->out_h; oy++) {
        const uint8_t *window = plane + oy * s->stride_h * plane_w;
        for (ox = 0; ox < s->out_w; ox++, window += s->stride_w, out += s->out_c) {
            int32_t acc = bias;
            if (three) {
                acc = qk_dot4(qk_ld32(window), k0, is, acc);
                acc = qk_dot4(qk_ld32(window + plane_w), k1, is, acc);
                acc = qk_dot4(qk_ld32(window + 2 * plane_w), k2, is, acc);
            } else {
                const uint8_t *p = window, *kw = kern;
                for (ky = 0; ky < s->kernel_h; ky++, p += plane_w) {
                    for (q = 0; q < words; q++, kw += 4) {
                        acc = qk_dot4(qk_ld32(p + 4 * q), qk_ld32(kw), is, acc);
                    }
                }
            }
            acc = qk_requant_words(acc, k, shift, path, lo, hi);
            if (ob == 8) {
                y[out] = (uint8_t)acc;
            } else {
                qk_store(y, out, ob, acc);
            }
        }
    }
}

static inline __attribute__((always_inline)) void qk_depthwise(const uint8_t *x, uint8_t *y,
    const uint8_t *w, const int32_t *bias, const int32_t *k, int shift, int32_t lo, int32_t hi,
    const conv_shape *shape, uint8_t *scratch, int wb, int ib, int is, int ob, int narrow)
{
    /* A local copy: through the pointer, every byte stored would reload the fields. */
    const conv_shape copy = *shape, *s = &copy;
    const int row = QK_DW_ROW(s), taps = s->kernel_h * s->kernel_w;
    uint8_t *plane = scratch, *kern = scratch + QK_ROW_BYTES(QK_DW_PLANE_W(s) * QK_DW_PLANE_H(s));
    int c, ky, col;
    for (c = 0; c < s->out_c; c++) {
        /* At least 3 rows, zeros past kernel_h, so that the 3-row path may read them. */
        for (ky = 0; ky < QK_DW_KERNEL_ROWS(s); ky++) {
            for (col = 0; col < row; col++) {
                kern[ky * row + col] = ky < s->kernel_h && col < s->kernel_w
                    ? (uint8_t)qk_load(w, c * taps + ky * s->kernel_w + col, wb, 1) : 0;
            }
        }
        qk_dw_gather(plane, x, s, c, ib, is);
        QK_UNSWITCH_REQUANT(shift, narrow, qk_dw_outputs(y, plane, kern, bias[c], k[c], shift,
            path, lo, hi, s, c, is, ob));
    }
}

#define QK_DEPTHWISE(name, WB, IB, IS, OB)                                                       \
    QK_BLOCKED_KERNEL(name, (const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias, \
        const int32_t *k, int shift, int32_t lo, int32_t hi, const conv_shape *s,                \
        uint8_t *scratch),                                                                       \
        qk_depthwise(x, y, w, bias, k, shift, lo, hi, s, scratch, WB, IB, IS, OB, narrow))

#endif
