//! The training loop shared by floating-point training and quantization-aware fine-tuning:
//! seeded epoch orders, Adam, cross-entropy (plus optional distillation from a teacher), progress
//! bars, a checkpoint after every epoch (written atomically) and resumption from it.

use super::TrainError;
use super::data::{Dataset, Split};
use super::model::GraphNet;
use crate::results::write_atomic;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::prelude::*;
use burn::store::ModuleRecord;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Learning rate at the last step, reached by cosine decay.
    pub final_learning_rate: f64,
    pub seed: u64,
    /// Train on the first N training examples only (quick runs and tests).
    pub limit: Option<usize>,
    /// Keep the last N training examples out of training: the held-out calibration split of
    /// measured sensitivity.
    #[serde(default)]
    pub holdout: usize,
    /// Weight of the distillation term (KL divergence to the teacher's softened outputs).
    pub distill: f64,
    /// Temperature of the distillation.
    pub temperature: f64,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 4,
            batch_size: 128,
            learning_rate: 2e-3,
            final_learning_rate: 1e-4,
            seed: 0,
            limit: None,
            holdout: 0,
            distill: 0.0,
            temperature: 4.0,
        }
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// What a checkpoint folder's `state.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub config: TrainConfig,
    /// Completed epochs.
    pub epoch: usize,
    pub history: Vec<EpochLog>,
}

impl TrainState {
    /// Parses a checkpoint's `state.json` and checks that its settings could have trained it;
    /// `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<TrainState, TrainError> {
        let err = |message: String| TrainError::Checkpoint(format!("{origin}: {message}"));
        let state: TrainState = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let c = &state.config;
        if c.batch_size == 0 {
            return Err(err("config.batch_size must be at least 1".into()));
        }
        for (field, v) in [
            ("learning_rate", c.learning_rate),
            ("final_learning_rate", c.final_learning_rate),
            ("distill", c.distill),
            ("temperature", c.temperature),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(format!(
                    "config.{field} = {v} must be a non-negative number"
                )));
            }
        }
        if state.epoch > c.epochs {
            return Err(err(format!(
                "records {} completed epochs of a {}-epoch run",
                state.epoch, c.epochs
            )));
        }
        Ok(state)
    }
}

/// Files of a checkpoint folder.
pub struct Checkpoint {
    pub dir: PathBuf,
}

impl Checkpoint {
    pub fn new(dir: &Path) -> Checkpoint {
        Checkpoint {
            dir: dir.to_path_buf(),
        }
    }

    fn model(&self) -> PathBuf {
        self.dir.join("model.bpk")
    }

