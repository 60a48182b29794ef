//! Packing of 2-, 4- and 8-bit integers into bytes: little-endian within a byte, the first value
//! in the lowest bits, two's complement fields (the generated C's `ld`/`st` read and write the
//! same layout).

/// Bytes of `elements` values packed at `bits`.
pub(crate) fn packed_bytes(elements: usize, bits: u32) -> usize {
    (elements * bits as usize).div_ceil(8)
}

/// Packs integers at `bits` (two's complement fields, first value in the lowest bits).
pub(crate) fn pack(values: &[i32], bits: u32) -> Vec<u8> {
    let mut out = vec![0u8; packed_bytes(values.len(), bits)];
    let per = (8 / bits) as usize;
    let mask = ((1u32 << bits) - 1) as u8;
    for (i, &v) in values.iter().enumerate() {
        let shift = (i % per) as u32 * bits;
        out[i / per] |= ((v as u8) & mask) << shift;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unpacks `count` integers of `bits` (sign-extended when `signed`), as the C's `ld` does.
    fn unpack(bytes: &[u8], count: usize, bits: u32, signed: bool) -> Vec<i32> {
        let per = (8 / bits) as usize;
        let mask = (1i32 << bits) - 1;
        (0..count)
            .map(|i| {
                let v = (i32::from(bytes[i / per]) >> ((i % per) as u32 * bits)) & mask;
                if signed && v >= 1 << (bits - 1) {
                    v - (1 << bits)
                } else {
                    v
                }
            })
            .collect()
    }

    #[test]
    fn packing_round_trips_at_every_width() {
        let signed = [-2, -1, 0, 1, 1, -2, 0, -1, 1];
        for bits in [2u32, 4, 8] {
            let bytes = pack(&signed, bits);
            assert_eq!(bytes.len(), (signed.len() * bits as usize).div_ceil(8));
            assert_eq!(unpack(&bytes, signed.len(), bits, true), signed);
        }
        let unsigned = [0, 15, 7, 8, 1];
        assert_eq!(unpack(&pack(&unsigned, 4), 5, 4, false), unsigned);
        // First value in the lowest bits.
        assert_eq!(pack(&[1, 2, 3, 0], 2), vec![0b00_11_10_01]);
        assert_eq!(pack(&[-1, 3], 4), vec![0x3f]);
    }
}
