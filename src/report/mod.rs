//! Human-readable output: terminal tables, the inspection and search reports, and plots.

mod calibration;
mod inspect;
pub mod plot;
mod search;

pub use calibration::calibration_report;
pub use inspect::{InspectOptions, inspect};
pub use search::{assignment_table, compare_table, metrics_block, search_report, value_text};
