//! Integerization: a fine-tuned network (batch norm folded) and the quantization it was trained
//! for become an integer-only graph, following `docs/integer-semantics.md`: per-channel integer
//! weights, int32 biases, per-output-channel requantization `(k * acc + 2^(d-1)) >> d`, and a
//! static bound on every accumulator that proves which integer type holds it.

use super::DeployError;
use crate::graph::{
    Activation, FusedGraph, Graph, LayerKind, Op, Shape, Window, fold_for_analysis,
};
use crate::train::qat::Quantization;
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
    pub fn global_window(&self) -> Window {
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
        if self.signed {
            let l = 1i32 << (self.bits - 1);
            (-l, l - 1)
        } else {
            (0, (1i32 << self.bits) - 1)
        }
    }
}

/// `y = clamp((multiplier[c] * acc + 2^(shift-1)) >> shift, lo, hi)`, one multiplier per output
/// channel (or one for all).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Requant {
    pub multiplier: Vec<i64>,
    pub shift: u32,
    pub lo: i32,
    pub hi: i32,
}

impl Requant {
    /// Whether it maps every value of `x`'s range to itself (a max pooling that does not rescale).
    pub fn preserves(&self, x: &IntTensor) -> bool {
        let (lo, hi) = x.range();
        (lo..=hi).all(|v| self.apply(0, i64::from(v)) == v)
    }

