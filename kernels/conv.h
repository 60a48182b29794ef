/* A convolution (grouped, depthwise or not) over HWC buffers: per output pixel and channel, the
 * dot products of the taps inside the input (the kernel's own `dot`, its widths fixed), then the
 * requantization. Weights are OHWI within a
 * group (cin / groups input channels per output channel).
 * A generic body of kernels.h, included once per accumulator type QK_ACC. */

QK_INLINE void QK_CAT(qk_conv_, QK_ACC)(const uint8_t *x, uint8_t *y, const uint8_t *w,
    const int32_t *bias, const int32_t *k, int shift, int32_t lo, int32_t hi, const conv_shape *s,
    QK_CAT(qk_dot_fn_, QK_ACC) dot, int out_bits)
{
    int oy, ox, oc, ky, kx;
    int cin_g = s->in_c / s->groups, cout_g = s->out_c / s->groups;
    for (oy = 0; oy < s->out_h; oy++) {
        for (ox = 0; ox < s->out_w; ox++) {
            for (oc = 0; oc < s->out_c; oc++) {
                int g = oc / cout_g;
                QK_ACC acc = bias[oc];
                for (ky = 0; ky < s->kernel_h; ky++) {
                    int iy = oy * s->stride_h + ky - s->pad_top;
                    if (iy < 0 || iy >= s->in_h) continue;
                    for (kx = 0; kx < s->kernel_w; kx++) {
                        int ix = ox * s->stride_w + kx - s->pad_left;
                        int32_t wbase = ((oc * s->kernel_h + ky) * s->kernel_w + kx) * cin_g;
                        int32_t xbase = (iy * s->in_w + ix) * s->in_c + g * cin_g;
                        if (ix < 0 || ix >= s->in_w) continue;
                        acc = dot(w, wbase, x, xbase, cin_g, acc);
                    }
                }
                qk_store(y, (oy * s->out_w + ox) * s->out_c + oc, out_bits,
                    qk_requant(acc, k[oc], shift, lo, hi));
            }
        }
    }
}
