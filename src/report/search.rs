//! Searches and comparisons as people read them: the chosen assignment per layer, its figures
//! against the limits, the Pareto set, the policies side by side, and the scatter of the
//! candidates in objective space.

use super::display::{
    display_unit, display_value, limits_line, minimized, value_text, weight_bits,
};
use super::plot::{Plot, Series};
use crate::escape::terminal_text;
use crate::graph::Graph;
use crate::objective::{Metric, Objective};
use crate::search::{Candidate, Problem, SearchResult};
use crate::table::Table;
use crate::units::group_thousands;
use std::fmt::Write;
use std::path::Path;

/// One policy's runs in a comparison, summarised: what the comparison's table and summary
/// frame present.
pub struct PolicySummary {
    pub policy: String,
    pub runs: Vec<SearchResult>,
    /// Per run: best primary objective (None when nothing feasible was found).
    pub best: Vec<Option<f64>>,
    pub hypervolume: Vec<f64>,
}

/// The per-layer table of one candidate.
fn assignment_table(problem: &Problem, c: &Candidate) -> String {
    let a = problem.space.decode(&c.genes);
    let ram = problem.table.ram_profile(&a);
    let mut t = Table::new(&[
        "#", "layer<", "op<", "w", "in", "out", "cycles", "ms", "flash B", "RAM B",
    ])
    .names("layer");
    for (l, layer) in problem.fused.layers.iter().enumerate() {
        let timing = problem.table.timing(l, &a);
        let cycles = if c.costs.weights_in_l3 {
            timing.cycles_l3
        } else {
            timing.cycles
        };
        let inputs: Vec<String> = layer
            .inputs
            .iter()
            .map(|&t| a.activation_bits[t].to_string())
            .collect();
        t.row(vec![
            l.to_string(),
            layer.name.clone(),
            layer.kind.to_string(),
            if layer.kind.has_weights() {
                a.weight_bits[l].to_string()
            } else {
                "-".into()
            },
            inputs.join("+"),
            a.activation_bits[layer.output].to_string(),
            group_thousands(cycles.round() as u64),
            format!("{:.3}", display_value(problem, Metric::Latency, cycles)),
            group_thousands(problem.table.layers[l].flash[a.weight_bits[l].index()]),
            group_thousands(ram[l]),
        ]);
    }
    t.render()
}

/// The figures of a candidate against the limits.
fn metrics_block(problem: &Problem, c: &Candidate) -> String {
    let mut out = String::new();
    for metric in Metric::ALL {
        if metric == Metric::Energy && problem.platform.hardware.energy_per_cycle_j.is_none() {
            continue;
        }
        let value = c.metrics.get(metric);
        let mut line = format!(
            "{:<9} {}",
            metric.name(),
            value_text(problem, metric, value)
        );
        if let Some(limit) = problem.objective.limit(metric) {
            let share = 100.0 * value / limit.max(1e-12);
            let _ = write!(
                line,
                "  ({share:.1}% of the {} limit{})",
                value_text(problem, metric, limit),
                if share >= 98.0 { ", binds" } else { "" }
            );
        }
        out += &line;
        out.push('\n');
    }
    let binding = problem.binding_limits(c);
    if !binding.is_empty() {
        let _ = writeln!(out, "binding   {}", binding.join("; "));
    }
    let _ = writeln!(
        out,
        "placement {}",
        if c.costs.weights_in_l3 {
            "weights streamed from L3"
        } else {
            "everything in L2"
        }
    );
    out
}

