//! Baseline: every variable at 8, at 4 and at 2 bits (or the nearest narrower allowed precision,
//! for pinned or aligned tensors).

use super::{Outcome, Policy, Runner, SearchError};
use crate::precision::Bits;

pub struct Uniform;

impl Policy for Uniform {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn seeded(&self) -> bool {
        false
    }

    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError> {
        let candidates = [Bits::B8, Bits::B4, Bits::B2]
            .into_iter()
            .map(|b| runner.evaluate(&runner.problem.space.uniform(b)))
            .collect::<Result<_, _>>()?;
        Ok(Outcome {
            candidates,
            termination: "evaluated uniform 8, 4 and 2 bit".into(),
            optimality: None,
        })
    }
}
