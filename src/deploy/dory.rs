//! DORY export of an integer graph, in the form DORY's `Quantlab` frontend reads (checked with
//! DORY be3d6dd, `network_generate.py Quantlab PULP.GAP8 config.json`):
//!
//! - activation tensors named by decimal integers that increase in topological order (DORY
//!   orders and drops the nodes it neglects, `Floor` and `Flatten`, by `int(name)`); the input
//!   is `input`; constants and nodes carry neutral names (`l3_k`), the layer's own name is the
//!   node's `doc_string` only;
//! - `Conv` and `MatMul` (`Gemm` needs a bias input before opset 11) without a bias, with
//!   `weight_bits`; `MatMul` weights `[in, out]` (DORY infers the layout from the shape);
//! - each requantization as `Mul` by `k` -> `Add` of `l = bias * k + 2^(d-1)` -> `Div` by 2^d ->
//!   `Floor` -> `Clip`, with `k` and `l` per output channel (`[C, 1, 1]`, or `[C]` after a
//!   `MatMul`), even when one value serves every channel (a scalar makes DORY build a `Requant`
//!   node its GAP8 rules cannot merge), and the `Clip` over the output type's whole range (DORY
//!   keeps only its sign and `out_bits`);
//! - a residual add as one `Add` with QuantLab's attributes `in{1,2}_{mul,add,shift,n_levels,rq}`
//!   and `out_{mul,add,shift,n_levels,rq}` (each input rescaled and clamped, then the sum);
//! - average pooling as a depthwise `Conv` with weights 1 and its requantization; max pooling
//!   alone, refused when its requantization would change a value (DORY's kernel drops it);
//! - `config.json` for `network_generate.py` (`BNRelu_bits` 64: DORY's constant and product
//!   width, which holds every product the integerizer proves), and DORY's golden files:
//!   `input.txt` and `out_layer{i}.txt`, one integer per line in HWC order, after a `#` line.
//!
//! Read as integers, the file computes exactly what the golden model computes.

use super::DeployError;
use super::integerize::{IntGraph, IntLayer, IntOp, IntTensor};
use super::layout::{kernel_to_chw, rows_to_chw};
use crate::graph::Window;
use crate::graph::onnx::export::{
    float_attr, int_attr, ints_attr, onnx_dims, qsearch_model, value_info, window_attributes,
};
use crate::graph::onnx::proto::{
    AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto, tensor_proto::DataType,
};
use crate::graph::onnx::tensor::encode_doubles;
use crate::quant::{Requant, code_count, rounding_half};
use prost::Message;

/// Opset 10: the last whose `Clip` takes `min`/`max` as attributes, which DORY's frontend reads.
const OPSET: i64 = 10;

/// DORY's constant and requantization width (`BNRelu_bits`) the export is written for.
pub(crate) const BNRELU_BITS: u32 = 64;

/// L2 bytes the written `config.json` reserves for code; edit it there for a larger program.
const DORY_CODE_RESERVED_BYTES: u32 = 120_000;

/// Doubles hold every integer up to 2^53 exactly; the file's constants must stay within.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// The exported model.
pub struct DoryExport {
    pub bytes: Vec<u8>,
    /// The activation tensor names of the layers' outputs, in layer order.
    pub layer_outputs: Vec<String>,
}

