//! `qsearch search` and `qsearch compare`: run policies on a prepared problem and write the run
//! folder (candidates, summary, plots, manifest).

use super::{FlowError, Prepared, display_unit, display_value};
use crate::objective::{Metric, Objective};
use crate::report::{compare_table, plot, search_report};
use crate::results::{ResultsError, slug, write_frame, write_json, write_text};
use crate::search::pareto::normalised_hypervolumes;
use crate::search::{EXACT_POLICY, Problem, SearchResult, Settings, policy, run_policy, seeded};
use polars::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What a search printed and where it wrote.
pub struct SearchReport {
    pub result: SearchResult,
    pub dir: PathBuf,
    pub text: String,
}

/// The x and y metrics of the run's plot: the two first objectives, or memory against the
/// single objective.
fn plot_axes(objective: &Objective) -> (Metric, Metric) {
    match objective.minimize.as_slice() {
        [first, second, ..] => (*second, *first),
        [only] if *only == Metric::Memory => (Metric::Memory, Metric::Latency),
        [only] => (Metric::Memory, *only),
        [] => (Metric::Memory, Metric::Latency),
    }
}

/// One row per candidate of `results`: policy, seed, Pareto and feasibility flags, metrics and
/// the precisions.
pub fn candidates_frame(
    problem: &Problem,
    results: &[&SearchResult],
) -> Result<DataFrame, PolarsError> {
    let mut policy = Vec::new();
    let mut seed = Vec::new();
    let mut index = Vec::new();
    let mut pareto = Vec::new();
    let mut feasible = Vec::new();
    let (mut cycles, mut ms, mut flash, mut ram, mut memory, mut energy, mut loss, mut violation) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut weights = Vec::new();
    let mut activations = Vec::new();
    let join = |bits: Vec<String>| bits.join("-");
    for r in results {
        for (i, c) in r.candidates.iter().enumerate() {
            let a = problem.space.decode(&c.genes);
            policy.push(r.policy.clone());
            seed.push(r.seed);
            index.push(i as u32);
            pareto.push(r.front.contains(&i));
            feasible.push(c.feasible());
            cycles.push(c.metrics.cycles);
            ms.push(display_value(problem, Metric::Latency, c.metrics.cycles));
            flash.push(c.metrics.flash);
            ram.push(c.metrics.ram);
            memory.push(c.metrics.flash + c.metrics.ram);
            energy.push(c.metrics.energy_j * 1e3);
            loss.push(c.metrics.loss);
            violation.push(c.violation);
            weights.push(join(
                problem
                    .fused
                    .weighted_layers()
                    .map(|(l, _)| a.weight_bits[l].to_string())
                    .collect(),
            ));
            activations.push(join(
                a.activation_bits.iter().map(|b| b.to_string()).collect(),
            ));
        }
    }
    DataFrame::new_infer_height(vec![
        Column::new("policy".into(), policy),
        Column::new("seed".into(), seed),
        Column::new("candidate".into(), index),
        Column::new("pareto".into(), pareto),
        Column::new("feasible".into(), feasible),
        Column::new("cycles".into(), cycles),
        Column::new("latency_ms".into(), ms),
        Column::new("flash_bytes".into(), flash),
        Column::new("ram_bytes".into(), ram),
        Column::new("memory_bytes".into(), memory),
        Column::new("energy_mj".into(), energy),
        Column::new("predicted_loss".into(), loss),
        Column::new("violation".into(), violation),
        Column::new("weight_bits".into(), weights),
        Column::new("activation_bits".into(), activations),
    ])
}

fn table_error(dir: &Path, source: PolarsError) -> FlowError {
    FlowError::Results(ResultsError::Table {
        path: dir.display().to_string(),
        source,
    })
}

fn plot_error(message: String) -> FlowError {
    FlowError::Results(ResultsError::Io {
        path: message.clone(),
        source: std::io::Error::other(message),
    })
}

/// The scatter of `results` (one series each) in the run's plot axes.
fn plot_results(
    prepared: &Prepared,
    results: &[&SearchResult],
    title: String,
    stem: &Path,
) -> Result<(), FlowError> {
    let problem = &prepared.problem;
    let (x, y) = plot_axes(&problem.objective);
    let point = |c: &crate::search::Candidate| {
        (
            display_value(problem, x, c.metrics.get(x)),
            display_value(problem, y, c.metrics.get(y)),
        )
    };
    let series = results
        .iter()
        .map(|r| plot::Series {
            label: format!("{} (seed {})", r.policy, r.seed),
            points: r
                .candidates
                .iter()
                .filter(|c| c.feasible())
                .map(point)
                .collect(),
            front: r.front.iter().map(|&i| point(&r.candidates[i])).collect(),
        })
        .collect();
    let x_marks = problem
        .objective
        .limits
        .iter()
        .filter(|l| l.metric == x)
        .map(|l| {
            (
                display_value(problem, x, l.max),
                format!("{} limit", l.metric),
            )
        })
        .collect();
    let spec = plot::Plot {
        title,
        x_label: display_unit(problem, x),
        y_label: display_unit(problem, y),
        series,
        x_marks,
    };
    plot::write(&spec, stem).map_err(plot_error)
}

