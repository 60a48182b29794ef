//! Search policies behind one interface. A [`Policy`] proposes assignments; the [`Runner`] owns
//! the evaluations (counted, in parallel where the policy asks, held to the evaluation budget
//! and the wall-time limit), the progress display and the outcome. One file per policy;
//! [`register_all`] maps their names to constructors, and every lookup by name goes through it.

mod evolution;
mod ilp;
mod memory_driven;
pub(crate) mod pareto;
mod problem;
mod random;
mod rl;
mod runner;
mod uniform;

pub use problem::Candidate;
pub use problem::Problem;
pub use runner::Runner;
pub use runner::SearchResult;
pub use runner::{Stop, run_policy};

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("no assignment meets the limits: {0}")]
    Infeasible(String),
    #[error("unknown policy '{name}'; available: {available}")]
    UnknownPolicy { name: String, available: String },
    #[error("the ILP solver failed: {0}")]
    Solver(String),
    #[error("{0}")]
    Config(String),
    #[error("reinforcement-learning agent: {0}")]
    Agent(String),
    /// The runner refused an evaluation; [`run_policy`] turns this into a result that keeps the
    /// best found so far.
    #[error("{0}")]
    Stopped(Stop),
}

impl From<Stop> for SearchError {
    fn from(stop: Stop) -> SearchError {
        SearchError::Stopped(stop)
    }
}

/// How a policy ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Everything worth keeping: the final population, the samples, the solutions.
    pub candidates: Vec<Candidate>,
    pub termination: String,
    /// For exact methods: whether optimality is proven, and the relative gap to the bound.
    pub optimality: Option<Optimality>,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Optimality {
    pub proven: bool,
    pub gap: f64,
}

/// A search policy.
pub trait Policy {
    fn name(&self) -> &'static str;
    /// Whether the policy samples: its result depends on the seed (callers run it once per
    /// seed) and the runner holds it to the evaluation budget. Rule-based and exact policies
    /// run once and evaluate what they need.
    fn seeded(&self) -> bool;
    /// Searches until the policy's own termination or until the runner refuses an evaluation
    /// (budget or wall time); a policy that holds an archive returns it when refused.
    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError>;
}

/// Knobs shared by the policies; each uses those that apply to it. The one search-settings
/// type: the command-line flags and a sweep file's `[settings]` table map onto it, and absent
/// fields take the defaults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub seed: u64,
    /// Evaluation budget of the sampling policies (evolution, random, rl).
    pub evaluations: u64,
    /// Population of the evolutionary search.
    pub population: usize,
    /// Episodes of the reinforcement-learning agent.
    pub episodes: usize,
    /// Points of the Pareto sweep of exact methods (multi-objective).
    pub pareto_points: usize,
    /// Wall-time limit of one ILP solve, seconds.
    pub time_limit: f64,
    /// Wall-time limit of the whole search, seconds: the runner stops the policy at its next
    /// evaluation after it. None: no limit, so that a seed fixes the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<f64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            seed: 0,
            evaluations: 200_000,
            population: 100,
            episodes: 300,
            pareto_points: 12,
            time_limit: 60.0,
            wall_time: None,
        }
    }
}

impl Settings {
    /// Refuses settings no search can run with.
    pub fn check(&self) -> Result<(), SearchError> {
        match self.wall_time {
            Some(seconds) if seconds.is_nan() || seconds <= 0.0 => Err(SearchError::Config(
                format!("the wall-time limit must be a positive number of seconds, not {seconds}"),
            )),
            _ => Ok(()),
        }
    }
}

type Constructor = fn(&Settings) -> Box<dyn Policy>;

/// Every policy by name.
pub fn register_all() -> BTreeMap<&'static str, Constructor> {
    let entries: [(&'static str, Constructor); 6] = [
        ("memory-driven", |_| Box::new(memory_driven::MemoryDriven)),
        ("ilp", |s| Box::new(ilp::Ilp::new(s))),
        ("evolution", |s| Box::new(evolution::Nsga2::new(s))),
        ("rl", |s| Box::new(rl::Ddpg::new(s))),
        ("random", |_| Box::new(random::RandomSampling)),
        ("uniform", |_| Box::new(uniform::Uniform)),
    ];
    entries.into_iter().collect()
}

/// The policy that proves optimality: the main flow's search and the reference of a
/// comparison's gap column.
pub(crate) const EXACT_POLICY: &str = "ilp";

/// Whether the policy called `name` depends on the seed (unknown names do not).
pub fn seeded(name: &str) -> bool {
    register_all()
        .get(name)
        .is_some_and(|constructor| constructor(&Settings::default()).seeded())
}

/// The policy called `name`.
pub fn policy(name: &str, settings: &Settings) -> Result<Box<dyn Policy>, SearchError> {
    let registry = register_all();
    let constructor = registry
        .get(name)
        .ok_or_else(|| SearchError::UnknownPolicy {
            name: name.to_string(),
            available: registry.keys().copied().collect::<Vec<_>>().join(", "),
        })?;
    Ok(constructor(settings))
}
