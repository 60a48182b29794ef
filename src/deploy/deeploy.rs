//! Deeploy export of an integer graph: `deeploy/network.onnx` in the form the frontend of
//! Deeploy (`deeploy-pulp` 0.2.1 on PyPI) reads, so that the C it generates for PULP-open and
//! for its Generic target computes exactly what the golden model computes:
//!
//! - NCHW, the input `[1, C, H, W]` holding the image's bytes; every activation tensor has its
//!   shape in `value_info` (Deeploy does not infer shapes); weights are float32 tensors holding
//!   the integer weights (exact), multipliers and offsets int64 tensors;
//! - a convolution is `Conv` without a bias input followed by `RequantShift(acc, mul, add)` with
//!   the tensor attributes `div = 2^d`, `n_levels = 2^bits` and `signed`: Deeploy computes
//!   `clamp((acc * mul + add + div/2) >> d)`, so `mul = k` and `add = bias * k` per output
//!   channel is qsearch's `(k * (acc + bias) + 2^(d-1)) >> d`. PULP-open fuses the pair into a
//!   `RequantizedConv` (PULP-NN); all four pads must be equal;
//! - a linear layer is `Flatten` (columns in CHW order) and `Gemm` (`transB = 1`, no bias) followed
//!   by the same `RequantShift` (`RequantizedGemm` on PULP-open);
//! - average pooling (and global average pooling) is the sum of its window as a depthwise `Conv`
//!   with weights 1, then the `RequantShift` (Deeploy 0.2.1's integer `ReduceMean` is broken);
//!   max pooling is `MaxPool`, followed by a `RequantShift` only where it changes values;
//! - a residual add is a `RequantShift` per input (each rescaled to the output's scale and
//!   clamped to its range), `Add`, and an identity `RequantShift` that clamps the sum; PULP-open
//!   fuses them into a `RequantizedAdd`;
//! - identities are written `mul = 2, add = 0, div = 2` (exact: `(2x + 1) >> 1 = x`), since
//!   PULP-open's uniform requantization kernel shifts by `log2(div) - 1` unguarded;
//! - PULP-open runs 8-bit PULP-NN kernels only, and ignores `n_levels < 256` on a fused layer:
//!   weights below 8 bits are carried as int8 values, and an output below 8 bits is clamped by
//!   an extra identity `RequantShift` with its `n_levels` after the layer (and, in a residual
//!   add, after each input's rescaling, so that it clamps before the sum as qsearch does). The
//!   arithmetic is then exactly qsearch's, but nothing is stored below 8 bits: the export says
//!   so per layer, and refuses such layers when asked to be strict;
//! - every product of a requantization must provably fit int32 (Deeploy's and PULP-NN's
//!   arithmetic): deploy with `--requant-bits 32`.
//!
//! Node, tensor and constant names are neutral (`l3_weight`, `l3_out`); a layer's own name is
//! its nodes' `doc_string` only, since Deeploy turns names into C identifiers.
//! `deeploy_generate.py`, written next to the model, runs Deeploy's generation for PULP-open and
//! Generic and reports what Deeploy read, which `check_target` compares with the integer graph.

use super::DeployError;
use super::integerize::{IntGraph, IntLayer, IntOp, IntTensor};
use super::layout::{kernel_to_chw, rows_to_chw};
use crate::graph::Window;
use crate::graph::onnx::export::{
    float_attr, float_tensor, int_attr, int64_tensor, ints_attr, onnx_dims, qsearch_model,
    tensor_attr, value_info, window_attributes,
};
use crate::graph::onnx::proto::{
    AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto, tensor_proto::DataType,
};
use crate::quant::{Requant, code_count, rounding_half};
use prost::Message;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The version of Deeploy (`deeploy-pulp` on PyPI) the export is written for and checked with.
pub const DEEPLOY_VERSION: &str = "0.2.1";

/// A Deeploy target the export is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// PULP-open (`Deeploy.Targets.PULPOpen`, PULP-NN kernels, channels last).
    PulpOpen,
    /// Deeploy's portable C (`Deeploy.Targets.Generic`, channels first).
    Generic,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::PulpOpen, Target::Generic];

    /// Deeploy's name of the target, which is also the export's folder.
    pub fn name(self) -> &'static str {
        match self {
            Target::PulpOpen => "PULPOpen",
            Target::Generic => "Generic",
        }
    }
}

/// The exported model and how each layer is written.
pub struct DeeployExport {
    pub bytes: Vec<u8>,
    pub layers: Vec<DeeployLayer>,
}

/// One layer of the integer graph in the export.
pub struct DeeployLayer {
    pub name: String,
    /// The ONNX nodes that compute it, e.g. `Conv -> RequantShift -> RequantShift (clamp)`.
    pub form: String,
    /// What is stored wider than qsearch stores it (sub-byte weights carried as int8, sub-byte
    /// outputs in bytes); empty for a layer at 8 bit throughout.
    pub carried: Vec<String>,
}

/// Exports `graph` for Deeploy's `target`. With `strict`, a layer with weights or an output
/// below 8 bits is refused rather than carried in 8-bit tensors. An error says why Deeploy
/// cannot run it.
pub fn export(
    graph: &IntGraph,
    target: Target,
    strict: bool,
) -> Result<DeeployExport, DeployError> {
    let mut out = Writer {
        target,
        nodes: Vec::new(),
        initializers: Vec::new(),
        value_info: Vec::new(),
        names: vec![String::new(); graph.tensors.len()],
        rank2: vec![false; graph.tensors.len()],
    };
    out.names[graph.input] = "input".into();
    let layers = graph
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| out.layer(graph, l, layer, strict))
        .collect::<Result<Vec<_>, _>>()?;
    let io = |t: usize| {
        value_info(
            &out.names[t],
            &onnx_dims(graph.tensors[t].shape, out.rank2[t]),
            DataType::Float,
        )
    };
    let (input, output) = (io(graph.input), io(graph.output));
    let output_name = out.names[graph.output].clone();
    out.value_info
        .retain(|v| v.name.as_deref() != Some(output_name.as_str()));
    let model = qsearch_model(
        8,
        13,
        Some(format!(
            "Integer network for Deeploy {DEEPLOY_VERSION}: every tensor holds integers (the \
             input holds the image's bytes 0..255, NCHW)"
        )),
        GraphProto {
            name: Some("network".into()),
            input: vec![input],
            output: vec![output],
            node: out.nodes,
            initializer: out.initializers,
            value_info: out.value_info,
            ..Default::default()
        },
    );
    Ok(DeeployExport {
        bytes: model.encode_to_vec(),
        layers,
    })
}

