//! Shape arithmetic evaluated at import time (`Shape`, `Gather`, `Concat`, `Slice`, ...): these
//! operators only ever see constants and fold into new constants.

use super::Importer;
use super::Value;
use super::attributes::{attr, attr_int, attr_ints};
use super::layout::onnx_dims;
use crate::graph::onnx::proto::NodeProto;
use crate::graph::onnx::tensor::{Constant, decode};
use crate::graph::onnx::{ImportError, constant_ops};

/// `Cast` of a constant keeps its values (shape arithmetic only).
pub(super) fn identity_const(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let n = imp.constant(node, name, 0)?.len();
    imp.spend(node, name, n)?;
    let value = imp.constant(node, name, 0)?.clone();
    imp.set_const(node, value);
    Ok(())
}

pub(super) fn constant(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let a = node
        .attribute
        .first()
        .ok_or_else(|| imp.error(node, name, "has no value attribute"))?;
    let value = match a.name() {
        "value" => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| imp.error(node, name, "value attribute holds no tensor"))?;
            decode(t).map_err(|m| imp.error(node, name, m))?
        }
        "value_float" => Constant::float(vec![], vec![a.f()]),
        "value_floats" => Constant::float(vec![a.floats.len() as i64], a.floats.clone()),
        "value_int" => Constant::int(vec![], vec![a.i()]),
        "value_ints" => Constant::int(vec![a.ints.len() as i64], a.ints.clone()),
        other => {
            return Err(imp.error(
                node,
                name,
                format!("value attribute '{other}' is not supported"),
            ));
        }
    };
    imp.fold(node, name, value)
}

pub(super) fn shape_of(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let dims = match imp.value(node, name, 0)? {
        Value::Const(c) => c.dims.clone(),
        v @ (Value::Spatial { tensor, .. } | Value::Flat { tensor, .. }) => {
            onnx_dims(v, imp.builder.shape(*tensor))
        }
    };
    imp.fold(node, name, Constant::int(vec![dims.len() as i64], dims))
}

pub(super) fn gather(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    if attr_int(node, "axis", 0) != 0 {
        return Err(imp.error(node, name, "only axis=0 is supported in shape arithmetic"));
    }
    let n = imp.constant(node, name, 1)?.len();
    imp.spend(node, name, n)?;
    let data = imp.constant(node, name, 0)?;
    let indices = imp.constant(node, name, 1)?;
    let value = constant_ops::gather(data, indices).map_err(|m| imp.error(node, name, m))?;
    imp.set_const(node, value);
    Ok(())
}

pub(super) fn unsqueeze(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let c = imp.constant(node, name, 0)?.clone();
    let axes = match attr_ints(node, "axes") {
        Some(a) => a,
        None => imp
            .optional_constant(node, name, 1)?
            .map(Constant::as_ints)
            .unwrap_or_default(),
    };
    let len = c.len() as i64;
    let mut dims = vec![1; axes.len()];
    dims.push(len);
    imp.fold(
        node,
        name,
        Constant {
            dims: if len == 1 { vec![1] } else { dims },
            values: c.values,
        },
    )
}

/// `Concat` of constants (shape arithmetic); `check_operators` refuses a `Concat` of activations.
pub(super) fn concat(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let mut total = 0usize;
    for i in 0..node.input.len() {
        total = total.saturating_add(imp.constant(node, name, i)?.len());
    }
    imp.spend(node, name, total)?;
    let mut all = Vec::with_capacity(total);
    for i in 0..node.input.len() {
        all.extend(imp.constant(node, name, i)?.as_ints());
    }
    imp.set_const(node, Constant::int(vec![all.len() as i64], all));
    Ok(())
}

/// `Slice` of a constant (shape arithmetic).
pub(super) fn slice(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let data = imp.constant(node, name, 0)?;
    let ints = |i: usize| -> Result<Vec<i64>, ImportError> {
        Ok(imp
            .optional_constant(node, name, i)?
            .map(Constant::as_ints)
            .unwrap_or_default())
    };
    let (starts, ends, axes, steps) = if imp.opset < 10 {
        let attr = |n| attr_ints(node, n).unwrap_or_default();
        (attr("starts"), attr("ends"), attr("axes"), Vec::new())
    } else {
        (ints(1)?, ints(2)?, ints(3)?, ints(4)?)
    };
    let value = constant_ops::slice(data, &starts, &ends, &axes, &steps)
        .map_err(|m| imp.error(node, name, m))?;
    imp.fold(node, name, value)
}

/// `ConstantOfShape` (shape arithmetic).
pub(super) fn constant_of_shape(
    imp: &mut Importer,
    node: &NodeProto,
    name: &str,
) -> Result<(), ImportError> {
    let dims = imp.constant(node, name, 0)?.as_ints();
    let fill = match attr(node, "value").and_then(|a| a.t.as_ref()) {
        Some(t) => Some(decode(t).map_err(|m| imp.error(node, name, m))?),
        None => None,
    };
    let n = constant_ops::element_count(&dims).ok_or_else(|| {
        imp.error(
            node,
            name,
            format!("shape {dims:?} must be non-negative dimensions whose product fits in memory"),
        )
    })?;
    imp.spend(node, name, n)?;
    imp.set_const(node, constant_ops::filled(dims, n, fill.as_ref()));
    Ok(())
}
