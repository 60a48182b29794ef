use super::*;

#[test]
fn garbage_is_a_decode_error() {
    let err = import_bytes(b"\xff\xff\xff not protobuf", "x.onnx", "x").unwrap_err();
    assert!(matches!(err, ImportError::Decode { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("x.onnx: not a valid ONNX model")
    );
}

#[test]
fn empty_model_has_no_graph() {
    let err = import_bytes(&[], "e.onnx", "e").unwrap_err();
    assert!(err.to_string().contains("has no graph"), "{err}");
}

use crate::graph::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_proto::DataType, tensor_shape_proto,
    tensor_shape_proto::Dimension, type_proto,
};
use crate::graph::onnx::tensor::{encode_floats, encode_ints};

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model of `nodes` reading `input` (of shape `dims`) and writing `output`.
fn model(
    nodes: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    dims: &[i64],
    output: &str,
) -> Vec<u8> {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            initializer,
            input: vec![value_info("x", dims)],
            output: vec![value_info(output, &[])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn conv_weight(name: &str, out: i64, inputs: i64) -> TensorProto {
    let n = (out * inputs * 9) as usize;
    encode_floats(name, &[out, inputs, 3, 3], &vec![0.1; n])
}

#[test]
fn unsupported_operator_comes_before_shape_problems() {
    // An LSTM, and an input shape qsearch cannot read (rank 3, symbolic-free): the LSTM is
    // what the user needs to hear about.
    let bytes = model(
        vec![node("LSTM", "my_lstm_node", &["x", "W", "R"], "y")],
        vec![
            encode_floats("W", &[1, 8, 4], &[0.0; 32]),
            encode_floats("R", &[1, 8, 2], &[0.0; 16]),
        ],
        &[5, 1, 4],
        "y",
    );
    let err = import_bytes(&bytes, "lstm.onnx", "lstm").unwrap_err();
    match &err {
        ImportError::UnsupportedOp {
            node,
            op_type,
            supported,
            ..
        } => {
            assert_eq!(node, "my_lstm_node");
            assert_eq!(op_type, "LSTM");
            assert!(supported.contains("Conv, "), "{supported}");
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("lstm.onnx: node 'my_lstm_node' has operator 'LSTM'"),
        "{text}"
    );
    // Also ahead of an initializer that cannot be decoded.
    let mut broken = encode_floats("W", &[1, 8, 4], &[0.0; 31]);
    broken.dims = vec![1, 8, 4];
    let bytes = model(
        vec![node("LSTM", "my_lstm_node", &["x", "W"], "y")],
        vec![broken],
        &[1, 3, 8, 8],
        "y",
    );
    let err = import_bytes(&bytes, "lstm.onnx", "lstm").unwrap_err();
    assert!(matches!(err, ImportError::UnsupportedOp { .. }), "{err}");
}

#[test]
fn concatenation_of_activations_is_refused_as_such() {
    // Two branches of one input concatenated along the channels, as ShuffleNet-v2 does.
    let bytes = model(
        vec![
            node("Conv", "left", &["x", "wl"], "a"),
            node("Conv", "right", &["x", "wr"], "b"),
            NodeProto {
                attribute: vec![AttributeProto {
                    name: Some("axis".into()),
                    i: Some(1),
                    r#type: Some(2),
                    ..Default::default()
                }],
                ..node("Concat", "cat", &["a", "b"], "y")
            },
        ],
        vec![conv_weight("wl", 4, 3), conv_weight("wr", 4, 3)],
        &[1, 3, 8, 8],
        "y",
    );
    let text = import_bytes(&bytes, "shuffle.onnx", "s")
        .unwrap_err()
        .to_string();
    assert!(
        text.starts_with(
            "shuffle.onnx: node 'cat' (Concat): concatenation of activations is not supported"
        ),
        "{text}"
    );
    assert!(text.contains("inputs 'a', 'b'"), "{text}");
    assert!(!text.contains("constant initializer"), "{text}");

    // The first offending node in graph order is reported: here the Concat, before a later
    // unsupported Split.
    let bytes = model(
        vec![
            node("Conv", "left", &["x", "wl"], "a"),
            node("Concat", "cat", &["a", "x"], "c"),
            node("Split", "split", &["c"], "y"),
        ],
        vec![conv_weight("wl", 3, 3)],
        &[1, 3, 8, 8],
        "y",
    );
    let text = import_bytes(&bytes, "shuffle.onnx", "s")
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("node 'cat' (Concat): concatenation"),
        "{text}"
    );

    // Concat in shape arithmetic (of the input's shape) still folds.
    let bytes = model(
        vec![
            node("Shape", "shape", &["x"], "s"),
            node("Gather", "batch", &["s", "zero"], "n"),
            node("Unsqueeze", "u", &["n", "axes"], "n1"),
            node("Concat", "target", &["n1", "minus_one"], "t"),
            node("Reshape", "flat", &["x", "t"], "y"),
        ],
        vec![
            encode_ints("zero", &[], &[0]),
            encode_ints("axes", &[1], &[0]),
            encode_ints("minus_one", &[1], &[-1]),
        ],
        &[1, 3, 8, 8],
        "y",
    );
    let graph = import_bytes(&bytes, "flat.onnx", "f").unwrap();
    assert_eq!(graph.output_shape(), Shape::vector(192));
}

#[test]
fn size_claims_are_refused_before_allocating() {
    // A constant claiming 2^40 elements.
    let bytes = model(
        vec![
            node("ConstantOfShape", "bomb", &["shape"], "big"),
            node("Relu", "relu", &["x"], "y"),
        ],
        vec![encode_ints("shape", &[2], &[1 << 20, 1 << 20])],
        &[1, 3, 8, 8],
        "y",
    );
    let text = import_bytes(&bytes, "bomb.onnx", "b")
        .unwrap_err()
        .to_string();
    assert!(
        text.starts_with("bomb.onnx: node 'bomb' (ConstantOfShape): creates 1099511627776"),
        "{text}"
    );
    // Dimensions whose product overflows, with no data.
    let empty = TensorProto {
        name: Some("w".into()),
        dims: vec![1 << 32, 1 << 32, 1 << 32],
        data_type: Some(DataType::Float as i32),
        ..Default::default()
    };
    let bytes = model(
        vec![node("Conv", "c", &["x", "w"], "y")],
        vec![empty],
        &[1, 3, 8, 8],
        "y",
    );
    let text = import_bytes(&bytes, "w.onnx", "w").unwrap_err().to_string();
    assert!(
        text.contains("w.onnx: tensor 'w': has dimensions") && text.contains("overflows"),
        "{text}"
    );
    // One initializer read by many nodes: the copies count against the model's size.
    let big = encode_floats("w", &[256, 256], &vec![0.5; 256 * 256]);
    let mut nodes = vec![node("Flatten", "f", &["x"], "v")];
    for i in 0..400 {
        nodes.push(node(
            "Identity",
            &format!("copy{i}"),
            &["w"],
            &format!("w{i}"),
        ));
    }
    nodes.push(node("Relu", "r", &["v"], "y"));
    let bytes = model(nodes, vec![big], &[1, 64], "y");
    let text = import_bytes(&bytes, "copies.onnx", "c")
        .unwrap_err()
        .to_string();
    assert!(
        text.starts_with("copies.onnx: node 'copy")
            && text.contains("than the model's size allows"),
        "{text}"
    );
    // Huge input dimensions.
    let bytes = model(
        vec![node("Relu", "relu", &["x"], "y")],
        vec![],
        &[1, 1 << 20, 1 << 20, 1 << 20],
        "y",
    );
    let text = import_bytes(&bytes, "in.onnx", "i")
        .unwrap_err()
        .to_string();
    assert!(text.starts_with("in.onnx: input 'x' has shape"), "{text}");
}

#[test]
fn a_classifier_of_the_wrong_size_after_an_nhwc_flatten_is_an_error() {
    // NHWC input, flattened, into a Gemm whose weight does not match the flattened size.
    let transpose = NodeProto {
        attribute: vec![AttributeProto {
            name: Some("perm".into()),
            ints: vec![0, 3, 1, 2],
            r#type: Some(7),
            ..Default::default()
        }],
        ..node("Transpose", "to_nchw", &["x"], "t")
    };
    let back = NodeProto {
        attribute: vec![AttributeProto {
            name: Some("perm".into()),
            ints: vec![0, 2, 3, 1],
            r#type: Some(7),
            ..Default::default()
        }],
        ..node("Transpose", "to_nhwc", &["r"], "h")
    };
    let bytes = model(
        vec![
            transpose,
            node("Relu", "relu", &["t"], "r"),
            back,
            node("Flatten", "flat", &["h"], "f"),
            NodeProto {
                attribute: vec![AttributeProto {
                    name: Some("transB".into()),
                    i: Some(1),
                    r#type: Some(2),
                    ..Default::default()
                }],
                ..node("Gemm", "fc", &["f", "w"], "y")
            },
        ],
        vec![encode_floats("w", &[10, 7], &[0.1; 70])],
        &[1, 4, 4, 2],
        "y",
    );
    let text = import_bytes(&bytes, "nhwc.onnx", "n")
        .unwrap_err()
        .to_string();
    assert!(
        text.starts_with("nhwc.onnx: node 'fc' (linear): weight has 70 values, expected 320"),
        "{text}"
    );
}
