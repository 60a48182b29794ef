//! Where each task of a sweep stands: done (its shard exists), queued or running (from
//! `squeue`), failed (a recorded error, or SLURM ended it), or missing (never run, or forgotten).

use super::BatchError;
use super::slurm::{jobs, task_states};
use super::sweep::{SweepDir, Task};
use crate::table::Table;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum TaskState {
    Done,
    Queued,
    Running,
    /// Why: the recorded error or SLURM's end state.
    Failed(String),
    Missing,
}

impl TaskState {
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Done => "done",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Failed(_) => "failed",
            TaskState::Missing => "missing",
        }
    }

    /// Whether `submit --missing` runs the task again.
    pub(crate) fn needs_run(&self) -> bool {
        matches!(self, TaskState::Failed(_) | TaskState::Missing)
    }
}

/// The sweep's tasks with their states; `slurm` says whether `squeue` could be asked.
pub struct Status {
    pub tasks: Vec<(Task, TaskState)>,
    pub slurm: bool,
}

/// The state of every task of the sweep in `dir`.
pub fn status(dir: &Path) -> Result<Status, BatchError> {
    let folder = SweepDir::new(dir);
    let plan = folder.plan()?;
    let submitted = jobs(&folder)?;
    let slurm_states = if submitted.is_empty() {
        Some(Default::default())
    } else {
        task_states(&submitted)
    };
    let tasks = plan
        .tasks
        .into_iter()
        .map(|task| {
            let slurm = slurm_states
                .as_ref()
                .and_then(|s| s.get(&task.task))
                .map(String::as_str);
            let failure = std::fs::read_to_string(folder.failure(task.task)).ok();
            let state = if folder.shard(task.task).exists() {
                TaskState::Done
            } else {
                match (slurm, failure) {
                    (Some("PENDING" | "CONFIGURING" | "REQUEUED" | "RESIZING"), _) => {
                        TaskState::Queued
                    }
                    (Some("RUNNING" | "COMPLETING" | "SUSPENDED" | "STAGE_OUT"), _) => {
                        TaskState::Running
                    }
                    (_, Some(error)) => {
                        TaskState::Failed(error.lines().next().unwrap_or("failed").to_string())
                    }
                    (Some("COMPLETED"), None) => {
                        TaskState::Failed("SLURM completed the task but it left no shard".into())
                    }
                    (Some(end), None) => TaskState::Failed(format!("SLURM: {end}")),
                    (None, None) => TaskState::Missing,
                }
            };
            (task, state)
        })
        .collect();
    Ok(Status {
        tasks,
        slurm: slurm_states.is_some(),
    })
}

impl Status {
    /// Tasks in `state` (by name).
    pub fn count(&self, state: &str) -> usize {
        self.tasks.iter().filter(|(_, s)| s.name() == state).count()
    }

    /// Tasks that `submit --missing` runs again.
    pub(crate) fn to_run(&self) -> Vec<usize> {
        self.tasks
            .iter()
            .filter(|(_, s)| s.needs_run())
            .map(|(t, _)| t.task)
            .collect()
    }

    /// The task table and a one-line count.
    pub fn render(&self) -> String {
        let mut table = Table::new(&[
            "task",
            "model<",
            "platform<",
            "objective<",
            "budget<",
            "policy<",
            "seed",
            "state<",
            "detail<",
        ]);
        for (t, s) in &self.tasks {
            let detail = match s {
                TaskState::Failed(why) => why.clone(),
                _ => String::new(),
            };
            table.row(vec![
                t.task.to_string(),
                t.model.clone(),
                t.platform.clone(),
                t.objective.clone(),
                format!("{} {}", t.limit.name(), t.budget),
                t.policy.clone(),
                t.seed.to_string(),
                s.name().into(),
                detail,
            ]);
        }
        let mut text = table.render();
        text.push_str(&format!(
            "\n{} tasks: {} done, {} running, {} queued, {} failed, {} missing{}\n",
            self.tasks.len(),
            self.count("done"),
            self.count("running"),
            self.count("queued"),
            self.count("failed"),
            self.count("missing"),
            if self.slurm {
                ""
            } else {
                " (squeue could not be run: SLURM states unknown)"
            }
        ));
        text
    }
}
