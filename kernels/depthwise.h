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
 * with QK_DEPTHWISE_SCRATCH(s) bytes of word-aligned scratch. */
#ifndef QSEARCH_KERNELS_DEPTHWISE_H
#define QSEARCH_KERNELS_DEPTHWISE_H

#include <stdint.h>
#include "packed.h"
#include "shape.h"
#include "simd.h"
#include "unpack.h"

/* A kernel row in whole words, the gathered plane's width and height. */
#define QK_DW_ROW(s) QK_ROW_BYTES((s)->kernel_w)
#define QK_DW_PLANE_W(s) (((s)->out_w - 1) * (s)->stride_w + QK_DW_ROW(s))
#define QK_DW_PLANE_H(s) (((s)->out_h - 1) * (s)->stride_h + (s)->kernel_h)
#define QK_DEPTHWISE_SCRATCH(s)                                                                  \
    (QK_ROW_BYTES(QK_DW_PLANE_W(s) * QK_DW_PLANE_H(s)) + (s)->kernel_h * QK_DW_ROW(s))

static inline __attribute__((always_inline)) void qk_depthwise(const uint8_t *x, uint8_t *y,
    const uint8_t *w, const int32_t *bias, const int32_t *k, int shift, int32_t lo, int32_t hi,
    const conv_shape *shape, uint8_t *scratch, int wb, int ib, int is, int ob)
{
    /* A local copy: through the pointer, every byte stored would reload the fields. */
    const conv_shape copy = *shape, *s = &copy;
    const int row = QK_DW_ROW(s), plane_w = QK_DW_PLANE_W(s), plane_h = QK_DW_PLANE_H(s);
    const int words = row / 4, taps = s->kernel_h * s->kernel_w;
    uint8_t *plane = scratch, *kern = scratch + QK_ROW_BYTES(plane_w * plane_h);
    int c, r, col, oy, ox, ky, q;
    for (c = 0; c < s->out_c; c++) {
        for (ky = 0; ky < s->kernel_h; ky++) {
            for (col = 0; col < row; col++) {
                kern[ky * row + col] = col < s->kernel_w
                    ? (uint8_t)qk_load(w, c * taps + ky * s->kernel_w + col, wb, 1) : 0;
            }
        }
        for (r = 0; r < plane_h; r++) {
            int iy = r - s->pad_top;
            uint8_t *dst = plane + r * plane_w;
            for (col = 0; col < plane_w; col++) {
                int ix = col - s->pad_left;
                dst[col] = iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w ? 0
                    : (uint8_t)qk_load(x, (iy * s->in_w + ix) * s->in_c + c, ib, is);
            }
        }
        for (oy = 0; oy < s->out_h; oy++) {
            const uint8_t *window = plane + oy * s->stride_h * plane_w;
            for (ox = 0; ox < s->out_w; ox++, window += s->stride_w) {
                int32_t acc = bias[c];
                const uint8_t *p = window, *kw = kern;
                for (ky = 0; ky < s->kernel_h; ky++, p += plane_w) {
                    for (q = 0; q < words; q++, kw += 4) {
                        acc = qk_dot4(qk_ld32(p + 4 * q), qk_ld32(kw), is, acc);
                    }
                }
                qk_store(y, (oy * s->out_w + ox) * s->out_c + c, ob,
                    qk_requant(acc, k[c], shift, lo, hi));
            }
        }
    }
}

#define QK_DEPTHWISE(name, WB, IB, IS, OB)                                                       \
    void name(const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias,               \
        const int32_t *k, int shift, int32_t lo, int32_t hi, const conv_shape *s,                \
        uint8_t *scratch)                                                                        \
    {                                                                                            \
        qk_depthwise(x, y, w, bias, k, shift, lo, hi, s, scratch, WB, IB, IS, OB);               \
    }

#endif
