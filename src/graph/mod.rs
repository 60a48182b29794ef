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

pub use fused::{ActId, ActTensor, FusedGraph, Layer, LayerId, LayerKind};
pub use ir::{Graph, GraphBuilder, Node, NodeStats, Tensor, TensorId};
pub use load::{ModelError, load_model};
pub use op::{Activation, BatchNorm, Conv, Linear, Op, Padding, PoolKind, Shape, Window};
pub use passes::{fold_batchnorm, fold_for_analysis, fold_padding};

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
