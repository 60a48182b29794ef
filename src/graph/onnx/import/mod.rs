//! ONNX import in the forms that `torch.onnx.export` and TFLite-to-ONNX converters produce.
//!
//! Activations are tracked with their ONNX layout: NCHW (the IR's own order), NHWC (between the
//! transposes a TFLite converter inserts; only layout-free element-wise ops may run on it), or
//! flat `[1, N]`, remembering when the flattened tensor was NHWC so that the classifier's weight
//! columns can be permuted to the IR's CHW order. Shape arithmetic (`Shape`, `Gather`, `Concat`,
//! ...) is evaluated at import time.

use super::ImportError;
use super::proto::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use super::tensor::{Constant, decode};
use crate::graph::op::Shape;
use crate::graph::{Graph, GraphBuilder, TensorId};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

mod attributes;
mod elementwise;
mod layers;
mod layout;
mod shape_arithmetic;
#[cfg(test)]
mod tests;
mod values;

use attributes::{attr_ints, input_dims};
use elementwise::{add, clip, global_pool, identity, pool, reduce_mean, relu, softmax};
use layers::{batch_norm, conv, gemm, matmul};
use layout::{flatten, pad, reshape, squeeze, transpose};
use shape_arithmetic::{
    concat, constant, constant_of_shape, gather, identity_const, shape_of, slice, unsqueeze,
};

/// The largest extent of one axis, a padding, a kernel or a stride (an image of 16 M pixels a
/// side is already far past any network qsearch can place on a microcontroller).
const MAX_DIM: usize = 1 << 24;

/// The most elements one activation tensor may have.
const MAX_ACTIVATION_ELEMENTS: usize = 1 << 31;

/// Constant values an import may create beyond the file's own size: the IR's weights, and the
/// constants that shape arithmetic folds. A model that reads the same initializer many times
/// (or folds `ConstantOfShape`, `Concat`, `Gather` into large constants) could otherwise expand
/// a small file into any amount of memory.
const FOLDING_ALLOWANCE: usize = 1 << 24;

/// Reads and imports an `.onnx` file.
pub fn import_file(path: &Path) -> Result<Graph, ImportError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: display.clone(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    import_bytes(&bytes, &display, &stem)
}

/// Imports an ONNX model held in memory; `path` is used in error messages, `name` names the graph.
pub fn import_bytes(bytes: &[u8], path: &str, name: &str) -> Result<Graph, ImportError> {
    let model = ModelProto::decode(bytes).map_err(|e| ImportError::Decode {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    Importer::run(&model, path, name, bytes.len() + FOLDING_ALLOWANCE)
}

/// The ONNX operators the importer understands, sorted.
pub(crate) fn supported_ops() -> Vec<&'static str> {
    let mut ops: Vec<&'static str> = register_all().into_keys().collect();
    ops.sort_unstable();
    ops
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Clone, Debug)]
enum Value {
    /// A rank-4 activation held by an IR tensor of shape C x H x W.
    Spatial {
        tensor: TensorId,
        layout: Layout,
    },
    /// A rank-2 `[1, N]` activation; `hwc_from` is set when it is an NHWC tensor flattened.
    Flat {
        tensor: TensorId,
        hwc_from: Option<Shape>,
    },
    Const(Constant),
}

type Handler = fn(&mut Importer, &NodeProto, &str) -> Result<(), ImportError>;

fn register_all() -> HashMap<&'static str, Handler> {
    let entries: &[(&'static str, Handler)] = &[
        ("Conv", conv),
        ("Gemm", gemm),
        ("MatMul", matmul),
        ("BatchNormalization", batch_norm),
        ("Relu", relu),
        ("Clip", clip),
        ("Add", add),
        ("Sum", add),
        ("MaxPool", pool),
        ("AveragePool", pool),
        ("GlobalAveragePool", global_pool),
        ("GlobalMaxPool", global_pool),
        ("ReduceMean", reduce_mean),
        ("Flatten", flatten),
        ("Reshape", reshape),
        ("Squeeze", squeeze),
        ("Transpose", transpose),
        ("Pad", pad),
        ("Softmax", softmax),
        ("Identity", identity),
        ("Dropout", identity),
        ("Constant", constant),
        ("Shape", shape_of),
        ("Gather", gather),
        ("Unsqueeze", unsqueeze),
        ("Concat", concat),
        ("Cast", identity_const),
        ("Slice", slice),
        ("ConstantOfShape", constant_of_shape),
    ];
    entries.iter().copied().collect()
}

