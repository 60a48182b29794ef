//! The integer graph's weight layouts (HWC inputs) as ONNX lays them out (CHW), for the
//! exports.

use super::integerize::IntTensor;
use crate::graph::Window;

/// Convolution weights from the integer graph's `[out][kh][kw][in]` to ONNX's
/// `[out][in][kh][kw]`.
pub(super) fn kernel_to_chw(w: &[i8], out_c: usize, cin: usize, window: Window) -> Vec<i8> {
    let area = window.kernel[0] * window.kernel[1];
    let row = area * cin;
    let mut out = vec![0; w.len()];
    for o in 0..out_c {
        for k in 0..area {
            for c in 0..cin {
                out[o * row + c * area + k] = w[o * row + k * cin + c];
            }
        }
    }
    out
}

/// Linear weights `[out][in]` whose inputs follow the HWC order of `x` (the integer graph's),
/// with the inputs reordered to the CHW order in which `Flatten` lays out `[1, C, H, W]`.
pub(super) fn rows_to_chw(w: &[i8], rows: usize, x: &IntTensor, x_rank2: bool) -> Vec<i8> {
    let (c, hw) = (x.shape.c, x.shape.h * x.shape.w);
    if x_rank2 || hw == 1 {
        return w.to_vec();
    }
    let row = w.len() / rows;
    let mut out = vec![0; w.len()];
    for o in 0..rows {
        for p in 0..hw {
            for ch in 0..c {
                out[o * row + ch * hw + p] = w[o * row + p * c + ch];
            }
        }
    }
    out
}
