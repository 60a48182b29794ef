//! PULP target descriptions, loaded from `search_spaces/platforms/*.toml` (built in) or from a
//! user's TOML file. Every number carries its source: a row of the published-figures table, a
//! derivation from a kernel's inner loop (see `docs/cost-model.md`), or a fit with its residual.

use crate::precision::{Bits, PairTable};
use crate::table::Table;
use crate::units::format_bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::Path;

/// The platforms shipped with qsearch, by name.
pub(crate) const BUILT_IN: &[(&str, &str)] = &[
    ("gap8", include_str!("../search_spaces/platforms/gap8.toml")),
    ("gap9", include_str!("../search_spaces/platforms/gap9.toml")),
    (
        "pulp-open",
        include_str!("../search_spaces/platforms/pulp-open.toml"),
    ),
    (
        "xpulpnn",
        include_str!("../search_spaces/platforms/xpulpnn.toml"),
    ),
    (
        "rv32imc",
        include_str!("../search_spaces/platforms/rv32imc.toml"),
    ),
    (
        "cv32e40p",
        include_str!("../search_spaces/platforms/cv32e40p.toml"),
    ),
];

/// Kernel cost sets that platform files can name with `kernel_costs = "..."`.
pub(crate) const KERNEL_COSTS: &[(&str, &str)] = &[
    (
        "xpulpv2",
        include_str!("../search_spaces/platforms/kernels/xpulpv2.toml"),
    ),
    (
        "xpulpnn",
        include_str!("../search_spaces/platforms/kernels/xpulpnn.toml"),
    ),
    (
        "portable",
        include_str!("../search_spaces/platforms/kernels/portable.toml"),
    ),
];

pub const DEFAULT_PLATFORM: &str = "gap8";

/// The built-in platforms: cores, clock, usable L1, L2 and description (what `qsearch
/// platforms` prints).
pub fn listing() -> Result<Table, PlatformError> {
    let mut t = Table::new(&[
        "platform<",
        "cores",
        "MHz",
        "L1 usable",
        "L2",
        "description<",
    ])
    .wrap("description");
    for (name, _) in BUILT_IN {
        let p = Platform::load(name)?;
        let hw = &p.hardware;
        t.row(vec![
            p.name.clone(),
            p.cores().to_string(),
            format!("{:.0}", hw.clock_hz.value / 1e6),
            format_bytes(hw.l1_usable_bytes.value as u64),
            format_bytes(hw.l2_bytes.value as u64),
            p.description.clone(),
        ]);
    }
    Ok(t)
}

/// The most cores a platform file may declare.
const MAX_CORES: f64 = 1024.0;
/// The largest memory a platform file may declare, in bytes (2^48: 256 TB).
const MAX_MEMORY_BYTES: f64 = (1u64 << 48) as f64;
/// The most flash a kernel may need per output channel for its requantization parameters.
const MAX_REQUANT_BYTES: f64 = 1024.0;
/// The largest channel multiple a kernel rule may require.
const MAX_CHANNEL_MULTIPLE: usize = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "unknown platform '{name}'; built in: {available}, or give the path of a platform .toml file"
    )]
    Unknown { name: String, available: String },
    #[error("{path}: cannot read the file: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: field '{field}': {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

/// A number with where it comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub value: f64,
    pub source: String,
}

/// A yes/no property with where it comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    pub value: bool,
    pub source: String,
}

/// One [`Param`] per (weight bits, activation bits) pair; written in TOML as a table with keys
/// `w8a8`, `w8a4`, ... `w2a2`.
#[derive(Clone, Debug, PartialEq)]
pub struct PairParams(pub PairTable<Param>);

/// One [`Param`] per activation precision; TOML keys `a8`, `a4`, `a2`.
#[derive(Clone, Debug, PartialEq)]
pub struct BitParams(pub [Param; 3]);

impl PairParams {
    pub fn get(&self, w: Bits, a: Bits) -> f64 {
        self.0[w.index()][a.index()].value
    }
}

impl BitParams {
    pub fn get(&self, a: Bits) -> f64 {
        self.0[a.index()].value
    }
}

fn pair_key(w: Bits, a: Bits) -> String {
    format!("w{w}a{a}")
}

