/* The XpulpV2 operations the kernels use, on each target the library builds for:
 *  - QK_CV32E40P: the CV32E40P (CORE-V) with clang-19, as inline assembly (LLVM 19 has no C
 *    builtins for these instructions);
 *  - QK_PULP_BUILTINS: the PULP/GAP SDK's GCC, as __builtin_pulp_*;
 *  - otherwise (the host, rv32imc): the same operations in portable C, bit for bit.
 * Four 8-bit lanes travel in a uint32_t, lane 0 in the low byte (a little-endian word load).
 *
 * Besides the dot products: the lane-wise maxima qk_max4/qk_maxu4 (the poolings),
 * qk_ld32/qk_st32/qk_copy_words (words at any byte address), and the lane shifts qk_sll4/qk_sra4
 * that unpack sub-byte values to 8-bit lanes (qk_lanes_s), the requantization's rounding shift
 * and clip (qk_add_round_shift, qk_clipu) and the byte packing of its outputs (qk_pack4,
 * qk_add4). The lane shifts' amounts must be compile-time constants after inlining: the CV32E40P
 * encodes them as immediates. */
#ifndef QSEARCH_KERNELS_SIMD_H
#define QSEARCH_KERNELS_SIMD_H

#include <stdint.h>

#if defined(QK_CV32E40P)

/* acc + the sum of the four signed x signed lane products. */
static inline __attribute__((always_inline)) int32_t qk_sdotsp4(uint32_t a, uint32_t b,
    int32_t acc)
{
    __asm__("cv.sdotsp.b %0, %1, %2" : "+r"(acc) : "r"(a), "r"(b));
    return acc;
}

/* acc + the sum of the four unsigned (a) x signed (b) lane products. */
static inline __attribute__((always_inline)) int32_t qk_sdotusp4(uint32_t a, uint32_t b,
    int32_t acc)
{
    __asm__("cv.sdotusp.b %0, %1, %2" : "+r"(acc) : "r"(a), "r"(b));
    return acc;
}

/* Each lane the larger of a's and b's, the lanes signed. */
static inline __attribute__((always_inline)) uint32_t qk_max4(uint32_t a, uint32_t b)
{
    __asm__("cv.max.b %0, %1, %2" : "=r"(a) : "r"(a), "r"(b));
    return a;
}

/* Each lane the larger of a's and b's, the lanes unsigned. */
static inline __attribute__((always_inline)) uint32_t qk_maxu4(uint32_t a, uint32_t b)
{
    __asm__("cv.maxu.b %0, %1, %2" : "=r"(a) : "r"(a), "r"(b));
    return a;
}

/* A word from any byte address: the CV32E40P's load-store unit splits a misaligned access in
 * hardware, so a plain lw is correct (one extra cycle when misaligned). */
typedef uint32_t qk_word __attribute__((may_alias));

/* Each byte lane shifted left by n (2, 4 or 6; 0 leaves v), bits leaving the lane dropped. */
static inline __attribute__((always_inline)) uint32_t qk_sll4(uint32_t v, int n)
{
    switch (n) {
    case 2: __asm__("cv.sll.sci.b %0, %1, 2" : "=r"(v) : "r"(v)); break;
    case 4: __asm__("cv.sll.sci.b %0, %1, 4" : "=r"(v) : "r"(v)); break;
    case 6: __asm__("cv.sll.sci.b %0, %1, 6" : "=r"(v) : "r"(v)); break;
    default: break;
    }
    return v;
}

/* Each byte lane shifted right by n (4 or 6), arithmetically (the lane's sign copied in). */
static inline __attribute__((always_inline)) uint32_t qk_sra4(uint32_t v, int n)
{
    switch (n) {
    case 4: __asm__("cv.sra.sci.b %0, %1, 4" : "=r"(v) : "r"(v)); break;
    case 6: __asm__("cv.sra.sci.b %0, %1, 6" : "=r"(v) : "r"(v)); break;
    default: break;
    }
    return v;
}

/* Copies `words` words from src to dst (any alignment): two per step of a hardware loop (see
 * kernels/matmul.h for cv.setup's encoding), each loaded word stored two instructions later. */
