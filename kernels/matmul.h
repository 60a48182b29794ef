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

/* Loops over a block's rows, pixels and slots unrolled, so that its accumulators and words stay
 * in registers instead of stack arrays. */
#define QK_UNROLL _Pragma("GCC unroll 4")

/* The activation value a row holds at byte k. */
static inline __attribute__((always_inline)) int32_t qk_act(const uint8_t *row, int32_t k,
    int x_signed)
{
    return x_signed ? (int32_t)(int8_t)row[k] : (int32_t)row[k];
}

#if defined(QK_CV32E40P)
/* The operands every 4x2 loop updates: the 8 accumulators, the 4 weight-row and the 2
 * activation pointers (post-incremented). */
#define QK_MM4X2_ACC                                                                             \
    [c00] "+r"(acc[0][0]), [c01] "+r"(acc[0][1]), [c10] "+r"(acc[1][0]),                         \
    [c11] "+r"(acc[1][1]), [c20] "+r"(acc[2][0]), [c21] "+r"(acc[2][1]),                         \
    [c30] "+r"(acc[3][0]), [c31] "+r"(acc[3][1])
#define QK_MM4X2_STATE                                                                           \
    QK_MM4X2_ACC, [p0] "+r"(wp[0]), [p1] "+r"(wp[1]), [p2] "+r"(wp[2]), [p3] "+r"(wp[3]),        \
    [a0] "+r"(ap[0]), [a1] "+r"(ap[1])

/* The 8-bit 4x2 step as a hardware loop (cv.setup, which LLVM 19 cannot assemble: encoded with
 * .insn as the decoder reads it: opcode 0x2b, funct3 4, bits 11:8 0111, bit 7 the loop (0), rs1
 * the count, imm the end as (end - pc) / 4). The 14 instructions per 32 MAC are 4 weight and 2
 * activation loads with post-increment and 8 sdotp, each loaded word used two or more
 * instructions later so that no load stalls. The four weight rows are read through one pointer
 * that steps a row ahead three times and back to the next word of the first row the fourth (a
 * register post-increment): fewer registers held across the block than four row pointers. A
 * block shorter than a word skips the loop inside the asm statement, not in C: the accumulators
 * then leave it in the registers they entered, with no copies for two paths that meet. The core
 * wants the loop's start and end on words and no compressed instructions in its body, which
 * also makes the body's length known (14 words: end = pc + 15 * 4). */
#define QK_MM4X2_W8_LOOP(DOT)                                                                    \
    __asm__ volatile("beqz %[n], 1f\n\t"                                                         \
        ".balign 4\n\t.option push\n\t.option norvc\n\t"                                         \
        ".insn i 0x2b, 4, x14, %[n], 15\n\t"                                                     \
        "cv.lw %[x0], (%[a0]), 4\n\t"                                                            \
        "cv.lw %[wa], (%[p]), %[rb]\n\t"                                                         \
        "cv.lw %[x1], (%[a1]), 4\n\t"                                                            \
        "cv.lw %[wb], (%[p]), %[rb]\n\t"                                                         \
        DOT " %[c00], %[x0], %[wa]\n\t"                                                          \
        DOT " %[c01], %[x1], %[wa]\n\t"                                                          \
        "cv.lw %[wa], (%[p]), %[rb]\n\t"                                                         \
        DOT " %[c10], %[x0], %[wb]\n\t"                                                          \
        DOT " %[c11], %[x1], %[wb]\n\t"                                                          \
        "cv.lw %[wb], (%[p]), %[back]\n\t"                                                       \
        DOT " %[c20], %[x0], %[wa]\n\t"                                                          \
        DOT " %[c21], %[x1], %[wa]\n\t"                                                          \
        DOT " %[c30], %[x0], %[wb]\n\t"                                                          \
        DOT " %[c31], %[x1], %[wb]\n\t"                                                          \
        ".option pop\n"                                                                          \
        "1:"                                                                                     \
        : QK_MM4X2_ACC, [p] "+r"(wp[0]), [a0] "+r"(ap[0]), [a1] "+r"(ap[1]),                     \
          [x0] "=&r"(t[0]), [x1] "=&r"(t[1]), [wa] "=&r"(t[2]), [wb] "=&r"(t[3])                 \
        : [n] "r"(words), [rb] "r"(row_bytes), [back] "r"(4 - 3 * row_bytes)                     \
        : "memory")
