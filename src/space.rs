//! Search spaces: which precisions each layer's weights and each activation buffer may take,
//! loaded from `search_spaces/*.toml` and resolved against a network and a platform.
//!
//! A resolved [`Space`] is a list of variables, each with its allowed precisions: one per layer
//! with weights, and one per group of activation buffers that must share a precision (a buffer
//! alone, or the inputs of a residual add). Producer and consumer of a buffer thus always agree.

use crate::graph::{ActId, FusedGraph, Layer, LayerId, LayerKind};
use crate::platform::Platform;
use crate::precision::{Assignment, Bits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in search spaces, by name.
pub(crate) const BUILT_IN: &[(&str, &str)] = &[
    ("default", include_str!("../search_spaces/default.toml")),
    ("wide", include_str!("../search_spaces/wide.toml")),
];

/// Allowed precisions for a kind of layer or one layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BitsOverride {
    pub weight_bits: Option<Vec<Bits>>,
    /// Precisions of the layer's output buffer.
    pub activation_bits: Option<Vec<Bits>>,
}

/// Precisions pinned at the ends of the network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pins {
    /// Weights of the first layer with weights.
    pub first_layer: Option<Bits>,
    /// Weights of the last layer with weights.
    pub last_layer: Option<Bits>,
    /// The network's input buffer.
    pub input: Option<Bits>,
    /// The network's output buffer.
    pub output: Option<Bits>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpaceConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub weight_bits: Vec<Bits>,
    pub activation_bits: Vec<Bits>,
    /// Overrides by layer kind (`conv`, `pointwise`, `depthwise`, `linear`, `add`, ...).
    #[serde(default)]
    pub kinds: BTreeMap<String, BitsOverride>,
    /// Overrides by layer name.
    #[serde(default)]
    pub layers: BTreeMap<String, BitsOverride>,
    #[serde(default)]
    pub pin: Pins,
    /// Layers left out of the search: their weights and output stay at `frozen_bits`.
    #[serde(default)]
    pub frozen: Vec<String>,
    #[serde(default = "eight")]
    pub frozen_bits: Bits,
    /// Whether the two inputs of every residual add share a precision.
    #[serde(default = "yes")]
    pub tie_residual_inputs: bool,
    /// Further groups of buffers (by name) that must share a precision.
    #[serde(default)]
    pub ties: Vec<Vec<String>>,
    /// Network widths the main job searches (zoo networks with a width option). Empty: the
    /// network's own width. The widest at which its uniform 8-bit version fits the limits
    /// joins them.
    #[serde(default)]
    pub widths: Vec<f64>,
    /// Input resolutions (image sides in pixels) the main job searches at every width (zoo
    /// networks with a resolution option; the dataset's images are resized). Empty: the
    /// network's own.
    #[serde(default)]
    pub resolutions: Vec<usize>,
    /// Where the configuration was read from (a file, or `built-in search space NAME`), for
    /// errors.
    #[serde(skip)]
    pub origin: String,
}

fn eight() -> Bits {
    Bits::B8
}

fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error(
        "unknown search space '{0}'; built in: default, wide, or give a search space .toml file"
    )]
    Unknown(String),
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// What a variable sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum VarKind {
    Weights(LayerId),
    Activations(Vec<ActId>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub kind: VarKind,
    pub name: String,
    /// Allowed precisions, narrowest first.
    pub choices: Vec<Bits>,
}

/// A search space resolved against a network and a platform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Space {
    pub name: String,
    pub vars: Vec<Variable>,
    /// The variable of each layer's weights (`None` for layers without weights).
    pub weight_var: Vec<Option<usize>>,
    /// The variable of each activation buffer.
    pub act_var: Vec<usize>,
}

impl SpaceConfig {
    /// A built-in search space by name, or a search space file.
    pub fn load(spec: &str) -> Result<SpaceConfig, SpaceError> {
        let (text, origin) = if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == spec) {
            (text.to_string(), format!("built-in search space {name}"))
        } else if Path::new(spec).extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(spec).map_err(|e| SpaceError::Parse {
                origin: spec.to_string(),
                message: format!("cannot read the file: {e}"),
            })?;
            (text, spec.to_string())
        } else {
            return Err(SpaceError::Unknown(spec.to_string()));
        };
        SpaceConfig::parse(&text, &origin)
    }

    /// Parses a search space file's text; `origin` names it in errors, including those of
    /// [`Space::resolve`].
    pub fn parse(text: &str, origin: &str) -> Result<SpaceConfig, SpaceError> {
        let mut config: SpaceConfig = toml::from_str(text).map_err(|e| SpaceError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        config.origin = origin.to_string();
        config.check_widths()?;
        Ok(config)
    }
}