/// Exports `graph` for DORY (NCHW, every tensor double, so that all integers, up to the 31-bit
/// multipliers and the 2^shift divisors, are exact). An error says why DORY cannot run it.
pub fn export(graph: &IntGraph) -> Result<DoryExport, DeployError> {
    let mut out = Writer {
        nodes: Vec::new(),
        initializers: Vec::new(),
        value_info: Vec::new(),
        rank2: vec![false; graph.tensors.len()],
        names: vec![String::new(); graph.tensors.len()],
        next_name: 1,
    };
    out.names[graph.input] = "input".into();
    for (l, layer) in graph.layers.iter().enumerate() {
        out.layer(graph, l, layer)?;
    }
    let io = |t: usize| {
        value_info(
            &out.names[t],
            &onnx_dims(graph.tensors[t].shape, out.rank2[t]),
            DataType::Double,
        )
    };
    let (input, output) = (io(graph.input), io(graph.output));
    let layer_outputs = graph
        .layers
        .iter()
        .map(|l| out.names[l.output].clone())
        .collect();
    let model = qsearch_model(
        5,
        OPSET,
        Some(
            "Integer network for DORY: every tensor holds integers (inputs are bytes 0..255, NCHW)"
                .into(),
        ),
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
    Ok(DoryExport {
        bytes: model.encode_to_vec(),
        layer_outputs,
    })
}

struct Writer {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    value_info: Vec<ValueInfoProto>,
    /// Whether each buffer is `[1, N]` (a linear layer's output) rather than `[1, C, H, W]`.
    rank2: Vec<bool>,
    /// Each buffer's tensor name.
    names: Vec<String>,
    next_name: usize,
}

/// A node's inputs: activations (by name) and constants (name, dims, values).
struct NodeSpec<'a> {
    layer: usize,
    doc: &'a str,
    op_type: &'a str,
    inputs: Vec<String>,
    attributes: Vec<AttributeProto>,
    /// The output's shape in the file.
    dims: Vec<i64>,
}

/// A layer being written: its index, name, input and output.
struct LayerAt<'a> {
    l: usize,
    /// The layer's own name (its nodes' `doc_string`).
    name: &'a str,
    x: &'a IntTensor,
    /// The file's name of the input tensor, and whether it is `[1, N]`.
    x_name: String,
    x_rank2: bool,
    y: &'a IntTensor,
    /// The output's shape in the file.
    dims: Vec<i64>,
}

impl LayerAt<'_> {
    /// A node of the layer computing its output.
    fn spec<'s>(
        &'s self,
        op_type: &'s str,
        inputs: Vec<String>,
        attributes: Vec<AttributeProto>,
    ) -> NodeSpec<'s> {
        NodeSpec {
            layer: self.l,
            doc: self.name,
            op_type,
            inputs,
            attributes,
            dims: self.dims.clone(),
        }
    }

    /// The export's refusal of the layer, saying `why`.
    fn refuse(&self, why: String) -> DeployError {
        DeployError::Input(format!("DORY export: layer '{}' {why}", self.name))
    }
}

impl Writer {
    fn constant(
        &mut self,
        name: String,
        dims: &[i64],
        values: &[f64],
    ) -> Result<String, DeployError> {
        if let Some(v) = values.iter().find(|v| v.abs() > EXACT) {
            return Err(DeployError::Input(format!(
                "DORY export: constant {name} holds {v}, beyond 2^53 where the file's doubles stop \
                 being exact; deploy with --requant-bits 32"
            )));
        }
        self.initializers.push(encode_doubles(&name, dims, values));
        Ok(name)
    }

    /// Appends a node whose output gets the next integer name; returns that name.
    fn node(&mut self, spec: NodeSpec) -> String {
        let output = self.next_name.to_string();
        self.next_name += 1;
        self.value_info
            .push(value_info(&output, &spec.dims, DataType::Double));
        self.nodes.push(NodeProto {
            name: Some(format!(
                "l{}_{}_{}",
                spec.layer,
                spec.op_type.to_lowercase(),
                output
            )),
            op_type: Some(spec.op_type.into()),
            input: spec.inputs,
            output: vec![output.clone()],
            attribute: spec.attributes,
            doc_string: Some(spec.doc.to_string()),
            ..Default::default()
        });
        output
    }

