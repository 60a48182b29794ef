/* The scalar convolution and linear layer the blocked kernels fall back to where their layout
 * rules the word loads out: a weight row (one output channel or neuron) that does not start on
 * a byte, i.e. K * weight_bits not a multiple of 8. The loops of the generic kernels: per output,
 * the dot product of the taps inside the input, int32 accumulator, then the requantization. */
#ifndef QSEARCH_KERNELS_FALLBACK_H
#define QSEARCH_KERNELS_FALLBACK_H

#include <stdint.h>
#include "packed.h"
#include "shape.h"

static inline __attribute__((always_inline)) void qk_conv_fallback(const uint8_t *x, uint8_t *y,
    const uint8_t *w, const int32_t *bias, const int32_t *k, int shift, int32_t lo, int32_t hi,
    const conv_shape *s, int wb, int ib, int is, int ob)
{
    int oy, ox, oc, ky, kx, i;
    int cin_g = s->in_c / s->groups, cout_g = s->out_c / s->groups;
    for (oy = 0; oy < s->out_h; oy++) {
        for (ox = 0; ox < s->out_w; ox++) {
            for (oc = 0; oc < s->out_c; oc++) {
                int g = oc / cout_g;
                int32_t acc = bias[oc];
                for (ky = 0; ky < s->kernel_h; ky++) {
                    int iy = oy * s->stride_h + ky - s->pad_top;
                    if (iy < 0 || iy >= s->in_h) continue;
                    for (kx = 0; kx < s->kernel_w; kx++) {
                        int ix = ox * s->stride_w + kx - s->pad_left;
                        int32_t wbase = ((oc * s->kernel_h + ky) * s->kernel_w + kx) * cin_g;
                        int32_t xbase = (iy * s->in_w + ix) * s->in_c + g * cin_g;
                        if (ix < 0 || ix >= s->in_w) continue;
                        for (i = 0; i < cin_g; i++) {
                            acc += qk_load(w, wbase + i, wb, 1) * qk_load(x, xbase + i, ib, is);
                        }
                    }
                }
                qk_store(y, (oy * s->out_w + ox) * s->out_c + oc, ob,
                    qk_requant(acc, k[oc], shift, lo, hi));
            }
        }
    }
}

static inline __attribute__((always_inline)) void qk_linear_fallback(const uint8_t *x,
    uint8_t *y, const uint8_t *w, const int32_t *bias, const int32_t *k, int shift, int32_t lo,
    int32_t hi, int32_t n_in, int32_t n_out, int wb, int ib, int is, int ob)
{
    int32_t o, i;
    for (o = 0; o < n_out; o++) {
        int32_t acc = bias[o];
        for (i = 0; i < n_in; i++) {
            acc += qk_load(w, o * n_in + i, wb, 1) * qk_load(x, i, ib, is);
        }
        qk_store(y, o, ob, qk_requant(acc, k[o], shift, lo, hi));
    }
}

#endif