fn bit_key(a: Bits) -> String {
    format!("a{a}")
}

impl Serialize for PairParams {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = BTreeMap::new();
        for w in Bits::ALL {
            for a in Bits::ALL {
                map.insert(pair_key(w, a), &self.0[w.index()][a.index()]);
            }
        }
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PairParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = BTreeMap::<String, Param>::deserialize(d)?;
        let mut entry = |w: Bits, a: Bits| {
            map.remove(&pair_key(w, a)).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "missing entry '{}' (need w8a8, w8a4, w8a2, w4a8, ... w2a2)",
                    pair_key(w, a)
                ))
            })
        };
        let mut row = |w| -> Result<[Param; 3], D::Error> {
            Ok([
                entry(w, Bits::B2)?,
                entry(w, Bits::B4)?,
                entry(w, Bits::B8)?,
            ])
        };
        let table = [row(Bits::B2)?, row(Bits::B4)?, row(Bits::B8)?];
        if let Some(extra) = map.keys().next() {
            return Err(serde::de::Error::custom(format!(
                "unknown entry '{extra}' (keys are w<bits>a<bits> with bits 2, 4 or 8)"
            )));
        }
        Ok(PairParams(table))
    }
}

impl Serialize for BitParams {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<String, &Param> = Bits::ALL
            .iter()
            .map(|&a| (bit_key(a), &self.0[a.index()]))
            .collect();
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for BitParams {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = BTreeMap::<String, Param>::deserialize(d)?;
        let mut take = |a: Bits| {
            map.remove(&bit_key(a)).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "missing entry '{}' (need a8, a4, a2)",
                    bit_key(a)
                ))
            })
        };
        let params = [take(Bits::B2)?, take(Bits::B4)?, take(Bits::B8)?];
        if let Some(extra) = map.keys().next() {
            return Err(serde::de::Error::custom(format!(
                "unknown entry '{extra}' (keys are a2, a4, a8)"
            )));
        }
        Ok(BitParams(params))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    pub cores: Param,
    pub clock_hz: Param,
    pub l1_bytes: Param,
    /// L1 left for tiles after the cores' stacks.
    pub l1_usable_bytes: Param,
    pub l2_bytes: Param,
    /// Off-chip memory for weights that do not fit L2 (0 when there is none).
    pub l3_bytes: Param,
    pub dma_bytes_per_cycle: Param,
    pub dma_latency_cycles: Param,
    /// DMA throughput when transposing HWC to CHW with byte-sized bursts (depthwise inputs).
    pub dma_transpose_bytes_per_cycle: Param,
    /// Whether each DMA transfer completes before the tile computes (no double buffering).
    pub dma_blocking: Flag,
    pub l3_bytes_per_cycle: Param,
    pub l3_latency_cycles: Param,
    /// Energy of one cluster cycle when computing, if published figures allow it.
    #[serde(default)]
    pub energy_per_cycle_j: Option<Param>,
    #[serde(default)]
    pub l3_energy_per_byte_j: Option<Param>,
}

/// Which kernels exist and their alignment rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRules {
    pub weight_bits: Vec<Bits>,
    pub activation_bits: Vec<Bits>,
    /// Channel count a tensor must be a multiple of at each precision (key: bits).
    pub channel_multiple: BTreeMap<String, usize>,
    /// Flash per output channel for the requantization parameters.
    pub requant_bytes_per_channel: Param,
    pub source: String,
}

impl KernelRules {
    /// The channel multiple required of a `bits`-wide tensor (1 when unconstrained).
    pub(crate) fn channel_multiple(&self, bits: Bits) -> usize {
        self.channel_multiple
            .get(&bits.count().to_string())
            .copied()
            .unwrap_or(1)
    }
}

/// The kernel library a cost set describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelStyle {
    /// PULP-NN / PULP-NN-mixed, as DORY calls them: im2col, 4x2 matmul blocks, cores in parallel.
    #[default]
    PulpNn,
    /// The portable C kernels `qsearch deploy` generates: one core, a loop per output, tap and
    /// input channel, no im2col.
    Portable,
}

