//! One function per command: it takes the command's run config from its flags, calls the
//! library and prints what comes back. Failures are errors; `main` turns them into exit codes.

use super::flags::{
    BatchCommand, CalibrateArgs, Cli, Command, CompareArgs, DeployArgs, ExportArgs, FinetuneArgs,
    InspectArgs, MainArgs, MicrobenchArgs, ProblemArgs, SearchArgs, SensitivityArgs, TrainArgs,
    check_policies,
};
use anyhow::{Context, Result, anyhow, bail};
use qsearch::batch;
use qsearch::cost::calibrate::{calibrate, read_measurements};
use qsearch::flow::{
    calibrated_noise_proxy, calibration_file, check_fit, checkpoint_files, compare, deploy,
    finetune_file, load_checkpoint_model, measured_sensitivity, microbench, prepare, run_main,
    search, train,
};
use qsearch::graph::{FusedGraph, load_model, onnx, zoo};
use qsearch::platform::{self, Platform};
use qsearch::report::{InspectOptions, calibration_report, inspect};
use qsearch::results::write_atomic;
use qsearch::train::Checkpoint;
use qsearch::units::format_bytes;
use std::path::Path;

/// Whether long work shows its progress (`--quiet` turns it off).
fn progress() -> bool {
    !qsearch::progress::quiet()
}

/// Runs the command `cli` names (the main flow without one).
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => run_main_flow(cli.main),
        Some(Command::Search(args)) => run_search(args),
        Some(Command::Compare(args)) => run_compare(args),
        Some(Command::Train(args)) => run_train(args),
        Some(Command::Finetune(args)) => run_finetune(args),
        Some(Command::Sensitivity(args)) => match &args.checkpoint {
            Some(checkpoint) => run_measured_sensitivity(&args, checkpoint),
            None => run_proxy_sensitivity(&args),
        },
        Some(Command::Inspect(args)) => run_inspect(args),
        Some(Command::Calibrate(args)) => run_calibrate(args),
        Some(Command::Batch(command)) => run_batch(command),
        Some(Command::Microbench(args)) => run_microbench(args),
        Some(Command::Deploy(args)) => run_deploy(args),
        Some(Command::Export(args)) => run_export(args),
        Some(Command::Zoo) => {
            print!("{}", zoo::listing().render());
            Ok(())
        }
        Some(Command::Platforms { show: Some(name) }) => {
            print!("{}", Platform::load(&name)?.to_toml()?);
            Ok(())
        }
        Some(Command::Platforms { show: None }) => {
            print!("{}", platform::listing()?.render());
            Ok(())
        }
    }
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

fn run_main_flow(args: MainArgs) -> Result<()> {
    let progress = progress();
    let settings = args.settings(progress)?;
    print_limits(&args.problem);
    let report = run_main(&args.problem.inputs(progress), &settings)?;
    print!("{}", report.text);
    println!(
        "wrote {}/ (report.md, tradeoff.csv, tradeoff.parquet, tradeoff.svg, tradeoff.png, chosen.json, the search's files, finetune/, deploy/)",
        report.dir.display()
    );
    Ok(())
}