/// The prefix of every ONNX name of layer `l`'s nodes, tensors and constants.
fn prefix(l: usize) -> String {
    format!("l{l}_")
}

/// The requantization identity (`(2x + 1) >> 1 = x`) as Deeploy reads it.
const IDENTITY: (i64, u32) = (2, 1);

struct Writer {
    target: Target,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    value_info: Vec<ValueInfoProto>,
    /// Each buffer's tensor name.
    names: Vec<String>,
    /// Whether each buffer is `[1, N]` (after a linear layer) rather than `[1, C, H, W]`.
    rank2: Vec<bool>,
}

/// One `RequantShift`: multipliers and offsets (one per channel, or one for all), the shift,
/// and the output type it clamps to.
struct Rqs<'a> {
    mul: Vec<i64>,
    add: Vec<i64>,
    shift: u32,
    y: &'a IntTensor,
}

impl Writer {
    /// Appends a node whose output `output` has the ONNX shape `dims`; returns `output`.
    fn node(
        &mut self,
        doc: &str,
        op_type: &str,
        inputs: Vec<String>,
        output: String,
        dims: &[i64],
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.value_info
            .push(value_info(&output, dims, DataType::Float));
        self.nodes.push(NodeProto {
            name: Some(format!("{output}_{}", op_type.to_lowercase())),
            op_type: Some(op_type.into()),
            input: inputs,
            output: vec![output.clone()],
            attribute: attributes,
            doc_string: Some(doc.into()),
            ..Default::default()
        });
        output
    }

    fn ints(&mut self, name: String, dims: &[i64], values: &[i64]) -> String {
        self.initializers.push(int64_tensor(&name, dims, values));
        name
    }

    fn floats(&mut self, name: String, dims: &[i64], values: &[f32]) -> String {
        self.initializers.push(float_tensor(&name, dims, values));
        name
    }

    /// `RequantShift(x, mul, add)` with `div = 2^shift`, the output type's `n_levels` and
    /// `signed`. `mul` and `add` are written as scalars when `scalar` (where PULP-open fuses the
    /// node into a `RequantizedAdd`, which takes scalars only), else one per channel (`[C, 1,
    /// 1]`, `[C]` in rank 2), since Deeploy's requantization kernels index them by channel.
    fn requant_shift(
        &mut self,
        doc: &str,
        x: String,
        r: Rqs,
        scalar: bool,
        output: String,
        dims: &[i64],
    ) -> String {
        let channels = dims[1] as usize;
        let (values, cdims): (Vec<usize>, Vec<i64>) = if scalar {
            (vec![0], vec![])
        } else if dims.len() == 2 {
            ((0..channels).collect(), vec![channels as i64])
        } else {
            ((0..channels).collect(), vec![channels as i64, 1, 1])
        };
        let pick =
            |v: &[i64]| -> Vec<i64> { values.iter().map(|&c| v[c.min(v.len() - 1)]).collect() };
        let mul = self.ints(format!("{output}_mul"), &cdims, &pick(&r.mul));
        let add = self.ints(format!("{output}_add"), &cdims, &pick(&r.add));
        let scalar = |name: &str, v: i64| tensor_attr(name, int64_tensor(name, &[], &[v]));
        let attributes = vec![
            scalar("div", 1i64 << r.shift),
            scalar("n_levels", code_count(r.y.bits)),
            scalar("signed", i64::from(r.y.signed)),
        ];
        self.node(
            doc,
            "RequantShift",
            vec![x, mul, add],
            output,
            dims,
            attributes,
        )
    }

    /// An identity `RequantShift` that clamps to the range of `y`.
    fn clamp(
        &mut self,
        doc: &str,
        x: String,
        y: &IntTensor,
        scalar: bool,
        output: String,
        dims: &[i64],
    ) -> String {
        let r = Rqs {
            mul: vec![IDENTITY.0],
            add: vec![0],
            shift: IDENTITY.1,
            y,
        };
        self.requant_shift(doc, x, r, scalar, output, dims)
    }

