//! qsearch: per-layer mixed-precision search for neural networks on PULP microcontrollers.
//!
//! Data flows one way: [`graph`] (network IR, ONNX, zoo) -> [`cost`] (latency and memory on a
//! [`platform`]) -> [`search`] (policies over a [`space`] for an [`objective`], with a
//! [`sensitivity`] table as accuracy proxy) -> fine-tuning -> deployment -> [`report`]. [`flow`]
//! strings the stages together for the commands; [`results`] writes run folders.

pub mod batch;
pub mod cost;
pub mod deploy;
pub mod escape;
pub mod exit;
pub mod flow;
pub mod fuzz;
pub mod graph;
pub mod objective;
pub mod platform;
pub mod precision;
pub mod progress;
pub mod quant;
pub mod report;
pub mod results;
pub mod search;
pub mod sensitivity;
pub mod space;
pub mod table;
pub mod train;
pub mod units;
