//! The report of `qsearch calibrate`: every measurement's cycles against the prediction before
//! and after the fit, the refitted parameters, and the error over all measurements.

use crate::cost::calibrate::FitReport;
use crate::table::Table;
use std::fmt::Write;

/// The fit of `report` over `measurements` rows, as the terminal shows it.
pub fn calibration_report(report: &FitReport, measurements: usize) -> String {
    let mut rows = Table::new(&[
        "line", "kernel<", "measured", "before", "error", "after", "error",
    ]);
    let pct = |p: f64, m: f64| format!("{:+.1}%", 100.0 * (p - m) / m);
    for r in &report.rows {
        rows.row(vec![
            r.line.to_string(),
            r.kernel.clone(),
            format!("{:.0}", r.measured),
            format!("{:.0}", r.before),
            pct(r.before, r.measured),
            format!("{:.0}", r.after),
            pct(r.after, r.measured),
        ]);
    }
    let mut parameters = Table::new(&["parameter<", "before", "after"]);
    for (name, before, after) in &report.fitted {
        parameters.row(vec![
            name.clone(),
            format!("{before:.4}"),
            format!("{after:.4}"),
        ]);
    }
    let mut text = rows.render();
    text.push('\n');
    text.push_str(&parameters.render());
    if !report.untouched.is_empty() {
        let _ = writeln!(
            text,
            "not exercised by the measurements (kept): {}",
            report.untouched.join(", ")
        );
    }
    let _ = writeln!(
        text,
        "\nMAPE over {measurements} measurements: {:.2}% before, {:.2}% after the fit",
        report.mape_before, report.mape_after
    );
    text
}
