//! The search policies against independent checks: every result meets every limit when the cost
//! model re-evaluates it from scratch, the ILP equals brute force on a space small enough to
//! enumerate, seeds fix results files, and impossible budgets name what binds.

use qsearch::cost::CostTable;
use qsearch::flow::{Inputs, Limits, Prepared, prepare, search};
use qsearch::graph::{FusedGraph, load_model};
use qsearch::objective::Metric;
use qsearch::platform::Platform;
use qsearch::search::{Candidate, SearchError, Settings, Stop, policy, register_all, run_policy};
use std::path::PathBuf;

fn results_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("qsearch-test-{}-{name}", std::process::id()))
}

fn problem(model: &str, objective: &str, limits: Limits, name: &str) -> Prepared {
    prepare(&Inputs {
        model: model.into(),
        platform: "gap8".into(),
        space: "default".into(),
        objective: objective.into(),
        limits,
        sensitivity: None,
        results: results_dir(name),
        progress: false,
    })
    .unwrap()
}

fn quick() -> Settings {
    Settings {
        evaluations: 20_000,
        population: 40,
        episodes: 40,
        pareto_points: 4,
        ..Settings::default()
    }
}

/// Re-evaluates `c` with a cost table built anew and checks every limit of the problem.
fn assert_meets_limits(prepared: &Prepared, c: &Candidate, policy: &str) {
    let p = &prepared.problem;
    let fused = FusedGraph::from_graph(&load_model(&prepared.inputs.model).unwrap());
    let table = CostTable::build(&fused, &Platform::load(&prepared.inputs.platform).unwrap());
    let costs = table.evaluate(&p.space.decode(&c.genes));
    assert!(
        costs.fits_l1 && costs.fits_l2,
        "{policy}: does not fit L1/L2"
    );
    let loss = p.sensitivity.loss(&fused, &p.space.decode(&c.genes));
    for limit in &p.objective.limits {
        let value = match limit.metric {
            Metric::Latency => costs.cycles,
            Metric::Flash => costs.flash as f64,
            Metric::Ram => costs.ram as f64,
            Metric::Memory => costs.total_memory() as f64,
            Metric::Energy => costs.energy_j.unwrap_or(0.0),
            Metric::Accuracy => loss,
        };
        assert!(
            value <= limit.max * (1.0 + 1e-9),
            "{policy}: {} = {value} exceeds {}",
            limit.metric,
            limit.max
        );
    }
    // The space's pins and channel rules hold too.
    for (v, var) in p.space.vars.iter().enumerate() {
        assert!(
            (c.genes[v] as usize) < var.choices.len(),
            "{policy}: gene out of range"
        );
    }
}

#[test]
fn every_policy_meets_every_limit() {
    let cases = [
        (
            "zoo:fashion-cnn",
            "latency",
            Limits {
                memory: Some(512_000),
                ..Limits::default()
            },
        ),
        (
            "zoo:resnet8",
            "latency-accuracy",
            Limits {
                ram: Some(40_000),
                flash: Some(60_000),
                ..Limits::default()
            },
        ),
    ];
    for (i, (model, objective, limits)) in cases.into_iter().enumerate() {
        let prepared = problem(model, objective, limits, &format!("limits{i}"));
        for name in register_all().keys() {
            let settings = quick();
            let mut p = policy(name, &settings).unwrap();
            let result = run_policy(p.as_mut(), &prepared.problem, &settings, false).unwrap();
            if *name != "uniform" {
                assert!(result.best().is_some(), "{name} found nothing on {model}");
            }
            for &k in &result.front {
                assert_meets_limits(&prepared, &result.candidates[k], name);
            }
        }
    }
}

/// Every assignment of the space, by counting in mixed radix.
fn all_assignments(choices: &[usize]) -> Vec<Vec<u8>> {
    let total: usize = choices.iter().product();
    (0..total)
        .map(|mut n| {
            choices
                .iter()
                .map(|&k| {
                    let g = (n % k) as u8;
                    n /= k;
                    g
                })
                .collect()
        })
        .collect()
}

