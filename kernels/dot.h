/* The dot product of n packed signed weights (w_bits) from index wi with n packed inputs
 * (in_bits, in_signed) from index xi, added to acc: on the PULP path four lanes per XpulpV2 sdotp
 * (whose sum fits int32 even where the accumulator is int64), the rest one by one.
 * A generic body of kernels.h, included once per accumulator type QK_ACC: forced inline into each
 * kernel's own dot product (QK_DOT), which fixes its bit widths; whether that one is inlined into
 * the kernel's loops is the compiler's choice (forced, gcc -Os, the rv32imc microbenchmarks,
 * spends up to 13% more instructions on a convolution). */

/* A kernel's own dot product: (w, wi, x, xi, n, acc) with the widths fixed. */
typedef QK_ACC (*QK_CAT(qk_dot_fn_, QK_ACC))(const uint8_t *w, int32_t wi, const uint8_t *x,
    int32_t xi, int32_t n, QK_ACC acc);

QK_INLINE QK_ACC QK_CAT(qk_dot_, QK_ACC)(const uint8_t *w, int32_t wi, int w_bits,
    const uint8_t *x, int32_t xi, int in_bits, int in_signed, int32_t n, QK_ACC acc)
{
    int32_t i = 0;
#ifdef QSEARCH_PULP
    for (; i + 4 <= n; i += 4) {
        uint32_t xl = qk_lanes(x, xi + i, in_bits, in_signed);
        uint32_t wl = qk_lanes(w, wi + i, w_bits, 1);
        /* An int32 accumulator goes through the instruction; an int64 one adds its result. */
        int32_t into = sizeof(QK_ACC) > 4 ? 0 : (int32_t)acc;
        int32_t sum = in_signed ? qk_sdotsp4(xl, wl, into) : qk_sdotusp4(xl, wl, into);
        acc = sizeof(QK_ACC) > 4 ? acc + sum : (QK_ACC)sum;
    }
#endif
    for (; i < n; i++) {
        acc += (QK_ACC)qk_load(w, wi + i, w_bits, 1) * qk_load(x, xi + i, in_bits, in_signed);
    }
    return acc;
}