static inline __attribute__((always_inline)) void qk_copy_words(uint8_t *dst, const uint8_t *src,
    int32_t words)
{
    uint32_t a, b;
    if (words >= 2) {
        __asm__ volatile(".balign 4\n\t.option push\n\t.option norvc\n\t"
                         ".insn i 0x2b, 4, x14, %[n], 5\n\t"
                         "cv.lw %[a], (%[s]), 4\n\t"
                         "cv.lw %[b], (%[s]), 4\n\t"
                         "cv.sw %[a], (%[d]), 4\n\t"
                         "cv.sw %[b], (%[d]), 4\n\t"
                         ".option pop"
                         : [d] "+r"(dst), [s] "+r"(src), [a] "=&r"(a), [b] "=&r"(b)
                         : [n] "r"(words / 2)
                         : "memory");
    }
    if (words % 2) {
        *(qk_word *)dst = *(const qk_word *)src;
    }
}

#elif defined(QK_PULP_BUILTINS)

typedef signed char qk_v4s __attribute__((vector_size(4)));
typedef unsigned char qk_v4u __attribute__((vector_size(4)));

static inline int32_t qk_sdotsp4(uint32_t a, uint32_t b, int32_t acc)
{
    union { uint32_t w; qk_v4s v; } x = {a}, y = {b};
    return __builtin_pulp_sdotsp4(x.v, y.v, acc);
}

static inline int32_t qk_sdotusp4(uint32_t a, uint32_t b, int32_t acc)
{
    union { uint32_t w; qk_v4u v; } x = {a};
    union { uint32_t w; qk_v4s v; } y = {b};
    return __builtin_pulp_sdotusp4(x.v, y.v, acc);
}

static inline uint32_t qk_max4(uint32_t a, uint32_t b)
{
    union { uint32_t w; qk_v4s v; } x = {a}, y = {b};
    x.v = __builtin_pulp_max4(x.v, y.v);
    return x.w;
}

static inline uint32_t qk_maxu4(uint32_t a, uint32_t b)
{
    union { uint32_t w; qk_v4u v; } x = {a}, y = {b};
    x.v = __builtin_pulp_maxu4(x.v, y.v);
    return x.w;
}

typedef uint32_t qk_word __attribute__((may_alias));

static inline uint32_t qk_sll4(uint32_t v, int n)
{
    union { uint32_t w; qk_v4u v; } x = {v};
    x.v = x.v << (unsigned char)n;
    return x.w;
}

static inline uint32_t qk_sra4(uint32_t v, int n)
{
    union { uint32_t w; qk_v4s v; } x = {v};
    x.v = x.v >> (signed char)n;
    return x.w;
}

#else

static inline int32_t qk_sdotsp4(uint32_t a, uint32_t b, int32_t acc)
{
    int lane;
    for (lane = 0; lane < 32; lane += 8) {
        acc += (int32_t)(int8_t)(a >> lane) * (int32_t)(int8_t)(b >> lane);
    }
    return acc;
}

static inline int32_t qk_sdotusp4(uint32_t a, uint32_t b, int32_t acc)
{
    int lane;
    for (lane = 0; lane < 32; lane += 8) {
        acc += (int32_t)(uint8_t)(a >> lane) * (int32_t)(int8_t)(b >> lane);
    }
    return acc;
}

static inline uint32_t qk_max4(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    int lane;
    for (lane = 0; lane < 32; lane += 8) {
        int8_t u = (int8_t)(a >> lane), v = (int8_t)(b >> lane);
        r |= (uint32_t)(uint8_t)(u > v ? u : v) << lane;
    }
    return r;
}

static inline uint32_t qk_maxu4(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    int lane;
    for (lane = 0; lane < 32; lane += 8) {
        uint32_t u = (a >> lane) & 0xffu, v = (b >> lane) & 0xffu;
        r |= (u > v ? u : v) << lane;
    }
    return r;
}

/* The host may be strict about alignment: the word type says a load may be misaligned. */
typedef uint32_t qk_word __attribute__((may_alias, aligned(1)));

static inline uint32_t qk_sll4(uint32_t v, int n)
{
    uint32_t r = 0;
    int lane;
    for (lane = 0; lane < 32; lane += 8) {
        r |= (uint32_t)(uint8_t)(((v >> lane) & 0xffu) << n) << lane;
    }
    return r;
}

/* The sign is copied in by hand: C leaves >> of a negative value to the compiler. */
static inline uint32_t qk_sra4(uint32_t v, int n)
{
    uint32_t r = 0;
    int lane;
    for (lane = 0; lane < 32; lane += 8) {
        uint32_t b = (v >> lane) & 0xffu;
        uint32_t shifted = (b >> n) | ((b & 0x80u) ? (0xffu << (8 - n)) & 0xffu : 0u);
        r |= shifted << lane;
    }
    return r;
}

#endif

