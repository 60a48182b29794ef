//! `qsearch microbench`: write the kernel microbenchmarks, and with `run`, measure them on QEMU,
//! calibrate the platform on four fifths of the rows, report the error on the held-out
//! fifth, and check a whole deployed network's instruction count against the prediction.

use super::FlowError;
use crate::cost::calibrate::{calibrate, mape, parse_measurements, predict};
use crate::cost::{KernelCall, Precisions, call_cycles, inside_taps};
use crate::deploy::microbench::{run_grid, run_on_qemu, write_bench, write_grid};
use crate::deploy::pulp::PulpConfig;
use crate::deploy::{IntGraph, IntOp, integerize, load_finetuned};
use crate::graph::{LayerKind, Shape};
use crate::platform::Platform;
use crate::precision::Bits;
use crate::results::write_text;
use std::fmt::Write;
use std::path::Path;

pub struct MicrobenchReport {
    pub text: String,
    /// Held-out MAPE (%) of the calibrated model, when the grid was run.
    pub held_out_mape: Option<f64>,
    /// The whole network's measured and predicted instructions, when a network was given.
    pub network: Option<(f64, f64)>,
}

/// Every fifth row is held out of the fit (five is prime to the grid's period, so the held-out
/// rows cover every kernel and shape).
fn held_out(i: usize) -> bool {
    i % 5 == 4
}

/// Writes the grid under `out`; with `run`, measures and calibrates `platform` from it; with
/// `network` (a fine-tuned folder), compares the deployed network's count with the prediction.
pub fn microbench(
    platform: &str,
    out: &Path,
    run: bool,
    network: Option<&Path>,
) -> Result<MicrobenchReport, FlowError> {
    let platform = Platform::load(platform)?;
    let pulp = PulpConfig::of(&platform);
    let cases = write_grid(out, pulp)?;
    let mut text = format!(
        "{} microbenchmarks written to {}/cases/ (one program per kernel, shape and precision triple)\n",
        cases.len(),
        out.display()
    );
    if !run {
        return Ok(MicrobenchReport {
            text,
            held_out_mape: None,
            network: None,
        });
    }
    let bar = crate::progress::bar(true, "microbench", cases.len() as u64, "programs");
    let csv = run_grid(&cases, &bar)?;
    let csv_path = out.join("measurements.csv");
    write_text(&csv_path, &csv)?;
    let rows = parse_measurements(&csv, &csv_path.display().to_string())
        .map_err(|e| FlowError::Input(e.to_string()))?;
    let (mut fit, mut test) = (Vec::new(), Vec::new());
    for (i, row) in rows.into_iter().enumerate() {
        if held_out(i) {
            test.push(row);
        } else {
            fit.push(row);
        }
    }
    let label = format!("{} (fit rows)", csv_path.display());
    let (fitted, report) =
        calibrate(&platform, &fit, &label).map_err(|e| FlowError::Input(e.to_string()))?;
    let prior_test = mape(&predict(&platform.cost, &test), &test);
    let fitted_test = mape(&predict(&fitted.cost, &test), &test);
    let fitted_path = out.join(format!("{}-fit.toml", platform.name));
    let toml = fitted
        .to_toml()
        .map_err(|e| FlowError::Input(format!("{}: {e}", fitted_path.display())))?;
    write_text(&fitted_path, &toml)?;
    let _ = writeln!(
        text,
        "measured on QEMU (qemu-system-riscv32 -icount shift=0, minstret): {} rows in {}\n\
         calibration of {} on {} rows: MAPE {:.1}% -> {:.1}%; written to {}\n\
         held-out rows ({}, every fifth): MAPE {:.1}% with the prior parameters, {:.1}% calibrated (target <= 10%)",
        fit.len() + test.len(),
        csv_path.display(),
        platform.name,
        fit.len(),
        report.mape_before,
        report.mape_after,
        fitted_path.display(),
        test.len(),
        prior_test,
        fitted_test
    );
    let network = match network {
        Some(dir) => {
            let (graph, quantization) = load_finetuned(dir)?;
            let int_graph = integerize(&graph, &quantization, 64)?;
            let bench = out.join("network");
            write_bench(
                &int_graph,
                "network,0,0,0,0,0,0,0,0,0,0,0,0,1",
                &bench,
                7,
                pulp,
            )?;
            let line = run_on_qemu(&bench)?;
            let measured: f64 = line
                .rsplit(',')
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| FlowError::Input(format!("QEMU printed '{line}'")))?;
            let predicted = network_prediction(&fitted, &int_graph);
            let _ = writeln!(
                text,
                "whole network {} ({} layers) on QEMU: {measured:.0} instructions measured, {predicted:.0} predicted by the calibrated model ({:+.1}%, target within 15%)",
                dir.display(),
                int_graph.layers.len(),
                100.0 * (predicted - measured) / measured
            );
            Some((measured, predicted))
        }
        None => None,
    };
    write_text(&out.join("report.txt"), &text)?;
    Ok(MicrobenchReport {
        text,
        held_out_mape: Some(fitted_test),
        network,
    })
}

/// The model's instructions for every layer of an integer network, run on one core.
fn network_prediction(platform: &Platform, graph: &IntGraph) -> f64 {
    graph
        .layers
        .iter()
        .map(|layer| {
            let input = graph.tensors[layer.inputs[0]].shape;
            let output = graph.tensors[layer.output].shape;
            let bits = |t: usize| Bits::from_count(graph.tensors[t].bits).unwrap_or(Bits::B8);
            let inside = match &layer.op {
                IntOp::Conv { window, .. }
                | IntOp::MaxPool { window }
                | IntOp::AvgPool { window } => inside_taps(input, output, *window),
                _ => 1.0,
            };
            let (kind, kernel, groups, weight) = match &layer.op {
                IntOp::Conv {
                    window,
                    groups,
                    weight_bits,
                    ..
                } => {
                    let kind = if *groups > 1 && *groups == input.c {
                        LayerKind::Depthwise
                    } else if window.kernel == [1, 1] {
                        LayerKind::Pointwise
                    } else {
                        LayerKind::Conv
                    };
                    (kind, window.kernel, *groups, *weight_bits)
                }
                IntOp::Linear { weight_bits, .. } => (LayerKind::Linear, [1, 1], 1, *weight_bits),
                IntOp::MaxPool { window } => (LayerKind::MaxPool, window.kernel, 1, 8),
                IntOp::AvgPool { window } => (LayerKind::AvgPool, window.kernel, 1, 8),
                IntOp::GlobalAvgPool => (LayerKind::GlobalAvgPool, [1, 1], 1, 8),
                IntOp::GlobalMaxPool => (LayerKind::GlobalMaxPool, [1, 1], 1, 8),
                IntOp::Add { .. } => (LayerKind::Add, [1, 1], 1, 8),
            };
            let call = KernelCall {
                kind,
                input: if kind == LayerKind::Linear {
                    Shape::vector(input.elements() as usize)
                } else {
                    input
                },
                output,
                kernel,
                groups,
                inside_taps: inside,
            };
            let precisions = Precisions {
                weight: Bits::from_count(weight).unwrap_or(Bits::B8),
                input: bits(layer.inputs[0]),
                second: bits(*layer.inputs.get(1).unwrap_or(&layer.inputs[0])),
                output: bits(layer.output),
            };
            call_cycles(&platform.cost, 1, &call, precisions)
        })
        .sum()
}
