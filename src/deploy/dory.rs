//! DORY-compatible ONNX export of an integer graph, in the conventions of QuantLab's DORY
//! annotator: integer-valued tensors, `Conv`/`Gemm` with `weight_bits` and `bias_bits`, and each
//! requantization as `Mul` (`mult_bits`) -> `Add` (`add_bits`) -> `Div` by 2^shift -> `Floor`
//! -> `Clip` (`out_bits`). Read as integers, the file computes exactly what the golden model
//! computes; `docs/integer-semantics.md` describes the mapping.

use super::DeployError;
use super::integerize::{IntGraph, IntLayer, IntOp, IntTensor};
use crate::graph::Window;
use crate::graph::onnx::export::{
    float_attr, int_attr, ints_attr, onnx_dims, value_info, window_attributes,
};
use crate::graph::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    tensor_proto::DataType,
};
use crate::graph::onnx::tensor::encode_doubles;
use prost::Message;

/// Opset 10: the last whose `Clip` takes `min`/`max` as attributes, which DORY's frontend reads.
const OPSET: i64 = 10;

/// The exported model and what a DORY user must know about it.
pub struct DoryExport {
    pub bytes: Vec<u8>,
    /// Layers whose requantization product needs more than 32 bits (PULP-NN computes it in 32).
    pub wide_layers: Vec<String>,
}

