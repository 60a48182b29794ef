//! Requantization: an accumulator back to an activation's integers,
//! `y = clamp((k * acc + 2^(d-1)) >> d, lo, hi)`, and the choice of the multipliers `k` and the
//! shift `d` for a ratio of scales.

use super::rounding::{round_half_up, rounding_half};
use serde::Serialize;

/// `y = clamp((multiplier[c] * acc + 2^(shift-1)) >> shift, lo, hi)`, one multiplier per output
/// channel (or one for all).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Requant {
    pub multiplier: Vec<i64>,
    pub shift: u32,
    pub lo: i32,
    pub hi: i32,
}

impl Requant {
    /// Whether it maps every value of the integer range `[lo, hi]` to itself (a max pooling
    /// that does not rescale).
    pub(crate) fn preserves(&self, (lo, hi): (i32, i32)) -> bool {
        (lo..=hi).all(|v| self.apply(0, i64::from(v)) == v)
    }

    /// The multiplier of output channel `channel` (the one for all when there is one).
    pub(crate) fn multiplier_of(&self, channel: usize) -> i64 {
        self.multiplier[channel.min(self.multiplier.len() - 1)]
    }

    /// The requantization of `acc` in output channel `channel`.
    pub(crate) fn apply(&self, channel: usize, acc: i64) -> i32 {
        let k = self.multiplier_of(channel);
        let y = (k * acc + rounding_half(self.shift)) >> self.shift;
        y.clamp(i64::from(self.lo), i64::from(self.hi)) as i32
    }
}

/// Fraction bits of the requantization multipliers: the largest multiplier of a layer is
/// scaled into `[2^30, 2^31)`, so it fits int32 and keeps 30 significant bits.
pub(crate) const MULTIPLIER_BITS: u32 = 31;

/// The largest requantization product `|k_i| * acc_i + 2^(shift-1)` over the multipliers `k`
/// and the accumulator bounds they apply to (one bound for all when `acc_bounds` has one).
pub(crate) fn largest_product(k: &[i64], shift: u32, acc_bounds: &[i64]) -> i128 {
    k.iter()
        .enumerate()
        .map(|(i, k)| i128::from(k.abs()) * i128::from(acc_bounds[i.min(acc_bounds.len() - 1)]))
        .max()
        .unwrap_or(0)
        + i128::from(rounding_half(shift))
}

/// `round(real * 2^shift)` for every ratio, with the largest shift (at most 62) that keeps every
/// multiplier below 2^31 and every requantization product (`largest_product`) below
/// `2^(product_bits-1)`.
pub fn multipliers(ratios: &[f64], acc_bounds: &[i64], product_bits: u32) -> (Vec<i64>, u32) {
    let max = ratios.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    let mut shift = 1u32;
    while shift < 62 && max * 2f64.powi(shift as i32 + 1) < 2f64.powi(MULTIPLIER_BITS as i32) {
        shift += 1;
    }
    loop {
        let k: Vec<i64> = ratios
            .iter()
            .map(|r| round_half_up(r * 2f64.powi(shift as i32)) as i64)
            .collect();
        // Rounding can lift the largest multiplier to exactly 2^31.
        let fits = k.iter().all(|k| k.abs() < 1 << MULTIPLIER_BITS)
            && largest_product(&k, shift, acc_bounds) < 1i128 << (product_bits - 1);
        if shift == 1 || fits {
            return (k, shift);
        }
        shift -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requantization_rounds_half_up_and_clamps() {
        let r = Requant {
            multiplier: vec![1],
            shift: 1,
            lo: 0,
            hi: 3,
        };
        // acc / 2, rounded half up: 1/2 -> 1, 3/2 -> 2, -1/2 -> 0, clamped to [0, 3].
        assert_eq!([1, 3, -1, 5, 100].map(|a| r.apply(0, a)), [1, 2, 0, 3, 3]);
        let signed = Requant {
            multiplier: vec![1],
            shift: 2,
            lo: -7,
            hi: 7,
        };
        // -6/4 = -1.5 -> -1 (towards +inf), -10/4 = -2.5 -> -2, -100 -> -7.
        assert_eq!([-6, -10, -100].map(|a| signed.apply(0, a)), [-1, -2, -7]);
    }

    #[test]
    fn only_an_identity_preserves_a_range() {
        let identity = Requant {
            multiplier: vec![1 << 30],
            shift: 30,
            lo: 0,
            hi: 255,
        };
        assert!(identity.preserves((0, 255)));
        let rescaling = Requant {
            multiplier: vec![(1 << 30) + (1 << 22)],
            ..identity
        };
        assert!(!rescaling.preserves((0, 255)));
    }

    #[test]
    fn multipliers_keep_thirty_bits() {
        let (k, shift) = multipliers(&[0.001234, 0.0005], &[1000], 64);
        assert!((1i64 << 30..1i64 << 31).contains(&k[0]), "{k:?}");
        let real = k[0] as f64 / 2f64.powi(shift as i32);
        assert!((real - 0.001234).abs() / 0.001234 < 1e-8);
    }
}
