//! Weight and activation quantization: weights signed, symmetric, per output channel;
//! activations per tensor over their PACT bound, unsigned or signed.

use super::levels::{activation_levels, signed_levels};
use super::rounding::round_half_up;

/// The floor of a weight channel's largest magnitude, so that an all-zero channel still has a
/// (tiny) scale.
pub(crate) const MIN_WEIGHT_RANGE: f32 = 1e-12;

/// The scale of a weight channel whose largest magnitude is `max_abs`: `max_abs / L` at `bits`.
pub(crate) fn weight_scale(max_abs: f32, bits: u32) -> f32 {
    max_abs.max(MIN_WEIGHT_RANGE) / signed_levels(bits) as f32
}

/// The integer of weight `w` at `scale`: `clamp(round(w / scale), -L, L)`.
pub(crate) fn quantize_weight(w: f32, scale: f32, bits: u32) -> i8 {
    let levels = signed_levels(bits) as f32;
    round_half_up(w / scale).clamp(-levels, levels) as i8
}

/// The per-output-channel symmetric quantization of `weight` (rows of `row` values) at `bits`,
/// in f32 exactly as the fine-tuning computes it: the integers and each row's scale.
pub(crate) fn quantize_weights(weight: &[f32], row: usize, bits: u32) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(weight.len());
    let mut scales = Vec::new();
    for channel in weight.chunks(row) {
        let max = channel.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = weight_scale(max, bits);
        scales.push(scale);
        q.extend(channel.iter().map(|&w| quantize_weight(w, scale, bits)));
    }
    (q, scales)
}

/// The scale of an activation buffer with PACT bound `bound`: the bound maps to the buffer's
/// [`activation_levels`].
pub(crate) fn activation_scale(bound: f32, bits: u32, signed: bool) -> f64 {
    f64::from(bound) / f64::from(activation_levels(bits, signed))
}

/// The integer of the real `x` in a buffer of `scale`: `round(x / scale)` clamped to
/// `[lo, hi]`.
pub(crate) fn quantize_activation(x: f64, scale: f64, (lo, hi): (i32, i32)) -> i32 {
    round_half_up(x / scale).clamp(f64::from(lo), f64::from(hi)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_quantize_as_the_formula_says() {
        let (q, s) = quantize_weights(&[0.5, -1.0, 0.25, 0.0, 0.1, -0.05], 3, 2);
        assert_eq!(s, vec![1.0, 0.1]);
        // 0.5 / 1.0 + 0.5 = 1.0 -> 1; -1 -> -1; 0.25 + 0.5 -> 0.
        assert_eq!(&q[..3], &[1, -1, 0]);
        // -0.05 / 0.1 = -0.5, + 0.5 = 0 -> 0 (half rounds up, towards +inf).
        assert_eq!(&q[3..], &[0, 1, 0]);
        let (q, _) = quantize_weights(&[1.0, -1.0, 0.3], 3, 4);
        assert_eq!(q, vec![7, -7, 2]);
    }

    #[test]
    fn activations_quantize_over_their_bound() {
        assert_eq!(activation_scale(3.0, 2, false), 1.0);
        assert_eq!(activation_scale(7.0, 4, true), 1.0);
        // 2.5 rounds up to 3, clamped to the range.
        assert_eq!(quantize_activation(2.5, 1.0, (0, 3)), 3);
        assert_eq!(quantize_activation(9.0, 1.0, (0, 3)), 3);
        assert_eq!(quantize_activation(-2.5, 1.0, (-8, 7)), -2);
    }
}
