//! Integerization: a fine-tuned network (batch norm folded) and the quantization it was trained
//! for become an integer-only graph, following `docs/integer-semantics.md` (whose arithmetic is
//! `crate::quant`): per-channel integer weights, int32 biases, per-output-channel
//! requantization `(k * acc + 2^(d-1)) >> d`, and a static bound on every accumulator that
//! proves which integer type holds it.

use super::DeployError;
use crate::graph::{
    Activation, FusedGraph, Graph, Layer, LayerKind, Op, Shape, Window, fold_for_analysis,
};
use crate::quant::{
    Quantization, Requant, activation_scale, largest_product, multipliers, quantize_activation,
    quantize_weights, round_half_up, type_range,
};
use serde::Serialize;

/// An activation buffer in integers: `real = scale * q`, HWC layout.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntTensor {
    pub name: String,
    pub shape: Shape,
    pub bits: u32,
    pub signed: bool,
    pub scale: f64,
}

impl IntTensor {
    /// The window of a global pooling over the buffer.
    pub(crate) fn global_window(&self) -> Window {
        Window {
            kernel: [self.shape.h, self.shape.w],
            stride: [1, 1],
            padding: Default::default(),
        }
    }

    /// The integer range `[lo, hi]` of the buffer: the whole range of its type (a signed
    /// buffer's scale maps its bound to `2^(bits-1) - 1`, and it can also hold `-2^(bits-1)`,
    /// as DORY's and Deeploy's clamps do).
    pub fn range(&self) -> (i32, i32) {
        type_range(self.bits, self.signed)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum IntOp {
    /// Weights `[out][kh][kw][in / groups]`.
    Conv {
        weights: Vec<i8>,
        bias: Vec<i32>,
        weight_bits: u32,
        window: Window,
        groups: usize,
    },
    /// Weights `[out][in]`, inputs in the HWC order of the input buffer.
    Linear {
        weights: Vec<i8>,
        bias: Vec<i32>,
        weight_bits: u32,
    },
    MaxPool {
        window: Window,
    },
    /// Sums the window (padding counts as zeros); the requantization divides.
    AvgPool {
        window: Window,
    },
    GlobalAvgPool,
    GlobalMaxPool,
    /// Each input rescaled to the output's scale by its own requantization (clamped to the
    /// output's range), then summed; the layer's requantization (multiplier 1, shift 0) clamps
    /// the sum. This is QuantLab's residual add, which DORY and Deeploy run.
    Add {
        rescale: [Requant; 2],
    },
}

impl IntOp {
    pub fn name(&self) -> &'static str {
        match self {
            IntOp::Conv { .. } => "conv",
            IntOp::Linear { .. } => "linear",
            IntOp::MaxPool { .. } => "maxpool",
            IntOp::AvgPool { .. } => "avgpool",
            IntOp::GlobalAvgPool => "globalavgpool",
            IntOp::GlobalMaxPool => "globalmaxpool",
            IntOp::Add { .. } => "add",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntLayer {
    pub name: String,
    pub op: IntOp,
    pub inputs: Vec<usize>,
    pub output: usize,
    pub requant: Requant,
    /// The largest |accumulator| any input can produce, and the requantization product's.
    pub acc_bound: i64,
    pub product_bound: i128,
}

impl IntLayer {
    /// The width (32 or 64) of the narrowest signed integer that holds the requantization
    /// product.
    pub(crate) fn product_bits(&self) -> u32 {
        if self.product_bound <= i128::from(i32::MAX) {
            32
        } else {
            64
        }
    }

    /// The narrowest C type that holds the accumulator.
    pub(crate) fn acc_type(&self) -> &'static str {
        if self.acc_bound <= i64::from(i32::MAX) {
            "int32"
        } else {
            "int64"
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntGraph {
    pub name: String,
    pub tensors: Vec<IntTensor>,
    pub layers: Vec<IntLayer>,
    pub input: usize,
    pub output: usize,
}

/// The largest |value| of a tensor.
fn magnitude(t: &IntTensor) -> i64 {
    i64::from(t.range().0.abs().max(t.range().1))
}

/// The integer graph of the fine-tuned, batch-norm-folded network `graph` with `quantization`.
///
/// `requant_bits` (32 or 64) is the integer width the requantization products must fit: 64 keeps
/// 30-bit multipliers; 32 trades multiplier bits for PULP-NN's (and DORY's) 32-bit arithmetic.
pub fn integerize(
    graph: &Graph,
    quantization: &Quantization,
    requant_bits: u32,
) -> Result<IntGraph, DeployError> {
    if requant_bits != 32 && requant_bits != 64 {
        return Err(DeployError::Input(format!(
            "--requant-bits {requant_bits}: the requantization width must be 32 or 64 bits"
        )));
    }
    let folded = fold_for_analysis(graph);
    let fused = FusedGraph::from_graph(&folded);
    let tensors = int_tensors(&fused, quantization)?;
    let layers = fused
        .layers
        .iter()
        .map(|layer| {
            let step = LayerStep {
                layer,
                tensors: &tensors,
                requant_bits,
            };
            step.integerize(&folded, quantization)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IntGraph {
        name: fused.name.clone(),
        tensors,
        layers,
        input: fused.input,
        output: fused.output,
    })
}

/// Every buffer of `fused` in integers: the input holds pixels (`real = byte / 255`, exact at
/// 8 bit), every other buffer the bits, bound and sign `quantization` gives it.
fn int_tensors(
    fused: &FusedGraph,
    quantization: &Quantization,
) -> Result<Vec<IntTensor>, DeployError> {
    fused
        .tensors
        .iter()
        .enumerate()
        .map(|(b, t)| {
            if b == fused.input {
                return Ok(IntTensor {
                    name: t.name.clone(),
                    shape: t.shape,
                    bits: 8,
                    signed: false,
                    scale: 1.0 / 255.0,
                });
            }
            let q = quantization
                .buffers
                .iter()
                .find(|q| q.buffer == t.name)
                .ok_or_else(|| {
                    DeployError::Input(format!(
                        "quantization: buffer '{}' has no entry; the quantization.json does not \
                         belong to this network",
                        t.name
                    ))
                })?;
            Ok(IntTensor {
                name: t.name.clone(),
                shape: t.shape,
                bits: q.bits,
                signed: q.signed,
                scale: activation_scale(q.bound, q.bits, q.signed),
            })
        })
        .collect()
}

/// One layer of the fused graph being integerized, with the integer buffers it reads and writes.
struct LayerStep<'a> {
    layer: &'a Layer,
    tensors: &'a [IntTensor],
    /// The width the requantization products must fit (32 or 64).
    requant_bits: u32,
}

/// A layer's integer operation, its requantization and the accumulator bound of each of its
/// multipliers (one for all when there is one).
struct IntegerOp {
    op: IntOp,
    requant: Requant,
    acc_bounds: Vec<i64>,
}

impl LayerStep<'_> {
    fn input(&self) -> &IntTensor {
        &self.tensors[self.layer.inputs[0]]
    }

    fn output(&self) -> &IntTensor {
        &self.tensors[self.layer.output]
    }

    /// The requantization to the output's range (narrowed by a fused activation).
    fn requant(&self, (multiplier, shift): (Vec<i64>, u32)) -> Requant {
        let (lo, hi) = clamp_range(self.output(), self.layer.activation);
        Requant {
            multiplier,
            shift,
            lo,
            hi,
        }
    }

    fn unsupported(&self) -> DeployError {
        DeployError::Input(format!(
            "layer '{}' ({}) cannot be integerized: only convolutions, linear layers, \
             poolings and residual adds (with fused ReLU / ReLU6) can",
            self.layer.name, self.layer.kind
        ))
    }

    /// The integer layer, with its accumulator bound and the requantization product's.
    fn integerize(
        &self,
        folded: &Graph,
        quantization: &Quantization,
    ) -> Result<IntLayer, DeployError> {
        let layer = self.layer;
        let IntegerOp {
            op,
            requant,
            acc_bounds,
        } = match layer.kind {
            LayerKind::Conv
            | LayerKind::Pointwise
            | LayerKind::Depthwise
            | LayerKind::GroupedConv
            | LayerKind::Linear => self.weighted(folded, quantization)?,
            LayerKind::MaxPool | LayerKind::GlobalMaxPool => self.max_pool()?,
            LayerKind::AvgPool | LayerKind::GlobalAvgPool => self.avg_pool(),
            LayerKind::Add => self.residual_add()?,
            LayerKind::Elementwise => return Err(self.unsupported()),
        };
        let acc_bound = acc_bounds.iter().copied().max().unwrap_or(0);
        let product_bound = match &op {
            IntOp::Add { rescale } => rescale
                .iter()
                .zip(&layer.inputs)
                .map(|(r, &t)| {
                    largest_product(&r.multiplier, r.shift, &[magnitude(&self.tensors[t])])
                })
                .max()
                .unwrap_or(0),
            _ => product_bound(&layer.name, &requant, &acc_bounds, self.requant_bits)?,
        };
        Ok(IntLayer {
            name: layer.name.clone(),
            op,
            inputs: layer.inputs.clone(),
            output: layer.output,
            requant,
            acc_bound,
            product_bound,
        })
    }

    /// A convolution or linear layer: integer weights per output channel, biases at the
    /// accumulator's scale, and a multiplier per output channel.
    fn weighted(
        &self,
        folded: &Graph,
        quantization: &Quantization,
    ) -> Result<IntegerOp, DeployError> {
        let layer = self.layer;
        let (input, output) = (self.input(), self.output());
        let bits = quantization
            .layers
            .iter()
            .find(|l| l.layer == layer.name)
            .map(|l| l.weight_bits)
            .ok_or_else(|| {
                DeployError::Input(format!(
                    "quantization: layer '{}' has no weight precision",
                    layer.name
                ))
            })?;
        let node = folded
            .nodes
            .iter()
            .find(|n| n.name == layer.name)
            .ok_or_else(|| self.unsupported())?;
        let (weight, bias, rows) = match &node.op {
            Op::Conv(c) => (&c.weight, &c.bias, c.out_channels),
            Op::Linear(l) => (&l.weight, &l.bias, l.out_features),
            _ => return Err(self.unsupported()),
        };
        let row = weight.len() / rows;
        let (q, mut scales) = quantize_weights(weight, row, bits);
        // A channel whose weights are all zero computes its bias alone; its scale is free, so
        // pick one at which the bias keeps 30 bits in int32.
        for (c, scale) in scales.iter_mut().enumerate() {
            if q[c * row..(c + 1) * row].iter().all(|&v| v == 0) {
                let needed = (f64::from(bias[c]).abs() / (input.scale * 2f64.powi(30))) as f32;
                *scale = scale.max(needed);
            }
        }
        let ratios: Vec<f64> = scales
            .iter()
            .map(|&s| f64::from(s) * input.scale / output.scale)
            .collect();
        let bias_q = self.quantize_bias(bias, &scales)?;
        let x_max = magnitude(input);
        let channel_bounds: Vec<i64> = q
            .chunks(row)
            .zip(&bias_q)
            .map(|(w, &b)| {
                w.iter().map(|&v| i64::from(v).abs()).sum::<i64>() * x_max + i64::from(b).abs()
            })
            .collect();
        let requant = self.requant(multipliers(&ratios, &channel_bounds, self.requant_bits));
        let op = match &node.op {
            Op::Conv(c) => IntOp::Conv {
                weights: chw_to_hwc_kernel(&q, rows, row, c.window),
                bias: bias_q,
                weight_bits: bits,
                window: c.window,
                groups: c.groups,
            },
            _ => IntOp::Linear {
                weights: chw_to_hwc_rows(&q, rows, input.shape),
                bias: bias_q,
                weight_bits: bits,
            },
        };
        Ok(IntegerOp {
            op,
            requant,
            acc_bounds: channel_bounds,
        })
    }

    /// The biases in accumulator steps (`bias / (s_c * s_in)`, rounded); an error when one is
    /// beyond int32.
    fn quantize_bias(&self, bias: &[f32], scales: &[f32]) -> Result<Vec<i32>, DeployError> {
        let input_scale = self.input().scale;
        bias.iter()
            .zip(scales)
            .enumerate()
            .map(|(c, (&b, &s))| {
                let steps = round_half_up(f64::from(b) / (f64::from(s) * input_scale));
                if steps.abs() > f64::from(i32::MAX) {
                    return Err(DeployError::Overflow(format!(
                        "layer '{}', output channel {c}: its bias is {steps:.3e} \
                         accumulator steps, beyond int32 (the channel's weights are \
                         nearly zero against its bias)",
                        self.layer.name
                    )));
                }
                Ok(steps as i32)
            })
            .collect()
    }

    /// A max pooling (or global max pooling): the maximum, rescaled to the output's scale.
    fn max_pool(&self) -> Result<IntegerOp, DeployError> {
        let layer = self.layer;
        let (input, output) = (self.input(), self.output());
        let x_max = magnitude(input);
        let requant = self.requant(multipliers(
            &[input.scale / output.scale],
            &[x_max],
            self.requant_bits,
        ));
        let op = match layer.window {
            Some(w) if layer.kind == LayerKind::MaxPool => {
                let p = w.padding;
                if p.top.max(p.bottom) >= w.kernel[0] || p.left.max(p.right) >= w.kernel[1] {
                    return Err(DeployError::Input(format!(
                        "layer '{}': max pooling with padding {p:?} at least as large as \
                         its {:?} window has windows with no input; it cannot be \
                         integerized",
                        layer.name, w.kernel
                    )));
                }
                IntOp::MaxPool { window: w }
            }
            _ => IntOp::GlobalMaxPool,
        };
        Ok(IntegerOp {
            op,
            requant,
            acc_bounds: vec![x_max],
        })
    }

    /// An average pooling (or global average pooling): the window's sum, divided by the
    /// requantization.
    fn avg_pool(&self) -> IntegerOp {
        let layer = self.layer;
        let (input, output) = (self.input(), self.output());
        let (window, count) = match layer.window {
            Some(w) if layer.kind == LayerKind::AvgPool => (Some(w), w.kernel[0] * w.kernel[1]),
            _ => (None, input.shape.h * input.shape.w),
        };
        let acc_bound = magnitude(input) * count as i64;
        let requant = self.requant(multipliers(
            &[input.scale / (count as f64 * output.scale)],
            &[acc_bound],
            self.requant_bits,
        ));
        let op = match window {
            Some(window) => IntOp::AvgPool { window },
            None => IntOp::GlobalAvgPool,
        };
        IntegerOp {
            op,
            requant,
            acc_bounds: vec![acc_bound],
        }
    }

    /// A residual add: each input rescaled to the output's scale by its own requantization, the
    /// sum clamped by an identity.
    fn residual_add(&self) -> Result<IntegerOp, DeployError> {
        let output = self.output();
        let rescale = |t: &IntTensor| {
            let r = self.requant(multipliers(
                &[t.scale / output.scale],
                &[magnitude(t)],
                self.requant_bits,
            ));
            product_bound(&self.layer.name, &r, &[magnitude(t)], self.requant_bits).map(|_| r)
        };
        let rescale = [
            rescale(self.input())?,
            rescale(&self.tensors[self.layer.inputs[1]])?,
        ];
        let requant = self.requant((vec![1], 0));
        // The clamped terms sum to at most twice the output's magnitude.
        let sum_bound = 2 * i64::from(requant.lo.abs().max(requant.hi.abs()));
        Ok(IntegerOp {
            op: IntOp::Add { rescale },
            requant,
            acc_bounds: vec![sum_bound],
        })
    }
}

/// The largest requantization product of a layer (`largest_product` of its multipliers and
/// accumulator bounds); an error when a signed `bits`-bit integer cannot hold it.
fn product_bound(
    layer: &str,
    requant: &Requant,
    acc_bounds: &[i64],
    bits: u32,
) -> Result<i128, DeployError> {
    let bound = largest_product(&requant.multiplier, requant.shift, acc_bounds);
    if bound >= 1i128 << (bits - 1) {
        return Err(DeployError::Overflow(format!(
            "layer '{layer}': the requantization product can reach {bound}, beyond int{bits} \
             (multipliers up to {}, accumulator bounds up to {})",
            requant
                .multiplier
                .iter()
                .map(|k| k.abs())
                .max()
                .unwrap_or(0),
            acc_bounds.iter().max().unwrap_or(&0)
        )));
    }
    Ok(bound)
}

/// The output's integer range, narrowed by a fused ReLU (at 0) or ReLU6 / clip (at its bound).
fn clamp_range(output: &IntTensor, activation: Option<Activation>) -> (i32, i32) {
    let (mut lo, mut hi) = output.range();
    if let Some(a) = activation {
        let (min, max) = a.range();
        if min.is_finite() {
            lo = lo.max(quantize_activation(f64::from(min), output.scale, (lo, hi)));
        }
        if max.is_finite() {
            hi = hi.min(quantize_activation(f64::from(max), output.scale, (lo, hi)));
        }
    }
    (lo, hi)
}

/// Convolution weights from `[out][in][kh][kw]` to `[out][kh][kw][in]` (HWC inputs).
fn chw_to_hwc_kernel(q: &[i8], rows: usize, row: usize, window: Window) -> Vec<i8> {
    let area = window.kernel[0] * window.kernel[1];
    let cin = row / area;
    let mut out = vec![0i8; q.len()];
    for o in 0..rows {
        for c in 0..cin {
            for k in 0..area {
                out[o * row + k * cin + c] = q[o * row + c * area + k];
            }
        }
    }
    out
}

/// Linear weights whose inputs flatten a `shape` buffer in CHW order, reordered for HWC.
fn chw_to_hwc_rows(q: &[i8], rows: usize, shape: Shape) -> Vec<i8> {
    let (c, hw) = (shape.c, shape.h * shape.w);
    let row = c * hw;
    if hw == 1 || q.len() != rows * row {
        return q.to_vec();
    }
    let mut out = vec![0i8; q.len()];
    for o in 0..rows {
        for ch in 0..c {
            for p in 0..hw {
                out[o * row + p * c + ch] = q[o * row + ch * hw + p];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_detected() {
        let r = Requant {
            multiplier: vec![1 << 30, 3],
            shift: 31,
            lo: 0,
            hi: 255,
        };
        // 2^30 * 2^32 = 2^62 fits; 2^30 * 2^33 does not.
        assert!(product_bound("ok", &r, &[1 << 32], 64).is_ok());
        let err = product_bound("fc", &r, &[1 << 33], 64)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer 'fc'") && err.contains("beyond int64"),
            "{err}"
        );
        let layer = |acc_bound| IntLayer {
            name: "l".into(),
            op: IntOp::GlobalAvgPool,
            inputs: vec![0],
            output: 1,
            requant: r.clone(),
            acc_bound,
            product_bound: 0,
        };
        assert_eq!(layer(i64::from(i32::MAX)).acc_type(), "int32");
        assert_eq!(layer(i64::from(i32::MAX) + 1).acc_type(), "int64");
    }

    #[test]
    fn narrow_requantization_fits_thirty_two_bits() {
        // An accumulator up to 2^20 leaves about 10 bits for the multiplier.
        let acc_bound = 1i64 << 20;
        let (k, shift) = multipliers(&[0.001234], &[acc_bound], 32);
        let product = k[0] * acc_bound + (1 << (shift - 1));
        assert!(
            product < 1 << 31 && 2 * product + acc_bound >= 1 << 31,
            "{k:?} {shift}"
        );
        let real = k[0] as f64 / 2f64.powi(shift as i32);
        assert!((real - 0.001234).abs() / 0.001234 < 1e-3);
        let r = Requant {
            multiplier: k,
            shift,
            lo: -127,
            hi: 127,
        };
        assert!(product_bound("conv", &r, &[acc_bound], 32).is_ok());
        assert!(product_bound("conv", &r, &[2 * acc_bound], 32).is_err());
        // Bounds pair with their own channel's multiplier: a channel with a large accumulator
        // and a small multiplier (shift 20) leaves the other 10 bits, where the largest
        // multiplier against the largest bound would leave it one.
        let (k, shift) = multipliers(&[0.001, 1e-6], &[1 << 10, 1 << 30], 32);
        assert_eq!((k[0], k[1], shift), (1049, 1, 20));
    }
}
