//! The command line's flags (clap) and their mapping onto the library's run configs: each
//! command's flags become the settings the library takes ([`Inputs`], [`Settings`],
//! [`MainSettings`], [`TrainConfig`], [`DeploySettings`]), checked once, here.

use clap::{Args, Parser, Subcommand};
use qsearch::flow::{
    CALIBRATION_IMAGES, DeploySettings, Inputs, Limits, MainSchedule, MainSettings, Measure,
};
use qsearch::graph::zoo;
use qsearch::platform::DEFAULT_PLATFORM;
use qsearch::precision::Bits;
use qsearch::search::{self, SearchError, Settings};
use qsearch::train::{TrainConfig, presets};
use qsearch::units::parse_bytes;
use std::path::PathBuf;

const SIZE_HELP: &str = "Sizes: 512KB = 512,000 bytes and 0.5MB = 500,000 (decimal, as datasheets); \
512KiB = 524,288 (binary); a bare number is bytes.";

const EXIT_CODES_HELP: &str = "Exit codes: 0 success; 1 error (bad input, a failed run, or a check \
that did not pass, such as a deployment that is not bit-exact); 2 usage error (unknown command or \
flag, malformed value). A failed command's last line on standard error is `qsearch: exit code N`.";

/// What `qsearch --help` ends with.
fn main_help() -> String {
    format!("{SIZE_HELP}\n\n{EXIT_CODES_HELP}")
}

#[derive(Parser)]
#[command(
    name = "qsearch",
    version,
    about = "Mixed-precision quantization search for neural networks on PULP microcontrollers",
    long_about = "Mixed-precision quantization search for neural networks on PULP microcontrollers.\n\n\
Without a subcommand, runs the whole flow on the defaults (network zoo:fashion-cnn, platform gap8, \
exact ILP search), e.g. `qsearch --budget 512KB --objective latency`.",
    after_help = main_help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub main: MainArgs,
    /// No progress display (bars with an ETA on a terminal, a line every 10 s in a log).
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// The main flow's flags (no subcommand).
#[derive(Args, Clone)]
#[command(after_help = SIZE_HELP)]
pub struct MainArgs {
    #[command(flatten)]
    pub problem: ProblemArgs,
    #[command(flatten)]
    pub policy_args: PolicyArgs,
    /// Dataset to train and fine-tune on: fashion-mnist, an MNIST or CIFAR-10 directory, or an
    /// .npz with x_train, y_train, x_test, y_test.
    #[arg(long, default_value_t = MainSchedule::default().data)]
    pub data: String,
    /// Floating-point training epochs (the trained network is cached under the results folder).
    #[arg(long, default_value_t = MainSchedule::default().epochs)]
    pub epochs: usize,
    /// Use only the first N training images for floating-point training (all when absent).
    #[arg(long)]
    pub train_images: Option<usize>,
    /// Training images per fine-tuning run (a short schedule of one pass).
    #[arg(long, default_value_t = MainSchedule::default().finetune_images)]
    pub finetune_images: usize,
    /// Candidates fine-tuned and re-ranked by measured accuracy.
    #[arg(long, default_value_t = MainSchedule::default().top_k)]
    pub top_k: usize,
    /// Measured accuracies this many points apart count as equal: the fastest network within it
    /// of the most accurate that fits is chosen.
    #[arg(long, value_name = "POINTS", default_value_t = MainSchedule::default().accuracy_tie)]
    pub accuracy_tie: f64,
    /// Policies whose winners are fine-tuned and reported next to the exact optimum.
    #[arg(
        long,
        default_value = "memory-driven,evolution,rl,random",
        value_delimiter = ','
    )]
    pub policies: Vec<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Search per-layer precisions with one policy; print the assignment and write results/<run>/.
    Search(SearchArgs),
    /// Run several policies on one problem and compare them.
    Compare(CompareArgs),
    /// Write a network's sensitivity table: the noise proxy, or measured on a dataset.
    Sensitivity(SensitivityArgs),
    /// Train a network in floating point on a dataset (checkpoint every epoch, --resume).
    Train(TrainArgs),
    /// Fine-tune a trained network at a precision assignment (quantization-aware training).
    Finetune(FinetuneArgs),
    /// Per-layer MACs, parameters, cycles and memory of a network on a platform.
    Inspect(InspectArgs),
    /// Refit a platform's cost-model parameters from measured kernel cycles.
    Calibrate(CalibrateArgs),
    /// Sweeps over models, platforms, budgets, objectives, policies and seeds: SLURM job arrays
    /// (or local processes), resumable shards, merged results.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Write the kernel microbenchmarks that `calibrate` reads; with --run, measure them (QEMU
    /// for rv32imc, the CV32E40P RTL for XpulpV2 platforms) and calibrate the platform.
    Microbench(MicrobenchArgs),
    /// Integerize a fine-tuned network, generate its C project, build it on the host and verify
    /// it bit-exact against the integer golden model.
    Deploy(DeployArgs),
    /// Write a network (e.g. a zoo network) as an ONNX file.
    Export(ExportArgs),
    /// List the built-in networks.
    Zoo,
    /// List the built-in platforms, or show one with the source of every parameter.
    Platforms {
        /// Print this platform's full description (TOML).
        #[arg(long)]
        show: Option<String>,
    },
}

