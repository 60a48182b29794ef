//! The integer golden model: runs an [`IntGraph`] on an image of bytes (HWC) in plain integer
//! arithmetic. It is the reference the generated C is checked against, layer by layer.

use super::integerize::{IntGraph, IntLayer, IntOp};
use crate::graph::{Shape, Window};

/// Every buffer's integers after running `graph` on `image` (bytes, HWC).
pub fn run(graph: &IntGraph, image: &[u8]) -> Vec<Vec<i32>> {
    let mut buffers: Vec<Vec<i32>> = vec![Vec::new(); graph.tensors.len()];
    buffers[graph.input] = image.iter().map(|&b| i32::from(b)).collect();
    for layer in &graph.layers {
        let out = layer_output(graph, layer, &buffers);
        buffers[layer.output] = out;
    }
    buffers
}

/// The index of the largest output integer (the first on ties): the predicted class.
pub(crate) fn argmax(values: &[i32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

fn layer_output(graph: &IntGraph, layer: &IntLayer, buffers: &[Vec<i32>]) -> Vec<i32> {
    let x = &buffers[layer.inputs[0]];
    let ins = graph.tensors[layer.inputs[0]].shape;
    let outs = graph.tensors[layer.output].shape;
    let r = &layer.requant;
    let mut y = vec![0i32; outs.elements() as usize];
    match &layer.op {
        IntOp::Conv {
            weights,
            bias,
            window,
            groups,
            ..
        } => {
            let cin_g = ins.c / groups;
            let cout_g = outs.c / groups;
            let [kh, kw] = window.kernel;
            for oy in 0..outs.h {
                for ox in 0..outs.w {
                    for oc in 0..outs.c {
                        let g = oc / cout_g;
                        let w = &weights[oc * kh * kw * cin_g..];
                        let mut acc = i64::from(bias[oc]);
                        for (ky, kx, iy, ix) in taps(*window, ins, oy, ox) {
                            let wk = &w[(ky * kw + kx) * cin_g..][..cin_g];
                            let xi = &x[(iy * ins.w + ix) * ins.c + g * cin_g..][..cin_g];
                            acc += wk
                                .iter()
                                .zip(xi)
                                .map(|(&a, &b)| i64::from(a) * i64::from(b))
                                .sum::<i64>();
                        }
                        y[(oy * outs.w + ox) * outs.c + oc] = r.apply(oc, acc);
                    }
                }
            }
        }
        IntOp::Linear { weights, bias, .. } => {
            let n = x.len();
            for (o, out) in y.iter_mut().enumerate() {
                let acc = i64::from(bias[o])
                    + weights[o * n..][..n]
                        .iter()
                        .zip(x)
                        .map(|(&a, &b)| i64::from(a) * i64::from(b))
                        .sum::<i64>();
                *out = r.apply(o, acc);
            }
        }
        IntOp::MaxPool { window } | IntOp::AvgPool { window } => {
            let max = matches!(layer.op, IntOp::MaxPool { .. });
            for oy in 0..outs.h {
                for ox in 0..outs.w {
                    for c in 0..outs.c {
                        let values = taps(*window, ins, oy, ox)
                            .map(|(_, _, iy, ix)| i64::from(x[(iy * ins.w + ix) * ins.c + c]));
                        let acc = if max {
                            values.max().unwrap_or(0)
                        } else {
                            values.sum()
                        };
                        y[(oy * outs.w + ox) * outs.c + c] = r.apply(0, acc);
                    }
                }
            }
        }
        IntOp::GlobalAvgPool | IntOp::GlobalMaxPool => {
            for (c, out) in y.iter_mut().enumerate() {
                let values = x.iter().skip(c).step_by(ins.c).map(|&v| i64::from(v));
                let acc = if matches!(layer.op, IntOp::GlobalMaxPool) {
                    values.max().unwrap_or(0)
                } else {
                    values.sum()
                };
                *out = r.apply(0, acc);
            }
        }
        IntOp::Add { rescale: [ra, rb] } => {
            let b = &buffers[layer.inputs[1]];
            for (i, out) in y.iter_mut().enumerate() {
                let sum = i64::from(ra.apply(0, i64::from(x[i])))
                    + i64::from(rb.apply(0, i64::from(b[i])));
                *out = r.apply(0, sum);
            }
        }
    }
    y
}

/// The kernel taps of output pixel (`oy`, `ox`) that fall inside the input (padding is skipped:
/// zeros contribute nothing to a sum, and a maximum ignores them).
fn taps(
    window: Window,
    ins: Shape,
    oy: usize,
    ox: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let [kh, kw] = window.kernel;
    let [sy, sx] = window.stride;
    let (top, left) = (window.padding.top, window.padding.left);
    (0..kh).flat_map(move |ky| {
        (0..kw).filter_map(move |kx| {
            let iy = (oy * sy + ky).checked_sub(top)?;
            let ix = (ox * sx + kx).checked_sub(left)?;
            (iy < ins.h && ix < ins.w).then_some((ky, kx, iy, ix))
        })
    })
}
