//! Baseline: feasible random sampling. Assignments are drawn uniformly from the space, in
//! parallel batches, until the evaluation budget is spent; the feasible non-dominated ones are
//! kept.

use super::pareto::Archive;
use super::{Outcome, Policy, Runner, SearchError};
use rand::RngExt;

pub(crate) struct RandomSampling;

const BATCH: usize = 4096;

impl Policy for RandomSampling {
    fn name(&self) -> &'static str {
        "random"
    }

    fn seeded(&self) -> bool {
        true
    }

    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError> {
        let vars = &runner.problem.space.vars;
        let mut rng = runner.rng();
        let mut archive = Archive::default();
        let mut feasible = 0u64;
        let mut drawn = 0u64;
        while runner.budget_left() > 0 {
            let n = (runner.budget_left() as usize).min(BATCH);
            let batch: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    vars.iter()
                        .map(|v| rng.random_range(0..v.choices.len()) as u8)
                        .collect()
                })
                .collect();
            let Ok(evaluated) = runner.evaluate_all(&batch) else {
                break;
            };
            drawn += n as u64;
            for c in evaluated.into_iter().filter(|c| c.feasible()) {
                feasible += 1;
                archive.insert(runner.problem.objectives(&c), c);
            }
            runner.status(format!("{feasible} feasible"));
        }
        Ok(Outcome {
            termination: format!("drew {drawn} assignments, {feasible} feasible"),
            candidates: archive.into_payloads(),
            optimality: None,
        })
    }
}
