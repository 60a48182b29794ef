//! The workflows behind the commands: prepare a problem from the user's choices, run one policy
//! (`qsearch search`, the main command) or several side by side (`qsearch compare`), and write
//! the run folder. The CLI only parses flags into [`Inputs`] and prints what comes back.

use crate::graph::{FusedGraph, Graph, ModelError, Op, load_model};
use crate::objective::{Objective, ObjectiveError};
use crate::platform::{Platform, PlatformError};
use crate::results::{ResultsError, slug};
use crate::search::{Problem, SearchError};
use crate::sensitivity::{Sensitivity, SensitivityError, synthetic_inputs};
use crate::space::{Space, SpaceConfig, SpaceError};
use crate::units::parse_latency;
use indicatif::ProgressBar;
use std::path::PathBuf;

mod deploy;
mod main_flow;
mod microbench;
mod proxy;
mod search;
mod train;
mod variants;

pub use deploy::{DeploySettings, deploy};
pub use main_flow::{
    ACCURACY_TIE_POINTS, MAIN_CALIBRATION_IMAGES, MainReport, MainSchedule, MainSettings,
    fastest_within_tie, run_main,
};
pub use microbench::microbench;
pub use proxy::{ProxyMethod, ProxyPoint, ProxySet, ProxySettings, ProxyStudy, proxy_study};
pub use search::{compare, search};
pub(crate) use train::cached_model;
pub use train::{
    CALIBRATION_IMAGES, Measure, calibrated_noise_proxy, calibration_file, check_fit,
    checkpoint_files, finetune_assignment, finetune_file, load_checkpoint_model,
    measured_sensitivity, train,
};

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Space(#[from] SpaceError),
    #[error(transparent)]
    Objective(#[from] ObjectiveError),
    #[error(transparent)]
    Sensitivity(#[from] SensitivityError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Train(crate::train::TrainError),
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error("{0}")]
    Input(String),
}

/// Limits given on the command line; they replace the objective file's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// Total on-chip memory (flash + peak RAM), bytes.
    pub memory: Option<u64>,
    pub flash: Option<u64>,
    pub ram: Option<u64>,
    /// Latency as written (`5ms`, `2000000cycles`).
    pub latency: Option<String>,
    pub energy: Option<f64>,
    pub accuracy_drop: Option<f64>,
}

/// What the user chose.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub model: String,
    pub platform: String,
    pub space: String,
    pub objective: String,
    pub limits: Limits,
    /// A sensitivity table to use instead of the computed noise proxy.
    pub sensitivity: Option<PathBuf>,
    /// The folder runs are written under.
    pub results: PathBuf,
    /// Show progress for long steps (on a terminal).
    pub progress: bool,
}

/// A problem ready to search, with what it was made from.
pub struct Prepared {
    pub inputs: Inputs,
    pub graph: Graph,
    pub problem: Problem,
    /// Stable fingerprint of the network (structure and weights).
    pub model_hash: String,
}

/// FNV-1a over the graph's structure and weights: names the cached sensitivity tables.
pub(crate) fn model_hash(graph: &Graph) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(graph.name.as_bytes());
    for t in &graph.tensors {
        feed(t.name.as_bytes());
        feed(&(t.shape.elements()).to_le_bytes());
    }
    for node in &graph.nodes {
        feed(node.name.as_bytes());
        feed(node.op.kind().as_bytes());
        let params: &[&Vec<f32>] = &match &node.op {
            Op::Conv(c) => vec![&c.weight, &c.bias],
            Op::Linear(l) => vec![&l.weight, &l.bias],
            Op::BatchNorm(b) => vec![&b.scale, &b.bias, &b.mean, &b.var],
            _ => vec![],
        };
        for values in params {
            for v in values.iter() {
                feed(&v.to_bits().to_le_bytes());
            }
        }
    }
    format!("{h:016x}")
}

/// Calibration inputs for the noise proxy when no dataset is given.
const SYNTHETIC_INPUTS: usize = 8;

/// Loads everything and builds the problem. The noise-proxy sensitivity table is cached under
/// `results/cache/` by the network's fingerprint.
pub fn prepare(inputs: &Inputs) -> Result<Prepared, FlowError> {
    prepare_graph(load_model(&inputs.model)?, inputs, None)
}

/// [`prepare`] for a network already loaded (e.g. trained), optionally with its sensitivity
/// table (otherwise `inputs.sensitivity` or the cached noise proxy).
pub(crate) fn prepare_graph(
    graph: Graph,
    inputs: &Inputs,
    table: Option<Sensitivity>,
) -> Result<Prepared, FlowError> {
    let platform = Platform::load(&inputs.platform)?;
    let fused = FusedGraph::from_graph(&graph);
    let space = Space::resolve(&SpaceConfig::load(&inputs.space)?, &fused, &platform)?;
    let mut config = Objective::load(&inputs.objective)?;
    let l = &inputs.limits;
    let limits = &mut config.limits;
    let bytes = |b: Option<u64>, old: &Option<String>| b.map(|v| v.to_string()).or(old.clone());
    limits.memory = bytes(l.memory, &limits.memory);
    limits.flash = bytes(l.flash, &limits.flash);
    limits.ram = bytes(l.ram, &limits.ram);
    if let Some(t) = &l.latency {
        parse_latency(t, platform.hardware.clock_hz.value).map_err(FlowError::Input)?;
        limits.latency = Some(t.clone());
    }
    limits.energy = l.energy.or(limits.energy);
    limits.accuracy_drop = l.accuracy_drop.or(limits.accuracy_drop);
    let objective =
        Objective::resolve(&config, platform.hardware.clock_hz.value, &inputs.objective)?;

    let hash = model_hash(&graph);
    let sensitivity = match (table, &inputs.sensitivity) {
        (Some(table), _) => table,
        (None, Some(path)) => Sensitivity::read_csv(path, &fused)?,
        (None, None) => {
            let cache = inputs
                .results
                .join("cache")
                .join(format!("sensitivity-{}-{hash}.csv", slug(&graph.name)));
            match Sensitivity::read_csv(&cache, &fused) {
                Ok(mut table) => {
                    table.source = format!("{} (cached in {})", noise_source(), cache.display());
                    table
                }
                Err(_) => {
                    let spinner = if inputs.progress {
                        ProgressBar::new_spinner()
                    } else {
                        ProgressBar::hidden()
                    };
                    spinner.set_message(format!(
                        "sensitivity: running {} on {SYNTHETIC_INPUTS} calibration inputs",
                        graph.name
                    ));
                    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
                    let elements = graph.input_shape().elements() as usize;
                    let calibration = synthetic_inputs(elements, SYNTHETIC_INPUTS, 0);
                    let table =
                        Sensitivity::noise_proxy(&graph, &fused, &calibration, &noise_source())?;
                    spinner.finish_and_clear();
                    table.write_csv(&fused, &cache)?;
                    table
                }
            }
        }
    };
    let problem = Problem::new(fused, platform, space, objective, sensitivity)?;
    Ok(Prepared {
        inputs: inputs.clone(),
        graph,
        problem,
        model_hash: hash,
    })
}

fn noise_source() -> String {
    format!("{SYNTHETIC_INPUTS} synthetic inputs uniform in [0, 1) (seed 0)")
}
