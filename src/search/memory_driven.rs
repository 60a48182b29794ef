//! The memory-driven rules of Rusci et al., "Memory-Driven Mixed Low Precision Quantization for
//! Enabling Deep Network Inference on Microcontrollers" (MLSys 2020).
//!
//! Everything starts at its widest allowed precision. Activations first: every layer's inputs
//! plus output must fit the RAM limit; where they do not, the tensor with more bits is cut to the
//! next narrower precision (the larger tensor when the bits are equal), sweeping forward and then
//! backward over the layers until nothing changes; a layer whose tensors are all at their floor
//! makes the problem infeasible. Then weights: while the flash (packed weights plus the
//! per-channel requantization parameters and biases) exceeds its limit, among the layers within 5
//! percentage points of the largest share of weight memory, the one nearest the input is cut,
//! 8 -> 4 -> 2.
//!
//! Three adaptations, noted in the outcome: with only a total budget (flash + RAM), the
//! activation phase uses the budget minus the smallest possible flash and the weight phase what
//! the activations leave; when the weights stream from L3, the RAM their staging buffer takes is
//! reserved before the activation phase; and where residual branches keep more buffers live
//! than a layer's own inputs and output, the same cut rule is applied at the schedule's peak
//! until the liveness model's RAM fits too, so that the result meets every limit.

use super::{Candidate, Outcome, Policy, Runner, SearchError};
use crate::objective::Metric;
use crate::precision::Bits;
use crate::space::{Space, VarKind};

pub(crate) struct MemoryDriven;

/// Share margin within which the layer nearest the input is preferred (5 percentage points).
const SHARE_MARGIN: f64 = 0.05;

struct State<'a> {
    space: &'a Space,
    genes: Vec<u8>,
}

impl State<'_> {
    fn bits(&self, var: usize) -> Bits {
        self.space.vars[var].choices[self.genes[var] as usize]
    }

    fn can_cut(&self, var: usize) -> bool {
        self.genes[var] > 0
    }

    fn cut(&mut self, var: usize) {
        self.genes[var] -= 1;
    }
}

impl MemoryDriven {
    /// Bytes of activation buffer `t` under `state`.
    fn bytes(runner: &Runner, state: &State, t: usize) -> u64 {
        runner.problem.table.buffer_bytes[t][state.bits(state.space.act_var[t]).index()]
    }

    /// Among `tensors`, the cuttable one with more bits (the larger when equal), as a variable.
    fn pick(runner: &Runner, state: &State, tensors: &[usize]) -> Option<usize> {
        tensors
            .iter()
            .filter(|&&t| state.can_cut(state.space.act_var[t]))
            .max_by_key(|&&t| {
                (
                    state.bits(state.space.act_var[t]),
                    Self::bytes(runner, state, t),
                )
            })
            .map(|&t| state.space.act_var[t])
    }

    /// One sweep over `order`; returns whether anything was cut.
    fn sweep(
        runner: &Runner,
        state: &mut State,
        ram: u64,
        order: &[usize],
    ) -> Result<bool, SearchError> {
        let fused = &runner.problem.fused;
        let mut changed = false;
        for &l in order {
            let layer = &fused.layers[l];
            let mut tensors = layer.inputs.clone();
            tensors.push(layer.output);
            tensors.dedup();
            loop {
                let total: u64 = tensors.iter().map(|&t| Self::bytes(runner, state, t)).sum();
                if total <= ram {
                    break;
                }
                let var = Self::pick(runner, state, &tensors).ok_or_else(|| {
                    SearchError::Infeasible(format!(
                        "memory-driven: layer '{}' needs {total} B for its inputs and output at their narrowest allowed precisions, more than the {ram} B of RAM",
                        layer.name
                    ))
                })?;
                state.cut(var);
                changed = true;
            }
        }
        Ok(changed)
    }

    fn activations(runner: &Runner, state: &mut State, ram: u64) -> Result<(), SearchError> {
        let forward: Vec<usize> = (0..runner.problem.fused.layers.len()).collect();
        let backward: Vec<usize> = forward.iter().rev().copied().collect();
        while Self::sweep(runner, state, ram, &forward)?
            | Self::sweep(runner, state, ram, &backward)?
        {}
        // Residual branches: cut at the liveness peak with the same rule.
        loop {
            let activations_only = runner
                .problem
                .table
                .ram_profile(&state.space.decode(&state.genes));
            let (step, &peak) = activations_only
                .iter()
                .enumerate()
                .max_by_key(|(_, b)| **b)
                .unwrap_or((0, &0));
            if peak <= ram {
                return Ok(());
            }
            let live = runner.problem.table.live_at(step).to_vec();
            let var = Self::pick(runner, state, &live).ok_or_else(|| {
                SearchError::Infeasible(format!(
                    "memory-driven: the buffers live at layer '{}' need {peak} B at their narrowest allowed precisions, more than the {ram} B of RAM",
                    runner.problem.fused.layers[step].name
                ))
            })?;
            state.cut(var);
        }
    }

