//! The accuracy proxy's check (`cargo bench --bench proxy`): does the predicted accuracy loss
//! rank assignments like their accuracy measured after quantization-aware fine-tuning? Each
//! sensitivity method (the noise proxy, the measured accuracy-drop table, the Hessian table)
//! predicts the loss of the same fine-tuned assignments, and its Spearman correlation with the
//! measured accuracy drop says how well it ranks them: 1 is the perfect order.

use super::main_flow::fastest_within_drops;
use super::{
    FlowError, Inputs, MAIN_CALIBRATION_IMAGES, MainSettings, Measure, cached_model,
    finetune_assignment, measured_sensitivity, model_hash, prepare_graph,
};
use crate::graph::{FusedGraph, Graph};
use crate::report::bits_summary;
use crate::results::slug;
use crate::search::{Candidate, EXACT_POLICY, Problem, policy, run_policy};
use crate::sensitivity::Sensitivity;
use crate::stats::{ranks, spearman};
use crate::train::TrainError;
use crate::train::data::{self, Dataset};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// The proxy check's knobs: the main job's settings (training and fine-tuning schedules, the
/// candidates it keeps, the search) and how many assignments are drawn.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub main: MainSettings,
    /// Random assignments drawn (seeded by the search seed); the feasible ones are sorted by
    /// predicted loss.
    pub sample: usize,
    /// Assignments taken at evenly spaced quantiles of that order.
    pub spread: usize,
}

/// Which set an assignment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxySet {
    /// A quantile of the random sample.
    Spread,
    /// The main job's exact optimum or a point of its ILP Pareto sweep against predicted loss.
    TopCandidate,
}

/// One fine-tuned assignment.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyPoint {
    pub set: ProxySet,
    pub bits: String,
    pub cycles: f64,
    /// Flash plus peak RAM, bytes.
    pub memory: u64,
    /// Predicted loss under each method, in the order of [`ProxyStudy::methods`].
    pub predicted: Vec<f64>,
    /// Test accuracy after fine-tuning (%).
    pub accuracy: f64,
}

/// One method's ranking quality.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyMethod {
    pub name: &'static str,
    /// The table's unit and where it came from.
    pub unit: String,
    pub source: String,
    /// Spearman correlation of predicted loss with the measured accuracy drop over every point.
    pub spearman_all: Option<f64>,
    /// The same within the main job's top candidates.
    pub spearman_top: Option<f64>,
}

/// What the check measured.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyStudy {
    pub network: String,
    pub fp_accuracy: f64,
    /// Random assignments drawn and how many of them met the limits.
    pub sampled: usize,
    pub feasible: usize,
    pub methods: Vec<ProxyMethod>,
    pub points: Vec<ProxyPoint>,
}

impl ProxyStudy {
    /// Points of `set`.
    pub fn count(&self, set: ProxySet) -> usize {
        self.points.iter().filter(|p| p.set == set).count()
    }

    /// The method that ranks every point best (ties: the first listed).
    pub fn best(&self) -> Option<&ProxyMethod> {
        self.methods
            .iter()
            .filter(|m| m.spearman_all.is_some())
            .reduce(|best, m| {
                if m.spearman_all > best.spearman_all {
                    m
                } else {
                    best
                }
            })
    }
}

/// The methods compared, in the order of the report.
const METHODS: [&str; 3] = ["noise proxy", "accuracy drop", "hessian"];

/// Trains (cached) the main job's network, builds every method's table, fine-tunes the spread
/// and the top candidates (each cached by assignment under `inputs.results/finetune/`) and
/// correlates.
pub fn proxy_study(inputs: &Inputs, settings: &ProxySettings) -> Result<ProxyStudy, FlowError> {
    let main = &settings.main;
    let dataset = data::load(&main.data).map_err(TrainError::from)?;
    let trained = cached_model(
        &inputs.model,
        &main.data,
        &main.train,
        &inputs.results,
        main.progress,
    )?;
    let graph = &trained.graph;
    let fp_accuracy = trained
        .state
        .history
        .last()
        .map_or(0.0, |h| h.test_accuracy);

    // One problem per method: the same costs and limits, each method's predicted loss.
    let mut problems = vec![prepare_graph(graph.clone(), inputs, None)?.problem];
    for method in [Measure::Accuracy, Measure::Hessian] {
        let table = cached_table(graph, &dataset, method, &inputs.results, main.progress)?;
        problems.push(prepare_graph(graph.clone(), inputs, Some(table))?.problem);
    }
    // The main job ranks by the measured accuracy-drop table.
    let top = top_candidates(&problems[1], main)?;
    let (spread, sampled, feasible) = spread(&problems, settings, main.search.seed);

    let mut points: Vec<ProxyPoint> = Vec::new();
    let jobs: Vec<(ProxySet, Candidate)> = top
        .into_iter()
        .map(|c| (ProxySet::TopCandidate, c))
        .chain(spread.into_iter().map(|c| (ProxySet::Spread, c)))
        .collect();
    let mut done: Vec<Vec<u8>> = Vec::new();
    for (k, (set, c)) in jobs.iter().enumerate() {
        if done.contains(&c.genes) {
            continue;
        }
        done.push(c.genes.clone());
        let problem = &problems[1];
        let accuracy = finetune_assignment(
            graph,
            &problem.space.decode(&c.genes),
            &dataset,
            &main.finetune,
            &finetune_dir(&inputs.results, &c.genes),
            &format!("proxy {}/{}", k + 1, jobs.len()),
            main.progress,
        )?;
        points.push(ProxyPoint {
            set: *set,
            bits: bits_summary(problem, &c.genes),
            cycles: c.metrics.cycles,
            memory: c.metrics.flash + c.metrics.ram,
            predicted: problems
                .iter()
                .map(|p| p.evaluate(&c.genes).metrics.loss)
                .collect(),
            accuracy,
        });
    }

    let methods = METHODS
        .iter()
        .zip(&problems)
        .enumerate()
        .map(|(m, (&name, problem))| {
            let correlate = |set: Option<ProxySet>| {
                let (loss, drop): (Vec<f64>, Vec<f64>) = points
                    .iter()
                    .filter(|p| set.is_none_or(|s| p.set == s))
                    .map(|p| (p.predicted[m], fp_accuracy - p.accuracy))
                    .unzip();
                spearman(&loss, &drop)
            };
            ProxyMethod {
                name,
                unit: problem.sensitivity.unit.clone(),
                source: problem.sensitivity.source.clone(),
                spearman_all: correlate(None),
                spearman_top: correlate(Some(ProxySet::TopCandidate)),
            }
        })
        .collect();
    Ok(ProxyStudy {
        network: graph.name.clone(),
        fp_accuracy,
        sampled,
        feasible,
        methods,
        points,
    })
}