    fn layer(&mut self, graph: &IntGraph, l: usize, layer: &IntLayer) -> Result<(), DeployError> {
        let x_rank2 = self.rank2[layer.inputs[0]];
        let y = &graph.tensors[layer.output];
        let rank2 = matches!(layer.op, IntOp::Linear { .. }) || x_rank2;
        let at = LayerAt {
            l,
            name: &layer.name,
            x: &graph.tensors[layer.inputs[0]],
            x_name: self.names[layer.inputs[0]].clone(),
            x_rank2,
            y,
            dims: onnx_dims(y.shape, rank2),
        };
        if x_rank2 && !matches!(layer.op, IntOp::Linear { .. } | IntOp::Add { .. }) {
            return Err(at.refuse(
                "follows a linear layer; only linear layers and residual adds can".into(),
            ));
        }
        if (layer.requant.lo, layer.requant.hi) != y.range() {
            return Err(at.refuse(format!(
                "clamps to [{}, {}], but DORY clamps to the whole range of its {}-bit output",
                layer.requant.lo, layer.requant.hi, y.bits
            )));
        }
        let widen = |bias: &[i32]| bias.iter().map(|&b| i64::from(b)).collect::<Vec<i64>>();
        let (acc, bias) = match &layer.op {
            IntOp::Conv {
                weights,
                bias,
                weight_bits,
                window,
                groups,
            } => (
                self.conv(&at, weights, *weight_bits, *window, *groups)?,
                widen(bias),
            ),
            IntOp::Linear {
                weights,
                bias,
                weight_bits,
            } => (
                self.matmul(&at, weights, *weight_bits, bias.len())?,
                widen(bias),
            ),
            IntOp::MaxPool { .. } | IntOp::GlobalMaxPool => {
                self.names[layer.output] = self.max_pool(&at, layer)?;
                return Ok(());
            }
            IntOp::AvgPool { window } => (self.window_sum(&at, *window)?, vec![0; y.shape.c]),
            IntOp::GlobalAvgPool => (
                self.window_sum(&at, at.x.global_window())?,
                vec![0; y.shape.c],
            ),
            IntOp::Add { rescale } => {
                if self.rank2[layer.inputs[1]] != x_rank2 {
                    return Err(at.refuse("adds a flattened and a 4-D tensor".into()));
                }
                self.names[layer.output] = self.residual_add(&at, layer, rescale);
                self.rank2[layer.output] = x_rank2;
                return Ok(());
            }
        };
        self.rank2[layer.output] = rank2;
        let out = self.requant(&at, layer, acc, &bias, rank2)?;
        self.names[layer.output] = out;
        Ok(())
    }

    /// `Conv` without bias: integer weights `[out][in/groups][kh][kw]`.
    fn conv(
        &mut self,
        at: &LayerAt,
        weights: &[i8],
        weight_bits: u32,
        window: Window,
        groups: usize,
    ) -> Result<String, DeployError> {
        let (l, y) = (at.l, at.y);
        let cin_g = at.x.shape.c / groups;
        let w = doubles(&kernel_to_chw(weights, y.shape.c, cin_g, window));
        let [kh, kw] = window.kernel;
        let wdims = [y.shape.c as i64, cin_g as i64, kh as i64, kw as i64];
        let w = self.constant(format!("l{l}_weight"), &wdims, &w)?;
        let mut attrs = window_attributes(window);
        attrs.extend([
            int_attr("group", groups as i64),
            ints_attr("dilations", &[1, 1]),
            int_attr("weight_bits", i64::from(weight_bits)),
        ]);
        Ok(self.node(at.spec("Conv", vec![at.x_name.clone(), w], attrs)))
    }

    /// `Flatten` (unless the input is flat already) and `MatMul` without bias: weights
    /// `[in][out]`, rows in CHW order.
    fn matmul(
        &mut self,
        at: &LayerAt,
        weights: &[i8],
        weight_bits: u32,
        n_out: usize,
    ) -> Result<String, DeployError> {
        let l = at.l;
        let mut input = at.x_name.clone();
        if !at.x_rank2 {
            let flat = vec![1, at.x.shape.elements() as i64];
            input = self.node(NodeSpec {
                dims: flat,
                ..at.spec("Flatten", vec![input], vec![int_attr("axis", 1)])
            });
        }
        let n_in = weights.len() / n_out;
        let chw = rows_to_chw(weights, n_out, at.x, at.x_rank2);
        let w = in_out_rows(&doubles(&chw), n_out);
        let w = self.constant(format!("l{l}_weight"), &[n_in as i64, n_out as i64], &w)?;
        let attrs = vec![int_attr("weight_bits", i64::from(weight_bits))];
        Ok(self.node(at.spec("MatMul", vec![input, w], attrs)))
    }

