//! L1 tiling of a layer, L2<->L1 DMA with double buffering, and L3 weight streaming: the whole
//! latency of one layer at one precision triple.

use super::kernel::{KernelCall, Precisions, kernel_cycles, operand_cycles};
use super::memory::layer_flash;
use crate::graph::{Layer, LayerKind, Shape};
use crate::platform::Platform;
use crate::precision::Bits;

/// How a layer is cut into L1 tiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TilePlan {
    pub channel_tile: usize,
    pub row_tile: usize,
    pub tiles: usize,
    /// L1 bytes the double-buffered tiles and scratch buffers occupy.
    pub l1_bytes: u64,
}

/// The latency of one layer at one precision triple.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LayerTiming {
    pub plan: TilePlan,
    /// Whether `plan` fits the platform's usable L1 (if not, it is the smallest plan).
    pub fits_l1: bool,
    /// Cycles with the weights resident in L2.
    pub cycles: f64,
    /// Cycles with the weights streamed from L3 while the layer computes.
    pub cycles_l3: f64,
    /// Of `cycles`, the busiest core's computation summed over tiles.
    pub compute_cycles: f64,
    /// Weight bytes of one channel tile: the unit streamed from L3 when weights live there.
    pub weight_tile_bytes: u64,
}

/// Bytes of one tile's buffers.
struct Footprint {
    input: u64,
    weights: u64,
    output: u64,
    scratch: u64,
}

impl Footprint {
    fn l1(&self) -> u64 {
        2 * (self.input + self.weights + self.output) + self.scratch
    }
}

fn bytes(elements: usize, bits: Bits) -> u64 {
    bits.packed_bytes(elements as u64)
}

/// Whether the layer's output rows can be tiled (all but vector-shaped layers).
fn tiles_rows(kind: LayerKind) -> bool {
    !matches!(
        kind,
        LayerKind::Linear | LayerKind::GlobalAvgPool | LayerKind::GlobalMaxPool
    )
}

/// Whether the layer's output channels can be tiled.
fn tiles_channels(kind: LayerKind) -> bool {
    !matches!(kind, LayerKind::Add | LayerKind::Elementwise)
}

/// The kernel call of a tile of `channels` output channels and `rows` output rows.
fn tile_call(layer: &Layer, channels: usize, rows: usize) -> KernelCall {
    let mut call = KernelCall::of_layer(layer);
    call.output.c = channels;
    call.output.h = rows;
    if let Some(window) = layer.window {
        let padded = layer.input_shape.h + window.padding.top + window.padding.bottom;
        call.input.h = ((rows - 1) * window.stride[0] + window.kernel[0]).min(padded);
    } else if tiles_rows(layer.kind) {
        call.input.h = rows;
    }
    if matches!(
        layer.kind,
        LayerKind::Depthwise
            | LayerKind::MaxPool
            | LayerKind::AvgPool
            | LayerKind::GlobalAvgPool
            | LayerKind::GlobalMaxPool
    ) {
        call.input.c = channels;
    }
    call
}

fn footprint(layer: &Layer, call: &KernelCall, bits: Precisions, platform: &Platform) -> Footprint {
    let cores = platform.cores() as u64;
    let requant = platform.kernels.requant_bytes_per_channel.value as u64;
    let (input, output) = (call.input, call.output);
    let row = |c: usize| -> u64 {
        if layer.kind.has_weights() {
            c as u64
                * (bits
                    .weight
                    .packed_bytes(layer.weights / layer.output_shape.c as u64)
                    + requant)
        } else {
            0
        }
    };
    let in_bytes = |s: Shape| bytes(s.c * s.h * s.w, bits.input);
    let out_bytes = bytes(output.c * output.h * output.w, bits.output);
    let (input_bytes, scratch) = match layer.kind {
        LayerKind::Conv | LayerKind::Pointwise | LayerKind::GroupedConv => {
            // Two im2col columns per core, at the operand width the kernel computes on: 8 bit
            // when the input is unpacked, packed otherwise; pointwise kernels read in place.
            let k = (input.c / layer.groups * call.kernel[0] * call.kernel[1]) as u64;
            let unpacked = platform
                .cost
                .unpack_cycles_per_element
                .get(bits.weight, bits.input)
                > 0.0;
            let column = if unpacked {
                k
            } else if layer.kind == LayerKind::Pointwise {
                0
            } else {
                bits.input.packed_bytes(k)
            };
            (in_bytes(input), cores * 2 * column)
        }
        LayerKind::Depthwise => {
            let padded_w = layer
                .window
                .map_or(input.w, |w| input.w + w.padding.left + w.padding.right);
            (in_bytes(input), cores * (input.h * padded_w) as u64)
        }
        LayerKind::Add => (
            in_bytes(input) + bytes(input.c * input.h * input.w, bits.second),
            0,
        ),
        _ => (in_bytes(input), 0),
    };
    Footprint {
        input: input_bytes,
        weights: row(output.c),
        output: out_bytes,
        scratch,
    }
}

