//! Presentation: what the flows computed, as terminal text, the results files' frames, JSON
//! documents and plots. The flows hand their data in; nothing here runs a stage, so `report`
//! sits below `flow` and imports only the stages whose results it shows.

mod calibration;
mod display;
mod frames;
mod inspect;
mod json;
pub(crate) mod plot;
mod search;
mod tradeoff;

pub use calibration::calibration_report;
pub(crate) use display::{display_unit, display_value};
pub(crate) use frames::{candidates_frame, comparison_frame, tradeoff_frame};
pub use inspect::{InspectOptions, inspect};
pub(crate) use json::assignment_json;
pub use json::export_tables;
pub use search::PolicySummary;
pub(crate) use search::{compare_table, search_plot, search_report};
pub use tradeoff::Figures;
pub use tradeoff::Row;
pub(crate) use tradeoff::{
    bits_summary, deployment_text, stages_text, tradeoff_markdown, tradeoff_plot, tradeoff_text,
};