#[test]
fn ilp_equals_brute_force() {
    // fashion-cnn's default space has 13 variables and about 20,000 assignments.
    let cases = [
        (
            "latency",
            Limits {
                memory: Some(300_000),
                ..Limits::default()
            },
        ),
        (
            "accuracy",
            Limits {
                memory: Some(250_000),
                latency: Some("7ms".into()),
                ..Limits::default()
            },
        ),
        (
            "memory",
            Limits {
                latency: Some("6ms".into()),
                ..Limits::default()
            },
        ),
        // No memory limit: the weights may stream from L3; both placements are considered.
        ("latency", Limits::default()),
    ];
    for (i, (objective, limits)) in cases.into_iter().enumerate() {
        let prepared = problem("zoo:fashion-cnn", objective, limits, &format!("brute{i}"));
        let p = &prepared.problem;
        let primary = p.objective.primary();
        let choices: Vec<usize> = p.space.vars.iter().map(|v| v.choices.len()).collect();
        let brute = all_assignments(&choices)
            .iter()
            .map(|g| p.evaluate(g))
            .filter(Candidate::feasible)
            .map(|c| c.metrics.get(primary))
            .fold(f64::INFINITY, f64::min);
        let settings = Settings::default();
        let mut ilp = policy("ilp", &settings).unwrap();
        let result = run_policy(ilp.as_mut(), p, &settings, false).unwrap();
        let found = result.best().unwrap().metrics.get(primary);
        assert!(
            (found - brute).abs() <= 1e-6 * brute.abs().max(1e-12),
            "{objective} case {i}: ILP {found} vs brute force {brute}"
        );
        assert!(result.optimality.unwrap().proven);
    }
}

#[test]
fn same_seed_gives_identical_results_files() {
    for name in qsearch::search::register_all().into_keys() {
        let mut files = Vec::new();
        for round in 0..2 {
            let prepared = problem(
                "zoo:resnet8",
                "latency-accuracy",
                Limits {
                    memory: Some(100_000),
                    ..Limits::default()
                },
                &format!("seed-{name}-{round}"),
            );
            let report = search(&prepared, name, &quick(), Some("run"), false).unwrap();
            files.push(std::fs::read_to_string(report.dir.join("candidates.csv")).unwrap());
            files.push(std::fs::read_to_string(report.dir.join("assignment.json")).unwrap());
            let parquet =
                qsearch::results::read_parquet(&report.dir.join("candidates.parquet")).unwrap();
            assert!(parquet.height() > 0);
        }
        assert_eq!(
            files[..2],
            files[2..],
            "{name}: results differ between identical runs"
        );
    }
}

#[test]
fn impossible_budgets_name_what_binds() {
    let prepared = problem(
        "zoo:fashion-cnn",
        "latency",
        Limits {
            memory: Some(20_000),
            ..Limits::default()
        },
        "infeasible",
    );
    let settings = Settings::default();
    let mut ilp = policy("ilp", &settings).unwrap();
    let err = run_policy(ilp.as_mut(), &prepared.problem, &settings, false).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SearchError::Infeasible(_)), "{text}");
    assert!(
        text.contains("memory limit 20,000 B cannot be met: the smallest possible is"),
        "{text}"
    );
    assert!(text.contains("largest weights: fc1 2-bit"), "{text}");
    assert!(
        text.contains("RAM peaks at layer 'conv1' with 'input' 8-bit (pinned)"),
        "{text}"
    );
}

