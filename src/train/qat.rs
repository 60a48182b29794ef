//! Quantization-aware fine-tuning of a trained network at a precision assignment, and the files
//! it leaves: the fine-tuned (batch-norm-folded) network as ONNX and the quantization it was
//! trained for (per-layer weight bits, per-buffer activation bits and learned PACT bounds).

use super::TrainError;
use super::data::{Dataset, Split};
use super::model::{GraphNet, QuantSpec, Ranges};
use super::trainer::{Checkpoint, TrainConfig, TrainState, evaluate, fit, training_device};
use crate::graph::{FusedGraph, Graph, fold_for_analysis, onnx};
use crate::precision::{Assignment, Bits};
use crate::quant::{BufferQuant, LayerBits, Quantization};
use crate::results::write_json;
use burn::prelude::*;
use std::path::Path;

/// Calibration images used to initialise the PACT bounds.
const RANGE_IMAGES: usize = 512;

/// The result of a fine-tuning.
pub struct Finetuned {
    /// The fine-tuned network, batch norm folded.
    pub graph: Graph,
    pub quantization: Quantization,
    pub test_accuracy: f64,
    pub state: TrainState,
}

/// Activation ranges of the trained network `graph` on the first calibration images.
pub fn ranges(graph: &Graph, fused: &FusedGraph, calibration: &Split) -> Ranges {
    let device = training_device();
    let folded = fold_for_analysis(graph);
    let net = GraphNet::new(&folded, &device);
    let n = calibration.len().min(RANGE_IMAGES);
    let (x, _) = calibration.batch(&(0..n).collect::<Vec<_>>());
    let images = Tensor::from_data(
        TensorData::new(
            x,
            [
                n,
                calibration.channels,
                calibration.height,
                calibration.width,
            ],
        ),
        &device,
    );
    net.ranges(graph, fused, images)
}

/// Fine-tunes the trained network `graph` at `assignment` with `config`, distilling from the
/// floating-point network when `config.distill > 0`; checkpoints in `dir` and resumes from it;
/// `progress` labels the progress output (none when `None`).
pub fn finetune(
    graph: &Graph,
    fused: &FusedGraph,
    assignment: &Assignment,
    data: &Dataset,
    config: &TrainConfig,
    dir: &Path,
    progress: Option<&str>,
) -> Result<Finetuned, TrainError> {
    let device = training_device();
    let ranges = ranges(graph, fused, &data.train);
    let net = GraphNet::quantized(
        graph,
        fused,
        &QuantSpec::of(fused, assignment),
        &ranges,
        &device,
    );
    let teacher = (config.distill > 0.0).then(|| GraphNet::new(graph, &device));
    let checkpoint = Checkpoint::new(dir);
    let (net, state) = fit(net, teacher.as_ref(), data, config, &checkpoint, progress)?;
    let (_, test_accuracy) = evaluate(&net, &data.test, 512, &device);
    let folded = fold_for_analysis(graph);
    let trained = net.to_graph(&folded);
    let bounds = net.bounds(graph, fused);
    let quantization = Quantization {
        layers: fused
            .weighted_layers()
            .map(|(l, layer)| LayerBits {
                layer: layer.name.clone(),
                weight_bits: assignment.weight_bits[l].count(),
            })
            .collect(),
        buffers: fused
            .tensors
            .iter()
            .enumerate()
            .map(|(b, buffer)| BufferQuant {
                buffer: buffer.name.clone(),
                bits: assignment.activation_bits[b].count(),
                bound: bounds[b].unwrap_or(1.0),
                signed: ranges.signed[b],
            })
            .collect(),
    };
    onnx::export_file(&trained, &dir.join("quantized.onnx"))
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let json = serde_json::to_value(&quantization).unwrap_or_default();
    write_json(&dir.join("quantization.json"), &json)
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    Ok(Finetuned {
        graph: trained,
        quantization,
        test_accuracy,
        state,
    })
}

/// Reads an assignment written by `qsearch search` (`assignment.json`): weight bits by layer
/// name, activation bits by buffer name; every layer with weights and every buffer is needed.
pub(crate) fn read_assignment(path: &Path, fused: &FusedGraph) -> Result<Assignment, TrainError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::Config(format!("{name}: cannot read the file: {e}")))?;
    parse_assignment(&text, &name, fused)
}

/// [`read_assignment`] of a file's text; `name` names it in errors.
pub(crate) fn parse_assignment(
    text: &str,
    name: &str,
    fused: &FusedGraph,
) -> Result<Assignment, TrainError> {
    let err = |message: String| TrainError::Config(format!("{name}: {message}"));
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(format!("not JSON: {e}")))?;
    let bits = |v: &serde_json::Value, what: &str| -> Result<Bits, TrainError> {
        v.as_u64()
            .and_then(|b| u32::try_from(b).ok())
            .and_then(Bits::from_count)
            .ok_or_else(|| err(format!("{what}: bits must be 2, 4 or 8, got {v}")))
    };
    let mut a = Assignment::uniform(fused.layers.len(), fused.tensors.len(), Bits::B8);
    let layers = json["layers"]
        .as_array()
        .ok_or_else(|| err("has no 'layers' list".into()))?;
    for (l, layer) in fused.weighted_layers() {
        let entry = layers
            .iter()
            .find(|e| e["layer"] == layer.name.as_str())
            .ok_or_else(|| {
                err(format!(
                    "has no entry for layer '{}' of {}",
                    layer.name, fused.name
                ))
            })?;
        a.weight_bits[l] = bits(
            &entry["weight_bits"],
            &format!("layer '{}' weight_bits", layer.name),
        )?;
    }
    let buffers = json["buffers"]
        .as_array()
        .ok_or_else(|| err("has no 'buffers' list".into()))?;
    for (t, buffer) in fused.tensors.iter().enumerate() {
        let entry = buffers
            .iter()
            .find(|e| e["buffer"] == buffer.name.as_str())
            .ok_or_else(|| {
                err(format!(
                    "has no entry for buffer '{}' of {}",
                    buffer.name, fused.name
                ))
            })?;
        a.activation_bits[t] = bits(&entry["bits"], &format!("buffer '{}' bits", buffer.name))?;
    }
    Ok(a)
}
