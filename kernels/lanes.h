/* Four packed values from index i as the four 8-bit lanes of a word (lane 0 in the low byte), the
 * operands of simd.h's 4-lane dot products: at 8 bits one word load, below 8 bits the values
 * gathered one by one (signed ones sign-extended within their lane). */
#ifndef QSEARCH_KERNELS_LANES_H
#define QSEARCH_KERNELS_LANES_H

#include <stdint.h>
#include "attributes.h"
#include "packed.h"

#if defined(QK_CV32E40P)
/* The CV32E40P splits a misaligned word load in hardware; clang, which assumes strict alignment
 * for RISC-V, would load the four bytes one by one. */
QK_INLINE uint32_t qk_load_word(const uint8_t *p)
{
    uint32_t v;
    __asm__("lw %0, 0(%1)" : "=r"(v) : "r"(p), "m"(*(const struct { uint8_t b[4]; } *)p));
    return v;
}
#else
#include <string.h>
QK_INLINE uint32_t qk_load_word(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
#endif

QK_INLINE uint32_t qk_lanes(const uint8_t *p, int32_t i, int bits, int is_signed)
{
    uint32_t v = 0;
    int k;
    if (bits == 8) {
        return qk_load_word(p + i);
    }
    for (k = 0; k < 4; k++) {
        v |= ((uint32_t)qk_load(p, i + k, bits, is_signed) & 0xffu) << (8 * k);
    }
    return v;
}

#endif
