//! The loop around a policy: evaluations (counted, parallel on request, held to the evaluation
//! budget and the wall-time limit), the random generator, progress, wall time, and the result
//! with its Pareto front.

use super::pareto::pareto_front;
use super::{Candidate, Optimality, Policy, Problem, SearchError, Settings};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

pub struct Runner<'a> {
    pub problem: &'a Problem,
    pub settings: &'a Settings,
    evaluations: AtomicU64,
    /// Whether the evaluation budget binds the policy (it samples).
    budgeted: bool,
    progress: ProgressBar,
    started: Instant,
    /// Best feasible primary objective so far (f64 bits), to record improvements cheaply.
    best: AtomicU64,
    record: Mutex<Record>,
    /// Why the runner refused an evaluation, once it has.
    stop: OnceLock<Stop>,
}

/// What the runner keeps of the evaluations: every improvement and the best candidate, which a
/// stopped policy's result keeps.
#[derive(Default)]
struct Record {
    trace: Vec<Improvement>,
    best: Option<Candidate>,
}

/// A new best feasible primary objective, when it was found.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Improvement {
    pub seconds: f64,
    pub evaluations: u64,
    pub value: f64,
}

/// Why the runner stopped a policy before the policy's own termination.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// The evaluation budget of a sampling policy was spent.
    Budget { evaluations: u64 },
    /// The wall-time limit passed.
    WallTime { seconds: f64 },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Stop::Budget { evaluations } => {
                write!(f, "stopped at the evaluation budget of {evaluations}")
            }
            Stop::WallTime { seconds } => write!(f, "stopped at the {seconds} s wall-time limit"),
        }
    }
}

impl<'a> Runner<'a> {
    fn new(
        problem: &'a Problem,
        settings: &'a Settings,
        budgeted: bool,
        progress: ProgressBar,
    ) -> Runner<'a> {
        Runner {
            problem,
            settings,
            evaluations: AtomicU64::new(0),
            budgeted,
            progress,
            started: Instant::now(),
            best: AtomicU64::new(f64::INFINITY.to_bits()),
            record: Mutex::new(Record::default()),
            stop: OnceLock::new(),
        }
    }

    /// Evaluates one assignment, counting it; refused once the budget or the time is spent.
    pub fn evaluate(&self, genes: &[u8]) -> Result<Candidate, Stop> {
        self.admit(1)?;
        Ok(self.count(genes))
    }

    /// Evaluates a population in parallel; the result keeps the population's order. Refused as
    /// a whole when it would overrun the budget or the time is spent.
    pub(crate) fn evaluate_all(&self, population: &[Vec<u8>]) -> Result<Vec<Candidate>, Stop> {
        self.admit(population.len() as u64)?;
        let out: Vec<Candidate> = population.par_iter().map(|g| self.count(g)).collect();
        self.progress.set_position(self.evaluations());
        Ok(out)
    }

    /// The time a solver may take: its own `limit`, cut to what is left of the wall-time limit;
    /// refused once the time is spent.
    pub(crate) fn solver_time(&self, limit: f64) -> Result<f64, Stop> {
        self.admit(0)?;
        Ok(match self.settings.wall_time {
            Some(wall) => limit.min(wall - self.started.elapsed().as_secs_f64()),
            None => limit,
        })
    }

    /// Lets `n` more evaluations through, or records and returns why not.
    fn admit(&self, n: u64) -> Result<(), Stop> {
        if let Some(&stop) = self.stop.get() {
            return Err(stop);
        }
        let stop = if self.budgeted && n > self.budget_left() {
            Stop::Budget {
                evaluations: self.settings.evaluations,
            }
        } else {
            match self.settings.wall_time {
                Some(seconds) if self.started.elapsed().as_secs_f64() >= seconds => {
                    Stop::WallTime { seconds }
                }
                _ => return Ok(()),
            }
        };
        Err(*self.stop.get_or_init(|| stop))
    }

    /// Evaluates one admitted assignment, counting it and recording a new best feasible primary
    /// value.
    fn count(&self, genes: &[u8]) -> Candidate {
        let count = self.evaluations.fetch_add(1, Ordering::Relaxed) + 1;
        let c = self.problem.evaluate(genes);
        if c.feasible() {
            let value = c.metrics.get(self.problem.objective.primary());
            if value < f64::from_bits(self.best.load(Ordering::Relaxed))
                && let Ok(mut record) = self.record.lock()
                && record.trace.last().is_none_or(|t| value < t.value)
            {
                self.best.store(value.to_bits(), Ordering::Relaxed);
                record.trace.push(Improvement {
                    seconds: self.started.elapsed().as_secs_f64(),
                    evaluations: count,
                    value,
                });
                record.best = Some(c.clone());
            }
        }
        c
    }

    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    /// Evaluations left of the sampling budget.
    pub(crate) fn budget_left(&self) -> u64 {
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
    /// Why the runner stopped the policy early, if it did.
    pub stopped: Option<Stop>,
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
pub(crate) fn progress_bar(show: bool, total: u64, label: &str) -> ProgressBar {
    crate::progress::bar(show, label, total, "evaluations")
}

/// Runs `policy` on `problem`. Fails early with the binding layer or buffer when the memory
/// limits are out of reach of any assignment; a policy that finds nothing feasible returns an
/// empty front. A policy the runner stopped keeps what it returned plus the best candidate
/// found so far, and its termination says why it stopped.
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
    let runner = Runner::new(problem, settings, policy.seeded(), progress.clone());
    let outcome = match policy.run(&runner) {
        Err(SearchError::Stopped(_)) => None,
        other => Some(other?),
    };
    let seconds = runner.started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let evaluations = runner.evaluations();
    let stopped = runner.stop.get().copied();
    let record = runner.record.into_inner().unwrap_or_default();
    let (mut returned, termination, optimality) = match outcome {
        Some(o) => (o.candidates, o.termination, o.optimality),
        None => (Vec::new(), String::new(), None),
    };
    let termination = match stopped {
        Some(stop) => {
            returned.extend(record.best);
            let note = format!("{stop} after {evaluations} evaluations");
            if termination.is_empty() {
                note
            } else {
                format!("{note}; {termination}")
            }
        }
        None => termination,
    };

    let mut seen = HashSet::new();
    let candidates: Vec<Candidate> = returned
        .into_iter()
        .filter(|c| seen.insert(c.genes.clone()))
        .collect();
    let front = front_of(problem, &candidates);
    Ok(SearchResult {
        policy: policy.name().to_string(),
        seed: settings.seed,
        candidates,
        front,
        evaluations,
        seconds,
        termination,
        stopped,
        optimality,
        trace: record.trace,
    })
}

/// Indices of the feasible candidates no other feasible one dominates, best primary first.
fn front_of(problem: &Problem, candidates: &[Candidate]) -> Vec<usize> {
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
    front
}
