//! Exact search: an integer linear program solved by CBC through good_lp.
//!
//! One binary per (variable, precision); since a layer's cycles depend on three precisions at
//! once (weights or second input, input, output), one binary per layer and precision combination
//! too, tied to the variables by marginal constraints (for every variable of the layer and each of
//! its choices, the combinations using that choice sum to the variable's binary), which makes the
//! combination binary equal to the product. Flash, cycles, energy and predicted loss are linear in
//! these; the peak RAM is a continuous variable bounded below by the live buffers of every
//! schedule step. On platforms with L3, the program is solved twice, once with everything in L2
//! and once with the weights streamed from L3, and the better solution kept. Metrics are scaled by
//! their uniform 8-bit values so that the solver sees numbers of order one.
//!
//! Several objectives give a Pareto set by the epsilon-constraint method: the first objective is
//! minimised under a sweep of bounds on the second, from its value at the first's optimum down to
//! its own minimum.

use super::{Candidate, Optimality, Outcome, Policy, Problem, Runner, SearchError, Settings};
use crate::objective::Metric;
use good_lp::solvers::coin_cbc::{CoinCbcProblem, coin_cbc};
use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable, WithTimeLimit,
    variable,
};

pub struct Ilp {
    pareto_points: usize,
    time_limit: f64,
}

impl Ilp {
    pub fn new(settings: &Settings) -> Ilp {
        Ilp {
            pareto_points: settings.pareto_points.max(2),
            time_limit: settings.time_limit,
        }
    }
}

/// Where the weights live in one solve.
#[derive(Clone, Copy, PartialEq)]
enum Placement {
    L2,
    L3,
}

/// The program's variables and the linear expressions of every metric, in scaled units.
struct Model {
    vars: ProblemVariables,
    /// `x[v][c]`: variable `v` takes its choice `c`.
    x: Vec<Vec<Variable>>,
    constraints: Vec<good_lp::Constraint>,
    metrics: Vec<(Metric, Expression, f64)>,
}

impl Model {
    fn metric(&self, m: Metric) -> (&Expression, f64) {
        let (_, e, scale) = self
            .metrics
            .iter()
            .find(|(k, _, _)| *k == m)
            .expect("every metric is modelled");
        (e, *scale)
    }
}

/// A metric's reference value: its uniform 8-bit value, or 1 where that is zero.
fn scale_of(reference: &Candidate, m: Metric) -> f64 {
    let v = reference.metrics.get(m);
    if v > 0.0 { v } else { 1.0 }
}

