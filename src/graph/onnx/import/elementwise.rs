//! Element-wise operators (activations, residual additions, softmax, identities) and poolings.

use super::Importer;
use super::attributes::{attr_float, attr_int, attr_ints};
use super::layers::{fold_bias, window};
use super::values::{nchw, with_tensor};
use super::{Layout, Value};
use crate::graph::TensorId;
use crate::graph::onnx::ImportError;
use crate::graph::onnx::proto::NodeProto;
use crate::graph::onnx::tensor::Constant;
use crate::graph::op::{Activation, Op, PoolKind};

impl Importer<'_> {
    /// An NCHW or flat activation (batch norm works on the channel axis 1 of either).
    pub(super) fn spatial_or_flat(
        &self,
        node: &NodeProto,
        name: &str,
    ) -> Result<(TensorId, Value), ImportError> {
        match self.value(node, name, 0)? {
            Value::Flat { .. } => self.activation(node, name, 0),
            _ => {
                let t = self.spatial(node, name, 0)?;
                Ok((
                    t,
                    Value::Spatial {
                        tensor: t,
                        layout: Layout::Nchw,
                    },
                ))
            }
        }
    }
}

pub(super) fn relu(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    imp.elementwise(node, name, Op::Activation(Activation::Relu))
}

pub(super) fn clip(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let (min, max) = if imp.opset < 11 {
        (
            attr_float(node, "min", f32::NEG_INFINITY),
            attr_float(node, "max", f32::INFINITY),
        )
    } else {
        let bound = |i, default| -> Result<f32, ImportError> {
            Ok(imp
                .optional_constant(node, name, i)?
                .map(|c| c.as_floats())
                .and_then(|v| v.first().copied())
                .unwrap_or(default))
        };
        (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
    };
    if min.is_nan() || max.is_nan() || min > max {
        return Err(imp.error(node, name, format!("min {min} exceeds max {max}")));
    }
    imp.elementwise(node, name, Op::Activation(Activation::from_clip(min, max)))
}

pub(super) fn add(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    if node.input.len() != 2 {
        return Err(imp.error(
            node,
            name,
            format!(
                "has {} inputs; only two-input sums are supported",
                node.input.len()
            ),
        ));
    }
    let a = imp.value(node, name, 0)?.clone();
    let b = imp.value(node, name, 1)?.clone();
    match (a, b) {
        (Value::Const(_), Value::Const(_)) => Err(imp.error(node, name, "adds two constants")),
        (act, Value::Const(c)) => fold_bias(imp, node, name, 0, act, &c),
        (Value::Const(c), act) => fold_bias(imp, node, name, 1, act, &c),
        (x, y) => {
            let layouts_match = match (&x, &y) {
                (Value::Spatial { layout: l1, .. }, Value::Spatial { layout: l2, .. }) => l1 == l2,
                (Value::Flat { hwc_from: o1, .. }, Value::Flat { hwc_from: o2, .. }) => o1 == o2,
                _ => false,
            };
            if !layouts_match {
                return Err(imp.error(node, name, "adds tensors of different layouts"));
            }
            let (Value::Spatial { tensor: tx, .. } | Value::Flat { tensor: tx, .. }) = x else {
                unreachable!()
            };
            let (Value::Spatial { tensor: ty, .. } | Value::Flat { tensor: ty, .. }) = y else {
                unreachable!()
            };
            let out = imp.emit(node, name, Op::Add, &[tx, ty])?;
            imp.set(node, with_tensor(x, out));
            Ok(())
        }
    }
}

pub(super) fn pool(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let x = imp.spatial(node, name, 0)?;
    let kernel = match attr_ints(node, "kernel_shape").as_deref() {
        Some([a, b]) if *a > 0 && *b > 0 => [*a as usize, *b as usize],
        k => {
            return Err(imp.error(
                node,
                name,
                format!("kernel_shape {k:?} must be two positive values"),
            ));
        }
    };
    let window = window(imp, node, name, kernel, imp.builder.shape(x))?;
    let kind = if node.op_type() == "MaxPool" {
        if node.output.len() > 1 && !node.output[1].is_empty() {
            return Err(imp.error(node, name, "the Indices output is not supported"));
        }
        PoolKind::Max
    } else {
        if !window.padding.is_zero() && attr_int(node, "count_include_pad", 0) == 0 {
            return Err(imp.error(
                node,
                name,
                "padded average pooling must count the padding (count_include_pad=1), as the deployed kernels do",
            ));
        }
        PoolKind::Average
    };
    imp.emit_as(node, name, Op::Pool { kind, window }, x, nchw)
}

pub(super) fn global_pool(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let x = imp.spatial(node, name, 0)?;
    let kind = if node.op_type() == "GlobalMaxPool" {
        PoolKind::Max
    } else {
        PoolKind::Average
    };
    imp.emit_as(node, name, Op::GlobalPool(kind), x, nchw)
}

/// `ReduceMean` over the spatial axes (how TF converters write global average pooling).
pub(super) fn reduce_mean(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let (x, value) = imp.activation(node, name, 0)?;
    let Value::Spatial { layout, .. } = value else {
        return Err(imp.error(node, name, "expects a 4-D input"));
    };
    let mut axes = match attr_ints(node, "axes") {
        Some(a) => a,
        None => imp
            .optional_constant(node, name, 1)?
            .map(Constant::as_ints)
            .unwrap_or_default(),
    };
    for a in &mut axes {
        if *a < 0 {
            *a += 4;
        }
    }
    axes.sort_unstable();
    let spatial = match layout {
        Layout::Nchw => vec![2, 3],
        Layout::Nhwc => vec![1, 2],
    };
    if axes != spatial {
        return Err(imp.error(node, name, format!("reduces axes {axes:?}; only the spatial axes {spatial:?} (global average pooling) are supported")));
    }
    let y = imp.emit(node, name, Op::GlobalPool(PoolKind::Average), &[x])?;
    let value = if attr_int(node, "keepdims", 1) == 0 {
        Value::Flat {
            tensor: y,
            hwc_from: None,
        }
    } else {
        Value::Spatial { tensor: y, layout }
    };
    imp.set(node, value);
    Ok(())
}

pub(super) fn softmax(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    imp.elementwise(node, name, Op::Softmax)
}

pub(super) fn identity(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let value = imp.value(node, name, 0)?;
    if let Value::Const(c) = value {
        let n = c.len();
        imp.spend(node, name, n)?;
    }
    let value = imp.value(node, name, 0)?.clone();
    imp.set(node, value);
    Ok(())
}
