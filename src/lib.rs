//! qsearch: per-layer mixed-precision search for neural networks on PULP microcontrollers.
//!
//! Data flows one way: [`graph`] (network IR, ONNX, zoo) -> [`cost`] (latency and memory on a
//! [`platform`]) -> search -> fine-tuning -> deployment -> report.

pub mod cost;
pub mod graph;
pub mod platform;
pub mod precision;
pub mod report;
pub mod units;
