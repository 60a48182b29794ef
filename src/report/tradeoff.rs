//! The main job's trade-off: every fine-tuned network's measured accuracy against its latency
//! and memory, as the terminal table (`report.md`), the stage timings and the two-panel plot.

use super::display::{display_value, limit_list, weight_bits};
use super::plot::{Network, Panel, Tradeoff};
use crate::escape::{markdown_code_block, terminal_text};
use crate::objective::Metric;
use crate::search::Problem;
use crate::table::Table;
use crate::units::{format_bytes, group_thousands};
use std::fmt::Write;
use std::path::Path;

/// Latency and memory of a quantized network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub cycles: f64,
    pub flash: u64,
    pub ram: u64,
}

/// One line of the trade-off report.
#[derive(Clone, Debug)]
pub struct Row {
    pub label: String,
    /// The precisions, summarised (`w 8848 / a 88888888`).
    pub bits: String,
    /// `None` for the floating-point network.
    pub figures: Option<Figures>,
    pub accuracy: f64,
    /// Whether it meets the limits.
    pub fits: bool,
    /// The network's width (the zoo's `width` option; 1.0 for a network without one).
    pub width: f64,
    /// The side of its input images, in pixels (their height).
    pub resolution: usize,
    /// Whether every weight and activation is 8-bit (not the floating-point network).
    pub uniform_8_bit: bool,
}

/// A candidate's precisions as a [`Row`] holds them: `w <weight bits> / a <activation bits>`.
pub(crate) fn bits_summary(problem: &Problem, genes: &[u8]) -> String {
    let a = problem.space.decode(genes);
    let w = weight_bits(problem, &a).concat();
    let x: String = a.activation_bits.iter().map(|b| b.to_string()).collect();
    format!("w {w} / a {x}")
}

/// A row's label, marked when it is the chosen network.
fn label(row: &Row, index: usize, winner: usize) -> String {
    if index == winner {
        format!("{} (chosen)", row.label)
    } else {
        row.label.clone()
    }
}