fn manifest(
    prepared: &Prepared,
    command: &str,
    settings: &Settings,
    extra: serde_json::Value,
) -> serde_json::Value {
    let p = &prepared.problem;
    json!({
        "qsearch": env!("CARGO_PKG_VERSION"),
        "command": command,
        "model": prepared.inputs.model,
        "network": prepared.graph.name,
        "model_hash": prepared.model_hash,
        "platform": { "name": p.platform.name, "description": p.platform.description },
        "search_space": { "name": p.space.name, "variables": p.space.vars.len(), "assignments": p.space.size() },
        "objective": p.objective,
        "settings": settings,
        "sensitivity": { "unit": p.sensitivity.unit, "source": p.sensitivity.source, "file": "sensitivity.csv" },
        "run": extra,
    })
}

/// Runs `policy_name` and writes `results/<run>/`.
pub fn search(
    prepared: &Prepared,
    policy_name: &str,
    settings: &Settings,
    run: Option<&str>,
    progress: bool,
) -> Result<SearchReport, FlowError> {
    let problem = &prepared.problem;
    let mut policy = policy(policy_name, settings)?;
    let result = run_policy(policy.as_mut(), problem, settings, progress)?;
    let name = run.map(str::to_string).unwrap_or_else(|| {
        slug(&format!(
            "{}-{}-{}-{}-s{}",
            prepared.graph.name,
            problem.platform.name,
            problem.objective.name,
            policy_name,
            settings.seed
        ))
    });
    let dir = prepared.inputs.results.join(&name);
    let mut frame = candidates_frame(problem, &[&result]).map_err(|e| table_error(&dir, e))?;
    write_frame(&mut frame, &dir, "candidates")?;
    problem
        .sensitivity
        .write_csv(&problem.fused, &dir.join("sensitivity.csv"))?;
    let best = result.best().map(|c| assignment_json(problem, c));
    write_json(
        &dir.join("assignment.json"),
        &best.clone().unwrap_or(serde_json::Value::Null),
    )?;
    let title = format!(
        "{} on {}: {} ({})",
        prepared.graph.name, problem.platform.name, policy_name, problem.objective.name
    );
    plot_results(prepared, &[&result], title, &dir.join("pareto"))?;
    let extra = json!({
        "policy": policy_name,
        "evaluations": result.evaluations,
        "seconds": result.seconds,
        "termination": result.termination,
        "optimality": result.optimality,
        "front": result.front.len(),
        "best": best,
    });
    write_json(
        &dir.join("manifest.json"),
        &manifest(prepared, "search", settings, extra),
    )?;
    let text = search_report(problem, &prepared.graph, &result, &dir);
    write_text(&dir.join("report.txt"), &text)?;
    Ok(SearchReport { result, dir, text })
}