/// Output-channel tile sizes to try: the whole layer, then halves (multiples of 4 while the
/// 4-channel kernel applies, then 2 and 1).
fn channel_candidates(channels: usize) -> Vec<usize> {
    let mut candidates = vec![channels];
    let mut parts = 2;
    while *candidates.last().unwrap_or(&1) > 1 {
        let share = channels.div_ceil(parts);
        let tile = if share >= 4 {
            share.next_multiple_of(4)
        } else {
            share
        }
        .min(channels);
        if candidates.last() != Some(&tile) {
            candidates.push(tile);
        }
        parts *= 2;
    }
    candidates
}

/// The plan and latency of `layer` at precisions `bits`.
pub(crate) fn time_layer(layer: &Layer, bits: Precisions, platform: &Platform) -> LayerTiming {
    let budget = platform.hardware.l1_usable_bytes.value as u64;
    let out = layer.output_shape;
    let channel_tiles = if tiles_channels(layer.kind) {
        channel_candidates(out.c)
    } else {
        vec![out.c]
    };
    let mut best: Option<LayerTiming> = None;
    let mut smallest: Option<LayerTiming> = None;
    for &c in &channel_tiles {
        let fits = |rows: usize| {
            footprint(layer, &tile_call(layer, c, rows), bits, platform).l1() <= budget
        };
        let rows = if tiles_rows(layer.kind) {
            // The footprint grows with the rows: binary search for the tallest tile that fits.
            let (mut lo, mut hi) = (0, out.h);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if fits(mid) { lo = mid } else { hi = mid - 1 }
            }
            lo
        } else if fits(out.h) {
            out.h
        } else {
            0
        };
        if rows == 0 {
            if c == *channel_tiles.last().unwrap_or(&c) {
                smallest = Some(simulate(layer, bits, platform, c, 1, false));
            }
            continue;
        }
        let timing = simulate(layer, bits, platform, c, rows, true);
        if best.is_none_or(|b| timing.cycles < b.cycles) {
            best = Some(timing);
        }
    }
    best.or(smallest)
        .unwrap_or_else(|| simulate(layer, bits, platform, out.c, 1, false))
}

/// DMA cycles of one tile: loading its input (and its share of the weights) and storing its
/// output. Contiguous buffers move in one command; a tile with part of the output channels is
/// stored row by row; depthwise inputs are transposed to CHW by the DMA, one channel per command
/// with byte-sized bursts (as DORY's depthwise layers do).
fn tile_dma(
    layer: &Layer,
    call: &KernelCall,
    fp: &Footprint,
    platform: &Platform,
    weight_share: f64,
) -> (f64, f64) {
    let hw = &platform.hardware;
    let latency = hw.dma_latency_cycles.value;
    let bandwidth = hw.dma_bytes_per_cycle.value;
    let load_input = if layer.kind == LayerKind::Depthwise {
        let commands = call.input.c.div_ceil(platform.cores()) as f64;
        commands * latency + fp.input as f64 / hw.dma_transpose_bytes_per_cycle.value
    } else {
        latency + fp.input as f64 / bandwidth
    };
    // Weights, kappa and lambda: three commands per channel tile.
    let load_weights = if layer.kind.has_weights() {
        weight_share * (3.0 * latency + fp.weights as f64 / bandwidth)
    } else {
        0.0
    };
    let store_commands = if call.output.c < layer.output_shape.c {
        call.output.h as f64
    } else {
        1.0
    };
    let store = store_commands * latency + fp.output as f64 / bandwidth;
    (load_input + load_weights, store)
}

