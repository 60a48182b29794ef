//! The network variants the main job searches: a zoo network at every width and input
//! resolution its search space lists (or its own), and the widest width whose uniform 8-bit
//! network meets the memory limits.

use super::FlowError;
use crate::graph::{FusedGraph, zoo};
use crate::objective::Metric;
use crate::precision::{Assignment, Bits};
use crate::search::Problem;

/// One network variant: its width, its input resolution (for zoo networks with that option)
/// and the model spec that builds it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Variant {
    pub width: f64,
    pub resolution: Option<usize>,
    pub spec: String,
}

impl Variant {
    /// The same width and resolution (whatever spec builds them).
    pub fn same_shape(&self, other: &Variant) -> bool {
        (self.width, self.resolution) == (other.width, other.resolution)
    }

    /// How the report names it: `width 0.9`, and `width 0.9 at 20x20` when `with_resolution`.
    pub fn name(&self, with_resolution: bool) -> String {
        match self.resolution {
            Some(r) if with_resolution => format!("width {:?} at {r}x{r}", self.width),
            _ => format!("width {:?}", self.width),
        }
    }
}

/// The order variants are searched and reported in: widest first, then the larger input.
pub(super) fn widest_first(a: &Variant, b: &Variant) -> std::cmp::Ordering {
    b.width
        .total_cmp(&a.width)
        .then(b.resolution.cmp(&a.resolution))
}

/// A zoo network's entry and the options its spec gives (`a=1,b=2`).
fn zoo_entry(model: &str) -> Option<(&'static zoo::ZooEntry, &str)> {
    let name = model.strip_prefix("zoo:")?;
    let (base, options) = name.split_once(':').unwrap_or((name, ""));
    let entry = zoo::ENTRIES.iter().find(|e| e.name == base)?;
    Some((entry, options))
}

/// The value of option `key` in `model`'s spec, else its default; `None` when `model` is not a
/// zoo network with that option.
fn own_option(model: &str, key: &str) -> Option<f64> {
    let (entry, options) = zoo_entry(model)?;
    let default = entry.options.iter().find(|(k, _)| *k == key)?.1;
    let given = options
        .split(',')
        .find_map(|o| o.strip_prefix(key)?.strip_prefix('=')?.parse().ok());
    Some(given.unwrap_or(default))
}

/// The width of `model`, when it is a zoo network with a width option.
pub(super) fn own_width(model: &str) -> Option<f64> {
    own_option(model, "width")
}

/// The input resolution of `model`, when it is a zoo network with a resolution option.
pub(super) fn own_resolution(model: &str) -> Option<usize> {
    own_option(model, "resolution").map(|r| r as usize)
}

/// `model`'s zoo spec with the options in `changes` set; `None` unless it is a zoo network
/// with all of them.
fn respec(model: &str, changes: &[(&str, f64)]) -> Option<String> {
    let (entry, options) = zoo_entry(model)?;
    if !changes
        .iter()
        .all(|(key, _)| entry.options.iter().any(|(k, _)| k == key))
    {
        return None;
    }
    let changed = |o: &str| {
        changes
            .iter()
            .any(|(key, _)| o.split('=').next() == Some(key))
    };
    let mut kept: Vec<String> = options
        .split(',')
        .filter(|o| !o.is_empty() && !changed(o))
        .map(str::to_string)
        .collect();
    kept.extend(changes.iter().map(|(key, value)| format!("{key}={value}")));
    Some(format!("zoo:{}:{}", entry.name, kept.join(",")))
}

fn no_option(space: &str, model: &str, listed: &str, option: &str) -> FlowError {
    FlowError::Input(format!(
        "the search space {space} lists {listed}, but {model} has no {option} option; {listed} apply to the zoo networks that take one (see `qsearch zoo`)"
    ))
}

/// The variants the search space lists: every listed width (else the network's own, 1.0 when
/// it has none) at every listed resolution (else its own), widest and then largest first,
/// `model` itself for its own width and resolution. An error names the list a network without
/// the option was given. The widest width whose uniform 8-bit network fits joins them later
/// ([`widest_fitting`]).
pub(super) fn listed(
    model: &str,
    space: &str,
    widths: &[f64],
    resolutions: &[usize],
) -> Result<Vec<Variant>, FlowError> {
    let (own_w, own_r) = (own_width(model), own_resolution(model));
    if !widths.is_empty() && own_w.is_none() {
        return Err(no_option(space, model, "widths", "width"));
    }
    if !resolutions.is_empty() && own_r.is_none() {
        return Err(no_option(space, model, "resolutions", "resolution"));
    }
    let widths = if widths.is_empty() {
        vec![own_w.unwrap_or(1.0)]
    } else {
        widths.to_vec()
    };
    let resolutions: Vec<Option<usize>> = if resolutions.is_empty() {
        vec![own_r]
    } else {
        resolutions.iter().copied().map(Some).collect()
    };
    let mut variants = Vec::new();
    for &width in &widths {
        for &resolution in &resolutions {
            // Only what differs from `model` changes, so a variant has one spec (and one cached
            // training) however it was listed.
            let mut changes = Vec::new();
            if Some(width) != own_w.or(Some(1.0)) {
                changes.push(("width", width));
            }
            if resolution != own_r {
                changes.extend(resolution.map(|r| ("resolution", r as f64)));
            }
            let spec = if changes.is_empty() {
                model.to_string()
            } else {
                respec(model, &changes).expect("the options were checked above")
            };
            variants.push(Variant {
                width,
                resolution,
                spec,
            });
        }
    }
    variants.sort_by(widest_first);
    Ok(variants)
}

