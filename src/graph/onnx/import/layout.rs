//! Operators that change a tensor's shape or layout but not its values: flatten, reshape,
//! squeeze, transpose, pad.

use super::Importer;
use super::attributes::{attr_float, attr_int, attr_ints, attr_string};
use super::values::flat;
use super::{Layout, MAX_DIM, Value};
use crate::graph::TensorId;
use crate::graph::onnx::proto::NodeProto;
use crate::graph::onnx::{ImportError, constant_ops};
use crate::graph::op::{Op, Padding, Shape};

/// A rank-4 value flattened to `[1, N]`: an IR `Flatten` node, remembering NHWC order.
pub(super) fn flatten_spatial(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
    tensor: TensorId,
    layout: Layout,
) -> Result<(), ImportError> {
    let shape = imp.builder.shape(tensor);
    let y = imp.emit(node, name, Op::Flatten, &[tensor])?;
    let hwc_from =
        (layout == Layout::Nhwc && shape.c > 1 && shape.h * shape.w > 1).then_some(shape);
    imp.set(
        node,
        Value::Flat {
            tensor: y,
            hwc_from,
        },
    );
    Ok(())
}

pub(super) fn flatten(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let (tensor, value) = imp.activation(node, name, 0)?;
    if attr_int(node, "axis", 1) != 1 {
        return Err(imp.error(node, name, "only axis=1 (keep the batch axis) is supported"));
    }
    match value {
        Value::Spatial { layout, .. } => flatten_spatial(imp, node, name, tensor, layout),
        flat => {
            imp.set(node, flat);
            Ok(())
        }
    }
}

pub(super) fn reshape(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let target = match attr_ints(node, "shape") {
        Some(s) if imp.opset < 5 => s,
        _ => imp.constant(node, name, 1)?.as_ints(),
    };
    if let Value::Const(c) = imp.value(node, name, 0)? {
        let dims = resolve_reshape(&target, &c.dims).map_err(|m| imp.error(node, name, m))?;
        let value = constant_ops::reshape(c, dims).map_err(|m| imp.error(node, name, m))?;
        return imp.fold(node, name, value);
    }
    let (tensor, value) = imp.activation(node, name, 0)?;
    let current = onnx_dims(&value, imp.builder.shape(tensor));
    let resolved = resolve_reshape(&target, &current).map_err(|m| imp.error(node, name, m))?;
    if resolved == current {
        imp.set(node, value);
        return Ok(());
    }
    match (resolved.as_slice(), &value) {
        (
            [1, _],
            Value::Spatial {
                layout: Layout::Nhwc,
                ..
            },
        ) => flatten_spatial(imp, node, name, tensor, Layout::Nhwc),
        ([1, n], _) => imp.emit_as(
            node,
            name,
            Op::Reshape(Shape::vector(*n as usize)),
            tensor,
            flat,
        ),
        (
            [1, c, h, w],
            Value::Spatial {
                layout: Layout::Nchw,
                ..
            }
            | Value::Flat { hwc_from: None, .. },
        ) => {
            let y = imp.emit(
                node,
                name,
                Op::Reshape(Shape::new(*c as usize, *h as usize, *w as usize)),
                &[tensor],
            )?;
            imp.set(
                node,
                Value::Spatial {
                    tensor: y,
                    layout: Layout::Nchw,
                },
            );
            Ok(())
        }
        (dims, _) => Err(imp.error(
            node,
            name,
            format!(
                "reshape from {current:?} to {dims:?} is not supported (batch 1, rank 2 or 4, NCHW)"
            ),
        )),
    }
}

/// The ONNX dimensions of an activation value.
pub(super) fn onnx_dims(value: &Value, shape: Shape) -> Vec<i64> {
    let (c, h, w) = (shape.c as i64, shape.h as i64, shape.w as i64);
    match value {
        Value::Spatial {
            layout: Layout::Nchw,
            ..
        } => vec![1, c, h, w],
        Value::Spatial {
            layout: Layout::Nhwc,
            ..
        } => vec![1, h, w, c],
        Value::Flat { .. } => vec![1, c * h * w],
        Value::Const(k) => k.dims.clone(),
    }
}

/// Applies ONNX reshape rules: `0` copies the input dimension, one `-1` is inferred.
pub(super) fn resolve_reshape(target: &[i64], current: &[i64]) -> Result<Vec<i64>, String> {
    // Products in i128 saturate instead of overflowing on dimensions the file chose.
    let product = |dims: &[i64]| {
        dims.iter()
            .try_fold(1i128, |n, &d| n.checked_mul(i128::from(d)))
            .unwrap_or(i128::MAX)
    };
    let total = product(current);
    let mut dims: Vec<i64> = target
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d == 0 {
                current.get(i).copied().unwrap_or(0)
            } else {
                d
            }
        })
        .collect();
    let inferred: Vec<usize> = dims
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == -1)
        .map(|(i, _)| i)
        .collect();
    let known: Vec<i64> = dims.iter().copied().filter(|d| *d != -1).collect();
    let known = product(&known);
    match inferred.as_slice() {
        [] => {}
        [i] if known > 0 && total % known == 0 => {
            dims[*i] = i64::try_from(total / known).map_err(|_| {
                format!("cannot resolve shape {target:?} for an input of {total} values")
            })?
        }
        _ => {
            return Err(format!(
                "cannot resolve shape {target:?} for an input of {total} values"
            ));
        }
    }
    if dims.iter().any(|&d| d <= 0) || product(&dims) != total {
        return Err(format!(
            "shape {target:?} does not hold the {total} values of {current:?}"
        ));
    }
    Ok(dims)
}

