//! Deployment: integerization of a fine-tuned network, the integer golden model, C code
//! generation and its verification. The arithmetic is defined once in
//! `docs/integer-semantics.md` and computed by `crate::quant`; the fine-tuning's fake
//! quantization, the golden model and the generated C all follow it.

pub mod codegen;
pub mod deeploy;
pub mod dory;
pub mod golden;
pub mod integerize;
mod layout;
pub mod library;
pub mod microbench;
pub mod pulp;
pub mod rtl;
pub mod verify;

pub use integerize::{IntGraph, IntOp, integerize};

use crate::graph::{Graph, onnx};
use crate::quant::Quantization;
use crate::table::Table;
use crate::units::group_thousands;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Input(String),
    #[error("overflow: {0}")]
    Overflow(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Build(String),
    #[error(transparent)]
    Rtl(#[from] crate::rtl::RtlError),
    #[error(
        "on the CV32E40P, image {image}, layer '{layer}' differs from the golden model from byte {byte}: {} where {} was expected",
        hex_byte(*got),
        hex_byte(*expected)
    )]
    RtlMismatch {
        image: usize,
        layer: String,
        byte: usize,
        /// The byte the core wrote and the golden model's (`None` past the end of the output).
        got: Option<u8>,
        expected: Option<u8>,
    },
}

fn hex_byte(b: Option<u8>) -> String {
    b.map_or_else(|| "nothing".into(), |b| format!("{b:#04x}"))
}

/// A fine-tuned network as `qsearch finetune` leaves it: `quantized.onnx` (batch norm folded)
/// and `quantization.json`.
pub fn load_finetuned(dir: &Path) -> Result<(Graph, Quantization), DeployError> {
    let onnx_path = dir.join("quantized.onnx");
    let json_path = dir.join("quantization.json");
    let missing = |p: &Path| {
        DeployError::Input(format!(
            "{}: not found; pass the output folder of `qsearch finetune` (it holds quantized.onnx and quantization.json)",
            p.display()
        ))
    };
    if !onnx_path.exists() {
        return Err(missing(&onnx_path));
    }
    let text = std::fs::read_to_string(&json_path).map_err(|_| missing(&json_path))?;
    let quantization = Quantization::parse(&text, &json_path.display().to_string())
        .map_err(|e| DeployError::Input(e.to_string()))?;
    let graph = onnx::import_file(&onnx_path).map_err(|e| DeployError::Io {
        path: onnx_path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((graph, quantization))
}

/// The per-layer integer report: precisions, requantization shift, accumulator bound and the
/// type that provably holds it.
pub(crate) fn overflow_report(graph: &IntGraph) -> String {
    let mut t = Table::new(&[
        "layer<",
        "op<",
        "w",
        "in",
        "out",
        "shift",
        "max |acc|",
        "acc type<",
        "max |k*acc|",
        "product<",
    ])
    .names("layer");
    for l in &graph.layers {
        let w = match &l.op {
            IntOp::Conv { weight_bits, .. } | IntOp::Linear { weight_bits, .. } => {
                weight_bits.to_string()
            }
            _ => "-".into(),
        };
        let bits = |t: usize| {
            let t = &graph.tensors[t];
            format!("{}{}", if t.signed { "s" } else { "u" }, t.bits)
        };
        t.row(vec![
            l.name.clone(),
            l.op.name().into(),
            w,
            bits(l.inputs[0]),
            bits(l.output),
            l.requant.shift.to_string(),
            group_thousands(l.acc_bound as u64),
            l.acc_type().into(),
            format!("{:.3e}", l.product_bound as f64),
            format!("int{}", l.product_bits()),
        ]);
    }
    format!(
        "{}every accumulator bound is sum |w| * max |x| + |bias| over the layer's worst output; \
         the requantization product k * acc + 2^(shift-1) stays within the type shown\n",
        t.render()
    )
}
