//! Main sweeps: every grid cell (model, platform, objective, budget) runs the main job, which
//! searches widths and precisions jointly, and the merge answers "when does mixed precision
//! pay?": per cell the joint search's choice against the best uniform 8-bit network that fits
//! (at any width) and the best mixed-precision network at the network's own width.

use super::BatchError;
use super::merge::{Merged, flags, numbers, strings};
use super::sweep::{Plan, Sweep, SweepDir, Task};
use super::table_error;
use super::task::{task_inputs, with_coordinates};
use crate::flow::{MainSchedule, fastest_within_tie, run_main};
use crate::report::{Figures, Row};
use crate::results::{read_parquet, slug, write_frame, write_text};
use crate::table::Table;
use crate::units::group_thousands;
use polars::prelude::*;
use std::path::Path;
use std::time::Instant;

/// Runs the main job of `task`'s cell in `dir/cell-.../` (the trained networks and sensitivity
/// tables cached in `dir` serve every cell) without deploying its choice; its shard is the
/// cell's trade-off (`tradeoff.parquet`) with a `chosen` column and the wall time.
pub(super) fn run_cell(
    dir: &Path,
    sweep: &Sweep,
    schedule: &MainSchedule,
    task: &Task,
) -> Result<(DataFrame, f64), BatchError> {
    let started = Instant::now();
    let run = slug(&format!(
        "cell-{:05}-{}-{}",
        task.task, task.platform, task.budget
    ));
    // The cell's stages and fine-tunes go to the task's log (unless `--quiet`): it runs for
    // minutes.
    let progress = !crate::progress::quiet();
    let settings = schedule.settings(
        &sweep.policies,
        sweep.settings.clone(),
        Some(run),
        false,
        progress,
    );
    let report = run_main(&task_inputs(dir, sweep, task), &settings)?;
    let path = report.dir.join("tradeoff.parquet");
    let mut frame = read_parquet(&path)?;
    let rows = frame.height();
    let seconds = started.elapsed().as_secs_f64();
    let chosen: Vec<bool> = (0..rows).map(|i| i == report.winner).collect();
    for column in [
        Column::new("chosen".into(), chosen),
        Column::new("seconds".into(), vec![seconds; rows]),
    ] {
        frame.with_column(column).map_err(table_error(&path))?;
    }
    Ok((with_coordinates(frame, task, &path)?, seconds))
}

/// One cell's fine-tuned networks, read back from its shard.
struct Cell<'a> {
    task: &'a Task,
    /// The FP32 row first, as the main job reports them.
    rows: Vec<Row>,
    latency_ms: Vec<f64>,
    chosen: usize,
    /// The accuracy tie the cell chose with.
    tie: f64,
}

/// The three networks a cell compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    Joint,
    UniformEightBit,
    MixedOwnWidth,
}

impl Pick {
    const ALL: [Pick; 3] = [Pick::Joint, Pick::UniformEightBit, Pick::MixedOwnWidth];

    /// The summary table's label.
    fn name(self, own_width: f64) -> String {
        match self {
            Pick::Joint => "joint search (chosen)".into(),
            Pick::UniformEightBit => "uniform 8-bit, any width".into(),
            Pick::MixedOwnWidth => format!("mixed, width {own_width:?}"),
        }
    }

    /// The kind of network, as a sentence names it.
    fn kind(self, own_width: f64) -> String {
        match self {
            Pick::Joint => "network".into(),
            Pick::UniformEightBit => "uniform 8-bit network".into(),
            Pick::MixedOwnWidth => format!("mixed-precision network at width {own_width:?}"),
        }
    }
}

