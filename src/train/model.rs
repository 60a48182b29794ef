//! burn models built from the graph IR, so that every zoo network and every imported ONNX
//! network can be trained. The module holds one parameter set per convolution, linear layer and
//! batch norm of the graph; the forward pass walks the graph's own nodes in order.
//!
//! Quantization-aware models are built from the batch-norm-folded graph and an assignment: every
//! convolution and linear layer fake-quantizes its weights per output channel, symmetric, at its
//! precision; every activation buffer is clipped by a learned PACT bound and fake-quantized at its
//! precision; gradients pass the rounding straight through (`x + (q(x) - x).detach()`). The
//! arithmetic is the integer semantics of `docs/integer-semantics.md` in floating point, with
//! the levels and the rounding rule of `crate::quant`.

use crate::graph::{FusedGraph, Graph, Node, Op, PoolKind, Shape, fold_for_analysis};
use crate::precision::{Assignment, Bits};
use crate::quant::{MIN_WEIGHT_RANGE, Real, activation_levels, round_half_up, signed_levels};
use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, conv2d, linear, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions, PadMode};
use std::collections::HashMap;

#[derive(Module, Debug)]
pub struct ConvParams {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct LinearParams {
    /// `[in, out]`, burn's layout (the IR's transposed).
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

/// Which tensors a quantization-aware model quantizes, and at which precision: per layer of the
/// fused graph (weights) and per buffer (activations); `None` keeps a tensor in floating point.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantSpec {
    pub weights: Vec<Option<Bits>>,
    pub activations: Vec<Option<Bits>>,
}

impl QuantSpec {
    /// Everything quantized as `a` says.
    pub fn of(fused: &FusedGraph, a: &Assignment) -> QuantSpec {
        QuantSpec {
            weights: fused
                .layers
                .iter()
                .enumerate()
                .map(|(l, layer)| layer.kind.has_weights().then_some(a.weight_bits[l]))
                .collect(),
            activations: a.activation_bits.iter().map(|&b| Some(b)).collect(),
        }
    }

    /// Nothing quantized.
    pub(crate) fn none(fused: &FusedGraph) -> QuantSpec {
        QuantSpec {
            weights: vec![None; fused.layers.len()],
            activations: vec![None; fused.tensors.len()],
        }
    }
}

/// Per buffer of the fused graph: the largest magnitude on calibration data, and its sign.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ranges {
    pub bound: Vec<f32>,
    pub signed: Vec<bool>,
}

/// How a tensor is fake-quantized: its precision, its PACT bound's index, and whether it is
/// signed (quantized symmetrically) or not (quantized over [0, bound]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ActQuant {
    pub bits: Bits,
    pub clip: usize,
    pub signed: bool,
}

#[derive(Module, Debug)]
pub struct GraphNet {
    pub convs: Vec<ConvParams>,
    pub linears: Vec<LinearParams>,
    pub norms: Vec<BatchNorm>,
    /// PACT clipping bounds, one per quantized activation buffer.
    pub clips: Vec<Param<Tensor<1>>>,
    /// The graph's nodes the forward pass walks, in order; their weights and statistics live
    /// in the parameter sets above, not in the nodes.
    #[module(skip)]
    nodes: Vec<Node>,
    /// Per node, the index of its parameter set in `convs`, `linears` or `norms` (by its op;
    /// 0 for ops without parameters).
    #[module(skip)]
    params: Vec<usize>,
    #[module(skip)]
    input: usize,
    #[module(skip)]
    output: usize,
    #[module(skip)]
    tensor_count: usize,
    #[module(skip)]
    input_shape: Shape,
    /// Weight precision per conv and per linear parameter set (quantized models).
    #[module(skip)]
    conv_bits: Vec<Option<Bits>>,
    #[module(skip)]
    linear_bits: Vec<Option<Bits>>,
    /// Fake quantization of each graph tensor (quantized models).
    #[module(skip)]
    act_quant: Vec<Option<ActQuant>>,
}

