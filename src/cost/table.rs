//! The precomputed cost model of one network on one platform: per layer and precision triple
//! the cycles, per layer and weight precision the flash, per buffer and precision the bytes, and
//! the live buffers of every schedule step. Evaluating an assignment is then a few hundred table
//! lookups, cheap enough for searches that evaluate millions of candidates.

use super::kernel::Precisions;
use super::memory::{buffer_bytes, layer_flash, live_buffers};
use super::tiling::{LayerTiming, time_layer};
use crate::graph::{ActId, FusedGraph, LayerKind};
use crate::platform::Platform;
use crate::precision::{Assignment, Bits};

/// `[first][input][output]` with `first` the weight precision, or the second input's for adds.
type TripleTable<T> = [[[T; 3]; 3]; 3];

/// What `evaluate` reads of one layer at one precision triple, packed into 16 bytes so that a
/// whole network's table stays in the L1 cache.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    cycles: f32,
    cycles_l3: f32,
    /// Weight staging bytes when streaming from L3, or `u32::MAX` when no tiling fits L1.
    staging_or_unfit: u32,
    /// L1 bytes of the layer's tile buffers (inputs, weights, outputs, im2col).
    l1_bytes: u32,
}

impl Entry {
    fn of(t: &LayerTiming) -> Entry {
        let saturate = |v: u64| v.min(u64::from(u32::MAX - 1)) as u32;
        Entry {
            cycles: t.cycles as f32,
            cycles_l3: t.cycles_l3 as f32,
            staging_or_unfit: if t.fits_l1 {
                saturate(2 * t.weight_tile_bytes)
            } else {
                u32::MAX
            },
            l1_bytes: saturate(t.plan.l1_bytes),
        }
    }
}

/// One layer's costs at every precision triple.
#[derive(Clone, Debug)]
pub struct LayerCosts {
    entries: TripleTable<Entry>,
    pub flash: [u64; 3],
    /// The buffer whose precision selects the table's first index, besides the weights.
    second_input: Option<ActId>,
    input: ActId,
    output: ActId,
}

impl LayerCosts {
    /// The table index of the layer under `a`.
    fn index(&self, layer: usize, a: &Assignment) -> (usize, usize, usize) {
        let first = match self.second_input {
            Some(t) => a.activation_bits[t].index(),
            None => a.weight_bits[layer].index(),
        };
        (
            first,
            a.activation_bits[self.input].index(),
            a.activation_bits[self.output].index(),
        )
    }
}

/// Costs of one assignment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    pub cycles: f64,
    pub seconds: f64,
    /// Parameters: packed weights and requantization constants.
    pub flash: u64,
    /// Peak L2 activation memory (plus the weight staging buffer when streaming from L3).
    pub ram: u64,
    pub energy_j: Option<f64>,
    /// Weights and activations together exceed L2, so weights stream from L3.
    pub weights_in_l3: bool,
    /// Every layer has a tiling that fits L1.
    pub fits_l1: bool,
    /// Activations (and the staging buffer, when streaming) fit L2.
    pub fits_l2: bool,
    /// The schedule step at which RAM peaks.
    pub peak_step: usize,
    /// The largest L1 footprint of any layer's tiles and im2col buffers (L1 is separate from
    /// the L2 that `ram` counts; each layer's tiling is checked against the usable L1).
    pub l1_peak: u64,
}

impl Costs {
    /// Flash plus peak RAM: the on-chip memory the network needs.
    pub fn total_memory(&self) -> u64 {
        self.flash + self.ram
    }
}

#[derive(Clone, Debug)]
pub struct CostTable {
    pub layers: Vec<LayerCosts>,
    /// The full timing (tile plan included) of every layer at every triple, for reports.
    timings: Vec<TripleTable<LayerTiming>>,
    /// Bytes of each buffer at each precision.
    pub buffer_bytes: Vec<[u64; 3]>,
    /// Live buffers per schedule step, flattened; step `s` is `live[live_start[s]..live_start[s + 1]]`.
    live: Vec<ActId>,
    live_start: Vec<usize>,
    l2_bytes: u64,
    has_l3: bool,
    clock_hz: f64,
    energy_per_cycle: Option<f64>,
    l3_energy_per_byte: f64,
}

