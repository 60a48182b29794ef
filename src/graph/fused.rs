//! The deployment view of a graph: the kernel calls a PULP runtime makes, in order. Batch norm and
//! padding are folded into convolutions, activations are fused into the layer that produces their
//! input, and flatten/reshape/softmax are views of an existing buffer (the deployed network returns
//! logits; the softmax does not change their argmax). Weight precisions are chosen per layer,
//! activation precisions per tensor of this view.

use super::ir::Graph;
use super::op::{Activation, Op, PoolKind, Shape, Window};
use super::passes::fold_for_analysis;
use serde::{Deserialize, Serialize};
use std::fmt;

pub(crate) type LayerId = usize;
pub(crate) type ActId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LayerKind {
    Conv,
    Pointwise,
    Depthwise,
    GroupedConv,
    Linear,
    Add,
    MaxPool,
    AvgPool,
    GlobalAvgPool,
    GlobalMaxPool,
    /// A per-element op left standing alone (batch norm, activation or padding that could not be fused).
    Elementwise,
}

impl LayerKind {
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Conv => "conv",
            LayerKind::Pointwise => "pointwise",
            LayerKind::Depthwise => "depthwise",
            LayerKind::GroupedConv => "grouped",
            LayerKind::Linear => "linear",
            LayerKind::Add => "add",
            LayerKind::MaxPool => "maxpool",
            LayerKind::AvgPool => "avgpool",
            LayerKind::GlobalAvgPool => "globalavgpool",
            LayerKind::GlobalMaxPool => "globalmaxpool",
            LayerKind::Elementwise => "elementwise",
        }
    }

    /// Whether the layer has a weight tensor whose precision the search chooses.
    pub(crate) fn has_weights(self) -> bool {
        matches!(
            self,
            LayerKind::Conv
                | LayerKind::Pointwise
                | LayerKind::Depthwise
                | LayerKind::GroupedConv
                | LayerKind::Linear
        )
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One kernel call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// The name of the graph node the layer computes (the convolution, not its fused activation).
    pub name: String,
    pub kind: LayerKind,
    pub inputs: Vec<ActId>,
    pub output: ActId,
    pub input_shape: Shape,
    pub output_shape: Shape,
    /// Kernel, stride and padding of convolutions and poolings.
    pub window: Option<Window>,
    pub groups: usize,
    /// Number of weights (biases excluded).
    pub weights: u64,
    pub macs: u64,
    pub activation: Option<Activation>,
    /// Weights and biases after batch-norm folding.
    pub params: u64,
}

impl Layer {}

/// A buffer holding one activation tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActTensor {
    pub name: String,
    /// The graph tensor whose values the buffer finally holds (after a fused activation).
    pub values_of: String,
    pub shape: Shape,
    /// The layer that writes it (`None` for the network input).
    pub producer: Option<LayerId>,
    /// The layers that read it, in execution order.
    pub consumers: Vec<LayerId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedGraph {
    pub name: String,
    pub layers: Vec<Layer>,
    pub tensors: Vec<ActTensor>,
    pub input: ActId,
    pub output: ActId,
}

impl FusedGraph {
    /// For each buffer, the tensor of `folded` (the graph this view was made from, batch norm
    /// folded) holding its values.
    pub(crate) fn tensors_in(&self, folded: &Graph) -> Vec<Option<usize>> {
        let index: std::collections::HashMap<&str, usize> = folded
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        self.tensors
            .iter()
            .map(|b| index.get(b.values_of.as_str()).copied())
            .collect()
    }