/// Exports `graph` as a DORY-compatible ONNX model (NCHW, every tensor double so that all
/// integers, up to the 31-bit multipliers and the 2^shift divisors, are exact).
pub fn export(graph: &IntGraph) -> Result<DoryExport, DeployError> {
    let mut out = Writer {
        nodes: Vec::new(),
        initializers: Vec::new(),
        rank2: vec![false; graph.tensors.len()],
    };
    let mut wide_layers = Vec::new();
    for layer in &graph.layers {
        out.layer(graph, layer)?;
        if layer.product_bits() > 32 {
            wide_layers.push(layer.name.clone());
        }
    }
    let io = |t: usize| {
        value_info(
            &graph.tensors[t].name,
            &onnx_dims(graph.tensors[t].shape, out.rank2[t]),
            DataType::Double,
        )
    };
    let model = ModelProto {
        ir_version: Some(5),
        producer_name: Some("qsearch".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(
            "Integer network for DORY: every tensor holds integers (inputs are bytes 0..255, NCHW)"
                .into(),
        ),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        graph: Some(GraphProto {
            name: Some(graph.name.clone()),
            input: vec![io(graph.input)],
            output: vec![io(graph.output)],
            node: out.nodes,
            initializer: out.initializers,
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(DoryExport {
        bytes: model.encode_to_vec(),
        wide_layers,
    })
}

struct Writer {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Whether each buffer is `[1, N]` (a linear layer's output) rather than `[1, C, H, W]`.
    rank2: Vec<bool>,
}

impl Writer {
    fn constant(&mut self, name: String, dims: &[i64], values: &[f64]) -> String {
        self.initializers.push(encode_doubles(&name, dims, values));
        name
    }

    fn node(
        &mut self,
        name: String,
        op_type: &str,
        inputs: Vec<String>,
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.output_node(name.clone(), op_type, inputs, attributes, name)
    }

    fn output_node(
        &mut self,
        name: String,
        op_type: &str,
        inputs: Vec<String>,
        attributes: Vec<AttributeProto>,
        output: String,
    ) -> String {
        self.nodes.push(NodeProto {
            name: Some(name),
            op_type: Some(op_type.into()),
            input: inputs,
            output: vec![output.clone()],
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    /// A per-channel constant broadcast over a `[1, C, H, W]` or `[1, C]` tensor (a scalar when
    /// there is one value).
    fn per_channel(&mut self, name: String, values: &[i64], rank2: bool) -> String {
        let n = values.len() as i64;
        let dims: &[i64] = match (values.len(), rank2) {
            (1, _) => &[],
            (_, true) => &[1, n],
            (_, false) => &[1, n, 1, 1],
        };
        let values: Vec<f64> = values.iter().map(|&v| v as f64).collect();
        self.constant(name, dims, &values)
    }

    fn layer(&mut self, graph: &IntGraph, layer: &IntLayer) -> Result<(), DeployError> {
        let name = &layer.name;
        let x = &graph.tensors[layer.inputs[0]];
        let x_rank2 = self.rank2[layer.inputs[0]];
        let conv_only = |what: &str| {
            if x_rank2 {
                Err(DeployError::Input(format!(
                    "DORY export: layer '{name}' ({what}) follows a linear layer; only linear \
                     layers and residual adds can"
                )))
            } else {
                Ok(())
            }
        };
        let mut rank2 = x_rank2;
        let acc = match &layer.op {
            IntOp::Conv {
                weights,
                bias,
                weight_bits,
                window,
                groups,
            } => {
                conv_only("a convolution")?;
                let out_c = graph.tensors[layer.output].shape.c;
                let cin_g = x.shape.c / groups;
                let w = hwc_to_chw_kernel(weights, out_c, cin_g, *window);
                let [kh, kw] = window.kernel;
                let dims = [out_c as i64, cin_g as i64, kh as i64, kw as i64];
                let w = self.constant(format!("{name}.weight"), &dims, &w);
                let b = self.bias(name, bias);
                let mut attrs = window_attributes(*window);
                attrs.extend([
                    int_attr("group", *groups as i64),
                    ints_attr("dilations", &[1, 1]),
                ]);
                attrs.extend(linear_bits(*weight_bits));
                self.node(
                    format!("{name}.conv"),
                    "Conv",
                    vec![x.name.clone(), w, b],
                    attrs,
                )
            }
            IntOp::Linear {
                weights,
                bias,
                weight_bits,
            } => {
                let mut input = x.name.clone();
                if !x_rank2 {
                    input = self.node(
                        format!("{name}.flatten"),
                        "Flatten",
                        vec![input],
                        vec![int_attr("axis", 1)],
                    );
                }
                let n_out = bias.len();
                let w = hwc_to_chw_rows(weights, n_out, x, x_rank2);
                let w = self.constant(
                    format!("{name}.weight"),
                    &[n_out as i64, (weights.len() / n_out) as i64],
                    &w,
                );
                let b = self.bias(name, bias);
                rank2 = true;
                let mut attrs = vec![int_attr("transB", 1)];
                attrs.extend(linear_bits(*weight_bits));
                self.node(format!("{name}.gemm"), "Gemm", vec![input, w, b], attrs)
            }
            IntOp::MaxPool { window } => {
                conv_only("a pooling")?;
                self.node(
                    format!("{name}.maxpool"),
                    "MaxPool",
                    vec![x.name.clone()],
                    window_attributes(*window),
                )
            }
            IntOp::GlobalMaxPool => {
                conv_only("a pooling")?;
                self.node(
                    format!("{name}.maxpool"),
                    "GlobalMaxPool",
                    vec![x.name.clone()],
                    vec![],
                )
            }
            IntOp::AvgPool { window } => {
                conv_only("a pooling")?;
                self.window_sum(name, x, *window)
            }
            IntOp::GlobalAvgPool => {
                conv_only("a pooling")?;
                let window = Window {
                    kernel: [x.shape.h, x.shape.w],
                    stride: [1, 1],
                    padding: Default::default(),
                };
                self.window_sum(name, x, window)
            }
            IntOp::Add { input_multiplier } => {
                let other = &graph.tensors[layer.inputs[1]];
                if self.rank2[layer.inputs[1]] != x_rank2 {
                    return Err(DeployError::Input(format!(
                        "DORY export: residual add '{name}' adds a flattened and a 4-D tensor"
                    )));
                }
                let mut terms = Vec::new();
                for (t, (input, k)) in [(x, input_multiplier[0]), (other, input_multiplier[1])]
                    .into_iter()
                    .enumerate()
                {
                    let k = self.per_channel(format!("{name}.input{t}_multiplier"), &[k], false);
                    terms.push(self.node(
                        format!("{name}.input{t}"),
                        "Mul",
                        vec![input.name.clone(), k],
                        vec![int_attr("mult_bits", requant_width(layer))],
                    ));
                }
                self.node(
                    format!("{name}.add"),
                    "Add",
                    terms,
                    vec![int_attr("add_bits", requant_width(layer))],
                )
            }
        };
        self.rank2[layer.output] = rank2;
        self.requant(layer, &graph.tensors[layer.output], acc, rank2);
        Ok(())
    }

    fn bias(&mut self, name: &str, bias: &[i32]) -> String {
        let b: Vec<f64> = bias.iter().map(|&v| f64::from(v)).collect();
        self.constant(format!("{name}.bias"), &[bias.len() as i64], &b)
    }

    /// A window's sum as a depthwise convolution with weights 1 (padding adds zeros), exact in
    /// integers; DORY runs it as a depthwise layer.
    fn window_sum(&mut self, name: &str, x: &IntTensor, window: Window) -> String {
        let [kh, kw] = window.kernel;
        let c = x.shape.c;
        let ones = self.constant(
            format!("{name}.ones"),
            &[c as i64, 1, kh as i64, kw as i64],
            &vec![1.0; c * kh * kw],
        );
        let mut attrs = window_attributes(window);
        attrs.extend([
            int_attr("group", c as i64),
            ints_attr("dilations", &[1, 1]),
            int_attr("weight_bits", 2),
        ]);
        self.node(
            format!("{name}.sum"),
            "Conv",
            vec![x.name.clone(), ones],
            attrs,
        )
    }

    /// `Clip(Floor((k * acc + 2^(shift-1)) / 2^shift), lo, hi)`, the requantization of
    /// docs/integer-semantics.md, writing the layer's output buffer.
    fn requant(&mut self, layer: &IntLayer, output: &IntTensor, acc: String, rank2: bool) {
        let name = &layer.name;
        let r = &layer.requant;
        let bits = requant_width(layer);
        let k = self.per_channel(format!("{name}.multiplier"), &r.multiplier, rank2);
        let scaled = self.node(
            format!("{name}.mul"),
            "Mul",
            vec![acc, k],
            vec![int_attr("mult_bits", bits)],
        );
        let half = self.constant(
            format!("{name}.half"),
            &[],
            &[2f64.powi(r.shift as i32 - 1)],
        );
        let rounded = self.node(
            format!("{name}.round"),
            "Add",
            vec![scaled, half],
            vec![int_attr("add_bits", bits)],
        );
        let divisor = self.constant(format!("{name}.divisor"), &[], &[2f64.powi(r.shift as i32)]);
        let divided = self.node(format!("{name}.div"), "Div", vec![rounded, divisor], vec![]);
        let floored = self.node(format!("{name}.floor"), "Floor", vec![divided], vec![]);
        self.output_node(
            format!("{name}.clip"),
            "Clip",
            vec![floored],
            vec![
                float_attr("min", r.lo as f32),
                float_attr("max", r.hi as f32),
                int_attr("out_bits", i64::from(output.bits)),
            ],
            output.name.clone(),
        );
    }
}

/// The integer width (32 or 64) the layer's requantization products provably fit.
fn requant_width(layer: &IntLayer) -> i64 {
    i64::from(layer.product_bits())
}

fn linear_bits(weight_bits: u32) -> [AttributeProto; 2] {
    [
        int_attr("weight_bits", i64::from(weight_bits)),
        int_attr("bias_bits", 32),
    ]
}

/// Convolution weights from `[out][kh][kw][in]` (the integer graph's) to ONNX's
/// `[out][in][kh][kw]`.
fn hwc_to_chw_kernel(w: &[i8], out_c: usize, cin: usize, window: Window) -> Vec<f64> {
    let area = window.kernel[0] * window.kernel[1];
    let row = area * cin;
    let mut out = vec![0.0; w.len()];
    for o in 0..out_c {
        for k in 0..area {
            for c in 0..cin {
                out[o * row + c * area + k] = f64::from(w[o * row + k * cin + c]);
            }
        }
    }
    out
}

/// Linear weights whose inputs follow the HWC order of `x` (the integer graph's), reordered
/// for the CHW order in which ONNX's `Flatten` lays out a `[1, C, H, W]` tensor.
fn hwc_to_chw_rows(w: &[i8], rows: usize, x: &IntTensor, x_rank2: bool) -> Vec<f64> {
    let (c, hw) = (x.shape.c, x.shape.h * x.shape.w);
    let row = w.len() / rows;
    if x_rank2 || hw == 1 {
        return w.iter().map(|&v| f64::from(v)).collect();
    }
    let mut out = vec![0.0; w.len()];
    for o in 0..rows {
        for p in 0..hw {
            for ch in 0..c {
                out[o * row + ch * hw + p] = f64::from(w[o * row + p * c + ch]);
            }
        }
    }
    out
}

/// The checker that runs next to the export (`check_dory_onnx.py`, written into its folder).
pub const CHECK_SCRIPT: &str = include_str!("dory_check.py");

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
        .args(graph.layers.iter().map(|l| &graph.tensors[l.output].name))
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
