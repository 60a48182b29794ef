//! Prints the cost model's figures: the time to evaluate one precision assignment of MobileNetV2
//! (target <= 2 us single-threaded) and the uniform 8-bit MobileNetV1-1.0-128 estimate on GAP8
//! against DORY's published end-to-end figure (target within 30%). Writes
//! `results/bench/cost_model.json`.
//!
//! Run: `cargo bench --bench cost_model`

use qsearch::cost::CostTable;
use qsearch::graph::{FusedGraph, zoo};
use qsearch::platform::Platform;
use qsearch::precision::{Assignment, Bits};
use rand::{RngExt, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

/// DORY on GAP8: 1.0-MobileNet-128 at 4.3 frames/s with the cluster at 100 MHz, i.e. about 8
/// MAC/cycle (reference row end_to_end,GAP8).
const DORY_MAC_PER_CYCLE: f64 = 8.0;
const RUNS: usize = 7;
const EVALUATIONS_PER_RUN: usize = 200_000;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let gap8 = Platform::load("gap8").expect("built-in platform");

    // 1. Evaluation speed on MobileNetV2.
    let v2 = FusedGraph::from_graph(&zoo::build("mobilenet-v2").expect("zoo network"));
    let table = CostTable::build(&v2, &gap8);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut random_bits =
        |n: usize| -> Vec<Bits> { (0..n).map(|_| Bits::ALL[rng.random_range(0..3)]).collect() };
    let assignments: Vec<Assignment> = (0..1024)
        .map(|_| Assignment {
            weight_bits: random_bits(v2.layers.len()),
            activation_bits: random_bits(v2.tensors.len()),
        })
        .collect();
    let mut per_eval_ns = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut checksum = 0.0;
        for i in 0..EVALUATIONS_PER_RUN {
            checksum +=
                black_box(table.evaluate(black_box(&assignments[i % assignments.len()]))).cycles;
        }
        black_box(checksum);
        per_eval_ns.push(start.elapsed().as_nanos() as f64 / EVALUATIONS_PER_RUN as f64);
    }
    let eval_ns = median(per_eval_ns.clone());
    let weighted = v2.weighted_layers().count();
    println!(
        "cost evaluation, MobileNetV2 ({} layers, {weighted} with weights, {} buffers): median {:.0} ns per assignment over {RUNS} runs of {EVALUATIONS_PER_RUN} (min {:.0}, max {:.0}); target <= 2000 ns",
        v2.layers.len(),
        v2.tensors.len(),
        eval_ns,
        per_eval_ns.iter().cloned().fold(f64::INFINITY, f64::min),
        per_eval_ns.iter().cloned().fold(0.0, f64::max),
    );

    // 2. End-to-end estimate against DORY.
    let v1 =
        FusedGraph::from_graph(&zoo::build("mobilenet-v1:resolution=128").expect("zoo network"));
    let v1_table = CostTable::build(&v1, &gap8);
    let costs = v1_table.evaluate(&Assignment::uniform(
        v1.layers.len(),
        v1.tensors.len(),
        Bits::B8,
    ));
    let macs: u64 = v1.layers.iter().map(|l| l.macs).sum();
    let mac_per_cycle = macs as f64 / costs.cycles;
    let deviation = 100.0 * (mac_per_cycle - DORY_MAC_PER_CYCLE) / DORY_MAC_PER_CYCLE;
    println!(
        "MobileNetV1-1.0-128 uniform 8-bit on gap8: {:.2} MAC/cycle ({:.1} frames/s at 100 MHz, weights streamed from L3: {}); DORY published ~{DORY_MAC_PER_CYCLE} MAC/cycle (4.3 frames/s); deviation {deviation:+.1}%; target within 30%",
        mac_per_cycle,
        1.0 / costs.seconds,
        costs.weights_in_l3,
    );

    let json = serde_json::json!({
        "evaluation_ns_median": eval_ns,
        "evaluation_ns_runs": per_eval_ns,
        "mobilenet_v2_layers": v2.layers.len(),
        "mobilenet_v1_128_mac_per_cycle": mac_per_cycle,
        "dory_mac_per_cycle": DORY_MAC_PER_CYCLE,
        "deviation_percent": deviation,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/bench");
    std::fs::create_dir_all(&dir).expect("create results/bench");
    let tmp = dir.join("cost_model.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&json).expect("json"))
        .expect("write results");
    std::fs::rename(&tmp, dir.join("cost_model.json")).expect("write results");
    println!("wrote results/bench/cost_model.json");
}
