/* A residual add: each input rescaled to the output's scale and clamped, then the sum clamped. */
#ifndef QSEARCH_KERNELS_ADD_H
#define QSEARCH_KERNELS_ADD_H

#include <stdint.h>
#include "attributes.h"
#include "packed.h"

QK_INLINE void qk_add(const uint8_t *a, const uint8_t *b, uint8_t *y, int32_t ka, int sa,
    int32_t kb, int sb, int32_t lo, int32_t hi, int32_t n, int a_bits, int a_signed, int b_bits,
    int b_signed, int out_bits)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        int64_t sum = (int64_t)qk_requant(qk_load(a, i, a_bits, a_signed), ka, sa, lo, hi)
            + qk_requant(qk_load(b, i, b_bits, b_signed), kb, sb, lo, hi);
        qk_store(y, i, out_bits, qk_requant(sum, 1, 0, lo, hi));
    }
}

#endif