/// The refittable parameters of the latency model (see `cost::kernel` for how they combine).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostParams {
    /// Which kernels the parameters describe (how they combine into a call's cycles).
    #[serde(default)]
    pub style: KernelStyle,
    /// Cycles per instruction of the cluster cores (pipeline stalls, L1 bank conflicts): the
    /// instruction counts below are multiplied by it. Kept fixed by calibration, which refits
    /// the counts themselves.
    pub cycles_per_instruction: Param,
    /// Matmul inner loop of standard and pointwise convolutions, per MAC.
    pub conv_cycles_per_mac: PairParams,
    /// Depthwise inner loop, per MAC.
    pub depthwise_cycles_per_mac: PairParams,
    /// Fully connected inner loop, per MAC (sub-byte inputs are unpacked inside it).
    pub linear_cycles_per_mac: PairParams,
    /// Converting one sub-byte activation to the kernel's operand width while building the
    /// im2col buffer; zero where the kernel reads the activation natively.
    pub unpack_cycles_per_element: PairParams,
    /// Copying packed activations into the im2col buffer, per byte (skipped by pointwise kernels).
    pub im2col_cycles_per_byte: Param,
    /// Gathering one input element into a depthwise kernel's per-channel buffer.
    pub depthwise_gather_cycles_per_element: BitParams,
    /// Requantizing and storing one output element, by output precision.
    pub requant_cycles_per_output: BitParams,
    /// Pooling, per input element read, by input precision (max poolings; also average poolings
    /// where `sum_pool_cycles_per_element` is absent).
    pub pool_cycles_per_element: BitParams,
    /// Average pooling (window or global), per input element read, by input precision: blocked
    /// kernels sum each channel apart (one `sdotp` per channel and tap) where a maximum takes
    /// one SIMD max per word of channels.
    #[serde(default = "absent_table")]
    pub sum_pool_cycles_per_element: BitParams,
    /// Residual add, per element of one input (load, unpack, rescale), by that input's precision.
    pub add_cycles_per_element: BitParams,
    /// Per 4-channel x 2-pixel block of the matmul: accumulator set-up, pointers, loop start.
    pub block_overhead_cycles: Param,
    /// Per tile: DMA programming and the cluster barrier.
    pub tile_overhead_cycles: Param,
    /// Per layer: cluster fork/join and argument set-up.
    pub layer_overhead_cycles: Param,
    /// Portable kernels: per convolution output, the loop set-up, bias and group index.
    #[serde(default = "absent")]
    pub conv_output_cycles: Param,
    /// Portable kernels: per convolution output and kernel row, the row's bounds check.
    #[serde(default = "absent")]
    pub conv_row_cycles: Param,
    /// Blocked kernels: per contiguous run copied into the im2col buffer (a kernel row wholly
    /// inside the input, or else one tap), its address and loop set-up.
    #[serde(default = "absent")]
    pub im2col_run_cycles: Param,
    /// Blocked kernels: per convolution output pixel, the pixel loop and its im2col set-up.
    #[serde(default = "absent")]
    pub conv_pixel_cycles: Param,
    /// Blocked kernels: per MAC of a reduction's tail short of a whole weight word (4, 8 or 16
    /// values at 8, 4 or 2 bits), computed scalar.
    #[serde(default = "absent")]
    pub reduction_tail_cycles_per_mac: Param,
}

/// A parameter the kernel style does not use (zero: calibration leaves it alone).
fn absent() -> Param {
    Param {
        value: 0.0,
        source: "not used by these kernels".into(),
    }
}

/// A per-precision table the kernel style does not use.
fn absent_table() -> BitParams {
    BitParams([absent(), absent(), absent()])
}

