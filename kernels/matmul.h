/* The register-blocked core every fast kernel shares: up to 4 weight rows (output channels or
 * neurons) against up to 2 unpacked activation rows (pixels), 8 int32 accumulators, one sdotp per
 * 4 weights and pixel; then the requantization and the store of the block's outputs.
 *
 * Weight rows are packed at `wb` bits (row r starts at byte r * row_bytes); activation rows hold
 * one byte per value (kernels/unpack.h), chunk-permuted for sub-byte weights. */
#ifndef QSEARCH_KERNELS_MATMUL_H
#define QSEARCH_KERNELS_MATMUL_H

#include <stdint.h>
#include "packed.h"
#include "simd.h"
#include "unpack.h"

#define QK_BLOCK_ROWS 4
#define QK_BLOCK_PIXELS 2

/* The activation value a row holds at byte k. */
static inline __attribute__((always_inline)) int32_t qk_act(const uint8_t *row, int32_t k,
    int x_signed)
{
    return x_signed ? (int32_t)(int8_t)row[k] : (int32_t)row[k];
}

/* acc[r][p] += weight row r . activation row p over the first `words` weight words of each row
 * (words * QK_CHUNK(wb) values), for r < rows and p < pixels (compile-time constants after
 * inlining). One word of each activation row per weight slot, loaded once for all rows. */
static inline __attribute__((always_inline)) void qk_mm_block(
    int32_t acc[QK_BLOCK_ROWS][QK_BLOCK_PIXELS], const uint8_t *w, int32_t row_bytes,
    const uint8_t *const a[QK_BLOCK_PIXELS], int32_t words, int rows, int pixels, int wb,
    int x_signed)
{
    const int slots = 8 / wb;
    const uint8_t *wp[QK_BLOCK_ROWS], *ap[QK_BLOCK_PIXELS];
    int32_t j;
    int r, p, t;
    for (r = 0; r < rows; r++) {
        wp[r] = w + r * row_bytes;
    }
    for (p = 0; p < pixels; p++) {
        ap[p] = a[p];
    }
    for (j = 0; j < words; j++) {
        uint32_t x[QK_BLOCK_PIXELS][4];
        for (p = 0; p < pixels; p++) {
            for (t = 0; t < slots; t++) {
                x[p][t] = qk_ld32(ap[p] + 4 * t);
            }
            ap[p] += 4 * slots;
        }
        for (r = 0; r < rows; r++) {
            uint32_t packed = qk_ld32(wp[r]);
            wp[r] += 4;
            for (t = 0; t < slots; t++) {
                uint32_t lanes = qk_lanes_s(packed, wb, t);
                for (p = 0; p < pixels; p++) {
                    acc[r][p] = qk_dot4(x[p][t], lanes, x_signed, acc[r][p]);
                }
            }
        }
    }
}

/* acc[r][p] += the products of values [from, k) of weight row first_row + r (value index
 * (first_row + r) * k + i of w) and activation row p: the part of K short of a whole word. */
static inline __attribute__((always_inline)) void qk_mm_tail(
    int32_t acc[QK_BLOCK_ROWS][QK_BLOCK_PIXELS], const uint8_t *w, int32_t first_row, int32_t k,
    const uint8_t *const a[QK_BLOCK_PIXELS], int32_t from, int rows, int pixels, int wb,
    int x_signed)
{
    int32_t i;
    int r, p;
    for (i = from; i < k; i++) {
        for (r = 0; r < rows; r++) {
            int32_t wv = qk_load(w, (first_row + r) * k + i, wb, 1);
            for (p = 0; p < pixels; p++) {
                acc[r][p] += wv * qk_act(a[p], i, x_signed);
            }
        }
    }
}

/* Requantizes `n` consecutive outputs of channels c.. (acc[r][p] for r < n) and stores them as
 * values at index first.. of y; whole bytes at once where the run starts on a byte. */
static inline __attribute__((always_inline)) void qk_store_block(uint8_t *y, int32_t first,
    int32_t acc[QK_BLOCK_ROWS][QK_BLOCK_PIXELS], int p, int n, const int32_t *k, int shift,
    int32_t lo, int32_t hi, int ob)
{
    int32_t v[QK_BLOCK_ROWS];
    int r;
    for (r = 0; r < n; r++) {
        v[r] = qk_requant(acc[r][p], k[r], shift, lo, hi);
    }
    if (ob < 8 && n == QK_BLOCK_ROWS && first % (8 / ob) == 0) {
        uint32_t mask = (1u << ob) - 1, bits = 0;
        for (r = 0; r < n; r++) {
            bits |= ((uint32_t)v[r] & mask) << (r * ob);
        }
        y[first / (8 / ob)] = (uint8_t)bits;
        if (ob == 4) {
            y[first / 2 + 1] = (uint8_t)(bits >> 8);
        }
        return;
    }
    for (r = 0; r < n; r++) {
        qk_store(y, first + r, ob, v[r]);
    }
}

#endif