    /// `MaxPool` (or `GlobalMaxPool`) alone: DORY's kernel drops a requantization, so one that
    /// would change a value is refused.
    fn max_pool(&mut self, at: &LayerAt, layer: &IntLayer) -> Result<String, DeployError> {
        if !layer.requant.preserves(at.x.range()) {
            return Err(at.refuse(
                "rescales its maximum (its input and output scales differ); DORY's max \
                 pooling drops a requantization"
                    .into(),
            ));
        }
        let (op_type, attrs) = match &layer.op {
            IntOp::MaxPool { window } => ("MaxPool", window_attributes(*window)),
            _ => ("GlobalMaxPool", vec![]),
        };
        Ok(self.node(at.spec(op_type, vec![at.x_name.clone()], attrs)))
    }

    /// One `Add` with QuantLab's attributes: each input's rescaling, the identity on the sum,
    /// and the output's sign.
    fn residual_add(&mut self, at: &LayerAt, layer: &IntLayer, rescale: &[Requant; 2]) -> String {
        let y = at.y;
        let other = self.names[layer.inputs[1]].clone();
        let mut attrs = Vec::new();
        for (i, r) in rescale.iter().enumerate() {
            attrs.extend(quantlab_requant(&format!("in{}", i + 1), r, y));
        }
        let identity = Requant {
            multiplier: vec![1],
            shift: 0,
            lo: layer.requant.lo,
            hi: layer.requant.hi,
        };
        attrs.extend(quantlab_requant("out", &identity, y));
        attrs.push(int_attr("out_signed", i64::from(y.signed)));
        attrs.push(int_attr("add_bits", i64::from(BNRELU_BITS)));
        self.node(at.spec("Add", vec![at.x_name.clone(), other], attrs))
    }

    /// A window's sum as a depthwise convolution with weights 1 (padding adds zeros), exact in
    /// integers; DORY runs it as a depthwise layer.
    fn window_sum(&mut self, at: &LayerAt, window: Window) -> Result<String, DeployError> {
        let [kh, kw] = window.kernel;
        let c = at.x.shape.c;
        let ones = self.constant(
            format!("l{}_ones", at.l),
            &[c as i64, 1, kh as i64, kw as i64],
            &vec![1.0; c * kh * kw],
        )?;
        let mut attrs = window_attributes(window);
        attrs.extend([
            int_attr("group", c as i64),
            ints_attr("dilations", &[1, 1]),
            int_attr("weight_bits", 2),
        ]);
        Ok(self.node(at.spec("Conv", vec![at.x_name.clone(), ones], attrs)))
    }