/* The same step at 4-bit weights: each weight word unpacked to its two slots (low nibbles:
 * shift left then arithmetic right by 4; high nibbles: arithmetic right by 4) against the two
 * activation words of each pixel that the chunk permutation put in slot order. 36 instructions
 * per 64 MAC (4 weight and 4 activation loads, 12 lane shifts, 16 sdotp), no load stalls;
 * skipped inside the asm statement as the 8-bit step is. */
#define QK_MM4X2_W4_ROW(DOT, W, L, C0, C1)                                                       \
    "cv.sll.sci.b %[" L "], %[" W "], 4\n\t"                                                     \
    "cv.sra.sci.b %[" W "], %[" W "], 4\n\t"                                                     \
    "cv.sra.sci.b %[" L "], %[" L "], 4\n\t"                                                     \
    DOT " %[" C0 "], %[x00], %[" L "]\n\t"                                                       \
    DOT " %[" C1 "], %[x10], %[" L "]\n\t"                                                       \
    DOT " %[" C0 "], %[x01], %[" W "]\n\t"                                                       \
    DOT " %[" C1 "], %[x11], %[" W "]\n\t"
#define QK_MM4X2_W4_LOOP(DOT)                                                                    \
    __asm__ volatile("beqz %[n], 1f\n\t"                                                         \
        ".balign 4\n\t.option push\n\t.option norvc\n\t"                                         \
        ".insn i 0x2b, 4, x14, %[n], 37\n\t"                                                     \
        "cv.lw %[x00], (%[a0]), 4\n\t"                                                           \
        "cv.lw %[x01], (%[a0]), 4\n\t"                                                           \
        "cv.lw %[x10], (%[a1]), 4\n\t"                                                           \
        "cv.lw %[x11], (%[a1]), 4\n\t"                                                           \
        "cv.lw %[wa], (%[p0]), 4\n\t"                                                            \
        "cv.lw %[wb], (%[p1]), 4\n\t"                                                            \
        QK_MM4X2_W4_ROW(DOT, "wa", "la", "c00", "c01")                                           \
        "cv.lw %[wa], (%[p2]), 4\n\t"                                                            \
        QK_MM4X2_W4_ROW(DOT, "wb", "lb", "c10", "c11")                                           \
        "cv.lw %[wb], (%[p3]), 4\n\t"                                                            \
        QK_MM4X2_W4_ROW(DOT, "wa", "la", "c20", "c21")                                           \
        QK_MM4X2_W4_ROW(DOT, "wb", "lb", "c30", "c31")                                           \
        ".option pop\n"                                                                          \
        "1:"                                                                                     \
        : QK_MM4X2_STATE,                                                                        \
          [x00] "=&r"(t[0]), [x01] "=&r"(t[1]), [x10] "=&r"(t[2]), [x11] "=&r"(t[3]),            \
          [wa] "=&r"(t[4]), [wb] "=&r"(t[5]), [la] "=&r"(t[6]), [lb] "=&r"(t[7])                 \
        : [n] "r"(words)                                                                         \
        : "memory")
#endif

/* acc[r][p] += weight row r . activation row p over kk values, for r < rows and p < pixels
 * (compile-time constants after inlining): whole weight words with sdotp, one word of each
 * activation row per weight slot loaded once for all rows; then the values short of a word
 * scalar, from where the word loop left the pointers (so that no other pointer to them stays
 * live across the loop). */
