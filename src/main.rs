//! The `qsearch` command line. It parses flags, calls the library and prints; the library does
//! the work.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use qsearch::cost::calibrate::{calibrate, read_measurements};
use qsearch::graph::{load_model, onnx, zoo};
use qsearch::platform::{BUILT_IN, DEFAULT_PLATFORM, Platform};
use qsearch::precision::Bits;
use qsearch::report::{InspectOptions, Table, inspect};
use qsearch::units::{format_bytes, parse_bytes};
use std::path::PathBuf;

const SIZE_HELP: &str = "Sizes: 512KB = 512,000 bytes and 0.5MB = 500,000 (decimal, as datasheets); \
512KiB = 524,288 (binary); a bare number is bytes.";

#[derive(Parser)]
#[command(
    name = "qsearch",
    version,
    about = "Mixed-precision quantization search for neural networks on PULP microcontrollers",
    after_help = SIZE_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Per-layer MACs, parameters, cycles and memory of a network on a platform.
    Inspect(InspectArgs),
    /// Refit a platform's cost-model parameters from measured kernel cycles.
    Calibrate(CalibrateArgs),
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
struct ModelArgs {
    /// An .onnx file or zoo:NAME[:key=value,...] (see `qsearch zoo`).
    #[arg(long, short, default_value = zoo::DEFAULT_MODEL)]
    model: String,
    /// A built-in platform (gap8, gap9, pulp-open, xpulpnn) or a platform .toml file.
    #[arg(long, short, default_value = DEFAULT_PLATFORM)]
    platform: String,
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

fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => run_inspect(InspectArgs {
            model: ModelArgs {
                model: zoo::DEFAULT_MODEL.into(),
                platform: DEFAULT_PLATFORM.into(),
            },
            bits: Bits::B8,
            budget: None,
        }),
        Some(Command::Inspect(args)) => run_inspect(args),
        Some(Command::Calibrate(args)) => run_calibrate(args),
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
            let mut t = Table::new(&["network<", "options (defaults)<", "description<"]);
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
            ]);
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
