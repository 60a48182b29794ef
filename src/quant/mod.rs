//! The integer semantics of `docs/integer-semantics.md`, written once: level counts and integer
//! ranges, the rounding rule, weight and activation quantization, requantization, the packing of
//! sub-byte values, and the quantization a fine-tuning leaves (`quantization.json`).
//!
//! Everything that quantizes calls this module: the fake quantization of fine-tuning
//! (`train::model`), the sensitivity proxy, the integerizer, the integer golden model, the
//! generated C's constants, the DORY and Deeploy exports and the microbenchmarks. It sits at the
//! bottom of the module graph (it uses only `precision`), so that `train` and `deploy` both
//! depend on it and not on each other.

mod file;
mod levels;
mod pack;
mod quantize;
mod requant;
mod rounding;

pub use file::{BufferQuant, LayerBits, Quantization};
pub use levels::signed_levels;
pub(crate) use levels::{activation_levels, code_count, type_range, unsigned_levels};
pub(crate) use pack::{pack, packed_bytes};
pub(crate) use quantize::{
    MIN_WEIGHT_RANGE, activation_scale, quantize_activation, quantize_weights,
};
pub use requant::Requant;
pub(crate) use requant::largest_product;
pub use requant::multipliers;
pub(crate) use rounding::{Real, round_half_up, rounding_half};
