//! A HAQ-style agent (Wang et al., "HAQ: Hardware-Aware Automated Quantization", CVPR 2019):
//! DDPG with small actor and critic MLPs in burn. An episode walks the layers in order; at each
//! layer the state (index, kind, channels, kernel, stride, parameters, input size, previous
//! action; normalised) goes through the actor, whose two continuous outputs in [0, 1] (plus
//! decaying exploration noise) pick the layer's weight precision and its output buffer's. The
//! finished assignment is then made feasible as HAQ does, by lowering precisions from the last
//! layer backwards until the limits hold, and scored: the reward is minus the primary objective
//! relative to its uniform 8-bit value (with the noise proxy, the predicted accuracy loss, when
//! that is the objective). As in HAQ, every transition of an episode carries the episode's reward
//! minus a moving-average baseline; the critic regresses it directly (no bootstrapping, so no
//! target networks are needed) and the actor ascends the critic's value of its actions. The
//! agent runs its episodes until the runner's evaluation budget (or wall time) is spent.

use super::pareto::Archive;
use super::{Candidate, Outcome, Policy, Problem, Runner, SearchError, Settings, Stop};
use crate::graph::LayerKind;
use crate::precision::Bits;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

pub(crate) struct Ddpg {
    episodes: usize,
}

impl Ddpg {
    pub fn new(settings: &Settings) -> Ddpg {
        Ddpg {
            episodes: settings.episodes.max(1),
        }
    }
}

const STATE: usize = 10;
const ACTIONS: usize = 2;
const HIDDEN: usize = 64;
/// Episodes of random actions before learning starts.
const WARMUP: usize = 20;
const BATCH: usize = 64;
const REPLAY: usize = 4096;
const UPDATES_PER_EPISODE: usize = 8;
const ACTOR_LR: f64 = 1e-3;
const CRITIC_LR: f64 = 2e-3;
/// Exploration noise: standard deviation at the end of the warm-up and its decay per episode.
const NOISE: f64 = 0.5;
const NOISE_DECAY: f64 = 0.99;
/// Reward of an episode that cannot be made feasible.
const INFEASIBLE_REWARD: f64 = -2.0;

#[derive(Module, Debug)]
struct Mlp {
    input: Linear,
    hidden: Linear,
    output: Linear,
    relu: Relu,
}

impl Mlp {
    fn new(inputs: usize, outputs: usize, device: &Device) -> Mlp {
        Mlp {
            input: LinearConfig::new(inputs, HIDDEN).init(device),
            hidden: LinearConfig::new(HIDDEN, HIDDEN).init(device),
            output: LinearConfig::new(HIDDEN, outputs).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.relu.forward(self.input.forward(x));
        let x = self.relu.forward(self.hidden.forward(x));
        self.output.forward(x)
    }
}

/// The actor's deterministic policy: actions in [0, 1].
fn act(actor: &Mlp, states: Tensor<2>) -> Tensor<2> {
    burn::tensor::activation::sigmoid(actor.forward(states))
}

fn critic_value(critic: &Mlp, states: Tensor<2>, actions: Tensor<2>) -> Tensor<2> {
    critic.forward(Tensor::cat(vec![states, actions], 1))
}

/// One decision point of an episode: a layer, the variables its actions set.
struct Step {
    features: [f32; STATE - 1],
    weight_var: Option<usize>,
    output_var: usize,
}

/// Normalised per-layer features, as HAQ's state (the previous action is appended per episode).
fn steps(runner: &Runner) -> Vec<Step> {
    let problem = runner.problem;
    let layers = &problem.fused.layers;
    let max = |f: &dyn Fn(usize) -> f64| (0..layers.len()).map(f).fold(1.0f64, f64::max);
    let in_c = max(&|l| layers[l].input_shape.c as f64);
    let out_c = max(&|l| layers[l].output_shape.c as f64);
    let kernel = max(&|l| layers[l].window.map_or(1, |w| w.kernel[0]) as f64);
    let stride = max(&|l| layers[l].window.map_or(1, |w| w.stride[0]) as f64);
    let params = max(&|l| layers[l].weights as f64);
    let size = max(&|l| (layers[l].input_shape.h * layers[l].input_shape.w) as f64);
    layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let kind = match layer.kind {
                LayerKind::Conv | LayerKind::GroupedConv => 0.0,
                LayerKind::Pointwise => 0.25,
                LayerKind::Depthwise => 0.5,
                LayerKind::Linear => 0.75,
                _ => 1.0,
            };
            Step {
                features: [
                    l as f32 / layers.len() as f32,
                    kind,
                    (layer.input_shape.c as f64 / in_c) as f32,
                    (layer.output_shape.c as f64 / out_c) as f32,
                    (layer.window.map_or(1, |w| w.kernel[0]) as f64 / kernel) as f32,
                    (layer.window.map_or(1, |w| w.stride[0]) as f64 / stride) as f32,
                    (layer.weights as f64 / params) as f32,
                    ((layer.input_shape.h * layer.input_shape.w) as f64 / size) as f32,
                    f32::from(u8::from(layer.kind.has_weights())),
                ],
                weight_var: problem.space.weight_var[l],
                output_var: problem.space.act_var[layer.output],
            }
        })
        .collect()
}