static inline __attribute__((always_inline)) void qk_mm_block(
    int32_t acc[QK_BLOCK_ROWS][QK_BLOCK_PIXELS], const uint8_t *w, int32_t row_bytes,
    const uint8_t *const a[QK_BLOCK_PIXELS], int32_t kk, int rows, int pixels, int wb,
    int x_signed)
{
    const int slots = 8 / wb;
    const int32_t words = kk / QK_CHUNK(wb);
    const uint8_t *wp[QK_BLOCK_ROWS], *ap[QK_BLOCK_PIXELS];
    int32_t j;
    int r, p, t;
    QK_UNROLL
    for (r = 0; r < rows; r++) {
        wp[r] = w + r * row_bytes;
    }
    QK_UNROLL
    for (p = 0; p < pixels; p++) {
        ap[p] = a[p];
    }
#if defined(QK_CV32E40P)
    if (wb == 8 && rows == 4 && pixels == 2) {
        uint32_t t[4];
        if (x_signed) {
            QK_MM4X2_W8_LOOP("cv.sdotsp.b");
        } else {
            QK_MM4X2_W8_LOOP("cv.sdotusp.b");
        }
        /* where the other rows' pointers would be for the values short of a word */
        QK_UNROLL
        for (r = 1; r < rows; r++) {
            wp[r] = wp[0] + r * row_bytes;
        }
    } else if (wb == 4 && rows == 4 && pixels == 2) {
        uint32_t t[8];
        if (x_signed) {
            QK_MM4X2_W4_LOOP("cv.sdotsp.b");
        } else {
            QK_MM4X2_W4_LOOP("cv.sdotusp.b");
        }
    } else
#endif
    {
        for (j = 0; j < words; j++) {
            uint32_t x[QK_BLOCK_PIXELS][4];
            QK_UNROLL
            for (p = 0; p < pixels; p++) {
                QK_UNROLL
                for (t = 0; t < slots; t++) {
                    x[p][t] = qk_ld32(ap[p] + 4 * t);
                }
                ap[p] += 4 * slots;
            }
            QK_UNROLL
            for (r = 0; r < rows; r++) {
                uint32_t packed = qk_ld32(wp[r]);
                wp[r] += 4;
                QK_UNROLL
                for (t = 0; t < slots; t++) {
                    uint32_t lanes = qk_lanes_s(packed, wb, t);
                    QK_UNROLL
                    for (p = 0; p < pixels; p++) {
                        acc[r][p] = qk_dot4(x[p][t], lanes, x_signed, acc[r][p]);
                    }
                }
            }
        }
    }
    for (j = 0; j < kk - words * QK_CHUNK(wb); j++) {
        QK_UNROLL
        for (r = 0; r < rows; r++) {
            int32_t wv = qk_load(wp[r], j, wb, 1);
            QK_UNROLL
            for (p = 0; p < pixels; p++) {
                acc[r][p] += wv * qk_act(ap[p], j, x_signed);
            }
        }
    }
}

/* Defines the blocked kernel `name` with parameters PARAMS, whose body CALL uses `narrow`: 0 in
 * `name`, 1 in name##_narrow, the same kernel on the 32-bit requantization (QK_REQUANT_NARROW).
 * The code generator calls name##_narrow for a layer whose product bound |k| * |acc| +
 * 2^(shift-1) is below 2^31 (IntLayer.product_bound: what `qsearch deploy --requant-bits 32`
 * guarantees for every layer), which also means shift <= 31; called with any other layer, it
 * computes wrong outputs. A function of its own, it leaves the other paths' code as it was; a
 * program holds only the variants it calls. */
#define QK_BLOCKED_KERNEL(name, PARAMS, CALL)                                                    \
    QK_KERNEL QK_UNUSED void name##_narrow PARAMS                                                \
    {                                                                                            \
        const int narrow = 1;                                                                    \
        CALL;                                                                                    \
    }                                                                                            \
    QK_KERNEL QK_UNUSED void name PARAMS                                                         \
    {                                                                                            \
        const int narrow = 0;                                                                    \
        CALL;                                                                                    \
    }

