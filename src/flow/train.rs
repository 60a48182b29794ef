//! `qsearch train`, `qsearch finetune` and the measured sensitivity tables: load the network and
//! the dataset, check that they fit each other, and run the training library.

use super::FlowError;
use crate::graph::{FusedGraph, Graph, load_model, onnx};
use crate::precision::Assignment;
use crate::results::slug;
use crate::sensitivity::Sensitivity;
use crate::train::data::{self, Dataset};
use crate::train::qat::{Finetuned, finetune, ranges, read_assignment};
use crate::train::{
    Checkpoint, GraphNet, TrainConfig, TrainError, TrainState, fit, measure, training_device,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

impl From<TrainError> for FlowError {
    fn from(e: TrainError) -> FlowError {
        FlowError::Train(e)
    }
}

/// Checks that `graph` takes the dataset's images and has an output per class.
pub fn check_fit(graph: &Graph, data: &Dataset) -> Result<(), FlowError> {
    let s = graph.input_shape();
    let t = &data.train;
    if (s.c, s.h, s.w) != (t.channels, t.height, t.width) {
        return Err(FlowError::Input(format!(
            "{} takes {}x{}x{} inputs but {} has {}x{}x{} images",
            graph.name, s.c, s.h, s.w, data.name, t.channels, t.height, t.width
        )));
    }
    let classes = graph.output_shape().elements() as usize;
    if classes < data.classes {
        return Err(FlowError::Input(format!(
            "{} has {classes} outputs but {} has {} classes",
            graph.name, data.name, data.classes
        )));
    }
    Ok(())
}

/// The network a checkpoint argument names: a checkpoint folder's `model.onnx`, or an `.onnx`.
pub fn load_checkpoint_model(checkpoint: &Path) -> Result<Graph, FlowError> {
    let path = if checkpoint.is_dir() {
        checkpoint.join("model.onnx")
    } else {
        checkpoint.to_path_buf()
    };
    Ok(onnx::import_file(&path).map_err(crate::graph::ModelError::from)?)
}

/// What `qsearch train` did.
pub struct Trained {
    pub graph: Graph,
    pub state: TrainState,
}

/// Trains `model` on `data` into the checkpoint folder `out`, resuming when `resume` is set.
pub fn train(
    model: &str,
    data_spec: &str,
    config: &TrainConfig,
    out: &Path,
    resume: bool,
    progress: bool,
) -> Result<Trained, FlowError> {
    let graph = load_model(model)?;
    let dataset = data::load(data_spec).map_err(TrainError::from)?;
    check_fit(&graph, &dataset)?;
    let checkpoint = Checkpoint::new(out);
    if checkpoint.exists() && !resume {
        return Err(FlowError::Input(format!(
            "{} already holds a checkpoint; pass --resume to continue it, or choose another folder",
            out.display()
        )));
    }
    let net = GraphNet::new(&graph, &training_device());
    let (net, state) = fit(
        net,
        None,
        &dataset,
        config,
        &checkpoint,
        progress.then_some(graph.name.as_str()),
    )?;
    let trained = net.to_graph(&graph);
    onnx::export_file(&trained, &out.join("model.onnx"))
        .map_err(|e| FlowError::Input(e.to_string()))?;
    Ok(Trained {
        graph: trained,
        state,
    })
}

/// The trained floating-point network `model` on `data_spec`, from the cache under
/// `results/models/` (trained there on first use, resumed if interrupted).
pub fn cached_model(
    model: &str,
    data_spec: &str,
    config: &TrainConfig,
    results: &Path,
    progress: bool,
) -> Result<Trained, FlowError> {
    let dir = results.join("models").join(slug(&format!(
        "{model}-{data_spec}-e{}-s{}",
        config.epochs, config.seed
    )));
    let checkpoint = Checkpoint::new(&dir);
    let onnx_path = dir.join("model.onnx");
    if checkpoint.exists() && onnx_path.exists() {
        let state = checkpoint.read_state()?;
        if state.epoch == config.epochs && state.config == *config {
            let mut graph =
                onnx::import_file(&onnx_path).map_err(crate::graph::ModelError::from)?;
            graph.name = load_model(model)?.name;
            return Ok(Trained { graph, state });
        }
    }
    train(model, data_spec, config, &dir, true, progress)
}

/// Fine-tunes the checkpoint's network at the assignment in `assignment_file` into `out`.
pub fn finetune_file(
    assignment_file: &Path,
    checkpoint: &Path,
    data_spec: &str,
    config: &TrainConfig,
    out: &Path,
    progress: bool,
) -> Result<Finetuned, FlowError> {
    let graph = load_checkpoint_model(checkpoint)?;
    let dataset = data::load(data_spec).map_err(TrainError::from)?;
    check_fit(&graph, &dataset)?;
    let fused = FusedGraph::from_graph(&graph);
    let assignment = read_assignment(assignment_file, &fused)?;
    Ok(finetune(
        &graph,
        &fused,
        &assignment,
        &dataset,
        config,
        out,
        progress.then_some(graph.name.as_str()),
    )?)
}

/// Fine-tunes `graph` at `assignment` into `dir`.
pub fn finetune_assignment(
    graph: &Graph,
    assignment: &Assignment,
    dataset: &Dataset,
    config: &TrainConfig,
    dir: &Path,
    label: &str,
    progress: bool,
) -> Result<Finetuned, FlowError> {
    let fused = FusedGraph::from_graph(graph);
    Ok(finetune(
        graph,
        &fused,
        assignment,
        dataset,
        config,
        dir,
        progress.then_some(label),
    )?)
}

/// Calibration images for measured sensitivity: the last ones of the training split, held out
/// of training when the network was trained with `--holdout` at least as large.
pub const CALIBRATION_IMAGES: usize = 2000;

/// Which measured table to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Accuracy drop (points) when only that tensor is quantized.
    Accuracy,
    /// Loss increase (loss) when only that tensor is quantized.
    Loss,
    /// Hutchinson Hessian trace times quantization error for weights, measured loss increase
    /// for activations (unit `loss`).
    Hessian,
}

/// A measured sensitivity table of a trained network on `images` calibration images.
pub fn measured_sensitivity(
    graph: &Graph,
    dataset: &Dataset,
    method: Measure,
    images: usize,
    progress: bool,
) -> Sensitivity {
    let fused = FusedGraph::from_graph(graph);
    let (_, calibration) = dataset.train.split_off(images);
    let r = ranges(graph, &fused, &calibration);
    let weighted = fused.weighted_layers().count() as u64;
    let mut total = 3 * (weighted + fused.tensors.len() as u64 - 1);
    if method == Measure::Hessian {
        total += 8 * weighted;
    }
    let bar = if progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "   sensitivity [{elapsed_precise}] {bar:30} {pos}/{len} measurements",
    ) {
        bar.set_style(style);
    }
    let (points, loss) = measure::accuracy_drops(graph, &fused, &r, &calibration, &bar);
    let table = match method {
        Measure::Accuracy => points,
        Measure::Loss => loss,
        Measure::Hessian => {
            measure::hessian(graph, &fused, &calibration, 0, loss.activations, &bar)
        }
    };
    bar.finish_and_clear();
    table
}

/// A checkpoint folder's paths for the CLI's messages.
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    ["model.onnx", "model.bpk", "optimizer.bpk", "state.json"]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}