impl CostParams {
    /// Every parameter with a stable name (`table.key` for table entries), for calibration.
    pub fn entries_mut(&mut self) -> Vec<(String, &mut Param)> {
        let CostParams {
            style: _,
            cycles_per_instruction: _,
            conv_cycles_per_mac,
            depthwise_cycles_per_mac,
            linear_cycles_per_mac,
            unpack_cycles_per_element,
            im2col_cycles_per_byte,
            depthwise_gather_cycles_per_element,
            requant_cycles_per_output,
            pool_cycles_per_element,
            sum_pool_cycles_per_element,
            add_cycles_per_element,
            block_overhead_cycles,
            tile_overhead_cycles,
            layer_overhead_cycles,
            conv_output_cycles,
            conv_row_cycles,
            im2col_run_cycles,
            conv_pixel_cycles,
            reduction_tail_cycles_per_mac,
        } = self;
        let mut out = Vec::new();
        for (name, table) in [
            ("conv_cycles_per_mac", conv_cycles_per_mac),
            ("depthwise_cycles_per_mac", depthwise_cycles_per_mac),
            ("linear_cycles_per_mac", linear_cycles_per_mac),
            ("unpack_cycles_per_element", unpack_cycles_per_element),
        ] {
            for (w, row) in Bits::ALL.into_iter().zip(table.0.iter_mut()) {
                for (a, p) in Bits::ALL.into_iter().zip(row.iter_mut()) {
                    out.push((format!("{name}.{}", pair_key(w, a)), p));
                }
            }
        }
        for (name, table) in [
            (
                "depthwise_gather_cycles_per_element",
                depthwise_gather_cycles_per_element,
            ),
            ("requant_cycles_per_output", requant_cycles_per_output),
            ("pool_cycles_per_element", pool_cycles_per_element),
            ("sum_pool_cycles_per_element", sum_pool_cycles_per_element),
            ("add_cycles_per_element", add_cycles_per_element),
        ] {
            for (a, p) in Bits::ALL.into_iter().zip(table.0.iter_mut()) {
                out.push((format!("{name}.{}", bit_key(a)), p));
            }
        }
        for (name, p) in [
            ("im2col_cycles_per_byte", im2col_cycles_per_byte),
            ("block_overhead_cycles", block_overhead_cycles),
            ("tile_overhead_cycles", tile_overhead_cycles),
            ("layer_overhead_cycles", layer_overhead_cycles),
            ("conv_output_cycles", conv_output_cycles),
            ("conv_row_cycles", conv_row_cycles),
            ("im2col_run_cycles", im2col_run_cycles),
            ("conv_pixel_cycles", conv_pixel_cycles),
            (
                "reduction_tail_cycles_per_mac",
                reduction_tail_cycles_per_mac,
            ),
        ] {
            out.push((name.to_string(), p));
        }
        out
    }

