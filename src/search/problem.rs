//! One search problem: a network's cost table on a platform, a resolved search space, an
//! objective and a sensitivity table; and the evaluation of candidates against it.

use super::SearchError;
use crate::cost::{CostTable, Costs};
use crate::graph::FusedGraph;
use crate::objective::{Metric, Objective};
use crate::platform::Platform;
use crate::precision::Bits;
use crate::sensitivity::Sensitivity;
use crate::space::{Space, VarKind};
use crate::units::format_bytes;
use serde::Serialize;

/// A candidate's figures in metric units.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Metrics {
    pub cycles: f64,
    pub flash: u64,
    pub ram: u64,
    /// Joules per inference; 0 on platforms without power figures (never an objective there).
    pub energy_j: f64,
    /// Predicted accuracy loss (sensitivity entries summed).
    pub loss: f64,
}

impl Metrics {
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Latency => self.cycles,
            Metric::Flash => self.flash as f64,
            Metric::Ram => self.ram as f64,
            Metric::Memory => (self.flash + self.ram) as f64,
            Metric::Energy => self.energy_j,
            Metric::Accuracy => self.loss,
        }
    }
}

/// An evaluated assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The chosen precision of every variable, as an index into its choices.
    pub genes: Vec<u8>,
    pub metrics: Metrics,
    pub costs: Costs,
    /// Relative excess over the limits summed, plus one for no L1 tiling and one for not fitting
    /// L2; zero when feasible.
    pub violation: f64,
}

impl Candidate {
    pub fn feasible(&self) -> bool {
        self.violation == 0.0
    }
}

pub struct Problem {
    pub fused: FusedGraph,
    pub table: CostTable,
    pub space: Space,
    pub objective: Objective,
    pub sensitivity: Sensitivity,
    pub platform: Platform,
    /// Predicted loss of each variable at each of its choices.
    pub var_loss: Vec<Vec<f64>>,
}

impl Problem {
    pub fn new(
        fused: FusedGraph,
        platform: Platform,
        space: Space,
        objective: Objective,
        sensitivity: Sensitivity,
    ) -> Result<Problem, SearchError> {
        let uses_energy = objective.minimize.contains(&Metric::Energy)
            || objective.limit(Metric::Energy).is_some();
        if uses_energy && platform.hardware.energy_per_cycle_j.is_none() {
            return Err(SearchError::Config(format!(
                "platform {} gives no power figures, so energy cannot be an objective or a limit (gap8 has them)",
                platform.name
            )));
        }
        let table = CostTable::build(&fused, &platform);
        let var_loss = space
            .vars
            .iter()
            .map(|var| {
                var.choices
                    .iter()
                    .map(|b| match &var.kind {
                        VarKind::Weights(l) => sensitivity.weights[*l][b.index()],
                        VarKind::Activations(ts) => ts
                            .iter()
                            .map(|&t| sensitivity.activations[t][b.index()])
                            .sum(),
                    })
                    .collect()
            })
            .collect();
        Ok(Problem {
            fused,
            table,
            space,
            objective,
            sensitivity,
            platform,
            var_loss,
        })
    }

    /// Costs, metrics and constraint violation of the assignment `genes` stands for.
    pub fn evaluate(&self, genes: &[u8]) -> Candidate {
        let assignment = self.space.decode(genes);
        let costs = self.table.evaluate(&assignment);
        let loss = genes
            .iter()
            .zip(&self.var_loss)
            .map(|(&g, l)| l[g as usize])
            .sum();
        let metrics = Metrics {
            cycles: costs.cycles,
            flash: costs.flash,
            ram: costs.ram,
            energy_j: costs.energy_j.unwrap_or(0.0),
            loss,
        };
        let mut violation =
            f64::from(u8::from(!costs.fits_l1)) + f64::from(u8::from(!costs.fits_l2));
        for limit in &self.objective.limits {
            let value = metrics.get(limit.metric);
            if value > limit.max {
                violation += (value - limit.max) / limit.max.max(1e-12);
            }
        }
        Candidate {
            genes: genes.to_vec(),
            metrics,
            costs,
            violation,
        }
    }