/// The trade-off table under a header naming the network, the platform and the limits, then
/// `deployment` (see [`deployment_text`]).
pub(crate) fn tradeoff_text(
    problem: &Problem,
    network: &str,
    rows: &[Row],
    winner: usize,
    fp: f64,
    deployment: &str,
) -> String {
    let mut t = Table::new(&[
        "network<",
        "bits (w / a)<",
        "accuracy %",
        "vs FP32",
        "latency ms",
        "cycles",
        "flash B",
        "RAM B",
        "fits<",
    ])
    .wrap("network")
    .wrap("bits (w / a)");
    // A network is compared with the FP32 row of its width and resolution when there is one.
    let fp_of = |row: &Row| {
        rows.iter()
            .find(|r| r.figures.is_none() && (r.width, r.resolution) == (row.width, row.resolution))
            .map_or(fp, |r| r.accuracy)
    };
    for (i, row) in rows.iter().enumerate() {
        let (ms, cycles, flash, ram) = match &row.figures {
            Some(f) => (
                format!("{:.3}", display_value(problem, Metric::Latency, f.cycles)),
                group_thousands(f.cycles.round() as u64),
                group_thousands(f.flash),
                group_thousands(f.ram),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        t.row(vec![
            label(row, i, winner),
            bits_display(&row.bits),
            format!("{:.2}", row.accuracy),
            if row.figures.is_some() {
                format!("{:+.2}", row.accuracy - fp_of(row))
            } else {
                "".into()
            },
            ms,
            cycles,
            flash,
            ram,
            if row.figures.is_none() {
                "-".into()
            } else if row.fits {
                "yes".into()
            } else {
                "no".into()
            },
        ]);
    }
    let mut out = format!(
        "{} on {}, {}; limits: {}\n{}: {}\n\n",
        terminal_text(network),
        problem.platform.name,
        problem.objective.name,
        limit_list(problem),
        problem.platform.name,
        problem.platform.description,
    );
    out += &t.render();
    let _ = write!(out, "\n{deployment}");
    out
}

/// A row's precisions as the terminal table shows them: long digit runs in groups of ten (so
/// that a deep network's wrap at the spaces and a layer's position can be counted).
fn bits_display(bits: &str) -> String {
    if !bits.starts_with("w ") {
        return bits.to_string();
    }
    bits.split(' ')
        .map(|word| {
            if word.len() > 10 && word.chars().all(|c| c.is_ascii_digit()) {
                word.as_bytes()
                    .chunks(10)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lines of a deployment's report that the trade-off report repeats (the checks and the
/// memory), under the deployment's folder.
pub(crate) fn deployment_text(dir: &Path, deploy_report: &str) -> String {
    let summary: String = deploy_report
        .lines()
        .filter(|l| {
            [
                "golden model vs",
                "host build",
                "PULP path emulated",
                "DORY export",
                "rv32imc build",
                "memory:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    format!("chosen network deployed to {}/:\n{summary}", dir.display())
}

/// `report.md`: the trade-off text as a Markdown code block under a title.
pub(crate) fn tradeoff_markdown(text: &str) -> String {
    format!("# qsearch main job\n\n{}", markdown_code_block(text))
}

/// Wall time per stage: printed, kept out of `report.md` so that the report of a run repeats.
pub(crate) fn stages_text(stages: &[(String, f64)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nstages: {}",
        stages
            .iter()
            .map(|(s, t)| format!("{s} {t:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "total: {:.1} s",
        stages.iter().map(|s| s.1).sum::<f64>()
    );
    out
}

/// Accuracy against latency and against memory: a labelled marker per network (hollow when it
/// does not meet the limits), the FP32 accuracy and the limits as reference lines, and the
/// measured Pareto front of the networks that fit.
pub(crate) fn tradeoff_plot(
    problem: &Problem,
    network: &str,
    rows: &[Row],
    winner: usize,
) -> Tradeoff {
    let objective = &problem.objective;
    // The memory panel shows the figure a limit is on: the total, flash or RAM.
    let memory = [Metric::Memory, Metric::Flash, Metric::Ram]
        .into_iter()
        .find(|&m| objective.limit(m).is_some())
        .unwrap_or(Metric::Memory);
    let (memory_label, limit_name) = match memory {
        Metric::Flash => ("flash (kB)", "flash limit"),
        Metric::Ram => ("peak RAM (kB)", "RAM limit"),
        _ => ("memory (kB, flash + peak RAM)", "budget"),
    };
    let kilobytes = |f: &Figures| {
        let bytes = match memory {
            Metric::Flash => f.flash,
            Metric::Ram => f.ram,
            _ => f.flash + f.ram,
        };
        bytes as f64 / 1e3
    };
    let networks = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let f = r.figures.as_ref()?;
            Some(Network {
                label: label(r, i, winner),
                x: vec![
                    display_value(problem, Metric::Latency, f.cycles),
                    kilobytes(f),
                ],
                y: r.accuracy,
                fits: r.fits,
                chosen: i == winner,
            })
        })
        .collect();
    let latency_marks = objective
        .limit(Metric::Latency)
        .map(|cycles| {
            let ms = display_value(problem, Metric::Latency, cycles);
            (ms, format!("latency limit {ms:.3} ms"))
        })
        .into_iter()
        .collect();
    let memory_marks = objective
        .limit(memory)
        .map(|bytes| {
            (
                bytes / 1e3,
                format!("{limit_name} {}", format_bytes(bytes as u64)),
            )
        })
        .into_iter()
        .collect();
    let y_marks = rows
        .iter()
        .filter(|r| r.figures.is_none())
        .map(|r| (r.accuracy, format!("{} {:.2}%", r.label, r.accuracy)))
        .collect();
    Tradeoff {
        title: format!(
            "{network} on {}: test accuracy against latency and memory",
            problem.platform.name
        ),
        y_label: "test accuracy (%)".into(),
        panels: vec![
            Panel {
                x_label: "latency (ms)".into(),
                x_marks: latency_marks,
            },
            Panel {
                x_label: memory_label.into(),
                x_marks: memory_marks,
            },
        ],
        y_marks,
        networks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_digit_runs_are_grouped() {
        assert_eq!(bits_display("w 88848 / a 88888848"), "w 88848 / a 88888848");
        assert_eq!(
            bits_display(&format!("w {} / a 8", "8".repeat(23))),
            "w 8888888888 8888888888 888 / a 8"
        );
    }

    #[test]
    fn the_deployment_summary_keeps_the_checks_and_the_memory() {
        let report = "integerized 5 layers\nhost build (gcc): 10 of 10 images bit-exact\n\
                      1000 images, 2044.7 us per image on the host\nmemory: arena 15,680 B\n";
        assert_eq!(
            deployment_text(Path::new("run/deploy"), report),
            "chosen network deployed to run/deploy/:\nhost build (gcc): 10 of 10 images bit-exact\nmemory: arena 15,680 B\n"
        );
    }

    #[test]
    fn stage_times_add_up() {
        let stages = vec![("train".to_string(), 1.25), ("search".to_string(), 0.5)];
        assert_eq!(
            stages_text(&stages),
            "\nstages: train 1.2 s, search 0.5 s\ntotal: 1.8 s\n"
        );
    }
}
