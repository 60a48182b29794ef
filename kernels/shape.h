/* The geometry of a convolution or pooling over HWC buffers, as every windowed kernel reads it. */
#ifndef QSEARCH_KERNELS_SHAPE_H
#define QSEARCH_KERNELS_SHAPE_H

typedef struct {
    int in_c, in_h, in_w, out_c, out_h, out_w;
    int kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, groups;
} conv_shape;

#endif
