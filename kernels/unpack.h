/* Activations unpacked to one byte per value for the SIMD kernels: sub-byte inputs widened (to
 * int8 or uint8 lanes, as their signedness says), and the reordering that lets sub-byte weights
 * be unpacked with two lane shifts instead of a shuffle per word (simd.h, qk_lanes_s). */
#ifndef QSEARCH_KERNELS_UNPACK_H
#define QSEARCH_KERNELS_UNPACK_H

#include <stdint.h>
#include "packed.h"
#include "simd.h"

/* Values per 32-bit word of `bits`-bit weights: the K-chunk the blocked kernels step by. */
#define QK_CHUNK(bits) (32 / (bits))

/* Bytes of an unpacked row of k values, rounded up so that the next row starts on a word. */
#define QK_ROW_BYTES(k) (((k) + 3) & ~3)

/* dst[i] = value first + i of the packed buffer src, for i < n, one byte each. */
static inline __attribute__((always_inline)) void qk_unpack_run(uint8_t *dst, const uint8_t *src,
    int32_t first, int32_t n, int bits, int is_signed)
{
    const int per_byte = 8 / bits;
    const uint8_t *p;
    int32_t i = 0;
    if (bits == 8) {
        qk_copy_words(dst, src + first, n / 4);
        for (i = n / 4 * 4; i < n; i++) {
            dst[i] = src[first + i];
        }
        return;
    }
    /* Up to the first byte boundary value by value, then whole bytes, then the rest. */
    for (; i < n && (first + i) % per_byte != 0; i++) {
        dst[i] = (uint8_t)qk_load(src, first + i, bits, is_signed);
    }
    p = src + (first + i) / per_byte;
    for (; i + per_byte <= n; i += per_byte) {
        uint32_t byte = *p++;
        int slot;
        for (slot = 0; slot < per_byte; slot++) {
            uint32_t v = (byte >> (bits * slot)) & ((1u << bits) - 1);
            /* (v ^ half) - half sign-extends a `bits`-bit value. */
            uint32_t half = is_signed ? 1u << (bits - 1) : 0;
            dst[i + slot] = (uint8_t)((v ^ half) - half);
        }
    }
    for (; i < n; i++) {
        dst[i] = (uint8_t)qk_load(src, first + i, bits, is_signed);
    }
}

/* Reorders each of the first `chunks` chunks of QK_CHUNK(wbits) bytes of row in place so that
 * the word qk_lanes_s(weights, wbits, slot) multiplies sits at word `slot` of the chunk: byte
 * slot * 4 + b takes value b * (8 / wbits) + slot. Nothing moves at 8 bits. */
static inline __attribute__((always_inline)) void qk_permute_chunks(uint8_t *row, int32_t chunks,
    int wbits)
{
    const int per_byte = 8 / wbits, chunk = QK_CHUNK(wbits);
    int32_t c;
    if (wbits == 8) {
        return;
    }
    for (c = 0; c < chunks; c++, row += chunk) {
        uint8_t v[16];
        int i, b, slot;
        for (i = 0; i < chunk; i++) {
            v[i] = row[i];
        }
        for (slot = 0; slot < per_byte; slot++) {
            for (b = 0; b < 4; b++) {
                row[slot * 4 + b] = v[b * per_byte + slot];
            }
        }
    }
}

#endif
