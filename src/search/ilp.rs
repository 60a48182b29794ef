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
//! their uniform 8-bit values (evaluated once per run) so that the solver sees numbers of order
//! one. Each solve gets the ILP's time limit, cut to what is left of the runner's wall time.
//!
//! Several objectives give a Pareto set by the epsilon-constraint method: the first objective is
//! minimised under a sweep of bounds on the second, from its value at the first's optimum down to
//! its own minimum.

use super::{Candidate, Optimality, Outcome, Policy, Problem, Runner, SearchError, Settings};
use crate::graph::LayerKind;
use crate::objective::Metric;
use crate::precision::Bits;
use good_lp::solvers::coin_cbc::{CoinCbcProblem, coin_cbc};
use good_lp::{
    Constraint, Expression, ProblemVariables, ResolutionError, Solution, SolverModel, Variable,
    WithTimeLimit, variable,
};

pub(crate) struct Ilp {
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
    constraints: Vec<Constraint>,
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

/// The program under construction: its variables and constraints so far.
struct Builder<'p> {
    problem: &'p Problem,
    /// The uniform 8-bit assignment, whose metrics scale the program.
    reference: &'p Candidate,
    vars: ProblemVariables,
    constraints: Vec<Constraint>,
    /// `x[v][c]`: variable `v` takes its choice `c`.
    x: Vec<Vec<Variable>>,
}