/// A measured table of `graph` on the main job's held-out calibration images, cached by the
/// network's fingerprint (the accuracy-drop table under the main job's file name).
fn cached_table(
    graph: &Graph,
    dataset: &Dataset,
    method: Measure,
    results: &Path,
    progress: bool,
) -> Result<Sensitivity, FlowError> {
    let prefix = match method {
        Measure::Accuracy => "measured",
        Measure::Loss => "measured-loss",
        Measure::Hessian => "hessian",
    };
    let fused = FusedGraph::from_graph(graph);
    let cache = results.join("cache").join(format!(
        "{prefix}-{}-{}.csv",
        slug(&graph.name),
        model_hash(graph)
    ));
    if let Ok(table) = Sensitivity::read_csv(&cache, &fused) {
        return Ok(table);
    }
    let (_, calibration) = dataset.train.split_off(MAIN_CALIBRATION_IMAGES);
    let table = measured_sensitivity(graph, &calibration, method, progress);
    table.write_csv(&fused, &cache)?;
    Ok(table)
}

/// The main job's shortlist before fine-tuning: the exact optimum of the primary objective,
/// then the fastest assignment within each predicted accuracy drop the main job picks its
/// `top_k` from, distinct.
fn top_candidates(problem: &Problem, main: &MainSettings) -> Result<Vec<Candidate>, FlowError> {
    let search = &main.search;
    let mut ilp = policy(EXACT_POLICY, search)?;
    let exact = run_policy(ilp.as_mut(), problem, search, false)?;
    let mut top: Vec<Candidate> = exact.best().into_iter().cloned().collect();
    for c in fastest_within_drops(problem, main, usize::MAX)? {
        if c.feasible() && !top.iter().any(|t| t.genes == c.genes) {
            top.push(c);
        }
    }
    Ok(top)
}

/// `settings.spread` feasible assignments at evenly spaced quantiles of a seeded random sample,
/// ordered by their mean rank under every method so that the spread covers each method's range
/// alike; with the number drawn and the number feasible.
fn spread(
    problems: &[Problem],
    settings: &ProxySettings,
    seed: u64,
) -> (Vec<Candidate>, usize, usize) {
    let problem = &problems[0];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let draws: Vec<Vec<u8>> = (0..settings.sample)
        .map(|_| {
            problem
                .space
                .vars
                .iter()
                .map(|v| rng.random_range(0..v.choices.len()) as u8)
                .collect()
        })
        .collect();
    let mut feasible: Vec<Candidate> = draws
        .par_iter()
        .map(|g| problem.evaluate(g))
        .filter(Candidate::feasible)
        .collect();
    feasible.sort_by(|a, b| a.genes.cmp(&b.genes));
    feasible.dedup_by(|a, b| a.genes == b.genes);
    let count = feasible.len();
    let method_ranks: Vec<Vec<f64>> = problems
        .iter()
        .map(|p| {
            let loss: Vec<f64> = feasible
                .iter()
                .map(|c| p.evaluate(&c.genes).metrics.loss)
                .collect();
            ranks(&loss)
        })
        .collect();
    let mut order: Vec<(f64, usize)> = (0..count)
        .map(|i| (method_ranks.iter().map(|r| r[i]).sum::<f64>(), i))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let n = settings.spread.min(count);
    let picked = (0..n)
        .map(|k| {
            let q = if n > 1 { k * (count - 1) / (n - 1) } else { 0 };
            feasible[order[q].1].clone()
        })
        .collect();
    (picked, settings.sample, count)
}

/// Where an assignment's fine-tuning writes, by its genes (a rerun reuses it).
fn finetune_dir(results: &Path, genes: &[u8]) -> std::path::PathBuf {
    results.join("finetune").join(format!(
        "genes-{}",
        genes.iter().map(u8::to_string).collect::<String>()
    ))
}
