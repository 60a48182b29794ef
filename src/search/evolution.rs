//! NSGA-II (Deb et al. 2002): fast non-dominated sorting, crowding distance and constrained
//! domination (feasible before infeasible, smaller violation first), with binary tournaments,
//! uniform crossover and per-gene mutation over the variables' choice indices. Offspring are
//! evaluated in parallel; the generator only runs on the main thread, so a seed fixes the result.
//! The initial population holds the uniform 8-, 4- and 2-bit assignments and random ones.
//!
//! Memory, latency and accuracy limits make the feasible region narrow and its optimum sit on
//! its boundary, where improving usually means raising one precision while lowering another.
//! So, as in hybrid NSGA-II variants (Deb and Goel 2001), the population's best member is refined
//! by a local search every few generations and at the end: single steps and paired steps (one
//! variable up, one down), evaluated in parallel batches, accepted when they lower the violation
//! or, feasible, the primary objective. The refined member joins the population. A population
//! that finds nothing new for a while restarts from fresh random members (the archive of
//! non-dominated feasible points is kept), which makes the result robust to an unlucky start.

use super::pareto::{Archive, crowding_distance, non_dominated_fronts};
use super::{Candidate, Outcome, Policy, Runner, SearchError, Settings};
use crate::precision::Bits;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

pub(crate) struct Nsga2 {
    population: usize,
}

/// Probability that two parents are recombined.
const CROSSOVER: f64 = 0.9;
/// Generations between local refinements of the best member.
const REFINE_EVERY: usize = 40;
/// Neighbours evaluated per local-search batch.
const NEIGHBOUR_BATCH: usize = 1024;

/// Generations without a new non-dominated feasible point before the population restarts.
const RESTART_AFTER: usize = 60;

impl Nsga2 {
    pub fn new(settings: &Settings) -> Nsga2 {
        Nsga2 {
            population: settings.population.max(4),
        }
    }
}

/// A member of the population with its rank (front index) and crowding distance.
struct Member {
    candidate: Candidate,
    objectives: Vec<f64>,
    rank: usize,
    crowding: f64,
}

/// Orders `pool` by front, then by crowding inside the last front needed, and keeps `size`.
fn select(pool: Vec<(Candidate, Vec<f64>)>, size: usize) -> Vec<Member> {
    let objectives: Vec<Vec<f64>> = pool.iter().map(|(_, o)| o.clone()).collect();
    let violations: Vec<f64> = pool.iter().map(|(c, _)| c.violation).collect();
    let fronts = non_dominated_fronts(&objectives, &violations);
    let mut slots: Vec<Option<(Candidate, Vec<f64>)>> = pool.into_iter().map(Some).collect();
    let mut next = Vec::with_capacity(size);
    for (rank, front) in fronts.iter().enumerate() {
        if next.len() >= size {
            break;
        }
        let distance = crowding_distance(front, &objectives);
        let mut order: Vec<usize> = (0..front.len()).collect();
        order.sort_by(|&a, &b| distance[b].total_cmp(&distance[a]).then(a.cmp(&b)));
        for k in order.into_iter().take(size - next.len()) {
            if let Some((candidate, objectives)) = slots[front[k]].take() {
                next.push(Member {
                    candidate,
                    objectives,
                    rank,
                    crowding: distance[k],
                });
            }
        }
    }
    next
}

/// Binary tournament: lower rank wins, then larger crowding distance.
fn tournament<'a>(population: &'a [Member], rng: &mut ChaCha8Rng) -> &'a Member {
    let a = &population[rng.random_range(0..population.len())];
    let b = &population[rng.random_range(0..population.len())];
    if (a.rank, -a.crowding) <= (b.rank, -b.crowding) {
        a
    } else {
        b
    }
}