/// The chosen precision of every layer and buffer, with the candidate's figures.
pub fn assignment_json(problem: &Problem, c: &crate::search::Candidate) -> serde_json::Value {
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

/// One policy's runs in a comparison, summarised.
pub struct PolicySummary {
    pub policy: String,
    pub runs: Vec<SearchResult>,
    /// Per run: best primary objective (None when nothing feasible was found).
    pub best: Vec<Option<f64>>,
    pub hypervolume: Vec<f64>,
}

pub struct CompareReport {
    pub summaries: Vec<PolicySummary>,
    /// The ILP optimum of the primary objective, the reference of the gap column.
    pub optimum: Option<f64>,
    pub dir: PathBuf,
    pub text: String,
}

/// Runs each policy (with `seeds` seeds where the seed matters) and writes the comparison.
pub fn compare(
    prepared: &Prepared,
    policies: &[String],
    seeds: u64,
    settings: &Settings,
    run: Option<&str>,
    progress: bool,
) -> Result<CompareReport, FlowError> {
    let problem = &prepared.problem;
    if seeds == 0 {
        return Err(FlowError::Input("--seeds must be at least 1".into()));
    }
    let mut summaries = Vec::new();
    for name in policies {
        let mut runs = Vec::new();
        // Policies whose result does not depend on the seed run once.
        let count = if seeded(name) { seeds } else { 1 };
        for s in 0..count {
            let seeded = Settings {
                seed: settings.seed + s,
                ..settings.clone()
            };
            let mut p = policy(name, &seeded)?;
            runs.push(run_policy(p.as_mut(), problem, &seeded, progress)?);
        }
        summaries.push(PolicySummary {
            policy: name.clone(),
            runs,
            best: Vec::new(),
            hypervolume: Vec::new(),
        });
    }
    // The exact optimum, for the gap column (solved here if ilp was not among the policies).
    let primary = problem.objective.primary();
    let optimum = match summaries.iter().find(|s| s.policy == EXACT_POLICY) {
        Some(s) => s.runs[0].best().map(|c| c.metrics.get(primary)),
        None => {
            let mut ilp = policy(EXACT_POLICY, settings)?;
            run_policy(ilp.as_mut(), problem, settings, false)?
                .best()
                .map(|c| c.metrics.get(primary))
        }
    };
    // Hypervolume of every run's front, normalised over all fronts.
    let fronts: Vec<Vec<Vec<f64>>> = summaries
        .iter()
        .flat_map(|s| s.runs.iter())
        .map(|r| {
            r.front
                .iter()
                .map(|&i| problem.objectives(&r.candidates[i]))
                .collect()
        })
        .collect();
    let mut volumes = normalised_hypervolumes(&fronts).into_iter();
    for s in &mut summaries {
        for r in &s.runs {
            s.best.push(r.best().map(|c| c.metrics.get(primary)));
            s.hypervolume.push(volumes.next().unwrap_or(0.0));
        }
    }
    let name = run.map(str::to_string).unwrap_or_else(|| {
        slug(&format!(
            "compare-{}-{}-{}",
            prepared.graph.name, problem.platform.name, problem.objective.name
        ))
    });
    let dir = prepared.inputs.results.join(&name);
    let all: Vec<&SearchResult> = summaries.iter().flat_map(|s| s.runs.iter()).collect();
    let mut frame = candidates_frame(problem, &all).map_err(|e| table_error(&dir, e))?;
    write_frame(&mut frame, &dir, "candidates")?;
    let mut summary = summary_frame(&summaries, optimum).map_err(|e| table_error(&dir, e))?;
    write_frame(&mut summary, &dir, "summary")?;
    problem
        .sensitivity
        .write_csv(&problem.fused, &dir.join("sensitivity.csv"))?;
    let first_seed: Vec<&SearchResult> = summaries.iter().map(|s| &s.runs[0]).collect();
    let title = format!(
        "{} on {}: policies compared ({})",
        prepared.graph.name, problem.platform.name, problem.objective.name
    );
    plot_results(prepared, &first_seed, title, &dir.join("overlay"))?;
    let text = compare_table(problem, &summaries, optimum, seeds);
    write_text(&dir.join("report.txt"), &text)?;
    let extra = json!({ "policies": policies, "seeds": seeds, "optimum": optimum });
    write_json(
        &dir.join("manifest.json"),
        &manifest(prepared, "compare", settings, extra),
    )?;
    Ok(CompareReport {
        summaries,
        optimum,
        dir,
        text,
    })
}

fn summary_frame(
    summaries: &[PolicySummary],
    optimum: Option<f64>,
) -> Result<DataFrame, PolarsError> {
    let mut policy = Vec::new();
    let mut seed = Vec::new();
    let mut best = Vec::new();
    let mut gap = Vec::new();
    let mut hv = Vec::new();
    let mut evaluations = Vec::new();
    let mut seconds = Vec::new();
    for s in summaries {
        for (k, r) in s.runs.iter().enumerate() {
            policy.push(s.policy.clone());
            seed.push(r.seed);
            best.push(s.best[k]);
            gap.push(match (s.best[k], optimum) {
                (Some(b), Some(o)) if o != 0.0 => Some(100.0 * (b - o) / o.abs()),
                _ => None,
            });
            hv.push(s.hypervolume[k]);
            evaluations.push(r.evaluations);
            seconds.push(r.seconds);
        }
    }
    DataFrame::new_infer_height(vec![
        Column::new("policy".into(), policy),
        Column::new("seed".into(), seed),
        Column::new("best_objective".into(), best),
        Column::new("gap_to_ilp_percent".into(), gap),
        Column::new("hypervolume".into(), hv),
        Column::new("evaluations".into(), evaluations),
        Column::new("seconds".into(), seconds),
    ])
}

/// The problem as plain tables (JSON), so that another optimiser can evaluate assignments exactly
/// as qsearch does: variables and choices; per layer the variables selecting its cost-table
/// indices and the cycles (L2 and L3 placement) and L3 staging bytes per index (`null` where no
/// L1 tiling fits), and the flash per weight precision; per buffer its variable and bytes; the
/// live buffers of every step; the predicted loss per variable and choice; L2 size and limits.
pub fn export_tables(problem: &Problem) -> serde_json::Value {
    use crate::graph::LayerKind;
    use crate::precision::Bits;
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
