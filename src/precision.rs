//! Bit widths and precision assignments: the vocabulary shared by the cost model, the search
//! policies and deployment.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A tensor precision supported by the PULP kernels: 2, 4 or 8 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum Bits {
    B2,
    B4,
    B8,
}

impl Bits {
    /// All precisions, narrowest first; `ALL[b.index()] == b`.
    pub const ALL: [Bits; 3] = [Bits::B2, Bits::B4, Bits::B8];

    /// Position in [`Bits::ALL`], used to index per-precision tables.
    pub fn index(self) -> usize {
        match self {
            Bits::B2 => 0,
            Bits::B4 => 1,
            Bits::B8 => 2,
        }
    }

    /// The number of bits.
    pub fn count(self) -> u32 {
        match self {
            Bits::B2 => 2,
            Bits::B4 => 4,
            Bits::B8 => 8,
        }
    }

    pub fn from_count(bits: u32) -> Option<Bits> {
        match bits {
            2 => Some(Bits::B2),
            4 => Some(Bits::B4),
            8 => Some(Bits::B8),
            _ => None,
        }
    }

    /// Bytes taken by `elements` values packed at this width (whole bytes, rounded up).
    pub(crate) fn packed_bytes(self, elements: u64) -> u64 {
        (elements * u64::from(self.count())).div_ceil(8)
    }

    /// The next narrower precision, if any (8 -> 4 -> 2).
    pub fn halved(self) -> Option<Bits> {
        match self {
            Bits::B8 => Some(Bits::B4),
            Bits::B4 => Some(Bits::B2),
            Bits::B2 => None,
        }
    }
}

impl TryFrom<u32> for Bits {
    type Error = String;
    fn try_from(bits: u32) -> Result<Self, Self::Error> {
        Bits::from_count(bits).ok_or_else(|| format!("{bits} bits is not supported; use 2, 4 or 8"))
    }
}

impl From<Bits> for u32 {
    fn from(bits: Bits) -> u32 {
        bits.count()
    }
}

impl fmt::Display for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.count())
    }
}

/// A value for every (weight bits, activation bits) pair, indexed `[w.index()][a.index()]`.
pub(crate) type PairTable<T> = [[T; 3]; 3];

/// A precision for every layer's weights and every activation tensor of a
/// [`crate::graph::FusedGraph`]. Entries of layers without weights are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Assignment {
    pub weight_bits: Vec<Bits>,
    pub activation_bits: Vec<Bits>,
}

impl Assignment {
    /// Every layer and tensor at the same precision.
    pub fn uniform(layers: usize, tensors: usize, bits: Bits) -> Assignment {
        Assignment {
            weight_bits: vec![bits; layers],
            activation_bits: vec![bits; tensors],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_sizes_round_up_to_whole_bytes() {
        assert_eq!(Bits::B8.packed_bytes(10), 10);
        assert_eq!(Bits::B4.packed_bytes(10), 5);
        assert_eq!(Bits::B4.packed_bytes(11), 6);
        assert_eq!(Bits::B2.packed_bytes(10), 3);
        assert_eq!(Bits::B2.packed_bytes(12), 3);
    }

    #[test]
    fn index_matches_all() {
        for bits in Bits::ALL {
            assert_eq!(Bits::ALL[bits.index()], bits);
            assert_eq!(Bits::from_count(bits.count()), Some(bits));
        }
        assert!(Bits::try_from(3).is_err());
    }
}