impl Cell<'_> {
    fn read<'a>(
        task: &'a Task,
        frame: &DataFrame,
        path: &Path,
        tie: f64,
    ) -> Result<Cell<'a>, BatchError> {
        let number = |name: &str| numbers(frame, name, path);
        let flag = |name: &str| flags(frame, name, path);
        let (labels, bits) = (
            strings(frame, "network", path)?,
            strings(frame, "bits", path)?,
        );
        let (accuracy, width, resolution) =
            (number("accuracy")?, number("width")?, number("resolution")?);
        let (cycles, flash, ram) = (
            number("cycles")?,
            number("flash_bytes")?,
            number("ram_bytes")?,
        );
        let (fits, uniform, chosen) = (flag("fits")?, flag("uniform_8_bit")?, flag("chosen")?);
        let rows = (0..frame.height())
            .map(|i| Row {
                label: labels[i].clone(),
                bits: bits[i].clone(),
                // The FP32 rows have no figures.
                figures: (!cycles[i].is_nan()).then(|| Figures {
                    cycles: cycles[i],
                    flash: flash[i] as u64,
                    ram: ram[i] as u64,
                }),
                accuracy: accuracy[i],
                fits: fits[i],
                width: width[i],
                resolution: resolution[i] as usize,
                uniform_8_bit: uniform[i],
            })
            .collect();
        let latency_ms = number("latency_ms")?;
        let chosen = chosen.iter().position(|&c| c).ok_or_else(|| {
            BatchError::Input(format!(
                "{}: no network is marked chosen; run the task again",
                path.display()
            ))
        })?;
        Ok(Cell {
            task,
            rows,
            latency_ms,
            chosen,
            tie,
        })
    }

    /// The network's own width: the FP32 row's.
    fn own_width(&self) -> f64 {
        self.rows.first().map_or(1.0, |r| r.width)
    }

    /// The network's own input resolution: the FP32 row's.
    fn own_resolution(&self) -> usize {
        self.rows.first().map_or(0, |r| r.resolution)
    }

    /// The row of `pick`: the chosen network, or the fastest within the accuracy tie of the
    /// most accurate fitting network of its kind (as the main job chooses; the fixed-width kind
    /// is at the network's own width and resolution); `None` when no network of that kind fits.
    fn pick(&self, pick: Pick) -> Option<usize> {
        let own = (self.own_width(), self.own_resolution());
        let of_kind = |r: &Row| match pick {
            Pick::Joint => true,
            Pick::UniformEightBit => r.uniform_8_bit,
            Pick::MixedOwnWidth => !r.uniform_8_bit && (r.width, r.resolution) == own,
        };
        if pick == Pick::Joint {
            return Some(self.chosen);
        }
        // The FP32 row never fits, so it is never picked.
        let pool = (0..self.rows.len())
            .filter(|&i| self.rows[i].fits && of_kind(&self.rows[i]))
            .collect();
        fastest_within_tie(&self.rows, pool, self.tie)
    }

    /// How the joint choice compares with `other`'s network, and whether it beats it: faster
    /// at equal accuracy (within the tie), or the other kind does not fit.
    fn against(&self, other: Pick) -> (String, bool) {
        let name = other.kind(self.own_width());
        let Some(o) = self.pick(other) else {
            return (format!("no {name} fits"), true);
        };
        let j = self.chosen;
        if o == j {
            return (format!("it is the best {name}"), false);
        }
        let speed = self.latency_ms[o] / self.latency_ms[j];
        let points = self.rows[j].accuracy - self.rows[o].accuracy;
        if speed > 1.0 && points >= -self.tie {
            (
                format!("{speed:.3}x faster than the best {name} ({points:+.2} points)"),
                true,
            )
        } else {
            (
                format!(
                    "{points:+.2} points over the best {name}, which is {:.3}x faster",
                    1.0 / speed
                ),
                false,
            )
        }
    }
}

/// Merges a main sweep: `merged.{parquet,csv}` (every cell's networks), `summary.{parquet,csv}`
/// and `summary.txt` (per cell the three networks compared, and whether the joint search beat
/// both).
pub(super) fn merge_cells(
    folder: &SweepDir,
    plan: &Plan,
    schedule: &MainSchedule,
) -> Result<Merged, BatchError> {
    let mut frames = Vec::new();
    for task in &plan.tasks {
        let path = folder.shard(task.task);
        frames.push((read_parquet(&path)?, path));
    }
    let cells: Vec<Cell> = plan
        .tasks
        .iter()
        .zip(&frames)
        .map(|(task, (frame, path))| Cell::read(task, frame, path, schedule.accuracy_tie))
        .collect::<Result<_, _>>()?;
    let mut frame = super::merge::stack(frames)?;
    let dir = &folder.root;
    write_frame(&mut frame, dir, "merged")?;
    let (mut summary, text) =
        summarise(plan, &cells, schedule.accuracy_tie).map_err(table_error(dir))?;
    write_frame(&mut summary, dir, "summary")?;
    write_text(&dir.join("summary.txt"), &text)?;
    Ok(Merged {
        frame,
        summary,
        text,
        plots: Vec::new(),
    })
}

