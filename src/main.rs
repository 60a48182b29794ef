//! The `qsearch` command line. It parses flags, calls the library and prints; the library does
//! the work.

use anyhow::{Context, Result, bail};
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use qsearch::batch;
use qsearch::cost::calibrate::{calibrate, read_measurements};
use qsearch::exit;
use qsearch::flow::{
    CALIBRATION_IMAGES, DeploySettings, Inputs, Limits, MAIN_CALIBRATION_IMAGES, MainSettings,
    Measure, check_fit, checkpoint_files, compare, deploy, finetune_file, load_checkpoint_model,
    measured_sensitivity, microbench, prepare, run_main, search, train,
};
use qsearch::graph::FusedGraph;
use qsearch::graph::{load_model, onnx, zoo};
use qsearch::platform::{BUILT_IN, DEFAULT_PLATFORM, Platform};
use qsearch::precision::Bits;
use qsearch::report::{InspectOptions, inspect};
use qsearch::search::{Settings, register_all};
use qsearch::table::Table;
use qsearch::train::{Checkpoint, TrainConfig};
use qsearch::units::{format_bytes, parse_bytes};
use std::path::PathBuf;

const SIZE_HELP: &str = "Sizes: 512KB = 512,000 bytes and 0.5MB = 500,000 (decimal, as datasheets); \
512KiB = 524,288 (binary); a bare number is bytes.";

const MAIN_HELP: &str = concat!(
    "Sizes: 512KB = 512,000 bytes and 0.5MB = 500,000 (decimal, as datasheets); \
512KiB = 524,288 (binary); a bare number is bytes.\n\n",
    "Exit codes: 0 success; 1 error (bad input, a failed run, or a check that did not pass, such \
as a deployment that is not bit-exact); 2 usage error (unknown command or flag, malformed \
value). A failed command's last line on standard error is `qsearch: exit code N`."
);

#[derive(Parser)]
#[command(
    name = "qsearch",
    version,
    about = "Mixed-precision quantization search for neural networks on PULP microcontrollers",
    long_about = "Mixed-precision quantization search for neural networks on PULP microcontrollers.\n\n\
Without a subcommand, runs the whole flow on the defaults (network zoo:fashion-cnn, platform gap8, \
exact ILP search), e.g. `qsearch --budget 512KB --objective latency`.",
    after_help = MAIN_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    main: MainArgs,
    /// No progress display (bars with an ETA on a terminal, a line every 10 s in a log).
    #[arg(long, global = true)]
    quiet: bool,
}

/// The main flow's flags (no subcommand).
#[derive(Args, Clone)]
#[command(after_help = SIZE_HELP)]
struct MainArgs {
    #[command(flatten)]
    problem: ProblemArgs,
    #[command(flatten)]
    policy_args: PolicyArgs,
    /// Dataset to train and fine-tune on.
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// Floating-point training epochs (the trained network is cached under the results folder).
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Use only the first N training images for floating-point training (all when absent).
    #[arg(long)]
    train_images: Option<usize>,
    /// Training images per fine-tuning run (a short schedule of one pass).
    #[arg(long, default_value_t = 10_000)]
    finetune_images: usize,
    /// Candidates fine-tuned and re-ranked by measured accuracy.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// Policies whose winners are fine-tuned and reported next to the exact optimum.
    #[arg(
        long,
        default_value = "memory-driven,evolution,rl,random",
        value_delimiter = ','
    )]
    policies: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
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
    /// Write the kernel microbenchmarks that `calibrate` reads; with --run, measure them on QEMU
    /// and calibrate the platform.
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
struct MicrobenchArgs {
    /// The platform to calibrate (its parameters are the starting point).
    #[arg(long, short, default_value = "rv32imc")]
    platform: String,
    /// Output folder: cases/ (one program each), measurements.csv, the fitted platform.
    #[arg(long, short)]
    output: PathBuf,
    /// Build and run the programs on QEMU (rv32imc), calibrate on four fifths of the rows
    /// and report the error on the held-out fifth.
    #[arg(long)]
    run: bool,
    /// With --run: a fine-tuned network (folder of `qsearch finetune`) whose whole deployed
    /// instruction count is compared with the calibrated model's prediction.
    #[arg(long)]
    network: Option<PathBuf>,
}

