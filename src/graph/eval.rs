//! A plain floating-point interpreter of the IR, batch 1, CHW. It is the reference the importer is
//! tested against and the source of activation statistics for calibration inputs; training and
//! the integer golden model live elsewhere.

use super::op::{Op, Padding, PoolKind, Shape, Window};
use super::{Graph, GraphError};

/// Runs `graph` on `input` (CHW, `graph.input_shape()` values) and returns every tensor's values,
/// indexed like `graph.tensors`.
pub fn run(graph: &Graph, input: &[f32]) -> Result<Vec<Vec<f32>>, GraphError> {
    let expected = graph.input_shape().elements() as usize;
    if input.len() != expected {
        return Err(GraphError::Structure(format!(
            "input has {} values, the network expects {expected} ({})",
            input.len(),
            graph.input_shape()
        )));
    }
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); graph.tensors.len()];
    values[graph.input] = input.to_vec();
    for node in &graph.nodes {
        let x = &values[node.inputs[0]];
        let in_shape = graph.tensor(node.inputs[0]).shape;
        let out_shape = graph.tensor(node.output).shape;
        let y = match &node.op {
            Op::Conv(conv) => conv2d(
                x,
                in_shape,
                out_shape,
                conv.window,
                conv.groups,
                &conv.weight,
                &conv.bias,
            ),
            Op::Linear(linear) => {
                let n = x.len();
                (0..linear.out_features)
                    .map(|o| {
                        let row = &linear.weight[o * n..(o + 1) * n];
                        linear.bias[o] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
                    })
                    .collect()
            }
            Op::BatchNorm(bn) => {
                let plane = in_shape.h * in_shape.w;
                let affine = bn.affine();
                x.iter()
                    .enumerate()
                    .map(|(i, v)| affine[i / plane].0 * v + affine[i / plane].1)
                    .collect()
            }
            Op::Activation(act) => x.iter().map(|&v| act.apply(v)).collect(),
            Op::Add => x
                .iter()
                .zip(&values[node.inputs[1]])
                .map(|(a, b)| a + b)
                .collect(),
            Op::Pool { kind, window } => pool(x, in_shape, out_shape, *kind, *window),
            Op::GlobalPool(kind) => {
                let plane = in_shape.h * in_shape.w;
                x.chunks(plane)
                    .map(|c| match kind {
                        PoolKind::Average => c.iter().sum::<f32>() / plane as f32,
                        PoolKind::Max => c.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
                    })
                    .collect()
            }
            Op::Flatten | Op::Reshape(_) => x.clone(),
            Op::Pad { padding, value } => pad(x, in_shape, *padding, *value),
            Op::Softmax => {
                let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
                let sum: f32 = exp.iter().sum();
                exp.iter().map(|e| e / sum).collect()
            }
        };
        values[node.output] = y;
    }
    Ok(values)
}

/// Reads `x[c, h, w]` with zero outside the image.
fn at(x: &[f32], s: Shape, c: usize, h: isize, w: isize) -> Option<f32> {
    if h < 0 || w < 0 || h as usize >= s.h || w as usize >= s.w {
        None
    } else {
        Some(x[(c * s.h + h as usize) * s.w + w as usize])
    }
}

fn conv2d(
    x: &[f32],
    s: Shape,
    o: Shape,
    window: Window,
    groups: usize,
    weight: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    let [kh, kw] = window.kernel;
    let in_per_group = s.c / groups;
    let out_per_group = o.c / groups;
    let mut y = vec![0.0; o.elements() as usize];
    for oc in 0..o.c {
        let g = oc / out_per_group;
        for oh in 0..o.h {
            for ow in 0..o.w {
                let mut acc = bias[oc];
                for ic in 0..in_per_group {
                    for i in 0..kh {
                        for j in 0..kw {
                            let h =
                                (oh * window.stride[0] + i) as isize - window.padding.top as isize;
                            let w =
                                (ow * window.stride[1] + j) as isize - window.padding.left as isize;
                            if let Some(v) = at(x, s, g * in_per_group + ic, h, w) {
                                acc += v * weight[((oc * in_per_group + ic) * kh + i) * kw + j];
                            }
                        }
                    }
                }
                y[(oc * o.h + oh) * o.w + ow] = acc;
            }
        }
    }
    y
}

/// Max pooling ignores the padding; average pooling counts it as zeros (`count_include_pad`).
fn pool(x: &[f32], s: Shape, o: Shape, kind: PoolKind, window: Window) -> Vec<f32> {
    let [kh, kw] = window.kernel;
    let mut y = vec![0.0; o.elements() as usize];
    for c in 0..o.c {
        for oh in 0..o.h {
            for ow in 0..o.w {
                let mut acc = match kind {
                    PoolKind::Max => f32::NEG_INFINITY,
                    PoolKind::Average => 0.0,
                };
                for i in 0..kh {
                    for j in 0..kw {
                        let h = (oh * window.stride[0] + i) as isize - window.padding.top as isize;
                        let w = (ow * window.stride[1] + j) as isize - window.padding.left as isize;
                        match (kind, at(x, s, c, h, w)) {
                            (PoolKind::Max, Some(v)) => acc = acc.max(v),
                            (PoolKind::Average, Some(v)) => acc += v,
                            _ => {}
                        }
                    }
                }
                if kind == PoolKind::Average {
                    acc /= (kh * kw) as f32;
                }
                y[(c * o.h + oh) * o.w + ow] = acc;
            }
        }
    }
    y
}

fn pad(x: &[f32], s: Shape, p: Padding, value: f32) -> Vec<f32> {
    let (h, w) = (s.h + p.top + p.bottom, s.w + p.left + p.right);
    let mut y = vec![value; s.c * h * w];
    for c in 0..s.c {
        for i in 0..s.h {
            for j in 0..s.w {
                y[(c * h + i + p.top) * w + j + p.left] = x[(c * s.h + i) * s.w + j];
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::passes::fold_batchnorm;
    use crate::graph::{GraphBuilder, zoo};

    #[test]
    fn batchnorm_folding_preserves_the_function() {
        let mut g = zoo::build("resnet8").unwrap();
        // Non-trivial batch-norm statistics, so that folding has something to fold.
        for (i, node) in g.nodes.iter_mut().enumerate() {
            if let Op::BatchNorm(bn) = &mut node.op {
                for (c, m) in bn.mean.iter_mut().enumerate() {
                    *m = 0.1 * ((i + c) % 7) as f32;
                }
                for (c, v) in bn.var.iter_mut().enumerate() {
                    *v = 0.5 + 0.1 * ((i * c) % 5) as f32;
                }
            }
        }
        let input: Vec<f32> = (0..3 * 32 * 32)
            .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
            .collect();
        let reference = run(&g, &input).unwrap();
        let folded = fold_batchnorm(&g);
        let out = run(&folded, &input).unwrap();
        let (a, b) = (&reference[g.output], &out[folded.output]);
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn average_pool_counts_padding() {
        let mut b = GraphBuilder::new("p", "x", Shape::new(1, 2, 2));
        let window = Window::square(2, 1, 1);
        let y = b
            .add(
                "pool",
                Op::Pool {
                    kind: PoolKind::Average,
                    window,
                },
                &[0],
            )
            .unwrap();
        let g = b.finish(y).unwrap();
        let out = run(&g, &[4.0, 4.0, 4.0, 4.0]).unwrap();
        assert_eq!(out[g.output][0], 1.0);
    }
}
