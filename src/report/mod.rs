//! Human-readable output: terminal tables and the per-layer inspection report.

mod inspect;
mod table;

pub use inspect::{InspectOptions, inspect};
pub use table::Table;
