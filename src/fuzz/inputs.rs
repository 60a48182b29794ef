//! Input `i` of a target: a seed mutated by a generator seeded from the run's seed, the target's
//! name and `i`; the byte-level mutations all styles share.

use super::MAX_INPUT_BYTES;
use super::protobuf::{onnx_mutation, protobuf_mutation};
use super::text::text_mutation;
use super::{Style, Target};
use crate::hash::fnv;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Input `index` of `target` for `seed`: the seeds as they are first, then mutants.
pub fn input(target: &Target, seed: u64, index: u64) -> Vec<u8> {
    if let Some(s) = usize::try_from(index)
        .ok()
        .and_then(|i| target.seeds.get(i))
    {
        return s.clone();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ fnv(target.name.as_bytes()) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    mutate(target, &mut rng)
}

/// Integers that break size arithmetic: zero, one, signs, powers of two around 2^8, 2^16, 2^31,
/// 2^32, 2^40, 2^53, 2^63 and the all-ones patterns.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    16,
    31,
    32,
    64,
    127,
    128,
    255,
    256,
    1000,
    3072,
    3073,
    4096,
    65535,
    65536,
    (1 << 24) + 1,
    (1 << 31) - 1,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    1 << 40,
    1 << 53,
    1 << 62,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX,
    u64::MAX - 1,
    (-128i64) as u64,
    (-(1i64 << 31)) as u64,
    (-(1i64 << 40)) as u64,
];

/// Numbers as a text format writes them, including the ones a parser may choke on.
pub(super) const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "3",
    "4",
    "8",
    "16",
    "255",
    "256",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "4294967304",
    "1099511627776",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e308",
    "1e-320",
    "0.5",
    "-0.5",
    "2.5",
    "nan",
    "inf",
    "-inf",
    "NaN",
    "1_000",
    "0x10",
    "1e3",
    "\"\"",
    "\"8\"",
    "true",
    "null",
    "[]",
    "{}",
];

/// Characters that change the structure of a text format.
pub(super) const PUNCTUATION: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    ":",
    "\"",
    "'",
    "#",
    "\n",
    "\r\n",
    "\\",
    ".",
    "-",
    " ",
    "\t",
    "\u{0}",
    "\u{feff}",
    "é",
    "\u{1f600}",
    "\"\"\"",
    "'''",
    "[[",
    "]]",
    "\\u0000",
    "\\ud800",
];

pub(super) fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.random_range(0..items.len())])
}

pub(super) fn interesting(rng: &mut ChaCha8Rng) -> u64 {
    if rng.random_bool(0.8) {
        INTERESTING[rng.random_range(0..INTERESTING.len())]
    } else {
        rng.random::<u64>() >> rng.random_range(0..64)
    }
}

fn mutate(target: &Target, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let Some(seed) = pick(rng, &target.seeds) else {
        return Vec::new();
    };
    let mut data = seed.clone();
    // Mostly one or two mutations, sometimes many.
    let rounds = match rng.random_range(0..10) {
        0..=4 => 1,
        5..=7 => 2,
        _ => rng.random_range(3..9),
    };
    for _ in 0..rounds {
        match target.style {
            Style::Onnx => match rng.random_range(0..10) {
                0..=3 => onnx_mutation(&mut data, rng, target),
                4..=7 => protobuf_mutation(&mut data, rng, target),
                _ => byte_mutation(&mut data, rng, target),
            },
            Style::Binary => byte_mutation(&mut data, rng, target),
            Style::Text => {
                if rng.random_bool(0.85) {
                    text_mutation(&mut data, rng, target);
                } else {
                    byte_mutation(&mut data, rng, target);
                }
            }
        }
    }
    data.truncate(MAX_INPUT_BYTES);
    if target.style == Style::Text {
        data = String::from_utf8_lossy(&data).into_owned().into_bytes();
    }
    data
}

/// The words (runs of letters, digits, `_`, `-`, `.`) of a seed, for the dictionary.
pub(super) fn words(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| !(b.is_ascii_alphanumeric() || b"_-.".contains(b)))
        .filter(|w| (2..=40).contains(&w.len()) && w.iter().any(u8::is_ascii_alphabetic))
        .map(<[u8]>::to_vec)
        .collect()
}

pub(super) fn byte_mutation(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, target: &Target) {
    let len = data.len();
    let at = |rng: &mut ChaCha8Rng| {
        if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        }
    };
    match rng.random_range(0..11) {
        0 if len > 0 => {
            let i = at(rng);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            data[i] = *pick(rng, &[0u8, 1, 0x7f, 0x80, 0xff, b'0', b'9']).unwrap_or(&0);
        }
        2 | 3 if len > 0 => {
            // An interesting integer over 1, 2, 4 or 8 bytes, big- or little-endian.
            let width = *pick(rng, &[1usize, 2, 4, 8]).unwrap_or(&4);
            let value = interesting(rng);
            let bytes = if rng.random_bool(0.5) {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let bytes = if rng.random_bool(0.5) {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            // Header fields sit at the start: favour it.
            let i = if rng.random_bool(0.5) {
                rng.random_range(0..len.min(24))
            } else {
                at(rng)
            };
            for (k, b) in bytes.iter().enumerate() {
                if let Some(slot) = data.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        4 => {
            let n = rng.random_range(1..33);
            let i = at(rng).min(len);
            let fresh: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(i..i, fresh);
        }
        5 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(256));
            data.drain(i..i + n);
        }
        6 if len > 0 => {
            // Duplicate a chunk somewhere else.
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(4096));
            let chunk = data[i..i + n].to_vec();
            let j = at(rng);
            data.splice(j..j, chunk);
        }
        7 if len > 0 => {
            let i = at(rng);
            data.truncate(i);
        }
        8 => {
            // Splice: this input's head, another seed's tail.
            if let Some(other) = pick(rng, &target.seeds) {
                let i = at(rng).min(len);
                let j = if other.is_empty() {
                    0
                } else {
                    rng.random_range(0..other.len())
                };
                data.truncate(i);
                data.extend_from_slice(&other[j..]);
            }
        }
        9 => {
            if let Some(word) = pick(rng, &target.dictionary) {
                let i = at(rng).min(len);
                data.splice(i..i, word.iter().copied());
            }
        }
        _ => {
            if len > 0 {
                let i = at(rng);
                data[i] = rng.random();
            }
        }
    }
}