#[derive(Args)]
struct DeployArgs {
    /// The fine-tuned network: the output folder of `qsearch finetune` (quantized.onnx and
    /// quantization.json).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The assignment the network must have been fine-tuned for (checked when given).
    #[arg(long)]
    assignment: Option<PathBuf>,
    /// Platform of the cost model figures printed next to the generated code's.
    #[arg(long, short, default_value = DEFAULT_PLATFORM)]
    platform: String,
    /// Dataset whose test images verify the deployment.
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// Test images the host build must reproduce bit-exact at every layer.
    #[arg(long, default_value_t = 1000)]
    verify_images: usize,
    /// Test images on which the golden and fake-quantized models' predictions are compared.
    #[arg(long, default_value_t = 10_000)]
    agreement_images: usize,
    /// Integer width of the requantization products: 64 (30-bit multipliers) or 32 (what
    /// PULP-NN and DORY compute in; fewer multiplier bits).
    #[arg(long, default_value_t = 64)]
    requant_bits: u32,
    /// Refuse layers below 8 bits in the Deeploy export, rather than carry them in bytes on
    /// Deeploy's 8-bit kernels (exact, without the memory saving).
    #[arg(long)]
    deeploy_strict: bool,
    /// Output folder of the C project.
    #[arg(long, short)]
    output: PathBuf,
}

#[derive(Subcommand)]
enum BatchCommand {
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
struct ModelArgs {
    /// An .onnx file or zoo:NAME[:key=value,...] (see `qsearch zoo`).
    #[arg(long, short, default_value = zoo::DEFAULT_MODEL)]
    model: String,
    /// A built-in platform (gap8, gap9, pulp-open, xpulpnn) or a platform .toml file.
    #[arg(long, short, default_value = DEFAULT_PLATFORM)]
    platform: String,
}

/// The problem: network, platform, search space, objective and limits.
#[derive(Args, Clone)]
struct ProblemArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Search space: a built-in one (default, wide) or a search space .toml file.
    #[arg(long, default_value = "default")]
    space: String,
    /// What to minimise: a built-in objective (latency, memory, energy, accuracy,
    /// latency-accuracy), a comma-separated list of metrics (latency, flash, ram, memory, energy,
    /// accuracy; several give a Pareto set) or an objective .toml file.
    #[arg(long, default_value = "latency")]
    objective: String,
    /// Limit on the total on-chip memory: flash (weights and requantization parameters) plus
    /// peak RAM (activations).
    #[arg(long, value_parser = parse_size)]
    budget: Option<u64>,
    /// Limit on flash (weights and requantization parameters).
    #[arg(long, value_parser = parse_size)]
    flash: Option<u64>,
    /// Limit on peak RAM (live activations).
    #[arg(long, value_parser = parse_size)]
    ram: Option<u64>,
    /// Limit on latency: 5ms, 250us, or 2000000cycles.
    #[arg(long)]
    max_latency: Option<String>,
    /// Limit on the predicted accuracy loss, in the sensitivity table's unit (nsr for the noise
    /// proxy, points for measured tables).
    #[arg(long)]
    max_accuracy_drop: Option<f64>,
    /// Limit on energy per inference, in millijoules.
    #[arg(long)]
    max_energy_mj: Option<f64>,
    /// A sensitivity table (CSV) to use instead of the computed noise proxy.
    #[arg(long)]
    sensitivity: Option<PathBuf>,
    /// Folder the run folders are written under.
    #[arg(long, default_value = "results")]
    results: PathBuf,
}

