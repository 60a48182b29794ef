//! Operators of the graph IR. Each op knows, in one place, its shape inference, its MAC count and
//! its parameter count.

use super::GraphError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An activation tensor's shape for batch 1: channels, height, width (CHW order, as in ONNX).
/// Vectors (after flatten) are `c x 1 x 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(c: usize, h: usize, w: usize) -> Shape {
        Shape { c, h, w }
    }

    pub const fn vector(len: usize) -> Shape {
        Shape { c: len, h: 1, w: 1 }
    }

    pub fn elements(self) -> u64 {
        (self.c * self.h * self.w) as u64
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// Zero padding of a 2-D window, in pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Padding {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding {
    pub const fn uniform(p: usize) -> Padding {
        Padding {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }

    pub(crate) fn is_zero(self) -> bool {
        self == Padding::default()
    }

    pub fn plus(self, other: Padding) -> Padding {
        Padding {
            top: self.top + other.top,
            left: self.left + other.left,
            bottom: self.bottom + other.bottom,
            right: self.right + other.right,
        }
    }
}

/// The geometry of a sliding window (convolution or pooling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
}

impl Window {
    pub const fn square(kernel: usize, stride: usize, padding: usize) -> Window {
        Window {
            kernel: [kernel, kernel],
            stride: [stride, stride],
            padding: Padding::uniform(padding),
        }
    }

    /// Output height and width for an input of `h x w`, or an error when the window does not fit.
    fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize), String> {
        let padded_h = h + self.padding.top + self.padding.bottom;
        let padded_w = w + self.padding.left + self.padding.right;
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(format!(
                "kernel {kh}x{kw} and stride {sh}x{sw} must be positive"
            ));
        }
        if padded_h < kh || padded_w < kw {
            return Err(format!(
                "kernel {kh}x{kw} is larger than the padded input {padded_h}x{padded_w}"
            ));
        }
        Ok(((padded_h - kh) / sh + 1, (padded_w - kw) / sw + 1))
    }
}

/// A 2-D convolution; depthwise when `groups == in_channels == out_channels`.
/// `weight` is `[out, in / groups, kh, kw]` row-major, as in ONNX.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    pub out_channels: usize,
    pub window: Window,
    pub groups: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A fully connected layer; `weight` is `[out, in]` row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub out_features: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Inference-mode batch normalization: `y = scale * (x - mean) / sqrt(var + epsilon) + bias`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    pub scale: Vec<f32>,
    pub bias: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub epsilon: f32,
}

impl BatchNorm {
    /// The identity normalization for `channels` channels (a freshly initialised layer).
    pub fn identity(channels: usize) -> BatchNorm {
        BatchNorm {
            scale: vec![1.0; channels],
            bias: vec![0.0; channels],
            mean: vec![0.0; channels],
            var: vec![1.0; channels],
            epsilon: 1e-5,
        }
    }

    /// Per-channel `(multiplier, offset)` such that `y = multiplier * x + offset`.
    pub(crate) fn affine(&self) -> Vec<(f32, f32)> {
        (0..self.scale.len())
            .map(|c| {
                let m = self.scale[c] / (self.var[c] + self.epsilon).sqrt();
                (m, self.bias[c] - m * self.mean[c])
            })
            .collect()
    }
}

/// Element-wise clipping activations. `Relu6` is `Clip { 0, 6 }`, kept apart because the
/// quantizers treat its fixed range specially.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    Relu,
    Relu6,
    Clip { min: f32, max: f32 },
}

impl Activation {
    /// The activation a `Clip(min, max)` node stands for.
    pub(crate) fn from_clip(min: f32, max: f32) -> Activation {
        if min == 0.0 && max == 6.0 {
            Activation::Relu6
        } else if min == 0.0 && max == f32::INFINITY {
            Activation::Relu
        } else {
            Activation::Clip { min, max }
        }
    }

    pub fn range(self) -> (f32, f32) {
        match self {
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
            Activation::Clip { min, max } => (min, max),
        }
    }

    /// The single activation equal to applying `self`, then `next` (clamps compose).
    pub fn then(self, next: Activation) -> Activation {
        let (a, b) = self.range();
        let (c, d) = next.range();
        let (min, max) = (a.max(c), b.min(d));
        // Disjoint ranges clamp everything to one of next's bounds.
        if min > max {
            let v = if b < c { c } else { d };
            return Activation::Clip { min: v, max: v };
        }
        Activation::from_clip(min, max)
    }

