//! The network IR (layers, tensors, shapes, MACs, parameters), its deployment view, ONNX import
//! and export, and the built-in zoo.

pub mod eval;
mod fused;
mod ir;
mod load;
pub mod onnx;
mod op;
mod passes;
pub mod zoo;

pub use fused::Layer;
pub(crate) use fused::{ActId, LayerId};
pub use fused::{FusedGraph, LayerKind};
pub use ir::Node;
pub(crate) use ir::TensorId;
pub use ir::{Graph, GraphBuilder, Tensor};
pub use load::ModelError;
pub use load::load_model;
pub use op::{Activation, BatchNorm, Conv, Linear, Op, Padding, PoolKind, Shape, Window};
pub(crate) use passes::fold_for_analysis;

/// A graph that breaks the IR's invariants.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("node '{node}' ({op}): {message}")]
    Shape {
        node: String,
        op: &'static str,
        message: String,
    },
    #[error("malformed graph: {0}")]
    Structure(String),
}
