//! ONNX import and export. The protobuf types are generated at build time from the vendored
//! `proto/onnx.proto`.

mod constant_ops;
pub(crate) mod export;
mod import;
pub(crate) mod tensor;

pub use export::{export_bytes, export_file};
pub use import::{import_bytes, import_file};

#[allow(clippy::all, missing_docs)]
pub(crate) mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// Why an ONNX file could not be turned into a graph. Every variant names the file and, where it
/// applies, the node.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read the file: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid ONNX model (protobuf decoding failed: {message})")]
    Decode { path: String, message: String },
    #[error("{path}: {message}")]
    Model { path: String, message: String },
    #[error(
        "{path}: node '{node}' has operator '{op_type}', which qsearch does not support; supported operators: {supported}"
    )]
    UnsupportedOp {
        path: String,
        node: String,
        op_type: String,
        supported: String,
    },
    #[error("{path}: node '{node}' ({op_type}): {message}")]
    Node {
        path: String,
        node: String,
        op_type: String,
        message: String,
    },
    #[error("{path}: tensor '{tensor}': {message}")]
    Tensor {
        path: String,
        tensor: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Graph {
        path: String,
        source: super::GraphError,
    },
}

/// Why a graph could not be written as ONNX.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: cannot write the file: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
