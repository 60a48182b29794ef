//! The quantization a network was fine-tuned for (`quantization.json`): per-layer weight bits,
//! per-buffer activation bits, learned PACT bounds and signs. Fine-tuning writes it; the
//! integerizer reads it.

use crate::precision::Bits;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The quantization a network was fine-tuned for, by layer and buffer name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    pub layers: Vec<LayerBits>,
    pub buffers: Vec<BufferQuant>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerBits {
    pub layer: String,
    pub weight_bits: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufferQuant {
    pub buffer: String,
    pub bits: u32,
    /// The PACT clipping bound (the input's is 1: pixels scaled to [0, 1]).
    pub bound: f32,
    pub signed: bool,
}

/// A `quantization.json` that cannot be used: the file it came from and why.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct QuantizationError {
    pub origin: String,
    pub message: String,
}

/// The range of PACT bounds a `quantization.json` may hold: wider than any trained network's,
/// narrow enough that the ratios of scales integerization takes fit its integers.
const MIN_BOUND: f32 = 1e-6;
const MAX_BOUND: f32 = 1e6;

impl Quantization {
    /// Parses a `quantization.json` and checks it: precisions of 2, 4 or 8 bits, PACT bounds
    /// from 1e-6 to 1e6, one entry per layer and buffer name. `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Quantization, QuantizationError> {
        let err = |message: String| QuantizationError {
            origin: origin.into(),
            message,
        };
        let q: Quantization =
            serde_json::from_str(text).map_err(|e| err(format!("not a quantization file: {e}")))?;
        let mut layers = HashSet::new();
        for l in &q.layers {
            if Bits::from_count(l.weight_bits).is_none() {
                return Err(err(format!(
                    "layer '{}': weight_bits {} must be 2, 4 or 8",
                    l.layer, l.weight_bits
                )));
            }
            if !layers.insert(l.layer.as_str()) {
                return Err(err(format!("layer '{}' is listed twice", l.layer)));
            }
        }
        let mut buffers = HashSet::new();
        for b in &q.buffers {
            if Bits::from_count(b.bits).is_none() {
                return Err(err(format!(
                    "buffer '{}': bits {} must be 2, 4 or 8",
                    b.buffer, b.bits
                )));
            }
            if !(MIN_BOUND..=MAX_BOUND).contains(&b.bound) {
                return Err(err(format!(
                    "buffer '{}': bound {} must be a number from {MIN_BOUND:e} to {MAX_BOUND:e} (a PACT clipping bound)",
                    b.buffer, b.bound
                )));
            }
            if !buffers.insert(b.buffer.as_str()) {
                return Err(err(format!("buffer '{}' is listed twice", b.buffer)));
            }
        }
        Ok(q)
    }
}