impl CostTable {
    pub fn build(graph: &FusedGraph, platform: &Platform) -> CostTable {
        let (layers, timings): (Vec<LayerCosts>, Vec<TripleTable<LayerTiming>>) = graph
            .layers
            .iter()
            .map(|layer| {
                let second_input = (layer.kind == LayerKind::Add).then(|| layer.inputs[1]);
                // The first index matters only for weighted layers and adds.
                let first_varies = layer.kind.has_weights() || second_input.is_some();
                let timing = std::array::from_fn(|f| {
                    std::array::from_fn(|i| {
                        std::array::from_fn(|o| {
                            let f = if first_varies { f } else { Bits::B8.index() };
                            let bits = Precisions {
                                weight: Bits::ALL[f],
                                input: Bits::ALL[i],
                                second: Bits::ALL[f],
                                output: Bits::ALL[o],
                            };
                            time_layer(layer, bits, platform)
                        })
                    })
                });
                let flash = Bits::ALL.map(|w| layer_flash(layer, w, platform));
                let costs = LayerCosts {
                    entries: timing.map(|plane: [[LayerTiming; 3]; 3]| {
                        plane.map(|row| row.map(|t| Entry::of(&t)))
                    }),
                    flash,
                    second_input,
                    input: layer.inputs[0],
                    output: layer.output,
                };
                (costs, timing)
            })
            .unzip();
        let buffer_bytes = graph
            .tensors
            .iter()
            .map(|t| Bits::ALL.map(|b| buffer_bytes(t.shape.elements(), b)))
            .collect();
        let mut live = Vec::new();
        let mut live_start = vec![0];
        for step in live_buffers(graph) {
            live.extend(step);
            live_start.push(live.len());
        }
        let hw = &platform.hardware;
        CostTable {
            layers,
            timings,
            buffer_bytes,
            live,
            live_start,
            l2_bytes: hw.l2_bytes.value as u64,
            has_l3: platform.has_l3(),
            clock_hz: hw.clock_hz.value,
            energy_per_cycle: hw.energy_per_cycle_j.as_ref().map(|p| p.value),
            l3_energy_per_byte: hw.l3_energy_per_byte_j.as_ref().map_or(0.0, |p| p.value),
        }
    }

    /// What `evaluate` adds for `layer` at table index (`first`, `input`, `output`) (bits
    /// indices): cycles with weights in L2, cycles with weights in L3, and the L3 staging bytes,
    /// `None` when no tiling fits L1.
    pub fn entry(
        &self,
        layer: usize,
        first: usize,
        input: usize,
        output: usize,
    ) -> (f64, f64, Option<u64>) {
        let e = &self.layers[layer].entries[first][input][output];
        let staging = (e.staging_or_unfit != u32::MAX).then_some(u64::from(e.staging_or_unfit));
        (f64::from(e.cycles), f64::from(e.cycles_l3), staging)
    }

    /// Layer `layer`'s timing under `a`.
    pub(crate) fn timing(&self, layer: usize, a: &Assignment) -> &LayerTiming {
        let (f, i, o) = self.layers[layer].index(layer, a);
        &self.timings[layer][f][i][o]
    }

    pub fn steps(&self) -> usize {
        self.live_start.len() - 1
    }

    /// The buffers live at schedule step `step`.
    pub(crate) fn live_at(&self, step: usize) -> &[ActId] {
        &self.live[self.live_start[step]..self.live_start[step + 1]]
    }

    /// Activation bytes live at each step.
    pub(crate) fn ram_profile(&self, a: &Assignment) -> Vec<u64> {
        (0..self.steps())
            .map(|s| {
                self.live_at(s)
                    .iter()
                    .map(|&t| self.buffer_bytes[t][a.activation_bits[t].index()])
                    .sum()
            })
            .collect()
    }