    /// Every parameter with its name, in the order of [`CostParams::entries_mut`].
    pub fn entries(&self) -> Vec<(String, Param)> {
        self.clone()
            .entries_mut()
            .into_iter()
            .map(|(name, p)| (name, p.clone()))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Platform {
    pub name: String,
    pub description: String,
    /// Instruction-set family of the cluster cores (informational).
    pub isa: String,
    pub hardware: Hardware,
    pub kernels: KernelRules,
    pub cost: CostParams,
}

/// A platform file as written: the cost parameters inline (`[cost]`) or by the name of a
/// built-in kernel cost set (`kernel_costs = "xpulpv2"`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformFile {
    name: String,
    description: String,
    isa: String,
    hardware: Hardware,
    kernels: KernelRules,
    #[serde(default)]
    kernel_costs: Option<String>,
    #[serde(default)]
    cost: Option<CostParams>,
}

impl Platform {
    /// A built-in platform by name, or a platform file by path.
    pub fn load(name_or_path: &str) -> Result<Platform, PlatformError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            return Platform::parse(text, &format!("built-in platform {name}"));
        }
        let path = Path::new(name_or_path);
        if path.extension().is_some_and(|e| e == "toml") || path.exists() {
            let text = std::fs::read_to_string(path).map_err(|source| PlatformError::Io {
                path: name_or_path.to_string(),
                source,
            })?;
            return Platform::parse(&text, name_or_path);
        }
        Err(PlatformError::Unknown {
            name: name_or_path.to_string(),
            available: BUILT_IN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Parses and validates a platform description; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Platform, PlatformError> {
        let parse_err = |message: String| PlatformError::Parse {
            path: origin.to_string(),
            message,
        };
        let file: PlatformFile = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        let cost = match (file.cost, file.kernel_costs) {
            (Some(cost), None) => cost,
            (None, Some(set)) => {
                let (_, text) = KERNEL_COSTS
                    .iter()
                    .find(|(n, _)| *n == set)
                    .ok_or_else(|| {
                        let names: Vec<&str> = KERNEL_COSTS.iter().map(|(n, _)| *n).collect();
                        parse_err(format!(
                            "kernel_costs = '{set}' is not a built-in cost set ({})",
                            names.join(", ")
                        ))
                    })?;
                toml::from_str(text)
                    .map_err(|e| parse_err(format!("kernel cost set {set}: {e}")))?
            }
            _ => {
                return Err(parse_err(
                    "give the cost parameters either inline as [cost] or as kernel_costs = \"xpulpv2\" / \"xpulpnn\", not both or neither".into(),
                ));
            }
        };
        let platform = Platform {
            name: file.name,
            description: file.description,
            isa: file.isa,
            hardware: file.hardware,
            kernels: file.kernels,
            cost,
        };
        platform.validate(origin)?;
        Ok(platform)
    }

    /// The platform as a self-contained TOML file (cost parameters inline).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    fn validate(&self, origin: &str) -> Result<(), PlatformError> {
        let invalid = |field: &str, message: String| PlatformError::Invalid {
            path: origin.to_string(),
            field: field.to_string(),
            message,
        };
        let hw = &self.hardware;
        for (field, p) in [
            ("hardware.cores", &hw.cores),
            ("hardware.clock_hz", &hw.clock_hz),
            ("hardware.l1_bytes", &hw.l1_bytes),
            ("hardware.l1_usable_bytes", &hw.l1_usable_bytes),
            ("hardware.l2_bytes", &hw.l2_bytes),
            ("hardware.dma_bytes_per_cycle", &hw.dma_bytes_per_cycle),
            (
                "hardware.dma_transpose_bytes_per_cycle",
                &hw.dma_transpose_bytes_per_cycle,
            ),
        ] {
            if !(p.value.is_finite() && p.value > 0.0) {
                return Err(invalid(
                    field,
                    format!("{} must be a positive number", p.value),
                ));
            }
        }
        for (field, p) in [
            ("hardware.l3_bytes", &hw.l3_bytes),
            ("hardware.dma_latency_cycles", &hw.dma_latency_cycles),
            ("hardware.l3_bytes_per_cycle", &hw.l3_bytes_per_cycle),
            ("hardware.l3_latency_cycles", &hw.l3_latency_cycles),
        ]
        .into_iter()
        .chain(
            hw.energy_per_cycle_j
                .iter()
                .map(|p| ("hardware.energy_per_cycle_j", p)),
        )
        .chain(
            hw.l3_energy_per_byte_j
                .iter()
                .map(|p| ("hardware.l3_energy_per_byte_j", p)),
        ) {
            if !(p.value.is_finite() && p.value >= 0.0) {
                return Err(invalid(
                    field,
                    format!("{} must be a non-negative number", p.value),
                ));
            }
        }
        if hw.cores.value.fract() != 0.0 || hw.cores.value > MAX_CORES {
            return Err(invalid(
                "hardware.cores",
                format!(
                    "{} must be a whole number from 1 to {MAX_CORES}",
                    hw.cores.value
                ),
            ));
        }
        for (field, p) in [
            ("hardware.l1_bytes", &hw.l1_bytes),
            ("hardware.l1_usable_bytes", &hw.l1_usable_bytes),
            ("hardware.l2_bytes", &hw.l2_bytes),
            ("hardware.l3_bytes", &hw.l3_bytes),
        ] {
            if p.value.fract() != 0.0 || p.value > MAX_MEMORY_BYTES {
                return Err(invalid(
                    field,
                    format!(
                        "{} must be a whole number of bytes up to {MAX_MEMORY_BYTES}",
                        p.value
                    ),
                ));
            }
        }
        if hw.l1_usable_bytes.value > hw.l1_bytes.value {
            return Err(invalid(
                "hardware.l1_usable_bytes",
                "exceeds hardware.l1_bytes".into(),
            ));
        }
        if hw.l3_bytes.value > 0.0
            && hw.l3_bytes_per_cycle.value.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err(invalid(
                "hardware.l3_bytes_per_cycle",
                "must be positive when the platform has L3".into(),
            ));
        }
        if self.kernels.weight_bits.is_empty() || self.kernels.activation_bits.is_empty() {
            return Err(invalid(
                "kernels",
                "must list at least one weight and one activation precision".into(),
            ));
        }
        for (key, &multiple) in &self.kernels.channel_multiple {
            let ok = key.parse::<u32>().ok().and_then(Bits::from_count).is_some();
            if !ok || multiple == 0 || multiple > MAX_CHANNEL_MULTIPLE {
                return Err(invalid(
                    &format!("kernels.channel_multiple.{key}"),
                    format!(
                        "keys are bit widths (2, 4, 8) and values channel counts from 1 to {MAX_CHANNEL_MULTIPLE}"
                    ),
                ));
            }
        }
        let requant = self.kernels.requant_bytes_per_channel.value;
        if !(requant.is_finite() && (0.0..=MAX_REQUANT_BYTES).contains(&requant)) {
            return Err(invalid(
                "kernels.requant_bytes_per_channel",
                format!("{requant} must be a number of bytes from 0 to {MAX_REQUANT_BYTES}"),
            ));
        }
        let cpi = &self.cost.cycles_per_instruction;
        if !(cpi.value.is_finite() && cpi.value > 0.0) {
            return Err(invalid(
                "cost.cycles_per_instruction",
                format!("{} must be a positive number", cpi.value),
            ));
        }
        for (name, p) in self.cost.entries() {
            if !(p.value.is_finite() && p.value >= 0.0) {
                return Err(invalid(
                    &format!("cost.{name}"),
                    format!("{} must be a non-negative number", p.value),
                ));
            }
        }
        Ok(())
    }