#[test]
fn memory_driven_follows_the_rules() {
    // Flash only: the classifier holds ~96% of the weights, so it is cut first, 8 -> 4, and
    // that suffices for 400 KB.
    let prepared = problem(
        "zoo:fashion-cnn",
        "latency",
        Limits {
            flash: Some(400_000),
            ..Limits::default()
        },
        "md-flash",
    );
    let settings = Settings::default();
    let mut md = policy("memory-driven", &settings).unwrap();
    let result = run_policy(md.as_mut(), &prepared.problem, &settings, false).unwrap();
    let p = &prepared.problem;
    let a = p.space.decode(&result.best().unwrap().genes);
    let fc1 = p.fused.layer_by_name("fc1").unwrap();
    for (l, layer) in p.fused.weighted_layers() {
        let expected = if l == fc1 { 4 } else { 8 };
        assert_eq!(a.weight_bits[l].count(), expected, "{}", layer.name);
    }
    // RAM (and flash, so that the weights stay in L2): conv1's output (16x28x28) is the larger
    // 8-bit tensor of the tightest layer and is halved first; the pinned input never is.
    let limits = Limits {
        ram: Some(10_000),
        flash: Some(400_000),
        ..Limits::default()
    };
    let prepared = problem("zoo:fashion-cnn", "latency", limits, "md-ram");
    let mut md = policy("memory-driven", &settings).unwrap();
    let result = run_policy(md.as_mut(), &prepared.problem, &settings, false).unwrap();
    let p = &prepared.problem;
    let c = result.best().unwrap();
    let a = p.space.decode(&c.genes);
    assert_eq!(a.activation_bits[p.fused.input].count(), 8);
    assert!(a.activation_bits[p.fused.layers[0].output].count() < 8);
    assert!(c.metrics.ram <= 10_000);
}

#[test]
fn the_runner_holds_every_sampling_policy_to_the_evaluation_budget() {
    let prepared = problem(
        "zoo:fashion-cnn",
        "latency",
        Limits {
            memory: Some(512_000),
            ..Limits::default()
        },
        "budget",
    );
    let settings = Settings {
        evaluations: 300,
        population: 40,
        episodes: 300,
        ..Settings::default()
    };
    for name in register_all().keys().filter(|n| qsearch::search::seeded(n)) {
        let mut p = policy(name, &settings).unwrap();
        let result = run_policy(p.as_mut(), &prepared.problem, &settings, false).unwrap();
        assert!(result.evaluations <= 300, "{name}: {}", result.evaluations);
        assert!(result.best().is_some(), "{name} kept nothing");
    }
    // 300 episodes take more than 300 evaluations: the agent is stopped and says so.
    let mut rl = policy("rl", &settings).unwrap();
    let result = run_policy(rl.as_mut(), &prepared.problem, &settings, false).unwrap();
    assert_eq!(
        result.stopped,
        Some(Stop::Budget { evaluations: 300 }),
        "{}",
        result.termination
    );
    assert!(
        result
            .termination
            .starts_with("stopped at the evaluation budget of 300 after 300 evaluations; "),
        "{}",
        result.termination
    );
}

#[test]
fn a_wall_time_limit_stops_a_policy_and_keeps_the_best_so_far() {
    let prepared = problem(
        "zoo:resnet8",
        "latency",
        Limits {
            memory: Some(80_000),
            ..Limits::default()
        },
        "wall-time",
    );
    let settings = Settings {
        evaluations: u64::MAX,
        wall_time: Some(0.3),
        ..Settings::default()
    };
    for name in ["random", "evolution"] {
        let mut p = policy(name, &settings).unwrap();
        let result = run_policy(p.as_mut(), &prepared.problem, &settings, false).unwrap();
        assert_eq!(result.stopped, Some(Stop::WallTime { seconds: 0.3 }));
        assert!(
            result
                .termination
                .starts_with("stopped at the 0.3 s wall-time limit after "),
            "{name}: {}",
            result.termination
        );
        assert!(result.seconds < 30.0, "{name}: {} s", result.seconds);
        let best = result.best().expect("the best found so far");
        let recorded = result.trace.last().expect("an improvement").value;
        assert_eq!(best.metrics.cycles, recorded, "{name}");
        assert_meets_limits(&prepared, best, name);
    }
    // Without a limit nothing stops early.
    let settings = quick();
    let mut ilp = policy("ilp", &settings).unwrap();
    let result = run_policy(ilp.as_mut(), &prepared.problem, &settings, false).unwrap();
    assert_eq!(result.stopped, None);
}
