//! Mutations of protobuf inputs along their wire structure, and of ONNX models along their
//! graph (operators, attributes, shapes, initializers).

use super::Target;
use super::inputs::{byte_mutation, interesting, pick};
use crate::graph::onnx::proto;
use prost::Message;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

// Protobuf -------------------------------------------------------------------------------------

/// A protobuf field as it is on the wire; length-delimited payloads that parse as messages are
/// kept as messages.
#[derive(Clone, Debug)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Message(Vec<Field>),
    Fixed32(u32),
}

#[derive(Clone, Debug)]
struct Field {
    number: u64,
    value: Wire,
}

fn read_varint(bytes: &[u8], i: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*i)?;
        *i += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn parse_wire(bytes: &[u8], depth: usize) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let key = read_varint(bytes, &mut i)?;
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        let value = match key & 7 {
            0 => Wire::Varint(read_varint(bytes, &mut i)?),
            1 => {
                let b = bytes.get(i..i + 8)?;
                i += 8;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().ok()?))
            }
            2 => {
                let n = usize::try_from(read_varint(bytes, &mut i)?).ok()?;
                let b = bytes.get(i..i.checked_add(n)?)?;
                i += n;
                match (depth < 12 && !b.is_empty())
                    .then(|| parse_wire(b, depth + 1))
                    .flatten()
                {
                    Some(inner) => Wire::Message(inner),
                    None => Wire::Bytes(b.to_vec()),
                }
            }
            5 => {
                let b = bytes.get(i..i + 4)?;
                i += 4;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().ok()?))
            }
            _ => return None,
        };
        fields.push(Field { number, value });
    }
    Some(fields)
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode_wire(fields: &[Field], out: &mut Vec<u8>) {
    for f in fields {
        let wire_type = match f.value {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) | Wire::Message(_) => 2,
            Wire::Fixed32(_) => 5,
        };
        write_varint((f.number << 3) | wire_type, out);
        match &f.value {
            Wire::Varint(v) => write_varint(*v, out),
            Wire::Fixed64(v) => out.extend(v.to_le_bytes()),
            Wire::Fixed32(v) => out.extend(v.to_le_bytes()),
            Wire::Bytes(b) => {
                write_varint(b.len() as u64, out);
                out.extend_from_slice(b);
            }
            Wire::Message(m) => {
                let mut inner = Vec::new();
                encode_wire(m, &mut inner);
                write_varint(inner.len() as u64, out);
                out.extend(inner);
            }
        }
    }
}

fn count_fields(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| {
            1 + match &f.value {
                Wire::Message(m) => count_fields(m),
                _ => 0,
            }
        })
        .sum()
}

/// Calls `f` with the list holding the `n`-th field (depth first) and its index there.
fn with_nth(
    fields: &mut Vec<Field>,
    n: &mut usize,
    f: &mut dyn FnMut(&mut Vec<Field>, usize),
) -> bool {
    for i in 0..fields.len() {
        if *n == 0 {
            f(fields, i);
            return true;
        }
        *n -= 1;
        if let Wire::Message(inner) = &mut fields[i].value
            && with_nth(inner, n, f)
        {
            return true;
        }
    }
    false
}

pub(super) fn protobuf_mutation(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, target: &Target) {
    let Some(mut fields) = parse_wire(data, 0) else {
        return byte_mutation(data, rng, target);
    };
    let total = count_fields(&fields);
    if total == 0 {
        return byte_mutation(data, rng, target);
    }
    let donor: Option<Field> = pick(rng, &target.seeds)
        .and_then(|s| parse_wire(s, 0))
        .and_then(|mut other| {
            let n = count_fields(&other);
            let mut k = rng.random_range(0..n.max(1));
            let mut found = None;
            with_nth(&mut other, &mut k, &mut |list, i| {
                found = Some(list[i].clone())
            });
            found
        });
    let mut k = rng.random_range(0..total);
    let choice = rng.random_range(0..10);
    let value = interesting(rng);
    let word = pick(rng, &target.dictionary).cloned().unwrap_or_default();
    let cut = rng.random::<u32>() as usize;
    with_nth(&mut fields, &mut k, &mut |list, i| match choice {
        0 => {
            list.remove(i);
        }
        1 => {
            let copy = list[i].clone();
            list.insert(i, copy);
        }
        2 => {
            if let Some(d) = &donor {
                list.insert(i, d.clone());
            }
        }
        _ => match &mut list[i].value {
            Wire::Varint(v) => *v = value,
            Wire::Fixed64(v) => {
                *v = if choice % 2 == 0 {
                    value
                } else {
                    (*pick_float64(value)).to_bits()
                }
            }
            Wire::Fixed32(v) => *v = value as u32,
            Wire::Bytes(b) => match choice % 3 {
                0 => *b = word.clone(),
                1 => b.truncate(cut % (b.len() + 1)),
                _ => b.extend_from_slice(&word),
            },
            Wire::Message(m) => {
                let n = m.len();
                if n > 0 {
                    m.swap(cut % n, value as usize % n);
                }
            }
        },
    });
    let mut out = Vec::new();
    encode_wire(&fields, &mut out);
    *data = out;
}

