//! Graph-to-graph rewrites: batch-norm folding and padding folding. Each takes a graph and
//! returns a new one.

use super::ir::{Graph, Node, Tensor, TensorId};
use super::op::{Op, PoolKind};

/// The graph the analyses see: batch norms and zero paddings folded into their layers.
pub(crate) fn fold_for_analysis(graph: &Graph) -> Graph {
    fold_padding(&fold_batchnorm(graph))
}

/// Folds every batch norm that directly follows a convolution or linear layer (whose output
/// nothing else reads) into that layer's weights and bias. Other batch norms are kept.
pub(crate) fn fold_batchnorm(graph: &Graph) -> Graph {
    let consumers = graph.consumers();
    let producers = graph.producers();
    let mut nodes: Vec<Node> = graph.nodes.clone();
    let mut removed = vec![false; nodes.len()];
    let mut substitutions = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let Op::BatchNorm(bn) = &node.op else {
            continue;
        };
        let source = node.inputs[0];
        let Some(p) = producers[source] else { continue };
        if consumers[source].len() != 1 || source == graph.output {
            continue;
        }
        let affine = bn.affine();
        let folded = match &mut nodes[p].op {
            Op::Conv(conv) => {
                let per_channel = conv.weight.len() / conv.out_channels;
                scale_rows(&mut conv.weight, &mut conv.bias, per_channel, &affine);
                true
            }
            Op::Linear(linear) => {
                let per_row = linear.weight.len() / linear.out_features;
                scale_rows(&mut linear.weight, &mut linear.bias, per_row, &affine);
                true
            }
            _ => false,
        };
        if folded {
            removed[i] = true;
            substitutions.push((node.output, source));
        }
    }
    let kept = keep(nodes, &removed);
    rewire(graph, kept, &substitutions)
}

/// `w[c, :] *= m_c; b_c = m_c * b_c + o_c`.
fn scale_rows(weight: &mut [f32], bias: &mut [f32], row: usize, affine: &[(f32, f32)]) {
    for (c, &(m, o)) in affine.iter().enumerate() {
        for w in &mut weight[c * row..(c + 1) * row] {
            *w *= m;
        }
        bias[c] = m * bias[c] + o;
    }
}

/// Merges a zero `Pad` into the convolution or average pooling that reads it, and a `-inf` pad
/// into a max pooling, as `torch.onnx.export` and TFLite converters emit them.
pub(crate) fn fold_padding(graph: &Graph) -> Graph {
    let consumers = graph.consumers();
    let producers = graph.producers();
    let mut nodes: Vec<Node> = graph.nodes.clone();
    let mut removed = vec![false; nodes.len()];
    let mut substitutions = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let source = node.inputs[0];
        let Some(p) = producers[source] else { continue };
        let Op::Pad { padding, value } = graph.nodes[p].op else {
            continue;
        };
        if consumers[source].len() != 1 || removed[p] {
            continue;
        }
        let merged = match &mut nodes[i].op {
            Op::Conv(conv) if value == 0.0 => {
                conv.window.padding = conv.window.padding.plus(padding);
                true
            }
            Op::Pool {
                kind: PoolKind::Max,
                window,
            } if value == f32::NEG_INFINITY || value <= -1e30 => {
                window.padding = window.padding.plus(padding);
                true
            }
            _ => false,
        };
        if merged {
            removed[p] = true;
            substitutions.push((source, graph.nodes[p].inputs[0]));
        }
    }
    let kept = keep(nodes, &removed);
    rewire(graph, kept, &substitutions)
}

fn keep(nodes: Vec<Node>, removed: &[bool]) -> Vec<Node> {
    nodes
        .into_iter()
        .zip(removed)
        .filter(|(_, r)| !**r)
        .map(|(n, _)| n)
        .collect()
}

/// Rebuilds `graph` with `nodes`, replacing every use of `from` by `to` for each substitution
/// and dropping tensors no longer referenced.
pub(super) fn rewire(
    graph: &Graph,
    mut nodes: Vec<Node>,
    substitutions: &[(TensorId, TensorId)],
) -> Graph {
    let resolve = |mut t: TensorId| {
        while let Some(&(_, to)) = substitutions.iter().find(|(from, _)| *from == t) {
            t = to;
        }
        t
    };
    for node in &mut nodes {
        for t in &mut node.inputs {
            *t = resolve(*t);
        }
    }
    let output = resolve(graph.output);
    let mut used = vec![false; graph.tensors.len()];
    used[graph.input] = true;
    used[output] = true;
    for node in &nodes {
        used[node.output] = true;
        for &t in &node.inputs {
            used[t] = true;
        }
    }
    let mut renumber = vec![usize::MAX; graph.tensors.len()];
    let mut tensors: Vec<Tensor> = Vec::new();
    for (t, tensor) in graph.tensors.iter().enumerate() {
        if used[t] {
            renumber[t] = tensors.len();
            tensors.push(tensor.clone());
        }
    }
    for node in &mut nodes {
        node.output = renumber[node.output];
        for t in &mut node.inputs {
            *t = renumber[*t];
        }
    }
    Graph {
        name: graph.name.clone(),
        tensors,
        nodes,
        input: renumber[graph.input],
        output: renumber[output],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ir::GraphBuilder;
    use crate::graph::op::{BatchNorm, Conv, Padding, Shape, Window};

    fn conv_bn_graph() -> Graph {
        let mut b = GraphBuilder::new("t", "x", Shape::new(1, 3, 3));
        let conv = Op::Conv(Conv {
            out_channels: 2,
            window: Window::square(1, 1, 0),
            groups: 1,
            weight: vec![1.0, 2.0],
            bias: vec![0.5, -1.0],
        });
        let c = b.add("conv", conv, &[0]).unwrap();
        let bn = Op::BatchNorm(BatchNorm {
            scale: vec![2.0, 1.0],
            bias: vec![1.0, 0.0],
            mean: vec![0.5, 1.0],
            var: vec![4.0, 1.0],
            epsilon: 0.0,
        });
        let y = b.add("bn", bn, &[c]).unwrap();
        let r = b
            .add(
                "relu",
                Op::Activation(super::super::op::Activation::Relu),
                &[y],
            )
            .unwrap();
        b.finish(r).unwrap()
    }

    #[test]
    fn batchnorm_folds_into_conv() {
        let g = fold_batchnorm(&conv_bn_graph());
        g.validate().unwrap();
        assert_eq!(g.nodes.len(), 2);
        let Op::Conv(conv) = &g.nodes[0].op else {
            panic!()
        };
        // channel 0: m = 2 / 2 = 1, o = 1 - 0.5 = 0.5; channel 1: m = 1, o = -1
        assert_eq!(conv.weight, vec![1.0, 2.0]);
        assert_eq!(conv.bias, vec![1.0, -2.0]);
        assert_eq!(g.nodes[1].inputs, vec![g.nodes[0].output]);
    }

    #[test]
    fn zero_pad_folds_into_conv() {
        let mut b = GraphBuilder::new("t", "x", Shape::new(1, 4, 4));
        let p = b
            .add(
                "pad",
                Op::Pad {
                    padding: Padding::uniform(1),
                    value: 0.0,
                },
                &[0],
            )
            .unwrap();
        let conv = Op::Conv(Conv {
            out_channels: 1,
            window: Window::square(3, 1, 0),
            groups: 1,
            weight: vec![0.0; 9],
            bias: vec![0.0],
        });
        let c = b.add("conv", conv, &[p]).unwrap();
        let g = fold_padding(&b.finish(c).unwrap());
        g.validate().unwrap();
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.output_shape(), Shape::new(1, 4, 4));
    }
}