/// Latency of the tiled layer. With blocking DMA (as DORY runs GAP8) every transfer waits before
/// the tile computes; with double buffering, the first tile's input and the last tile's output are
/// exposed and every other transfer overlaps a tile's computation.
fn simulate(
    layer: &Layer,
    bits: Precisions,
    platform: &Platform,
    c: usize,
    rows: usize,
    fits_l1: bool,
) -> LayerTiming {
    let hw = &platform.hardware;
    let cost = &platform.cost;
    let cores = platform.cores();
    let out = layer.output_shape;
    let (n_c, n_h) = (out.c.div_ceil(c), out.h.div_ceil(rows));
    let tiles = n_c * n_h;

    // The four tile shapes (full or last along channels and rows) and how many of each.
    let last_c = out.c - (n_c - 1) * c;
    let last_h = out.h - (n_h - 1) * rows;
    let shapes = [
        (c, rows, (n_c - 1) * (n_h - 1)),
        (last_c, rows, n_h - 1),
        (c, last_h, n_c - 1),
        (last_c, last_h, 1),
    ];
    // Per shape: count, compute cycles, load and store DMA cycles.
    let mut per_shape = Vec::with_capacity(4);
    for (tc, th, count) in shapes {
        if count == 0 {
            continue;
        }
        let call = tile_call(layer, tc, th);
        let fp = footprint(layer, &call, bits, platform);
        // Weights are fetched once per channel tile, i.e. spread over its row tiles.
        let (load, store) = tile_dma(layer, &call, &fp, platform, 1.0 / n_h as f64);
        per_shape.push((
            count as f64,
            kernel_cycles(cost, cores, &call, bits),
            load,
            store,
        ));
    }
    let compute: f64 = per_shape.iter().map(|(n, k, _, _)| n * k).sum();
    let dma: f64 = per_shape.iter().map(|(n, _, l, s)| n * (l + s)).sum();
    let body = if hw.dma_blocking.value || tiles == 1 {
        compute + dma
    } else {
        let (_, _, first_load, _) = per_shape[0];
        let (_, _, _, last_store) = per_shape[per_shape.len() - 1];
        let hidden = (dma - first_load - last_store) / tiles as f64;
        first_load
            + last_store
            + per_shape
                .iter()
                .map(|(n, k, _, _)| n * k.max(hidden))
                .sum::<f64>()
    };
    // A linear layer's operand is made once, before its first tile computes.
    let operand = operand_cycles(cost, &KernelCall::of_layer(layer), bits);
    let cycles = operand
        + body
        + tiles as f64 * cost.tile_overhead_cycles.value
        + cost.layer_overhead_cycles.value;
    let weight_bytes = layer_flash(layer, bits.weight, platform) as f64;
    let cycles_l3 = if layer.kind.has_weights() && platform.has_l3() {
        cycles.max(hw.l3_latency_cycles.value + weight_bytes / hw.l3_bytes_per_cycle.value)
    } else {
        cycles
    };
    let tile = footprint(layer, &tile_call(layer, c, rows), bits, platform);
    LayerTiming {
        plan: TilePlan {
            channel_tile: c,
            row_tile: rows,
            tiles,
            l1_bytes: tile.l1(),
        },
        weight_tile_bytes: tile.weights,
        fits_l1,
        cycles,
        cycles_l3,
        compute_cycles: operand + compute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{FusedGraph, zoo};

    #[test]
    fn channel_candidates_halve_in_multiples_of_four() {
        assert_eq!(channel_candidates(64), vec![64, 32, 16, 8, 4, 2, 1]);
        assert_eq!(channel_candidates(10), vec![10, 8, 3, 2, 1]);
        assert_eq!(channel_candidates(3), vec![3, 2, 1]);
    }

    #[test]
    fn big_layers_are_tiled_to_fit_l1() {
        let g = FusedGraph::from_graph(&zoo::build("mobilenet-v1").unwrap());
        let gap8 = Platform::load("gap8").unwrap();
        for layer in &g.layers {
            let t = time_layer(layer, Precisions::uniform(Bits::B8), &gap8);
            assert!(t.fits_l1, "{}", layer.name);
            assert!(t.plan.l1_bytes <= 36_700, "{}", layer.name);
            assert!(t.cycles >= t.compute_cycles);
        }
    }

    #[test]
    fn impossible_tiles_are_reported() {
        let g = FusedGraph::from_graph(&zoo::build("fashion-cnn").unwrap());
        let mut tiny = Platform::load("gap8").unwrap();
        tiny.hardware.l1_usable_bytes.value = 64.0;
        let t = time_layer(&g.layers[0], Precisions::uniform(Bits::B8), &tiny);
        assert!(!t.fits_l1);
    }
}