    pub(crate) fn apply(self, x: f32) -> f32 {
        let (min, max) = self.range();
        x.clamp(min, max)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    Max,
    Average,
}

/// A network operator. Inputs are activation tensors; weights live inside the op.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Conv(Conv),
    Linear(Linear),
    BatchNorm(BatchNorm),
    Activation(Activation),
    /// Element-wise sum of two tensors of the same shape (residual connection).
    Add,
    Pool {
        kind: PoolKind,
        window: Window,
    },
    GlobalPool(PoolKind),
    /// Flattens `c x h x w` to a vector in CHW order.
    Flatten,
    Reshape(Shape),
    /// Constant padding (`value`) of height and width.
    Pad {
        padding: Padding,
        value: f32,
    },
    Softmax,
}

impl Op {
    /// A short name for tables and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(conv) => conv_kind(conv),
            Op::Linear(_) => "linear",
            Op::BatchNorm(_) => "batchnorm",
            Op::Activation(Activation::Relu) => "relu",
            Op::Activation(Activation::Relu6) => "relu6",
            Op::Activation(Activation::Clip { .. }) => "clip",
            Op::Add => "add",
            Op::Pool {
                kind: PoolKind::Max,
                ..
            } => "maxpool",
            Op::Pool {
                kind: PoolKind::Average,
                ..
            } => "avgpool",
            Op::GlobalPool(PoolKind::Max) => "globalmaxpool",
            Op::GlobalPool(PoolKind::Average) => "globalavgpool",
            Op::Flatten => "flatten",
            Op::Reshape(_) => "reshape",
            Op::Pad { .. } => "pad",
            Op::Softmax => "softmax",
        }
    }

    /// Number of activation inputs the op takes.
    pub(crate) fn arity(&self) -> usize {
        match self {
            Op::Add => 2,
            _ => 1,
        }
    }

    /// The output shape for the given input shapes, checking that the op's weights agree with them.
    pub(crate) fn infer_shape(&self, inputs: &[Shape]) -> Result<Shape, String> {
        if inputs.len() != self.arity() {
            return Err(format!(
                "takes {} input(s), got {}",
                self.arity(),
                inputs.len()
            ));
        }
        let x = inputs[0];
        match self {
            Op::Conv(conv) => {
                if conv.groups == 0
                    || !x.c.is_multiple_of(conv.groups)
                    || !conv.out_channels.is_multiple_of(conv.groups)
                {
                    return Err(format!(
                        "{} groups do not divide {} input and {} output channels",
                        conv.groups, x.c, conv.out_channels
                    ));
                }
                // Checked: an imported file chooses the factors.
                let expected = conv
                    .out_channels
                    .checked_mul(x.c / conv.groups)
                    .and_then(|n| n.checked_mul(conv.window.kernel[0]))
                    .and_then(|n| n.checked_mul(conv.window.kernel[1]))
                    .unwrap_or(usize::MAX);
                check_len("weight", conv.weight.len(), expected)?;
                check_len("bias", conv.bias.len(), conv.out_channels)?;
                let (h, w) = conv.window.output_hw(x.h, x.w)?;
                Ok(Shape::new(conv.out_channels, h, w))
            }
            Op::Linear(linear) => {
                if x.h != 1 || x.w != 1 {
                    return Err(format!("expects a vector input, got {x} (flatten first)"));
                }
                let expected = linear.out_features.saturating_mul(x.c);
                check_len("weight", linear.weight.len(), expected)?;
                check_len("bias", linear.bias.len(), linear.out_features)?;
                Ok(Shape::vector(linear.out_features))
            }
            Op::BatchNorm(bn) => {
                for (name, v) in [
                    ("scale", &bn.scale),
                    ("bias", &bn.bias),
                    ("mean", &bn.mean),
                    ("var", &bn.var),
                ] {
                    check_len(name, v.len(), x.c)?;
                }
                Ok(x)
            }
            Op::Add => {
                if inputs[1] != x {
                    return Err(format!(
                        "adds tensors of different shapes {x} and {}",
                        inputs[1]
                    ));
                }
                Ok(x)
            }
            Op::Pool { window, .. } => {
                let (h, w) = window.output_hw(x.h, x.w)?;
                Ok(Shape::new(x.c, h, w))
            }
            Op::GlobalPool(_) => Ok(Shape::new(x.c, 1, 1)),
            Op::Flatten => Ok(Shape::vector(x.c * x.h * x.w)),
            Op::Reshape(target) => {
                if target.elements() != x.elements() {
                    return Err(format!("cannot reshape {x} to {target}"));
                }
                Ok(*target)
            }
            Op::Pad { padding, .. } => Ok(Shape::new(
                x.c,
                x.h + padding.top + padding.bottom,
                x.w + padding.left + padding.right,
            )),
            Op::Activation(_) | Op::Softmax => Ok(x),
        }
    }

    /// Multiply-accumulate operations for one inference.
    pub fn macs(&self, input: Shape, output: Shape) -> u64 {
        match self {
            Op::Conv(conv) => {
                let per_output =
                    (input.c / conv.groups * conv.window.kernel[0] * conv.window.kernel[1]) as u64;
                output.elements() * per_output
            }
            Op::Linear(linear) => (linear.out_features * input.c) as u64,
            _ => 0,
        }
    }

    /// Trainable parameters (weights, biases, batch-norm scale and shift).
    pub(crate) fn params(&self) -> u64 {
        match self {
            Op::Conv(conv) => (conv.weight.len() + conv.bias.len()) as u64,
            Op::Linear(linear) => (linear.weight.len() + linear.bias.len()) as u64,
            Op::BatchNorm(bn) => (bn.scale.len() + bn.bias.len()) as u64,
            _ => 0,
        }
    }
}

