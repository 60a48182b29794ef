//! ONNX export of the IR (opset 13, NCHW, weights as initializers). Importing the result gives
//! back the same graph.

use super::ExportError;
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};
use super::tensor::{encode_floats, encode_ints};
use crate::graph::Graph;
use crate::graph::op::{Activation, Op, PoolKind, Shape, Window};
use prost::Message;
use std::path::Path;

const OPSET: i64 = 13;

/// Writes `graph` as an `.onnx` file (atomically: a temporary file renamed into place).
pub fn export_file(graph: &Graph, path: &Path) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    };
    crate::results::write_atomic(path, &export_bytes(graph)).map_err(io)
}

/// Serializes `graph` as an ONNX model.
pub fn export_bytes(graph: &Graph) -> Vec<u8> {
    let mut out = Exporter {
        nodes: Vec::new(),
        initializers: Vec::new(),
        names: graph.tensors.iter().map(|t| t.name.clone()).collect(),
        rank2: vec![false; graph.tensors.len()],
    };
    let input_shape = graph.input_shape();
    out.rank2[graph.input] = input_shape.h == 1 && input_shape.w == 1;
    for node in &graph.nodes {
        out.node(graph, node);
    }
    let value_info = |id: usize| {
        value_info(
            &out.names[id],
            &onnx_dims(graph.tensor(id).shape, out.rank2[id]),
            DataType::Float,
        )
    };
    let model = qsearch_model(
        8,
        OPSET,
        None,
        GraphProto {
            name: Some(graph.name.clone()),
            input: vec![value_info(graph.input)],
            output: vec![value_info(graph.output)],
            node: out.nodes,
            initializer: out.initializers,
            ..Default::default()
        },
    );
    model.encode_to_vec()
}