impl<'p> Builder<'p> {
    /// One binary per variable and choice; every variable takes exactly one choice.
    fn new(problem: &'p Problem, reference: &'p Candidate) -> Builder<'p> {
        let mut vars = ProblemVariables::new();
        let x: Vec<Vec<Variable>> = problem
            .space
            .vars
            .iter()
            .map(|v| {
                (0..v.choices.len())
                    .map(|_| vars.add(variable().binary()))
                    .collect()
            })
            .collect();
        let constraints = x
            .iter()
            .map(|row| {
                row.iter()
                    .fold(Expression::from(0.0), |e, &v| e + v)
                    .eq(1.0)
            })
            .collect();
        Builder {
            problem,
            reference,
            vars,
            constraints,
            x,
        }
    }

    fn scale(&self, m: Metric) -> f64 {
        scale_of(self.reference, m)
    }

    /// The cycles of every layer, and (with weights in L3) the RAM that staging them takes:
    /// the largest double-buffered weight tile of any layer.
    fn cycles(&mut self, placement: Placement) -> (Expression, Variable) {
        let mut cycles = Expression::from(0.0);
        let staging = self.vars.add(variable().min(0.0));
        for l in 0..self.problem.fused.layers.len() {
            let layer_staging = self.layer_cycles(l, placement, &mut cycles);
            if placement == Placement::L3 {
                self.constraints.push((layer_staging - staging).leq(0.0));
            }
        }
        (cycles, staging)
    }

    /// The variables a layer's cycles depend on: weights (or an addition's second input), its
    /// input and its output, without repeats.
    fn involved(&self, l: usize) -> Vec<usize> {
        let space = &self.problem.space;
        let layer = &self.problem.fused.layers[l];
        let first = match layer.kind {
            k if k.has_weights() => space.weight_var[l],
            LayerKind::Add => Some(space.act_var[layer.inputs[1]]),
            _ => None,
        };
        let mut involved: Vec<usize> = first.into_iter().collect();
        for v in [space.act_var[layer.inputs[0]], space.act_var[layer.output]] {
            if !involved.contains(&v) {
                involved.push(v);
            }
        }
        involved
    }

    /// Adds layer `l`'s cycles through one binary per combination of its variables' choices,
    /// tied to the variables by marginal constraints (the combinations using a choice sum to
    /// that choice's binary); combinations without an L1 tiling are forbidden. Returns the
    /// layer's staging RAM.
    fn layer_cycles(
        &mut self,
        l: usize,
        placement: Placement,
        cycles: &mut Expression,
    ) -> Expression {
        let space = &self.problem.space;
        let involved = self.involved(l);
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
        let (cycles_scale, ram_scale) = (self.scale(Metric::Latency), self.scale(Metric::Ram));
        let mut layer_staging = Expression::from(0.0);
        for combo in combos {
            let mut genes = space.uniform(Bits::B8);
            for (slot, &v) in involved.iter().enumerate() {
                genes[v] = combo[slot] as u8;
            }
            let timing = self.problem.table.timing(l, &space.decode(&genes));
            let y = self.vars.add(variable().binary());
            if !timing.fits_l1 {
                self.constraints.push(Expression::from(y).eq(0.0));
            }
            let c = match placement {
                Placement::L2 => timing.cycles,
                Placement::L3 => timing.cycles_l3,
            };
            cycles.add_mul(c / cycles_scale, y);
            layer_staging.add_mul(2.0 * timing.weight_tile_bytes as f64 / ram_scale, y);
            for (slot, _) in involved.iter().enumerate() {
                marginals[slot][combo[slot]] += y;
            }
        }
        for (slot, &v) in involved.iter().enumerate() {
            for (k, m) in marginals[slot].drain(..).enumerate() {
                self.constraints.push((m - self.x[v][k]).eq(0.0));
            }
        }
        layer_staging
    }

    /// Flash: weighted layers by their variable, the rest constant.
    fn flash(&self) -> Expression {
        let space = &self.problem.space;
        let flash_scale = self.scale(Metric::Flash);
        let mut flash = Expression::from(0.0);
        for (l, costs) in self.problem.table.layers.iter().enumerate() {
            match space.weight_var[l] {
                Some(v) => {
                    for (k, b) in space.vars[v].choices.iter().enumerate() {
                        flash.add_mul(costs.flash[b.index()] as f64 / flash_scale, self.x[v][k]);
                    }
                }
                None => flash += costs.flash[Bits::B8.index()] as f64 / flash_scale,
            }
        }
        flash
    }

    /// Peak RAM: a variable above the live buffers of every schedule step.
    fn peak_ram(&mut self) -> Variable {
        let (space, table) = (&self.problem.space, &self.problem.table);
        let ram_scale = self.scale(Metric::Ram);
        let ram = self.vars.add(variable().min(0.0));
        for s in 0..table.steps() {
            let mut live = Expression::from(0.0);
            for &t in table.live_at(s) {
                let v = space.act_var[t];
                for (k, b) in space.vars[v].choices.iter().enumerate() {
                    live.add_mul(
                        table.buffer_bytes[t][b.index()] as f64 / ram_scale,
                        self.x[v][k],
                    );
                }
            }
            self.constraints.push((live - ram).leq(0.0));
        }
        ram
    }

    /// L2 capacity, in bytes: everything fits it in the L2 placement; in the L3 placement the
    /// whole does not (or L2 would do) but the RAM, staging included, does.
    fn placement_limits(
        &mut self,
        placement: Placement,
        flash: &Expression,
        ram: Variable,
        ram_expr: &Expression,
    ) {
        let l2 = self.problem.platform.hardware.l2_bytes.value;
        let ram_scale = self.scale(Metric::Ram);
        let memory_bytes =
            flash.clone() * self.scale(Metric::Flash) + Expression::from(ram) * ram_scale;
        match placement {
            Placement::L2 => self.constraints.push(memory_bytes.leq(l2)),
            Placement::L3 => {
                self.constraints.push(memory_bytes.geq(l2 + 1.0));
                self.constraints
                    .push((ram_expr.clone() * ram_scale).leq(l2));
            }
        }
    }

    /// Predicted loss, scaled by its largest possible value.
    fn loss(&self) -> (Expression, f64) {
        let var_loss = &self.problem.var_loss;
        let total: f64 = var_loss
            .iter()
            .map(|l| l.iter().cloned().fold(0.0, f64::max))
            .sum();
        let scale = if total > 0.0 { total } else { 1.0 };
        let mut loss = Expression::from(0.0);
        for (v, row) in self.x.iter().enumerate() {
            for (k, &xv) in row.iter().enumerate() {
                loss.add_mul(var_loss[v][k] / scale, xv);
            }
        }
        (loss, scale)
    }
}