#[derive(Args)]
pub struct MicrobenchArgs {
    /// The platform to calibrate (its parameters are the starting point). Its isa decides where
    /// the programs run: rv32imc on QEMU (instructions), xpulpv2 on the CV32E40P RTL (cycles of
    /// one core).
    #[arg(long, short, default_value = "rv32imc")]
    pub platform: String,
    /// Output folder: cases/ (one program each), measurements.csv, the fitted platform.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Build and run the programs, calibrate on four fifths of the rows and report the error on
    /// the held-out fifth.
    #[arg(long)]
    pub run: bool,
    /// With --run: a fine-tuned network (folder of `qsearch finetune`) whose whole deployed
    /// count (instructions on QEMU, one core's cycles on the RTL) is compared with the
    /// calibrated model's prediction.
    #[arg(long)]
    pub network: Option<PathBuf>,
}

#[derive(Args)]
pub struct DeployArgs {
    /// The fine-tuned network: the output folder of `qsearch finetune` (quantized.onnx and
    /// quantization.json).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The assignment the network must have been fine-tuned for (checked when given).
    #[arg(long)]
    pub assignment: Option<PathBuf>,
    /// Platform of the cost model figures printed next to the generated code's.
    #[arg(long, short, default_value = DEFAULT_PLATFORM)]
    pub platform: String,
    /// Dataset whose test images verify the deployment (as --data of `qsearch train`).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Test images the host build must reproduce bit-exact at every layer.
    #[arg(long, default_value_t = 1000)]
    pub verify_images: usize,
    /// Test images on which the golden and fake-quantized models' predictions are compared.
    #[arg(long, default_value_t = 10_000)]
    pub agreement_images: usize,
    /// Integer width of the requantization products: 64 (30-bit multipliers) or 32 (what
    /// PULP-NN and DORY compute in; fewer multiplier bits).
    #[arg(long, default_value_t = 64)]
    pub requant_bits: u32,
    /// Refuse layers below 8 bits in the Deeploy export, rather than carry them in bytes on
    /// Deeploy's 8-bit kernels (exact, without the memory saving).
    #[arg(long)]
    pub deeploy_strict: bool,
    /// Skip the RTL stage (the PULP path on the simulated CV32E40P core, every layer checked and
    /// timed), which otherwise runs when the simulator's tools are installed.
    #[arg(long)]
    pub no_rtl: bool,
    /// Test images the RTL stage runs.
    #[arg(long, default_value_t = 10)]
    pub rtl_images: usize,
    /// Output folder of the C project.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Subcommand)]
pub enum BatchCommand {
    /// Expand a sweep file into numbered tasks in a sweep folder (deterministic).
    Plan {
        /// The sweep file (TOML; see search_spaces/sweeps/).
        sweep: PathBuf,
        /// The sweep folder.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Submit the tasks as a SLURM job array (sbatch), or run them here with --local J.
    Submit {
        dir: PathBuf,
        /// Only the tasks that are missing or failed.
        #[arg(long)]
        missing: bool,
        /// Run the tasks as J local processes instead of submitting them.
        #[arg(long, value_name = "J")]
        local: Option<usize>,
    },
    /// Run one task (what each array task runs); a finished task is a no-op.
    Run {
        dir: PathBuf,
        #[arg(long)]
        task: usize,
    },
    /// List done, running, queued, failed and missing tasks.
    Status { dir: PathBuf },
    /// Combine the shards into one table, print the summary and write the plots.
    Merge { dir: PathBuf },
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// An .onnx file or zoo:NAME[:key=value,...] (see `qsearch zoo`).
    #[arg(long, short, default_value = zoo::DEFAULT_MODEL)]
    pub model: String,
    /// A built-in platform (gap8, gap9, pulp-open, xpulpnn) or a platform .toml file.
    #[arg(long, short, default_value = DEFAULT_PLATFORM)]
    pub platform: String,
}

/// The problem: network, platform, search space, objective and limits.
#[derive(Args, Clone)]
pub struct ProblemArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Search space: a built-in one (default, wide) or a search space .toml file.
    #[arg(long, default_value = "default")]
    pub space: String,
    /// What to minimise: a built-in objective (latency, memory, energy, accuracy,
    /// latency-accuracy), a comma-separated list of metrics (latency, flash, ram, memory, energy,
    /// accuracy; several give a Pareto set) or an objective .toml file.
    #[arg(long, default_value = "latency")]
    pub objective: String,
    /// Limit on the total on-chip memory: flash (weights and requantization parameters) plus
    /// peak RAM (activations).
    #[arg(long, value_parser = parse_size)]
    pub budget: Option<u64>,
    /// Limit on flash (weights and requantization parameters).
    #[arg(long, value_parser = parse_size)]
    pub flash: Option<u64>,
    /// Limit on peak RAM (live activations).
    #[arg(long, value_parser = parse_size)]
    pub ram: Option<u64>,
    /// Limit on latency: 5ms, 250us, or 2000000cycles.
    #[arg(long)]
    pub max_latency: Option<String>,
    /// Limit on the predicted accuracy loss, in the sensitivity table's unit (nsr for the noise
    /// proxy, points for measured tables).
    #[arg(long)]
    pub max_accuracy_drop: Option<f64>,
    /// Limit on energy per inference, in millijoules.
    #[arg(long)]
    pub max_energy_mj: Option<f64>,
    /// A sensitivity table (CSV) to use instead of the computed noise proxy.
    #[arg(long)]
    pub sensitivity: Option<PathBuf>,
    /// Folder the run folders are written under.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

/// Knobs of the policies.
#[derive(Args, Clone)]
pub struct PolicyArgs {
    /// Seed of every random choice; the same seed gives the same results.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluation budget of the sampling policies (evolution, random, rl).
    #[arg(long, default_value_t = Settings::default().evaluations)]
    pub evaluations: u64,
    /// Population of the evolutionary search.
    #[arg(long, default_value_t = Settings::default().population)]
    pub population: usize,
    /// Episodes of the reinforcement-learning agent.
    #[arg(long, default_value_t = Settings::default().episodes)]
    pub episodes: usize,
    /// Points of the ILP's Pareto sweep (several objectives).
    #[arg(long, default_value_t = Settings::default().pareto_points)]
    pub pareto_points: usize,
    /// Time limit of one ILP solve, seconds.
    #[arg(long, default_value_t = Settings::default().time_limit)]
    pub time_limit: f64,
    /// Wall-time limit of the whole search, seconds: the policy stops at its next evaluation
    /// after it and keeps the best found so far (no limit when absent, so that the seed fixes
    /// the result).
    #[arg(long, value_name = "SECONDS")]
    pub wall_time: Option<f64>,
    /// Name of the run folder under the results folder (default: derived from the inputs).
    #[arg(long)]
    pub run: Option<String>,
}

#[derive(Args, Clone)]
#[command(after_help = SIZE_HELP)]
pub struct SearchArgs {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// Search policy: memory-driven, ilp, evolution, rl, random or uniform.
    #[arg(long, default_value = "ilp")]
    pub policy: String,
    #[command(flatten)]
    pub policy_args: PolicyArgs,
}

#[derive(Args)]
#[command(after_help = SIZE_HELP)]
pub struct CompareArgs {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// Comma-separated policies to compare.
    #[arg(
        long,
        default_value = "memory-driven,ilp,evolution,rl,random",
        value_delimiter = ','
    )]
    pub policies: Vec<String>,
    /// Seeds per stochastic policy (evolution, rl, random); seeds are seed..seed+N-1.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    #[command(flatten)]
    pub policy_args: PolicyArgs,
}