/* The requantization's three paths, a compile-time constant in the kernels' loops
 * (QK_UNSWITCH_REQUANT). */
enum {
    QK_REQUANT_64,        /* any shift: the product in 64 bits */
    QK_REQUANT_WIDE,      /* shift >= 33: only the product's high word matters */
    QK_REQUANT_WIDE_CLIP, /* QK_REQUANT_WIDE where qk_wide_clips: the clamp as one clip */
    QK_REQUANT_NARROW,    /* name##_narrow of QK_BLOCKED_KERNEL: the product in 32 bits */
};

/* Whether QK_REQUANT_WIDE_CLIP is exact at (shift, lo, hi): shift >= 33 (QK_REQUANT_WIDE), a
 * range lo <= hi whose width fits int32, and the product's high word (within [-2^30, 2^30]) plus
 * -lo * 2^(shift-32) plus the rounding within int32, which holds for any output range at the
 * usual shifts (|lo| <= 2^8 up to shift 54). */
static inline int qk_wide_clips(int shift, int32_t lo, int32_t hi)
{
    int64_t moved;
    if (shift < 33 || shift > 62 || hi < lo || (int64_t)hi - lo > INT32_MAX) {
        return 0;
    }
    moved = -(int64_t)lo * ((int64_t)1 << (shift - 32)) + ((int64_t)1 << (shift - 33));
    return moved >= -(1 << 30) && moved < (1 << 30);
}

/* QK_REQUANT_WIDE_CLIP's output less lo, clamp(qk_requant(acc), lo, hi) - lo: with H the
 * product's high word as in QK_REQUANT_WIDE, (H - lo * 2^(shift-32) + 2^(shift-33)) >>
 * (shift - 32) is the unclamped output less lo (the subtracted multiple of 2^(shift-32) passes
 * the shift exactly), then clipped to [0, hi - lo]: a mulh, cv.addrnr and cv.clipur on the core,
 * where QK_REQUANT_WIDE needs a mulh, an add, a shift, a min and a max. */
static inline __attribute__((always_inline)) int32_t qk_requant_less_lo(int32_t acc, int32_t k,
    int shift, int32_t lo, int32_t hi)
{
    int32_t high = (int32_t)(((int64_t)k * acc) >> 32);
    return qk_clipu(qk_add_round_shift(high, -lo * (1 << (shift - 32)), shift - 32), hi - lo);
}

/* qk_requant of an int32 accumulator, for shifts 0 to 62 (the integerizer's range), on `path`.
 * QK_REQUANT_WIDE is the usual case at 64-bit products (the integerizer takes the largest shift
 * that keeps k below 2^31): with k * acc = H * 2^32 + L, floor((k * acc + 2^(shift-1)) / 2^shift)
 * = (H + 2^(shift-33)) >> (shift - 32) since L < 2^32, and |H| < 2^30 leaves room for the
 * addition: one mulh (5 cycles on CV32E40P), an add and a shift. QK_REQUANT_NARROW is the same
 * formula in 32 bits, exact because no intermediate leaves int32 (computed unsigned, whose
 * wrap-around C defines, though the bound means it never wraps): one mul (1 cycle), an add and a
 * shift.
 * (>> of a negative value is arithmetic in GNU C, which every target's compiler is.) */
static inline __attribute__((always_inline)) int32_t qk_requant_words(int32_t acc, int32_t k,
    int shift, int path, int32_t lo, int32_t hi)
{
    int32_t y;
    if (path == QK_REQUANT_WIDE_CLIP) {
        return qk_requant_less_lo(acc, k, shift, lo, hi) + lo;
    }
    if (path == QK_REQUANT_NARROW) {
        uint32_t half = shift > 0 ? 1u << (shift - 1) : 0;
        y = (int32_t)((uint32_t)k * (uint32_t)acc + half) >> shift;
    } else if (path == QK_REQUANT_WIDE) {
        int32_t high = (int32_t)(((int64_t)k * acc) >> 32);
        y = (high + (1 << (shift - 33))) >> (shift - 32);
    } else {
        int64_t half = shift > 0 ? (int64_t)1 << (shift - 1) : 0;
        int64_t v = ((int64_t)k * acc + half) >> shift;
        y = v > hi ? hi : (v < lo ? lo : (int32_t)v);
    }
    /* min then max: cv.min and cv.max on the core, no branches */
    y = y > hi ? hi : y;
    return y < lo ? lo : y;
}