    /// `Clip(Floor((k * acc + l) / 2^shift))` with `l = bias * k + 2^(shift-1)` per channel: the
    /// requantization of docs/integer-semantics.md with the bias folded in, as QuantLab writes
    /// it; `k` and `l` are `[C]` after a `MatMul` (`rank2`), else `[C, 1, 1]`. Returns the
    /// output tensor's name.
    fn requant(
        &mut self,
        at: &LayerAt,
        layer: &IntLayer,
        acc: String,
        bias: &[i64],
        rank2: bool,
    ) -> Result<String, DeployError> {
        let (l, y) = (at.l, at.y);
        let r = &layer.requant;
        let channels = y.shape.c.max(bias.len());
        let cdims: Vec<i64> = if rank2 {
            vec![channels as i64]
        } else {
            vec![channels as i64, 1, 1]
        };
        let k: Vec<f64> = (0..channels).map(|c| r.multiplier_of(c) as f64).collect();
        let half = rounding_half(r.shift);
        let offsets: Vec<f64> = (0..channels)
            .map(|c| (bias[c] as f64) * k[c] + half as f64)
            .collect();
        let k = self.constant(format!("l{l}_k"), &cdims, &k)?;
        let offsets = self.constant(format!("l{l}_l"), &cdims, &offsets)?;
        let divisor = self.constant(format!("l{l}_div"), &[], &[2f64.powi(r.shift as i32)])?;
        let (lo, hi) = y.range();
        let mut step = |op_type: &'static str, inputs: Vec<String>, attributes| {
            self.node(at.spec(op_type, inputs, attributes))
        };
        let width = i64::from(BNRELU_BITS);
        let scaled = step("Mul", vec![acc, k], vec![int_attr("mult_bits", width)]);
        let shifted = step(
            "Add",
            vec![scaled, offsets],
            vec![int_attr("add_bits", width)],
        );
        let divided = step("Div", vec![shifted, divisor], vec![]);
        let floored = step("Floor", vec![divided], vec![]);
        Ok(step(
            "Clip",
            vec![floored],
            vec![
                float_attr("min", lo as f32),
                float_attr("max", hi as f32),
                int_attr("out_bits", i64::from(y.bits)),
            ],
        ))
    }
}

/// QuantLab's attributes of one requantization of a residual add: `PREFIX_mul`, `_add` (the
/// rounding half), `_shift`, `_n_levels`, `_rq`.
fn quantlab_requant(prefix: &str, r: &Requant, y: &IntTensor) -> [AttributeProto; 5] {
    let half = rounding_half(r.shift);
    [
        int_attr(&format!("{prefix}_mul"), r.multiplier[0]),
        int_attr(&format!("{prefix}_add"), half),
        int_attr(&format!("{prefix}_shift"), i64::from(r.shift)),
        int_attr(&format!("{prefix}_n_levels"), code_count(y.bits)),
        int_attr(&format!("{prefix}_rq"), 1),
    ]
}

/// Weights as the file's doubles.
fn doubles(w: &[i8]) -> Vec<f64> {
    w.iter().map(|&v| f64::from(v)).collect()
}

/// `[out][in]` rows as `[in][out]`.
fn in_out_rows(w: &[f64], rows: usize) -> Vec<f64> {
    let cols = w.len() / rows;
    let mut out = vec![0.0; w.len()];
    for o in 0..rows {
        for i in 0..cols {
            out[i * rows + o] = w[o * cols + i];
        }
    }
    out
}

/// The checker that runs next to the export (`check_dory_onnx.py`, written into its folder).
pub(crate) const CHECK_SCRIPT: &str = include_str!("dory_check.py");

/// What the independent check of an export showed.
pub struct DoryCheck {
    /// Images whose every layer output, read from the ONNX file, equals the golden model's.
    pub exact: usize,
    pub total: usize,
    /// The checker's summary line.
    pub summary: String,
    pub first_mismatch: Option<String>,
}