pub(super) fn squeeze(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let (tensor, value) = imp.activation(node, name, 0)?;
    let shape = imp.builder.shape(tensor);
    match value {
        Value::Spatial { .. } if shape.h == 1 && shape.w == 1 => {
            imp.set(
                node,
                Value::Flat {
                    tensor,
                    hwc_from: None,
                },
            );
            Ok(())
        }
        Value::Flat { .. } => {
            imp.set(node, value);
            Ok(())
        }
        _ => Err(imp.error(
            node,
            name,
            format!("squeezes a {shape} tensor; only 1x1 spatial axes can be squeezed"),
        )),
    }
}

/// The layout of a rank-4 activation after `perm`: NCHW <-> NHWC, or unchanged by the identity.
pub(super) fn transposed(layout: Layout, perm: &[i64]) -> Option<Layout> {
    match (layout, perm) {
        (Layout::Nhwc, [0, 3, 1, 2]) => Some(Layout::Nchw),
        (Layout::Nchw, [0, 2, 3, 1]) => Some(Layout::Nhwc),
        (_, [0, 1, 2, 3]) => Some(layout),
        _ => None,
    }
}

pub(super) fn transpose(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let perm = attr_ints(node, "perm").unwrap_or_default();
    if let Value::Const(c) = imp.value(node, name, 0)? {
        let value = constant_ops::transpose(c, &perm).map_err(|m| imp.error(node, name, m))?;
        return imp.fold(node, name, value);
    }
    let (tensor, value) = imp.activation(node, name, 0)?;
    let shape = imp.builder.shape(tensor);
    let out = match (&value, perm.as_slice()) {
        (Value::Spatial { layout, .. }, _) if let Some(to) = transposed(*layout, &perm) => {
            Value::Spatial { tensor, layout: to }
        }
        (Value::Flat { .. }, [0, 1]) => value.clone(),
        // A 1x1 spatial tensor reads the same in any order.
        (Value::Spatial { .. }, _)
            if shape.h == 1 && shape.w == 1 && perm.len() == 4 && perm[0] == 0 =>
        {
            value.clone()
        }
        _ => {
            return Err(imp.error(
                node,
                name,
                format!("permutation {perm:?} is not supported (only NCHW <-> NHWC)"),
            ));
        }
    };
    imp.set(node, out);
    Ok(())
}

pub(super) fn pad(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let (tensor, value) = imp.activation(node, name, 0)?;
    let mode = attr_string(node, "mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(imp.error(
            node,
            name,
            format!("mode '{mode}' is not supported (only constant)"),
        ));
    }
    let (pads, fill) = if imp.opset < 11 {
        (
            attr_ints(node, "pads").unwrap_or_default(),
            attr_float(node, "value", 0.0),
        )
    } else {
        let pads = imp.constant(node, name, 1)?.as_ints();
        let fill = imp
            .optional_constant(node, name, 2)?
            .map(|c| c.as_floats())
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
        (pads, fill)
    };
    let Value::Spatial { layout, .. } = value else {
        return Err(imp.error(
            node,
            name,
            "pads a 2-D tensor; only 4-D images can be padded",
        ));
    };
    if pads.len() != 8 || pads.iter().any(|&p| !(0..=MAX_DIM as i64).contains(&p)) {
        return Err(imp.error(
            node,
            name,
            format!("pads {pads:?} must be eight values from 0 to {MAX_DIM} for a 4-D input"),
        ));
    }
    let (h, w, other) = match layout {
        Layout::Nchw => (2, 3, [0, 1]),
        Layout::Nhwc => (1, 2, [0, 3]),
    };
    if other.iter().any(|&a| pads[a] != 0 || pads[a + 4] != 0) {
        return Err(imp.error(
            node,
            name,
            format!(
                "pads {pads:?} pad the batch or channel axis; only height and width can be padded"
            ),
        ));
    }
    let padding = Padding {
        top: pads[h] as usize,
        left: pads[w] as usize,
        bottom: pads[h + 4] as usize,
        right: pads[w + 4] as usize,
    };
    let y = imp.emit(
        node,
        name,
        Op::Pad {
            padding,
            value: fill,
        },
        &[tensor],
    )?;
    imp.set(node, Value::Spatial { tensor: y, layout });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_rules() {
        assert_eq!(
            resolve_reshape(&[1, -1], &[1, 4, 2, 2]).unwrap(),
            vec![1, 16]
        );
        assert_eq!(
            resolve_reshape(&[0, -1], &[1, 4, 2, 2]).unwrap(),
            vec![1, 16]
        );
        assert!(resolve_reshape(&[1, 5], &[1, 4, 2, 2]).is_err());
        assert!(resolve_reshape(&[-1, -1], &[1, 4]).is_err());
    }
}
