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

/// One layer's costs at every precision triple. The figures `evaluate` reads are kept in small
/// dense tables apart from the full timings, so that evaluation stays in cache.
#[derive(Clone, Debug)]
pub struct LayerCosts {
    pub timing: TripleTable<LayerTiming>,
    cycles: TripleTable<f64>,
    cycles_l3: TripleTable<f64>,
    /// Weight staging bytes when streaming from L3, or `u64::MAX` when no tiling fits L1.
    staging_or_unfit: TripleTable<u64>,
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

    pub fn timing(&self, layer: usize, a: &Assignment) -> &LayerTiming {
        let (f, i, o) = self.index(layer, a);
        &self.timing[f][i][o]
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
        let layers = graph
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
                let map = |f: &dyn Fn(&LayerTiming) -> f64| -> TripleTable<f64> {
                    timing.map(|plane: [[LayerTiming; 3]; 3]| plane.map(|row| row.map(|t| f(&t))))
                };
                LayerCosts {
                    cycles: map(&|t| t.cycles),
                    cycles_l3: map(&|t| t.cycles_l3),
                    staging_or_unfit: timing.map(|plane| {
                        plane.map(|row| {
                            row.map(|t| {
                                if t.fits_l1 {
                                    2 * t.weight_tile_bytes
                                } else {
                                    u64::MAX
                                }
                            })
                        })
                    }),
                    timing,
                    flash,
                    second_input,
                    input: layer.inputs[0],
                    output: layer.output,
                }
            })
            .collect();
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

    pub fn steps(&self) -> usize {
        self.live_start.len() - 1
    }

    /// The buffers live at schedule step `step`.
    pub fn live_at(&self, step: usize) -> &[ActId] {
        &self.live[self.live_start[step]..self.live_start[step + 1]]
    }

    /// Activation bytes live at each step.
    pub fn ram_profile(&self, a: &Assignment) -> Vec<u64> {
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
        for (l, layer) in self.layers.iter().enumerate() {
            let (f, i, o) = layer.index(l, a);
            cycles_l2 += layer.cycles[f][i][o];
            cycles_l3 += layer.cycles_l3[f][i][o];
            flash += layer.flash[a.weight_bits[l].index()];
            // Streaming from L3 double-buffers one channel tile of weights in L2.
            match layer.staging_or_unfit[f][i][o] {
                u64::MAX => fits_l1 = false,
                bytes => staging = staging.max(bytes),
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
