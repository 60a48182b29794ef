//! A 64-bit FNV-1a hash: stable across runs, platforms and Rust versions (unlike
//! `DefaultHasher`), for seeds and cache keys that must not change under a user.

pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    fnv_extend(0xcbf2_9ce4_8422_2325, bytes)
}

/// Continues the hash `h` over `bytes`, so several pieces hash as their concatenation.
pub(crate) fn fnv_extend(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_hash_as_their_concatenation() {
        assert_eq!(fnv_extend(fnv(b"ab"), b"cd"), fnv(b"abcd"));
        // The published FNV-1a 64 test vector.
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