#[derive(Args)]
pub struct SensitivityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A trained network (checkpoint folder or .onnx) to measure instead of --model's proxy.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Dataset of the measurement (fashion-mnist, a directory in MNIST or CIFAR-10 format, or an
    /// .npz with x_train, y_train, x_test, y_test).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// With --checkpoint: accuracy (accuracy drop in points when only that tensor is quantized),
    /// loss (the loss increase instead), or hessian (for weights, Hutchinson trace times
    /// quantization error, a predicted loss increase; for activations, the measured one).
    #[arg(long, default_value = "accuracy")]
    pub method: String,
    /// Calibration images of the measurement (the last ones of the training split, or the first
    /// ones of --calibration).
    #[arg(long, default_value_t = CALIBRATION_IMAGES)]
    pub calibration_images: usize,
    /// Calibration images in an .npz: array `x` (NHW, NHWC or NCHW; uint8, or floats in [0, 1]
    /// or [0, 255]) and, for a measured table (--checkpoint), labels `y`. Replaces --data's
    /// training images; without --checkpoint, the noise proxy takes its activation statistics
    /// from them instead of 8 synthetic inputs.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Where to write the table (CSV: kind,name,bits,value,unit).
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Training schedule flags.
#[derive(Args)]
pub struct ScheduleArgs {
    /// Dataset: fashion-mnist (Debian's package), a directory in MNIST or CIFAR-10 format, or an
    /// .npz with x_train, y_train, x_test, y_test (see the README).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Seed of the data order (and of everything random).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Keep the last N training images out of training, for a held-out sensitivity measurement
    /// (`qsearch sensitivity --checkpoint` measures on the last images of the training split).
    #[arg(long, default_value_t = 0)]
    pub holdout: usize,
    /// Continue the checkpoint in the output folder.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// An .onnx file or zoo:NAME[:key=value,...].
    #[arg(long, short, default_value = zoo::DEFAULT_MODEL)]
    pub model: String,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Initial learning rate (Adam, cosine decay).
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    pub lr: f64,
    /// Checkpoint folder: model.onnx, model.bpk, optimizer.bpk, state.json.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct FinetuneArgs {
    /// Assignment to fine-tune for: the assignment.json of a search run.
    #[arg(long)]
    pub assignment: PathBuf,
    /// The trained network: a checkpoint folder of `qsearch train` or an .onnx file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[arg(long, default_value_t = presets::FINETUNE_EPOCHS)]
    pub epochs: usize,
    #[arg(long, default_value_t = presets::FINETUNE_LEARNING_RATE)]
    pub lr: f64,
    /// Weight of distillation from the floating-point network (0 disables it).
    #[arg(long, default_value_t = presets::FINETUNE_DISTILL)]
    pub distill: f64,
    /// Output folder: quantized.onnx, quantization.json and the training checkpoint.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Args)]
#[command(after_help = SIZE_HELP)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Uniform precision of weights and activations: 2, 4 or 8.
    #[arg(long, default_value = "8", value_parser = parse_bits)]
    pub bits: Bits,
    /// Check the network against a total on-chip memory budget (flash + peak RAM).
    #[arg(long, value_parser = parse_size)]
    pub budget: Option<u64>,
}