/// A model written by qsearch: `graph` at `opset` of the default domain.
pub(crate) fn qsearch_model(
    ir_version: i64,
    opset: i64,
    doc: Option<String>,
    graph: GraphProto,
) -> ModelProto {
    ModelProto {
        ir_version: Some(ir_version),
        producer_name: Some("qsearch".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: doc,
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        graph: Some(graph),
        ..Default::default()
    }
}

struct Exporter {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: Vec<String>,
    /// Whether each tensor is `[1, N]` in ONNX (after flatten or a linear layer) rather than 4-D.
    rank2: Vec<bool>,
}

impl Exporter {
    fn floats(&mut self, name: String, dims: &[i64], values: &[f32]) -> String {
        self.initializers.push(encode_floats(&name, dims, values));
        name
    }

    fn ints(&mut self, name: String, values: &[i64]) -> String {
        self.initializers
            .push(encode_ints(&name, &[values.len() as i64], values));
        name
    }

    fn push(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: Vec<String>,
        output: &str,
        attributes: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            name: Some(name.to_string()),
            op_type: Some(op_type.to_string()),
            input: inputs,
            output: vec![output.to_string()],
            attribute: attributes,
            ..Default::default()
        });
    }

    fn node(&mut self, graph: &Graph, node: &crate::graph::Node) {
        let name = node.name.as_str();
        let x = node.inputs[0];
        let input_shape = graph.tensor(x).shape;
        let mut inputs: Vec<String> = node.inputs.iter().map(|&t| self.names[t].clone()).collect();
        let output = self.names[node.output].clone();
        let mut rank2 = self.rank2[x];
        let (op_type, attributes) = match &node.op {
            Op::Conv(conv) => {
                let [kh, kw] = conv.window.kernel;
                let dims = [
                    conv.out_channels as i64,
                    (input_shape.c / conv.groups) as i64,
                    kh as i64,
                    kw as i64,
                ];
                inputs.push(self.floats(format!("{name}.weight"), &dims, &conv.weight));
                inputs.push(self.floats(
                    format!("{name}.bias"),
                    &[conv.out_channels as i64],
                    &conv.bias,
                ));
                let mut attrs = window_attributes(conv.window);
                attrs.push(int_attr("group", conv.groups as i64));
                attrs.push(ints_attr("dilations", &[1, 1]));
                ("Conv", attrs)
            }
            Op::Linear(linear) => {
                if !self.rank2[x] {
                    let flat = format!("{name}_flatten");
                    self.push(
                        &flat,
                        "Flatten",
                        inputs.clone(),
                        &flat,
                        vec![int_attr("axis", 1)],
                    );
                    inputs = vec![flat];
                }
                let n_in = (linear.weight.len() / linear.out_features) as i64;
                let out = linear.out_features as i64;
                inputs.push(self.floats(format!("{name}.weight"), &[out, n_in], &linear.weight));
                inputs.push(self.floats(format!("{name}.bias"), &[out], &linear.bias));
                rank2 = true;
                ("Gemm", vec![int_attr("transB", 1)])
            }
            Op::BatchNorm(bn) => {
                let c = [bn.scale.len() as i64];
                for (part, values) in [
                    ("scale", &bn.scale),
                    ("bias", &bn.bias),
                    ("mean", &bn.mean),
                    ("var", &bn.var),
                ] {
                    inputs.push(self.floats(format!("{name}.{part}"), &c, values));
                }
                (
                    "BatchNormalization",
                    vec![float_attr("epsilon", bn.epsilon)],
                )
            }
            Op::Activation(Activation::Relu) => ("Relu", vec![]),
            Op::Activation(act) => {
                let (min, max) = act.range();
                inputs.push(self.floats(format!("{name}.min"), &[], &[min]));
                if max.is_finite() {
                    inputs.push(self.floats(format!("{name}.max"), &[], &[max]));
                }
                ("Clip", vec![])
            }
            Op::Add => ("Add", vec![]),
            Op::Pool {
                kind: PoolKind::Max,
                window,
            } => ("MaxPool", window_attributes(*window)),
            Op::Pool {
                kind: PoolKind::Average,
                window,
            } => {
                let mut attrs = window_attributes(*window);
                attrs.push(int_attr("count_include_pad", 1));
                ("AveragePool", attrs)
            }
            Op::GlobalPool(PoolKind::Max) => ("GlobalMaxPool", vec![]),
            Op::GlobalPool(PoolKind::Average) => ("GlobalAveragePool", vec![]),
            Op::Flatten => {
                rank2 = true;
                ("Flatten", vec![int_attr("axis", 1)])
            }
            Op::Reshape(target) => {
                rank2 = target.h == 1 && target.w == 1;
                let dims = onnx_dims(*target, rank2);
                inputs.push(self.ints(format!("{name}.shape"), &dims));
                ("Reshape", vec![])
            }
            Op::Pad { padding, value } => {
                let p = padding;
                let pads = [
                    0,
                    0,
                    p.top as i64,
                    p.left as i64,
                    0,
                    0,
                    p.bottom as i64,
                    p.right as i64,
                ];
                inputs.push(self.ints(format!("{name}.pads"), &pads));
                inputs.push(self.floats(format!("{name}.value"), &[], &[*value]));
                ("Pad", vec![])
            }
            Op::Softmax => ("Softmax", vec![int_attr("axis", 1)]),
        };
        self.rank2[node.output] = rank2;
        self.push(name, op_type, inputs, &output, attributes);
    }
}

/// ONNX dimensions of a buffer: `[1, N]` after a flatten or a linear layer, else `[1, C, H, W]`.
pub(crate) fn onnx_dims(shape: Shape, rank2: bool) -> Vec<i64> {
    if rank2 {
        vec![1, shape.elements() as i64]
    } else {
        vec![1, shape.c as i64, shape.h as i64, shape.w as i64]
    }
}

pub(crate) fn value_info(name: &str, dims: &[i64], elem_type: DataType) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn window_attributes(window: Window) -> Vec<AttributeProto> {
    let p = window.padding;
    vec![
        ints_attr(
            "kernel_shape",
            &[window.kernel[0] as i64, window.kernel[1] as i64],
        ),
        ints_attr(
            "strides",
            &[window.stride[0] as i64, window.stride[1] as i64],
        ),
        ints_attr(
            "pads",
            &[p.top as i64, p.left as i64, p.bottom as i64, p.right as i64],
        ),
    ]
}

pub(crate) fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

pub(crate) fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

pub(crate) fn ints_attr(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// An int64 initializer (integers beyond float32's exact range, such as 31-bit multipliers).
pub(crate) fn int64_tensor(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    encode_ints(name, dims, values)
}

/// A float32 initializer.
pub(crate) fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    encode_floats(name, dims, values)
}

/// An attribute holding a tensor (QuantLab's and Deeploy's `div`, `n_levels`, `signed`).
pub(crate) fn tensor_attr(name: &str, value: TensorProto) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(value),
        ..Default::default()
    }
}