    fn layer(
        &mut self,
        graph: &IntGraph,
        l: usize,
        layer: &IntLayer,
        strict: bool,
    ) -> Result<DeeployLayer, DeployError> {
        let name = layer.name.as_str();
        let refuse =
            |why: String| DeployError::Input(format!("Deeploy export: layer '{name}' {why}"));
        let x_rank2 = self.rank2[layer.inputs[0]];
        let y = &graph.tensors[layer.output];
        unsupported(layer, y, x_rank2).map_err(refuse)?;
        let carried = self.carried(layer, y, strict).map_err(refuse)?;
        let rank2 = x_rank2 || matches!(layer.op, IntOp::Linear { .. });
        let at = LayerAt {
            name,
            p: prefix(l),
            x: &graph.tensors[layer.inputs[0]],
            y,
            x_name: self.names[layer.inputs[0]].clone(),
            x_rank2,
            dims: onnx_dims(y.shape, rank2),
        };
        let channels = y.shape.c;
        let (out, form) = match &layer.op {
            IntOp::Conv {
                weights,
                bias,
                window,
                groups,
                ..
            } => {
                let cin = at.x.shape.c / groups;
                let w = kernel_to_chw(weights, channels, cin, *window);
                let acc = self
                    .conv(&at, &w, [channels, cin], *window, *groups)
                    .map_err(refuse)?;
                self.requantized(&at, layer, acc, bias, "Conv -> RequantShift")
            }
            IntOp::AvgPool { window } => {
                let acc = self.window_sum(&at, *window).map_err(refuse)?;
                let form = "Conv (window sum) -> RequantShift";
                self.requantized(&at, layer, acc, &vec![0; channels], form)
            }
            IntOp::GlobalAvgPool => {
                let acc = self.window_sum(&at, at.x.global_window()).map_err(refuse)?;
                let form = "Conv (window sum) -> RequantShift";
                self.requantized(&at, layer, acc, &vec![0; channels], form)
            }
            IntOp::Linear { weights, bias, .. } => {
                let acc = self.gemm(&at, weights, bias.len());
                self.requantized(&at, layer, acc, bias, "Flatten -> Gemm -> RequantShift")
            }
            IntOp::MaxPool { .. } | IntOp::GlobalMaxPool => {
                self.max_pool(&at, layer).map_err(refuse)?
            }
            IntOp::Add { rescale } => {
                if self.rank2[layer.inputs[1]] != x_rank2 {
                    return Err(refuse("adds a flattened and a 4-D tensor".into()));
                }
                self.residual_add(&at, layer, rescale)
            }
        };
        self.names[layer.output] = out;
        self.rank2[layer.output] = rank2;
        Ok(DeeployLayer {
            name: name.into(),
            form,
            carried,
        })
    }

    /// What the layer stores wider than qsearch stores it (empty at 8 bit throughout); with
    /// `strict`, a refusal when that is anything.
    fn carried(
        &self,
        layer: &IntLayer,
        y: &IntTensor,
        strict: bool,
    ) -> Result<Vec<String>, String> {
        let mut carried = Vec::new();
        if let IntOp::Conv { weight_bits, .. } | IntOp::Linear { weight_bits, .. } = layer.op
            && weight_bits < 8
        {
            carried.push(format!("{weight_bits}-bit weights stored as int8"));
        }
        if y.bits < 8 {
            carried.push(format!(
                "{}-bit output stored as {}{}",
                y.bits,
                if y.signed { "int8" } else { "uint8" },
                if target_is_pulp(self.target)
                    && !matches!(layer.op, IntOp::MaxPool { .. } | IntOp::GlobalMaxPool)
                {
                    " (clamped by an extra RequantShift)"
                } else {
                    ""
                }
            ));
        }
        if strict && !carried.is_empty() {
            return Err(format!(
                "has {}; with --deeploy-strict, tensors below 8 bits are refused (Deeploy's \
                 PULP-open kernels are 8-bit only)",
                carried.join(" and ")
            ));
        }
        Ok(carried)
    }

    /// The `RequantShift` of a layer that accumulates into `acc` with `bias` (written as
    /// `form`), and on PULP-open an extra clamp for an output below 8 bits, which PULP-open
    /// ignores on a fused layer. Returns the last node's output (`lL_out`) and the layer's form.
    fn requantized(
        &mut self,
        at: &LayerAt,
        layer: &IntLayer,
        acc: String,
        bias: &[i32],
        form: &str,
    ) -> (String, String) {
        let p = &at.p;
        let narrow = self.target == Target::PulpOpen && at.y.bits < 8;
        let main_out = if narrow {
            format!("{p}rq")
        } else {
            format!("{p}out")
        };
        let r = &layer.requant;
        let channels = at.y.shape.c;
        let rqs = Rqs {
            mul: (0..channels).map(|c| r.multiplier_of(c)).collect(),
            add: (0..channels)
                .map(|c| i64::from(bias[c]) * r.multiplier_of(c))
                .collect(),
            shift: r.shift,
            y: at.y,
        };
        let mut out = self.requant_shift(at.name, acc, rqs, false, main_out, &at.dims);
        let mut form = form.to_string();
        if narrow {
            out = self.clamp(at.name, out, at.y, false, format!("{p}out"), &at.dims);
            form.push_str(" -> RequantShift (clamp)");
        }
        (out, form)
    }

    /// `Flatten` (unless the input is flat already) and `Gemm` without bias (`transB`, columns
    /// in CHW order) of `n_out` rows of `weights`.
    fn gemm(&mut self, at: &LayerAt, weights: &[i8], n_out: usize) -> String {
        let p = &at.p;
        let mut input = at.x_name.clone();
        if !at.x_rank2 {
            let flat = [1, at.x.shape.elements() as i64];
            input = self.node(
                at.name,
                "Flatten",
                vec![input],
                format!("{p}flat"),
                &flat,
                vec![int_attr("axis", 1)],
            );
        }
        let w: Vec<f32> = rows_to_chw(weights, n_out, at.x, at.x_rank2)
            .into_iter()
            .map(f32::from)
            .collect();
        let n_in = (w.len() / n_out) as i64;
        let w = self.floats(format!("{p}weight"), &[n_out as i64, n_in], &w);
        self.node(
            at.name,
            "Gemm",
            vec![input, w],
            format!("{p}acc"),
            &at.dims,
            vec![
                float_attr("alpha", 1.0),
                float_attr("beta", 1.0),
                int_attr("transA", 0),
                int_attr("transB", 1),
            ],
        )
    }