struct Importer<'a> {
    path: &'a str,
    opset: i64,
    builder: GraphBuilder,
    values: HashMap<String, Value>,
    /// How many nodes read each value (to know when a bias add may be folded).
    uses: HashMap<String, usize>,
    /// Values (weights in the IR, folded constants) the import may still create.
    budget: usize,
}

/// The name every node is reported by: its own, or `<op>_<index>` when it has none; a repeated
/// name gets its index appended.
fn node_names(graph: &GraphProto) -> Vec<String> {
    let mut taken = HashSet::new();
    graph
        .node
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let mut name = if node.name().is_empty() {
                format!("{}_{index}", node.op_type())
            } else {
                node.name().to_string()
            };
            if !taken.insert(name.clone()) {
                name = format!("{name}_{index}");
                taken.insert(name.clone());
            }
            name
        })
        .collect()
}

/// Refuses, before any shape or tensor is looked at, the first node (in graph order) that
/// qsearch cannot import whatever the shapes: an operator outside the supported set, or a
/// `Concat` of activations (qsearch folds `Concat` only in shape arithmetic, on constants).
fn check_operators(graph: &GraphProto, names: &[String], path: &str) -> Result<(), ImportError> {
    let registry = register_all();
    let constants: HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    let mut activations: HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name())
        .filter(|n| !constants.contains(n))
        .collect();
    for (node, name) in graph.node.iter().zip(names) {
        let known = matches!(node.domain(), "" | "ai.onnx");
        if !known || !registry.contains_key(node.op_type()) {
            return Err(ImportError::UnsupportedOp {
                path: path.to_string(),
                node: name.clone(),
                op_type: if known {
                    node.op_type().to_string()
                } else {
                    format!("{}::{}", node.domain(), node.op_type())
                },
                supported: supported_ops().join(", "),
            });
        }
        let computed: Vec<&str> = node
            .input
            .iter()
            .map(String::as_str)
            .filter(|i| activations.contains(i))
            .collect();
        if node.op_type() == "Concat" && !computed.is_empty() {
            let listed: Vec<String> = computed.iter().map(|i| format!("'{i}'")).collect();
            return Err(ImportError::Node {
                path: path.to_string(),
                node: name.clone(),
                op_type: node.op_type().to_string(),
                message: format!(
                    "concatenation of activations is not supported: {} computed from the network input; qsearch reads Concat only in shape arithmetic on constants, so networks that concatenate feature maps (channel split and shuffle, DenseNet, Inception) cannot be imported",
                    if listed.len() == 1 {
                        format!("input {} is", listed[0])
                    } else {
                        format!("inputs {} are", listed.join(", "))
                    }
                ),
            });
        }
        if !computed.is_empty() && node.op_type() != "Shape" {
            activations.extend(node.output.iter().map(String::as_str));
        }
    }
    Ok(())
}

impl<'a> Importer<'a> {
    /// Imports `model`: checks its operators, reads its initializers and its one input, runs
    /// every node's handler in graph order, and finishes the IR at its one output.
    fn run(
        model: &ModelProto,
        path: &'a str,
        name: &str,
        budget: usize,
    ) -> Result<Graph, ImportError> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| model_error(path, "the model has no graph".into()))?;
        let names = node_names(graph);
        check_operators(graph, &names, path)?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| matches!(o.domain(), "" | "ai.onnx"))
            .map(|o| o.version())
            .unwrap_or(13);

        let mut values = initializers(graph, path)?;
        let (input, shape, input_value) = graph_input(graph, &values, path)?;
        let builder = GraphBuilder::new(name, input.name(), shape);
        values.insert(input.name().to_string(), input_value(builder.input()));
        let mut importer = Importer {
            path,
            opset,
            builder,
            values,
            uses: use_counts(graph),
            budget,
        };
        let registry = register_all();
        for (node, name) in graph.node.iter().zip(&names) {
            // `check_operators` has refused every node without a handler.
            if let Some(handler) = registry.get(node.op_type()) {
                handler(&mut importer, node, name)?;
            }
        }
        let output = importer.graph_output(graph)?;
        importer
            .builder
            .finish(output)
            .map_err(|source| ImportError::Graph {
                path: path.to_string(),
                source,
            })
    }

    /// The IR tensor of the graph's one output.
    fn graph_output(&self, graph: &GraphProto) -> Result<TensorId, ImportError> {
        let output = match graph.output.as_slice() {
            [one] => one.name(),
            outputs => {
                let names: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
                return Err(model_error(
                    self.path,
                    format!(
                        "the graph has {} outputs ({}); qsearch handles single-output networks",
                        outputs.len(),
                        names.join(", ")
                    ),
                ));
            }
        };
        match self.values.get(output) {
            Some(Value::Spatial { tensor, .. } | Value::Flat { tensor, .. }) => Ok(*tensor),
            Some(Value::Const(_)) => Err(model_error(
                self.path,
                format!("output '{output}' is a constant, not computed from the input"),
            )),
            None => Err(model_error(
                self.path,
                format!("output '{output}' is not produced by any node"),
            )),
        }
    }
}