#[derive(Args)]
pub struct CalibrateArgs {
    /// The platform whose parameters are the starting point (name or .toml file).
    #[arg(long, short, default_value = DEFAULT_PLATFORM)]
    pub platform: String,
    /// CSV of measured kernel cycles, as `qsearch microbench` programs print it.
    #[arg(long)]
    pub measurements: PathBuf,
    /// Where to write the refitted platform description.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct ExportArgs {
    /// An .onnx file or zoo:NAME[:key=value,...].
    #[arg(long, short, default_value = zoo::DEFAULT_MODEL)]
    pub model: String,
    /// The .onnx file to write.
    #[arg(long, short)]
    pub output: PathBuf,
}

impl ModelArgs {
    /// The noise proxy's inputs: this network on this platform, with the default search space
    /// and objective and no limits.
    pub fn proxy_inputs(&self, progress: bool) -> Inputs {
        Inputs {
            model: self.model.clone(),
            platform: self.platform.clone(),
            space: "default".into(),
            objective: "latency".into(),
            limits: Limits::default(),
            sensitivity: None,
            results: PathBuf::from("results"),
            progress,
        }
    }
}

impl ProblemArgs {
    pub fn inputs(&self, progress: bool) -> Inputs {
        Inputs {
            model: self.model.model.clone(),
            platform: self.model.platform.clone(),
            space: self.space.clone(),
            objective: self.objective.clone(),
            limits: Limits {
                memory: self.budget,
                flash: self.flash,
                ram: self.ram,
                latency: self.max_latency.clone(),
                energy: self.max_energy_mj.map(|mj| mj / 1e3),
                accuracy_drop: self.max_accuracy_drop,
            },
            sensitivity: self.sensitivity.clone(),
            results: self.results.clone(),
            progress,
        }
    }
}