    /// Latency, memory and energy of `a`.
    pub fn evaluate(&self, a: &Assignment) -> Costs {
        let mut cycles_l2 = 0.0;
        let mut cycles_l3 = 0.0;
        let mut flash = 0;
        let mut staging = 0;
        let mut fits_l1 = true;
        let mut l1_peak = 0;
        for (l, layer) in self.layers.iter().enumerate() {
            let (f, i, o) = layer.index(l, a);
            let e = &layer.entries[f][i][o];
            cycles_l2 += f64::from(e.cycles);
            cycles_l3 += f64::from(e.cycles_l3);
            flash += layer.flash[a.weight_bits[l].index()];
            l1_peak = l1_peak.max(e.l1_bytes);
            // Streaming from L3 double-buffers one channel tile of weights in L2.
            match e.staging_or_unfit {
                u32::MAX => fits_l1 = false,
                bytes => staging = staging.max(u64::from(bytes)),
            }
        }
        let mut ram = 0;
        let mut peak_step = 0;
        for s in 0..self.steps() {
            let bytes: u64 = self
                .live_at(s)
                .iter()
                .map(|&t| self.buffer_bytes[t][a.activation_bits[t].index()])
                .sum();
            if bytes > ram {
                ram = bytes;
                peak_step = s;
            }
        }
        let weights_in_l3 = self.has_l3 && flash + ram > self.l2_bytes;
        let (cycles, ram, fits_l2) = if weights_in_l3 {
            (cycles_l3, ram + staging, ram + staging <= self.l2_bytes)
        } else {
            (cycles_l2, ram, flash + ram <= self.l2_bytes)
        };
        let streamed = if weights_in_l3 { flash as f64 } else { 0.0 };
        Costs {
            cycles,
            seconds: cycles / self.clock_hz,
            flash,
            ram,
            energy_j: self
                .energy_per_cycle
                .map(|e| e * cycles + self.l3_energy_per_byte * streamed),
            weights_in_l3,
            fits_l1,
            fits_l2,
            peak_step,
            l1_peak: u64::from(l1_peak),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Conv, Graph, GraphBuilder, Op, Shape, Window, zoo};

    fn conv(out: usize, inp: usize) -> Op {
        Op::Conv(Conv {
            out_channels: out,
            window: Window::square(1, 1, 0),
            groups: 1,
            weight: vec![0.1; out * inp],
            bias: vec![0.0; out],
        })
    }

    /// x(4x8x8) -> a(8) -> b(8) -> add(a, b) -> c(4): the branch `a` stays live across `b`.
    fn residual() -> Graph {
        let mut g = GraphBuilder::new("res", "x", Shape::new(4, 8, 8));
        let a = g.add("a", conv(8, 4), &[0]).unwrap();
        let b = g.add("b", conv(8, 8), &[a]).unwrap();
        let s = g.add("add", Op::Add, &[a, b]).unwrap();
        let c = g.add("c", conv(4, 8), &[s]).unwrap();
        g.finish(c).unwrap()
    }

    #[test]
    fn liveness_peak_on_a_residual_network() {
        let fused = FusedGraph::from_graph(&residual());
        let table = CostTable::build(&fused, &Platform::load("gap8").unwrap());
        // Buffers: x = 256 values, a = b = add = 512, c = 256.
        // step 0 (a): x + a = 768; step 1 (b): a + b = 1024; step 2 (add): a + b + add = 1536;
        // step 3 (c): add + c = 768 (c is the output, live to the end).
        let all8 = Assignment::uniform(4, 5, Bits::B8);
        assert_eq!(table.ram_profile(&all8), vec![768, 1024, 1536, 768]);
        let costs = table.evaluate(&all8);
        assert_eq!(costs.ram, 1536);
        assert_eq!(costs.peak_step, 2);
        // At 4 bits the branch a halves: 1536 - 256.
        let mut mixed = all8.clone();
        mixed.activation_bits[1] = Bits::B4;
        assert_eq!(table.evaluate(&mixed).ram, 1280);
    }

    #[test]
    fn default_network_misses_512kb_at_8_bit_but_fits_mixed() {
        let fused = FusedGraph::from_graph(&zoo::build("fashion-cnn").unwrap());
        let table = CostTable::build(&fused, &Platform::load("gap8").unwrap());
        let (l, t) = (fused.layers.len(), fused.tensors.len());
        let all8 = table.evaluate(&Assignment::uniform(l, t, Bits::B8));
        assert!(all8.total_memory() > 512_000, "{}", all8.total_memory());
        let mut mixed = Assignment::uniform(l, t, Bits::B8);
        let fc1 = fused.layer_by_name("fc1").unwrap();
        mixed.weight_bits[fc1] = Bits::B4;
        let mixed = table.evaluate(&mixed);
        assert!(mixed.total_memory() < 512_000, "{}", mixed.total_memory());
    }
}
