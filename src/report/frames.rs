//! The results files' tables (polars frames, written as parquet and CSV): the candidates of
//! searches, a comparison's summary per run and the main job's trade-off. Each frame is built
//! here and only here, one column per named field.

use super::display::{display_value, weight_bits};
use super::search::PolicySummary;
use super::tradeoff::{Figures, Row};
use crate::objective::Metric;
use crate::search::{Candidate, Problem, SearchResult};
use polars::prelude::*;

/// A column named `name` holding `values`.
fn column<T>(name: &str, values: impl Iterator<Item = T>) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    Column::new(name.into(), values.collect::<Vec<T>>())
}

/// One row per candidate of `results`: policy, seed, Pareto and feasibility flags, metrics and
/// the precisions.
pub(crate) fn candidates_frame(
    problem: &Problem,
    results: &[&SearchResult],
) -> Result<DataFrame, PolarsError> {
    let rows: Vec<(&SearchResult, usize, &Candidate)> = results
        .iter()
        .flat_map(|r| {
            r.candidates
                .iter()
                .enumerate()
                .map(move |(i, c)| (*r, i, c))
        })
        .collect();
    let candidates = || rows.iter().map(|&(_, _, c)| c);
    let assignments: Vec<_> = candidates()
        .map(|c| problem.space.decode(&c.genes))
        .collect();
    DataFrame::new_infer_height(vec![
        column("policy", rows.iter().map(|(r, _, _)| r.policy.clone())),
        column("seed", rows.iter().map(|(r, _, _)| r.seed)),
        column("candidate", rows.iter().map(|&(_, i, _)| i as u32)),
        column("pareto", rows.iter().map(|(r, i, _)| r.front.contains(i))),
        column("feasible", candidates().map(Candidate::feasible)),
        column("cycles", candidates().map(|c| c.metrics.cycles)),
        column(
            "latency_ms",
            candidates().map(|c| display_value(problem, Metric::Latency, c.metrics.cycles)),
        ),
        column("flash_bytes", candidates().map(|c| c.metrics.flash)),
        column("ram_bytes", candidates().map(|c| c.metrics.ram)),
        column(
            "memory_bytes",
            candidates().map(|c| c.metrics.flash + c.metrics.ram),
        ),
        column("energy_mj", candidates().map(|c| c.metrics.energy_j * 1e3)),
        column("predicted_loss", candidates().map(|c| c.metrics.loss)),
        column("violation", candidates().map(|c| c.violation)),
        column(
            "weight_bits",
            assignments
                .iter()
                .map(|a| weight_bits(problem, a).join("-")),
        ),
        column(
            "activation_bits",
            assignments.iter().map(|a| {
                a.activation_bits
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join("-")
            }),
        ),
    ])
}

/// One row per run of a comparison: its best primary objective, the gap to the ILP `optimum`,
/// hypervolume, evaluations and wall time.
pub(crate) fn comparison_frame(
    summaries: &[PolicySummary],
    optimum: Option<f64>,
) -> Result<DataFrame, PolarsError> {
    let runs: Vec<(&PolicySummary, usize, &SearchResult)> = summaries
        .iter()
        .flat_map(|s| s.runs.iter().enumerate().map(move |(k, r)| (s, k, r)))
        .collect();
    let gap = |best: Option<f64>| match (best, optimum) {
        (Some(b), Some(o)) if o != 0.0 => Some(100.0 * (b - o) / o.abs()),
        _ => None,
    };
    DataFrame::new_infer_height(vec![
        column("policy", runs.iter().map(|(s, _, _)| s.policy.clone())),
        column("seed", runs.iter().map(|(_, _, r)| r.seed)),
        column("best_objective", runs.iter().map(|&(s, k, _)| s.best[k])),
        column(
            "gap_to_ilp_percent",
            runs.iter().map(|&(s, k, _)| gap(s.best[k])),
        ),
        column(
            "hypervolume",
            runs.iter().map(|&(s, k, _)| s.hypervolume[k]),
        ),
        column("evaluations", runs.iter().map(|(_, _, r)| r.evaluations)),
        column("seconds", runs.iter().map(|(_, _, r)| r.seconds)),
    ])
}

/// One row per network of the main job's trade-off; the figures are empty for FP32.
pub(crate) fn tradeoff_frame(problem: &Problem, rows: &[Row]) -> Result<DataFrame, PolarsError> {
    let figure = |f: fn(&Figures) -> f64| rows.iter().map(move |r| r.figures.as_ref().map(f));
    DataFrame::new_infer_height(vec![
        column("network", rows.iter().map(|r| r.label.clone())),
        column("width", rows.iter().map(|r| r.width)),
        column("resolution", rows.iter().map(|r| r.resolution as u32)),
        column("bits", rows.iter().map(|r| r.bits.clone())),
        column("uniform_8_bit", rows.iter().map(|r| r.uniform_8_bit)),
        column("accuracy", rows.iter().map(|r| r.accuracy)),
        column(
            "latency_ms",
            rows.iter().map(|r| {
                r.figures
                    .as_ref()
                    .map(|f| display_value(problem, Metric::Latency, f.cycles))
            }),
        ),
        column("cycles", figure(|f| f.cycles)),
        column("flash_bytes", figure(|f| f.flash as f64)),
        column("ram_bytes", figure(|f| f.ram as f64)),
        column("fits", rows.iter().map(|r| r.fits)),
    ])
}
