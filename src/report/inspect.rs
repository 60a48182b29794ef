//! `qsearch inspect`: a network's layers with their MACs, parameters, cycles and memory on a
//! platform at one uniform precision.

use crate::cost::{CostTable, Costs, layer_flash};
use crate::escape::terminal_text;
use crate::graph::{FusedGraph, Graph};
use crate::platform::Platform;
use crate::precision::{Assignment, Bits};
use crate::table::{Table, short_name};
use crate::units::{format_bytes, group_thousands};
use std::fmt::Write;

/// The precision `inspect` evaluates the network at, and the budget it checks.
pub struct InspectOptions {
    pub bits: Bits,
    /// Total on-chip memory budget (flash + peak RAM) to check against.
    pub budget: Option<u64>,
}

/// The per-layer table and the network's totals.
pub fn inspect(graph: &Graph, platform: &Platform, options: &InspectOptions) -> String {
    let fused = FusedGraph::from_graph(graph);
    let table = CostTable::build(&fused, platform);
    let assignment = Assignment::uniform(fused.layers.len(), fused.tensors.len(), options.bits);
    let costs = table.evaluate(&assignment);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {}, uniform {}-bit weights and activations, {} layers after folding and fusion\n{}: {}\n",
        terminal_text(&graph.name),
        platform.name,
        options.bits,
        fused.layers.len(),
        platform.name,
        platform.description,
    );
    let layers = layer_table(graph, &fused, platform, &table, &assignment, &costs);
    out.push_str(&layers.render());
    let _ = writeln!(out);
    out.push_str(&totals(graph, &fused, platform, &costs, options));
    out
}

/// One row per fused layer at the uniform `assignment`, and a row of totals.
fn layer_table(
    graph: &Graph,
    fused: &FusedGraph,
    platform: &Platform,
    table: &CostTable,
    assignment: &Assignment,
    costs: &Costs,
) -> Table {
    let ram = table.ram_profile(assignment);
    let ms = |cycles: f64| 1e3 * cycles / platform.hardware.clock_hz.value;
    let mut t = Table::new(&[
        "#", "layer<", "op<", "input<", "output<", "MACs", "params", "cycles", "ms", "MAC/cyc",
        "flash B", "RAM B", "tiles", "L1",
    ])
    .names("layer")
    .optional("input")
    .optional("MAC/cyc")
    .optional("ms")
    .optional("tiles");
    for (i, layer) in fused.layers.iter().enumerate() {
        let timing = table.timing(i, assignment);
        let cycles = if costs.weights_in_l3 {
            timing.cycles_l3
        } else {
            timing.cycles
        };
        let op = match layer.activation {
            Some(a) => format!("{}+{}", layer.kind, crate::graph::Op::Activation(a).kind()),
            None => layer.kind.to_string(),
        };
        t.row(vec![
            i.to_string(),
            layer.name.clone(),
            op,
            layer.input_shape.to_string(),
            layer.output_shape.to_string(),
            group_thousands(layer.macs),
            group_thousands(layer.params),
            group_thousands(cycles.round() as u64),
            format!("{:.3}", ms(cycles)),
            if layer.macs > 0 {
                format!("{:.2}", layer.macs as f64 / cycles)
            } else {
                "-".into()
            },
            group_thousands(layer_flash(layer, assignment.weight_bits[i], platform)),
            group_thousands(ram[i]),
            timing.plan.tiles.to_string(),
            ok(timing.fits_l1),
        ]);
    }
    let macs = graph.total_macs();
    t.rule();
    t.row(vec![
        String::new(),
        "total".into(),
        String::new(),
        graph.input_shape().to_string(),
        graph.output_shape().to_string(),
        group_thousands(macs),
        group_thousands(fused.layers.iter().map(|l| l.params).sum()),
        group_thousands(costs.cycles.round() as u64),
        format!("{:.3}", 1e3 * costs.seconds),
        format!("{:.2}", macs as f64 / costs.cycles),
        group_thousands(costs.flash),
        group_thousands(costs.ram),
        String::new(),
        ok(costs.fits_l1),
    ]);
    t
}

/// The L1 column: whether a tiling fits.
fn ok(fits: bool) -> String {
    if fits { "ok" } else { "NO" }.into()
}

/// The network's totals under the table: latency, energy, flash, RAM, L1, placement, warnings
/// and the budget's verdict.
fn totals(
    graph: &Graph,
    fused: &FusedGraph,
    platform: &Platform,
    costs: &Costs,
    options: &InspectOptions,
) -> String {
    let b = options.bits;
    let macs = graph.total_macs();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "latency   {} cycles = {:.3} ms at {:.0} MHz ({:.2} MAC/cycle)",
        group_thousands(costs.cycles.round() as u64),
        1e3 * costs.seconds,
        platform.hardware.clock_hz.value / 1e6,
        macs as f64 / costs.cycles
    );
    if let Some(e) = costs.energy_j {
        let _ = writeln!(out, "energy    {:.3} mJ", e * 1e3);
    }
    let _ = writeln!(
        out,
        "flash     {}  (weights packed at {b} bit + requantization parameters)",
        format_bytes(costs.flash)
    );
    let _ = writeln!(
        out,
        "RAM       {}  (peak of live activations, at layer {} '{}'{})",
        format_bytes(costs.ram),
        costs.peak_step,
        short_name(
            &terminal_text(&fused.layers[costs.peak_step].name),
            costs.peak_step,
            40
        ),
        if costs.weights_in_l3 {
            ", plus the L3 weight staging buffer"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "L1        {}  (largest tile + im2col footprint, of {} usable)",
        format_bytes(costs.l1_peak),
        format_bytes(platform.hardware.l1_usable_bytes.value as u64)
    );
    let _ = writeln!(
        out,
        "total     {}  (flash + peak RAM)",
        format_bytes(costs.total_memory())
    );
    let l2 = platform.hardware.l2_bytes.value as u64;
    let placement = if costs.weights_in_l3 {
        format!(
            "weights do not fit L2 ({}) with the activations: streamed from L3",
            format_bytes(l2)
        )
    } else {
        format!("everything fits L2 ({})", format_bytes(l2))
    };
    let _ = writeln!(out, "placement {placement}");
    if !costs.fits_l2 {
        let _ = writeln!(
            out,
            "warning   the activations and staging buffers exceed L2: the network cannot run on {}",
            platform.name
        );
    }
    if !costs.fits_l1 {
        let _ = writeln!(
            out,
            "warning   some layers (L1 = NO) have no tiling that fits L1 ({} usable)",
            format_bytes(platform.hardware.l1_usable_bytes.value as u64)
        );
    }
    if let Some(budget) = options.budget {
        let verdict = if costs.total_memory() <= budget {
            "fits"
        } else {
            "does NOT fit"
        };
        let _ = writeln!(
            out,
            "budget    {} : uniform {b}-bit {verdict}",
            format_bytes(budget)
        );
    }
    out
}
