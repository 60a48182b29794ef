//! `qsearch train`, `qsearch finetune` and the measured sensitivity tables: load the network and
//! the dataset, check that they fit each other, and run the training library.

use super::FlowError;
use crate::graph::{FusedGraph, Graph, load_model, onnx};
use crate::precision::Assignment;
use crate::results::slug;
use crate::sensitivity::Sensitivity;
use crate::train::data::{self, Dataset, Split};
use crate::train::npz;
use crate::train::qat::{Finetuned, finetune, ranges, read_assignment};
use crate::train::{
    Checkpoint, GraphNet, TrainConfig, TrainError, TrainState, fit, measure, training_device,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

impl From<TrainError> for FlowError {
    fn from(e: TrainError) -> FlowError {
        FlowError::Train(e)
    }
}

/// Checks that `graph` takes the dataset's images and has an output per class.
pub fn check_fit(graph: &Graph, data: &Dataset) -> Result<(), FlowError> {
    // An .npz dataset is named by its path; its images are one of its arrays.
    let images = if data.name.ends_with(".npz") {
        format!("{} (array x_train)", data.name)
    } else {
        data.name.clone()
    };
    check_images(graph, &data.train, &images)?;
    check_classes(graph, data.classes, &data.name)
}

/// Checks that `graph` takes the images of `split`, which `source` names.
fn check_images(graph: &Graph, split: &Split, source: &str) -> Result<(), FlowError> {
    let s = graph.input_shape();
    if (s.c, s.h, s.w) != (split.channels, split.height, split.width) {
        // Square images of the right channels only differ in resolution: say how to resize.
        let hint = if s.c == split.channels && s.h == s.w {
            format!(
                "; a dataset followed by @{} (e.g. fashion-mnist@{}) resizes its images to {}x{}",
                s.h, s.h, s.h, s.w
            )
        } else {
            String::new()
        };
        return Err(FlowError::Input(format!(
            "{} takes {}x{}x{} inputs but {source} has {}x{}x{} images{hint}",
            graph.name, s.c, s.h, s.w, split.channels, split.height, split.width
        )));
    }
    Ok(())
}

/// Checks that `graph` has an output for each of `classes` (labels 0 to classes - 1 of `source`).
fn check_classes(graph: &Graph, classes: usize, source: &str) -> Result<(), FlowError> {
    let outputs = graph.output_shape().elements() as usize;
    if outputs < classes {
        return Err(FlowError::Input(format!(
            "{} has {outputs} outputs but {source} has {classes} classes (labels up to {})",
            graph.name,
            classes - 1
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
pub(crate) fn cached_model(
    model: &str,
    data_spec: &str,
    config: &TrainConfig,
    results: &Path,
    progress: bool,
) -> Result<Trained, FlowError> {
    let name = slug(&format!(
        "{model}-{data_spec}-e{}-s{}",
        config.epochs, config.seed
    ));
    let dir = results.join("models").join(&name);
    // Processes sharing the results folder (a sweep's tasks) train each network once: the first
    // holds the lock while it trains, the others then find its checkpoint.
    let lock_path = results.join("models").join(format!("{name}.lock"));
    let lock = std::fs::create_dir_all(results.join("models"))
        .and_then(|()| std::fs::File::create(&lock_path))
        .and_then(|file| file.lock().map(|()| file))
        .map_err(|e| io_error(&lock_path, e))?;
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
    let trained = train(model, data_spec, config, &dir, true, progress);
    drop(lock);
    trained
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

/// What a fine-tune in the main flow was asked (`network`, the bits, the schedule) and, once it
/// finished, what it measured: `finetune.json` in its folder. A rerun reuses a finished fine-tune
/// with the same question and starts afresh in a folder that holds another one's files.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct FinetuneRecord {
    /// [`super::model_hash`] of the floating-point network.
    network: String,
    weight_bits: Vec<u32>,
    activation_bits: Vec<u32>,
    config: TrainConfig,
    /// Test accuracy (%), once finished.
    test_accuracy: Option<f64>,
}

impl FinetuneRecord {
    /// Whether `other` asked the same question (its result aside).
    fn same_question(&self, other: &FinetuneRecord) -> bool {
        (
            &self.network,
            &self.weight_bits,
            &self.activation_bits,
            &self.config,
        ) == (
            &other.network,
            &other.weight_bits,
            &other.activation_bits,
            &other.config,
        )
    }
}

/// Fine-tunes `graph` at `assignment` into `dir` and returns its test accuracy (%). A finished
/// fine-tune of the same network, bits and schedule in `dir` is reused, an interrupted one resumes
/// from its last epoch; the record of the result is written last and atomically, so a run killed
/// at any point never takes a half-finished fine-tune for a finished one.
pub fn finetune_assignment(
    graph: &Graph,
    assignment: &Assignment,
    dataset: &Dataset,
    config: &TrainConfig,
    dir: &Path,
    label: &str,
    progress: bool,
) -> Result<f64, FlowError> {
    let record_path = dir.join("finetune.json");
    let mut record = FinetuneRecord {
        network: super::model_hash(graph),
        weight_bits: assignment.weight_bits.iter().map(|b| b.count()).collect(),
        activation_bits: assignment
            .activation_bits
            .iter()
            .map(|b| b.count())
            .collect(),
        config: config.clone(),
        test_accuracy: None,
    };
    let previous: Option<FinetuneRecord> = std::fs::read_to_string(&record_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    match previous {
        Some(p) if p.same_question(&record) => {
            if let Some(accuracy) = p.test_accuracy {
                return Ok(accuracy);
            }
        }
        // Another question's files, or a record we cannot read: start afresh.
        _ if dir.exists() => std::fs::remove_dir_all(dir).map_err(|e| io_error(dir, e))?,
        _ => {}
    }
    write_record(&record_path, &record)?;
    let fused = FusedGraph::from_graph(graph);
    let done = finetune(
        graph,
        &fused,
        assignment,
        dataset,
        config,
        dir,
        progress.then_some(label),
    )?;
    record.test_accuracy = Some(done.test_accuracy);
    write_record(&record_path, &record)?;
    Ok(done.test_accuracy)
}

fn write_record(path: &Path, record: &FinetuneRecord) -> Result<(), FlowError> {
    let json = serde_json::to_value(record).map_err(|e| FlowError::Input(e.to_string()))?;
    Ok(crate::results::write_json(path, &json)?)
}

fn io_error(path: &Path, e: std::io::Error) -> FlowError {
    FlowError::Input(format!("{}: {e}", path.display()))
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

impl std::str::FromStr for Measure {
    type Err = String;

    /// `accuracy`, `loss` or `hessian`; the error says what is accepted.
    fn from_str(name: &str) -> Result<Measure, String> {
        match name {
            "accuracy" => Ok(Measure::Accuracy),
            "loss" => Ok(Measure::Loss),
            "hessian" => Ok(Measure::Hessian),
            other => Err(format!("{other}: use accuracy, loss or hessian")),
        }
    }
}

/// A measured sensitivity table of a trained network on the `calibration` images.
pub fn measured_sensitivity(
    graph: &Graph,
    calibration: &Split,
    method: Measure,
    progress: bool,
) -> Sensitivity {
    let fused = FusedGraph::from_graph(graph);
    let r = ranges(graph, &fused, calibration);
    let weighted = fused.weighted_layers().count() as u64;
    let mut total = 3 * (weighted + fused.tensors.len() as u64 - 1);
    if method == Measure::Hessian {
        total += 8 * weighted;
    }
    let bar = crate::progress::bar(progress, "sensitivity", total, "measurements");
    let (points, loss) = measure::accuracy_drops(graph, &fused, &r, calibration, &bar);
    let table = match method {
        Measure::Accuracy => points,
        Measure::Loss => loss,
        Measure::Hessian => measure::hessian(graph, &fused, calibration, 0, loss.activations, &bar),
    };
    bar.finish_and_clear();
    table
}

/// The calibration images of `qsearch sensitivity --calibration FILE.npz`: array `x` (and `y`,
/// which a measured table needs: `labelled`), the first `images` of them, checked against
/// `graph`'s input shape and outputs.
pub fn calibration_file(
    graph: &Graph,
    path: &Path,
    images: usize,
    labelled: bool,
) -> Result<Split, FlowError> {
    let (split, classes) = npz::load_calibration(path).map_err(TrainError::from)?;
    let name = path.display().to_string();
    check_images(graph, &split, &format!("{name} (array x)"))?;
    match classes {
        Some(classes) => check_classes(graph, classes, &format!("{name} (array y)"))?,
        None if labelled => {
            return Err(FlowError::Input(format!(
                "{name}: has no array y; a measured table (--checkpoint) needs the labels of the calibration images x"
            )));
        }
        None => {}
    }
    Ok(split.take(images))
}

/// The noise proxy of `graph` with activation statistics from the `calibration` images instead
/// of synthetic inputs; `source` names them in the table.
pub fn calibrated_noise_proxy(
    graph: &Graph,
    calibration: &Split,
    source: &str,
) -> Result<Sensitivity, FlowError> {
    let fused = FusedGraph::from_graph(graph);
    let (x, _) = calibration.batch(&(0..calibration.len()).collect::<Vec<_>>());
    let inputs: Vec<Vec<f32>> = x
        .chunks_exact(calibration.image_len())
        .map(<[f32]>::to_vec)
        .collect();
    let source = format!("{} calibration images of {source}", calibration.len());
    Ok(Sensitivity::noise_proxy(graph, &fused, &inputs, &source)?)
}

/// A checkpoint folder's paths for the CLI's messages.
pub fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    ["model.onnx", "model.bpk", "optimizer.bpk", "state.json"]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}
