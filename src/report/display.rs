//! Metrics in the units people read them in (milliseconds, kilobytes, millijoules), and the
//! short forms of a problem that several reports print: its limits, its objectives and a
//! candidate's weight precisions.

use crate::objective::Metric;
use crate::precision::Assignment;
use crate::search::Problem;
use crate::units::{format_bytes, group_thousands};

/// A metric in the unit plots and tables show it in.
pub(crate) fn display_value(problem: &Problem, metric: Metric, value: f64) -> f64 {
    match metric {
        Metric::Latency => 1e3 * value / problem.platform.hardware.clock_hz.value,
        Metric::Flash | Metric::Ram | Metric::Memory => value / 1e3,
        Metric::Energy => value * 1e3,
        Metric::Accuracy => value,
    }
}

/// The axis or column title of a metric shown with [`display_value`].
pub(crate) fn display_unit(problem: &Problem, metric: Metric) -> String {
    match metric {
        Metric::Latency => "latency (ms)".into(),
        Metric::Flash => "flash (kB)".into(),
        Metric::Ram => "RAM (kB)".into(),
        Metric::Memory => "memory = flash + RAM (kB)".into(),
        Metric::Energy => "energy (mJ)".into(),
        Metric::Accuracy => format!("predicted loss ({})", problem.sensitivity.unit),
    }
}

/// A metric value with its unit, as users read it.
pub(super) fn value_text(problem: &Problem, metric: Metric, value: f64) -> String {
    match metric {
        Metric::Latency => format!(
            "{} cycles ({:.3} ms)",
            group_thousands(value.round() as u64),
            display_value(problem, metric, value)
        ),
        Metric::Flash | Metric::Ram | Metric::Memory => format_bytes(value as u64),
        Metric::Energy => format!("{:.4} mJ", value * 1e3),
        Metric::Accuracy => format!("{value:.4e} {}", problem.sensitivity.unit),
    }
}

/// The limits as `memory <= 512,000 B, ...` (empty without limits).
pub(super) fn limit_list(problem: &Problem) -> String {
    let parts: Vec<String> = problem
        .objective
        .limits
        .iter()
        .map(|l| format!("{} <= {}", l.metric, value_text(problem, l.metric, l.max)))
        .collect();
    parts.join(", ")
}

/// [`limit_list`], or `no limits`.
pub(super) fn limits_line(problem: &Problem) -> String {
    if problem.objective.limits.is_empty() {
        return "no limits".into();
    }
    limit_list(problem)
}

/// The metrics the objective minimises, as `latency, accuracy`.
pub(super) fn minimized(problem: &Problem) -> String {
    problem
        .objective
        .minimize
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The weight precision of every layer with weights, in layer order.
pub(super) fn weight_bits(problem: &Problem, a: &Assignment) -> Vec<String> {
    problem
        .fused
        .weighted_layers()
        .map(|(l, _)| a.weight_bits[l].to_string())
        .collect()
}