    /// `MaxPool`, followed by a `RequantShift` only where the requantization changes values
    /// (the standalone `RequantShift` clamps to its `n_levels`, so nothing is carried but the
    /// bytes of a sub-byte output).
    fn max_pool(&mut self, at: &LayerAt, layer: &IntLayer) -> Result<(String, String), String> {
        let p = &at.p;
        let window = match &layer.op {
            IntOp::MaxPool { window } => *window,
            _ => at.x.global_window(),
        };
        let pad = window.padding;
        if pad.top != pad.bottom || pad.left != pad.right || pad.top != pad.left {
            return Err(format!("pads {pad:?}; Deeploy pads all four sides alike"));
        }
        if at.x.signed && pad.top > 0 {
            return Err(
                "pads a signed input; Deeploy's padding value 0 could win the maximum".into(),
            );
        }
        let preserves = layer.requant.preserves(at.x.range());
        let pooled_name = if preserves {
            format!("{p}out")
        } else {
            format!("{p}max")
        };
        let mut attrs = window_attributes(window);
        attrs.push(int_attr("ceil_mode", 0));
        let x_name = at.x_name.clone();
        let pooled = self.node(
            at.name,
            "MaxPool",
            vec![x_name],
            pooled_name,
            &at.dims,
            attrs,
        );
        if preserves {
            return Ok((pooled, "MaxPool".into()));
        }
        let r = &layer.requant;
        let rqs = Rqs {
            mul: vec![r.multiplier[0]],
            add: vec![0],
            shift: r.shift,
            y: at.y,
        };
        let out = self.requant_shift(at.name, pooled, rqs, false, format!("{p}out"), &at.dims);
        Ok((out, "MaxPool -> RequantShift".into()))
    }

    /// A residual add: a `RequantShift` per input, `Add`, and an identity `RequantShift`.
    /// PULP-open fuses RequantShift (scalar) per input -> Add -> RequantShift (scalar) into a
    /// RequantizedAdd, whose PULP-NN kernel clamps to 8 bits: below 8 bits, each input's
    /// rescaling stays a RequantShift of its own (which clamps), followed by a fused identity.
    /// Generic runs every node as written.
    fn residual_add(
        &mut self,
        at: &LayerAt,
        layer: &IntLayer,
        rescale: &[Requant; 2],
    ) -> (String, String) {
        let (p, y, dims) = (&at.p, at.y, &at.dims);
        let fused = self.target == Target::PulpOpen;
        let narrow = fused && y.bits < 8;
        let mut terms = Vec::new();
        for (i, r) in rescale.iter().enumerate() {
            let rqs = Rqs {
                mul: vec![r.multiplier[0]],
                add: vec![0],
                shift: r.shift,
                y,
            };
            let input = self.names[layer.inputs[i]].clone();
            let out = format!("{p}in{i}");
            let mut term = self.requant_shift(at.name, input, rqs, fused && !narrow, out, dims);
            if narrow {
                term = self.clamp(at.name, term, y, true, format!("{p}in{i}_clamp"), dims);
            }
            terms.push(term);
        }
        let sum = self.node(at.name, "Add", terms, format!("{p}sum"), dims, vec![]);
        let last = if narrow {
            format!("{p}rq")
        } else {
            format!("{p}out")
        };
        let mut out = self.clamp(at.name, sum, y, fused, last, dims);
        if narrow {
            out = self.clamp(at.name, out, y, false, format!("{p}out"), dims);
        }
        let form = if narrow {
            "RequantShift -> RequantShift (clamp) per input -> Add -> RequantShift -> \
             RequantShift (clamp)"
        } else {
            "RequantShift per input -> Add -> RequantShift"
        };
        (out, form.into())
    }

    /// `Conv(x, w)` without bias; `w` in ONNX's `[out][in/groups][kh][kw]`, `shape` its
    /// `[out, in/groups]`. Deeploy pads all four sides alike.
    fn conv(
        &mut self,
        at: &LayerAt,
        w: &[i8],
        shape: [usize; 2],
        window: Window,
        groups: usize,
    ) -> Result<String, String> {
        let pad = window.padding;
        if pad.top != pad.bottom || pad.left != pad.right || pad.top != pad.left {
            return Err(format!(
                "pads {pad:?}; Deeploy's convolutions pad all four sides alike"
            ));
        }
        let [kh, kw] = window.kernel;
        let wdims = [shape[0] as i64, shape[1] as i64, kh as i64, kw as i64];
        let values: Vec<f32> = w.iter().map(|&v| f32::from(v)).collect();
        let w = self.floats(format!("{}weight", at.p), &wdims, &values);
        let mut attrs = window_attributes(window);
        attrs.extend([
            int_attr("group", groups as i64),
            ints_attr("dilations", &[1, 1]),
        ]);
        let inputs = vec![at.x_name.clone(), w];
        Ok(self.node(
            at.name,
            "Conv",
            inputs,
            format!("{}acc", at.p),
            &at.dims,
            attrs,
        ))
    }

    /// A window's sum as a depthwise convolution with weights 1 (padding adds zeros).
    fn window_sum(&mut self, at: &LayerAt, window: Window) -> Result<String, String> {
        let c = at.x.shape.c;
        let ones = vec![1i8; c * window.kernel[0] * window.kernel[1]];
        self.conv(at, &ones, [c, 1], window, c)
    }
}

/// A layer being written: its names and shapes in the export.
struct LayerAt<'a> {
    /// The layer's own name (its nodes' `doc_string`).
    name: &'a str,
    /// The prefix of its nodes', tensors' and constants' names.
    p: String,
    x: &'a IntTensor,
    y: &'a IntTensor,
    /// The export's name of the input tensor, and whether it is `[1, N]`.
    x_name: String,
    x_rank2: bool,
    /// The ONNX shape of the output.
    dims: Vec<i64>,
}

