//! Resolves a model argument: `zoo:NAME[:options]` or a path to an `.onnx` file.

use super::Graph;
use super::onnx::{ImportError, import_file};
use super::zoo::{ZooError, build};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Zoo(#[from] ZooError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("{0}: unknown model format; give an .onnx file or zoo:NAME (see `qsearch zoo`)")]
    Format(String),
}

/// Loads the network named by `spec`.
pub fn load_model(spec: &str) -> Result<Graph, ModelError> {
    if let Some(zoo) = spec.strip_prefix("zoo:") {
        return Ok(build(zoo)?);
    }
    let path = Path::new(spec);
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("onnx") => Ok(import_file(path)?),
        _ => Err(ModelError::Format(spec.to_string())),
    }
}
