/* One layer of `cargo bench --bench rtl` on the CV32E40P: the blocked kernel and the scalar
 * reference loop (the generic kernel of kernels.h, scalar, at the same precisions) on the
 * same random operands, each timed with mcycle, outputs compared byte for byte. Prints
 * "blocked CYCLES reference CYCLES mismatches N".
 *
 * The including file defines WB, IB, IS, OB, KIND (CONV, DEPTHWISE, LINEAR, MAXPOOL or AVGPOOL),
 * the output range LO..HI, SHIFT, K_BASE and K_SPREAD (the multipliers are K_BASE plus a random
 * K_SPREAD-bit number: about the multiplier that maps the accumulators onto the range at that
 * shift; a pooling's one multiplier) and the layer's geometry: SHAPE (a conv_shape initializer)
 * for the windowed kinds, N_IN and N_OUT for LINEAR. With NARROW defined, the blocked kernel is
 * its 32-bit variant (name##_narrow of QK_BLOCKED_KERNEL, matmul.h): the including file then
 * keeps every product |k * acc| + 2^(SHIFT-1) below 2^31. */
#define QK_CV32E40P
#include "qsearch_rtl.h"
#include "../../kernels/conv_blocked.h"
#include "../../kernels/depthwise.h"
#include "../../kernels/linear_blocked.h"
#include "../../kernels/pool_blocked.h"

#define CONV 0
#define DEPTHWISE 1
#define LINEAR 2
#define MAXPOOL 3
#define AVGPOOL 4
#define POOLING (KIND == MAXPOOL || KIND == AVGPOOL)

/* No C library on the harness: clang may call these for copy and fill loops. */
#include "../../kernels/freestanding.c"

#if KIND == LINEAR
#define IN_VALUES N_IN
#define OUT_VALUES N_OUT
#define CHANNELS N_OUT
#define WEIGHTS (N_IN * N_OUT)
#define SCRATCH QK_LINEAR_BLOCKED_SCRATCH(N_IN)
int32_t n_in = N_IN, n_out = N_OUT;
#else
/* Not const: the kernel must not see the geometry at compile time, as a generated network's
 * call does not. */
conv_shape shape = SHAPE;
#define IN_VALUES (shape.in_h * shape.in_w * shape.in_c)
#define OUT_VALUES (shape.out_h * shape.out_w * shape.out_c)
#define CHANNELS (shape.out_c)
#if POOLING
#define WEIGHTS 0
#define SCRATCH 0
#else
#define WEIGHTS (shape.out_c * QK_CONV_K(&shape))
#endif
#if KIND == DEPTHWISE
#define SCRATCH QK_DEPTHWISE_SCRATCH(&shape)
#elif !POOLING
#define SCRATCH QK_CONV_BLOCKED_SCRATCH(&shape)
#endif
#endif

/* Sized for the largest benchmark layer. */
/* Word-aligned, as a deployment places weights and buffers: misaligned words cost a cycle more. */
static uint8_t x[65536] __attribute__((aligned(4))), w[65536] __attribute__((aligned(4)));
static uint8_t y[32768] __attribute__((aligned(4))), want[32768] __attribute__((aligned(4)));
static uint8_t scratch[65536] __attribute__((aligned(4)));
static int32_t bias[1024], k[1024];
/* The requantization's parameters, also out of the compiler's sight; the shift as the integerizer
 * chooses it (the largest that keeps k below 2^31). */
int shift = SHIFT;
int32_t lo = LO, hi = HI;
#ifdef NARROW
#define BLOCKED blocked_narrow
#else
#define BLOCKED blocked
#endif

#if KIND == LINEAR
QK_LINEAR_BLOCKED(blocked, WB, IB, IS, OB)
QK_LINEAR(generic, WB, IB, IS, OB, int32_t)
static __attribute__((noinline)) void reference(void)
{
    generic(x, want, w, bias, k, shift, lo, hi, n_in, n_out);
}
static __attribute__((noinline)) void run_blocked(void)
{
    BLOCKED(blocked_operand(x, scratch, n_in), y, w, bias, k, shift, lo, hi, n_in, n_out);
}
#elif POOLING
QK_POOL_BLOCKED(blocked, KIND == MAXPOOL, IB, IS, OB)
QK_POOL(generic, KIND == MAXPOOL, IB, IS, OB, int32_t)
static __attribute__((noinline)) void reference(void)
{
    generic(x, want, k[0], shift, lo, hi, &shape);
}
static __attribute__((noinline)) void run_blocked(void)
{
    BLOCKED(x, y, k[0], shift, lo, hi, &shape);
}
#else
#if KIND == DEPTHWISE
QK_DEPTHWISE(blocked, WB, IB, IS, OB)
#else
QK_CONV_BLOCKED(blocked, WB, IB, IS, OB)
#endif
QK_CONV(generic, WB, IB, IS, OB, int32_t)
static __attribute__((noinline)) void reference(void)
{
    generic(x, want, w, bias, k, shift, lo, hi, &shape);
}
static __attribute__((noinline)) void run_blocked(void)
{
    BLOCKED(x, y, w, bias, k, shift, lo, hi, &shape, scratch);
}
#endif

int main(void)
{
    uint32_t seed = 1, start, blocked_cycles, reference_cycles;
    int32_t i, mismatches = 0;
    if ((uint32_t)SCRATCH > sizeof scratch || (uint32_t)(IN_VALUES * IB / 8) > sizeof x
        || (uint32_t)(WEIGHTS * WB / 8) > sizeof w || (uint32_t)OUT_VALUES > sizeof y) {
        rtl_puts("buffers too small\n");
        return 2;
    }
    for (i = 0; i < (int32_t)sizeof x; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (uint8_t)(seed >> 24);
    }
    for (i = 0; i < (int32_t)sizeof w; i++) {
        seed = seed * 1664525u + 1013904223u;
        w[i] = (uint8_t)(seed >> 16);
    }
    for (i = 0; i < CHANNELS; i++) {
        seed = seed * 1664525u + 1013904223u;
        bias[i] = (int32_t)(seed >> 20) - 2048;
        k[i] = K_BASE + (int32_t)(seed >> (32 - K_SPREAD));
    }
    /* Out-of-line calls between the counter reads (asm volatile orders only against other
     * volatile operations): nothing of either loop moves out of its window. */
    start = rtl_cycles();
    run_blocked();
    blocked_cycles = rtl_cycles() - start;
    start = rtl_cycles();
    reference();
    reference_cycles = rtl_cycles() - start;
    for (i = 0; i < (OUT_VALUES * OB + 7) / 8; i++) {
        mismatches += y[i] != want[i];
    }
    rtl_puts("blocked ");
    rtl_putd((int32_t)blocked_cycles);
    rtl_puts(" reference ");
    rtl_putd((int32_t)reference_cycles);
    rtl_puts(" mismatches ");
    rtl_putd(mismatches);
    rtl_putc('\n');
    return mismatches != 0;
}
