//! How many integer levels a precision has, and the range an integer buffer holds.

/// Levels on each side of a signed symmetric `bits`-bit quantizer, `2^(bits-1) - 1` (1, 7,
/// 127): the most negative code is never used, so that `-q` is always representable.
pub fn signed_levels(bits: u32) -> i32 {
    (1 << (bits - 1)) - 1
}

/// Levels of an unsigned `bits`-bit quantizer, `2^bits - 1` (3, 15, 255).
pub(crate) fn unsigned_levels(bits: u32) -> i32 {
    (1 << bits) - 1
}

/// The integer an activation's PACT bound maps to: [`signed_levels`] for a signed buffer,
/// [`unsigned_levels`] for an unsigned one.
pub(crate) fn activation_levels(bits: u32, signed: bool) -> i32 {
    if signed {
        signed_levels(bits)
    } else {
        unsigned_levels(bits)
    }
}

/// The whole range `[lo, hi]` of a `bits`-bit integer type: `[-2^(bits-1), 2^(bits-1) - 1]`
/// signed (one code below the quantizer's levels, as DORY's and Deeploy's clamps allow),
/// `[0, 2^bits - 1]` unsigned.
pub(crate) fn type_range(bits: u32, signed: bool) -> (i32, i32) {
    if signed {
        let l = 1i32 << (bits - 1);
        (-l, l - 1)
    } else {
        (0, unsigned_levels(bits))
    }
}

/// The number of codes of a `bits`-bit type, `2^bits` (QuantLab's and Deeploy's `n_levels`).
pub(crate) fn code_count(bits: u32) -> i64 {
    1 << bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_ranges_at_every_width() {
        assert_eq!([2, 4, 8].map(signed_levels), [1, 7, 127]);
        assert_eq!([2, 4, 8].map(unsigned_levels), [3, 15, 255]);
        assert_eq!(activation_levels(4, true), 7);
        assert_eq!(activation_levels(4, false), 15);
        assert_eq!(type_range(8, true), (-128, 127));
        assert_eq!(type_range(2, false), (0, 3));
        assert_eq!(code_count(4), 16);
    }
}