fn tensor1(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

/// Per-output-channel symmetric fake quantization with a straight-through gradient. Values are
/// rounded half up (`floor(v + 0.5)`), the rounding of the integer kernels.
pub fn fake_quant_weight<const D: usize>(w: Tensor<D>, bits: Bits) -> Tensor<D> {
    let dims = w.dims();
    let rows = dims[0];
    let levels = signed_levels(bits.count()) as f32;
    let flat: Tensor<2> = w.reshape([rows as i32, -1]);
    let scale = (flat.clone().abs().max_dim(1).clamp_min(MIN_WEIGHT_RANGE) / levels).detach();
    let q = round_half_up(flat.clone() / scale.clone()).clamp(-levels, levels) * scale;
    let ste = flat.clone() + (q - flat).detach();
    ste.reshape(dims)
}

/// The rounding rule of `crate::quant`, element-wise on tensors.
impl<const D: usize> Real for Tensor<D> {
    type Scalar = f32;
    fn floor(self) -> Self {
        Tensor::floor(self)
    }
}

/// PACT: clip to [0, bound] (or [-bound, bound] when signed) with a gradient for the bound,
/// then fake-quantize uniformly with a straight-through gradient.
pub fn fake_quant_activation(
    x: Tensor<4>,
    bound: Tensor<1>,
    bits: Bits,
    signed: bool,
) -> Tensor<4> {
    let a: Tensor<4> = bound.reshape([1, 1, 1, 1]);
    let upper = (x.clone() - a.clone()).clamp_min(0.0);
    let clipped = if signed {
        let lower = (-x.clone() - a.clone()).clamp_min(0.0);
        x - upper + lower
    } else {
        x.clamp_min(0.0) - upper
    };
    let levels = activation_levels(bits.count(), signed) as f32;
    let scale = (a / levels).detach();
    let q = round_half_up(clipped.clone() / scale.clone()) * scale;
    clipped.clone() + (q - clipped).detach()
}

impl GraphNet {
    /// A floating-point model of `graph` with its weights.
    pub fn new(graph: &Graph, device: &Device) -> GraphNet {
        let mut net = GraphNet {
            convs: Vec::new(),
            linears: Vec::new(),
            norms: Vec::new(),
            clips: Vec::new(),
            nodes: Vec::new(),
            params: Vec::new(),
            input: graph.input,
            output: graph.output,
            tensor_count: graph.tensors.len(),
            input_shape: graph.input_shape(),
            conv_bits: Vec::new(),
            linear_bits: Vec::new(),
            act_quant: vec![None; graph.tensors.len()],
        };
        for node in &graph.nodes {
            let mut node = node.clone();
            let params = net.take_params(&mut node.op, device);
            net.nodes.push(node);
            net.params.push(params);
        }
        net
    }

    /// Moves the weights (or statistics) of `op` into a new parameter set of the model; returns
    /// its index (0 for an op without parameters).
    fn take_params(&mut self, op: &mut Op, device: &Device) -> usize {
        use std::mem::take;
        match op {
            Op::Conv(c) => {
                let shape = [
                    c.out_channels,
                    c.weight.len() / c.out_channels / c.window.kernel[0] / c.window.kernel[1],
                    c.window.kernel[0],
                    c.window.kernel[1],
                ];
                self.convs.push(ConvParams {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(take(&mut c.weight), shape),
                        device,
                    )),
                    bias: Param::from_tensor(tensor1(&take(&mut c.bias), device)),
                });
                self.conv_bits.push(None);
                self.convs.len() - 1
            }
            Op::Linear(l) => {
                let inputs = l.weight.len() / l.out_features;
                let w: Tensor<2> = Tensor::from_data(
                    TensorData::new(take(&mut l.weight), [l.out_features, inputs]),
                    device,
                );
                self.linears.push(LinearParams {
                    weight: Param::from_tensor(w.transpose()),
                    bias: Param::from_tensor(tensor1(&take(&mut l.bias), device)),
                });
                self.linear_bits.push(None);
                self.linears.len() - 1
            }
            Op::BatchNorm(bn) => {
                let mut norm = BatchNormConfig::new(bn.scale.len())
                    .with_epsilon(f64::from(bn.epsilon))
                    .init(device);
                norm.gamma = Param::from_tensor(tensor1(&take(&mut bn.scale), device));
                norm.beta = Param::from_tensor(tensor1(&take(&mut bn.bias), device));
                norm.running_mean = RunningState::new(tensor1(&take(&mut bn.mean), device));
                norm.running_var = RunningState::new(tensor1(&take(&mut bn.var), device));
                self.norms.push(norm);
                self.norms.len() - 1
            }
            _ => 0,
        }
    }

    /// A quantization-aware model: `graph` with batch norm folded, the weights and buffers of
    /// `fused` quantized as `spec` says, PACT bounds initialised to `ranges` (per buffer: the
    /// largest magnitude seen on calibration data, and whether it is signed).
    pub fn quantized(
        graph: &Graph,
        fused: &FusedGraph,
        spec: &QuantSpec,
        ranges: &Ranges,
        device: &Device,
    ) -> GraphNet {
        let folded = fold_for_analysis(graph);
        let mut net = GraphNet::new(&folded, device);
        let node_index: HashMap<&str, usize> = folded
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let tensor_of = fused.tensors_in(&folded);
        for (l, layer) in fused.layers.iter().enumerate() {
            if !layer.kind.has_weights() {
                continue;
            }
            let Some(&n) = node_index.get(layer.name.as_str()) else {
                continue;
            };
            let params = net.params[n];
            match net.nodes[n].op {
                Op::Conv(_) => net.conv_bits[params] = spec.weights[l],
                Op::Linear(_) => net.linear_bits[params] = spec.weights[l],
                _ => {}
            }
        }
        for (b, &tensor) in tensor_of.iter().enumerate() {
            // The input image is exact at 8 bit.
            let (Some(bits), false, Some(t)) = (spec.activations[b], b == fused.input, tensor)
            else {
                continue;
            };
            net.act_quant[t] = Some(ActQuant {
                bits,
                clip: net.clips.len(),
                signed: ranges.signed[b],
            });
            net.clips.push(Param::from_tensor(tensor1(
                &[ranges.bound[b].max(1e-3)],
                device,
            )));
        }
        net
    }

    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    /// Logits `[batch, classes]` for a batch of images `[batch, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let values = self.forward_all(x);
        let out = values[self.output].clone().expect("the output is computed");
        let [n, c, h, w] = out.dims();
        out.reshape([n, c * h * w])
    }

    /// Every graph tensor of the forward pass (`None` for those never computed).
    pub(crate) fn forward_all(&self, x: Tensor<4>) -> Vec<Option<Tensor<4>>> {
        let mut values: Vec<Option<Tensor<4>>> = vec![None; self.tensor_count];
        values[self.input] = Some(x);
        for (node, &params) in self.nodes.iter().zip(&self.params) {
            let y = self.node_output(node, params, &values);
            let y = match self.act_quant[node.output] {
                Some(q) => fake_quant_activation(y, self.clips[q.clip].val(), q.bits, q.signed),
                None => y,
            };
            values[node.output] = Some(y);
        }
        values
    }

    /// The output of `node` (its parameter set `params`) on the `values` computed so far.
    fn node_output(&self, node: &Node, params: usize, values: &[Option<Tensor<4>>]) -> Tensor<4> {
        let input = |i: usize| {
            values[node.inputs[i]]
                .clone()
                .expect("inputs precede their readers")
        };
        let x = input(0);
        let [n, c, h, w] = x.dims();
        match &node.op {
            Op::Conv(conv) => {
                let p = &self.convs[params];
                let weight = match self.conv_bits[params] {
                    Some(bits) => fake_quant_weight(p.weight.val(), bits),
                    None => p.weight.val(),
                };
                let pad = conv.window.padding;
                let options = ConvOptions {
                    stride: conv.window.stride,
                    padding: [(pad.top, pad.bottom), (pad.left, pad.right)],
                    dilation: [1, 1],
                    groups: conv.groups,
                };
                conv2d(x, weight, Some(p.bias.val()), options)
            }
            Op::Linear(_) => {
                let p = &self.linears[params];
                let weight = match self.linear_bits[params] {
                    Some(bits) => fake_quant_weight(p.weight.val().transpose(), bits).transpose(),
                    None => p.weight.val(),
                };
                let y = linear(x.reshape([n, c * h * w]), weight, Some(p.bias.val()));
                let out = y.dims()[1];
                y.reshape([n, out, 1, 1])
            }
            Op::BatchNorm(_) => self.norms[params].forward(x),
            Op::Add => x + input(1),
            Op::Activation(a) => {
                let (min, max) = a.range();
                if max.is_finite() {
                    x.clamp(min, max)
                } else {
                    x.clamp_min(min)
                }
            }
            Op::Pool { kind, window } => {
                let pad = window.padding;
                let padding = [(pad.top, pad.bottom), (pad.left, pad.right)];
                match kind {
                    PoolKind::Max => max_pool2d(
                        x,
                        MaxPoolOptions {
                            kernel_size: window.kernel,
                            stride: window.stride,
                            padding,
                            dilation: [1, 1],
                            ceil_mode: false,
                        },
                    ),
                    PoolKind::Average => avg_pool2d(
                        x,
                        AvgPoolOptions {
                            kernel_size: window.kernel,
                            stride: window.stride,
                            padding,
                            count_include_pad: true,
                            ceil_mode: false,
                        },
                    ),
                }
            }
            Op::GlobalPool(PoolKind::Average) => x.mean_dim(3).mean_dim(2),
            Op::GlobalPool(PoolKind::Max) => x.max_dim(3).max_dim(2),
            Op::Flatten => x.reshape([n, c * h * w, 1, 1]),
            Op::Reshape(s) => x.reshape([n, s.c, s.h, s.w]),
            Op::Pad { padding, value } => x.pad(
                (padding.left, padding.right, padding.top, padding.bottom),
                PadMode::Constant(*value),
            ),
            // Softmax: the model returns logits (training takes them, and their argmax is the
            // same).
            Op::Softmax => x,
        }
    }

    /// Writes the trained parameters into a copy of `graph` (the graph the model was built from).
    pub fn to_graph(&self, graph: &Graph) -> Graph {
        let mut out = graph.clone();
        let (mut conv, mut lin, mut norm) = (0, 0, 0);
        for node in &mut out.nodes {
            match &mut node.op {
                Op::Conv(c) => {
                    c.weight = to_vec(self.convs[conv].weight.val());
                    c.bias = to_vec(self.convs[conv].bias.val());
                    conv += 1;
                }
                Op::Linear(l) => {
                    l.weight = to_vec(self.linears[lin].weight.val().transpose());
                    l.bias = to_vec(self.linears[lin].bias.val());
                    lin += 1;
                }
                Op::BatchNorm(bn) => {
                    let m = &self.norms[norm];
                    bn.scale = to_vec(m.gamma.val());
                    bn.bias = to_vec(m.beta.val());
                    bn.mean = to_vec(m.running_mean.value());
                    bn.var = to_vec(m.running_var.value());
                    norm += 1;
                }
                _ => {}
            }
        }
        out
    }

    /// The largest magnitude and the sign of every buffer of `fused` on `images` (this model
    /// must be the floating-point model of the batch-norm-folded graph).
    pub fn ranges(&self, graph: &Graph, fused: &FusedGraph, images: Tensor<4>) -> Ranges {
        let tensor_of = fused.tensors_in(&fold_for_analysis(graph));
        let values = self.valid().forward_all(images);
        let mut bound = Vec::new();
        let mut signed = Vec::new();
        for t in tensor_of {
            let v = t.and_then(|t| values[t].clone());
            let (max, min) = match v {
                Some(t) => {
                    let all = to_vec(t);
                    let max = all.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                    let min = all.iter().cloned().fold(f32::INFINITY, f32::min);
                    (max, min)
                }
                None => (1.0, 0.0),
            };
            bound.push(max);
            signed.push(min < 0.0);
        }
        Ranges { bound, signed }
    }

    /// The learned PACT bound of each quantized buffer of `fused` (None for the input).
    pub fn bounds(&self, graph: &Graph, fused: &FusedGraph) -> Vec<Option<f32>> {
        fused
            .tensors_in(&fold_for_analysis(graph))
            .into_iter()
            .map(|t| {
                let q = self.act_quant[t?]?;
                to_vec(self.clips[q.clip].val()).first().copied()
            })
            .collect()
    }
}