/// Why Deeploy cannot run `layer` (output `y`, after a linear layer when `x_rank2`), if it
/// cannot.
fn unsupported(layer: &IntLayer, y: &IntTensor, x_rank2: bool) -> Result<(), String> {
    if layer.product_bits() > 32 {
        return Err(format!(
            "has requantization products up to {:.3e}, beyond int32, where Deeploy's kernels \
             compute them; deploy with --requant-bits 32",
            layer.product_bound as f64
        ));
    }
    if (layer.requant.lo, layer.requant.hi) != y.range() {
        return Err(format!(
            "clamps to [{}, {}], but Deeploy's RequantShift clamps to the whole range of its \
             {}-bit output",
            layer.requant.lo, layer.requant.hi, y.bits
        ));
    }
    if x_rank2 && !matches!(layer.op, IntOp::Linear { .. } | IntOp::Add { .. }) {
        return Err("follows a linear layer; only linear layers and residual adds can".into());
    }
    Ok(())
}

fn target_is_pulp(target: Target) -> bool {
    target == Target::PulpOpen
}

/// The generation script that runs next to the export (`deeploy_generate.py`).
pub(crate) const GENERATE_SCRIPT: &str = include_str!("deeploy_generate.py");

/// The Python interpreter of the project venv, where `scripts/setup.sh` installs
/// `deeploy-pulp`: `QSEARCH_VENV`, else `~/.cache/qsearch/venv` (`QSEARCH_DEEPLOY_PYTHON` names
/// another interpreter).
pub(crate) fn python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("QSEARCH_DEEPLOY_PYTHON") {
        return python.into();
    }
    crate::cache::venv_python()
}

/// Writes each target's export as `dir/TARGET/network.onnx`, and `deeploy_generate.py` into
/// `dir`.
pub fn write(exports: &[(Target, DeeployExport)], dir: &Path) -> Result<(), DeployError> {
    use super::verify::io;
    use crate::results::write_atomic;
    for (target, export) in exports {
        let folder = dir.join(target.name());
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let model = folder.join("network.onnx");
        write_atomic(&model, &export.bytes).map_err(io(&model))?;
    }
    let script = dir.join("deeploy_generate.py");
    write_atomic(&script, GENERATE_SCRIPT.as_bytes()).map_err(io(&script))
}

/// What Deeploy's generation for one target showed, compared with the integer graph.
pub struct TargetCheck {
    pub target: Target,
    /// Why Deeploy failed to generate C, when it did.
    pub error: Option<String>,
    /// The layers Deeploy bound, by operator.
    pub ops: BTreeMap<String, usize>,
    /// Requantizations and weight tensors compared with the integer graph.
    pub compared: usize,
    /// Every difference between what Deeploy read and the integer graph.
    pub mismatches: Vec<String>,
}

impl TargetCheck {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.mismatches.is_empty()
    }

    /// One line: the layers Deeploy bound and how they compare.
    pub fn summary(&self) -> String {
        if let Some(error) = &self.error {
            return format!("{}: generation FAILED: {error}", self.target.name());
        }
        let ops: Vec<String> = self.ops.iter().map(|(op, n)| format!("{n} {op}")).collect();
        let verdict = if self.mismatches.is_empty() {
            format!(
                "all {} requantizations and weight tensors equal the integer graph's",
                self.compared
            )
        } else {
            format!(
                "{} DIFFERENCES from the integer graph, first: {}",
                self.mismatches.len(),
                self.mismatches[0]
            )
        };
        format!(
            "{}: C generated ({}); {verdict}",
            self.target.name(),
            ops.join(", ")
        )
    }
}

/// `deeploy.json`, as `deeploy_generate.py` writes it.
#[derive(Deserialize)]
struct Report {
    deeploy_pulp: Option<String>,
    targets: BTreeMap<String, TargetReport>,
}

#[derive(Deserialize)]
struct TargetReport {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    inputs: Vec<Buffer>,
    #[serde(default)]
    outputs: Vec<Buffer>,
    #[serde(default)]
    layers: Vec<Bound>,
}

#[derive(Deserialize)]
struct Buffer {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    offset: Option<i64>,
}

/// A layer Deeploy bound: its operator, tensors, scalar parameters and constants.
#[derive(Deserialize)]
struct Bound {
    node: String,
    op: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    params: BTreeMap<String, serde_json::Value>,
    constants: BTreeMap<String, Constant>,
}

#[derive(Deserialize)]
struct Constant {
    name: String,
    values: Vec<f64>,
}

impl Bound {
    fn param(&self, key: &str) -> Option<i64> {
        self.params.get(key).and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .or_else(|| v.as_bool().map(i64::from))
        })
    }

    fn params(&self, key: &str) -> Option<Vec<i64>> {
        self.params
            .get(key)?
            .as_array()?
            .iter()
            .map(|v| v.as_i64())
            .collect()
    }

    fn constant(&self, name: &str) -> Option<&Constant> {
        self.constants
            .values()
            .find(|c| c.name == deeploy_name(name))
    }

    /// Whether the layer writes the tensor named `name` in the export (Deeploy renames it, and
    /// names transposes it inserts after it).
    fn writes(&self, name: &str) -> bool {
        let n = deeploy_name(name);
        self.outputs
            .iter()
            .any(|o| *o == n || o.contains(&format!("_{n}")))
    }
}

/// The name Deeploy gives a tensor or constant of the export.
fn deeploy_name(name: &str) -> String {
    format!("{name}_tensor")
}

/// One requantization of the export as the integer graph defines it.
struct Expected {
    /// The layer's name, for messages.
    layer: String,
    /// The prefix of the layer's names in the export, and whether it computes the network's
    /// output (which Deeploy renames `output_0`).
    prefix: String,
    last: bool,
    /// The export's tensor name of the requantization's output.
    tensor: String,
    /// The graph's output, which Deeploy renames `output_0`.
    is_output: bool,
    mul: Vec<i64>,
    /// `bias * k` (Deeploy adds the rounding half itself).
    add: Vec<i64>,
    shift: u32,
    n_levels: i64,
    signed: bool,
    /// Fused into a `RequantizedAdd` (on PULP-open) as `rqs1`, `rqs2` or `rqsOut`.
    fused_add: Option<&'static str>,
}