/// The widths a zoo network accepts (`graph::zoo`'s `width` option).
const WIDTH_RANGE: std::ops::RangeInclusive<f64> = 0.05..=4.0;

/// Union-find over buffers, for ties.
struct Groups(Vec<usize>);

impl Groups {
    fn find(&mut self, x: usize) -> usize {
        let parent = self.0[x];
        if parent == x {
            return x;
        }
        let root = self.find(parent);
        self.0[x] = root;
        root
    }

    fn join(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}

fn intersect(choices: &mut Vec<Bits>, allowed: &[Bits]) {
    choices.retain(|b| allowed.contains(b));
}

fn list(bits: &[Bits]) -> String {
    let names: Vec<String> = bits.iter().map(Bits::to_string).collect();
    format!("{{{}}}", names.join(", "))
}

impl SpaceConfig {
    /// An error about this configuration, named by its file (or its name when it has none).
    fn invalid(&self, message: String) -> SpaceError {
        SpaceError::Invalid {
            origin: if self.origin.is_empty() {
                format!("search space {}", self.name)
            } else {
                self.origin.clone()
            },
            message,
        }
    }

    /// Refuses widths a zoo network cannot take, resolutions of no pixels and an entry listed
    /// twice.
    fn check_widths(&self) -> Result<(), SpaceError> {
        for (i, r) in self.resolutions.iter().enumerate() {
            if *r == 0 {
                return Err(self.invalid("resolutions: 0 is not an image side".into()));
            }
            if self.resolutions[..i].contains(r) {
                return Err(self.invalid(format!("resolutions: {r} is listed twice")));
            }
        }
        for (i, w) in self.widths.iter().enumerate() {
            if !WIDTH_RANGE.contains(w) {
                return Err(self.invalid(format!(
                    "widths: {w} is outside {}..{}",
                    WIDTH_RANGE.start(),
                    WIDTH_RANGE.end()
                )));
            }
            if self.widths[..i].contains(w) {
                return Err(self.invalid(format!("widths: {w} is listed twice")));
            }
        }
        Ok(())
    }

    /// The kind and layer overrides that apply to `layer`, kind first.
    fn overrides(&self, layer: &Layer) -> impl Iterator<Item = &BitsOverride> {
        [
            self.kinds.get(layer.kind.name()),
            self.layers.get(&layer.name),
        ]
        .into_iter()
        .flatten()
    }

