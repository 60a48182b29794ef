/* Packed integer values and the requantization of docs/integer-semantics.md: the semantics every
 * kernel of the library shares, on every target.
 *
 * Value i of a buffer at B bits sits in byte i / (8 / B), from bit (i % (8 / B)) * B (B in 2, 4,
 * 8); signed values are two's complement. */
#ifndef QSEARCH_KERNELS_PACKED_H
#define QSEARCH_KERNELS_PACKED_H

#include <stdint.h>

/* Value i of the packed buffer p. */
static inline int32_t qk_load(const uint8_t *p, int32_t i, int bits, int is_signed)
{
    int32_t v;
    if (bits == 8) {
        return is_signed ? (int32_t)(int8_t)p[i] : (int32_t)p[i];
    }
    v = (p[i / (8 / bits)] >> ((i % (8 / bits)) * bits)) & ((1 << bits) - 1);
    if (is_signed && (v & (1 << (bits - 1)))) {
        v -= 1 << bits;
    }
    return v;
}

/* Stores the low `bits` bits of v as value i of p, leaving the byte's other values alone. */
static inline void qk_store(uint8_t *p, int32_t i, int bits, int32_t v)
{
    uint8_t mask;
    int shift;
    if (bits == 8) {
        p[i] = (uint8_t)v;
        return;
    }
    shift = (i % (8 / bits)) * bits;
    mask = (uint8_t)(((1 << bits) - 1) << shift);
    p[i / (8 / bits)] = (uint8_t)((p[i / (8 / bits)] & ~mask) | (((uint32_t)v << shift) & mask));
}

/* floor(v / 2^shift), portable for negative v (C leaves >> of negatives to the compiler). */
static inline int64_t qk_floor_shift(int64_t v, int shift)
{
    return v >= 0 ? v >> shift : -((-v - 1) >> shift) - 1;
}

/* clamp((k * acc + 2^(shift-1)) >> shift, lo, hi): the requantization of every layer. */
static inline int32_t qk_requant(int64_t acc, int32_t k, int shift, int32_t lo, int32_t hi)
{
    int64_t half = shift > 0 ? (int64_t)1 << (shift - 1) : 0;
    int64_t y = qk_floor_shift((int64_t)k * acc + half, shift);
    return y < lo ? lo : (y > hi ? hi : (int32_t)y);
}

#endif
