//! Flash and RAM: packed weights with their requantization parameters, activation buffers, and
//! the liveness of buffers over the execution schedule.

use crate::graph::{ActId, FusedGraph, Layer, LayerKind};
use crate::platform::Platform;
use crate::precision::Bits;

/// Flash of one layer's parameters at weight precision `w`: each output channel's weights packed
/// and padded to whole bytes, plus its requantization parameters (bias folded in). Layers without
/// weights keep only their requantization constants.
pub(crate) fn layer_flash(layer: &Layer, w: Bits, platform: &Platform) -> u64 {
    let requant = platform.kernels.requant_bytes_per_channel.value as u64;
    if !layer.kind.has_weights() {
        return match layer.kind {
            LayerKind::Add | LayerKind::AvgPool | LayerKind::GlobalAvgPool => requant,
            _ => 0,
        };
    }
    let channels = layer.output_shape.c as u64;
    let row = layer.weights / channels;
    channels * (w.packed_bytes(row) + requant)
}

/// Bytes of a buffer of `elements` values at precision `bits`.
pub(crate) fn buffer_bytes(elements: u64, bits: Bits) -> u64 {
    bits.packed_bytes(elements)
}

/// For every step of the schedule (layer order), the buffers live while the step runs: its
/// inputs and output, and every buffer written earlier and read later (residual branches).
/// The network input is live from step 0; the network output to the end.
pub(crate) fn live_buffers(graph: &FusedGraph) -> Vec<Vec<ActId>> {
    let steps = graph.layers.len();
    let mut first = vec![usize::MAX; graph.tensors.len()];
    let mut last = vec![0; graph.tensors.len()];
    first[graph.input] = 0;
    for (step, layer) in graph.layers.iter().enumerate() {
        first[layer.output] = first[layer.output].min(step);
        last[layer.output] = last[layer.output].max(step);
        for &t in &layer.inputs {
            last[t] = last[t].max(step);
        }
    }
    last[graph.output] = steps.saturating_sub(1);
    (0..steps)
        .map(|step| {
            (0..graph.tensors.len())
                .filter(|&t| first[t] <= step && step <= last[t])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::zoo;

    #[test]
    fn packed_flash_for_each_precision() {
        let g = FusedGraph::from_graph(&zoo::build("resnet8").unwrap());
        let gap8 = Platform::load("gap8").unwrap();
        // conv1: 16 channels of 3 * 3 * 3 = 27 weights, 8 bytes of requant each.
        let conv1 = &g.layers[0];
        assert_eq!(layer_flash(conv1, Bits::B8, &gap8), 16 * (27 + 8));
        assert_eq!(layer_flash(conv1, Bits::B4, &gap8), 16 * (14 + 8));
        assert_eq!(layer_flash(conv1, Bits::B2, &gap8), 16 * (7 + 8));
    }
}
