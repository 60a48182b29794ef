/* The library on every target it builds for (tests/deploy.rs): every kernel instantiated at
 * sub-byte and 8-bit precisions, signed and unsigned inputs, both accumulator types, run on
 * pseudo-random data; prints one checksum of all their outputs, which every target must print
 * alike. With QSEARCH_PULP the dot products take the XpulpV2 path and the layer drivers compile
 * too. */
#include <stdint.h>
#if defined(QSEARCH_PULP)
#define NUM_CORES 8
#include "pulp_target.h"
#endif
#include "kernels.h"
#if defined(QSEARCH_PULP)
#define L1_BYTES 1024
#include "pulp_layers.h"
#endif
#if defined(QK_CV32E40P)
#include "qsearch_rtl.h"
#else
#include <stdio.h>
#endif

QK_CONV(conv_w8_u8_o8, 8, 8, 0, 8, int32_t)
QK_CONV(conv_w4_s8_o4, 4, 8, 1, 4, int32_t)
QK_CONV(conv_w2_u2_o2_acc64, 2, 2, 0, 2, int64_t)
QK_CONV(conv_w8_u4_o8, 8, 4, 0, 8, int32_t)
QK_LINEAR(linear_w8_s8_o8, 8, 8, 1, 8, int32_t)
QK_LINEAR(linear_w2_u4_o2_acc64, 2, 4, 0, 2, int64_t)
QK_MAXPOOL(maxpool_u4_o4, 4, 0, 4, int32_t)
QK_AVGPOOL(avgpool_u8_o2_acc64, 8, 0, 2, int64_t)
QK_GLOBALAVGPOOL(globalavgpool_u2_o8, 2, 0, 8, int32_t)
QK_GLOBALMAXPOOL(globalmaxpool_s8_o4_acc64, 8, 1, 4, int64_t)
QK_ADD(add_u4_u8_o2, 4, 0, 8, 0, 2)

#define CHANNELS 12
#define SIDE 5

static uint8_t x[CHANNELS * SIDE * SIDE], w[CHANNELS * CHANNELS * 9], y[CHANNELS * SIDE * SIDE];
static int32_t bias[CHANNELS * SIDE * SIDE], k[CHANNELS * SIDE * SIDE];
static uint32_t checksum = 2166136261u;

static void fill(uint32_t seed)
{
    uint32_t state = seed, i;
    for (i = 0; i < sizeof x; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (uint8_t)(state >> 24);
    }
    for (i = 0; i < sizeof w; i++) {
        state = state * 1664525u + 1013904223u;
        w[i] = (uint8_t)(state >> 24);
    }
    for (i = 0; i < sizeof bias / sizeof bias[0]; i++) {
        bias[i] = (int32_t)(i * 37u) - 500;
        k[i] = 3 + (int32_t)(i % 7);
    }
    for (i = 0; i < sizeof y; i++) {
        y[i] = 0;
    }
}

/* Folds y into the checksum and sets up the next kernel's data. */
static void fold(uint32_t seed)
{
    uint32_t i;
    for (i = 0; i < sizeof y; i++) {
        checksum = (checksum ^ y[i]) * 16777619u;
    }
    fill(seed);
}

int main(void)
{
    /* 3x3, pad 1, stride 1 over 12 channels; then grouped (3 groups) stride 2. */
    conv_shape s = {CHANNELS, SIDE, SIDE, CHANNELS, SIDE, SIDE, 3, 3, 1, 1, 1, 1, 1};
    conv_shape g = {CHANNELS, SIDE, SIDE, CHANNELS, 3, 3, 3, 3, 2, 2, 1, 1, 3};
    conv_shape p = {CHANNELS, SIDE, SIDE, CHANNELS, 2, 2, 2, 2, 2, 2, 0, 0, 1};
    fill(1);
    conv_w8_u8_o8(x, y, w, bias, k, 10, 0, 255, &s);
    fold(2);
    conv_w4_s8_o4(x, y, w, bias, k, 9, 0, 15, &g);
    fold(3);
    conv_w2_u2_o2_acc64(x, y, w, bias, k, 4, 0, 3, &s);
    fold(4);
    conv_w8_u4_o8(x, y, w, bias, k, 8, 0, 255, &g);
    fold(5);
    linear_w8_s8_o8(x, y, w, bias, k, 11, 0, 255, 75, 10);
    fold(6);
    linear_w2_u4_o2_acc64(x, y, w, bias, k, 6, 0, 3, 37, 9);
    fold(7);
    maxpool_u4_o4(x, y, 1, 0, 0, 15, &p);
    fold(8);
    avgpool_u8_o2_acc64(x, y, 3, 6, 0, 3, &p);
    fold(9);
    globalavgpool_u2_o8(x, y, 181, 5, 0, 255, SIDE * SIDE, CHANNELS);
    fold(10);
    globalmaxpool_s8_o4_acc64(x, y, 5, 4, 0, 15, SIDE * SIDE, CHANNELS);
    fold(11);
    add_u4_u8_o2(x, w, y, 7, 3, 5, 8, 0, 3, 70);
    fold(12);
#if defined(QK_CV32E40P)
    rtl_puts("checksum ");
    rtl_putd((int32_t)checksum);
    rtl_putc('\n');
#else
    printf("checksum %d\n", (int)(int32_t)checksum);
#endif
    return 0;
}
