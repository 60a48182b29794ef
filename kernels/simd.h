/* The XpulpV2 operations the kernels use, on each target the library builds for:
 *  - QK_CV32E40P: the CV32E40P (CORE-V) with clang-19, as inline assembly (LLVM 19 has no C
 *    builtins for these instructions);
 *  - QK_PULP_BUILTINS: the PULP/GAP SDK's GCC, as __builtin_pulp_*;
 *  - otherwise (the host, rv32imc): the same operations in portable C, bit for bit.
 * Four 8-bit lanes travel in a uint32_t, lane 0 in the low byte (a little-endian word load). */
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

#endif

#endif
