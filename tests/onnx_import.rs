//! ONNX import against the fixtures made by `tools/make_onnx_fixtures.py`: each valid file must
//! compute what PyTorch computed for it, survive an export/import round trip, and malformed files
//! must fail with errors naming what is wrong.

use qsearch::graph::onnx::{ImportError, export_bytes, import_bytes, import_file};
use qsearch::graph::{Activation, FusedGraph, LayerKind, Padding, eval, zoo};
use std::path::PathBuf;

const VALID: &[&str] = &[
    "torch_resnet",
    "torch_dscnn",
    "separate_bn",
    "tflite_style",
    "legacy_opset9",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

fn expected(name: &str) -> (Vec<f32>, Vec<f32>) {
    let text = std::fs::read_to_string(fixture(&format!("{name}.expected.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |key: &str| -> Vec<f32> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    (floats("input"), floats("output"))
}

#[test]
fn imported_networks_compute_what_pytorch_computed() {
    for name in VALID {
        let graph = import_file(&fixture(&format!("{name}.onnx")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (input, output) = expected(name);
        let values = eval::run(&graph, &input).unwrap();
        let got = &values[graph.output];
        assert_eq!(got.len(), output.len(), "{name}");
        for (g, e) in got.iter().zip(&output) {
            assert!(
                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{name}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn export_then_import_gives_the_same_graph() {
    let mut graphs: Vec<_> = VALID
        .iter()
        .map(|n| import_file(&fixture(&format!("{n}.onnx"))).unwrap())
        .collect();
    for entry in zoo::ENTRIES {
        let spec = match entry.name {
            "mobilenet-v1" | "mobilenet-v2" => format!("{}:width=0.25,resolution=64", entry.name),
            other => other.to_string(),
        };
        graphs.push(zoo::build(&spec).unwrap());
    }
    for graph in graphs {
        let bytes = export_bytes(&graph);
        let back = import_bytes(&bytes, "roundtrip.onnx", &graph.name).unwrap();
        assert_eq!(back, graph, "{}", graph.name);
    }
}

#[test]
fn exporter_forms_map_to_the_ir() {
    // torch: the padding folds into the first convolution, ReLU followed by Clip(0, 6) is ReLU6.
    let dscnn = FusedGraph::from_graph(&import_file(&fixture("torch_dscnn.onnx")).unwrap());
    let first = &dscnn.layers[0];
    assert_eq!(first.kind, LayerKind::Conv);
    assert_eq!(
        first.window.unwrap().padding,
        Padding {
            top: 4,
            left: 1,
            bottom: 5,
            right: 1
        }
    );
    assert_eq!(first.activation, Some(Activation::Relu6));
    assert!(dscnn.layers.iter().any(|l| l.kind == LayerKind::Depthwise));

    // torch folds batch norm into the convolutions; the residual adds stay.
    let resnet = FusedGraph::from_graph(&import_file(&fixture("torch_resnet.onnx")).unwrap());
    assert_eq!(
        resnet
            .layers
            .iter()
            .filter(|l| l.kind == LayerKind::Add)
            .count(),
        2
    );
    assert_eq!(resnet.layers.last().unwrap().kind, LayerKind::Linear);

    // Separate batch norm: folded for analysis, bias adds folded into the layers.
    let separate = import_file(&fixture("separate_bn.onnx")).unwrap();
    assert!(separate.nodes.iter().any(|n| n.op.kind() == "batchnorm"));
    let fused = FusedGraph::from_graph(&separate);
    assert!(
        fused
            .layers
            .iter()
            .all(|l| l.kind != LayerKind::Elementwise)
    );

    // TFLite style: NHWC input becomes a 1-channel CHW image; the classifier reads CHW order.
    let tflite = import_file(&fixture("tflite_style.onnx")).unwrap();
    assert_eq!(tflite.input_shape().c, 1);
    assert_eq!(tflite.input_shape().h, 12);
}

fn import_error(name: &str) -> ImportError {
    import_file(&fixture(name))
        .err()
        .unwrap_or_else(|| panic!("{name} imported"))
}

#[test]
fn unsupported_operator_names_node_type_and_supported_list() {
    let err = import_error("unsupported_op.onnx");
    match &err {
        ImportError::UnsupportedOp {
            node,
            op_type,
            supported,
            ..
        } => {
            assert_eq!(node, "gate");
            assert_eq!(op_type, "Sigmoid");
            assert!(
                supported.contains("Conv") && supported.contains("Gemm"),
                "{supported}"
            );
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("unsupported_op.onnx")
            && text.contains("'gate'")
            && text.contains("'Sigmoid'"),
        "{text}"
    );
}

#[test]
fn malformed_files_are_rejected_with_the_reason() {
    let dilated = import_error("dilated_conv.onnx").to_string();
    assert!(
        dilated.contains("node 'conv' (Conv)") && dilated.contains("dilations"),
        "{dilated}"
    );

    let inputs = import_error("weights_as_inputs.onnx").to_string();
    assert!(
        inputs.contains("2 inputs") && inputs.contains("initializers"),
        "{inputs}"
    );

    for name in ["truncated.onnx", "not_onnx.onnx"] {
        let err = import_error(name);
        assert!(matches!(err, ImportError::Decode { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name));
    }

    let missing = import_error("no_such_file.onnx").to_string();
    assert!(
        missing.contains("no_such_file.onnx: cannot read the file"),
        "{missing}"
    );
}
