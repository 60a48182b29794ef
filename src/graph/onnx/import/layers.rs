//! Layers with weights: convolutions, linear layers (`Gemm`, `MatMul`) and the batch
//! normalizations and bias additions folded into them.

use super::Importer;
use super::attributes::{attr_float, attr_int, attr_ints, attr_string};
use super::values::{flat, nchw, with_tensor};
use super::{MAX_DIM, Value};
use crate::graph::TensorId;
use crate::graph::onnx::ImportError;
use crate::graph::onnx::proto::NodeProto;
use crate::graph::onnx::tensor::Constant;
use crate::graph::op::{BatchNorm, Conv, Linear, Op, Padding, Shape, Window};

/// Kernel, strides and padding of a convolution or pooling, resolving `auto_pad`.
pub(super) fn window(
    imp: &Importer,
    node: &NodeProto,
    name: &str,
    kernel: [usize; 2],
    input: Shape,
) -> Result<Window, ImportError> {
    let in_range = |v: i64| (1..=MAX_DIM as i64).contains(&v);
    let positive = |v: Vec<i64>, what: &str| -> Result<[usize; 2], ImportError> {
        match v.as_slice() {
            [a, b] if in_range(*a) && in_range(*b) => Ok([*a as usize, *b as usize]),
            _ => Err(imp.error(
                node,
                name,
                format!("{what} {v:?} must be two positive values up to {MAX_DIM} (2-D only)"),
            )),
        }
    };
    if kernel.iter().any(|&k| k > MAX_DIM) {
        return Err(imp.error(
            node,
            name,
            format!("kernel {kernel:?} exceeds {MAX_DIM} in a dimension"),
        ));
    }
    let stride = positive(attr_ints(node, "strides").unwrap_or(vec![1, 1]), "strides")?;
    if let Some(d) = attr_ints(node, "dilations")
        && d.iter().any(|&x| x != 1)
    {
        return Err(imp.error(
            node,
            name,
            format!("dilations {d:?} are not supported (only 1)"),
        ));
    }
    if attr_int(node, "ceil_mode", 0) != 0 {
        return Err(imp.error(node, name, "ceil_mode=1 is not supported"));
    }
    let auto_pad = attr_string(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    let padding = match auto_pad.as_str() {
        "NOTSET" => match attr_ints(node, "pads").unwrap_or(vec![0; 4]).as_slice() {
            [t, l, b, r]
                if [t, l, b, r]
                    .iter()
                    .all(|&&p| (0..=MAX_DIM as i64).contains(&p)) =>
            {
                Padding {
                    top: *t as usize,
                    left: *l as usize,
                    bottom: *b as usize,
                    right: *r as usize,
                }
            }
            p => {
                return Err(imp.error(
                    node,
                    name,
                    format!("pads {p:?} must be four values from 0 to {MAX_DIM}"),
                ));
            }
        },
        "VALID" => Padding::default(),
        "SAME_UPPER" | "SAME_LOWER" => {
            let total = |size: usize, k: usize, s: usize| (size.div_ceil(s) - 1) * s + k;
            let th = total(input.h, kernel[0], stride[0]).saturating_sub(input.h);
            let tw = total(input.w, kernel[1], stride[1]).saturating_sub(input.w);
            let (top, left) = if auto_pad == "SAME_UPPER" {
                (th / 2, tw / 2)
            } else {
                (th - th / 2, tw - tw / 2)
            };
            Padding {
                top,
                left,
                bottom: th - top,
                right: tw - left,
            }
        }
        other => {
            return Err(imp.error(
                node,
                name,
                format!("auto_pad '{other}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"),
            ));
        }
    };
    Ok(Window {
        kernel,
        stride,
        padding,
    })
}

pub(super) fn conv(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let x = imp.spatial(node, name, 0)?;
    let weight = imp.constant(node, name, 1)?.clone();
    let bias = imp
        .optional_constant(node, name, 2)?
        .map(Constant::as_floats);
    let [out, _, kh, kw] =
        match weight.dims.as_slice() {
            [o, i, h, w] if [o, i, h, w].iter().all(|&&d| d > 0) => [*o as usize, *i as usize, *h as usize, *w as usize],
            d => return Err(imp.error(
                node,
                name,
                format!(
                    "weight has shape {d:?}; only 2-D convolutions ([O, I, KH, KW], every dimension positive) are supported"
                ),
            )),
        };
    let input = imp.builder.shape(x);
    let window = window(imp, node, name, [kh, kw], input)?;
    let groups = attr_int(node, "group", 1);
    if groups < 1 {
        return Err(imp.error(node, name, format!("group {groups} must be positive")));
    }
    let op = Op::Conv(Conv {
        out_channels: out,
        window,
        groups: groups as usize,
        weight: weight.as_floats(),
        bias: bias.unwrap_or_else(|| vec![0.0; out]),
    });
    imp.emit_as(node, name, op, x, nchw)
}

/// The flat activation feeding a classifier, and its weight-column permutation if it was NHWC.
pub(super) fn classifier_input(
    imp: &Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(TensorId, Option<Shape>), ImportError> {
    match imp.value(node, name, 0)? {
        Value::Flat { tensor, hwc_from } => Ok((*tensor, *hwc_from)),
        _ => Err(imp.error(
            node,
            name,
            "input A must be a 2-D activation [1, N] (flatten or reshape first)",
        )),
    }
}

/// Adds a linear layer whose `[out, in]` weight is in the ONNX input's element order.
pub(super) fn emit_linear(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
    (x, hwc_from): (TensorId, Option<Shape>),
    mut linear: Linear,
) -> Result<(), ImportError> {
    // A weight of the wrong size is left as it is, for the IR's shape check to report.
    if let Some(s) = hwc_from
        && Some(linear.weight.len()) == linear.out_features.checked_mul(s.c * s.h * s.w)
    {
        linear.weight = hwc_columns_to_chw(&linear.weight, linear.out_features, s);
    }
    imp.emit_as(node, name, Op::Linear(linear), x, flat)
}

/// Reorders weight columns indexed in HWC order (`(h * W + w) * C + c`) to CHW order.
pub(super) fn hwc_columns_to_chw(weight: &[f32], out: usize, s: Shape) -> Vec<f32> {
    let n = s.c * s.h * s.w;
    let mut permuted = vec![0.0; weight.len()];
    for o in 0..out {
        for c in 0..s.c {
            for h in 0..s.h {
                for w in 0..s.w {
                    permuted[o * n + (c * s.h + h) * s.w + w] =
                        weight[o * n + (h * s.w + w) * s.c + c];
                }
            }
        }
    }
    permuted
}

pub(super) fn gemm(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let (x, hwc_from) = classifier_input(imp, node, name)?;
    if attr_int(node, "transA", 0) != 0 {
        return Err(imp.error(node, name, "transA=1 is not supported"));
    }
    let b = imp.constant(node, name, 1)?.clone();
    let alpha = attr_float(node, "alpha", 1.0);
    let beta = attr_float(node, "beta", 1.0);
    let (rows, cols) = match b.dims.as_slice() {
        [r, c] => (*r as usize, *c as usize),
        d => return Err(imp.error(node, name, format!("B has shape {d:?}, expected 2-D"))),
    };
    let trans_b = attr_int(node, "transB", 0) != 0;
    let (out, weight) = if trans_b {
        (rows, b.as_floats())
    } else {
        (cols, transpose2(&b.as_floats(), rows, cols))
    };
    let weight: Vec<f32> = weight.into_iter().map(|w| w * alpha).collect();
    let bias = match imp.optional_constant(node, name, 2)? {
        Some(c) if c.len() == out => c.as_floats().into_iter().map(|v| v * beta).collect(),
        Some(c) if c.len() == 1 => vec![c.as_floats()[0] * beta; out],
        Some(c) => {
            return Err(imp.error(
                node,
                name,
                format!("C has {} values, expected {out}", c.len()),
            ));
        }
        None => vec![0.0; out],
    };
    emit_linear(
        imp,
        node,
        name,
        (x, hwc_from),
        Linear {
            out_features: out,
            weight,
            bias,
        },
    )
}

pub(super) fn matmul(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let (x, hwc_from) = classifier_input(imp, node, name)?;
    let b = imp.constant(node, name, 1)?.clone();
    let (rows, cols) = match b.dims.as_slice() {
        [r, c] => (*r as usize, *c as usize),
        d => {
            return Err(imp.error(
                node,
                name,
                format!("B has shape {d:?}, expected a 2-D weight [in, out]"),
            ));
        }
    };
    let weight = transpose2(&b.as_floats(), rows, cols);
    emit_linear(
        imp,
        node,
        name,
        (x, hwc_from),
        Linear {
            out_features: cols,
            weight,
            bias: vec![0.0; cols],
        },
    )
}

pub(super) fn transpose2(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

pub(super) fn batch_norm(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    if attr_int(node, "training_mode", 0) != 0 {
        return Err(imp.error(
            node,
            name,
            "training_mode=1: export the model in inference mode (model.eval())",
        ));
    }
    let floats = |i| imp.constant(node, name, i).map(Constant::as_floats);
    let op = Op::BatchNorm(BatchNorm {
        scale: floats(1)?,
        bias: floats(2)?,
        mean: floats(3)?,
        var: floats(4)?,
        epsilon: attr_float(node, "epsilon", 1e-5),
    });
    let x = imp.spatial_or_flat(node, name)?;
    let out = imp.emit(node, name, op, &[x.0])?;
    imp.set(node, with_tensor(x.1, out));
    Ok(())
}

/// `MatMul` + `Add(bias)` and bias-free `Conv` + `Add(bias)`: the constant joins the layer's bias.
pub(super) fn fold_bias(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
    act_index: usize,
    act: Value,
    c: &Constant,
) -> Result<(), ImportError> {
    let (Value::Spatial { tensor, .. } | Value::Flat { tensor, .. }) = act else {
        unreachable!()
    };
    let single_use = imp.uses.get(&node.input[act_index]).copied() == Some(1);
    let values = c.as_floats();
    let folded = single_use
        && match imp.builder.producer_op_mut(tensor) {
            Some(Op::Linear(Linear { bias, .. }) | Op::Conv(Conv { bias, .. }))
                if values.len() == bias.len() || values.len() == 1 =>
            {
                let n = bias.len();
                for (i, b) in bias.iter_mut().enumerate() {
                    *b += values[if values.len() == 1 { 0 } else { i % n }];
                }
                true
            }
            _ => false,
        };
    if !folded {
        return Err(imp.error(
            node,
            name,
            "adds a constant; qsearch supports that only as the bias of the Conv, Gemm or MatMul that produces the other input",
        ));
    }
    imp.set(node, act);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwc_columns_are_permuted_to_chw() {
        // one output, C=2, H=1, W=2: HWC order is (w0c0, w0c1, w1c0, w1c1)
        let w = vec![1.0, 2.0, 3.0, 4.0];
        let p = hwc_columns_to_chw(&w, 1, Shape::new(2, 1, 2));
        assert_eq!(p, vec![1.0, 3.0, 2.0, 4.0]);
    }
}