/// Every requantization of the export of `graph` for `target`, from the integer graph.
fn expected_requantizations(graph: &IntGraph, target: Target) -> Vec<Expected> {
    let mut all = Vec::new();
    for (l, layer) in graph.layers.iter().enumerate() {
        let p = prefix(l);
        let y = &graph.tensors[layer.output];
        let pulp = target == Target::PulpOpen;
        let narrow = pulp && y.bits < 8;
        let channels = y.shape.c;
        let r = &layer.requant;
        let k = |c: usize| r.multiplier_of(c);
        let mut push = |tensor: String, mul: Vec<i64>, add: Vec<i64>, shift, fused_add| {
            all.push(Expected {
                layer: layer.name.clone(),
                prefix: p.clone(),
                last: layer.output == graph.output,
                is_output: tensor == format!("{p}out") && layer.output == graph.output,
                tensor,
                mul,
                add,
                shift,
                n_levels: code_count(y.bits),
                signed: y.signed,
                fused_add,
            })
        };
        let identity = |n: usize| (vec![IDENTITY.0; n], vec![0; n], IDENTITY.1);
        let main = if narrow {
            format!("{p}rq")
        } else {
            format!("{p}out")
        };
        match &layer.op {
            IntOp::Conv { bias, .. } | IntOp::Linear { bias, .. } => {
                let add = (0..channels).map(|c| i64::from(bias[c]) * k(c)).collect();
                push(main, (0..channels).map(k).collect(), add, r.shift, None);
            }
            IntOp::AvgPool { .. } | IntOp::GlobalAvgPool => {
                push(
                    main,
                    (0..channels).map(k).collect(),
                    vec![0; channels],
                    r.shift,
                    None,
                );
            }
            IntOp::MaxPool { .. } | IntOp::GlobalMaxPool => {
                if !layer
                    .requant
                    .preserves(graph.tensors[layer.inputs[0]].range())
                {
                    push(
                        format!("{p}out"),
                        vec![k(0); channels],
                        vec![0; channels],
                        r.shift,
                        None,
                    );
                }
                continue;
            }
            IntOp::Add { rescale } => {
                for (i, r) in rescale.iter().enumerate() {
                    let role = ["rqs1", "rqs2"][i];
                    let n = if pulp && !narrow { 1 } else { channels };
                    let fused = (pulp && !narrow).then_some(role);
                    push(
                        format!("{p}in{i}"),
                        vec![r.multiplier[0]; n],
                        vec![0; n],
                        r.shift,
                        fused,
                    );
                    if narrow {
                        let (m, a, s) = identity(1);
                        push(format!("{p}in{i}_clamp"), m, a, s, Some(role));
                    }
                }
                let (m, a, s) = identity(if pulp { 1 } else { channels });
                push(main, m, a, s, pulp.then_some("rqsOut"));
            }
        }
        if narrow {
            let (m, a, s) = identity(channels);
            push(format!("{p}out"), m, a, s, None);
        }
    }
    all
}

/// Compares what Deeploy read for `target` (one target's part of `deeploy.json`) with the
/// integer graph: every requantization (multipliers, offsets, shift, levels, sign), every
/// weight tensor (values in the target's layout), the windows of convolutions and poolings, and
/// the input and output types.
fn check_target(graph: &IntGraph, target: Target, report: &TargetReport) -> TargetCheck {
    let mut check = TargetCheck {
        target,
        error: report.error.clone().filter(|_| !report.ok),
        ops: BTreeMap::new(),
        compared: 0,
        mismatches: Vec::new(),
    };
    if !report.ok {
        check
            .error
            .get_or_insert_with(|| "no error reported".into());
        return check;
    }
    for b in &report.layers {
        *check.ops.entry(b.op.clone()).or_default() += 1;
    }
    let channels_first = target == Target::Generic;
    let miss = &mut check.mismatches;
    check_known_ops(report, miss);
    let requantizations = check_requantizations(graph, target, report, miss);
    let weights = check_weights(graph, channels_first, report, miss);
    check_io(graph, channels_first, report, miss);
    check.compared = requantizations + weights;
    check
}

/// Every node Deeploy bound is one the export writes (or Deeploy's own lowering of one).
fn check_known_ops(report: &TargetReport, miss: &mut Vec<String>) {
    let known = [
        "Transpose",
        "Pad",
        "Flatten",
        "Reshape",
        "Conv",
        "RequantizedConv",
        "Gemm",
        "RequantizedGemm",
        "RequantShift",
        "MaxPool",
        "Add",
        "RequantizedAdd",
    ];
    for b in &report.layers {
        if !known.contains(&b.op.as_str()) {
            miss.push(format!(
                "Deeploy bound node {} as {}, which the export does not write",
                b.node, b.op
            ));
        }
    }
}

/// The rounding half Deeploy's fused kernels add to their offsets for `log2D` = `shift`.
fn deeploy_half(shift: i64) -> i64 {
    u32::try_from(shift).map_or(0, rounding_half)
}

/// Compares every requantization of the export with what Deeploy read, and checks that Deeploy
/// reads no other multipliers; returns how many were compared.
fn check_requantizations(
    graph: &IntGraph,
    target: Target,
    report: &TargetReport,
    miss: &mut Vec<String>,
) -> usize {
    let expected = expected_requantizations(graph, target);
    let mut used_mul = std::collections::BTreeSet::new();
    for e in &expected {
        match e.fused_add {
            Some(role) => miss.extend(check_fused_add(e, role, report)),
            None => miss.extend(check_requant_shift(e, report, &mut used_mul)),
        }
    }
    for b in &report.layers {
        for c in b.constants.values() {
            if c.name.ends_with("_mul_tensor") && !used_mul.contains(&c.name) {
                miss.push(format!(
                    "Deeploy node {} reads multipliers {} the integer graph does not have",
                    b.node, c.name
                ));
            }
        }
    }
    expected.len()
}

