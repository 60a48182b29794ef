//! qsearch: per-layer mixed-precision search for neural networks on PULP microcontrollers.
//!
//! # The pipeline
//!
//! Data flows one way, top to bottom; each stage imports only the stages above it:
//!
//! ```text
//! graph    network IR, ONNX import/export, the zoo              graph::load_model
//! cost     latency and memory per layer on a platform          cost::CostTable
//! search   policies over a search space for an objective,      search::policy, search::run_policy
//!          a sensitivity table as the accuracy proxy
//! train    floating-point training, QAT fine-tuning            train::fit, train::qat::finetune
//! deploy   integer graph, golden model, C code, DORY and       deploy::integerize,
//!          Deeploy exports, the bit-exact checks               deploy::codegen::generate
//! report   tables, frames and plots of what the stages return
//! ```
//!
//! [`flow`] strings the stages together for the commands; each command is one entry point:
//! [`flow::run_main`] (the main job), [`flow::search`], [`flow::compare`], [`flow::train`],
//! [`flow::deploy`], [`flow::microbench`], and [`batch`] for sweeps on SLURM. [`flow::prepare`]
//! turns a model, a platform and limits into the problem a search runs on. [`quant`] holds the
//! integer arithmetic every stage shares (docs/integer-semantics.md); [`results`] writes run
//! folders atomically; [`rtl`] compiles C for the CV32E40P and runs it on the core's RTL;
//! [`stats`] holds the rank correlation with which [`flow::proxy_study`] checks the accuracy
//! proxy.

pub mod batch;
pub(crate) mod cache;
pub mod cost;
pub mod deploy;
pub(crate) mod escape;
pub mod exit;
pub mod flow;
pub mod fuzz;
pub mod graph;
pub(crate) mod hash;
pub mod objective;
pub mod platform;
pub mod precision;
pub mod progress;
pub mod quant;
pub mod report;
pub mod results;
pub mod rtl;
pub mod search;
pub(crate) mod sensitivity;
pub(crate) mod space;
pub mod stats;
pub(crate) mod table;
pub mod train;
pub mod units;
