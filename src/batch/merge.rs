//! Merging a sweep's shards: one table of every task's candidates, a summary per problem and
//! policy over the seeds (best objective, hypervolume, wall time: mean and spread), and a plot
//! of the best objective against the budget for each model, platform and objective. A main
//! sweep's merge is [`super::main_sweep`]'s.

use super::sweep::{Plan, SweepDir, Task};
use super::{BatchError, table_error};
use crate::objective::{Metric, Objective};
use crate::report::plot;
use crate::results::{read_parquet, slug, write_frame, write_text};
use crate::search::pareto::normalised_hypervolumes;
use crate::table::Table;
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a merge wrote.
pub struct Merged {
    pub frame: DataFrame,
    pub summary: DataFrame,
    pub text: String,
    pub plots: Vec<PathBuf>,
}

/// One task's result, read back from its shard.
struct TaskResult {
    /// Best feasible primary objective (display unit), None when nothing feasible was found.
    best: Option<f64>,
    unit: String,
    /// The feasible Pareto candidates in the objective's metrics.
    front: Vec<Vec<f64>>,
    hypervolume: f64,
    evaluations: f64,
    seconds: f64,
}

/// The shard column holding a metric.
fn metric_column(metric: Metric) -> &'static str {
    match metric {
        Metric::Latency => "cycles",
        Metric::Flash => "flash_bytes",
        Metric::Ram => "ram_bytes",
        Metric::Memory => "memory_bytes",
        Metric::Energy => "energy_mj",
        Metric::Accuracy => "predicted_loss",
    }
}

/// A shard's column as numbers, NaN where a value is missing (FP32's figures).
pub(super) fn numbers(frame: &DataFrame, name: &str, path: &Path) -> Result<Vec<f64>, BatchError> {
    let column = frame
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(table_error(path))?;
    let values = column.f64().map_err(table_error(path))?;
    Ok(values.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// A shard's column of text, empty where a value is missing.
pub(super) fn strings(
    frame: &DataFrame,
    name: &str,
    path: &Path,
) -> Result<Vec<String>, BatchError> {
    let column = frame.column(name).map_err(table_error(path))?;
    let values = column.str().map_err(table_error(path))?;
    Ok(values.iter().map(|v| v.unwrap_or("").to_string()).collect())
}

/// A shard's column of flags, false where a value is missing.
pub(super) fn flags(frame: &DataFrame, name: &str, path: &Path) -> Result<Vec<bool>, BatchError> {
    let column = frame.column(name).map_err(table_error(path))?;
    let values = column.bool().map_err(table_error(path))?;
    Ok(values.iter().map(|v| v.unwrap_or(false)).collect())
}

/// Reads a task's shard: its rows and its result.
fn read_task(folder: &SweepDir, task: &Task) -> Result<(DataFrame, TaskResult), BatchError> {
    let path = folder.shard(task.task);
    let frame = read_parquet(&path)?;
    let config = Objective::load(&task.objective).map_err(crate::flow::FlowError::from)?;
    let pareto = flags(&frame, "pareto", &path)?;
    let feasible = flags(&frame, "feasible", &path)?;
    let value = numbers(&frame, "objective_value", &path)?;
    let metrics: Vec<Vec<f64>> = config
        .minimize
        .iter()
        .map(|&m| numbers(&frame, metric_column(m), &path))
        .collect::<Result<_, _>>()?;
    let on_front: Vec<usize> = (0..frame.height())
        .filter(|&i| pareto[i] && feasible[i])
        .collect();
    let best = on_front
        .iter()
        .map(|&i| value[i])
        .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.min(v))));
    let front = on_front
        .iter()
        .map(|&i| metrics.iter().map(|column| column[i]).collect())
        .collect();
    let first = |name: &str| -> Result<f64, BatchError> {
        Ok(numbers(&frame, name, &path)?
            .first()
            .copied()
            .unwrap_or(0.0))
    };
    let unit = frame
        .column("objective_unit")
        .ok()
        .and_then(|c| c.str().ok().and_then(|s| s.get(0).map(str::to_string)))
        .unwrap_or_default();
    let result = TaskResult {
        best,
        unit,
        front,
        hypervolume: 0.0,
        evaluations: first("evaluations")?,
        seconds: first("seconds")?,
    };
    Ok((frame, result))
}

/// Mean and sample standard deviation.
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The problem a task solves (everything but the policy and seed).
fn problem_key(t: &Task) -> (&str, &str, &str, &'static str, u64) {
    (
        &t.model,
        &t.platform,
        &t.objective,
        t.limit.name(),
        t.budget_bytes,
    )
}

