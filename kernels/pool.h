/* Poolings over HWC buffers: the maximum (is_max) or the sum of the values, then the
 * requantization (an average's division is in its multiplier k). A window pooling reduces the
 * taps inside the input; a global one every pixel of a channel.
 * Generic bodies of kernels.h, included once per accumulator type QK_ACC. */

QK_INLINE void QK_CAT(qk_pool_, QK_ACC)(const uint8_t *x, uint8_t *y, int32_t k, int shift,
    int32_t lo, int32_t hi, const conv_shape *s, int is_max, int in_bits, int in_signed,
    int out_bits)
{
    int oy, ox, c, ky, kx;
    for (oy = 0; oy < s->out_h; oy++) {
        for (ox = 0; ox < s->out_w; ox++) {
            for (c = 0; c < s->out_c; c++) {
                QK_ACC acc = is_max ? INT32_MIN : 0;
                for (ky = 0; ky < s->kernel_h; ky++) {
                    int iy = oy * s->stride_h + ky - s->pad_top;
                    if (iy < 0 || iy >= s->in_h) continue;
                    for (kx = 0; kx < s->kernel_w; kx++) {
                        int ix = ox * s->stride_w + kx - s->pad_left;
                        QK_ACC v;
                        if (ix < 0 || ix >= s->in_w) continue;
                        v = qk_load(x, (iy * s->in_w + ix) * s->in_c + c, in_bits, in_signed);
                        acc = is_max ? (v > acc ? v : acc) : acc + v;
                    }
                }
                qk_store(y, (oy * s->out_w + ox) * s->out_c + c, out_bits,
                    qk_requant(acc, k, shift, lo, hi));
            }
        }
    }
}

QK_INLINE void QK_CAT(qk_global_pool_, QK_ACC)(const uint8_t *x, uint8_t *y, int32_t k,
    int shift, int32_t lo, int32_t hi, int32_t pixels, int32_t channels, int is_max, int in_bits,
    int in_signed, int out_bits)
{
    int32_t p, c;
    for (c = 0; c < channels; c++) {
        QK_ACC acc = is_max ? INT32_MIN : 0;
        for (p = 0; p < pixels; p++) {
            QK_ACC v = qk_load(x, p * channels + c, in_bits, in_signed);
            acc = is_max ? (v > acc ? v : acc) : acc + v;
        }
        qk_store(y, c, out_bits, qk_requant(acc, k, shift, lo, hi));
    }
}