fn pick_float64(value: u64) -> &'static f64 {
    const FLOATS: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e308,
        1e-310,
    ];
    &FLOATS[value as usize % FLOATS.len()]
}

/// Operators, attribute names and data types an ONNX mutation writes in.
const ONNX_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Relu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Pad",
    "Concat",
    "Gather",
    "Slice",
    "Shape",
    "Unsqueeze",
    "ConstantOfShape",
    "Constant",
    "Identity",
    "Squeeze",
    "ReduceMean",
    "BatchNormalization",
    "Softmax",
    "Cast",
    "Sum",
    "LSTM",
    "Split",
    "Sigmoid",
];
const ONNX_ATTRIBUTES: &[&str] = &[
    "kernel_shape",
    "strides",
    "pads",
    "dilations",
    "group",
    "perm",
    "axis",
    "axes",
    "shape",
    "transB",
    "transA",
    "alpha",
    "beta",
    "value",
    "auto_pad",
    "ceil_mode",
    "keepdims",
    "count_include_pad",
    "min",
    "max",
    "mode",
    "epsilon",
    "starts",
    "ends",
];

/// A structural mutation of an ONNX model: nodes, initializers, attributes, input shapes.
pub(super) fn onnx_mutation(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, target: &Target) {
    let Ok(mut model) = proto::ModelProto::decode(&data[..]) else {
        return protobuf_mutation(data, rng, target);
    };
    let Some(graph) = model.graph.as_mut() else {
        return protobuf_mutation(data, rng, target);
    };
    let mut names: Vec<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output).cloned())
        .chain(graph.initializer.iter().map(|t| t.name().to_string()))
        .collect();
    names.push(String::new());
    let value = interesting(rng) as i64;
    match rng.random_range(0..14) {
        0 if !graph.node.is_empty() => {
            let i = rng.random_range(0..graph.node.len());
            graph.node[i].op_type = pick(rng, ONNX_OPS).map(|s| s.to_string());
        }
        1 if !graph.node.is_empty() => {
            // Rewire an input (or add one).
            let i = rng.random_range(0..graph.node.len());
            let name = pick(rng, &names).cloned().unwrap_or_default();
            let node = &mut graph.node[i];
            if node.input.is_empty() || rng.random_bool(0.3) {
                node.input.push(name);
            } else {
                let j = rng.random_range(0..node.input.len());
                node.input[j] = name;
            }
        }
        2 if !graph.node.is_empty() => {
            mutate_attribute(graph, rng, value);
        }
        3 if !graph.initializer.is_empty() => {
            // Dimensions that disagree with the data, or overflow.
            let i = rng.random_range(0..graph.initializer.len());
            let t = &mut graph.initializer[i];
            if t.dims.is_empty() || rng.random_bool(0.3) {
                t.dims.push(value);
            } else {
                let k = rng.random_range(0..t.dims.len());
                t.dims[k] = value;
            }
        }
        4 if !graph.initializer.is_empty() => {
            corrupt_initializer(graph, rng);
        }
        5 => {
            mutate_input_shape(graph, rng, value);
        }
        6 if graph.node.len() > 1 => {
            let i = rng.random_range(0..graph.node.len());
            let j = rng.random_range(0..graph.node.len());
            graph.node.swap(i, j);
        }
        7 if !graph.node.is_empty() => {
            let i = rng.random_range(0..graph.node.len());
            if rng.random_bool(0.5) {
                graph.node.remove(i);
            } else {
                // The same node many times over (repeated reads of one initializer).
                let node = graph.node[i].clone();
                let n = rng.random_range(1..64);
                for _ in 0..n {
                    graph.node.insert(i, node.clone());
                }
            }
        }
        8 => {
            if let Some(o) = model.opset_import.first_mut() {
                o.version = Some(rng.random_range(1..22));
            }
        }
        9 if !graph.node.is_empty() => {
            insert_shape_arithmetic(graph, rng);
        }
        10 if !graph.node.is_empty() => {
            let i = rng.random_range(0..graph.node.len());
            graph.node[i].domain = Some(
                pick(rng, &["", "ai.onnx", "com.microsoft", "ai.onnx.ml"])
                    .unwrap_or(&"")
                    .to_string(),
            );
        }
        11 if !graph.output.is_empty() => {
            let name = pick(rng, &names).cloned().unwrap_or_default();
            graph.output[0].name = Some(name);
        }
        _ => return protobuf_mutation(data, rng, target),
    }
    *data = model.encode_to_vec();
}

