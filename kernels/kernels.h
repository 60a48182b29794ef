/* The kernel library: every kernel written once as a generic body that takes the bit widths and
 * signedness as parameters, and the instantiation macros that define a named kernel with them
 * fixed, e.g.
 *     QK_CONV(conv_w4_u8_o8, 4, 8, 0, 8, int32_t)
 * defines `conv_w4_u8_o8`, a 4-bit-weight convolution of unsigned 8-bit inputs into 8-bit
 * outputs accumulating in int32_t. Semantics: packed.h (docs/integer-semantics.md). The
 * dot products use simd.h's XpulpV2 4-lane operations on the PULP path (QSEARCH_PULP).
 *
 * The accumulator type cannot be a function parameter in C: the generic bodies that accumulate
 * are included twice below, once with QK_ACC int32_t and once with int64_t (the type a layer
 * needs where the integerizer cannot bound its sums within 32 bits). */
#ifndef QSEARCH_KERNELS_H
#define QSEARCH_KERNELS_H

#include <stdint.h>
#include "attributes.h"
#include "packed.h"
#include "simd.h"
#include "shape.h"
#include "lanes.h"
#include "add.h"

#define QK_ACC int32_t
#include "dot.h"
#include "conv.h"
#include "linear.h"
#include "pool.h"
#undef QK_ACC

#define QK_ACC int64_t
#include "dot.h"
#include "conv.h"
#include "linear.h"
#include "pool.h"
#undef QK_ACC

/* name_dot, the dot product of kernel `name` (see dot.h). */
#define QK_DOT(name, w_bits, in_bits, in_signed, acc)                                           \
    static inline acc name##_dot(const uint8_t *w, int32_t wi, const uint8_t *x, int32_t xi,    \
        int32_t n, acc sum)                                                                     \
    {                                                                                           \
        return qk_dot_##acc(w, wi, w_bits, x, xi, in_bits, in_signed, n, sum);                  \
    }

/* conv(x, y, w, bias, k, shift, lo, hi, shape) */
#define QK_CONV(name, w_bits, in_bits, in_signed, out_bits, acc)                                \
    QK_DOT(name, w_bits, in_bits, in_signed, acc)                                               \
    QK_KERNEL void name(const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias,    \
        const int32_t *k, int shift, int32_t lo, int32_t hi, const conv_shape *s)               \
    {                                                                                           \
        qk_conv_##acc(x, y, w, bias, k, shift, lo, hi, s, name##_dot, out_bits);                \
    }

/* linear(x, y, w, bias, k, shift, lo, hi, n_in, n_out) */
#define QK_LINEAR(name, w_bits, in_bits, in_signed, out_bits, acc)                              \
    QK_DOT(name, w_bits, in_bits, in_signed, acc)                                               \
    QK_KERNEL void name(const uint8_t *x, uint8_t *y, const uint8_t *w, const int32_t *bias,    \
        const int32_t *k, int shift, int32_t lo, int32_t hi, int32_t n_in, int32_t n_out)       \
    {                                                                                           \
        qk_linear_##acc(x, y, w, bias, k, shift, lo, hi, n_in, n_out, name##_dot, out_bits);    \
    }

/* maxpool / avgpool(x, y, k, shift, lo, hi, shape) */
#define QK_POOL(name, is_max, in_bits, in_signed, out_bits, acc)                                \
    QK_KERNEL void name(const uint8_t *x, uint8_t *y, int32_t k, int shift, int32_t lo,         \
        int32_t hi, const conv_shape *s)                                                        \
    {                                                                                           \
        qk_pool_##acc(x, y, k, shift, lo, hi, s, is_max, in_bits, in_signed, out_bits);         \
    }
#define QK_MAXPOOL(name, in_bits, in_signed, out_bits, acc) \
    QK_POOL(name, 1, in_bits, in_signed, out_bits, acc)
#define QK_AVGPOOL(name, in_bits, in_signed, out_bits, acc) \
    QK_POOL(name, 0, in_bits, in_signed, out_bits, acc)

/* globalmaxpool / globalavgpool(x, y, k, shift, lo, hi, pixels, channels) */
#define QK_GLOBAL_POOL(name, is_max, in_bits, in_signed, out_bits, acc)                         \
    QK_KERNEL void name(const uint8_t *x, uint8_t *y, int32_t k, int shift, int32_t lo,         \
        int32_t hi, int32_t pixels, int32_t channels)                                           \
    {                                                                                           \
        qk_global_pool_##acc(x, y, k, shift, lo, hi, pixels, channels, is_max, in_bits,         \
            in_signed, out_bits);                                                               \
    }
#define QK_GLOBALMAXPOOL(name, in_bits, in_signed, out_bits, acc) \
    QK_GLOBAL_POOL(name, 1, in_bits, in_signed, out_bits, acc)
#define QK_GLOBALAVGPOOL(name, in_bits, in_signed, out_bits, acc) \
    QK_GLOBAL_POOL(name, 0, in_bits, in_signed, out_bits, acc)

/* add(a, b, y, ka, sa, kb, sb, lo, hi, n) */
#define QK_ADD(name, a_bits, a_signed, b_bits, b_signed, out_bits)                              \
    QK_KERNEL void name(const uint8_t *a, const uint8_t *b, uint8_t *y, int32_t ka, int sa,     \
        int32_t kb, int sb, int32_t lo, int32_t hi, int32_t n)                                  \
    {                                                                                           \
        qk_add(a, b, y, ka, sa, kb, sb, lo, hi, n, a_bits, a_signed, b_bits, b_signed,          \
            out_bits);                                                                          \
    }

/* The PULP path's blocked kernels (QK_CONV_BLOCKED, QK_DEPTHWISE, QK_LINEAR_BLOCKED: im2col or a
 * gathered plane in a per-core scratch area, register-blocked sdotp; the poolings of
 * pool_blocked.h: a word of channels per SIMD step), which the generated code calls for the
 * layers that accumulate in int32; the portable path keeps the generic kernels. */
#if defined(QSEARCH_PULP)
#include "conv_blocked.h"
#include "depthwise.h"
#include "linear_blocked.h"
#include "pool_blocked.h"
#endif

#endif
