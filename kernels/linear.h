/* A linear layer: one dot product per output neuron (the kernel's own `dot`, its widths fixed;
 * weights row-major, n_in per neuron), then the requantization.
 * A generic body of kernels.h, included once per accumulator type QK_ACC. */

QK_INLINE void QK_CAT(qk_linear_, QK_ACC)(const uint8_t *x, uint8_t *y, const uint8_t *w,
    const int32_t *bias, const int32_t *k, int shift, int32_t lo, int32_t hi, int32_t n_in,
    int32_t n_out, QK_CAT(qk_dot_fn_, QK_ACC) dot, int out_bits)
{
    int32_t o;
    for (o = 0; o < n_out; o++) {
        QK_ACC acc = dot(w, o * n_in, x, 0, n_in, bias[o]);
        qk_store(y, o, out_bits, qk_requant(acc, k[o], shift, lo, hi));
    }
}
