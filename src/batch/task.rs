//! One task of a sweep: a search whose candidates become the task's shard (a main sweep's task
//! runs the main job instead, [`super::main_sweep`]). The shard is written atomically once the
//! task is over, so a finished task re-run is a no-op and a task killed midway leaves no shard at
//! all.

use super::status::Status;
use super::sweep::{BudgetKind, Sweep, SweepDir, Task};
use super::{BatchError, table_error};
use crate::flow::{Inputs, Limits, prepare};
use crate::report::{candidates_frame, display_unit, display_value};
use crate::results::{write_parquet, write_text};
use crate::search::{Settings, policy, run_policy};
use polars::prelude::*;
use std::path::Path;

/// What running a task did.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskRun {
    /// The shard was already there; nothing ran.
    AlreadyDone,
    /// The search ran and its shard was written.
    Finished { candidates: usize, seconds: f64 },
}

/// Runs task `index` of the sweep in `dir` unless its shard exists. A failure is recorded in
/// `dir/failed/` (for `batch status`) and returned.
pub fn run_task(dir: &Path, index: usize) -> Result<TaskRun, BatchError> {
    let folder = SweepDir::new(dir);
    let plan = folder.plan()?;
    let task = plan.tasks.get(index).ok_or_else(|| {
        BatchError::Input(format!(
            "task {index}: the sweep in {} has tasks 0 to {}",
            dir.display(),
            plan.tasks.len().saturating_sub(1)
        ))
    })?;
    if folder.shard(index).exists() {
        return Ok(TaskRun::AlreadyDone);
    }
    let ran = match &plan.sweep.main {
        Some(schedule) => super::main_sweep::run_cell(dir, &plan.sweep, schedule, task),
        None => search_task(dir, &plan.sweep, task),
    };
    match ran {
        Ok((mut frame, seconds)) => {
            let candidates = frame.height();
            write_parquet(&mut frame, &folder.shard(index))?;
            let _ = std::fs::remove_file(folder.failure(index));
            Ok(TaskRun::Finished {
                candidates,
                seconds,
            })
        }
        Err(e) => {
            write_text(&folder.failure(index), &format!("{e}\n"))?;
            Err(e)
        }
    }
}

/// The tasks a submission runs: those missing or failed when `only_unfinished` (`submit
/// --missing`, and every local run), otherwise every task of the plan.
pub fn tasks_to_submit(status: &Status, only_unfinished: bool) -> Vec<usize> {
    if only_unfinished {
        status.to_run()
    } else {
        status.tasks.iter().map(|(t, _)| t.task).collect()
    }
}

/// What the task's problem is made from: its model, platform, objective and budget, the sweep's
/// search space, and the sweep folder as the results folder (shared caches of trained networks
/// and sensitivity tables).
pub(super) fn task_inputs(dir: &Path, sweep: &Sweep, task: &Task) -> Inputs {
    let budget = Some(task.budget_bytes);
    let limits = match task.limit {
        BudgetKind::Memory => Limits {
            memory: budget,
            ..Limits::default()
        },
        BudgetKind::Flash => Limits {
            flash: budget,
            ..Limits::default()
        },
        BudgetKind::Ram => Limits {
            ram: budget,
            ..Limits::default()
        },
    };
    Inputs {
        model: task.model.clone(),
        platform: task.platform.clone(),
        space: sweep.space.clone(),
        objective: task.objective.clone(),
        limits,
        sensitivity: None,
        results: dir.to_path_buf(),
        progress: false,
    }
}

/// Puts the task's coordinates (task, model, platform, objective, limit, budget) in front of
/// `frame`'s columns.
pub(super) fn with_coordinates(
    mut frame: DataFrame,
    task: &Task,
    path: &Path,
) -> Result<DataFrame, BatchError> {
    let rows = frame.height();
    let columns = [
        Column::new("task".into(), vec![task.task as u32; rows]),
        Column::new("model".into(), vec![task.model.clone(); rows]),
        Column::new("platform".into(), vec![task.platform.clone(); rows]),
        Column::new("objective".into(), vec![task.objective.clone(); rows]),
        Column::new("limit".into(), vec![task.limit.name().to_string(); rows]),
        Column::new("budget_bytes".into(), vec![task.budget_bytes; rows]),
    ];
    for (i, c) in columns.into_iter().enumerate() {
        frame.insert_column(i, c).map_err(table_error(path))?;
    }
    Ok(frame)
}

/// The task's search: its candidates with the task's coordinates, and the search's wall time.
fn search_task(dir: &Path, sweep: &Sweep, task: &Task) -> Result<(DataFrame, f64), BatchError> {
    let settings = &Settings {
        seed: task.seed,
        ..sweep.settings.clone()
    };
    let prepared = prepare(&task_inputs(dir, sweep, task))?;
    let problem = &prepared.problem;
    let mut p = policy(&task.policy, settings)?;
    let result = run_policy(p.as_mut(), problem, settings, false)?;
    let primary = problem.objective.primary();
    let primary_values: Vec<f64> = result
        .candidates
        .iter()
        .map(|c| display_value(problem, primary, c.metrics.get(primary)))
        .collect();
    let rows = result.candidates.len();
    let table = &table_error(dir);
    let mut frame = candidates_frame(problem, &[&result]).map_err(table)?;
    let columns = [
        Column::new("objective_value".into(), primary_values),
        Column::new(
            "objective_unit".into(),
            vec![display_unit(problem, primary); rows],
        ),
        Column::new("evaluations".into(), vec![result.evaluations; rows]),
        Column::new("seconds".into(), vec![result.seconds; rows]),
    ];
    for (i, c) in columns.into_iter().enumerate() {
        frame.insert_column(i, c).map_err(table)?;
    }
    Ok((with_coordinates(frame, task, dir)?, result.seconds))
}