impl ProblemArgs {
    fn inputs(&self, progress: bool) -> Inputs {
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

/// Knobs of the policies.
#[derive(Args, Clone)]
struct PolicyArgs {
    /// Seed of every random choice; the same seed gives the same results.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluation budget of the sampling policies (evolution, random, rl).
    #[arg(long, default_value_t = Settings::default().evaluations)]
    evaluations: u64,
    /// Population of the evolutionary search.
    #[arg(long, default_value_t = Settings::default().population)]
    population: usize,
    /// Episodes of the reinforcement-learning agent.
    #[arg(long, default_value_t = Settings::default().episodes)]
    episodes: usize,
    /// Points of the ILP's Pareto sweep (several objectives).
    #[arg(long, default_value_t = Settings::default().pareto_points)]
    pareto_points: usize,
    /// Time limit of one ILP solve, seconds.
    #[arg(long, default_value_t = Settings::default().time_limit)]
    time_limit: f64,
    /// Wall-time limit of the whole search, seconds: the policy stops at its next evaluation
    /// after it and keeps the best found so far (no limit when absent, so that the seed fixes
    /// the result).
    #[arg(long, value_name = "SECONDS")]
    wall_time: Option<f64>,
    /// Name of the run folder under the results folder (default: derived from the inputs).
    #[arg(long)]
    run: Option<String>,
}

impl PolicyArgs {
    fn settings(&self) -> Settings {
        Settings {
            seed: self.seed,
            evaluations: self.evaluations,
            population: self.population,
            episodes: self.episodes,
            pareto_points: self.pareto_points,
            time_limit: self.time_limit,
            wall_time: self.wall_time,
        }
    }
}

#[derive(Args, Clone)]
#[command(after_help = SIZE_HELP)]
struct SearchArgs {
    #[command(flatten)]
    problem: ProblemArgs,
    /// Search policy: memory-driven, ilp, evolution, rl, random or uniform.
    #[arg(long, default_value = "ilp")]
    policy: String,
    #[command(flatten)]
    policy_args: PolicyArgs,
}

#[derive(Args)]
#[command(after_help = SIZE_HELP)]
struct CompareArgs {
    #[command(flatten)]
    problem: ProblemArgs,
    /// Comma-separated policies to compare.
    #[arg(
        long,
        default_value = "memory-driven,ilp,evolution,rl,random",
        value_delimiter = ','
    )]
    policies: Vec<String>,
    /// Seeds per stochastic policy (evolution, rl, random); seeds are seed..seed+N-1.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    #[command(flatten)]
    policy_args: PolicyArgs,
}

#[derive(Args)]
struct SensitivityArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A trained network (checkpoint folder or .onnx) to measure instead of --model's proxy.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Dataset of the measurement (fashion-mnist, or a directory in MNIST or CIFAR-10 format).
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    /// With --checkpoint: accuracy (accuracy drop in points when only that tensor is quantized),
    /// loss (the loss increase instead), or hessian (for weights, Hutchinson trace times
    /// quantization error, a predicted loss increase; for activations, the measured one).
    #[arg(long, default_value = "accuracy")]
    method: String,
    /// Calibration images of the measurement (the last ones of the training split).
    #[arg(long, default_value_t = CALIBRATION_IMAGES)]
    calibration_images: usize,
    /// Where to write the table (CSV: kind,name,bits,value,unit).
    #[arg(long, short)]
    output: PathBuf,
}

/// Training schedule flags.
#[derive(Args)]
struct ScheduleArgs {
    /// Dataset: fashion-mnist (Debian's package), or a directory in MNIST or CIFAR-10 format.
    #[arg(long, default_value = "fashion-mnist")]
    data: String,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Seed of the data order (and of everything random).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    limit: Option<usize>,
    /// Keep the last N training images out of training, for a held-out sensitivity measurement
    /// (`qsearch sensitivity --checkpoint` measures on the last images of the training split).
    #[arg(long, default_value_t = 0)]
    holdout: usize,
    /// Continue the checkpoint in the output folder.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// An .onnx file or zoo:NAME[:key=value,...].
    #[arg(long, short, default_value = zoo::DEFAULT_MODEL)]
    model: String,
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    epochs: usize,
    /// Initial learning rate (Adam, cosine decay).
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    lr: f64,
    /// Checkpoint folder: model.onnx, model.bpk, optimizer.bpk, state.json.
    #[arg(long, short)]
    output: PathBuf,
}

#[derive(Args)]
struct FinetuneArgs {
    /// Assignment to fine-tune for: the assignment.json of a search run.
    #[arg(long)]
    assignment: PathBuf,
    /// The trained network: a checkpoint folder of `qsearch train` or an .onnx file.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    /// Weight of distillation from the floating-point network (0 disables it).
    #[arg(long, default_value_t = 0.5)]
    distill: f64,
    /// Output folder: quantized.onnx, quantization.json and the training checkpoint.
    #[arg(long, short)]
    output: PathBuf,
}

