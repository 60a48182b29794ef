//! Batch sweeps: a grid of searches (models x platforms x objectives x budgets x policies x
//! seeds), or of main jobs (models x platforms x objectives x budgets), planned into numbered
//! tasks, run as a SLURM job array (or as local processes), each
//! task writing its own shard atomically, and merged with polars into one table, a summary and
//! plots.

pub mod local;
mod main_sweep;
pub mod merge;
pub mod slurm;
pub mod status;
pub mod sweep;
pub mod task;

use polars::prelude::PolarsError;

pub use local::run_local;
pub use merge::merge;
pub use slurm::{array_ranges, submit};
pub use status::{Status, status};
pub use sweep::{Plan, Sweep, SweepDir, Task, plan};
pub use task::{TaskRun, run_task, tasks_to_submit};

/// A polars error on the table at `path`, as a [`BatchError`].
pub(crate) fn table_error(path: &std::path::Path) -> impl Fn(PolarsError) -> BatchError + '_ {
    move |source| {
        BatchError::from(crate::results::ResultsError::Table {
            path: path.display().to_string(),
            source,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{origin}: {message}")]
    Sweep { origin: String, message: String },
    #[error(transparent)]
    Flow(#[from] crate::flow::FlowError),
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
    #[error(transparent)]
    Search(#[from] crate::search::SearchError),
    #[error("{0}")]
    Slurm(String),
    #[error("plot {0}")]
    Plot(String),
    #[error("{0}")]
    Input(String),
}