/// The choice a continuous action in [0, 1] selects among `n`.
fn choice(action: f32, n: usize) -> u8 {
    ((action.clamp(0.0, 1.0) * n as f32) as usize).min(n - 1) as u8
}

/// Lowers precisions from the last layer backwards until the assignment is feasible (HAQ's
/// budget enforcement); `None` when even the narrowest choices do not fit.
fn enforce(runner: &Runner, steps: &[Step], mut genes: Vec<u8>) -> Result<Option<Candidate>, Stop> {
    let mut candidate = runner.evaluate(&genes)?;
    while !candidate.feasible() {
        let mut lowered = false;
        for step in steps.iter().rev() {
            for var in step.weight_var.into_iter().chain([step.output_var]) {
                if genes[var] > 0 {
                    genes[var] -= 1;
                    lowered = true;
                    candidate = runner.evaluate(&genes)?;
                    if candidate.feasible() {
                        return Ok(Some(candidate));
                    }
                }
            }
        }
        if !lowered {
            return Ok(None);
        }
    }
    Ok(Some(candidate))
}

/// A state and the action taken in it.
type Transition = ([f32; STATE], [f32; ACTIONS]);

/// Rolls out one episode from `genes` (the widest choices): per layer, random actions during the
/// warm-up (`exploration` is `None`), afterwards the actor's plus Gaussian noise of the given
/// standard deviation. Returns the assignment the actions pick and the transitions.
fn roll_out(
    problem: &Problem,
    steps: &[Step],
    mut genes: Vec<u8>,
    exploration: Option<(&Mlp, f64)>,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<(Vec<u8>, Vec<Transition>), SearchError> {
    let mut previous = [0.0f32; ACTIONS];
    let mut transitions = Vec::with_capacity(steps.len());
    for step in steps {
        let mut state = [0.0f32; STATE];
        state[..STATE - 1].copy_from_slice(&step.features);
        state[STATE - 1] = previous[0];
        let action: [f32; ACTIONS] = match exploration {
            None => [rng.random_range(0.0..1.0), rng.random_range(0.0..1.0)],
            Some((actor, noise)) => {
                let out = act(actor, matrix(&[state], device))
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| SearchError::Agent(format!("{e:?}")))?;
                let mut a = [0.0; ACTIONS];
                for (k, slot) in a.iter_mut().enumerate() {
                    // Gaussian noise by Box-Muller, truncated to [0, 1].
                    let (u1, u2): (f64, f64) =
                        (rng.random_range(1e-12..1.0), rng.random_range(0.0..1.0));
                    let gauss = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    *slot = (f64::from(out[k]) + noise * gauss).clamp(0.0, 1.0) as f32;
                }
                a
            }
        };
        if let Some(v) = step.weight_var {
            genes[v] = choice(action[0], problem.space.vars[v].choices.len());
        }
        genes[step.output_var] =
            choice(action[1], problem.space.vars[step.output_var].choices.len());
        previous = action;
        transitions.push((state, action));
    }
    Ok((genes, transitions))
}

struct Replay {
    states: Vec<[f32; STATE]>,
    actions: Vec<[f32; ACTIONS]>,
    rewards: Vec<f32>,
}

impl Replay {
    fn push(&mut self, state: [f32; STATE], action: [f32; ACTIONS], reward: f32) {
        if self.states.len() == REPLAY {
            self.states.remove(0);
            self.actions.remove(0);
            self.rewards.remove(0);
        }
        self.states.push(state);
        self.actions.push(action);
        self.rewards.push(reward);
    }
}

