//! The loop around a policy: evaluations (counted, parallel on request), the random generator,
//! progress, wall time, and the result with its Pareto front.

use super::pareto::pareto_front;
use super::{Candidate, Optimality, Policy, Problem, SearchError, Settings};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct Runner<'a> {
    pub problem: &'a Problem,
    pub settings: &'a Settings,
    evaluations: AtomicU64,
    progress: ProgressBar,
    started: Instant,
    /// Best feasible primary objective so far (f64 bits), to record improvements cheaply.
    best: AtomicU64,
    trace: Mutex<Vec<Improvement>>,
}

/// A new best feasible primary objective, when it was found.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Improvement {
    pub seconds: f64,
    pub evaluations: u64,
    pub value: f64,
}

impl<'a> Runner<'a> {
    pub fn new(problem: &'a Problem, settings: &'a Settings, progress: ProgressBar) -> Runner<'a> {
        Runner {
            problem,
            settings,
            evaluations: AtomicU64::new(0),
            progress,
            started: Instant::now(),
            best: AtomicU64::new(f64::INFINITY.to_bits()),
            trace: Mutex::new(Vec::new()),
        }
    }

    /// Evaluates one assignment, counting it and recording a new best feasible primary value.
    pub fn evaluate(&self, genes: &[u8]) -> Candidate {
        let count = self.evaluations.fetch_add(1, Ordering::Relaxed) + 1;
        let c = self.problem.evaluate(genes);
        if c.feasible() {
            let value = c.metrics.get(self.problem.objective.primary());
            if value < f64::from_bits(self.best.load(Ordering::Relaxed))
                && let Ok(mut trace) = self.trace.lock()
                && trace.last().is_none_or(|t| value < t.value)
            {
                self.best.store(value.to_bits(), Ordering::Relaxed);
                trace.push(Improvement {
                    seconds: self.started.elapsed().as_secs_f64(),
                    evaluations: count,
                    value,
                });
            }
        }
        c
    }

    /// Evaluates a population in parallel; the result keeps the population's order.
    pub fn evaluate_all(&self, population: &[Vec<u8>]) -> Vec<Candidate> {
        let out: Vec<Candidate> = population.par_iter().map(|g| self.evaluate(g)).collect();
        self.progress.set_position(self.evaluations());
        out
    }

    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    /// Evaluations left of the sampling budget.
    pub fn budget_left(&self) -> u64 {
        self.settings.evaluations.saturating_sub(self.evaluations())
    }

    /// The policy's random generator, from the run's seed.
    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.settings.seed)
    }

    /// Shows what the policy is doing.
    pub fn status(&self, message: String) {
        self.progress.set_position(self.evaluations());
        self.progress.set_message(message);
    }
}

/// A policy's result on a problem.
#[derive(Clone, Debug)]
pub struct SearchResult {
    pub policy: String,
    pub seed: u64,
    /// Distinct candidates the policy returned, in its order.
    pub candidates: Vec<Candidate>,
    /// Indices of the feasible candidates no other feasible one dominates, best primary first.
    pub front: Vec<usize>,
    pub evaluations: u64,
    pub seconds: f64,
    pub termination: String,
    pub optimality: Option<Optimality>,
    /// Every improvement of the best feasible primary objective during the run.
    pub trace: Vec<Improvement>,
}

impl SearchResult {
    /// Seconds until the best feasible primary objective first came within `value`.
    pub fn time_to(&self, value: f64) -> Option<f64> {
        self.trace
            .iter()
            .find(|t| t.value <= value)
            .map(|t| t.seconds)
    }

    /// The feasible candidate with the best primary objective (the front's first).
    pub fn best(&self) -> Option<&Candidate> {
        self.front.first().map(|&i| &self.candidates[i])
    }
}

/// A progress bar on standard error over the evaluation budget (see [`crate::progress`]).
pub fn progress_bar(show: bool, total: u64, label: &str) -> ProgressBar {
    crate::progress::bar(show, label, total, "evaluations")
}

/// Runs `policy` on `problem`. Fails early with the binding layer or buffer when the memory
/// limits are out of reach of any assignment; a policy that finds nothing feasible returns an
/// empty front.
pub fn run_policy(
    policy: &mut dyn Policy,
    problem: &Problem,
    settings: &Settings,
    show_progress: bool,
) -> Result<SearchResult, SearchError> {
    if let Some(reason) = problem.memory_infeasibility() {
        return Err(SearchError::Infeasible(reason));
    }
    let progress = progress_bar(show_progress, settings.evaluations, policy.name());
    let runner = Runner::new(problem, settings, progress.clone());
    let outcome = policy.run(&runner)?;
    let seconds = runner.started.elapsed().as_secs_f64();
    progress.finish_and_clear();

    let mut seen = HashSet::new();
    let candidates: Vec<Candidate> = outcome
        .candidates
        .into_iter()
        .filter(|c| seen.insert(c.genes.clone()))
        .collect();
    let feasible: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].feasible())
        .collect();
    let points: Vec<Vec<f64>> = feasible
        .iter()
        .map(|&i| problem.objectives(&candidates[i]))
        .collect();
    let mut front: Vec<usize> = pareto_front(&points)
        .into_iter()
        .map(|k| feasible[k])
        .collect();
    front.sort_by(|&a, &b| {
        let (pa, pb) = (
            problem.objectives(&candidates[a]),
            problem.objectives(&candidates[b]),
        );
        pa.partial_cmp(&pb).unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(SearchResult {
        policy: policy.name().to_string(),
        seed: settings.seed,
        candidates,
        front,
        evaluations: runner.evaluations(),
        seconds,
        termination: outcome.termination,
        optimality: outcome.optimality,
        trace: runner.trace.into_inner().unwrap_or_default(),
    })
}