impl ScheduleArgs {
    fn config(&self, epochs: usize, lr: f64, distill: f64) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.batch_size,
            learning_rate: lr,
            final_learning_rate: lr / 20.0,
            seed: self.seed,
            limit: self.limit,
            holdout: self.holdout,
            distill,
            ..TrainConfig::default()
        }
    }
}

#[derive(Args)]
#[command(after_help = SIZE_HELP)]
struct InspectArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Uniform precision of weights and activations: 2, 4 or 8.
    #[arg(long, default_value = "8", value_parser = parse_bits)]
    bits: Bits,
    /// Check the network against a total on-chip memory budget (flash + peak RAM).
    #[arg(long, value_parser = parse_size)]
    budget: Option<u64>,
}

#[derive(Args)]
struct CalibrateArgs {
    /// The platform whose parameters are the starting point (name or .toml file).
    #[arg(long, short, default_value = DEFAULT_PLATFORM)]
    platform: String,
    /// CSV of measured kernel cycles, as `qsearch microbench` programs print it.
    #[arg(long)]
    measurements: PathBuf,
    /// Where to write the refitted platform description.
    #[arg(long, short)]
    output: PathBuf,
}

#[derive(Args)]
struct ExportArgs {
    /// An .onnx file or zoo:NAME[:key=value,...].
    #[arg(long, short, default_value = zoo::DEFAULT_MODEL)]
    model: String,
    /// The .onnx file to write.
    #[arg(long, short)]
    output: PathBuf,
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

/// The command line, refusing the main flow's flags before a command (only the global ones,
/// `--quiet`, go anywhere).
fn parse() -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    if let Some((name, _)) = matches.subcommand() {
        let given: Vec<String> = command
            .get_arguments()
            .filter(|a| !a.is_global_set())
            .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
            .map(|a| format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))
            .collect();
        if !given.is_empty() {
            return Err(command.error(
                ErrorKind::ArgumentConflict,
                format!(
                    "the command '{name}' cannot be used with {}, which belong to the main flow; give the options after the command: qsearch {name} [OPTIONS]",
                    given.join(", ")
                ),
            ));
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

fn main() {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = error.exit_code();
            // --help and --version print to standard output and succeed.
            let _ = error.print();
            if error.use_stderr() {
                eprintln!("{}", exit::line(code));
            }
            std::process::exit(code);
        }
    };
    qsearch::progress::set_quiet(cli.quiet);
    if let Err(error) = run(cli) {
        eprintln!("error: {error:#}");
        eprintln!("{}", exit::line(exit::ERROR));
        std::process::exit(exit::ERROR);
    }
}