/// Merges the shards of the sweep in `dir` into `merged.{parquet,csv}`, `summary.{parquet,csv}`,
/// `summary.txt` and `plots/`. Every task must be done.
pub fn merge(dir: &Path) -> Result<Merged, BatchError> {
    let folder = SweepDir::new(dir);
    let plan = folder.plan()?;
    let missing: Vec<String> = plan
        .tasks
        .iter()
        .filter(|t| !folder.shard(t.task).exists())
        .map(|t| t.task.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(BatchError::Input(format!(
            "{} of {} tasks of {} have no shard yet (tasks {}); see `qsearch batch status {}` and \
             run them with `qsearch batch submit {} --missing`",
            missing.len(),
            plan.tasks.len(),
            dir.display(),
            missing.join(", "),
            dir.display(),
            dir.display()
        )));
    }
    if let Some(schedule) = &plan.sweep.main {
        return super::main_sweep::merge_cells(&folder, &plan, schedule);
    }
    let mut shards = Vec::new();
    let mut results = Vec::new();
    for task in &plan.tasks {
        let (shard, result) = read_task(&folder, task)?;
        shards.push((shard, folder.shard(task.task)));
        results.push(result);
    }
    let mut frame = stack(shards)?;
    // Hypervolumes are normalised within each problem, over every policy and seed.
    let mut problems: BTreeMap<_, Vec<usize>> = BTreeMap::new();
    for t in &plan.tasks {
        problems.entry(problem_key(t)).or_default().push(t.task);
    }
    for members in problems.values() {
        let fronts: Vec<Vec<Vec<f64>>> =
            members.iter().map(|&i| results[i].front.clone()).collect();
        for (&i, hv) in members.iter().zip(normalised_hypervolumes(&fronts)) {
            results[i].hypervolume = hv;
        }
    }
    write_frame(&mut frame, dir, "merged")?;
    let (mut summary, text) = summarise(&plan, &results).map_err(table_error(dir))?;
    write_frame(&mut summary, dir, "summary")?;
    write_text(&dir.join("summary.txt"), &text)?;
    let plots = plot_budgets(&plan, &results, &dir.join("plots"))?;
    Ok(Merged {
        frame,
        summary,
        text,
        plots,
    })
}

/// The shards (each with its path) one under the other.
pub(super) fn stack(shards: Vec<(DataFrame, PathBuf)>) -> Result<DataFrame, BatchError> {
    let mut frame: Option<DataFrame> = None;
    for (shard, path) in shards {
        match &mut frame {
            Some(f) => {
                f.vstack_mut(&shard).map_err(table_error(&path))?;
            }
            None => frame = Some(shard),
        }
    }
    Ok(frame.unwrap_or_default())
}

/// The tasks of each problem and policy (their seeds), each group with its first task, in the
/// order of their first tasks.
fn policy_groups(plan: &Plan) -> Vec<(&Task, Vec<usize>)> {
    let mut groups: Vec<(&Task, Vec<usize>)> = Vec::new();
    let mut group_of = std::collections::HashMap::new();
    for t in &plan.tasks {
        let g = *group_of
            .entry((problem_key(t), t.policy.as_str()))
            .or_insert_with(|| {
                groups.push((t, Vec::new()));
                groups.len() - 1
            });
        groups[g].1.push(t.task);
    }
    groups
}