/// An attribute of a random node: added, or its integers (or float) made interesting.
fn mutate_attribute(graph: &mut proto::GraphProto, rng: &mut ChaCha8Rng, value: i64) {
    let i = rng.random_range(0..graph.node.len());
    let node = &mut graph.node[i];
    if node.attribute.is_empty() || rng.random_bool(0.3) {
        let name = pick(rng, ONNX_ATTRIBUTES).unwrap_or(&"axis").to_string();
        let n = rng.random_range(0..9);
        node.attribute.push(proto::AttributeProto {
            name: Some(name),
            i: Some(value),
            ints: (0..n).map(|_| interesting(rng) as i64).collect(),
            r#type: Some(rng.random_range(0..13)),
            ..Default::default()
        });
    } else {
        let j = rng.random_range(0..node.attribute.len());
        let a = &mut node.attribute[j];
        if a.ints.is_empty() || rng.random_bool(0.3) {
            a.i = Some(value);
            a.f = Some(*pick_float64(value as u64) as f32);
        } else {
            let k = rng.random_range(0..a.ints.len());
            a.ints[k] = value;
        }
    }
}

/// An initializer whose data type, raw data or location disagrees with its declaration.
fn corrupt_initializer(graph: &mut proto::GraphProto, rng: &mut ChaCha8Rng) {
    let i = rng.random_range(0..graph.initializer.len());
    let t = &mut graph.initializer[i];
    match rng.random_range(0..4) {
        0 => t.data_type = Some(rng.random_range(0..17)),
        1 => {
            let cut = rng.random_range(0..=t.raw_data().len());
            if let Some(r) = t.raw_data.as_mut() {
                r.truncate(cut);
            }
        }
        2 => {
            t.float_data = t.raw_data().chunks_exact(4).map(|_| 1.0).collect();
            t.raw_data = None;
        }
        _ => t.data_location = Some(1),
    }
}

/// The graph input's declared shape: a dimension added, dropped, made symbolic or interesting.
fn mutate_input_shape(graph: &mut proto::GraphProto, rng: &mut ChaCha8Rng, value: i64) {
    if let Some(input) = graph.input.first_mut()
        && let Some(proto::type_proto::Value::TensorType(tt)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        && let Some(shape) = tt.shape.as_mut()
    {
        use proto::tensor_shape_proto::dimension::Value as Dim;
        if shape.dim.is_empty() || rng.random_bool(0.2) {
            shape.dim.push(proto::tensor_shape_proto::Dimension {
                value: Some(Dim::DimValue(value)),
                ..Default::default()
            });
        } else if rng.random_bool(0.2) {
            shape.dim.pop();
        } else {
            let k = rng.random_range(0..shape.dim.len());
            shape.dim[k].value = Some(if rng.random_bool(0.2) {
                Dim::DimParam("N".into())
            } else {
                Dim::DimValue(value)
            });
        }
    }
}

/// A shape-arithmetic node producing a constant of interesting shape, inserted before a random node.
fn insert_shape_arithmetic(graph: &mut proto::GraphProto, rng: &mut ChaCha8Rng) {
    let i = rng.random_range(0..graph.node.len());
    let dims: Vec<i64> = (0..rng.random_range(1..4))
        .map(|_| interesting(rng) as i64)
        .collect();
    let shape_name = format!("fuzz_shape_{i}");
    let out = graph.node[i].input.first().cloned().unwrap_or_default();
    let new_out = format!("fuzz_out_{i}");
    graph.node.insert(
        i,
        proto::NodeProto {
            op_type: Some(
                pick(
                    rng,
                    &["ConstantOfShape", "Reshape", "Gather", "Slice", "Concat"],
                )
                .unwrap_or(&"ConstantOfShape")
                .to_string(),
            ),
            input: vec![shape_name.clone(), out],
            output: vec![new_out],
            name: Some(format!("fuzz_{i}")),
            ..Default::default()
        },
    );
    graph.initializer.push(proto::TensorProto {
        name: Some(shape_name),
        dims: vec![dims.len() as i64],
        data_type: Some(proto::tensor_proto::DataType::Int64 as i32),
        int64_data: dims,
        ..Default::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::targets::tiny_network;
    use crate::graph::onnx;

    #[test]
    fn wire_format_round_trips() {
        let bytes = onnx::export_bytes(&tiny_network());
        let fields = parse_wire(&bytes, 0).unwrap();
        let mut out = Vec::new();
        encode_wire(&fields, &mut out);
        assert_eq!(out, bytes);
    }
}