/// The Python interpreter that has Debian's python3-onnx (`QSEARCH_PYTHON` overrides it).
fn python() -> String {
    std::env::var("QSEARCH_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// Writes `network.onnx` and its checker into `dir`, then runs the checker on `images` (bytes,
/// HWC) and compares every layer's output with the golden model's. `Ok(None)` when no Python
/// with the `onnx` package is installed.
pub fn write_and_check(
    graph: &IntGraph,
    export: &DoryExport,
    images: &[Vec<u8>],
    dir: &std::path::Path,
) -> Result<Option<DoryCheck>, DeployError> {
    use super::verify::{compare_with_golden, io};
    use crate::results::write_atomic;
    let model = dir.join("network.onnx");
    write_atomic(&model, &export.bytes).map_err(io(&model))?;
    write_dory_inputs(graph, images.first().map(Vec::as_slice), dir)?;
    let script = dir.join("check_dory_onnx.py");
    write_atomic(&script, CHECK_SCRIPT.as_bytes()).map_err(io(&script))?;
    let inputs = dir.join("images.bin");
    write_atomic(&inputs, &images.concat()).map_err(io(&inputs))?;
    let outputs = dir.join("outputs.bin");
    let python = python();
    let has_onnx = std::process::Command::new(&python)
        .args(["-c", "import onnx, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_onnx {
        return Ok(None);
    }
    let run = std::process::Command::new(&python)
        .arg(&script)
        .arg(&model)
        .arg(&inputs)
        .arg(&outputs)
        .args(&export.layer_outputs)
        .output()
        .map_err(io(&script))?;
    if !run.status.success() {
        return Err(DeployError::Build(format!(
            "{} rejected {}: {}",
            script.display(),
            model.display(),
            String::from_utf8_lossy(&run.stderr).trim()
        )));
    }
    // The checker writes every layer's output as int32 in ONNX's CHW order.
    let (exact, first_mismatch) = compare_with_golden(graph, images, &outputs, |values, t| {
        hwc_to_chw(values, t)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    })?;
    Ok(Some(DoryCheck {
        exact,
        total: images.len(),
        summary: String::from_utf8_lossy(&run.stdout).trim().to_string(),
        first_mismatch,
    }))
}

/// What `network_generate.py` reads beside the model: `config.json` and the golden files of
/// `image` (the first verify image), which DORY turns into its checksums.
fn write_dory_inputs(
    graph: &IntGraph,
    image: Option<&[u8]>,
    dir: &std::path::Path,
) -> Result<(), DeployError> {
    use super::verify::io;
    use crate::results::write_atomic;
    let input = &graph.tensors[graph.input];
    let config = serde_json::json!({
        "onnx_file": "network.onnx",
        "BNRelu_bits": BNRELU_BITS,
        "input_bits": input.bits,
        "input_signed": input.signed,
        // L2 bytes DORY keeps for the application's code (its examples use 92 to 352 kB).
        "code reserved space": DORY_CODE_RESERVED_BYTES,
    });
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config).unwrap_or_default();
    write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
    let Some(image) = image else {
        return Ok(());
    };
    let golden_file = |values: &[i32], what: &str| {
        let mut text = format!("# {what}, HWC, one value per line\n");
        for v in values {
            text.push_str(&v.to_string());
            text.push('\n');
        }
        text
    };
    let buffers = super::golden::run(graph, image);
    let path = dir.join("input.txt");
    let text = golden_file(&buffers[graph.input], "input");
    write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
    for (i, layer) in graph.layers.iter().enumerate() {
        let path = dir.join(format!("out_layer{i}.txt"));
        let text = golden_file(&buffers[layer.output], &format!("output of layer {i}"));
        write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
    }
    Ok(())
}

/// A buffer's values from HWC order to CHW (ONNX's).
fn hwc_to_chw(values: &[i32], t: &IntTensor) -> Vec<i32> {
    let (c, hw) = (t.shape.c, t.shape.h * t.shape.w);
    let mut out = vec![0; values.len()];
    for p in 0..hw {
        for ch in 0..c {
            out[ch * hw + p] = values[p * c + ch];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Shape;

    fn tensor(bits: u32, signed: bool) -> IntTensor {
        IntTensor {
            name: "t".into(),
            shape: Shape { c: 2, h: 2, w: 2 },
            bits,
            signed,
            scale: 1.0,
        }
    }

    #[test]
    fn residual_add_attributes_are_quantlabs() {
        let r = Requant {
            multiplier: vec![3],
            shift: 2,
            lo: -8,
            hi: 7,
        };
        let attrs = quantlab_requant("in1", &r, &tensor(4, true));
        let named: Vec<(String, i64)> = attrs
            .iter()
            .map(|a| (a.name.clone().unwrap_or_default(), a.i.unwrap_or_default()))
            .collect();
        assert_eq!(
            named,
            [
                ("in1_mul".into(), 3),
                ("in1_add".into(), 2),
                ("in1_shift".into(), 2),
                ("in1_n_levels".into(), 16),
                ("in1_rq".into(), 1)
            ]
        );
    }

    #[test]
    fn linear_weights_are_written_in_by_out() {
        assert_eq!(
            in_out_rows(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