fn run_search(args: SearchArgs) -> Result<()> {
    let settings = args.policy_args.settings()?;
    check_policies([&args.policy], &settings)?;
    print_limits(&args.problem);
    let prepared = prepare(&args.problem.inputs(progress()))?;
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

fn run_compare(args: CompareArgs) -> Result<()> {
    let settings = args.policy_args.settings()?;
    check_policies(&args.policies, &settings)?;
    print_limits(&args.problem);
    let prepared = prepare(&args.problem.inputs(progress()))?;
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

fn run_train(args: TrainArgs) -> Result<()> {
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

fn run_finetune(args: FinetuneArgs) -> Result<()> {
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

/// `sensitivity --checkpoint`: a table measured on the dataset's last training images, or on
/// the --calibration file's.
fn run_measured_sensitivity(args: &SensitivityArgs, checkpoint: &Path) -> Result<()> {
    let graph = load_checkpoint_model(checkpoint)?;
    let method = args.method().map_err(|e| anyhow!(e))?;
    let images = args.calibration_images.max(1);
    let calibration = match &args.calibration {
        Some(path) => calibration_file(&graph, path, images, true)?,
        None => {
            let dataset = qsearch::train::data::load(&args.data)?;
            check_fit(&graph, &dataset)?;
            dataset.train.split_off(images).1
        }
    };
    let table = measured_sensitivity(&graph, &calibration, method, progress());
    table.write_csv(&FusedGraph::from_graph(&graph), &args.output)?;
    println!(
        "wrote {} (unit {}; {})",
        args.output.display(),
        table.unit,
        table.source
    );
    Ok(())
}

/// `sensitivity` without a checkpoint: the noise proxy of `--model`, on synthetic inputs or the
/// --calibration file's images.
fn run_proxy_sensitivity(args: &SensitivityArgs) -> Result<()> {
    let (fused, table) = match &args.calibration {
        Some(path) => {
            let graph = load_model(&args.model.model)?;
            let images = calibration_file(&graph, path, args.calibration_images.max(1), false)?;
            let table = calibrated_noise_proxy(&graph, &images, &path.display().to_string())?;
            (FusedGraph::from_graph(&graph), table)
        }
        None => {
            let prepared = prepare(&args.model.proxy_inputs(progress()))?;
            let p = prepared.problem;
            (p.fused, p.sensitivity)
        }
    };
    table.write_csv(&fused, &args.output)?;
    println!(
        "wrote {} ({} layers with weights, {} activation buffers; unit {}; {})",
        args.output.display(),
        fused.weighted_layers().count(),
        fused.tensors.len(),
        table.unit,
        table.source
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
    print!("{}", calibration_report(&report, rows.len()));
    let text = fitted
        .to_toml()
        .context("serializing the fitted platform")?;
    write_atomic(&args.output, text.as_bytes())
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("wrote {}", args.output.display());
    if report.mape_after > report.mape_before {
        bail!("the fit made the error worse; check the measurements");
    }
    Ok(())
}

fn run_microbench(args: MicrobenchArgs) -> Result<()> {
    let report = microbench(
        &args.platform,
        &args.output,
        args.run,
        args.network.as_deref(),
    )?;
    print!("{}", report.text);
    Ok(())
}

fn run_deploy(args: DeployArgs) -> Result<()> {
    let report = deploy(&args.checkpoint, &args.settings(), &args.output)?;
    print!("{}", report.text);
    println!("wrote {}/", report.dir.display());
    let (exact, of) = report.bit_exact;
    if exact < of {
        bail!(
            "the generated C and the DORY export reproduced the golden model on only {exact} of {of} images (see the report above)"
        );
    }
    if report.deeploy_exact == Some(false) {
        bail!("Deeploy did not read the integer graph the export holds (see the report above)");
    }
    Ok(())
}

fn run_export(args: ExportArgs) -> Result<()> {
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
        } => submit(&std::path::absolute(&dir)?, missing, local)?,
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
            let plots = match merged.plots.len() {
                0 => String::new(),
                n => format!(", {n} plots in plots/"),
            };
            println!(
                "wrote {}/: merged.parquet, merged.csv ({} rows), summary.parquet, summary.csv, summary.txt{plots}",
                dir.display(),
                merged.frame.height(),
            );
        }
    }
    Ok(())
}

/// `batch submit`: the tasks to run as a SLURM job array, or as `local` processes here.
fn submit(dir: &Path, missing: bool, local: Option<usize>) -> Result<()> {
    let status = batch::status(dir)?;
    let tasks = batch::tasks_to_submit(&status, missing || local.is_some());
    if tasks.is_empty() {
        println!("nothing to run: every task is done, queued or running");
        return Ok(());
    }
    let Some(jobs) = local else {
        let plan = batch::SweepDir::new(dir).plan()?;
        let job = batch::submit(&plan, dir, &tasks)?;
        println!(
            "submitted job {} (array {}, {} tasks; script {})",
            job.job_id,
            batch::array_ranges(&tasks),
            tasks.len(),
            job.script
        );
        return Ok(());
    };
    let failed = batch::run_local(dir, &tasks, jobs)?;
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
    Ok(())
}