    pub fn apply(&self, channel: usize, acc: i64) -> i32 {
        let k = self.multiplier[channel.min(self.multiplier.len() - 1)];
        let y = (k * acc + half(self.shift)) >> self.shift;
        y.clamp(i64::from(self.lo), i64::from(self.hi)) as i32
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
    pub fn product_bits(&self) -> u32 {
        if self.product_bound <= i128::from(i32::MAX) {
            32
        } else {
            64
        }
    }

    /// The narrowest C type that holds the accumulator.
    pub fn acc_type(&self) -> &'static str {
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

/// Fraction bits of the requantization multipliers: the largest multiplier of a layer is
/// scaled into `[2^30, 2^31)`, so it fits int32 and keeps 30 significant bits.
const MULTIPLIER_BITS: u32 = 31;

/// The per-output-channel symmetric quantization of `weight` (rows of `row` values) at `bits`,
/// in f32 exactly as the fine-tuning computes it: the integers and each row's scale.
pub fn quantize_weights(weight: &[f32], row: usize, bits: u32) -> (Vec<i8>, Vec<f32>) {
    let levels = ((1u32 << (bits - 1)) - 1) as f32;
    let mut q = Vec::with_capacity(weight.len());
    let mut scales = Vec::new();
    for channel in weight.chunks(row) {
        let max = channel.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = max.max(1e-12) / levels;
        scales.push(scale);
        q.extend(
            channel
                .iter()
                .map(|w| (w / scale + 0.5).floor().clamp(-levels, levels) as i8),
        );
    }
    (q, scales)
}

/// The largest requantization product `|k_i| * acc_i + 2^(shift-1)` over the multipliers `k`
/// and the accumulator bounds they apply to (one bound for all when `acc_bounds` has one).
fn largest_product(k: &[i64], shift: u32, acc_bounds: &[i64]) -> i128 {
    k.iter()
        .enumerate()
        .map(|(i, k)| i128::from(k.abs()) * i128::from(acc_bounds[i.min(acc_bounds.len() - 1)]))
        .max()
        .unwrap_or(0)
        + i128::from(half(shift))
}

/// The largest |value| of a tensor.
fn magnitude(t: &IntTensor) -> i64 {
    i64::from(t.range().0.abs().max(t.range().1))
}

/// The rounding term of a requantization by `2^shift`: half of it (none for shift 0).
fn half(shift: u32) -> i64 {
    if shift == 0 { 0 } else { 1i64 << (shift - 1) }
}

/// `round(real * 2^shift)` for every ratio, with the largest shift (at most 62) that keeps every
/// multiplier below 2^31 and every requantization product (`largest_product`) below
/// `2^(product_bits-1)`.
fn multipliers(ratios: &[f64], acc_bounds: &[i64], product_bits: u32) -> (Vec<i64>, u32) {
    let max = ratios.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    let mut shift = 1u32;
    while shift < 62 && max * 2f64.powi(shift as i32 + 1) < 2f64.powi(MULTIPLIER_BITS as i32) {
        shift += 1;
    }
    loop {
        let k: Vec<i64> = ratios
            .iter()
            .map(|r| (r * 2f64.powi(shift as i32) + 0.5).floor() as i64)
            .collect();
        // Rounding can lift the largest multiplier to exactly 2^31.
        let fits = k.iter().all(|k| k.abs() < 1 << MULTIPLIER_BITS)
            && largest_product(&k, shift, acc_bounds) < 1i128 << (product_bits - 1);
        if shift == 1 || fits {
            return (k, shift);
        }
        shift -= 1;
    }
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
    let tensors = fused
        .tensors
        .iter()
        .enumerate()
        .map(|(b, t)| {
            if b == fused.input {
                // Pixels: real = byte / 255, exact at 8 bit.
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
            let levels = if q.signed {
                (1u32 << (q.bits - 1)) - 1
            } else {
                (1u32 << q.bits) - 1
            };
            Ok(IntTensor {
                name: t.name.clone(),
                shape: t.shape,
                bits: q.bits,
                signed: q.signed,
                scale: f64::from(q.bound) / f64::from(levels),
            })
        })
        .collect::<Result<Vec<_>, DeployError>>()?;
    let mut layers = Vec::new();
    for layer in &fused.layers {
        let input = &tensors[layer.inputs[0]];
        let output = &tensors[layer.output];
        let (lo, hi) = clamp_range(output, layer.activation);
        let requant = |(multiplier, shift): (Vec<i64>, u32)| Requant {
            multiplier,
            shift,
            lo,
            hi,
        };
        let x_max = i64::from(input.range().0.abs().max(input.range().1));
        let unsupported = || {
            DeployError::Input(format!(
                "layer '{}' ({}) cannot be integerized: only convolutions, linear layers, \
                 poolings and residual adds (with fused ReLU / ReLU6) can",
                layer.name, layer.kind
            ))
        };
        // The accumulator bound of each multiplier (one for all when there is one).
        let (op, requant, acc_bounds): (IntOp, Requant, Vec<i64>) = match layer.kind {
            LayerKind::Conv
            | LayerKind::Pointwise
            | LayerKind::Depthwise
            | LayerKind::GroupedConv
            | LayerKind::Linear => {
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
                    .ok_or_else(unsupported)?;
                let (weight, bias, rows) = match &node.op {
                    Op::Conv(c) => (&c.weight, &c.bias, c.out_channels),
                    Op::Linear(l) => (&l.weight, &l.bias, l.out_features),
                    _ => return Err(unsupported()),
                };
                let row = weight.len() / rows;
                let (mut q, mut scales) = quantize_weights(weight, row, bits);
                // A channel whose weights are all zero computes its bias alone; its scale is
                // free, so pick one at which the bias keeps 30 bits in int32.
                for (c, scale) in scales.iter_mut().enumerate() {
                    if q[c * row..(c + 1) * row].iter().all(|&v| v == 0) {
                        let needed =
                            (f64::from(bias[c]).abs() / (input.scale * 2f64.powi(30))) as f32;
                        *scale = scale.max(needed);
                    }
                }
                let ratios: Vec<f64> = scales
                    .iter()
                    .map(|&s| f64::from(s) * input.scale / output.scale)
                    .collect();
                let bias_q = bias
                    .iter()
                    .zip(&scales)
                    .enumerate()
                    .map(|(c, (&b, &s))| {
                        let steps = (f64::from(b) / (f64::from(s) * input.scale) + 0.5).floor();
                        if steps.abs() > f64::from(i32::MAX) {
                            return Err(DeployError::Overflow(format!(
                                "layer '{}', output channel {c}: its bias is {steps:.3e} \
                                 accumulator steps, beyond int32 (the channel's weights are \
                                 nearly zero against its bias)",
                                layer.name
                            )));
                        }
                        Ok(steps as i32)
                    })
                    .collect::<Result<Vec<i32>, DeployError>>()?;
                let channel_bounds: Vec<i64> = q
                    .chunks(row)
                    .zip(&bias_q)
                    .map(|(w, &b)| {
                        w.iter().map(|&v| i64::from(v).abs()).sum::<i64>() * x_max
                            + i64::from(b).abs()
                    })
                    .collect();
                let (k, shift) = multipliers(&ratios, &channel_bounds, requant_bits);
                let op = match &node.op {
                    Op::Conv(c) => {
                        q = chw_to_hwc_kernel(&q, rows, row, c.window);
                        IntOp::Conv {
                            weights: q,
                            bias: bias_q,
                            weight_bits: bits,
                            window: c.window,
                            groups: c.groups,
                        }
                    }
                    _ => IntOp::Linear {
                        weights: chw_to_hwc_rows(&q, rows, input.shape),
                        bias: bias_q,
                        weight_bits: bits,
                    },
                };
                (op, requant((k, shift)), channel_bounds)
            }
            LayerKind::MaxPool | LayerKind::GlobalMaxPool => {
                let (k, shift) = multipliers(&[input.scale / output.scale], &[x_max], requant_bits);
                let op = match layer.window {
                    Some(w) if layer.kind == LayerKind::MaxPool => {
                        let p = w.padding;
                        if p.top.max(p.bottom) >= w.kernel[0] || p.left.max(p.right) >= w.kernel[1]
                        {
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
                (op, requant((k, shift)), vec![x_max])
            }
            LayerKind::AvgPool | LayerKind::GlobalAvgPool => {
                let (window, count) = match layer.window {
                    Some(w) if layer.kind == LayerKind::AvgPool => {
                        (Some(w), w.kernel[0] * w.kernel[1])
                    }
                    _ => (None, input.shape.h * input.shape.w),
                };
                let acc_bound = x_max * count as i64;
                let (k, shift) = multipliers(
                    &[input.scale / (count as f64 * output.scale)],
                    &[acc_bound],
                    requant_bits,
                );
                let op = match window {
                    Some(window) => IntOp::AvgPool { window },
                    None => IntOp::GlobalAvgPool,
                };
                (op, requant((k, shift)), vec![acc_bound])
            }
            LayerKind::Add => {
                let other = &tensors[layer.inputs[1]];
                let rescale = |t: &IntTensor| {
                    let r = requant(multipliers(
                        &[t.scale / output.scale],
                        &[magnitude(t)],
                        requant_bits,
                    ));
                    product_bound(&layer.name, &r, &[magnitude(t)], requant_bits).map(|_| r)
                };
                let rescale = [rescale(input)?, rescale(other)?];
                // The clamped terms sum to at most twice the output's magnitude.
                let sum_bound = 2 * i64::from(lo.abs().max(hi.abs()));
                (
                    IntOp::Add { rescale },
                    requant((vec![1], 0)),
                    vec![sum_bound],
                )
            }
            LayerKind::Elementwise => return Err(unsupported()),
        };
        let acc_bound = acc_bounds.iter().copied().max().unwrap_or(0);
        let product_bound = match &op {
            IntOp::Add { rescale } => rescale
                .iter()
                .zip(&layer.inputs)
                .map(|(r, &t)| largest_product(&r.multiplier, r.shift, &[magnitude(&tensors[t])]))
                .max()
                .unwrap_or(0),
            _ => product_bound(&layer.name, &requant, &acc_bounds, requant_bits)?,
        };
        layers.push(IntLayer {
            name: layer.name.clone(),
            op,
            inputs: layer.inputs.clone(),
            output: layer.output,
            requant,
            acc_bound,
            product_bound,
        });
    }
    Ok(IntGraph {
        name: fused.name.clone(),
        tensors,
        layers,
        input: fused.input,
        output: fused.output,
    })
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
        let q = |v: f32| (f64::from(v) / output.scale + 0.5).floor();
        if min.is_finite() {
            lo = lo.max(q(min).clamp(f64::from(lo), f64::from(hi)) as i32);
        }
        if max.is_finite() {
            hi = hi.min(q(max).clamp(f64::from(lo), f64::from(hi)) as i32);
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
    fn weights_quantize_as_the_formula_says() {
        let (q, s) = quantize_weights(&[0.5, -1.0, 0.25, 0.0, 0.1, -0.05], 3, 2);
        assert_eq!(s, vec![1.0, 0.1]);
        // 0.5 / 1.0 + 0.5 = 1.0 -> 1; -1 -> -1; 0.25 + 0.5 -> 0.
        assert_eq!(&q[..3], &[1, -1, 0]);
        // -0.05 / 0.1 = -0.5, + 0.5 = 0 -> 0 (half rounds up, towards +inf).
        assert_eq!(&q[3..], &[0, 1, 0]);
        let (q, _) = quantize_weights(&[1.0, -1.0, 0.3], 3, 4);
        assert_eq!(q, vec![7, -7, 2]);
    }

    #[test]
    fn requantization_rounds_half_up_and_clamps() {
        let r = Requant {
            multiplier: vec![1],
            shift: 1,
            lo: 0,
            hi: 3,
        };
        // acc / 2, rounded half up: 1/2 -> 1, 3/2 -> 2, -1/2 -> 0, clamped to [0, 3].
        assert_eq!([1, 3, -1, 5, 100].map(|a| r.apply(0, a)), [1, 2, 0, 3, 3]);
        let signed = Requant {
            multiplier: vec![1],
            shift: 2,
            lo: -7,
            hi: 7,
        };
        // -6/4 = -1.5 -> -1 (towards +inf), -10/4 = -2.5 -> -2, -100 -> -7.
        assert_eq!([-6, -10, -100].map(|a| signed.apply(0, a)), [-1, -2, -7]);
    }

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
    fn multipliers_keep_thirty_bits() {
        let (k, shift) = multipliers(&[0.001234, 0.0005], &[1000], 64);
        assert!((1i64 << 30..1i64 << 31).contains(&k[0]), "{k:?}");
        let real = k[0] as f64 / 2f64.powi(shift as i32);
        assert!((real - 0.001234).abs() / 0.001234 < 1e-8);
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
