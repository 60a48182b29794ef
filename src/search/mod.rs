//! Search policies behind one interface. A [`Policy`] proposes assignments; the [`Runner`] owns
//! the evaluations (counted, in parallel where the policy asks), the time, the progress display
//! and the outcome. One file per policy; [`register_all`] maps their names to constructors.

mod evolution;
mod ilp;
mod memory_driven;
pub mod pareto;
mod problem;
mod random;
mod rl;
mod runner;
mod uniform;

pub use ilp::minimize_metric;
pub use problem::{Candidate, Metrics, Problem};
pub use runner::{Improvement, Runner, SearchResult, progress_bar, run_policy};

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
    /// Searches until the policy's own termination or the runner's evaluation budget.
    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError>;
}

/// Knobs shared by the policies; each uses those that apply to it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
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