/* Runs CALL (an expression using `path`) with path a constant: QK_REQUANT_NARROW where `narrow`
 * (a constant of QK_BLOCKED_KERNEL), else QK_REQUANT_WIDE or QK_REQUANT_64 as shift >= 33: the
 * kernel's loops once per path, each with its requantization free of the test. */
#define QK_UNSWITCH_REQUANT(shift, narrow, CALL)                                                 \
    QK_UNSWITCH_REQUANT_PATHS((shift) >= 33, QK_REQUANT_WIDE, narrow, CALL)

/* The same with QK_REQUANT_WIDE_CLIP for QK_REQUANT_WIDE, where qk_wide_clips (else
 * QK_REQUANT_64, exact at any shift). */
#define QK_UNSWITCH_REQUANT_CLIP(shift, lo, hi, narrow, CALL)                                    \
    QK_UNSWITCH_REQUANT_PATHS(qk_wide_clips(shift, lo, hi), QK_REQUANT_WIDE_CLIP, narrow, CALL)

#define QK_UNSWITCH_REQUANT_PATHS(wide, wide_path, narrow, CALL)                                 \
    do {                                                                                         \
        if (narrow) {                                                                            \
            const int path = QK_REQUANT_NARROW;                                                  \
            CALL;                                                                                \
        } else if (wide) {                                                                       \
            const int path = wide_path;                                                          \
            CALL;                                                                                \
        } else {                                                                                 \
            const int path = QK_REQUANT_64;                                                      \
            CALL;                                                                                \
        }                                                                                        \
    } while (0)

/* Requantizes `n` consecutive outputs of channels c.. (acc[r][p] for r < n) and stores them as
 * values at index first.. of y; whole bytes at once where the run starts on a byte. */
static inline __attribute__((always_inline)) void qk_store_block(uint8_t *y, int32_t first,
    int32_t acc[QK_BLOCK_ROWS][QK_BLOCK_PIXELS], int p, int n, const int32_t *k, int shift,
    int path, int32_t lo, int32_t hi, int ob)
{
    int32_t v[QK_BLOCK_ROWS];
    int r;
    if (path == QK_REQUANT_WIDE_CLIP && ob == 8 && n == QK_BLOCK_ROWS) {
        /* The outputs less lo packed into one word, lo added back to its four lanes at once
         * (modulo 256, as the byte stores would). */
        QK_UNROLL
        for (r = 0; r < n; r++) {
            v[r] = qk_requant_less_lo(acc[r][p], k[r], shift, lo, hi);
        }
        qk_st32(y + first, qk_add4(qk_pack4(v[0], v[1], v[2], v[3]), (uint8_t)lo * 0x01010101u));
        return;
    }
    QK_UNROLL
    for (r = 0; r < n; r++) {
        v[r] = qk_requant_words(acc[r][p], k[r], shift, path, lo, hi);
    }
    if (ob < 8 && n == QK_BLOCK_ROWS && first % (8 / ob) == 0) {
        uint32_t mask = (1u << ob) - 1, bits = 0;
        QK_UNROLL
        for (r = 0; r < n; r++) {
            bits |= ((uint32_t)v[r] & mask) << (r * ob);
        }
        y[first / (8 / ob)] = (uint8_t)bits;
        if (ob == 4) {
            y[first / 2 + 1] = (uint8_t)(bits >> 8);
        }
        return;
    }
    QK_UNROLL
    for (r = 0; r < n; r++) {
        qk_store(y, first + r, ob, v[r]);
    }
}

#endif