fn model_error(path: &str, message: String) -> ImportError {
    ImportError::Model {
        path: path.to_string(),
        message,
    }
}

/// The initializers, decoded, by name.
fn initializers(graph: &GraphProto, path: &str) -> Result<HashMap<String, Value>, ImportError> {
    let mut values = HashMap::new();
    for init in &graph.initializer {
        let constant = decode(init).map_err(|message| ImportError::Tensor {
            path: path.to_string(),
            tensor: init.name().to_string(),
            message,
        })?;
        values.insert(init.name().to_string(), Value::Const(constant));
    }
    Ok(values)
}

/// How many nodes read each value (to know when a bias add may be folded).
fn use_counts(graph: &GraphProto) -> HashMap<String, usize> {
    let mut uses = HashMap::new();
    for node in &graph.node {
        for i in &node.input {
            *uses.entry(i.clone()).or_insert(0) += 1;
        }
    }
    uses
}

/// How the graph input's IR tensor is held as an ONNX value.
type InputValue = fn(TensorId) -> Value;

/// The graph's one input that is not an initializer, its shape in the IR, and how its value is
/// held: NHWC when every reader transposes it to NCHW first (as TFLite converters emit).
fn graph_input<'g>(
    graph: &'g GraphProto,
    initializers: &HashMap<String, Value>,
    path: &str,
) -> Result<(&'g ValueInfoProto, Shape, InputValue), ImportError> {
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name()))
        .collect();
    let input = match inputs.as_slice() {
        [one] => *one,
        [] => {
            return Err(model_error(
                path,
                "the graph has no input besides its initializers".into(),
            ));
        }
        many => {
            let names: Vec<&str> = many.iter().map(|i| i.name()).collect();
            return Err(model_error(
                path,
                format!(
                    "the graph has {} inputs ({}); qsearch handles single-input networks (weights must be initializers, not inputs)",
                    many.len(),
                    names.join(", ")
                ),
            ));
        }
    };
    let dims = input_dims(input)
        .map_err(|m| model_error(path, format!("input '{}' {m}", input.name())))?;
    let nhwc_input = dims.len() == 4
        && graph
            .node
            .iter()
            .filter(|n| n.input.iter().any(|i| i == input.name()))
            .all(|n| n.op_type() == "Transpose" && attr_ints(n, "perm") == Some(vec![0, 3, 1, 2]));
    let (shape, input_value): (Shape, InputValue) = match (dims.as_slice(), nhwc_input) {
        ([_, h, w, c], true) => (Shape::new(*c, *h, *w), |t| Value::Spatial {
            tensor: t,
            layout: Layout::Nhwc,
        }),
        ([_, c, h, w], false) => (Shape::new(*c, *h, *w), |t| Value::Spatial {
            tensor: t,
            layout: Layout::Nchw,
        }),
        ([_, n], _) => (Shape::vector(*n), |t| Value::Flat {
            tensor: t,
            hwc_from: None,
        }),
        _ => {
            return Err(model_error(
                path,
                format!(
                    "input '{}' has shape {dims:?}; qsearch reads images [N, C, H, W] (or NHWC) and vectors [N, F]",
                    input.name()
                ),
            ));
        }
    };
    let elements = shape
        .c
        .checked_mul(shape.h)
        .and_then(|n| n.checked_mul(shape.w));
    if elements.is_none_or(|n| n > MAX_ACTIVATION_ELEMENTS) {
        return Err(model_error(
            path,
            format!(
                "input '{}' has shape {dims:?}; qsearch handles inputs of up to {MAX_ACTIVATION_ELEMENTS} elements",
                input.name()
            ),
        ));
    }
    Ok((input, shape, input_value))
}
