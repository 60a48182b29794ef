//! `qsearch search` and `qsearch compare`: run policies on a prepared problem and write the run
//! folder (candidates, summary, plots, manifest).

use super::{FlowError, Prepared};
use crate::report::{
    PolicySummary, assignment_json, candidates_frame, compare_table, comparison_frame, plot,
    search_plot, search_report,
};
use crate::results::{ResultsError, slug, write_frame, write_json, write_text};
use crate::search::pareto::normalised_hypervolumes;
use crate::search::{EXACT_POLICY, SearchResult, Settings, policy, run_policy, seeded};
use polars::prelude::PolarsError;
use serde_json::json;
use std::path::{Path, PathBuf};

/// What a search printed and where it wrote.
pub struct SearchReport {
    pub result: SearchResult,
    pub dir: PathBuf,
    pub text: String,
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
    let figure = search_plot(problem, &[&result], title);
    plot::write(&figure, &dir.join("pareto")).map_err(plot_error)?;
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

/// What a comparison printed and where it wrote.
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
    let mut summary = comparison_frame(&summaries, optimum).map_err(|e| table_error(&dir, e))?;
    write_frame(&mut summary, &dir, "summary")?;
    problem
        .sensitivity
        .write_csv(&problem.fused, &dir.join("sensitivity.csv"))?;
    let first_seed: Vec<&SearchResult> = summaries.iter().map(|s| &s.runs[0]).collect();
    let title = format!(
        "{} on {}: policies compared ({})",
        prepared.graph.name, problem.platform.name, problem.objective.name
    );
    let figure = search_plot(problem, &first_seed, title);
    plot::write(&figure, &dir.join("overlay")).map_err(plot_error)?;
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
