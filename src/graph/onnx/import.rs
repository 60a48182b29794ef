//! ONNX import in the forms that `torch.onnx.export` and TFLite-to-ONNX converters produce.
//!
//! Activations are tracked with their ONNX layout: NCHW (the IR's own order), NHWC (between the
//! transposes a TFLite converter inserts; only layout-free element-wise ops may run on it), or
//! flat `[1, N]`, remembering when the flattened tensor was NHWC so that the classifier's weight
//! columns can be permuted to the IR's CHW order. Shape arithmetic (`Shape`, `Gather`, `Concat`,
//! ...) is evaluated at import time.

use super::ImportError;
use super::constant_ops;
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, tensor_shape_proto, type_proto,
};
use super::tensor::{Constant, decode};
use crate::graph::op::{Activation, BatchNorm, Conv, Linear, Op, Padding, PoolKind, Shape, Window};
use crate::graph::{Graph, GraphBuilder, TensorId};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

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
pub fn supported_ops() -> Vec<&'static str> {
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
    fn run(
        model: &ModelProto,
        path: &'a str,
        name: &str,
        budget: usize,
    ) -> Result<Graph, ImportError> {
        let model_err = |message: String| ImportError::Model {
            path: path.to_string(),
            message,
        };
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| model_err("the model has no graph".into()))?;
        let names = node_names(graph);
        check_operators(graph, &names, path)?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| matches!(o.domain(), "" | "ai.onnx"))
            .map(|o| o.version())
            .unwrap_or(13);

        let mut values = HashMap::new();
        for init in &graph.initializer {
            let constant = decode(init).map_err(|message| ImportError::Tensor {
                path: path.to_string(),
                tensor: init.name().to_string(),
                message,
            })?;
            values.insert(init.name().to_string(), Value::Const(constant));
        }
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !values.contains_key(i.name()))
            .collect();
        let input = match inputs.as_slice() {
            [one] => *one,
            [] => {
                return Err(model_err(
                    "the graph has no input besides its initializers".into(),
                ));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|i| i.name()).collect();
                return Err(model_err(format!(
                    "the graph has {} inputs ({}); qsearch handles single-input networks (weights must be initializers, not inputs)",
                    many.len(),
                    names.join(", ")
                )));
            }
        };
        let dims =
            input_dims(input).map_err(|m| model_err(format!("input '{}' {m}", input.name())))?;
        let nhwc_input = dims.len() == 4
            && graph
                .node
                .iter()
                .filter(|n| n.input.iter().any(|i| i == input.name()))
                .all(|n| {
                    n.op_type() == "Transpose" && attr_ints(n, "perm") == Some(vec![0, 3, 1, 2])
                });
        let (shape, input_value): (Shape, fn(TensorId) -> Value) = match (
            dims.as_slice(),
            nhwc_input,
        ) {
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
                return Err(model_err(format!(
                    "input '{}' has shape {dims:?}; qsearch reads images [N, C, H, W] (or NHWC) and vectors [N, F]",
                    input.name()
                )));
            }
        };
        let elements = shape
            .c
            .checked_mul(shape.h)
            .and_then(|n| n.checked_mul(shape.w));
        if elements.is_none_or(|n| n > MAX_ACTIVATION_ELEMENTS) {
            return Err(model_err(format!(
                "input '{}' has shape {dims:?}; qsearch handles inputs of up to {MAX_ACTIVATION_ELEMENTS} elements",
                input.name()
            )));
        }
        let builder = GraphBuilder::new(name, input.name(), shape);
        values.insert(input.name().to_string(), input_value(builder.input()));

        let mut uses = HashMap::new();
        for node in &graph.node {
            for i in &node.input {
                *uses.entry(i.clone()).or_insert(0) += 1;
            }
        }
        let mut importer = Importer {
            path,
            opset,
            builder,
            values,
            uses,
            budget,
        };
        let registry = register_all();
        for (node, name) in graph.node.iter().zip(&names) {
            // `check_operators` has refused every node without a handler.
            if let Some(handler) = registry.get(node.op_type()) {
                handler(&mut importer, node, name)?;
            }
        }

        let output = match graph.output.as_slice() {
            [one] => one.name(),
            outputs => {
                let names: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
                return Err(model_err(format!(
                    "the graph has {} outputs ({}); qsearch handles single-output networks",
                    outputs.len(),
                    names.join(", ")
                )));
            }
        };
        let tensor = match importer.values.get(output) {
            Some(Value::Spatial { tensor, .. } | Value::Flat { tensor, .. }) => *tensor,
            Some(Value::Const(_)) => {
                return Err(model_err(format!(
                    "output '{output}' is a constant, not computed from the input"
                )));
            }
            None => {
                return Err(model_err(format!(
                    "output '{output}' is not produced by any node"
                )));
            }
        };
        importer
            .builder
            .finish(tensor)
            .map_err(|source| ImportError::Graph {
                path: path.to_string(),
                source,
            })
    }

    fn error(&self, node: &NodeProto, name: &str, message: impl Into<String>) -> ImportError {
        ImportError::Node {
            path: self.path.to_string(),
            node: name.to_string(),
            op_type: node.op_type().to_string(),
            message: message.into(),
        }
    }

    fn value(&self, node: &NodeProto, name: &str, index: usize) -> Result<&Value, ImportError> {
        let input = node
            .input
            .get(index)
            .filter(|i| !i.is_empty())
            .ok_or_else(|| self.error(node, name, format!("input {index} is missing")))?;
        self.values.get(input).ok_or_else(|| {
            self.error(
                node,
                name,
                format!("reads '{input}', which no earlier node produces (is the graph topologically sorted?)"),
            )
        })
    }

    /// An NCHW activation input.
    fn spatial(&self, node: &NodeProto, name: &str, index: usize) -> Result<TensorId, ImportError> {
        match self.value(node, name, index)? {
            Value::Spatial {
                tensor,
                layout: Layout::Nchw,
            } => Ok(*tensor),
            Value::Spatial { .. } => Err(self.error(
                node,
                name,
                "reads an NHWC tensor; ONNX computes this operator in NCHW (a Transpose with perm [0,3,1,2] is missing)",
            )),
            Value::Flat { .. } => Err(self.error(node, name, "expects a 4-D [N, C, H, W] input, got a 2-D one")),
            Value::Const(_) => Err(self.error(node, name, "expects an activation input, got a constant")),
        }
    }

    /// Any activation input, with its value (to copy the layout to the output).
    fn activation(
        &self,
        node: &NodeProto,
        name: &str,
        index: usize,
    ) -> Result<(TensorId, Value), ImportError> {
        match self.value(node, name, index)? {
            v @ (Value::Spatial { tensor, .. } | Value::Flat { tensor, .. }) => {
                Ok((*tensor, v.clone()))
            }
            Value::Const(_) => Err(self.error(
                node,
                name,
                format!("input {index} must be an activation, got a constant"),
            )),
        }
    }

    fn constant(
        &self,
        node: &NodeProto,
        name: &str,
        index: usize,
    ) -> Result<&Constant, ImportError> {
        match self.value(node, name, index)? {
            Value::Const(c) => Ok(c),
            _ => Err(self.error(
                node,
                name,
                format!(
                    "input {index} ('{}') must be a constant initializer (qsearch imports networks with their trained weights)",
                    node.input[index]
                ),
            )),
        }
    }

    fn optional_constant(
        &self,
        node: &NodeProto,
        name: &str,
        index: usize,
    ) -> Result<Option<&Constant>, ImportError> {
        match node.input.get(index) {
            Some(i) if !i.is_empty() => self.constant(node, name, index).map(Some),
            _ => Ok(None),
        }
    }

    /// Adds an IR node computing the ONNX node's first output.
    fn emit(
        &mut self,
        node: &NodeProto,
        name: &str,
        op: Op,
        inputs: &[TensorId],
    ) -> Result<TensorId, ImportError> {
        let output = node
            .output
            .first()
            .cloned()
            .unwrap_or_else(|| name.to_string());
        self.spend(
            node,
            name,
            usize::try_from(op.params()).unwrap_or(usize::MAX),
        )?;
        let tensor = self
            .builder
            .add_named(name, op, inputs, &output)
            .map_err(|source| ImportError::Graph {
                path: self.path.to_string(),
                source,
            })?;
        let shape = self.builder.shape(tensor);
        let elements = shape
            .c
            .checked_mul(shape.h)
            .and_then(|n| n.checked_mul(shape.w));
        match elements {
            Some(n) if n > 0 && n <= MAX_ACTIVATION_ELEMENTS => Ok(tensor),
            _ => Err(self.error(
                node,
                name,
                format!(
                    "computes a {} x {} x {} tensor; qsearch handles activations of 1 to {MAX_ACTIVATION_ELEMENTS} elements",
                    shape.c, shape.h, shape.w
                ),
            )),
        }
    }

    /// Takes `values` from the import's allowance for weights and folded constants (see
    /// [`FOLDING_ALLOWANCE`]); call it before allocating them where their number is known.
    fn spend(&mut self, node: &NodeProto, name: &str, values: usize) -> Result<(), ImportError> {
        match self.budget.checked_sub(values) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(self.error(
                node,
                name,
                format!(
                    "creates {values} more weight or constant values than the model's size allows (the file reads its initializers many times over, or folds shape arithmetic into huge constants)"
                ),
            )),
        }
    }

    /// Records a folded constant as the node's output (its values were spent already).
    fn set_const(&mut self, node: &NodeProto, value: Constant) {
        self.set(node, Value::Const(value));
    }

    /// Spends a constant's values, then records it as the node's output.
    fn fold(&mut self, node: &NodeProto, name: &str, value: Constant) -> Result<(), ImportError> {
        self.spend(node, name, value.len())?;
        self.set_const(node, value);
        Ok(())
    }

    /// Adds an IR node and records its output as `value(tensor)` (see [`nchw`] and [`flat`]).
    fn emit_as(
        &mut self,
        node: &NodeProto,
        name: &str,
        op: Op,
        input: TensorId,
        value: fn(TensorId) -> Value,
    ) -> Result<(), ImportError> {
        let tensor = self.emit(node, name, op, &[input])?;
        self.set(node, value(tensor));
        Ok(())
    }

    fn set(&mut self, node: &NodeProto, value: Value) {
        if let Some(output) = node.output.first() {
            self.values.insert(output.clone(), value);
        }
    }

    /// Emits an element-wise op and gives its output the layout of its input.
    fn elementwise(&mut self, node: &NodeProto, name: &str, op: Op) -> Result<(), ImportError> {
        let (tensor, value) = self.activation(node, name, 0)?;
        let out = self.emit(node, name, op, &[tensor])?;
        self.set(node, with_tensor(value, out));
        Ok(())
    }
}