/// The requantization `e` as the `role` (`rqs1`, `rqs2`, `rqsOut`) of its layer's
/// `RequantizedAdd`: how it differs, if it does.
fn check_fused_add(e: &Expected, role: &str, report: &TargetReport) -> Option<String> {
    let what = format!("layer '{}', requantization {}", e.layer, e.tensor);
    // The RequantizedAdd of the layer writes its `rq` (or `out`) tensor.
    let add = report.layers.iter().find(|b| {
        b.op == "RequantizedAdd"
            && (b.writes(&format!("{}rq", e.prefix))
                || b.writes(&format!("{}out", e.prefix))
                || (e.last && b.outputs.iter().any(|o| o == "output_0")))
    });
    let Some(b) = add else {
        return Some(format!("{what}: no RequantizedAdd of its layer"));
    };
    let get = |key: &str| b.param(&format!("{role}_{key}"));
    let log2d = get("log2D").unwrap_or(-1);
    let found = (
        get("mul"),
        get("add").map(|a| a - deeploy_half(log2d)),
        log2d,
        get("n_levels"),
        get("signed"),
    );
    let wanted = (
        Some(e.mul[0]),
        Some(e.add[0]),
        i64::from(e.shift),
        Some(e.n_levels),
        Some(i64::from(e.signed)),
    );
    (found != wanted).then(|| {
        format!(
            "{what} ({role} of {}): Deeploy read (mul, add, log2D, n_levels, signed) {found:?}, the integer graph has {wanted:?}",
            b.node
        )
    })
}

/// The requantization `e` as a `RequantShift` (or the requantization of a fused
/// `RequantizedConv` / `RequantizedGemm`): how it differs, if it does. Records the multiplier
/// constant it reads in `used_mul`.
fn check_requant_shift(
    e: &Expected,
    report: &TargetReport,
    used_mul: &mut std::collections::BTreeSet<String>,
) -> Vec<String> {
    let what = format!("layer '{}', requantization {}", e.layer, e.tensor);
    let mul_name = format!("{}_mul", e.tensor);
    let Some(b) = report
        .layers
        .iter()
        .find(|b| b.constant(&mul_name).is_some())
    else {
        return vec![format!("{what}: Deeploy reads no multiplier {mul_name}")];
    };
    used_mul.insert(deeploy_name(&mul_name));
    let ints = |c: &Constant| c.values.iter().map(|&v| v as i64).collect::<Vec<_>>();
    let mul = b.constant(&mul_name).map(ints).unwrap_or_default();
    // Fused layers take the rounding half into their offsets.
    let log2d = b.param("log2D").unwrap_or(-1);
    let rounding = if b.op.starts_with("Requantized") {
        deeploy_half(log2d)
    } else {
        0
    };
    let add: Vec<i64> = b
        .constant(&format!("{}_add", e.tensor))
        .map(ints)
        .unwrap_or_default()
        .into_iter()
        .map(|a| a - rounding)
        .collect();
    let found = (mul, add, log2d, b.param("n_levels"), b.param("signed"));
    let wanted = (
        e.mul.clone(),
        e.add.clone(),
        i64::from(e.shift),
        Some(e.n_levels),
        Some(i64::from(e.signed)),
    );
    let mut misses = Vec::new();
    if found != wanted {
        misses.push(format!(
            "{what} ({} {}): Deeploy read (mul, add, log2D, n_levels, signed) {found:?}, the integer graph has {wanted:?}",
            b.op, b.node
        ));
    }
    if e.is_output && !b.outputs.iter().any(|o| o == "output_0") {
        misses.push(format!("{what}: not the network's output in Deeploy"));
    }
    misses
}

/// Compares the weights, windows and groups of every layer with what Deeploy read; returns how
/// many weight tensors were compared.
fn check_weights(
    graph: &IntGraph,
    channels_first: bool,
    report: &TargetReport,
    miss: &mut Vec<String>,
) -> usize {
    let mut compared = 0;
    for (l, layer) in graph.layers.iter().enumerate() {
        let p = prefix(l);
        let x = &graph.tensors[layer.inputs[0]];
        let (wanted, window, groups): (Vec<i64>, Option<Window>, usize) = match &layer.op {
            IntOp::Conv {
                weights,
                window,
                groups,
                ..
            } => {
                let w = if channels_first {
                    kernel_to_chw(
                        weights,
                        graph.tensors[layer.output].shape.c,
                        x.shape.c / groups,
                        *window,
                    )
                } else {
                    weights.clone()
                };
                (
                    w.into_iter().map(i64::from).collect(),
                    Some(*window),
                    *groups,
                )
            }
            IntOp::AvgPool { window } => (
                vec![1; x.shape.c * window.kernel[0] * window.kernel[1]],
                Some(*window),
                x.shape.c,
            ),
            IntOp::GlobalAvgPool => (
                vec![1; x.shape.elements() as usize],
                Some(x.global_window()),
                x.shape.c,
            ),
            IntOp::Linear { weights, bias, .. } => {
                let x_rank2 = x.shape.h * x.shape.w == 1;
                (
                    rows_to_chw(weights, bias.len(), x, x_rank2)
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                    None,
                    1,
                )
            }
            IntOp::MaxPool { .. } | IntOp::GlobalMaxPool => {
                check_max_pool(report, layer, x, &p, miss);
                continue;
            }
            IntOp::Add { .. } => continue,
        };
        compared += 1;
        let name = format!("{p}weight");
        let Some(b) = report.layers.iter().find(|b| b.constant(&name).is_some()) else {
            miss.push(format!(
                "layer '{}': Deeploy reads no weights {name}",
                layer.name
            ));
            continue;
        };
        let found: Vec<i64> = b
            .constant(&name)
            .map(|c| c.values.iter().map(|&v| v as i64).collect())
            .unwrap_or_default();
        if found != wanted {
            let first = found.iter().zip(&wanted).position(|(a, b)| a != b);
            miss.push(format!(
                "layer '{}': Deeploy's weights ({} {}) differ from the integer graph's ({} vs {} values, first difference at {first:?})",
                layer.name,
                b.op,
                b.node,
                found.len(),
                wanted.len()
            ));
        }
        if let Some(window) = window {
            check_window(&report.layers, miss, layer, b, window, groups);
        }
    }
    compared
}