    /// Refuses layer names the network does not have and layer kinds qsearch does not know.
    fn check_names(&self, graph: &FusedGraph) -> Result<(), SpaceError> {
        for name in self.layers.keys().chain(&self.frozen) {
            if graph.layer_by_name(name).is_none() {
                let names: Vec<&str> = graph
                    .layers
                    .iter()
                    .take(12)
                    .map(|l| l.name.as_str())
                    .collect();
                return Err(self.invalid(format!(
                    "names layer '{name}', which {} does not have (its layers: {}{})",
                    graph.name,
                    names.join(", "),
                    if graph.layers.len() > 12 { ", ..." } else { "" }
                )));
            }
        }
        for kind in self.kinds.keys() {
            const KINDS: &[&str] = &[
                "conv",
                "pointwise",
                "depthwise",
                "grouped",
                "linear",
                "add",
                "maxpool",
                "avgpool",
                "globalavgpool",
                "globalmaxpool",
                "elementwise",
            ];
            if !KINDS.contains(&kind.as_str()) {
                return Err(self.invalid(format!(
                    "unknown layer kind '{kind}' (kinds: {})",
                    KINDS.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// What resolving a search space looks at.
struct Resolver<'a> {
    config: &'a SpaceConfig,
    graph: &'a FusedGraph,
    platform: &'a Platform,
}

impl Resolver<'_> {
    /// Whether `channels` channels can be packed at `bits` by the platform's kernels.
    fn aligned(&self, bits: Bits, channels: usize) -> bool {
        channels.is_multiple_of(self.platform.kernels.channel_multiple(bits))
    }

    /// One variable per layer with weights (pushed onto `vars`): the space's precisions, the
    /// platform's, the overrides, pins and frozen layers, and channel alignment. Returns each
    /// layer's variable.
    fn weight_vars(&self, vars: &mut Vec<Variable>) -> Result<Vec<Option<usize>>, SpaceError> {
        let (config, graph, platform) = (self.config, self.graph, self.platform);
        let kernels = &platform.kernels;
        let weighted: Vec<LayerId> = graph.weighted_layers().map(|(l, _)| l).collect();
        let (first, last) = (weighted.first().copied(), weighted.last().copied());
        let mut weight_var = vec![None; graph.layers.len()];
        for &l in &weighted {
            let layer = &graph.layers[l];
            let mut choices = config.weight_bits.clone();
            intersect(&mut choices, &kernels.weight_bits);
            for o in config.overrides(layer) {
                if let Some(bits) = &o.weight_bits {
                    intersect(&mut choices, bits);
                }
            }
            let pinned = if config.frozen.contains(&layer.name) {
                Some(config.frozen_bits)
            } else if Some(l) == first && config.pin.first_layer.is_some() {
                config.pin.first_layer
            } else if Some(l) == last {
                config.pin.last_layer
            } else {
                None
            };
            if let Some(p) = pinned {
                choices = vec![p];
            }
            // Sub-byte weights are packed along the reduction's channels (along the output
            // channels for depthwise layers, which have one input channel per group).
            let channels = if layer.kind == LayerKind::Depthwise {
                layer.output_shape.c
            } else {
                layer.input_shape.c / layer.groups
            };
            let before = choices.clone();
            choices.retain(|&b| self.aligned(b, channels));
            if choices.is_empty() {
                return Err(config.invalid(format!(
                    "layer '{}' has no weight precision left: the space allows {} and {} supports {}, but {channels} channels need multiples of {} at 4 bit and {} at 2 bit",
                    layer.name,
                    list(&before),
                    platform.name,
                    list(&kernels.weight_bits),
                    kernels.channel_multiple(Bits::B4),
                    kernels.channel_multiple(Bits::B2)
                )));
            }
            choices.sort_unstable();
            weight_var[l] = Some(vars.len());
            vars.push(Variable {
                kind: VarKind::Weights(l),
                name: format!("{}.weights", layer.name),
                choices,
            });
        }
        Ok(weight_var)
    }

    /// The precisions each activation buffer allows on its own: the space's, the platform's,
    /// its producer's overrides and freezing, the pins at the network's ends, and alignment.
    fn buffer_choices(&self) -> Vec<Vec<Bits>> {
        let (config, graph) = (self.config, self.graph);
        let mut buffer_choices: Vec<Vec<Bits>> = Vec::with_capacity(graph.tensors.len());
        for (t, buffer) in graph.tensors.iter().enumerate() {
            let mut choices = config.activation_bits.clone();
            intersect(&mut choices, &self.platform.kernels.activation_bits);
            if let Some(p) = buffer.producer {
                let layer = &graph.layers[p];
                for o in config.overrides(layer) {
                    if let Some(bits) = &o.activation_bits {
                        intersect(&mut choices, bits);
                    }
                }
                if config.frozen.contains(&layer.name) {
                    choices = vec![config.frozen_bits];
                }
            }
            let pinned = if t == graph.input {
                config.pin.input
            } else if t == graph.output {
                config.pin.output
            } else {
                None
            };
            if let Some(p) = pinned {
                choices = vec![p];
            }
            choices.retain(|&b| self.aligned(b, buffer.shape.c));
            buffer_choices.push(choices);
        }
        buffer_choices
    }

    /// The buffers that must share a precision (residual inputs, the configuration's ties), as
    /// groups keyed by their smallest buffer, in that order.
    fn tied_groups(&self) -> Result<BTreeMap<usize, Vec<ActId>>, SpaceError> {
        let (config, graph) = (self.config, self.graph);
        let mut groups = Groups((0..graph.tensors.len()).collect());
        if config.tie_residual_inputs {
            for layer in graph.layers.iter().filter(|l| l.kind == LayerKind::Add) {
                groups.join(layer.inputs[0], layer.inputs[1]);
            }
        }
        for tie in &config.ties {
            let ids: Vec<ActId> = tie
                .iter()
                .map(|name| {
                    graph
                        .tensors
                        .iter()
                        .position(|t| &t.name == name)
                        .ok_or_else(|| {
                            config.invalid(format!(
                                "tie names buffer '{name}', which {} does not have",
                                graph.name
                            ))
                        })
                })
                .collect::<Result<_, _>>()?;
            for pair in ids.windows(2) {
                groups.join(pair[0], pair[1]);
            }
        }
        let mut members: BTreeMap<usize, Vec<ActId>> = BTreeMap::new();
        for t in 0..graph.tensors.len() {
            members.entry(groups.find(t)).or_default().push(t);
        }
        Ok(members)
    }

    /// One variable per group of tied buffers (pushed onto `vars`), allowing the precisions
    /// every member allows. Returns each buffer's variable.
    fn activation_vars(&self, vars: &mut Vec<Variable>) -> Result<Vec<usize>, SpaceError> {
        let graph = self.graph;
        let buffer_choices = self.buffer_choices();
        let mut act_var = vec![0; graph.tensors.len()];
        for buffers in self.tied_groups()?.into_values() {
            let mut choices = buffer_choices[buffers[0]].clone();
            for &t in &buffers[1..] {
                intersect(&mut choices, &buffer_choices[t]);
            }
            let names: Vec<&str> = buffers
                .iter()
                .map(|&t| graph.tensors[t].name.as_str())
                .collect();
            if choices.is_empty() {
                let detail: Vec<String> = buffers
                    .iter()
                    .map(|&t| {
                        format!(
                            "'{}' ({} channels) allows {}",
                            graph.tensors[t].name,
                            graph.tensors[t].shape.c,
                            list(&buffer_choices[t])
                        )
                    })
                    .collect();
                return Err(self.config.invalid(format!(
                    "no precision is allowed for activation buffer{} {}",
                    if buffers.len() > 1 {
                        "s tied together:"
                    } else {
                        ""
                    },
                    detail.join("; ")
                )));
            }
            choices.sort_unstable();
            for &t in &buffers {
                act_var[t] = vars.len();
            }
            vars.push(Variable {
                kind: VarKind::Activations(buffers.clone()),
                name: names.join("+"),
                choices,
            });
        }
        Ok(act_var)
    }
}

impl Space {
    /// Resolves `config` for `graph` on `platform`: kind and layer overrides, pins, frozen layers,
    /// the platform's precisions and channel alignment, and ties. The weights' variables come
    /// first, then the activation groups'.
    pub(crate) fn resolve(
        config: &SpaceConfig,
        graph: &FusedGraph,
        platform: &Platform,
    ) -> Result<Space, SpaceError> {
        config.check_names(graph)?;
        let resolver = Resolver {
            config,
            graph,
            platform,
        };
        let mut vars = Vec::new();
        let weight_var = resolver.weight_vars(&mut vars)?;
        let act_var = resolver.activation_vars(&mut vars)?;
        Ok(Space {
            name: config.name.clone(),
            vars,
            weight_var,
            act_var,
        })
    }

    /// The assignment a choice index per variable stands for.
    pub fn decode(&self, genes: &[u8]) -> Assignment {
        Assignment {
            weight_bits: self
                .weight_var
                .iter()
                .map(|v| v.map_or(Bits::B8, |v| self.vars[v].choices[genes[v] as usize]))
                .collect(),
            activation_bits: self
                .act_var
                .iter()
                .map(|&v| self.vars[v].choices[genes[v] as usize])
                .collect(),
        }
    }

    /// The choice indices of `a`, if every precision in it is allowed.
    #[cfg(test)]
    pub(crate) fn encode(&self, a: &Assignment) -> Option<Vec<u8>> {
        self.vars
            .iter()
            .map(|var| {
                let bits = match &var.kind {
                    VarKind::Weights(l) => a.weight_bits[*l],
                    VarKind::Activations(ts) => a.activation_bits[ts[0]],
                };
                var.choices.iter().position(|&c| c == bits).map(|i| i as u8)
            })
            .collect()
    }

    /// Every variable at the allowed precision closest to `bits` (at most `bits` where possible).
    pub fn uniform(&self, bits: Bits) -> Vec<u8> {
        self.vars
            .iter()
            .map(|var| {
                let below = var.choices.iter().rposition(|&c| c <= bits);
                below.unwrap_or(0) as u8
            })
            .collect()
    }

    /// Number of assignments in the space.
    pub fn size(&self) -> f64 {
        self.vars.iter().map(|v| v.choices.len() as f64).product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::zoo;

    fn space(model: &str, name: &str) -> (FusedGraph, Result<Space, SpaceError>) {
        let graph = FusedGraph::from_graph(&zoo::build(model).unwrap());
        let platform = Platform::load("gap8").unwrap();
        let config = SpaceConfig::load(name).unwrap();
        let space = Space::resolve(&config, &graph, &platform);
        (graph, space)
    }

    #[test]
    fn default_space_pins_ends_and_ties_residual_inputs() {
        let (graph, space) = space("resnet8", "default");
        let space = space.unwrap();
        let first = graph.weighted_layers().next().unwrap().0;
        assert_eq!(
            space.vars[space.weight_var[first].unwrap()].choices,
            vec![Bits::B8]
        );
        assert_eq!(
            space.vars[space.act_var[graph.input]].choices,
            vec![Bits::B8]
        );
        assert_eq!(
            space.vars[space.act_var[graph.output]].choices,
            vec![Bits::B8]
        );
        for add in graph.layers.iter().filter(|l| l.kind == LayerKind::Add) {
            assert_eq!(space.act_var[add.inputs[0]], space.act_var[add.inputs[1]]);
        }
        // Round trip through the encoding.
        let genes = space.uniform(Bits::B4);
        assert_eq!(space.encode(&space.decode(&genes)), Some(genes));
    }

    #[test]
    fn channel_alignment_removes_sub_byte_choices() {
        // fashion-cnn's input has 1 channel: conv1's weights cannot go below 8 bit even unpinned.
        let graph = FusedGraph::from_graph(&zoo::build("fashion-cnn").unwrap());
        let platform = Platform::load("gap8").unwrap();
        let mut config = SpaceConfig::load("default").unwrap();
        config.pin = Pins::default();
        let space = Space::resolve(&config, &graph, &platform).unwrap();
        assert_eq!(
            space.vars[space.weight_var[0].unwrap()].choices,
            vec![Bits::B8]
        );
        assert_eq!(
            space.vars[space.act_var[graph.input]].choices,
            vec![Bits::B8]
        );
    }

    #[test]
    fn bad_names_are_reported() {
        let graph = FusedGraph::from_graph(&zoo::build("resnet8").unwrap());
        let platform = Platform::load("gap8").unwrap();
        let mut config = SpaceConfig::load("default").unwrap();
        config.frozen = vec!["conv9".into()];
        let err = Space::resolve(&config, &graph, &platform)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("names layer 'conv9', which resnet8 does not have"),
            "{err}"
        );
        let mut config = SpaceConfig::load("default").unwrap();
        config.kinds.insert("lstm".into(), BitsOverride::default());
        let err = Space::resolve(&config, &graph, &platform)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown layer kind 'lstm'"), "{err}");
    }

    #[test]
    fn widths_are_parsed_and_checked() {
        let base = "name = \"w\"\nweight_bits = [8]\nactivation_bits = [8]\n";
        let config = SpaceConfig::parse(&format!("{base}widths = [0.5, 1.0]"), "w.toml").unwrap();
        assert_eq!(config.widths, vec![0.5, 1.0]);
        assert!(SpaceConfig::load("default").unwrap().widths.is_empty());
        for (widths, message) in [
            ("[0.5, 0]", "w.toml: widths: 0 is outside 0.05..4"),
            ("[0.5, 5.0]", "w.toml: widths: 5 is outside 0.05..4"),
            ("[0.75, 0.5, 0.75]", "w.toml: widths: 0.75 is listed twice"),
        ] {
            let err = SpaceConfig::parse(&format!("{base}widths = {widths}"), "w.toml")
                .unwrap_err()
                .to_string();
            assert_eq!(err, message);
        }
        let err = SpaceConfig::parse(&format!("{base}widths = [\"wide\"]"), "w.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("w.toml: "), "{err}");
        let config = SpaceConfig::parse(&format!("{base}resolutions = [20, 28]"), "r.toml");
        assert_eq!(config.unwrap().resolutions, vec![20, 28]);
        for (resolutions, message) in [
            ("[20, 0]", "r.toml: resolutions: 0 is not an image side"),
            ("[20, 24, 20]", "r.toml: resolutions: 20 is listed twice"),
        ] {
            let err = SpaceConfig::parse(&format!("{base}resolutions = {resolutions}"), "r.toml")
                .unwrap_err()
                .to_string();
            assert_eq!(err, message);
        }
    }
}