    /// The values of the objectives to minimise.
    pub fn objectives(&self, c: &Candidate) -> Vec<f64> {
        self.objective
            .minimize
            .iter()
            .map(|&m| c.metrics.get(m))
            .collect()
    }

    /// The narrowest allowed precision everywhere: the smallest flash and RAM possible.
    pub(crate) fn narrowest(&self) -> Candidate {
        self.evaluate(&vec![0; self.space.vars.len()])
    }

    /// Why no assignment can meet the memory limits: the smallest achievable figure and what
    /// binds it. `None` when the narrowest assignment meets them (other limits may still fail).
    pub(crate) fn memory_infeasibility(&self) -> Option<String> {
        let narrow = self.narrowest();
        let mut reasons = Vec::new();
        for limit in &self.objective.limits {
            let value = narrow.metrics.get(limit.metric);
            if value <= limit.max {
                continue;
            }
            let binding = match limit.metric {
                Metric::Flash => self.flash_binding(&narrow),
                Metric::Ram => self.ram_binding(&narrow),
                Metric::Memory => format!(
                    "{}; {}",
                    self.flash_binding(&narrow),
                    self.ram_binding(&narrow)
                ),
                _ => continue,
            };
            reasons.push(format!(
                "{} limit {} cannot be met: the smallest possible is {} with every tensor at its narrowest allowed precision ({binding})",
                limit.metric,
                format_bytes(limit.max as u64),
                format_bytes(value as u64),
            ));
        }
        if !narrow.costs.fits_l1 {
            let layer = (0..self.fused.layers.len())
                .find(|&l| {
                    !self
                        .table
                        .timing(l, &self.space.decode(&narrow.genes))
                        .fits_l1
                })
                .map(|l| self.fused.layers[l].name.clone())
                .unwrap_or_default();
            reasons.push(format!(
                "layer '{layer}' has no tiling that fits L1 even at its narrowest precisions"
            ));
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    fn flash_binding(&self, c: &Candidate) -> String {
        let a = self.space.decode(&c.genes);
        let mut layers: Vec<(u64, usize)> = self
            .fused
            .weighted_layers()
            .map(|(l, _)| (self.table.layers[l].flash[a.weight_bits[l].index()], l))
            .collect();
        layers.sort_unstable_by(|x, y| y.cmp(x));
        let top: Vec<String> = layers
            .iter()
            .take(3)
            .map(|&(bytes, l)| {
                format!(
                    "{} {}-bit {}",
                    self.fused.layers[l].name,
                    a.weight_bits[l],
                    format_bytes(bytes)
                )
            })
            .collect();
        format!("largest weights: {}", top.join(", "))
    }

    fn ram_binding(&self, c: &Candidate) -> String {
        let a = self.space.decode(&c.genes);
        let step = c.costs.peak_step;
        let live: Vec<String> = self
            .table
            .live_at(step)
            .iter()
            .map(|&t| {
                let pinned = self.space.vars[self.space.act_var[t]].choices.len() == 1;
                format!(
                    "'{}' {}-bit{} {}",
                    self.fused.tensors[t].name,
                    a.activation_bits[t],
                    if pinned { " (pinned)" } else { "" },
                    format_bytes(self.table.buffer_bytes[t][a.activation_bits[t].index()])
                )
            })
            .collect();
        format!(
            "RAM peaks at layer '{}' with {} live",
            self.fused.layers[step].name,
            live.join(", ")
        )
    }

    /// Describes which limits `c` presses against (at 98% or more of the limit).
    pub(crate) fn binding_limits(&self, c: &Candidate) -> Vec<String> {
        self.objective
            .limits
            .iter()
            .filter(|l| c.metrics.get(l.metric) >= 0.98 * l.max)
            .map(|l| match l.metric {
                Metric::Ram => format!("ram ({})", self.ram_binding(c)),
                Metric::Memory => format!("memory ({})", self.ram_binding(c)),
                other => other.to_string(),
            })
            .collect()
    }

    /// Genes of `bits` everywhere the space allows it (the nearest narrower choice elsewhere).
    pub fn uniform(&self, bits: Bits) -> Vec<u8> {
        self.space.uniform(bits)
    }
}