/// Whether long work shows its progress (`--quiet` turns it off).
fn progress() -> bool {
    !qsearch::progress::quiet()
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => run_main_flow(cli.main),
        Some(Command::Search(args)) => run_search(args),
        Some(Command::Compare(args)) => run_compare(args),
        Some(Command::Train(args)) => {
            let config = args.schedule.config(args.epochs, args.lr, 0.0);
            let trained = train(
                &args.model,
                &args.schedule.data,
                &config,
                &args.output,
                args.schedule.resume,
                progress(),
            )?;
            for log in &trained.state.history {
                println!(
                    "epoch {}: loss {:.4}, test accuracy {:.2}%, {:.0} images/s",
                    log.epoch, log.loss, log.test_accuracy, log.images_per_second
                );
            }
            let files: Vec<String> = checkpoint_files(&args.output)
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            println!("wrote {}", files.join(", "));
            Ok(())
        }
        Some(Command::Finetune(args)) => {
            let config = args.schedule.config(args.epochs, args.lr, args.distill);
            if Checkpoint::new(&args.output).exists() && !args.schedule.resume {
                bail!(
                    "{} already holds a checkpoint; pass --resume to continue it, or choose another folder",
                    args.output.display()
                );
            }
            let done = finetune_file(
                &args.assignment,
                &args.checkpoint,
                &args.schedule.data,
                &config,
                &args.output,
                progress(),
            )?;
            println!("fine-tuned test accuracy {:.2}%", done.test_accuracy);
            println!(
                "wrote {}/quantized.onnx (batch norm folded) and {}/quantization.json",
                args.output.display(),
                args.output.display()
            );
            Ok(())
        }
        Some(Command::Sensitivity(args)) if args.checkpoint.is_some() => {
            let graph = load_checkpoint_model(
                args.checkpoint
                    .as_deref()
                    .unwrap_or(std::path::Path::new("")),
            )?;
            let dataset = qsearch::train::data::load(&args.data)?;
            check_fit(&graph, &dataset)?;
            let method = match args.method.as_str() {
                "accuracy" => Measure::Accuracy,
                "loss" => Measure::Loss,
                "hessian" => Measure::Hessian,
                other => bail!("--method {other}: use accuracy, loss or hessian"),
            };
            let table = measured_sensitivity(
                &graph,
                &dataset,
                method,
                args.calibration_images.max(1),
                progress(),
            );
            table.write_csv(&FusedGraph::from_graph(&graph), &args.output)?;
            println!(
                "wrote {} (unit {}; {})",
                args.output.display(),
                table.unit,
                table.source
            );
            Ok(())
        }
        Some(Command::Sensitivity(args)) => {
            let inputs = Inputs {
                model: args.model.model.clone(),
                platform: args.model.platform.clone(),
                space: "default".into(),
                objective: "latency".into(),
                limits: Limits::default(),
                sensitivity: None,
                results: PathBuf::from("results"),
                progress: progress(),
            };
            let prepared = prepare(&inputs)?;
            let p = &prepared.problem;
            p.sensitivity.write_csv(&p.fused, &args.output)?;
            println!(
                "wrote {} ({} layers with weights, {} activation buffers; unit {}; {})",
                args.output.display(),
                p.fused.weighted_layers().count(),
                p.fused.tensors.len(),
                p.sensitivity.unit,
                p.sensitivity.source
            );
            Ok(())
        }
        Some(Command::Inspect(args)) => run_inspect(args),
        Some(Command::Calibrate(args)) => run_calibrate(args),
        Some(Command::Batch(command)) => run_batch(command),
        Some(Command::Microbench(args)) => {
            let report = microbench(
                &args.platform,
                &args.output,
                args.run,
                args.network.as_deref(),
            )?;
            print!("{}", report.text);
            Ok(())
        }
        Some(Command::Deploy(args)) => {
            let settings = DeploySettings {
                platform: args.platform,
                data: args.data,
                verify_images: args.verify_images,
                agreement_images: args.agreement_images,
                assignment: args.assignment,
                requant_bits: args.requant_bits,
                deeploy_strict: args.deeploy_strict,
            };
            let report = deploy(&args.checkpoint, &settings, &args.output)?;
            print!("{}", report.text);
            println!("wrote {}/", report.dir.display());
            let (exact, of) = report.bit_exact;
            if exact < of {
                bail!(
                    "the generated C and the DORY export reproduced the golden model on only {exact} of {of} images (see the report above)"
                );
            }
            if report.deeploy_exact == Some(false) {
                bail!(
                    "Deeploy did not read the integer graph the export holds (see the report above)"
                );
            }
            Ok(())
        }
        Some(Command::Export(args)) => {
            let graph = load_model(&args.model)?;
            onnx::export_file(&graph, &args.output)?;
            println!(
                "wrote {} ({} nodes) to {}",
                graph.name,
                graph.nodes.len(),
                args.output.display()
            );
            Ok(())
        }
        Some(Command::Zoo) => {
            let mut t = Table::new(&["network<", "options (defaults)<", "description<"])
                .wrap("description");
            for entry in zoo::ENTRIES {
                let options: Vec<String> = entry
                    .options
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                t.row(vec![
                    format!("zoo:{}", entry.name),
                    options.join(","),
                    entry.description.into(),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
        Some(Command::Platforms { show: Some(name) }) => {
            print!("{}", Platform::load(&name)?.to_toml()?);
            Ok(())
        }
        Some(Command::Platforms { show: None }) => {
            let mut t = Table::new(&[
                "platform<",
                "cores",
                "MHz",
                "L1 usable",
                "L2",
                "description<",
            ])
            .wrap("description");
            for (name, _) in BUILT_IN {
                let p = Platform::load(name)?;
                let hw = &p.hardware;
                t.row(vec![
                    p.name.clone(),
                    p.cores().to_string(),
                    format!("{:.0}", hw.clock_hz.value / 1e6),
                    format_bytes(hw.l1_usable_bytes.value as u64),
                    format_bytes(hw.l2_bytes.value as u64),
                    p.description.clone(),
                ]);
            }
            print!("{}", t.render());
            Ok(())
        }
    }
}

fn run_batch(command: BatchCommand) -> Result<()> {
    match command {
        BatchCommand::Plan { sweep, output } => {
            let plan = batch::plan(&batch::Sweep::read(&sweep)?, &output)?;
            println!(
                "sweep {}: {} tasks planned in {}",
                plan.sweep.name,
                plan.tasks.len(),
                output.display()
            );
        }
        BatchCommand::Submit {
            dir,
            missing,
            local,
        } => {
            let dir = std::path::absolute(&dir)?;
            let status = batch::status(&dir)?;
            let tasks: Vec<usize> = if missing || local.is_some() {
                status.to_run()
            } else {
                status.tasks.iter().map(|(t, _)| t.task).collect()
            };
            if tasks.is_empty() {
                println!("nothing to run: every task is done, queued or running");
                return Ok(());
            }
            if let Some(jobs) = local {
                let failed = batch::run_local(&dir, &tasks, jobs)?;
                println!(
                    "ran {} tasks as up to {jobs} local processes: {} failed",
                    tasks.len(),
                    failed.len()
                );
                for (task, why) in &failed {
                    println!("  task {task}: {why}");
                }
                if !failed.is_empty() {
                    bail!(
                        "{} tasks failed; logs in {}/logs/",
                        failed.len(),
                        dir.display()
                    );
                }
            } else {
                let plan = batch::SweepDir::new(&dir).plan()?;
                let job = batch::submit(&plan, &dir, &tasks)?;
                println!(
                    "submitted job {} (array {}, {} tasks; script {})",
                    job.job_id,
                    batch::array_ranges(&tasks),
                    tasks.len(),
                    job.script
                );
            }
        }
        BatchCommand::Run { dir, task } => match batch::run_task(&dir, task)? {
            batch::TaskRun::AlreadyDone => println!("task {task}: already done"),
            batch::TaskRun::Finished {
                candidates,
                seconds,
            } => println!("task {task}: done, {candidates} candidates in {seconds:.2} s"),
        },
        BatchCommand::Status { dir } => print!("{}", batch::status(&dir)?.render()),
        BatchCommand::Merge { dir } => {
            let merged = batch::merge(&dir)?;
            print!("{}", merged.text);
            println!(
                "wrote {}/: merged.parquet, merged.csv ({} rows), summary.parquet, summary.csv, summary.txt, {} plots in plots/",
                dir.display(),
                merged.frame.height(),
                merged.plots.len()
            );
        }
    }
    Ok(())
}

fn check_policy(name: &str) -> Result<()> {
    let registry = register_all();
    if !registry.contains_key(name) {
        bail!(
            "unknown policy '{name}'; available: {}",
            registry.keys().copied().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Prints the limits as resolved bytes, so the size convention is visible.
fn print_limits(args: &ProblemArgs) {
    for (flag, value) in [
        ("--budget", args.budget),
        ("--flash", args.flash),
        ("--ram", args.ram),
    ] {
        if let Some(bytes) = value {
            eprintln!("{flag} = {}", format_bytes(bytes));
        }
    }
}

fn run_search(args: SearchArgs) -> Result<()> {
    check_policy(&args.policy)?;
    print_limits(&args.problem);
    let prepared = prepare(&args.problem.inputs(progress()))?;
    let settings = args.policy_args.settings();
    let report = search(
        &prepared,
        &args.policy,
        &settings,
        args.policy_args.run.as_deref(),
        progress(),
    )?;
    print!("{}", report.text);
    if report.result.best().is_none() {
        bail!(
            "the {} policy found no assignment meeting the limits in {} evaluations; try another policy (ilp is exact) or looser limits",
            args.policy,
            report.result.evaluations
        );
    }
    Ok(())
}

fn run_main_flow(args: MainArgs) -> Result<()> {
    for p in &args.policies {
        check_policy(p)?;
    }
    print_limits(&args.problem);
    let progress = progress();
    let settings = MainSettings {
        data: args.data.clone(),
        train: TrainConfig {
            epochs: args.epochs,
            seed: args.policy_args.seed,
            limit: args.train_images,
            holdout: MAIN_CALIBRATION_IMAGES,
            ..TrainConfig::default()
        },
        finetune: TrainConfig {
            epochs: 1,
            learning_rate: 5e-4,
            final_learning_rate: 2.5e-5,
            seed: args.policy_args.seed,
            limit: Some(args.finetune_images),
            holdout: MAIN_CALIBRATION_IMAGES,
            distill: 0.5,
            ..TrainConfig::default()
        },
        top_k: args.top_k.max(1),
        policies: args.policies.clone(),
        search: args.policy_args.settings(),
        run: args.policy_args.run.clone(),
        progress,
    };
    let report = run_main(&args.problem.inputs(progress), &settings)?;
    print!("{}", report.text);
    println!(
        "wrote {}/ (report.md, tradeoff.csv, tradeoff.parquet, tradeoff.svg, tradeoff.png, chosen.json, the search's files, finetune/, deploy/)",
        report.dir.display()
    );
    Ok(())
}

fn run_compare(args: CompareArgs) -> Result<()> {
    for p in &args.policies {
        check_policy(p)?;
    }
    print_limits(&args.problem);
    let prepared = prepare(&args.problem.inputs(progress()))?;
    let settings = args.policy_args.settings();
    let report = compare(
        &prepared,
        &args.policies,
        args.seeds,
        &settings,
        args.policy_args.run.as_deref(),
        progress(),
    )?;
    print!("{}", report.text);
    println!(
        "wrote {}/ (candidates and summary as parquet and CSV, overlay.svg, overlay.png, report.txt, manifest.json)",
        report.dir.display()
    );
    Ok(())
}

fn run_inspect(args: InspectArgs) -> Result<()> {
    let graph = load_model(&args.model.model)?;
    let platform = Platform::load(&args.model.platform)?;
    let options = InspectOptions {
        bits: args.bits,
        budget: args.budget,
    };
    print!("{}", inspect(&graph, &platform, &options));
    Ok(())
}

fn run_calibrate(args: CalibrateArgs) -> Result<()> {
    let platform = Platform::load(&args.platform)?;
    let rows = read_measurements(&args.measurements)?;
    let label = args.measurements.display().to_string();
    let (fitted, report) = calibrate(&platform, &rows, &label)?;
    let mut t = Table::new(&[
        "line", "kernel<", "measured", "before", "error", "after", "error",
    ]);
    let pct = |p: f64, m: f64| format!("{:+.1}%", 100.0 * (p - m) / m);
    for r in &report.rows {
        t.row(vec![
            r.line.to_string(),
            r.kernel.clone(),
            format!("{:.0}", r.measured),
            format!("{:.0}", r.before),
            pct(r.before, r.measured),
            format!("{:.0}", r.after),
            pct(r.after, r.measured),
        ]);
    }
    print!("{}", t.render());
    println!();
    let mut p = Table::new(&["parameter<", "before", "after"]);
    for (name, before, after) in &report.fitted {
        p.row(vec![
            name.clone(),
            format!("{before:.4}"),
            format!("{after:.4}"),
        ]);
    }
    print!("{}", p.render());
    if !report.untouched.is_empty() {
        println!(
            "not exercised by the measurements (kept): {}",
            report.untouched.join(", ")
        );
    }
    println!(
        "\nMAPE over {} measurements: {:.2}% before, {:.2}% after the fit",
        rows.len(),
        report.mape_before,
        report.mape_after
    );
    let text = fitted
        .to_toml()
        .context("serializing the fitted platform")?;
    let tmp = args.output.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {}", args.output.display());
    if report.mape_after > report.mape_before {
        bail!("the fit made the error worse; check the measurements");
    }
    Ok(())
}