/// The widest scaling of `model` (at its own resolution, in steps of 1/40 from 1.0 down to
/// 0.25) whose uniform 8-bit network meets `problem`'s memory limits and the platform's
/// memories; `None` without memory limits or a width option.
pub(super) fn widest_fitting(model: &str, problem: &Problem) -> Result<Option<Variant>, FlowError> {
    let memory_limits: Vec<_> = problem
        .objective
        .limits
        .iter()
        .filter(|l| matches!(l.metric, Metric::Memory | Metric::Flash | Metric::Ram))
        .collect();
    if memory_limits.is_empty() {
        return Ok(None);
    }
    for k in (10..=40).rev() {
        let width = f64::from(k) / 40.0;
        let spec = if own_width(model) == Some(width) {
            model.to_string()
        } else {
            let Some(spec) = respec(model, &[("width", width)]) else {
                return Ok(None);
            };
            spec
        };
        let graph = crate::graph::load_model(&spec)?;
        let fused = FusedGraph::from_graph(&graph);
        let table = crate::cost::CostTable::build(&fused, &problem.platform);
        let costs = table.evaluate(&Assignment::uniform(
            fused.layers.len(),
            fused.tensors.len(),
            Bits::B8,
        ));
        let fits = memory_limits.iter().all(|l| {
            let v = match l.metric {
                Metric::Memory => costs.total_memory(),
                Metric::Flash => costs.flash,
                _ => costs.ram,
            };
            v as f64 <= l.max
        }) && costs.fits_l1
            && costs.fits_l2;
        if fits {
            return Ok(Some(Variant {
                width,
                resolution: own_resolution(model),
                spec,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(width: f64, resolution: Option<usize>, spec: &str) -> Variant {
        Variant {
            width,
            resolution,
            spec: spec.into(),
        }
    }

    #[test]
    fn listed_widths_name_their_zoo_specs_and_need_a_width_option() {
        let specs = listed("zoo:fashion-cnn:seed=1", "w.toml", &[0.5, 1.0], &[]).unwrap();
        assert_eq!(
            specs,
            vec![
                variant(1.0, Some(28), "zoo:fashion-cnn:seed=1"),
                variant(0.5, Some(28), "zoo:fashion-cnn:seed=1,width=0.5"),
            ]
        );
        let own = listed("zoo:fashion-cnn:width=0.5", "default", &[], &[]).unwrap();
        assert_eq!(
            own,
            vec![variant(0.5, Some(28), "zoo:fashion-cnn:width=0.5")]
        );
        assert_eq!(
            listed("net.onnx", "default", &[], &[]).unwrap(),
            vec![variant(1.0, None, "net.onnx")]
        );
        for model in ["net.onnx", "zoo:resnet8"] {
            let err = listed(model, "w.toml", &[0.5], &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(
                    "the search space w.toml lists widths, but {model} has no width option"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn listed_resolutions_cross_the_widths() {
        let specs = listed("zoo:fashion-cnn", "r.toml", &[0.5, 1.0], &[20, 28]).unwrap();
        assert_eq!(
            specs,
            vec![
                variant(1.0, Some(28), "zoo:fashion-cnn"),
                variant(1.0, Some(20), "zoo:fashion-cnn:resolution=20"),
                variant(0.5, Some(28), "zoo:fashion-cnn:width=0.5"),
                variant(0.5, Some(20), "zoo:fashion-cnn:width=0.5,resolution=20"),
            ]
        );
        let err = listed("zoo:resnet8", "r.toml", &[], &[24])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the search space r.toml lists resolutions, but zoo:resnet8 has no resolution option"),
            "{err}"
        );
        assert_eq!(own_resolution("zoo:mcunet:resolution=64"), Some(64));
        assert_eq!(own_width("zoo:mcunet:resolution=64"), Some(1.0));
    }
}