fn nchw(tensor: TensorId) -> Value {
    Value::Spatial {
        tensor,
        layout: Layout::Nchw,
    }
}

fn flat(tensor: TensorId) -> Value {
    Value::Flat {
        tensor,
        hwc_from: None,
    }
}

fn with_tensor(value: Value, tensor: TensorId) -> Value {
    match value {
        Value::Spatial { layout, .. } => Value::Spatial { tensor, layout },
        Value::Flat { hwc_from, .. } => Value::Flat { tensor, hwc_from },
        Value::Const(c) => Value::Const(c),
    }
}

fn input_dims(input: &super::proto::ValueInfoProto) -> Result<Vec<usize>, String> {
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

fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_float(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).and_then(|a| a.f).unwrap_or(default)
}

fn attr_string(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

/// Kernel, strides and padding of a convolution or pooling, resolving `auto_pad`.
fn window(
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

fn conv(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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
fn classifier_input(
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
fn emit_linear(
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
fn hwc_columns_to_chw(weight: &[f32], out: usize, s: Shape) -> Vec<f32> {
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

fn gemm(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn matmul(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn transpose2(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

fn batch_norm(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

impl Importer<'_> {
    /// An NCHW or flat activation (batch norm works on the channel axis 1 of either).
    fn spatial_or_flat(
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

fn relu(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    imp.elementwise(node, name, Op::Activation(Activation::Relu))
}

fn clip(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn add(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

/// `MatMul` + `Add(bias)` and bias-free `Conv` + `Add(bias)`: the constant joins the layer's bias.
fn fold_bias(
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

fn pool(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn global_pool(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let x = imp.spatial(node, name, 0)?;
    let kind = if node.op_type() == "GlobalMaxPool" {
        PoolKind::Max
    } else {
        PoolKind::Average
    };
    imp.emit_as(node, name, Op::GlobalPool(kind), x, nchw)
}

/// `ReduceMean` over the spatial axes (how TF converters write global average pooling).
fn reduce_mean(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

/// A rank-4 value flattened to `[1, N]`: an IR `Flatten` node, remembering NHWC order.
fn flatten_spatial(
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

fn flatten(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn reshape(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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
fn onnx_dims(value: &Value, shape: Shape) -> Vec<i64> {
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
fn resolve_reshape(target: &[i64], current: &[i64]) -> Result<Vec<i64>, String> {
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

fn squeeze(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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
fn transposed(layout: Layout, perm: &[i64]) -> Option<Layout> {
    match (layout, perm) {
        (Layout::Nhwc, [0, 3, 1, 2]) => Some(Layout::Nchw),
        (Layout::Nchw, [0, 2, 3, 1]) => Some(Layout::Nhwc),
        (_, [0, 1, 2, 3]) => Some(layout),
        _ => None,
    }
}

fn transpose(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn pad(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn softmax(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    imp.elementwise(node, name, Op::Softmax)
}

fn identity(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let value = imp.value(node, name, 0)?;
    if let Value::Const(c) = value {
        let n = c.len();
        imp.spend(node, name, n)?;
    }
    let value = imp.value(node, name, 0)?.clone();
    imp.set(node, value);
    Ok(())
}

/// `Cast` of a constant keeps its values (shape arithmetic only).
fn identity_const(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let n = imp.constant(node, name, 0)?.len();
    imp.spend(node, name, n)?;
    let value = imp.constant(node, name, 0)?.clone();
    imp.set_const(node, value);
    Ok(())
}

fn constant(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn shape_of(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
    let dims = match imp.value(node, name, 0)? {
        Value::Const(c) => c.dims.clone(),
        v @ (Value::Spatial { tensor, .. } | Value::Flat { tensor, .. }) => {
            onnx_dims(v, imp.builder.shape(*tensor))
        }
    };
    imp.fold(node, name, Constant::int(vec![dims.len() as i64], dims))
}

fn gather(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

fn unsqueeze(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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
fn concat(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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
fn slice(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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
fn constant_of_shape(imp: &mut Importer, node: &NodeProto, name: &str) -> Result<(), ImportError> {
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

    #[test]
    fn hwc_columns_are_permuted_to_chw() {
        // one output, C=2, H=1, W=2: HWC order is (w0c0, w0c1, w1c0, w1c1)
        let w = vec![1.0, 2.0, 3.0, 4.0];
        let p = hwc_columns_to_chw(&w, 1, Shape::new(2, 1, 2));
        assert_eq!(p, vec![1.0, 3.0, 2.0, 4.0]);
    }

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
        GraphProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
        tensor_proto::DataType, tensor_shape_proto::Dimension,
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
}
