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

/* Lane k of w (k in 0..3) from bits [k * bits, (k + 1) * bits) of a byte-aligned group of four
 * 2- or 4-bit values, zero- or sign-extended to 8 bits: shifts and masks instead of four loads. */
QK_INLINE uint32_t qk_spread(uint32_t w, int bits, int is_signed)
{
    uint32_t v;
    if (bits == 4) {
        /* nibbles n0 n1 | n2 n3 (two bytes) -> one per lane */
        v = (w & 0xfu) | ((w & 0xf0u) << 4) | ((w & 0xf00u) << 8) | ((w & 0xf000u) << 12);
    } else {
        /* pairs p0..p3 (one byte) -> one per lane */
        v = (w & 0x3u) | ((w & 0xcu) << 6) | ((w & 0x30u) << 12) | ((w & 0xc0u) << 18);
    }
    if (is_signed) {
        /* Each lane whose sign bit is set gets its high bits set; no carry crosses a lane. */
        uint32_t negative = (v >> (bits - 1)) & 0x01010101u;
        v |= negative * (0x100u - (1u << bits));
    }
    return v;
}

QK_INLINE uint32_t qk_lanes(const uint8_t *p, int32_t i, int bits, int is_signed)
{
    uint32_t v = 0;
    int k;
    if (bits == 8) {
        return qk_load_word(p + i);
    }
    if (i % (8 / bits) == 0) {
        const uint8_t *group = p + i / (8 / bits);
        return qk_spread(bits == 4 ? (uint32_t)group[0] | (uint32_t)group[1] << 8 : group[0],
            bits, is_signed);
    }
    for (k = 0; k < 4; k++) {
        v |= ((uint32_t)qk_load(p, i + k, bits, is_signed) & 0xffu) << (8 * k);
    }
    return v;
}

#endif