    pub fn cores(&self) -> usize {
        self.hardware.cores.value as usize
    }

    pub(crate) fn has_l3(&self) -> bool {
        self.hardware.l3_bytes.value > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_platforms_load() {
        for (name, _) in BUILT_IN {
            let p = Platform::load(name).unwrap();
            assert_eq!(&p.name, name);
            assert!(p.cores() >= 1);
        }
    }

    /// gap8, gap9 and pulp-open price a core's work with the cost set `xpulpv2`, which holds
    /// the RTL fit of the `cv32e40p` platform: every per-core parameter equal. Only the
    /// cluster's own terms (a layer's fork and barrier, a tile's set-up) differ.
    #[test]
    fn xpulpv2_cores_cost_what_the_rtl_fit_says() {
        let (gap8, cv32e40p) = (
            Platform::load("gap8").unwrap().cost,
            Platform::load("cv32e40p").unwrap().cost,
        );
        assert_eq!(
            gap8.cycles_per_instruction.value,
            cv32e40p.cycles_per_instruction.value
        );
        let (cluster, core) = (gap8.entries(), cv32e40p.entries());
        assert_eq!(cluster.len(), core.len());
        for ((name, a), (_, b)) in cluster.iter().zip(&core) {
            if !matches!(
                name.as_str(),
                "layer_overhead_cycles" | "tile_overhead_cycles"
            ) {
                assert_eq!(a.value, b.value, "{name}");
            }
        }
    }

    #[test]
    fn written_platform_reads_back() {
        let p = Platform::load("gap8").unwrap();
        let text = p.to_toml().unwrap();
        assert_eq!(Platform::parse(&text, "x.toml").unwrap(), p);
    }

    #[test]
    fn errors_name_the_field() {
        let good = Platform::load("gap8").unwrap().to_toml().unwrap();
        let bad = good.replace(
            "[cost.conv_cycles_per_mac.w4a2]",
            "[cost.conv_cycles_per_mac.w3a2]",
        );
        let err = Platform::parse(&bad, "mine.toml").unwrap_err().to_string();
        assert!(err.starts_with("mine.toml:"), "{err}");
        assert!(err.contains("w4a2") || err.contains("w3a2"), "{err}");

        let bad = good.replacen("value = 8", "value = -8", 1);
        let err = Platform::parse(&bad, "mine.toml").unwrap_err().to_string();
        assert!(err.contains("hardware.cores"), "{err}");

        let err = Platform::load("gap10").unwrap_err().to_string();
        assert!(
            err.contains("built in: gap8, gap9, pulp-open, xpulpnn"),
            "{err}"
        );
    }
}