    /// Folds, fuses and aliases `graph` into kernel calls.
    pub fn from_graph(graph: &Graph) -> FusedGraph {
        let graph = fold_for_analysis(graph);
        let (root, readers) = view_roots(&graph);
        let mut fused = FusedGraph {
            name: graph.name.clone(),
            layers: Vec::new(),
            tensors: vec![ActTensor {
                name: graph.tensor(graph.input).name.clone(),
                values_of: graph.tensor(graph.input).name.clone(),
                shape: graph.input_shape(),
                producer: None,
                consumers: Vec::new(),
            }],
            input: 0,
            output: 0,
        };
        // act_of[t]: the buffer that holds graph tensor t.
        let mut act_of = vec![usize::MAX; graph.tensors.len()];
        act_of[graph.input] = 0;
        for node in &graph.nodes {
            let input = act_of[node.inputs[0]];
            let alias = match &node.op {
                op if is_view(op) => Some(input),
                Op::Activation(act) => {
                    let source = root[node.inputs[0]];
                    let sole_reader = readers[source] == 1 && root[graph.output] != source;
                    let fused_into = sole_reader
                        .then(|| fused.fuse_activation(input, *act))
                        .flatten();
                    if let Some(buffer) = fused_into {
                        fused.tensors[buffer].values_of = graph.tensor(node.output).name.clone();
                    }
                    fused_into
                }
                _ => None,
            };
            if let Some(a) = alias {
                act_of[node.output] = a;
                continue;
            }
            let stats = graph.stats(node);
            let (kind, window, groups, weights) = match &node.op {
                Op::Conv(conv) => (
                    conv_kind(conv.groups, stats.input.c, conv.out_channels, conv.window),
                    Some(conv.window),
                    conv.groups,
                    conv.weight.len() as u64,
                ),
                Op::Linear(linear) => (LayerKind::Linear, None, 1, linear.weight.len() as u64),
                Op::Add => (LayerKind::Add, None, 1, 0),
                Op::Pool { kind, window } => (
                    match kind {
                        PoolKind::Max => LayerKind::MaxPool,
                        PoolKind::Average => LayerKind::AvgPool,
                    },
                    Some(*window),
                    1,
                    0,
                ),
                Op::GlobalPool(PoolKind::Max) => (LayerKind::GlobalMaxPool, None, 1, 0),
                Op::GlobalPool(PoolKind::Average) => (LayerKind::GlobalAvgPool, None, 1, 0),
                _ => (LayerKind::Elementwise, None, 1, 0),
            };
            let layer_id = fused.layers.len();
            let output = fused.tensors.len();
            fused.tensors.push(ActTensor {
                name: graph.tensor(node.output).name.clone(),
                values_of: graph.tensor(node.output).name.clone(),
                shape: stats.output,
                producer: Some(layer_id),
                consumers: Vec::new(),
            });
            let inputs: Vec<ActId> = node.inputs.iter().map(|&t| act_of[t]).collect();
            for &a in &inputs {
                if !fused.tensors[a].consumers.contains(&layer_id) {
                    fused.tensors[a].consumers.push(layer_id);
                }
            }
            fused.layers.push(Layer {
                name: node.name.clone(),
                kind,
                inputs,
                output,
                input_shape: stats.input,
                output_shape: stats.output,
                window,
                groups,
                weights,
                macs: stats.macs,
                activation: None,
                params: node.op.params(),
            });
            act_of[node.output] = output;
        }
        fused.output = act_of[graph.output];
        fused
    }

    /// Fuses an activation (the sole reader of `input`) into the layer producing `input`; returns
    /// the buffer the activation's output lives in, or `None` to keep it as its own layer.
    fn fuse_activation(&mut self, input: ActId, act: Activation) -> Option<ActId> {
        let producer = self.tensors[input].producer?;
        let layer = &mut self.layers[producer];
        if layer.kind == LayerKind::Elementwise {
            return None;
        }
        layer.activation = Some(match layer.activation {
            Some(previous) => previous.then(act),
            None => act,
        });
        Some(input)
    }

    pub fn weighted_layers(&self) -> impl Iterator<Item = (LayerId, &Layer)> {
        self.layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.kind.has_weights())
    }

    pub fn layer_by_name(&self, name: &str) -> Option<LayerId> {
        self.layers.iter().position(|l| l.name == name)
    }
}

/// Whether the op only reinterprets its input buffer.
fn is_view(op: &Op) -> bool {
    matches!(op, Op::Flatten | Op::Reshape(_) | Op::Softmax)
}

/// For every tensor, the tensor whose buffer it views (itself unless made by a view op), and for
/// every such root, how many non-view nodes read it.
fn view_roots(graph: &Graph) -> (Vec<usize>, Vec<usize>) {
    let mut root: Vec<usize> = (0..graph.tensors.len()).collect();
    let mut readers = vec![0; graph.tensors.len()];
    for node in &graph.nodes {
        if is_view(&node.op) {
            root[node.output] = root[node.inputs[0]];
        } else {
            for &t in &node.inputs {
                readers[root[t]] += 1;
            }
        }
    }
    (root, readers)
}

fn conv_kind(groups: usize, in_channels: usize, out_channels: usize, window: Window) -> LayerKind {
    if groups == 1 {
        if window.kernel == [1, 1] && window.stride == [1, 1] && window.padding.is_zero() {
            LayerKind::Pointwise
        } else {
            LayerKind::Conv
        }
    } else if groups == in_channels && groups == out_channels {
        LayerKind::Depthwise
    } else {
        LayerKind::GroupedConv
    }
}