fn conv_kind(conv: &Conv) -> &'static str {
    let in_per_group = conv.weight.len()
        / (conv.out_channels * conv.window.kernel[0] * conv.window.kernel[1]).max(1);
    if conv.groups > 1 && in_per_group == 1 && conv.groups == conv.out_channels {
        "depthwise"
    } else if conv.groups > 1 {
        "grouped"
    } else if conv.window.kernel == [1, 1] {
        "pointwise"
    } else {
        "conv"
    }
}

fn check_len(what: &str, got: usize, expected: usize) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what} has {got} values, expected {expected}"))
    }
}

/// Wraps an op's shape message with the node it is about.
pub(super) fn shape_error(node: &str, op: &Op, message: String) -> GraphError {
    GraphError::Shape {
        node: node.to_string(),
        op: op.kind(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(out: usize, inp: usize, k: usize, stride: usize, pad: usize, groups: usize) -> Op {
        Op::Conv(Conv {
            out_channels: out,
            window: Window::square(k, stride, pad),
            groups,
            weight: vec![0.0; out * inp / groups * k * k],
            bias: vec![0.0; out],
        })
    }

    #[test]
    fn activations_compose() {
        assert_eq!(
            Activation::Relu.then(Activation::Clip { min: 0.0, max: 6.0 }),
            Activation::Relu6
        );
        assert_eq!(Activation::Relu6.then(Activation::Relu), Activation::Relu6);
        let narrow = Activation::Clip {
            min: -1.0,
            max: 2.0,
        }
        .then(Activation::Relu);
        assert_eq!(narrow, Activation::Clip { min: 0.0, max: 2.0 });
    }

    #[test]
    fn conv_shape_and_macs() {
        let op = conv(16, 3, 3, 2, 1, 1);
        let out = op.infer_shape(&[Shape::new(3, 32, 32)]).unwrap();
        assert_eq!(out, Shape::new(16, 16, 16));
        assert_eq!(op.macs(Shape::new(3, 32, 32), out), 16 * 16 * 16 * 27);
        assert_eq!(op.kind(), "conv");
    }

    #[test]
    fn depthwise_is_recognised() {
        let op = conv(8, 8, 3, 1, 1, 8);
        assert_eq!(op.kind(), "depthwise");
        let out = op.infer_shape(&[Shape::new(8, 10, 10)]).unwrap();
        assert_eq!(op.macs(Shape::new(8, 10, 10), out), 8 * 100 * 9);
    }

    #[test]
    fn mismatched_weights_are_reported() {
        let op = conv(16, 3, 3, 1, 1, 1);
        let err = op.infer_shape(&[Shape::new(4, 8, 8)]).unwrap_err();
        assert!(err.contains("weight has 432 values, expected 576"), "{err}");
    }

    #[test]
    fn window_larger_than_input_is_an_error() {
        let op = conv(4, 1, 5, 1, 0, 1);
        assert!(op.infer_shape(&[Shape::new(1, 3, 3)]).is_err());
    }
}
