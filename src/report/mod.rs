//! Human-readable output: terminal tables, the inspection and search reports, and plots.

mod inspect;
pub mod plot;
mod search;
mod table;

pub use inspect::{InspectOptions, inspect};
pub use search::{assignment_table, compare_table, metrics_block, search_report, value_text};
pub use table::{TERMINAL_WIDTH, Table, short_name};
