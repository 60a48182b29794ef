//! Prints the search targets' figures and writes `results/bench/search.json`:
//!
//! 1. ILP on MobileNetV2 (gap8) under flash + RAM + latency limits: solve time and gap
//!    (target: proven optimum in under 1 s).
//! 2. NSGA-II, single objective, on the same network: time until the best feasible value is
//!    within 1% of the ILP optimum (target: under 2 s), median over seeds.
//! 3. Memory-driven on MobileNetV1-1.0-224 with 2 MB flash and 512 KB RAM: time to its
//!    assignment (target: under 10 ms).
//!
//! It also exports the NSGA-II problem as tables (`results/bench/problem-mobilenet-v2.json`)
//! together with qsearch's time to the target, for the Optuna peer (`scripts/bench-optuna.sh`).
//!
//! Run: `cargo bench --bench search`

use qsearch::flow::{Inputs, Limits, Prepared, prepare};
use qsearch::objective::Metric;
use qsearch::search::{Settings, policy, run_policy};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

const SEEDS: u64 = 5;
const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn problem(model: &str, objective: &str, limits: Limits) -> Prepared {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let inputs = Inputs {
        model: model.into(),
        platform: "gap8".into(),
        space: "default".into(),
        objective: objective.into(),
        limits,
        sensitivity: None,
        results: root.join("results"),
        progress: false,
    };
    prepare(&inputs).expect("benchmark problem")
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/bench");
    let settings = Settings::default();

    // 1. ILP with flash, RAM and latency limits: minimise the predicted accuracy loss.
    let limits = Limits {
        flash: Some(2_000_000),
        ram: Some(512_000),
        latency: Some("700ms".into()),
        ..Limits::default()
    };
    let v2 = problem("zoo:mobilenet-v2", "accuracy", limits.clone());
    let p = &v2.problem;
    let mut ilp_times = Vec::new();
    let mut ilp_result = None;
    for _ in 0..RUNS {
        let mut ilp = policy("ilp", &settings).expect("ilp");
        let r = run_policy(ilp.as_mut(), p, &settings, false).expect("ilp run");
        ilp_times.push(r.seconds);
        ilp_result = Some(r);
    }
    let ilp = ilp_result.expect("at least one run");
    let optimality = ilp.optimality.expect("ilp reports optimality");
    let optimum = ilp.best().expect("feasible").metrics.get(Metric::Accuracy);
    println!(
        "ILP, MobileNetV2 on gap8 ({} layers, {} variables, flash <= 2 MB, RAM <= 512 KB, latency <= 700 ms, minimise predicted loss): median {:.3} s over {RUNS} solves (min {:.3}, max {:.3}); proven optimal: {}, gap {:.2e}; target < 1 s",
        p.fused.layers.len(),
        p.space.vars.len(),
        median(ilp_times.clone()),
        ilp_times.iter().cloned().fold(f64::INFINITY, f64::min),
        ilp_times.iter().cloned().fold(0.0, f64::max),
        optimality.proven,
        optimality.gap
    );

    // 2. NSGA-II on the latency objective under the flash and RAM limits.
    let latency_limits = Limits {
        flash: Some(2_000_000),
        ram: Some(512_000),
        ..Limits::default()
    };
    let lat = problem("zoo:mobilenet-v2", "latency", latency_limits);
    let lp = &lat.problem;
    let mut exact = policy("ilp", &settings).expect("ilp");
    let lat_optimum = run_policy(exact.as_mut(), lp, &settings, false)
        .expect("ilp run")
        .best()
        .expect("feasible")
        .metrics
        .cycles;
    let target = 1.01 * lat_optimum;
    let mut times = Vec::new();
    let mut finals = Vec::new();
    for seed in 0..SEEDS {
        let s = Settings {
            seed,
            evaluations: 2_000_000,
            ..settings.clone()
        };
        let mut evo = policy("evolution", &s).expect("evolution");
        let r = run_policy(evo.as_mut(), lp, &s, false).expect("evolution run");
        times.push(r.time_to(target).unwrap_or(f64::INFINITY));
        finals.push(r.best().map_or(f64::INFINITY, |c| c.metrics.cycles) / lat_optimum - 1.0);
    }
    let evo_time = median(times.clone());
    println!(
        "NSGA-II, MobileNetV2 on gap8 (flash <= 2 MB, RAM <= 512 KB, minimise latency; ILP optimum {lat_optimum:.0} cycles): time to within 1% of the optimum, median {evo_time:.3} s over {SEEDS} seeds (per seed: {}); final gaps {}; target < 2 s",
        times
            .iter()
            .map(|t| format!("{t:.3}"))
            .collect::<Vec<_>>()
            .join(", "),
        finals
            .iter()
            .map(|g| format!("{:.2}%", 100.0 * g))
            .collect::<Vec<_>>()
            .join(", "),
    );

    // 3. Memory-driven on MobileNetV1-1.0-224.
    let v1 = problem(
        "zoo:mobilenet-v1",
        "latency",
        Limits {
            flash: Some(2_000_000),
            ram: Some(512_000),
            ..Limits::default()
        },
    );
    let mut md_times = Vec::new();
    for _ in 0..RUNS {
        let mut md = policy("memory-driven", &settings).expect("memory-driven");
        let started = Instant::now();
        run_policy(md.as_mut(), &v1.problem, &settings, false).expect("memory-driven run");
        md_times.push(started.elapsed().as_secs_f64());
    }
    let md_time = median(md_times);
    println!(
        "memory-driven, MobileNetV1-1.0-224 (flash <= 2 MB, RAM <= 512 KB): median {:.2} ms over {RUNS} runs; target < 10 ms",
        1e3 * md_time
    );

    // The problem as plain tables, for the Optuna peer.
    std::fs::create_dir_all(&dir).expect("results/bench");
    let exported = qsearch::report::export_tables(lp);
    qsearch::results::write_json(&dir.join("problem-mobilenet-v2.json"), &exported)
        .expect("export");
    let summary = json!({
        "ilp_seconds_median": median(ilp_times),
        "ilp_proven": optimality.proven,
        "ilp_gap": optimality.gap,
        "ilp_optimum_loss": optimum,
        "nsga_latency_optimum_cycles": lat_optimum,
        "nsga_seconds_to_1pct": times,
        "nsga_seconds_to_1pct_median": evo_time,
        "nsga_final_gaps": finals,
        "memory_driven_ms_median": 1e3 * md_time,
    });
    qsearch::results::write_json(&dir.join("search.json"), &summary).expect("results");
    println!("wrote results/bench/search.json and results/bench/problem-mobilenet-v2.json");
}