/// The summary table and text: three rows per cell, then a sentence per cell and the count of
/// cells where the joint search beats both other kinds.
fn summarise(plan: &Plan, cells: &[Cell], tie: f64) -> Result<(DataFrame, String), PolarsError> {
    let mut table = Table::new(&[
        "platform<",
        "budget<",
        "network<",
        "width",
        "bits (w / a)<",
        "accuracy %",
        "latency ms",
        "memory B",
    ]);
    let mut columns: [Vec<String>; 6] = Default::default();
    let mut numbers: [Vec<Option<f64>>; 4] = Default::default();
    let mut beats_both = Vec::new();
    let mut sentences = String::new();
    let mut winners = Vec::new();
    for cell in cells {
        let t = cell.task;
        let (eight, beats_eight) = cell.against(Pick::UniformEightBit);
        let (mixed, beats_mixed) = cell.against(Pick::MixedOwnWidth);
        let beats = beats_eight && beats_mixed;
        let where_ = format!("{} {} {}", t.platform, t.limit.name(), t.budget);
        let chosen = &cell.rows[cell.chosen];
        sentences += &format!(
            "{where_}: the joint search chose {} ({} at width {:?}); {eight}; {mixed}.\n",
            chosen.label,
            if chosen.uniform_8_bit {
                "uniform 8-bit"
            } else {
                "mixed precision"
            },
            chosen.width
        );
        if beats {
            winners.push(where_);
        }
        for pick in Pick::ALL {
            let row = cell.pick(pick);
            let r = row.map(|i| &cell.rows[i]);
            let memory = r.and_then(|r| r.figures.map(|f| (f.flash + f.ram) as f64));
            table.row(vec![
                t.platform.clone(),
                t.budget.clone(),
                pick.name(cell.own_width()),
                r.map_or("-".into(), |r| format!("{:?}", r.width)),
                r.map_or("none fits".into(), |r| r.bits.clone()),
                r.map_or("-".into(), |r| format!("{:.2}", r.accuracy)),
                row.map_or("-".into(), |i| format!("{:.3}", cell.latency_ms[i])),
                memory.map_or("-".into(), |m| group_thousands(m as u64)),
            ]);
            let texts = [
                t.model.clone(),
                t.platform.clone(),
                t.objective.clone(),
                t.budget.clone(),
                pick.name(cell.own_width()),
                r.map_or(String::new(), |r| r.bits.clone()),
            ];
            for (column, v) in columns.iter_mut().zip(texts) {
                column.push(v);
            }
            let values = [
                r.map(|r| r.width),
                r.map(|r| r.accuracy),
                row.map(|i| cell.latency_ms[i]),
                memory,
            ];
            for (column, v) in numbers.iter_mut().zip(values) {
                column.push(v);
            }
            beats_both.push(beats);
        }
    }
    let names = [
        "model",
        "platform",
        "objective",
        "budget",
        "network",
        "bits",
    ];
    let mut frame_columns: Vec<Column> = names
        .iter()
        .zip(columns)
        .map(|(n, v)| Column::new((*n).into(), v))
        .collect();
    for (n, v) in ["width", "accuracy", "latency_ms", "memory_bytes"]
        .iter()
        .zip(numbers)
    {
        frame_columns.push(Column::new((*n).into(), v));
    }
    frame_columns.push(Column::new("joint_beats_both".into(), beats_both));
    let frame = DataFrame::new_infer_height(frame_columns)?;
    let outcome = if winners.is_empty() {
        "in none of them".to_string()
    } else {
        format!("in {}: {}", winners.len(), winners.join(", "))
    };
    let text = format!(
        "sweep {}: {} cells; per cell the joint width x precision search's choice, the best uniform 8-bit network that fits (any width) and the best mixed-precision network at the network's own width (each the fastest within {tie} point of its kind's most accurate that fits; accuracy measured after fine-tuning)\n\n{}\n{sentences}\nThe joint search is faster than both at equal accuracy (within {tie} point), or they do not fit, {outcome}.\n",
        plan.sweep.name,
        cells.len(),
        table.render(),
    );
    Ok((frame, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::sweep::BudgetKind;

    fn task() -> Task {
        Task {
            task: 0,
            model: "zoo:fashion-cnn".into(),
            platform: "gap8".into(),
            objective: "latency".into(),
            limit: BudgetKind::Memory,
            budget: "256KB".into(),
            budget_bytes: 256_000,
            policy: "main".into(),
            seed: 0,
        }
    }

    /// A cell of `(width, uniform 8-bit, accuracy, latency ms, fits)` networks after an FP32
    /// row at width 1.0, with network `chosen` (an index among them) chosen.
    fn cell<'a>(
        task: &'a Task,
        networks: &[(f64, bool, f64, f64, bool)],
        chosen: usize,
    ) -> Cell<'a> {
        let mut rows = vec![Row {
            label: "FP32".into(),
            bits: "fp32".into(),
            figures: None,
            accuracy: 92.0,
            fits: false,
            width: 1.0,
            resolution: 28,
            uniform_8_bit: false,
        }];
        let mut latency_ms = vec![f64::NAN];
        for &(width, uniform_8_bit, accuracy, ms, fits) in networks {
            rows.push(Row {
                label: format!("width {width:?} at {ms} ms"),
                bits: String::new(),
                figures: Some(Figures {
                    cycles: ms * 1e5,
                    flash: 0,
                    ram: 0,
                }),
                accuracy,
                fits,
                width,
                resolution: 28,
                uniform_8_bit,
            });
            latency_ms.push(ms);
        }
        Cell {
            task,
            rows,
            latency_ms,
            chosen: chosen + 1,
            tie: 0.1,
        }
    }

    #[test]
    fn a_narrower_mixed_network_beats_both_other_kinds() {
        let t = task();
        let c = cell(
            &t,
            &[
                (1.0, false, 91.0, 4.0, true),
                (1.0, false, 91.3, 4.5, true),
                (1.0, true, 91.6, 8.0, false),
                (0.75, false, 91.25, 3.0, true),
                (0.6, true, 91.3, 3.5, true),
            ],
            3,
        );
        assert_eq!(c.pick(Pick::UniformEightBit), Some(5));
        assert_eq!(c.pick(Pick::MixedOwnWidth), Some(2));
        let (eight, beats_eight) = c.against(Pick::UniformEightBit);
        assert!(beats_eight, "{eight}");
        assert_eq!(
            eight,
            "1.167x faster than the best uniform 8-bit network (-0.05 points)"
        );
        let (mixed, beats_mixed) = c.against(Pick::MixedOwnWidth);
        assert!(beats_mixed, "{mixed}");
        assert!(mixed.starts_with("1.500x faster"), "{mixed}");
    }

    #[test]
    fn a_faster_but_less_accurate_or_identical_network_is_not_beaten() {
        let t = task();
        let c = cell(
            &t,
            &[(0.6, true, 91.3, 3.5, true), (0.5, true, 90.0, 2.0, true)],
            0,
        );
        // The chosen network is the best 8-bit one; no mixed network at width 1.0 fits.
        assert_eq!(
            c.against(Pick::UniformEightBit),
            ("it is the best uniform 8-bit network".into(), false)
        );
        assert_eq!(
            c.against(Pick::MixedOwnWidth),
            ("no mixed-precision network at width 1.0 fits".into(), true)
        );
        let c = cell(
            &t,
            &[(0.75, false, 91.3, 3.0, true), (0.5, true, 90.0, 2.0, true)],
            0,
        );
        assert_eq!(
            c.against(Pick::UniformEightBit),
            (
                "+1.30 points over the best uniform 8-bit network, which is 1.500x faster".into(),
                false
            )
        );
    }
}