/// The `MaxPool` Deeploy bound for the max pooling `layer` (input `x`, names prefixed `p`) has
/// its window.
fn check_max_pool(
    report: &TargetReport,
    layer: &IntLayer,
    x: &IntTensor,
    p: &str,
    miss: &mut Vec<String>,
) {
    let window = match &layer.op {
        IntOp::MaxPool { window } => *window,
        _ => x.global_window(),
    };
    match report
        .layers
        .iter()
        .find(|b| b.op == "MaxPool" && b.node.starts_with(p))
    {
        Some(b) => check_window(&report.layers, miss, layer, b, window, 1),
        None => miss.push(format!("layer '{}': Deeploy bound no MaxPool", layer.name)),
    }
}

/// The input holds bytes: uint8 on PULP-open, int8 shifted by 128 on Generic; the output has
/// the last layer's sign.
fn check_io(graph: &IntGraph, channels_first: bool, report: &TargetReport, miss: &mut Vec<String>) {
    let input = report
        .inputs
        .first()
        .map(|i| (i.type_name.as_str(), i.offset.unwrap_or(0)));
    let wanted_input = if channels_first {
        ("int8_t", 128)
    } else {
        ("uint8_t", 0)
    };
    if input != Some(wanted_input) {
        miss.push(format!(
            "Deeploy's input is {input:?}, not {wanted_input:?}"
        ));
    }
    let y = &graph.tensors[graph.output];
    let wanted_output = if y.signed || channels_first {
        "int8_t"
    } else {
        "uint8_t"
    };
    if report.outputs.first().map(|o| o.type_name.as_str()) != Some(wanted_output) {
        miss.push(format!("Deeploy's output is not {wanted_output}"));
    }
}

/// Checks the kernel, strides, pads and groups of the Deeploy node `b` against `window` and
/// `groups`; padding Deeploy moved into a `Pad` node in front of it counts.
fn check_window(
    bound: &[Bound],
    miss: &mut Vec<String>,
    layer: &IntLayer,
    b: &Bound,
    window: Window,
    groups: usize,
) {
    let op = &b.op;
    let k = |v: [usize; 2]| Some(vec![v[0] as i64, v[1] as i64]);
    let pad = window.padding;
    let pads = Some(vec![
        pad.top as i64,
        pad.left as i64,
        pad.bottom as i64,
        pad.right as i64,
    ]);
    // Generic extracts a convolution's padding into a Pad node in front of it.
    let padded_in_front = bound.iter().any(|p| {
        p.op == "Pad"
            && b.inputs.first().is_some_and(|i| p.outputs.contains(i))
            && p.param("pad_x") == Some(pad.top as i64)
            && p.param("pad_y") == Some(pad.left as i64)
    });
    let found_pads = b.params("pads");
    let zero = Some(vec![0i64; 4]);
    let pads_ok = found_pads == pads || (found_pads == zero && padded_in_front);
    let group = if op == "MaxPool" {
        Some(1)
    } else {
        b.param("group")
    };
    if b.params("kernel_shape") != k(window.kernel)
        || b.params("strides") != k(window.stride)
        || !pads_ok
        || group != Some(groups as i64)
    {
        miss.push(format!(
            "layer '{}': Deeploy's {op} {} has kernel {:?}, strides {:?}, pads {:?}, group {:?}; the integer graph has {window:?}, group {groups}",
            layer.name,
            b.node,
            b.params("kernel_shape"),
            b.params("strides"),
            found_pads,
            group
        ));
    }
}

/// What Deeploy's generation showed for every target.
pub struct DeeployCheck {
    /// The installed `deeploy-pulp`'s version.
    pub version: Option<String>,
    pub targets: Vec<TargetCheck>,
}

/// Runs `deeploy_generate.py` in `dir` (written by [`write()`]) with the project venv's Python,
/// which generates C for every target into `dir/TARGET/` and writes `dir/deeploy.json`, and
/// compares what Deeploy read with `graph`. `Ok(None)` when no Python with Deeploy is installed.
pub fn generate_and_check(
    graph: &IntGraph,
    dir: &Path,
) -> Result<Option<DeeployCheck>, DeployError> {
    use super::verify::io;
    let python = python();
    let has_deeploy = std::process::Command::new(&python)
        .args(["-c", "import Deeploy, onnx_graphsurgeon"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_deeploy {
        return Ok(None);
    }
    let script = dir.join("deeploy_generate.py");
    let run = std::process::Command::new(&python)
        .arg(&script)
        .arg(dir)
        .output()
        .map_err(io(&script))?;
    let json = dir.join("deeploy.json");
    let text = std::fs::read_to_string(&json).map_err(|e| {
        DeployError::Build(format!(
            "{} wrote no {} ({e}): {}",
            script.display(),
            json.display(),
            String::from_utf8_lossy(&run.stderr).trim()
        ))
    })?;
    let report: Report = serde_json::from_str(&text).map_err(|e| DeployError::Io {
        path: json.display().to_string(),
        message: format!("not Deeploy's report: {e}"),
    })?;
    let targets = Target::ALL
        .iter()
        .map(|&t| match report.targets.get(t.name()) {
            Some(r) => check_target(graph, t, r),
            None => TargetCheck {
                target: t,
                error: Some("not run".into()),
                ops: BTreeMap::new(),
                compared: 0,
                mismatches: Vec::new(),
            },
        })
        .collect();
    Ok(Some(DeeployCheck {
        version: report.deeploy_pulp,
        targets,
    }))
}