/// Per problem and policy, over the seeds: runs, feasible runs, best objective and hypervolume
/// (mean, standard deviation), wall time (mean).
fn summarise(plan: &Plan, results: &[TaskResult]) -> Result<(DataFrame, String), PolarsError> {
    let groups = policy_groups(plan);
    let mut table = Table::new(&[
        "model<",
        "platform<",
        "objective<",
        "budget<",
        "policy<",
        "runs",
        "feasible",
        "best mean",
        "best sd",
        "best min",
        "unit<",
        "HV mean",
        "HV sd",
        "wall s",
    ]);
    let mut cols: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    let (mut text_cols, mut runs, mut feasible) = (vec![Vec::new(); 6], Vec::new(), Vec::new());
    for (t, members) in &groups {
        let bests: Vec<f64> = members.iter().filter_map(|&i| results[i].best).collect();
        let hvs: Vec<f64> = members.iter().map(|&i| results[i].hypervolume).collect();
        let secs: Vec<f64> = members.iter().map(|&i| results[i].seconds).collect();
        let evals: Vec<f64> = members.iter().map(|&i| results[i].evaluations).collect();
        let unit = results[members[0]].unit.clone();
        let best = (!bests.is_empty()).then(|| mean_sd(&bests));
        let best_min = bests.iter().copied().reduce(f64::min);
        let (hv, hv_sd) = mean_sd(&hvs);
        let wall = mean_sd(&secs).0;
        let budget = format!("{} {}", t.limit.name(), t.budget);
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        table.row(vec![
            t.model.clone(),
            t.platform.clone(),
            t.objective.clone(),
            budget.clone(),
            t.policy.clone(),
            members.len().to_string(),
            bests.len().to_string(),
            fmt(best.map(|b| b.0)),
            fmt(best.map(|b| b.1)),
            fmt(best_min),
            unit.clone(),
            format!("{hv:.4}"),
            format!("{hv_sd:.4}"),
            format!("{wall:.2}"),
        ]);
        for (k, v) in [
            &t.model,
            &t.platform,
            &t.objective,
            &budget,
            &t.policy,
            &unit,
        ]
        .into_iter()
        .enumerate()
        {
            text_cols[k].push(v.clone());
        }
        runs.push(members.len() as u32);
        feasible.push(bests.len() as u32);
        for (name, v) in [
            ("best_mean", best.map(|b| b.0)),
            ("best_sd", best.map(|b| b.1)),
            ("best_min", best_min),
            ("hypervolume_mean", Some(hv)),
            ("hypervolume_sd", Some(hv_sd)),
            ("evaluations_mean", Some(mean_sd(&evals).0)),
            ("seconds_mean", Some(wall)),
        ] {
            cols.entry(name).or_default().push(v);
        }
    }
    let names = ["model", "platform", "objective", "budget", "policy", "unit"];
    let mut columns: Vec<Column> = names
        .iter()
        .zip(text_cols)
        .map(|(n, v)| Column::new((*n).into(), v))
        .collect();
    columns.push(Column::new("runs".into(), runs));
    columns.push(Column::new("feasible_runs".into(), feasible));
    for (name, v) in cols {
        columns.push(Column::new(name.into(), v));
    }
    let frame = DataFrame::new_infer_height(columns)?;
    let text = format!(
        "sweep {}: {} tasks; best objective and hypervolume over seeds (HV normalised per problem)\n\n{}",
        plan.sweep.name,
        plan.tasks.len(),
        table.render()
    );
    Ok((frame, text))
}

/// One plot per model, platform, objective and budget kind: each policy's best objective
/// against the budget (every seed as a point, the mean as a line).
fn plot_budgets(
    plan: &Plan,
    results: &[TaskResult],
    dir: &Path,
) -> Result<Vec<PathBuf>, BatchError> {
    let mut figures: BTreeMap<(String, String, String, &str), Vec<&Task>> = BTreeMap::new();
    for t in &plan.tasks {
        figures
            .entry((
                t.model.clone(),
                t.platform.clone(),
                t.objective.clone(),
                t.limit.name(),
            ))
            .or_default()
            .push(t);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| BatchError::Input(format!("{}: {e}", dir.display())))?;
    let mut written = Vec::new();
    for ((model, platform, objective, limit), tasks) in figures {
        let mut policies: Vec<&str> = Vec::new();
        for t in &tasks {
            if !policies.contains(&t.policy.as_str()) {
                policies.push(&t.policy);
            }
        }
        let series = policies
            .iter()
            .map(|&p| {
                let runs: Vec<(f64, f64)> = tasks
                    .iter()
                    .filter(|t| t.policy == p)
                    .filter_map(|t| {
                        results[t.task]
                            .best
                            .map(|b| (t.budget_bytes as f64 / 1e3, b))
                    })
                    .collect();
                let mut by_budget: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
                for &(x, y) in &runs {
                    by_budget.entry((x * 1e3) as u64).or_default().push(y);
                }
                let means = by_budget
                    .into_iter()
                    .map(|(x, ys)| (x as f64 / 1e3, mean_sd(&ys).0))
                    .collect();
                plot::Series {
                    label: p.to_string(),
                    points: runs,
                    front: means,
                }
            })
            .collect();
        let unit = tasks
            .iter()
            .find_map(|t| (!results[t.task].unit.is_empty()).then(|| results[t.task].unit.clone()))
            .unwrap_or_default();
        let stem = dir.join(slug(&format!("{model}-{platform}-{objective}-{limit}")));
        let figure = plot::Plot {
            title: format!("{model} on {platform}: best {objective} by {limit} budget"),
            x_label: format!("{limit} budget (kB)"),
            y_label: format!("best {unit}"),
            series,
            x_marks: Vec::new(),
        };
        plot::write(&figure, &stem).map_err(BatchError::Plot)?;
        written.push(stem.with_extension("svg"));
    }
    Ok(written)
}
