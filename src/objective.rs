//! What a search minimises and under which limits, loaded from `objectives/*.toml` and amended
//! by command-line flags.

use crate::units::{parse_bytes, parse_latency};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The built-in objectives, by name.
pub(crate) const BUILT_IN: &[(&str, &str)] = &[
    ("latency", include_str!("../objectives/latency.toml")),
    ("memory", include_str!("../objectives/memory.toml")),
    ("energy", include_str!("../objectives/energy.toml")),
    ("accuracy", include_str!("../objectives/accuracy.toml")),
    (
        "latency-accuracy",
        include_str!("../objectives/latency-accuracy.toml"),
    ),
];

/// A quantity every candidate has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Cycles of one inference.
    Latency,
    /// Bytes of packed weights and requantization parameters.
    Flash,
    /// Peak bytes of live activations.
    Ram,
    /// Flash plus peak RAM: the on-chip memory the network needs.
    Memory,
    /// Joules per inference (platforms with power figures only).
    Energy,
    /// Predicted accuracy loss: the sum of the sensitivity table's entries.
    Accuracy,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::Latency,
        Metric::Flash,
        Metric::Ram,
        Metric::Memory,
        Metric::Energy,
        Metric::Accuracy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Latency => "latency",
            Metric::Flash => "flash",
            Metric::Ram => "ram",
            Metric::Memory => "memory",
            Metric::Energy => "energy",
            Metric::Accuracy => "accuracy",
        }
    }

    pub fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == text.trim())
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits as written in an objective file: sizes as `512KB`, latency as `5ms` or `2000000cycles`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub memory: Option<String>,
    pub flash: Option<String>,
    pub ram: Option<String>,
    pub latency: Option<String>,
    /// Joules per inference.
    pub energy: Option<f64>,
    /// Bound on the predicted accuracy loss, in the sensitivity table's unit.
    pub accuracy_drop: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Metrics to minimise; more than one gives a Pareto set.
    pub minimize: Vec<Metric>,
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectiveError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error(
        "unknown objective '{0}'; give a built-in one (latency, memory, energy, accuracy, latency-accuracy), a comma-separated list of metrics (latency, flash, ram, memory, energy, accuracy) or an objective .toml file"
    )]
    Unknown(String),
    #[error("{origin}: limit '{field}': {message}")]
    Limit {
        origin: String,
        field: &'static str,
        message: String,
    },
}

/// A limit on one metric, in the metric's own unit (cycles, bytes, joules, loss).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub metric: Metric,
    pub max: f64,
}

/// A resolved objective: metrics to minimise and limits in metric units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub name: String,
    pub minimize: Vec<Metric>,
    pub limits: Vec<Limit>,
}

impl Objective {
    /// A built-in objective, an objective file, or a comma-separated list of metrics.
    pub fn load(spec: &str) -> Result<ObjectiveConfig, ObjectiveError> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == spec) {
            return parse_config(text, &format!("built-in objective {name}"));
        }
        let path = Path::new(spec);
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(path).map_err(|e| ObjectiveError::Parse {
                origin: spec.to_string(),
                message: format!("cannot read the file: {e}"),
            })?;
            return parse_config(&text, spec);
        }
        let metrics: Option<Vec<Metric>> = spec.split(',').map(Metric::parse).collect();
        match metrics {
            Some(minimize) if !minimize.is_empty() => Ok(ObjectiveConfig {
                name: spec.replace(',', "-"),
                description: String::new(),
                minimize,
                limits: LimitsConfig::default(),
            }),
            _ => Err(ObjectiveError::Unknown(spec.to_string())),
        }
    }

    /// Converts the configuration's limits to metric units (`clock_hz` turns times into cycles).
    pub(crate) fn resolve(
        config: &ObjectiveConfig,
        clock_hz: f64,
        origin: &str,
    ) -> Result<Objective, ObjectiveError> {
        let limit_err = |field: &'static str, message: String| ObjectiveError::Limit {
            origin: origin.to_string(),
            field,
            message,
        };
        let mut limits = Vec::new();
        let l = &config.limits;
        for (field, metric, text) in [
            ("memory", Metric::Memory, &l.memory),
            ("flash", Metric::Flash, &l.flash),
            ("ram", Metric::Ram, &l.ram),
        ] {
            if let Some(text) = text {
                let bytes = parse_bytes(text).map_err(|e| limit_err(field, e.to_string()))?;
                limits.push(Limit {
                    metric,
                    max: bytes as f64,
                });
            }
        }
        if let Some(text) = &l.latency {
            let cycles = parse_latency(text, clock_hz).map_err(|e| limit_err("latency", e))?;
            limits.push(Limit {
                metric: Metric::Latency,
                max: cycles,
            });
        }
        for (field, metric, value) in [
            ("energy", Metric::Energy, l.energy),
            ("accuracy_drop", Metric::Accuracy, l.accuracy_drop),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(limit_err(
                        field,
                        format!("{v} must be a non-negative number"),
                    ));
                }
                limits.push(Limit { metric, max: v });
            }
        }
        if config.minimize.is_empty() {
            return Err(ObjectiveError::Parse {
                origin: origin.to_string(),
                message: "'minimize' lists no metric".into(),
            });
        }
        Ok(Objective {
            name: config.name.clone(),
            minimize: config.minimize.clone(),
            limits,
        })
    }

    /// The metric the single-objective policies minimise.
    pub fn primary(&self) -> Metric {
        self.minimize[0]
    }

    pub fn limit(&self, metric: Metric) -> Option<f64> {
        self.limits
            .iter()
            .find(|l| l.metric == metric)
            .map(|l| l.max)
    }
}

/// Parses an objective file's text; `origin` names it in errors.
pub(crate) fn parse_config(text: &str, origin: &str) -> Result<ObjectiveConfig, ObjectiveError> {
    toml::from_str(text).map_err(|e| ObjectiveError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_objectives_load() {
        for (name, _) in BUILT_IN {
            let config = Objective::load(name).unwrap();
            let objective = Objective::resolve(&config, 100e6, name).unwrap();
            assert!(!objective.minimize.is_empty());
        }
    }

    #[test]
    fn metric_lists_and_limits() {
        let config = Objective::load("latency,accuracy").unwrap();
        assert_eq!(config.minimize, vec![Metric::Latency, Metric::Accuracy]);
        let mut config = config;
        config.limits.memory = Some("512KB".into());
        config.limits.latency = Some("5ms".into());
        let o = Objective::resolve(&config, 100e6, "cli").unwrap();
        assert_eq!(o.limit(Metric::Memory), Some(512_000.0));
        assert_eq!(o.limit(Metric::Latency), Some(500_000.0));
        assert!(Objective::load("speed").is_err());
        config.limits.flash = Some("lots".into());
        let err = Objective::resolve(&config, 100e6, "mine.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mine.toml: limit 'flash'"), "{err}");
    }
}
