//! The importer's table of ONNX values (activations with their layout, constants): reading
//! inputs, emitting IR nodes, spending the allowance for created values.

use super::Importer;
use super::{Layout, MAX_ACTIVATION_ELEMENTS, Value};
use crate::graph::TensorId;
use crate::graph::onnx::ImportError;
use crate::graph::onnx::proto::NodeProto;
use crate::graph::onnx::tensor::Constant;
use crate::graph::op::Op;

impl Importer<'_> {
    pub(super) fn error(
        &self,
        node: &NodeProto,
        name: &str,
        message: impl Into<String>,
    ) -> ImportError {
        ImportError::Node {
            path: self.path.to_string(),
            node: name.to_string(),
            op_type: node.op_type().to_string(),
            message: message.into(),
        }
    }

    pub(super) fn value(
        &self,
        node: &NodeProto,
        name: &str,
        index: usize,
    ) -> Result<&Value, ImportError> {
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
    pub(super) fn spatial(
        &self,
        node: &NodeProto,
        name: &str,
        index: usize,
    ) -> Result<TensorId, ImportError> {
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
    pub(super) fn activation(
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

    pub(super) fn constant(
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

    pub(super) fn optional_constant(
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
    pub(super) fn emit(
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
    /// [`FOLDING_ALLOWANCE`](super::FOLDING_ALLOWANCE)); call it before allocating them where their number is known.
    pub(super) fn spend(
        &mut self,
        node: &NodeProto,
        name: &str,
        values: usize,
    ) -> Result<(), ImportError> {
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
    pub(super) fn set_const(&mut self, node: &NodeProto, value: Constant) {
        self.set(node, Value::Const(value));
    }

    /// Spends a constant's values, then records it as the node's output.
    pub(super) fn fold(
        &mut self,
        node: &NodeProto,
        name: &str,
        value: Constant,
    ) -> Result<(), ImportError> {
        self.spend(node, name, value.len())?;
        self.set_const(node, value);
        Ok(())
    }

    /// Adds an IR node and records its output as `value(tensor)` (see [`nchw`] and [`flat`]).
    pub(super) fn emit_as(
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

    pub(super) fn set(&mut self, node: &NodeProto, value: Value) {
        if let Some(output) = node.output.first() {
            self.values.insert(output.clone(), value);
        }
    }

    /// Emits an element-wise op and gives its output the layout of its input.
    pub(super) fn elementwise(
        &mut self,
        node: &NodeProto,
        name: &str,
        op: Op,
    ) -> Result<(), ImportError> {
        let (tensor, value) = self.activation(node, name, 0)?;
        let out = self.emit(node, name, op, &[tensor])?;
        self.set(node, with_tensor(value, out));
        Ok(())
    }
}

pub(super) fn nchw(tensor: TensorId) -> Value {
    Value::Spatial {
        tensor,
        layout: Layout::Nchw,
    }
}

pub(super) fn flat(tensor: TensorId) -> Value {
    Value::Flat {
        tensor,
        hwc_from: None,
    }
}

pub(super) fn with_tensor(value: Value, tensor: TensorId) -> Value {
    match value {
        Value::Spatial { layout, .. } => Value::Spatial { tensor, layout },
        Value::Flat { hwc_from, .. } => Value::Flat { tensor, hwc_from },
        Value::Const(c) => Value::Const(c),
    }
}