impl PolicyArgs {
    /// The search settings, checked.
    pub fn settings(&self) -> Result<Settings, SearchError> {
        let settings = Settings {
            seed: self.seed,
            evaluations: self.evaluations,
            population: self.population,
            episodes: self.episodes,
            pareto_points: self.pareto_points,
            time_limit: self.time_limit,
            wall_time: self.wall_time,
        };
        settings.check()?;
        Ok(settings)
    }
}

/// Refuses unknown policy names (before any long preparation).
pub fn check_policies<'a>(
    names: impl IntoIterator<Item = &'a String>,
    settings: &Settings,
) -> Result<(), SearchError> {
    for name in names {
        search::policy(name, settings)?;
    }
    Ok(())
}

impl MainArgs {
    /// The main flow's settings: the floating-point training schedule, the fine-tuning preset
    /// on the given number of images, the policies (checked) and the search settings.
    pub fn settings(&self, progress: bool) -> Result<MainSettings, SearchError> {
        let search = self.policy_args.settings()?;
        check_policies(&self.policies, &search)?;
        let schedule = MainSchedule {
            data: self.data.clone(),
            epochs: self.epochs,
            train_images: self.train_images,
            finetune_images: self.finetune_images,
            top_k: self.top_k,
            accuracy_tie: self.accuracy_tie,
        };
        schedule
            .check()
            .map_err(|e| SearchError::Config(format!("--accuracy-tie: {e}")))?;
        let run = self.policy_args.run.clone();
        Ok(schedule.settings(&self.policies, search, run, true, progress))
    }
}

impl ScheduleArgs {
    /// The schedule preset for `epochs` at learning rate `lr` with distillation `distill`, on
    /// these flags' data order, subset and batch size.
    pub fn config(&self, epochs: usize, lr: f64, distill: f64) -> TrainConfig {
        TrainConfig {
            batch_size: self.batch_size,
            seed: self.seed,
            limit: self.limit,
            holdout: self.holdout,
            ..presets::schedule(epochs, lr, distill)
        }
    }
}

impl SensitivityArgs {
    /// The measurement `--method` names.
    pub fn method(&self) -> Result<Measure, String> {
        self.method.parse().map_err(|e| format!("--method {e}"))
    }
}

impl DeployArgs {
    pub fn settings(&self) -> DeploySettings {
        DeploySettings {
            platform: self.platform.clone(),
            data: self.data.clone(),
            verify_images: self.verify_images,
            agreement_images: self.agreement_images,
            assignment: self.assignment.clone(),
            requant_bits: self.requant_bits,
            deeploy_strict: self.deeploy_strict,
            rtl_images: (!self.no_rtl).then_some(self.rtl_images),
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    parse_bytes(text).map_err(|e| e.to_string())
}

fn parse_bits(text: &str) -> Result<Bits, String> {
    text.parse::<u32>()
        .ok()
        .and_then(Bits::from_count)
        .ok_or_else(|| format!("'{text}' is not a supported precision; use 2, 4 or 8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn deploy_settings(extra: &[&str]) -> DeploySettings {
        let args = ["qsearch", "deploy", "--checkpoint", "ft", "--output", "out"];
        let cli = Cli::try_parse_from(args.iter().chain(extra)).unwrap();
        match cli.command {
            Some(Command::Deploy(args)) => args.settings(),
            _ => panic!("not the deploy command"),
        }
    }

    #[test]
    fn the_rtl_stage_runs_ten_images_unless_told_otherwise() {
        assert_eq!(deploy_settings(&[]).rtl_images, Some(10));
        assert_eq!(deploy_settings(&["--rtl-images", "3"]).rtl_images, Some(3));
        assert_eq!(deploy_settings(&["--no-rtl"]).rtl_images, None);
    }
}