/// `size` children of `population`: binary-tournament parents, uniform crossover, and a
/// per-gene step mutation with probability `mutation`.
fn breed(
    population: &[Member],
    choices: &[usize],
    mutation: f64,
    size: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<u8>> {
    (0..size)
        .map(|_| {
            let (p1, p2) = (tournament(population, rng), tournament(population, rng));
            let mut child = p1.candidate.genes.clone();
            if rng.random_bool(CROSSOVER) {
                for (g, other) in child.iter_mut().zip(&p2.candidate.genes) {
                    if rng.random_bool(0.5) {
                        *g = *other;
                    }
                }
            }
            // Mutation moves a precision one step up or down: neighbouring precisions
            // differ least in cost and loss, which suits tightly constrained problems.
            for (g, &k) in child.iter_mut().zip(choices) {
                if k > 1 && rng.random_bool(mutation) {
                    *g = match *g {
                        0 => 1,
                        top if top as usize == k - 1 => top - 1,
                        mid => {
                            if rng.random_bool(0.5) {
                                mid + 1
                            } else {
                                mid - 1
                            }
                        }
                    };
                }
            }
            child
        })
        .collect()
}

/// Lexicographic key of the local search: violation first, then the primary objective.
fn key(runner: &Runner, c: &Candidate) -> (f64, f64) {
    (
        c.violation,
        c.metrics.get(runner.problem.objective.primary()),
    )
}

/// Descends from `start` through single and paired precision steps until no neighbour improves
/// it or the evaluation budget runs out.
fn refine(runner: &Runner, start: Candidate, choices: &[usize], rng: &mut ChaCha8Rng) -> Candidate {
    let n = choices.len();
    let mut moves: Vec<(usize, Option<usize>)> = Vec::new();
    for a in 0..n {
        moves.push((a, None));
        for b in 0..n {
            if a != b {
                moves.push((a, Some(b)));
            }
        }
    }
    let mut best = start;
    loop {
        // A fresh random order per pass; the first batch holding an improvement wins.
        for i in (1..moves.len()).rev() {
            moves.swap(i, rng.random_range(0..=i));
        }
        let mut improved = false;
        for batch in moves.chunks(NEIGHBOUR_BATCH) {
            if runner.budget_left() < batch.len() as u64 {
                return best;
            }
            let neighbours: Vec<Vec<u8>> = batch
                .iter()
                .filter_map(|&(up, down)| {
                    // A single move goes either way; a paired one raises `up` and lowers `down`.
                    let mut g = best.genes.clone();
                    match down {
                        None if (g[up] as usize) + 1 < choices[up] => g[up] += 1,
                        None if g[up] > 0 => g[up] -= 1,
                        Some(d) if (g[up] as usize) + 1 < choices[up] && g[d] > 0 => {
                            g[up] += 1;
                            g[d] -= 1;
                        }
                        _ => return None,
                    }
                    Some(g)
                })
                .collect();
            let Ok(evaluated) = runner.evaluate_all(&neighbours) else {
                return best;
            };
            let winner = evaluated.into_iter().min_by(|a, b| {
                key(runner, a)
                    .partial_cmp(&key(runner, b))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            if let Some(w) = winner
                && key(runner, &w) < key(runner, &best)
            {
                best = w;
                improved = true;
                break;
            }
        }
        if !improved {
            return best;
        }
    }
}

/// The candidate with the smallest violation, then the best primary objective.
fn leader<'c>(runner: &Runner, candidates: impl Iterator<Item = &'c Candidate>) -> Candidate {
    candidates
        .min_by(|a, b| {
            key(runner, a)
                .partial_cmp(&key(runner, b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned()
        .expect("the pool is never empty")
}

impl Policy for Nsga2 {
    fn name(&self) -> &'static str {
        "evolution"
    }

    fn seeded(&self) -> bool {
        true
    }

    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError> {
        let problem = runner.problem;
        let choices: Vec<usize> = problem.space.vars.iter().map(|v| v.choices.len()).collect();
        let n = choices.len();
        let mut rng = runner.rng();
        let fresh = |rng: &mut ChaCha8Rng| -> Vec<Vec<u8>> {
            let mut members: Vec<Vec<u8>> = [Bits::B8, Bits::B4, Bits::B2]
                .iter()
                .map(|&b| problem.space.uniform(b))
                .collect();
            while members.len() < self.population {
                members.push(
                    choices
                        .iter()
                        .map(|&k| rng.random_range(0..k) as u8)
                        .collect(),
                );
            }
            members
        };
        let initial = fresh(&mut rng);
        let mut archive = Archive::default();
        let keep = |archive: &mut Archive<Candidate>, c: &Candidate, o: &[f64]| {
            c.feasible() && archive.insert(o.to_vec(), c.clone())
        };
        let pool: Vec<(Candidate, Vec<f64>)> = runner
            .evaluate_all(&initial)?
            .into_iter()
            .map(|c| {
                let o = problem.objectives(&c);
                keep(&mut archive, &c, &o);
                (c, o)
            })
            .collect();
        let mut population = select(pool, self.population);
        let mutation = (3.0 / n.max(1) as f64).min(0.5);
        let mut generation = 0usize;
        let mut stalled = 0usize;
        let mut restarts = 0usize;
        let summary = |generation: usize, restarts: usize| {
            format!("{generation} generations, {restarts} restarts")
        };
        let termination = loop {
            // A generation, and the fresh population first when restarting.
            let restart = stalled >= RESTART_AFTER;
            let needed = if restart { 2 } else { 1 } * self.population as u64;
            if runner.budget_left() < needed {
                break format!(
                    "evaluation budget spent after {}",
                    summary(generation, restarts)
                );
            }
            if restart {
                let members = fresh(&mut rng);
                let Ok(evaluated) = runner.evaluate_all(&members) else {
                    break summary(generation, restarts);
                };
                let pool: Vec<(Candidate, Vec<f64>)> = evaluated
                    .into_iter()
                    .map(|c| {
                        let o = problem.objectives(&c);
                        (c, o)
                    })
                    .collect();
                population = select(pool, self.population);
                stalled = 0;
                restarts += 1;
            }
            generation += 1;
            let offspring = breed(&population, &choices, mutation, self.population, &mut rng);
            let mut improved = false;
            let mut pool: Vec<(Candidate, Vec<f64>)> = population
                .into_iter()
                .map(|m| (m.candidate, m.objectives))
                .collect();
            let Ok(evaluated) = runner.evaluate_all(&offspring) else {
                break summary(generation - 1, restarts);
            };
            for c in evaluated {
                let o = problem.objectives(&c);
                improved |= keep(&mut archive, &c, &o);
                pool.push((c, o));
            }
            if generation % REFINE_EVERY == 1 {
                let refined = refine(
                    runner,
                    leader(runner, pool.iter().map(|(c, _)| c)),
                    &choices,
                    &mut rng,
                );
                let o = problem.objectives(&refined);
                improved |= keep(&mut archive, &refined, &o);
                pool.push((refined, o));
            }
            stalled = if improved { 0 } else { stalled + 1 };
            population = select(pool, self.population);
            runner.status(format!(
                "generation {generation}, {} non-dominated feasible",
                archive.len()
            ));
        };
        Ok(Outcome {
            candidates: archive.into_payloads(),
            termination,
            optimality: None,
        })
    }
}