fn build(problem: &Problem, placement: Placement) -> Model {
    let space = &problem.space;
    let table = &problem.table;
    let reference = problem.evaluate(&space.uniform(crate::precision::Bits::B8));
    let mut vars = ProblemVariables::new();
    let mut constraints = Vec::new();
    let x: Vec<Vec<Variable>> = space
        .vars
        .iter()
        .map(|v| {
            (0..v.choices.len())
                .map(|_| vars.add(variable().binary()))
                .collect()
        })
        .collect();
    for row in &x {
        constraints.push(
            row.iter()
                .fold(Expression::from(0.0), |e, &v| e + v)
                .eq(1.0),
        );
    }

    // Cycles (and L3 staging) per layer through the combination binaries.
    let mut cycles = Expression::from(0.0);
    let staging = vars.add(variable().min(0.0));
    let fused = &problem.fused;
    for l in 0..fused.layers.len() {
        let layer = &fused.layers[l];
        let first = match layer.kind {
            k if k.has_weights() => space.weight_var[l],
            crate::graph::LayerKind::Add => Some(space.act_var[layer.inputs[1]]),
            _ => None,
        };
        let mut involved: Vec<usize> = first.into_iter().collect();
        for v in [space.act_var[layer.inputs[0]], space.act_var[layer.output]] {
            if !involved.contains(&v) {
                involved.push(v);
            }
        }
        // Every combination of the involved variables' choices.
        let mut combos: Vec<Vec<usize>> = vec![Vec::new()];
        for &v in &involved {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    (0..space.vars[v].choices.len()).map(move |k| [c.clone(), vec![k]].concat())
                })
                .collect();
        }
        let mut marginals: Vec<Vec<Expression>> = involved
            .iter()
            .map(|&v| vec![Expression::from(0.0); space.vars[v].choices.len()])
            .collect();
        let mut layer_staging = Expression::from(0.0);
        for combo in combos {
            let mut genes = space.uniform(crate::precision::Bits::B8);
            for (slot, &v) in involved.iter().enumerate() {
                genes[v] = combo[slot] as u8;
            }
            let assignment = space.decode(&genes);
            let timing = table.timing(l, &assignment);
            let y = vars.add(variable().binary());
            if !timing.fits_l1 {
                constraints.push(Expression::from(y).eq(0.0));
            }
            let c = match placement {
                Placement::L2 => timing.cycles,
                Placement::L3 => timing.cycles_l3,
            };
            cycles.add_mul(c / scale_of(&reference, Metric::Latency), y);
            layer_staging.add_mul(
                2.0 * timing.weight_tile_bytes as f64 / scale_of(&reference, Metric::Ram),
                y,
            );
            for (slot, _) in involved.iter().enumerate() {
                marginals[slot][combo[slot]] += y;
            }
        }
        for (slot, &v) in involved.iter().enumerate() {
            for (k, m) in marginals[slot].drain(..).enumerate() {
                constraints.push((m - x[v][k]).eq(0.0));
            }
        }
        if placement == Placement::L3 {
            constraints.push((layer_staging - staging).leq(0.0));
        }
    }

    // Flash: weighted layers by their variable, the rest constant.
    let flash_scale = scale_of(&reference, Metric::Flash);
    let mut flash = Expression::from(0.0);
    for (l, costs) in table.layers.iter().enumerate() {
        match space.weight_var[l] {
            Some(v) => {
                for (k, b) in space.vars[v].choices.iter().enumerate() {
                    flash.add_mul(costs.flash[b.index()] as f64 / flash_scale, x[v][k]);
                }
            }
            None => flash += costs.flash[crate::precision::Bits::B8.index()] as f64 / flash_scale,
        }
    }

    // Peak RAM: above the live buffers of every step.
    let ram_scale = scale_of(&reference, Metric::Ram);
    let ram = vars.add(variable().min(0.0));
    for s in 0..table.steps() {
        let mut live = Expression::from(0.0);
        for &t in table.live_at(s) {
            let v = space.act_var[t];
            for (k, b) in space.vars[v].choices.iter().enumerate() {
                live.add_mul(table.buffer_bytes[t][b.index()] as f64 / ram_scale, x[v][k]);
            }
        }
        constraints.push((live - ram).leq(0.0));
    }
    let ram_expr: Expression = match placement {
        Placement::L2 => ram.into(),
        Placement::L3 => Expression::from(ram) + staging,
    };
    // Memory in bytes, for the L2 placement constraints.
    let l2 = problem.platform.hardware.l2_bytes.value;
    let memory_bytes = flash.clone() * flash_scale + Expression::from(ram) * ram_scale;
    match placement {
        Placement::L2 => constraints.push(memory_bytes.leq(l2)),
        Placement::L3 => {
            constraints.push(memory_bytes.geq(l2 + 1.0));
            constraints.push((ram_expr.clone() * ram_scale).leq(l2));
        }
    }

    let mut loss = Expression::from(0.0);
    let loss_scale = {
        let v: f64 = problem
            .var_loss
            .iter()
            .map(|l| l.iter().cloned().fold(0.0, f64::max))
            .sum();
        if v > 0.0 { v } else { 1.0 }
    };
    for (v, row) in x.iter().enumerate() {
        for (k, &xv) in row.iter().enumerate() {
            loss.add_mul(problem.var_loss[v][k] / loss_scale, xv);
        }
    }
    let energy_per_cycle = problem
        .platform
        .hardware
        .energy_per_cycle_j
        .as_ref()
        .map_or(0.0, |p| p.value);
    let cycles_scale = scale_of(&reference, Metric::Latency);
    let energy_scale = if energy_per_cycle > 0.0 {
        energy_per_cycle * cycles_scale
    } else {
        1.0
    };
    let energy = cycles.clone() * (energy_per_cycle * cycles_scale / energy_scale);
    let memory_scale = scale_of(&reference, Metric::Memory);
    let memory = flash.clone() * (flash_scale / memory_scale)
        + ram_expr.clone() * (ram_scale / memory_scale);
    let metrics = vec![
        (Metric::Latency, cycles, cycles_scale),
        (Metric::Flash, flash, flash_scale),
        (Metric::Ram, ram_expr, ram_scale),
        (Metric::Memory, memory, memory_scale),
        (Metric::Energy, energy, energy_scale),
        (Metric::Accuracy, loss, loss_scale),
    ];
    let mut model = Model {
        vars,
        x,
        constraints,
        metrics,
    };
    for limit in &problem.objective.limits {
        let (e, scale) = model.metric(limit.metric);
        let c = e.clone().leq(limit.max / scale);
        model.constraints.push(c);
    }
    model
}

/// One solve's result.
struct Solved {
    genes: Vec<u8>,
    proven: bool,
    gap: f64,
}

/// Minimises `objective` (scaled expression) with `extra` constraints.
fn solve(
    model: Model,
    objective: Metric,
    extra: Vec<good_lp::Constraint>,
    time_limit: f64,
) -> Result<Option<Solved>, SearchError> {
    let (target, _) = model.metric(objective);
    let target = target.clone();
    let Model {
        vars,
        x,
        constraints,
        ..
    } = model;
    let mut program: CoinCbcProblem = vars
        .minimise(target)
        .using(coin_cbc)
        .with_time_limit(time_limit);
    program.set_parameter("log", "0");
    program.set_parameter("slog", "0");
    for c in constraints.into_iter().chain(extra) {
        program.add_constraint(c);
    }
    match program.solve() {
        Ok(solution) => {
            let genes = x
                .iter()
                .map(|row| {
                    row.iter()
                        .position(|&v| solution.value(v) > 0.5)
                        .unwrap_or(0) as u8
                })
                .collect();
            let raw = solution.model();
            let (value, bound) = (raw.obj_value(), raw.best_possible_value());
            let gap = if value.abs() > 1e-12 {
                ((value - bound) / value.abs()).max(0.0)
            } else {
                0.0
            };
            Ok(Some(Solved {
                genes,
                proven: raw.is_proven_optimal(),
                gap,
            }))
        }
        Err(ResolutionError::Infeasible) => Ok(None),
        Err(e) => Err(SearchError::Solver(e.to_string())),
    }
}