#if !defined(QK_CV32E40P)
static inline void qk_copy_words(uint8_t *dst, const uint8_t *src, int32_t words)
{
    for (; words > 0; words--, dst += 4, src += 4) {
        *(qk_word *)dst = *(const qk_word *)src;
    }
}
#endif

/* The requantization's last steps: a rounding shift, a clip and four outputs' bytes as one word.
 * Single XpulpV2 ALU instructions on the CV32E40P; portable C elsewhere (GCC folds the clip to
 * its min/max instructions on PULP). */
#if defined(QK_CV32E40P)

/* (a + b + 2^(n-1)) >> n, arithmetic, for n in 1..31, where a + b + 2^(n-1) fits int32. */
static inline __attribute__((always_inline)) int32_t qk_add_round_shift(int32_t a, int32_t b,
    int32_t n)
{
    __asm__("cv.addrnr %0, %1, %2" : "+r"(a) : "r"(b), "r"(n));
    return a;
}

/* v clamped to [0, b], for b >= 0. */
static inline __attribute__((always_inline)) int32_t qk_clipu(int32_t v, int32_t b)
{
    __asm__("cv.clipur %0, %1, %2" : "=r"(v) : "r"(v), "r"(b));
    return v;
}

/* The low bytes of v0..v3 as the lanes 0..3 of a word. */
static inline __attribute__((always_inline)) uint32_t qk_pack4(int32_t v0, int32_t v1,
    int32_t v2, int32_t v3)
{
    uint32_t w;
    __asm__("cv.packhi.b %0, %1, %2" : "=r"(w) : "r"(v3), "r"(v2));
    __asm__("cv.packlo.b %0, %1, %2" : "+r"(w) : "r"(v1), "r"(v0));
    return w;
}

/* Each lane a's plus b's, modulo 256. */
static inline __attribute__((always_inline)) uint32_t qk_add4(uint32_t a, uint32_t b)
{
    __asm__("cv.add.b %0, %1, %2" : "=r"(a) : "r"(a), "r"(b));
    return a;
}

#else

static inline int32_t qk_add_round_shift(int32_t a, int32_t b, int32_t n)
{
    return (a + b + (1 << (n - 1))) >> n;
}

static inline int32_t qk_clipu(int32_t v, int32_t b)
{
    return v < 0 ? 0 : (v > b ? b : v);
}

static inline uint32_t qk_pack4(int32_t v0, int32_t v1, int32_t v2, int32_t v3)
{
    return (uint32_t)(uint8_t)v0 | (uint32_t)(uint8_t)v1 << 8 | (uint32_t)(uint8_t)v2 << 16
        | (uint32_t)(uint8_t)v3 << 24;
}

static inline uint32_t qk_add4(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    int lane;
    for (lane = 0; lane < 32; lane += 8) {
        r |= (uint32_t)(uint8_t)((a >> lane) + (b >> lane)) << lane;
    }
    return r;
}

#endif

/* The word at p, which may be misaligned. */
static inline __attribute__((always_inline)) uint32_t qk_ld32(const uint8_t *p)
{
    return *(const qk_word *)p;
}

/* Stores v as the word at p, which may be misaligned. */
static inline __attribute__((always_inline)) void qk_st32(uint8_t *p, uint32_t v)
{
    *(qk_word *)p = v;
}

/* acc + the dot product of four 8-bit activation lanes (signed or unsigned) and four signed
 * weight lanes. */
static inline __attribute__((always_inline)) int32_t qk_dot4(uint32_t x, uint32_t w,
    int x_signed, int32_t acc)
{
    return x_signed ? qk_sdotsp4(x, w, acc) : qk_sdotusp4(x, w, acc);
}

/* Each lane the larger of x's and y's, the lanes signed or unsigned. */
static inline __attribute__((always_inline)) uint32_t qk_max_lanes(uint32_t x, uint32_t y,
    int x_signed)
{
    return x_signed ? qk_max4(x, y) : qk_maxu4(x, y);
}

/* Unpacks the packed `bits`-bit signed values of w (bits 2, 4 or 8) to four signed 8-bit lanes:
 * lane b holds value b * (8 / bits) + slot of the word, i.e. the slot-th value of each byte. A
 * word of 8 / bits slots thus holds its 32 / bits values in the order slot-major, which is the
 * order kernels/unpack.h's qk_permute_chunks gives the activations they meet. */
static inline __attribute__((always_inline)) uint32_t qk_lanes_s(uint32_t w, int bits, int slot)
{
    if (bits == 8) {
        return w;
    }
    return qk_sra4(qk_sll4(w, 8 - bits * (slot + 1)), 8 - bits);
}

#endif