/// The program for one placement: every metric as a scaled linear expression, and the
/// problem's limits as constraints on them.
fn build(problem: &Problem, reference: &Candidate, placement: Placement) -> Model {
    let mut builder = Builder::new(problem, reference);
    let (cycles, staging) = builder.cycles(placement);
    let flash = builder.flash();
    let ram = builder.peak_ram();
    let ram_expr: Expression = match placement {
        Placement::L2 => ram.into(),
        Placement::L3 => Expression::from(ram) + staging,
    };
    builder.placement_limits(placement, &flash, ram, &ram_expr);
    let (loss, loss_scale) = builder.loss();

    let energy_per_cycle = problem
        .platform
        .hardware
        .energy_per_cycle_j
        .as_ref()
        .map_or(0.0, |p| p.value);
    let (cycles_scale, flash_scale, ram_scale, memory_scale) = (
        builder.scale(Metric::Latency),
        builder.scale(Metric::Flash),
        builder.scale(Metric::Ram),
        builder.scale(Metric::Memory),
    );
    let energy_scale = if energy_per_cycle > 0.0 {
        energy_per_cycle * cycles_scale
    } else {
        1.0
    };
    let energy = cycles.clone() * (energy_per_cycle * cycles_scale / energy_scale);
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
        vars: builder.vars,
        x: builder.x,
        constraints: builder.constraints,
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
fn solve_program(
    model: Model,
    objective: Metric,
    extra: Vec<Constraint>,
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
/// `bound` on another metric; each solution is re-checked with the cost model through the
/// runner. The returned optimality holds for all placements together.
fn best_over_placements(
    runner: &Runner,
    reference: &Candidate,
    metric: Metric,
    bound: Option<(Metric, f64)>,
    time_limit: f64,
) -> Result<Option<(Candidate, Solved)>, SearchError> {
    let problem = runner.problem;
    let mut best: Option<(Candidate, Solved)> = None;
    let mut proven = true;
    let mut gap: f64 = 0.0;
    for placement in placements(problem) {
        let model = build(problem, reference, placement);
        let extra = match bound {
            Some((m, value)) => {
                let (e, scale) = model.metric(m);
                vec![e.clone().leq(value / scale)]
            }
            None => Vec::new(),
        };
        let time_limit = runner.solver_time(time_limit)?.max(0.0);
        if let Some(solved) = solve_program(model, metric, extra, time_limit)? {
            proven &= solved.proven;
            gap = gap.max(solved.gap);
            let c = runner.evaluate(&solved.genes)?;
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

impl Ilp {
    /// The best solution for `metric`, optionally under an upper `bound` on another metric.
    fn minimise(
        &self,
        runner: &Runner,
        reference: &Candidate,
        metric: Metric,
        bound: Option<(Metric, f64)>,
    ) -> Result<Option<(Candidate, Solved)>, SearchError> {
        best_over_placements(runner, reference, metric, bound, self.time_limit)
    }

    /// Epsilon-constraint sweep of the `second` objective between its value at the primary
    /// optimum `first` and its own minimum, adding each point's solution to `candidates`.
    fn pareto_sweep(
        &self,
        runner: &Runner,
        reference: &Candidate,
        first: &Candidate,
        second: Metric,
        candidates: &mut Vec<Candidate>,
        optimality: &mut Optimality,
    ) -> Result<(), SearchError> {
        let primary = runner.problem.objective.primary();
        let high = first.metrics.get(second);
        let low = self
            .minimise(runner, reference, second, None)?
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
            let bound = Some((second, bound * (1.0 + 1e-9)));
            if let Some((c, s)) = self.minimise(runner, reference, primary, bound)? {
                optimality.proven &= s.proven;
                optimality.gap = optimality.gap.max(s.gap);
                candidates.push(c);
            }
        }
        Ok(())
    }
}

impl Policy for Ilp {
    fn name(&self) -> &'static str {
        "ilp"
    }

    fn seeded(&self) -> bool {
        false
    }

    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError> {
        let problem = runner.problem;
        let objectives = &problem.objective.minimize;
        let primary = objectives[0];
        let reference = runner.evaluate(&problem.space.uniform(Bits::B8))?;
        runner.status(format!("solving: minimise {primary}"));
        let Some((first, solved)) = self.minimise(runner, &reference, primary, None)? else {
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
            // A stop keeps the points solved so far.
            let swept = self.pareto_sweep(
                runner,
                &reference,
                &first,
                second,
                &mut candidates,
                &mut optimality,
            );
            match swept {
                Ok(()) | Err(SearchError::Stopped(_)) => {}
                Err(e) => return Err(e),
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
