//! The JSON documents of a run: the chosen assignment (`assignment.json`, `chosen.json`) and
//! the problem as plain tables for other optimisers.

use super::display::display_value;
use crate::graph::LayerKind;
use crate::objective::Metric;
use crate::precision::Bits;
use crate::search::{Candidate, Problem};
use serde_json::json;

/// The chosen precision of every layer and buffer, with the candidate's figures.
pub(crate) fn assignment_json(problem: &Problem, c: &Candidate) -> serde_json::Value {
    let a = problem.space.decode(&c.genes);
    let layers: Vec<serde_json::Value> = problem
        .fused
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            json!({
                "layer": layer.name,
                "kind": layer.kind.name(),
                "weight_bits": layer.kind.has_weights().then(|| a.weight_bits[l].count()),
                "input_bits": layer.inputs.iter().map(|&t| a.activation_bits[t].count()).collect::<Vec<_>>(),
                "output_bits": a.activation_bits[layer.output].count(),
            })
        })
        .collect();
    json!({
        "layers": layers,
        "buffers": problem.fused.tensors.iter().enumerate().map(|(t, b)| json!({"buffer": b.name, "bits": a.activation_bits[t].count()})).collect::<Vec<_>>(),
        "cycles": c.metrics.cycles,
        "latency_ms": display_value(problem, Metric::Latency, c.metrics.cycles),
        "flash_bytes": c.metrics.flash,
        "ram_bytes": c.metrics.ram,
        "predicted_loss": c.metrics.loss,
        "feasible": c.feasible(),
    })
}

/// The problem as plain tables (JSON), so that another optimiser can evaluate assignments exactly
/// as qsearch does: variables and choices; per layer the variables selecting its cost-table
/// indices and the cycles (L2 and L3 placement) and L3 staging bytes per index (`null` where no
/// L1 tiling fits), and the flash per weight precision; per buffer its variable and bytes; the
/// live buffers of every step; the predicted loss per variable and choice; L2 size and limits.
pub fn export_tables(problem: &Problem) -> serde_json::Value {
    let space = &problem.space;
    let table = &problem.table;
    let layers: Vec<serde_json::Value> = problem
        .fused
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let first = match layer.kind {
                k if k.has_weights() => space.weight_var[l],
                LayerKind::Add => Some(space.act_var[layer.inputs[1]]),
                _ => None,
            };
            let grid =
                |pick: &dyn Fn((f64, f64, Option<u64>)) -> serde_json::Value| -> serde_json::Value {
                    json!(
                        (0..3)
                            .map(|f| (0..3)
                                .map(|i| (0..3)
                                    .map(|o| pick(table.entry(l, f, i, o)))
                                    .collect::<Vec<_>>())
                                .collect::<Vec<_>>())
                            .collect::<Vec<_>>()
                    )
                };
            json!({
                "name": layer.name,
                "first_var": first,
                "weight_var": space.weight_var[l],
                "input_var": space.act_var[layer.inputs[0]],
                "output_var": space.act_var[layer.output],
                "cycles_l2": grid(&|(c, _, s)| if s.is_some() { json!(c) } else { json!(null) }),
                "cycles_l3": grid(&|(_, c, s)| if s.is_some() { json!(c) } else { json!(null) }),
                "staging": grid(&|(_, _, s)| json!(s)),
                "flash": table.layers[l].flash,
            })
        })
        .collect();
    let buffers: Vec<serde_json::Value> = problem
        .fused
        .tensors
        .iter()
        .enumerate()
        .map(|(t, b)| json!({"name": b.name, "var": space.act_var[t], "bytes": table.buffer_bytes[t]}))
        .collect();
    json!({
        "bits_index": Bits::ALL.iter().map(|b| b.count()).collect::<Vec<_>>(),
        "variables": space.vars.iter().map(|v| json!({"name": v.name, "choices": v.choices.iter().map(|b| b.count()).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "layers": layers,
        "buffers": buffers,
        "live": (0..table.steps()).map(|s| table.live_at(s).to_vec()).collect::<Vec<_>>(),
        "loss": problem.var_loss,
        "l2_bytes": problem.platform.hardware.l2_bytes.value,
        "has_l3": problem.platform.has_l3(),
        "energy_per_cycle": problem.platform.hardware.energy_per_cycle_j.as_ref().map(|p| p.value),
        "minimize": problem.objective.minimize,
        "limits": problem.objective.limits,
    })
}
