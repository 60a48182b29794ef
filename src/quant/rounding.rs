//! The one rounding rule: half up, `round(v) = floor(v + 0.5)`, so that ties go towards
//! +infinity for negative values too (`-2.5 -> -2`), unlike C's `roundf`. In integers, a
//! division by `2^d` rounds the same way as `(x + 2^(d-1)) >> d` with a flooring shift.

use std::ops::Add;

/// A real value the rounding rule applies to: `f32`, `f64`, or a tensor of them (the
/// fine-tuning's fake quantization implements it for burn tensors).
pub(crate) trait Real: Sized + Add<Self::Scalar, Output = Self> {
    /// The scalar type a value of it adds.
    type Scalar: From<f32>;
    /// The largest integer not above the value (element-wise for a tensor).
    fn floor(self) -> Self;
}

impl Real for f32 {
    type Scalar = f32;
    fn floor(self) -> f32 {
        f32::floor(self)
    }
}

impl Real for f64 {
    type Scalar = f64;
    fn floor(self) -> f64 {
        f64::floor(self)
    }
}

/// `floor(v + 0.5)`: the rounding of every quantizer and requantization.
pub(crate) fn round_half_up<T: Real>(v: T) -> T {
    (v + T::Scalar::from(0.5)).floor()
}

/// The rounding term of a division by `2^shift`: `2^(shift-1)`, none for shift 0.
pub(crate) fn rounding_half(shift: u32) -> i64 {
    if shift == 0 { 0 } else { 1 << (shift - 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_towards_plus_infinity() {
        assert_eq!(
            [-2.5f64, -1.5, -0.5, 0.5, 2.5].map(round_half_up),
            [-2.0, -1.0, 0.0, 1.0, 3.0]
        );
        assert_eq!(round_half_up(-0.51f32), -1.0);
        assert_eq!([0, 1, 5].map(rounding_half), [0, 1, 16]);
    }
}