/// The placements worth solving: L2 always; L3 when the platform has it and no memory limit
/// already keeps everything in L2.
fn placements(problem: &Problem) -> Vec<Placement> {
    let l2 = problem.platform.hardware.l2_bytes.value;
    let capped = problem
        .objective
        .limit(Metric::Memory)
        .is_some_and(|m| m <= l2);
    if problem.platform.has_l3() && !capped {
        vec![Placement::L2, Placement::L3]
    } else {
        vec![Placement::L2]
    }
}

/// The best solution over the placements for minimising `metric`, optionally with an upper
/// `bound` on another metric; `evaluate` re-checks each solution with the cost model. The
/// returned optimality holds for all placements together.
fn best_over_placements(
    evaluate: &dyn Fn(&[u8]) -> Candidate,
    problem: &Problem,
    metric: Metric,
    bound: Option<(Metric, f64)>,
    time_limit: f64,
) -> Result<Option<(Candidate, Solved)>, SearchError> {
    let mut best: Option<(Candidate, Solved)> = None;
    let mut proven = true;
    let mut gap: f64 = 0.0;
    for placement in placements(problem) {
        let model = build(problem, placement);
        let extra = match bound {
            Some((m, value)) => {
                let (e, scale) = model.metric(m);
                vec![e.clone().leq(value / scale)]
            }
            None => Vec::new(),
        };
        if let Some(solved) = solve(model, metric, extra, time_limit)? {
            proven &= solved.proven;
            gap = gap.max(solved.gap);
            let c = evaluate(&solved.genes);
            let better = best
                .as_ref()
                .is_none_or(|(b, _)| c.metrics.get(metric) < b.metrics.get(metric));
            if c.feasible() && better {
                best = Some((c, solved));
            }
        }
    }
    Ok(best.map(|(c, s)| (c, Solved { proven, gap, ..s })))
}

/// The smallest value of `metric` any assignment reaches under the problem's limits (`None` if
/// the limits admit no assignment).
pub fn minimize_metric(
    problem: &Problem,
    metric: Metric,
    time_limit: f64,
) -> Result<Option<f64>, SearchError> {
    let eval = |g: &[u8]| problem.evaluate(g);
    Ok(
        best_over_placements(&eval, problem, metric, None, time_limit)?
            .map(|(c, _)| c.metrics.get(metric)),
    )
}

impl Policy for Ilp {
    fn name(&self) -> &'static str {
        "ilp"
    }

    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError> {
        let problem = runner.problem;
        let objectives = &problem.objective.minimize;
        let primary = objectives[0];
        let eval = |g: &[u8]| runner.evaluate(g);
        runner.status(format!("solving: minimise {primary}"));
        let Some((first, solved)) =
            best_over_placements(&eval, problem, primary, None, self.time_limit)?
        else {
            return Err(SearchError::Infeasible(
                "the integer program has no solution under the limits (latency, energy or accuracy limits, or L1/L2 capacity)".into(),
            ));
        };
        let mut optimality = Optimality {
            proven: solved.proven,
            gap: solved.gap,
        };
        let mut candidates = vec![first.clone()];
        if let Some(&second) = objectives.get(1) {
            // Epsilon-constraint sweep of the second objective between its value at the primary
            // optimum and its own minimum.
            let high = first.metrics.get(second);
            let low = best_over_placements(&eval, problem, second, None, self.time_limit)?
                .map(|(c, _)| c.metrics.get(second))
                .unwrap_or(high);
            let n = self.pareto_points;
            for k in 1..n {
                let bound = high - (high - low) * k as f64 / (n - 1) as f64;
                runner.status(format!(
                    "Pareto point {}/{} ({second} <= {bound:.4e})",
                    k + 1,
                    n
                ));
                if let Some((c, s)) = best_over_placements(
                    &eval,
                    problem,
                    primary,
                    Some((second, bound * (1.0 + 1e-9))),
                    self.time_limit,
                )? {
                    optimality.proven &= s.proven;
                    optimality.gap = optimality.gap.max(s.gap);
                    candidates.push(c);
                }
            }
        }
        let termination = if optimality.proven {
            format!(
                "CBC proved optimality ({} solve{})",
                candidates.len(),
                if candidates.len() > 1 { "s" } else { "" }
            )
        } else {
            format!(
                "CBC stopped at the time limit with a relative gap of {:.2}%",
                100.0 * optimality.gap
            )
        };
        Ok(Outcome {
            candidates,
            termination,
            optimality: Some(optimality),
        })
    }
}