/// The report `qsearch search` prints.
pub(crate) fn search_report(
    problem: &Problem,
    graph: &Graph,
    result: &SearchResult,
    dir: &Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {}, policy {}, objective {} ({}), {}",
        terminal_text(&graph.name),
        problem.platform.name,
        result.policy,
        problem.objective.name,
        minimized(problem),
        limits_line(problem)
    );
    let _ = writeln!(
        out,
        "search space {}: {} variables, {:.3e} assignments; sensitivity: {} ({})\n",
        problem.space.name,
        problem.space.vars.len(),
        problem.space.size(),
        problem.sensitivity.unit,
        problem.sensitivity.source
    );
    match result.best() {
        Some(best) => {
            let _ = writeln!(out, "chosen assignment:");
            out += &assignment_table(problem, best);
            out.push('\n');
            out += &metrics_block(problem, best);
        }
        None => {
            let _ = writeln!(out, "no feasible assignment found");
        }
    }
    if result.front.len() > 1 {
        let metrics = &problem.objective.minimize;
        let mut headers: Vec<String> = vec!["#".into()];
        headers.extend(metrics.iter().map(|&m| display_unit(problem, m)));
        headers.push("memory (kB)".into());
        headers.push("weights".into());
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut t = Table::new(&refs);
        for (k, &i) in result.front.iter().enumerate() {
            let c = &result.candidates[i];
            let mut row = vec![k.to_string()];
            row.extend(
                metrics
                    .iter()
                    .map(|&m| format!("{:.4}", display_value(problem, m, c.metrics.get(m)))),
            );
            row.push(format!(
                "{:.1}",
                display_value(problem, Metric::Memory, c.metrics.get(Metric::Memory))
            ));
            row.push(weight_bits(problem, &problem.space.decode(&c.genes)).join(""));
            t.row(row);
        }
        let _ = writeln!(out, "\nPareto set ({} points):", result.front.len());
        out += &t.render();
    }
    let optimality = match result.optimality {
        Some(o) if o.proven => ", proven optimal".to_string(),
        Some(o) => format!(", gap {:.2}%", 100.0 * o.gap),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "\n{}: {}{optimality}; {} evaluation{} in {:.2} s",
        result.policy,
        result.termination,
        result.evaluations,
        if result.evaluations == 1 { "" } else { "s" },
        result.seconds
    );
    let _ = writeln!(
        out,
        "wrote {}/ (candidates.parquet, candidates.csv, assignment.json, manifest.json, pareto.svg, pareto.png, sensitivity.csv)",
        dir.display()
    );
    out
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The table `qsearch compare` prints.
pub(crate) fn compare_table(
    problem: &Problem,
    summaries: &[PolicySummary],
    optimum: Option<f64>,
    seeds: u64,
) -> String {
    let primary = problem.objective.primary();
    let unit = display_unit(problem, primary);
    let best_header = format!("best {unit}");
    let mut t = Table::new(&[
        "policy<",
        "runs",
        "feasible",
        &best_header,
        "gap to ILP",
        "hypervolume",
        "evaluations",
        "wall s",
    ]);
    for s in summaries {
        let found: Vec<f64> = s
            .best
            .iter()
            .flatten()
            .map(|&v| display_value(problem, primary, v))
            .collect();
        let (mean, sd) = mean_sd(&found);
        let best = if found.is_empty() {
            "-".to_string()
        } else if found.len() > 1 {
            format!("{mean:.4} ± {sd:.4}")
        } else {
            format!("{mean:.4}")
        };
        let gaps: Vec<f64> = s
            .best
            .iter()
            .flatten()
            .filter_map(|&b| {
                optimum
                    .filter(|o| *o != 0.0)
                    .map(|o| 100.0 * (b - o) / o.abs())
            })
            .collect();
        let gap = if gaps.is_empty() {
            "-".into()
        } else {
            format!("{:+.2}%", mean_sd(&gaps).0)
        };
        let (hv, hv_sd) = mean_sd(&s.hypervolume);
        let evaluations: Vec<f64> = s.runs.iter().map(|r| r.evaluations as f64).collect();
        let seconds: Vec<f64> = s.runs.iter().map(|r| r.seconds).collect();
        t.row(vec![
            s.policy.clone(),
            s.runs.len().to_string(),
            format!("{}/{}", found.len(), s.runs.len()),
            best,
            gap,
            if s.runs.len() > 1 {
                format!("{hv:.4} ± {hv_sd:.4}")
            } else {
                format!("{hv:.4}")
            },
            group_thousands(mean_sd(&evaluations).0.round() as u64),
            format!("{:.2}", mean_sd(&seconds).0),
        ]);
    }
    let mut out = format!(
        "{} policies, {} seed(s) for the stochastic ones; objective {} ({}), {}\n\n",
        summaries.len(),
        seeds,
        problem.objective.name,
        minimized(problem),
        limits_line(problem)
    );
    out += &t.render();
    let _ = writeln!(
        out,
        "hypervolume: of each run's feasible Pareto front, objectives normalised to [0, 1] by the best and worst front points of all runs, reference point 1.1"
    );
    if let Some(o) = optimum {
        let _ = writeln!(out, "ILP optimum: {}", value_text(problem, primary, o));
    }
    out
}

/// The x and y metrics of a run's plot: the two first objectives, or memory against the
/// single objective.
fn plot_axes(objective: &Objective) -> (Metric, Metric) {
    match objective.minimize.as_slice() {
        [first, second, ..] => (*second, *first),
        [only] if *only == Metric::Memory => (Metric::Memory, Metric::Latency),
        [only] => (Metric::Memory, *only),
        [] => (Metric::Memory, Metric::Latency),
    }
}

/// The scatter of `results` (one series each: the feasible candidates, the front as a line) in
/// the run's plot axes, with the limits on the x axis.
pub(crate) fn search_plot(problem: &Problem, results: &[&SearchResult], title: String) -> Plot {
    let (x, y) = plot_axes(&problem.objective);
    let point = |c: &Candidate| {
        (
            display_value(problem, x, c.metrics.get(x)),
            display_value(problem, y, c.metrics.get(y)),
        )
    };
    let series = results
        .iter()
        .map(|r| Series {
            label: format!("{} (seed {})", r.policy, r.seed),
            points: r
                .candidates
                .iter()
                .filter(|c| c.feasible())
                .map(point)
                .collect(),
            front: r.front.iter().map(|&i| point(&r.candidates[i])).collect(),
        })
        .collect();
    let x_marks = problem
        .objective
        .limits
        .iter()
        .filter(|l| l.metric == x)
        .map(|l| {
            (
                display_value(problem, x, l.max),
                format!("{} limit", l.metric),
            )
        })
        .collect();
    Plot {
        title,
        x_label: display_unit(problem, x),
        y_label: display_unit(problem, y),
        series,
        x_marks,
    }
}