fn matrix<const N: usize>(rows: &[[f32; N]], device: &Device) -> Tensor<2> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), N]), device)
}

impl Policy for Ddpg {
    fn name(&self) -> &'static str {
        "rl"
    }

    fn seeded(&self) -> bool {
        true
    }

    fn run(&mut self, runner: &Runner) -> Result<Outcome, SearchError> {
        let problem = runner.problem;
        let device = Device::flex().autodiff();
        device.seed(runner.settings.seed);
        let mut actor = Mlp::new(STATE, ACTIONS, &device);
        let mut critic = Mlp::new(STATE + ACTIONS, 1, &device);
        let mut actor_optim = AdamConfig::new().init();
        let mut critic_optim = AdamConfig::new().init();
        let mut rng = runner.rng();
        let steps = steps(runner);
        let primary = problem.objective.primary();
        let reference = runner
            .evaluate(&problem.space.uniform(Bits::B8))?
            .metrics
            .get(primary)
            .max(1e-12);
        let widest: Vec<u8> = problem
            .space
            .vars
            .iter()
            .map(|v| (v.choices.len() - 1) as u8)
            .collect();

        let mut replay = Replay {
            states: Vec::new(),
            actions: Vec::new(),
            rewards: Vec::new(),
        };
        let mut archive = Archive::default();
        let mut baseline: Option<f64> = None;
        let mut noise = NOISE;
        let mut updates = 0usize;
        let mut best = f64::INFINITY;
        let mut completed = 0;
        for episode in 0..self.episodes {
            let exploration = (episode >= WARMUP).then_some((&actor, noise));
            let (genes, transitions) = roll_out(
                problem,
                &steps,
                widest.clone(),
                exploration,
                &mut rng,
                &device,
            )?;
            if episode >= WARMUP {
                noise *= NOISE_DECAY;
            }
            let Ok(enforced) = enforce(runner, &steps, genes) else {
                break;
            };
            completed = episode + 1;
            let reward = match enforced {
                Some(c) => {
                    let value = c.metrics.get(primary);
                    best = best.min(value);
                    archive.insert(problem.objectives(&c), c);
                    -value / reference
                }
                None => INFEASIBLE_REWARD,
            };
            let advantage = reward - baseline.unwrap_or(reward);
            baseline = Some(baseline.map_or(reward, |b| 0.95 * b + 0.05 * reward));
            for (state, action) in transitions {
                replay.push(state, action, advantage as f32);
            }
            runner.status(format!(
                "episode {}/{}, best {primary} {best:.4e}",
                episode + 1,
                self.episodes
            ));
            if episode + 1 < WARMUP || replay.states.len() < BATCH {
                continue;
            }

            // Learn from the replay buffer.
            for _ in 0..UPDATES_PER_EPISODE {
                let picks: Vec<usize> = (0..BATCH)
                    .map(|_| rng.random_range(0..replay.states.len()))
                    .collect();
                let states: Vec<[f32; STATE]> = picks.iter().map(|&i| replay.states[i]).collect();
                let actions: Vec<[f32; ACTIONS]> =
                    picks.iter().map(|&i| replay.actions[i]).collect();
                let rewards: Vec<[f32; 1]> = picks.iter().map(|&i| [replay.rewards[i]]).collect();
                let (s, a, r) = (
                    matrix(&states, &device),
                    matrix(&actions, &device),
                    matrix(&rewards, &device),
                );

                let q = critic_value(&critic, s.clone(), a);
                let critic_loss = (q - r).powi_scalar(2).mean();
                let grads = GradientsParams::from_grads(critic_loss.backward(), &critic);
                critic = critic_optim.step(CRITIC_LR, critic, grads);

                let actor_loss = critic_value(&critic, s.clone(), act(&actor, s))
                    .mean()
                    .neg();
                let grads = GradientsParams::from_grads(actor_loss.backward(), &actor);
                actor = actor_optim.step(ACTOR_LR, actor, grads);

                updates += 1;
            }
        }
        let episodes = if completed < self.episodes {
            format!("{completed} of {} episodes", self.episodes)
        } else {
            format!("{completed} episodes")
        };
        Ok(Outcome {
            termination: format!("{episodes}, {updates} updates"),
            candidates: archive.into_payloads(),
            optimality: None,
        })
    }
}