    /// RAM the current assignment spends on staging L3 weights (zero when everything is in L2).
    fn staging(runner: &Runner, state: &State) -> u64 {
        let a = state.space.decode(&state.genes);
        let costs = runner.problem.table.evaluate(&a);
        let activations = runner
            .problem
            .table
            .ram_profile(&a)
            .into_iter()
            .max()
            .unwrap_or(0);
        costs.ram.saturating_sub(activations)
    }

    fn weights(runner: &Runner, state: &mut State, flash: u64) -> Result<(), SearchError> {
        let problem = runner.problem;
        let weight_vars: Vec<(usize, usize)> = problem
            .fused
            .weighted_layers()
            .filter_map(|(l, _)| state.space.weight_var[l].map(|v| (l, v)))
            .collect();
        loop {
            let sizes: Vec<u64> = weight_vars
                .iter()
                .map(|&(l, v)| problem.table.layers[l].flash[state.bits(v).index()])
                .collect();
            let total: u64 = problem
                .table
                .layers
                .iter()
                .enumerate()
                .map(|(l, costs)| match state.space.weight_var[l] {
                    Some(v) => costs.flash[state.bits(v).index()],
                    None => costs.flash[Bits::B8.index()],
                })
                .sum();
            if total <= flash {
                return Ok(());
            }
            let share = |k: usize| sizes[k] as f64 / total as f64;
            let cuttable: Vec<usize> = (0..weight_vars.len())
                .filter(|&k| state.can_cut(weight_vars[k].1))
                .collect();
            let largest = cuttable
                .iter()
                .map(|&k| share(k))
                .fold(f64::NEG_INFINITY, f64::max);
            // Layers are in execution order, so the first within the margin is nearest the input.
            let chosen = cuttable.iter().copied().find(|&k| share(k) >= largest - SHARE_MARGIN).ok_or_else(|| {
                SearchError::Infeasible(format!(
                    "memory-driven: the weights need {total} B of flash with every layer at its narrowest allowed precision, more than the {flash} B limit"
                ))
            })?;
            state.cut(weight_vars[chosen].1);
        }
    }
}

impl Policy for MemoryDriven {
    fn name(&self) -> &'static str {
        "memory-driven"
    }

    fn seeded(&self) -> bool {
        false
    }

    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError> {
        let problem = runner.problem;
        let space = &problem.space;
        let widest: Vec<u8> = space
            .vars
            .iter()
            .map(|v| (v.choices.len() - 1) as u8)
            .collect();
        let mut state = State {
            space,
            genes: widest,
        };
        let objective = &problem.objective;
        let total = objective.limit(Metric::Memory).map(|m| m as u64);
        let narrowest_flash = problem.narrowest().metrics.flash;
        let mut notes = Vec::new();

        let ram_limit = objective.limit(Metric::Ram).map(|r| r as u64);
        let ram = match (ram_limit, total) {
            (r, Some(m)) => {
                notes.push(
                    "RAM for the activation phase = budget minus the smallest possible flash"
                        .to_string(),
                );
                Some(r.unwrap_or(u64::MAX).min(m.saturating_sub(narrowest_flash)))
            }
            (r, None) => r,
        };
        if let Some(ram) = ram {
            // Weights streamed from L3 need a staging buffer in the same RAM: reserve it, unless
            // the flash the weight phase will allow fits L2 next to the activations.
            let l2 = problem.platform.hardware.l2_bytes.value as u64;
            let widest_flash = runner.evaluate(&state.genes)?.metrics.flash;
            let allowed_flash = [
                objective.limit(Metric::Flash).map(|f| f as u64),
                total,
                Some(widest_flash),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(widest_flash);
            let streams = problem.platform.has_l3() && allowed_flash + ram > l2;
            let staging = if streams {
                Self::staging(runner, &state)
            } else {
                0
            };
            if staging > 0 {
                notes.push(format!(
                    "{staging} B of RAM reserved for staging weights streamed from L3"
                ));
            }
            Self::activations(runner, &mut state, ram.saturating_sub(staging))?;
        }
        let flash_limit = objective.limit(Metric::Flash).map(|f| f as u64);
        let flash = match (flash_limit, total) {
            (f, Some(m)) => {
                let used = runner.evaluate(&state.genes)?.metrics.ram;
                notes.push(
                    "flash for the weight phase = budget minus the activations' RAM".to_string(),
                );
                Some(f.unwrap_or(u64::MAX).min(m.saturating_sub(used)))
            }
            (f, None) => f,
        };
        if let Some(flash) = flash {
            Self::weights(runner, &mut state, flash)?;
        }
        let result: Candidate = runner.evaluate(&state.genes)?;
        let (mut weights_cut, mut activations_cut) = (0, 0);
        for (g, var) in state.genes.iter().zip(&space.vars) {
            if (*g as usize) < var.choices.len() - 1 {
                match var.kind {
                    VarKind::Weights(_) => weights_cut += 1,
                    VarKind::Activations(_) => activations_cut += 1,
                }
            }
        }
        notes.insert(
            0,
            format!("rules cut {weights_cut} weight and {activations_cut} activation variables"),
        );
        Ok(Outcome {
            candidates: vec![result],
            termination: notes.join("; "),
            optimality: None,
        })
    }
}
