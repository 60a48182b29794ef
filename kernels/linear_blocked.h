/* Linear layer blocked over neurons: the input made into the operand the blocked loop reads (one
 * byte per value, chunk-permuted for sub-byte weights; 8-bit inputs and weights read in place),
 * then 4 neurons per step against it (matmul.h), leftover neurons one at a time. The operand is
 * made once per layer: every core and every weight tile of the layer reads the same one.
 *
 * QK_LINEAR_BLOCKED(name, WB, IB, IS, OB) defines
 *   const uint8_t *name##_operand(const uint8_t *x, uint8_t *scratch, int32_t n_in);
 * the operand of input x: x itself where it is read in place, else x unpacked into scratch
 * (QK_LINEAR_BLOCKED_SCRATCH(n_in) bytes, word-aligned);
 *   void name(const uint8_t *a, uint8_t *y, const uint8_t *w, const int32_t *bias,
 *             const int32_t *k, int shift, int32_t lo, int32_t hi, int32_t n_in, int32_t n_out);
 * the generic linear kernel's call on operand a; and name##_narrow (QK_BLOCKED_KERNEL,
 * matmul.h). Both fall back to the generic kernel (kernels.h) on the input itself where a
 * neuron's weights do not start on a byte (n_in * WB not a multiple of 8). */
#ifndef QSEARCH_KERNELS_LINEAR_BLOCKED_H
#define QSEARCH_KERNELS_LINEAR_BLOCKED_H

#include <stdint.h>
#include "kernels.h"
#include "matmul.h"
#include "unpack.h"

#define QK_LINEAR_BLOCKED_SCRATCH(n_in) QK_ROW_BYTES(n_in)

/* Neurons [o, n_out) in blocks of `rows` (4, then 1 for the leftovers). */
static inline __attribute__((always_inline)) void qk_linear_neurons(uint8_t *y, const uint8_t *w,
    const int32_t *bias, const int32_t *k, int shift, int path, int32_t lo, int32_t hi,
    const uint8_t *const a[QK_BLOCK_PIXELS], int32_t n_in, int32_t o, int32_t n_out, int rows,
    int wb, int is, int ob)
{
    const int32_t row_bytes = n_in * wb / 8;
    int r;
    for (; o + rows <= n_out; o += rows) {
        int32_t acc[QK_BLOCK_ROWS][QK_BLOCK_PIXELS];
        QK_UNROLL
        for (r = 0; r < rows; r++) {
            acc[r][0] = bias[o + r];
        }
        qk_mm_block(acc, w + o * row_bytes, row_bytes, a, n_in, rows, 1, wb, is);
        qk_store_block(y, o, acc, 0, rows, k + o, shift, path, lo, hi, ob);
    }
}

static inline __attribute__((always_inline)) const uint8_t *qk_linear_operand(const uint8_t *x,
    uint8_t *scratch, int32_t n_in, int wb, int ib, int is)
{
    /* Read in place: 8-bit weights and inputs, or a layer on the generic kernel. */
    if ((wb == 8 && ib == 8) || n_in * wb % 8 != 0) {
        return x;
    }
    qk_unpack_run(scratch, x, 0, n_in, ib, is);
    qk_permute_chunks(scratch, n_in / QK_CHUNK(wb), wb);
    return scratch;
}

static inline __attribute__((always_inline)) void qk_linear_blocked(const uint8_t *operand,
    uint8_t *y, const uint8_t *w, const int32_t *bias, const int32_t *k, int shift, int32_t lo,
    int32_t hi, int32_t n_in, int32_t n_out, qk_dot_fn_int32_t dot, int wb, int is, int ob,
    int narrow)
{
    const uint8_t *a[QK_BLOCK_PIXELS] = {operand, operand};
    int32_t blocked = n_out / QK_BLOCK_ROWS * QK_BLOCK_ROWS;
    if (n_in * wb % 8 != 0) {
        qk_linear_int32_t(operand, y, w, bias, k, shift, lo, hi, n_in, n_out, dot, ob);
        return;
    }
    QK_UNSWITCH_REQUANT(shift, narrow, (qk_linear_neurons(y, w, bias, k, shift, path, lo, hi, a,
        n_in, 0, blocked, QK_BLOCK_ROWS, wb, is, ob), qk_linear_neurons(y, w, bias, k, shift, path,
        lo, hi, a, n_in, blocked, n_out, 1, wb, is, ob)));
}

#define QK_LINEAR_BLOCKED(name, WB, IB, IS, OB)                                                  \
    QK_DOT(name, WB, IB, IS, int32_t)                                                            \
    QK_KERNEL QK_UNUSED const uint8_t *name##_operand(const uint8_t *x, uint8_t *scratch,         \
        int32_t n_in)                                                                            \
    {                                                                                            \
        return qk_linear_operand(x, scratch, n_in, WB, IB, IS);                                  \
    }                                                                                            \
    QK_BLOCKED_KERNEL(name, (const uint8_t *a, uint8_t *y, const uint8_t *w, const int32_t *bias, \
        const int32_t *k, int shift, int32_t lo, int32_t hi, int32_t n_in, int32_t n_out),       \
        qk_linear_blocked(a, y, w, bias, k, shift, lo, hi, n_in, n_out, name##_dot, WB, IS, OB,  \
            narrow))

#endif