    fn optimizer(&self) -> PathBuf {
        self.dir.join("optimizer.bpk")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn exists(&self) -> bool {
        self.state().exists()
    }

    pub fn read_state(&self) -> Result<TrainState, TrainError> {
        let path = self.state();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
        TrainState::parse(&text, &path.display().to_string())
    }

    /// Writes the model, the optimizer and then the state, each atomically, so that a state
    /// file always describes complete model and optimizer files.
    fn write(
        &self,
        net: &GraphNet,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<(), TrainError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", self.dir.display())))?;
        let err = |p: &Path, e: &dyn std::fmt::Display| {
            TrainError::Checkpoint(format!("{}: {e}", p.display()))
        };
        for (path, record) in [(self.model(), true), (self.optimizer(), false)] {
            let bytes = if record {
                net.clone().into_record().into_bytes()
            } else {
                optim.to_record().into_bytes()
            };
            let bytes = bytes.map_err(|e| err(&path, &e))?;
            write_atomic(&path, &bytes).map_err(|e| err(&path, &e))?;
        }
        let json = serde_json::to_string_pretty(state).unwrap_or_default();
        write_atomic(&self.state(), json.as_bytes()).map_err(|e| err(&self.state(), &e))
    }

    fn load(
        &self,
        net: GraphNet,
        optim: ModuleOptimizer,
    ) -> Result<(GraphNet, ModuleOptimizer), TrainError> {
        let err = |p: &Path, e: &dyn std::fmt::Display| {
            TrainError::Checkpoint(format!("{}: {e}", p.display()))
        };
        let record = ModuleRecord::load(self.model()).map_err(|e| err(&self.model(), &e))?;
        let net = net
            .try_load_record(record)
            .map_err(|e| err(&self.model(), &e))?;
        let optim_record =
            OptimizerRecord::load(self.optimizer()).map_err(|e| err(&self.optimizer(), &e))?;
        Ok((net, optim.load_record(optim_record)))
    }
}

/// The device models train on: the pure-Rust CPU backend with autodiff.
pub fn training_device() -> Device {
    Device::flex().autodiff()
}

fn batch_tensors(split: &Split, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let (x, y) = split.batch(indices);
    let n = indices.len();
    let images = Tensor::from_data(
        TensorData::new(x, [n, split.channels, split.height, split.width]),
        device,
    );
    let labels = Tensor::from_data(TensorData::new(y, [n]), device);
    (images, labels)
}

/// Loss and accuracy (percent) of `net` on `split`.
pub fn evaluate(net: &GraphNet, split: &Split, batch_size: usize, device: &Device) -> (f64, f64) {
    let net = net.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let indices: Vec<usize> = (0..split.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let (x, y) = batch_tensors(split, chunk, device);
        let logits = net.forward(x);
        loss += f64::from(
            loss_fn
                .forward(logits.clone(), y.clone())
                .into_scalar::<f32>(),
        ) * chunk.len() as f64;
        let predicted = logits.argmax(1).reshape([chunk.len()]);
        correct += predicted.equal(y).int().sum().into_scalar::<i64>() as usize;
    }
    let n = split.len().max(1) as f64;
    (loss / n, 100.0 * correct as f64 / n)
}

/// Class predictions of `net` on `split`.
pub fn predictions(net: &GraphNet, split: &Split, batch_size: usize, device: &Device) -> Vec<i64> {
    let net = net.valid();
    let indices: Vec<usize> = (0..split.len()).collect();
    let mut out = Vec::with_capacity(split.len());
    for chunk in indices.chunks(batch_size.max(1)) {
        let (x, _) = batch_tensors(split, chunk, device);
        let p = net.forward(x).argmax(1).reshape([chunk.len()]);
        // Whatever integer type the backend's argmax yields, as i64.
        let classes = p.into_data().convert::<i64>();
        out.extend(classes.iter::<i64>());
    }
    out
}

fn progress_bar(label: Option<&str>, total: u64) -> ProgressBar {
    match label {
        Some(label) => crate::progress::bar(true, label, total, "batches"),
        None => ProgressBar::hidden(),
    }
}

/// Trains `net` for `config.epochs` epochs on `data`, resuming from `checkpoint` when it holds a
/// state of the same configuration. `progress` labels the progress bars and epoch lines (none
/// when `None`). Returns the trained model and the per-epoch log.
pub fn fit(
    net: GraphNet,
    teacher: Option<&GraphNet>,
    data: &Dataset,
    config: &TrainConfig,
    checkpoint: &Checkpoint,
    progress: Option<&str>,
) -> Result<(GraphNet, TrainState), TrainError> {
    fit_until(
        net,
        teacher,
        data,
        config,
        checkpoint,
        progress,
        config.epochs,
    )
}

/// [`fit`], stopping once `stop_after` epochs are complete as an interruption would (the
/// checkpoint then holds that epoch and a later `fit` resumes from it).
pub fn fit_until(
    mut net: GraphNet,
    teacher: Option<&GraphNet>,
    data: &Dataset,
    config: &TrainConfig,
    checkpoint: &Checkpoint,
    progress: Option<&str>,
    stop_after: usize,
) -> Result<(GraphNet, TrainState), TrainError> {
    let device = training_device();
    let (kept, _) = data.train.split_off(config.holdout);
    let train = match config.limit {
        Some(n) => kept.take(n),
        None => kept,
    };
    if train.is_empty() {
        return Err(TrainError::Config("the training split is empty".into()));
    }
    let mut optim = AdamConfig::new().init();
    let mut state = TrainState {
        config: config.clone(),
        epoch: 0,
        history: Vec::new(),
    };
    if checkpoint.exists() {
        let saved = checkpoint.read_state()?;
        if saved.config != *config {
            return Err(TrainError::Checkpoint(format!(
                "{} was written with other settings; remove it or resume with the same ones",
                checkpoint.dir.display()
            )));
        }
        let (n, o) = checkpoint.load(net, optim)?;
        net = n;
        optim = o;
        state = saved;
    }
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let steps_per_epoch = train.len().div_ceil(config.batch_size);
    let total_steps = (steps_per_epoch * config.epochs).max(1);
    let teacher = teacher.map(|t| t.valid());
    while state.epoch < config.epochs.min(stop_after) {
        let epoch = state.epoch;
        let bar = progress_bar(
            progress
                .map(|label| format!("{label} {}/{}", epoch + 1, config.epochs))
                .as_deref(),
            steps_per_epoch as u64,
        );
        let started = Instant::now();
        let order = train.epoch_order(config.seed, epoch);
        let mut loss_sum = 0.0f64;
        for (k, chunk) in order.chunks(config.batch_size).enumerate() {
            let step = epoch * steps_per_epoch + k;
            let done = step as f64 / total_steps as f64;
            let lr = config.final_learning_rate
                + 0.5
                    * (config.learning_rate - config.final_learning_rate)
                    * (1.0 + (std::f64::consts::PI * done).cos());
            let (x, y) = batch_tensors(&train, chunk, &device);
            let logits = net.forward(x.clone());
            let mut loss = loss_fn.forward(logits.clone(), y);
            if let (Some(t), true) = (&teacher, config.distill > 0.0) {
                let temperature = config.temperature;
                let target =
                    burn::tensor::activation::softmax(t.forward(x).detach() / temperature, 1);
                let log_p = burn::tensor::activation::log_softmax(logits / temperature, 1);
                let kl = (target.clone() * (target.clamp_min(1e-12).log() - log_p))
                    .sum_dim(1)
                    .mean();
                loss = loss * (1.0 - config.distill)
                    + kl * (config.distill * temperature * temperature);
            }
            loss_sum += f64::from(loss.clone().into_scalar::<f32>()) * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(lr, net, grads);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let (_, test_accuracy) = evaluate(&net, &data.test, 512, &device);
        state.history.push(EpochLog {
            epoch: epoch + 1,
            loss: loss_sum / train.len() as f64,
            test_accuracy,
            seconds,
            images_per_second: train.len() as f64 / seconds,
        });
        state.epoch += 1;
        checkpoint.write(&net, &optim, &state)?;
        if let Some(label) = progress {
            eprintln!(
                "{label} epoch {}/{}: loss {:.4}, test accuracy {test_accuracy:.2}%, {:.0} images/s",
                epoch + 1,
                config.epochs,
                loss_sum / train.len() as f64,
                train.len() as f64 / seconds
            );
        }
    }
    Ok((net, state))
}
