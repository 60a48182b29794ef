//! Reading node attributes and the graph input's declared shape.

use super::MAX_DIM;
use crate::graph::onnx::proto::{
    AttributeProto, NodeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};

pub(super) fn input_dims(input: &ValueInfoProto) -> Result<Vec<usize>, String> {
    let Some(type_proto::Value::TensorType(tensor)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err("is not a tensor".into());
    };
    let shape = tensor.shape.as_ref().ok_or("has no shape")?;
    shape
        .dim
        .iter()
        .enumerate()
        .map(|(axis, d)| match &d.value {
            Some(tensor_shape_proto::dimension::Value::DimValue(v))
                if *v > 0 && *v as u64 <= MAX_DIM as u64 =>
            {
                Ok(*v as usize)
            }
            Some(tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 && axis > 0 => {
                Err(format!("has dimension {v} at axis {axis}, more than the {MAX_DIM} qsearch handles"))
            }
            _ if axis == 0 => Ok(1),
            _ => Err(format!("has a symbolic or non-positive dimension at axis {axis}; qsearch needs fixed C, H, W")),
        })
        .collect()
}

pub(super) fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

pub(super) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub(super) fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

pub(super) fn attr_float(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).and_then(|a| a.f).unwrap_or(default)
}

pub(super) fn attr_string(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}
