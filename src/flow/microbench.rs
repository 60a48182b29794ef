//! `qsearch microbench`: write the kernel microbenchmarks, and with `run`, measure them where the
//! platform's cores run (QEMU for rv32imc, the CV32E40P RTL for XpulpV2), calibrate the platform
//! on four fifths of the rows, report the error on the held-out fifth and per kernel, and check
//! a whole deployed network's count against the prediction.

use super::FlowError;
use super::deploy::one_core_prediction;
use crate::cost::calibrate::{Measurement, calibrate, held_out, mape, parse_measurements, predict};
use crate::deploy::microbench::{
    Bench, Target, run_grid, run_on_qemu, run_on_rtl, write_bench, write_grid,
};
use crate::deploy::{integerize, load_finetuned};
use crate::platform::{CostParams, Platform};
use crate::results::write_text;
use crate::rtl::Rtl;
use crate::table::Table;
use std::fmt::Write;
use std::path::Path;

pub struct MicrobenchReport {
    pub text: String,
    /// Held-out MAPE (%) of the calibrated model, when the grid was run.
    pub held_out_mape: Option<f64>,
    /// The whole network's measured and predicted counts (instructions on QEMU, cycles on the
    /// RTL), when a network was given.
    pub network: Option<(f64, f64)>,
}

/// Writes the grid under `out`; with `run`, measures it on `platform`'s [`Target`] and
/// calibrates `platform` from it; with `network` (a fine-tuned folder), compares the deployed
/// network's measured count with the calibrated model's prediction.
pub fn microbench(
    platform: &str,
    out: &Path,
    run: bool,
    network: Option<&Path>,
) -> Result<MicrobenchReport, FlowError> {
    let platform = Platform::load(platform)?;
    let target = Target::of(&platform)?;
    let pulp = target.pulp_config(&platform);
    let benches = write_grid(out, pulp)?;
    let mut text = format!(
        "{} microbenchmarks written to {}/cases/ (one program per kernel, shape and precision triple)\n",
        benches.len(),
        out.display()
    );
    if !run {
        return Ok(MicrobenchReport {
            text,
            held_out_mape: None,
            network: None,
        });
    }
    let started = std::time::Instant::now();
    let bar = crate::progress::bar(true, "microbench", benches.len() as u64, "programs");
    let csv = run_grid(&benches, target, &bar)?;
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
        "measured {} in {:.0} s: {} rows in {}\n\
         calibration of {} on {} rows: MAPE {:.1}% -> {:.1}%; written to {}\n\
         held-out rows ({}, every fifth): MAPE {:.1}% with the prior parameters, {:.1}% calibrated (target <= 10%)\n\
         residuals of the calibrated model per kernel and weight width (all rows):\n{}",
        target.describe(),
        started.elapsed().as_secs_f64(),
        fit.len() + test.len(),
        csv_path.display(),
        platform.name,
        fit.len(),
        report.mape_before,
        report.mape_after,
        fitted_path.display(),
        test.len(),
        prior_test,
        fitted_test,
        residuals(&fitted.cost, &fit, &test).render()
    );
    let network = match network {
        Some(dir) => {
            let (graph, quantization) = load_finetuned(dir)?;
            let int_graph = integerize(&graph, &quantization, 64)?;
            let bench = write_bench(
                &int_graph,
                "network,0,0,0,0,0,0,0,0,0,0,0,0,1",
                &out.join("network"),
                7,
                pulp,
            )?;
            // The latency model the search uses (tiles and all), on one core.
            let predicted: f64 = one_core_prediction(&graph, &int_graph, &fitted)
                .iter()
                .sum();
            let measured = measure_network(&bench, target, predicted)?;
            let (unit, tolerance) = match target {
                Target::Qemu => ("instructions", 15),
                Target::Rtl => ("cycles", 10),
            };
            let _ = writeln!(
                text,
                "whole network {} ({} layers) {}: {measured:.0} {unit} measured, {predicted:.0} predicted by the calibrated model ({:+.1}%, target within {tolerance}%)",
                dir.display(),
                int_graph.layers.len(),
                target.describe(),
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

/// The deployed network's count on `target`: its instructions on QEMU, or on the RTL the sum of
/// its layers' cycles (DMA copies excluded; every layer checked against the golden model).
fn measure_network(bench: &Bench, target: Target, predicted: f64) -> Result<f64, FlowError> {
    match target {
        Target::Qemu => {
            let line = run_on_qemu(&bench.dir)?;
            line.rsplit(',')
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| FlowError::Input(format!("QEMU printed '{line}'")))
        }
        Target::Rtl => {
            let rtl = Rtl::init().map_err(crate::deploy::DeployError::from)?;
            // Twenty times the calibrated model: only a program that never ends reaches it.
            let limit = 20.0 * predicted + 10e6;
            Ok(run_on_rtl(&rtl, bench, limit as u64)? as f64)
        }
    }
}

/// The calibrated model's error per kernel and weight width: the MAPE over the fit rows and over
/// the held-out rows, and the largest error of any row.
fn residuals(cost: &CostParams, fit: &[Measurement], test: &[Measurement]) -> Table {
    let key = |m: &Measurement| format!("{} w{}", m.kernel, m.bits.weight.count());
    let mut keys: Vec<String> = fit.iter().chain(test).map(key).collect();
    keys.sort();
    keys.dedup();
    let errors = |rows: &[Measurement], k: &str| -> Vec<f64> {
        let rows: Vec<Measurement> = rows.iter().filter(|m| key(m) == k).cloned().collect();
        predict(cost, &rows)
            .iter()
            .zip(&rows)
            .map(|(p, m)| 100.0 * (p - m.cycles) / m.cycles)
            .collect()
    };
    let mean_abs = |e: &[f64]| match e.len() {
        0 => "-".to_string(),
        n => format!("{:.1}%", e.iter().map(|v| v.abs()).sum::<f64>() / n as f64),
    };
    let mut table = Table::new(&["kernel<", "rows", "fit MAPE", "held-out MAPE", "worst row"]);
    for k in keys {
        let (in_fit, held) = (errors(fit, &k), errors(test, &k));
        let worst = in_fit
            .iter()
            .chain(&held)
            .copied()
            .fold(0.0f64, |w, e| if e.abs() > w.abs() { e } else { w });
        table.row(vec![
            k,
            (in_fit.len() + held.len()).to_string(),
            mean_abs(&in_fit),
            mean_abs(&held),
            format!("{worst:+.1}%"),
        ]);
    }
    table
}
