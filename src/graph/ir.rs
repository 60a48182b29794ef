//! The network graph: plain data. Nodes are kept in execution (topological) order; each node has
//! one output tensor. Passes take a graph and return a new one.

use super::GraphError;
use super::op::{Op, Shape, shape_error};
use serde::{Deserialize, Serialize};

pub(crate) type TensorId = usize;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    pub name: String,
    pub shape: Shape,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
}

/// A single-input, single-output network for batch 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub name: String,
    pub tensors: Vec<Tensor>,
    pub nodes: Vec<Node>,
    pub input: TensorId,
    pub output: TensorId,
}

/// Per-node figures for tables.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NodeStats {
    pub macs: u64,
    pub params: u64,
    pub input: Shape,
    pub output: Shape,
}

impl Graph {
    pub fn tensor(&self, id: TensorId) -> &Tensor {
        &self.tensors[id]
    }

    pub fn input_shape(&self) -> Shape {
        self.tensors[self.input].shape
    }

    pub(crate) fn output_shape(&self) -> Shape {
        self.tensors[self.output].shape
    }

    /// For every tensor, the indices of the nodes that read it.
    pub(crate) fn consumers(&self) -> Vec<Vec<usize>> {
        let mut consumers = vec![Vec::new(); self.tensors.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &t in &node.inputs {
                consumers[t].push(i);
            }
        }
        consumers
    }

    /// For every tensor, the index of the node that writes it (`None` for the graph input).
    pub(crate) fn producers(&self) -> Vec<Option<usize>> {
        let mut producers = vec![None; self.tensors.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            producers[node.output] = Some(i);
        }
        producers
    }

    pub(crate) fn stats(&self, node: &Node) -> NodeStats {
        let input = self.tensors[node.inputs[0]].shape;
        let output = self.tensors[node.output].shape;
        NodeStats {
            macs: node.op.macs(input, output),
            params: node.op.params(),
            input,
            output,
        }
    }

    pub(crate) fn total_macs(&self) -> u64 {
        self.nodes.iter().map(|n| self.stats(n).macs).sum()
    }

    #[cfg(test)]
    pub(crate) fn total_params(&self) -> u64 {
        self.nodes.iter().map(|n| n.op.params()).sum()
    }

    /// Checks the structural invariants every pass relies on: tensor references in range, nodes
    /// in execution order, each tensor written once, the output reachable, and every shape equal
    /// to what the ops infer.
    pub(crate) fn validate(&self) -> Result<(), GraphError> {
        let n_tensors = self.tensors.len();
        if self.input >= n_tensors || self.output >= n_tensors {
            return Err(GraphError::Structure(
                "input or output refers to a missing tensor".into(),
            ));
        }
        let mut written = vec![false; n_tensors];
        written[self.input] = true;
        for node in &self.nodes {
            for &t in &node.inputs {
                if t >= n_tensors || !written[t] {
                    return Err(GraphError::Structure(format!(
                        "node '{}' reads a tensor that is not computed before it",
                        node.name
                    )));
                }
            }
            if node.output >= n_tensors || written[node.output] {
                return Err(GraphError::Structure(format!(
                    "node '{}' writes a tensor that is already written",
                    node.name
                )));
            }
            written[node.output] = true;
            let shapes: Vec<Shape> = node.inputs.iter().map(|&t| self.tensors[t].shape).collect();
            let inferred = node
                .op
                .infer_shape(&shapes)
                .map_err(|m| shape_error(&node.name, &node.op, m))?;
            if inferred != self.tensors[node.output].shape {
                return Err(shape_error(
                    &node.name,
                    &node.op,
                    format!(
                        "output is recorded as {} but the op gives {inferred}",
                        self.tensors[node.output].shape
                    ),
                ));
            }
        }
        if !written[self.output] {
            return Err(GraphError::Structure(
                "the output tensor is never computed".into(),
            ));
        }
        Ok(())
    }
}

/// Builds a graph node by node, inferring shapes as it goes.
pub struct GraphBuilder {
    graph: Graph,
}

impl GraphBuilder {
    pub fn new(name: &str, input_name: &str, input: Shape) -> GraphBuilder {
        GraphBuilder {
            graph: Graph {
                name: name.to_string(),
                tensors: vec![Tensor {
                    name: input_name.to_string(),
                    shape: input,
                }],
                nodes: Vec::new(),
                input: 0,
                output: 0,
            },
        }
    }

    pub fn input(&self) -> TensorId {
        self.graph.input
    }

    pub fn shape(&self, tensor: TensorId) -> Shape {
        self.graph.tensors[tensor].shape
    }

    /// Appends a node whose output tensor is named after the node.
    pub fn add(&mut self, name: &str, op: Op, inputs: &[TensorId]) -> Result<TensorId, GraphError> {
        self.add_named(name, op, inputs, name)
    }

    /// Appends a node writing a tensor called `output_name`.
    pub(crate) fn add_named(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[TensorId],
        output_name: &str,
    ) -> Result<TensorId, GraphError> {
        if self.graph.nodes.iter().any(|n| n.name == name) {
            return Err(GraphError::Structure(format!(
                "two nodes are named '{name}'"
            )));
        }
        let shapes: Vec<Shape> = inputs
            .iter()
            .map(|&t| self.graph.tensors[t].shape)
            .collect();
        let shape = op
            .infer_shape(&shapes)
            .map_err(|m| shape_error(name, &op, m))?;
        let output = self.graph.tensors.len();
        self.graph.tensors.push(Tensor {
            name: output_name.to_string(),
            shape,
        });
        self.graph.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            output,
        });
        Ok(output)
    }

    /// The op of the node that writes `tensor`, to amend it (e.g. fold a bias into it).
    pub(crate) fn producer_op_mut(&mut self, tensor: TensorId) -> Option<&mut Op> {
        self.graph
            .nodes
            .iter_mut()
            .find(|n| n.output == tensor)
            .map(|n| &mut n.op)
    }

    /// Finishes the graph with `output` as its result.
    pub fn finish(mut self, output: TensorId) -> Result<Graph, GraphError> {
        self.graph.output = output;
        self.graph.validate()?;
        Ok(self.graph)
    }
}
