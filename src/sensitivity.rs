//! Sensitivity tables: per layer and weight precision, and per activation buffer and precision,
//! the predicted loss impact of quantizing just that tensor. The search sums the entries of an
//! assignment into its predicted accuracy loss.
//!
//! The built-in proxy is the quantization noise-to-signal ratio (unit `nsr`): for weights, the
//! relative squared error of per-output-channel symmetric quantization of the trained (BN-folded)
//! weights; for activations, the uniform quantizer's noise `step^2 / 12` over the buffer's mean
//! square, with the range and the mean square measured on calibration inputs. Under the usual
//! additive-noise model these add up along the network. A table can also be imported from CSV
//! (any unit, e.g. measured accuracy drops in points), and is saved with every run.

use crate::escape::{csv_field, csv_records};
use crate::graph::{FusedGraph, Graph, Op, eval, fold_for_analysis};
use crate::precision::{Assignment, Bits};
use crate::quant::{activation_levels, quantize_weights};
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// The unit of the built-in noise proxy.
pub(crate) const NOISE_UNIT: &str = "nsr";

#[derive(Debug, thiserror::Error)]
pub enum SensitivityError {
    #[error("{path}: cannot read or write the file: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Row {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("running the network on calibration inputs failed: {0}")]
    Eval(#[from] crate::graph::GraphError),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sensitivity {
    /// What the values measure (`nsr` for the noise proxy, `points` for accuracy drops).
    pub unit: String,
    /// Where the values come from.
    pub source: String,
    /// Per layer, indexed by [`Bits::index`] (zeros for layers without weights).
    pub weights: Vec<[f64; 3]>,
    /// Per activation buffer.
    pub activations: Vec<[f64; 3]>,
}

/// Relative squared error of per-output-channel symmetric quantization of `weight` (rows of
/// `row` values) at `bits`: the quantizer fine-tuning and deployment apply.
pub(crate) fn weight_noise(weight: &[f32], row: usize, bits: Bits) -> f64 {
    let (q, scales) = quantize_weights(weight, row, bits.count());
    let (mut noise, mut signal) = (0.0f64, 0.0f64);
    for ((channel, q), &scale) in weight.chunks(row).zip(q.chunks(row)).zip(&scales) {
        for (&w, &q) in channel.iter().zip(q) {
            let q = f32::from(q) * scale;
            noise += f64::from((w - q) * (w - q));
            signal += f64::from(w * w);
        }
    }
    if signal > 0.0 { noise / signal } else { 0.0 }
}

/// Uniform quantization noise over mean square for a buffer with the given statistics.
fn activation_noise(stats: &Stats, bits: Bits) -> f64 {
    if stats.mean_square <= 0.0 {
        return 0.0;
    }
    let signed = stats.min < 0.0 || stats.min.is_nan();
    let levels = f64::from(activation_levels(bits.count(), signed));
    let step = stats.max_abs / levels;
    step * step / 12.0 / stats.mean_square
}

#[derive(Clone, Copy, Default)]
struct Stats {
    min: f64,
    max_abs: f64,
    mean_square: f64,
}

/// `count` seeded inputs uniform in [0, 1), the range of a normalised image, for networks
/// without calibration data.
pub(crate) fn synthetic_inputs(elements: usize, count: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| (0..elements).map(|_| rng.random_range(0.0..1.0)).collect())
        .collect()
}

impl Sensitivity {
    /// The noise proxy of `graph`, with activation statistics from `inputs`; `source` says what
    /// the inputs were.
    pub(crate) fn noise_proxy(
        graph: &Graph,
        fused: &FusedGraph,
        inputs: &[Vec<f32>],
        source: &str,
    ) -> Result<Sensitivity, SensitivityError> {
        let folded = fold_for_analysis(graph);
        let ops: HashMap<&str, &Op> = folded
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), &n.op))
            .collect();
        let weights = fused
            .layers
            .iter()
            .map(|layer| {
                let weight = match ops.get(layer.name.as_str()) {
                    Some(Op::Conv(c)) => Some(&c.weight),
                    Some(Op::Linear(l)) => Some(&l.weight),
                    _ => None,
                };
                match weight {
                    Some(w) if layer.kind.has_weights() => {
                        let row = w.len() / layer.output_shape.c;
                        Bits::ALL.map(|b| weight_noise(w, row, b))
                    }
                    _ => [0.0; 3],
                }
            })
            .collect();

        let tensor_of = fused.tensors_in(&folded);
        let runs: Vec<Vec<Vec<f32>>> = inputs
            .par_iter()
            .map(|x| eval::run(&folded, x))
            .collect::<Result<_, _>>()?;
        let activations = tensor_of
            .iter()
            .map(|&tensor| {
                let Some(t) = tensor else {
                    return [0.0; 3];
                };
                let mut stats = Stats {
                    min: f64::INFINITY,
                    ..Stats::default()
                };
                let mut count = 0usize;
                for run in &runs {
                    for &v in &run[t] {
                        let v = f64::from(v);
                        stats.min = stats.min.min(v);
                        stats.max_abs = stats.max_abs.max(v.abs());
                        stats.mean_square += v * v;
                        count += 1;
                    }
                }
                stats.mean_square /= count.max(1) as f64;
                Bits::ALL.map(|b| activation_noise(&stats, b))
            })
            .collect();
        Ok(Sensitivity {
            unit: NOISE_UNIT.into(),
            source: format!("quantization noise of the weights and of the activations on {source}"),
            weights,
            activations,
        })
    }

    /// The predicted loss of `a`: its weight and activation entries summed.
    pub fn loss(&self, fused: &FusedGraph, a: &Assignment) -> f64 {
        let w: f64 = fused
            .weighted_layers()
            .map(|(l, _)| self.weights[l][a.weight_bits[l].index()])
            .sum();
        let x: f64 = (0..fused.tensors.len())
            .map(|t| self.activations[t][a.activation_bits[t].index()])
            .sum();
        w + x
    }

    /// The table as CSV: `kind,name,bits,value,unit` with `kind` = `weight` (by layer) or
    /// `activation` (by buffer).
    pub(crate) fn to_csv(&self, fused: &FusedGraph) -> String {
        let mut out = String::from("kind,name,bits,value,unit\n");
        for (l, layer) in fused.weighted_layers() {
            for b in Bits::ALL {
                out += &format!(
                    "weight,{},{b},{:e},{}\n",
                    csv_field(&layer.name),
                    self.weights[l][b.index()],
                    csv_field(&self.unit)
                );
            }
        }
        for (t, buffer) in fused.tensors.iter().enumerate() {
            for b in Bits::ALL {
                out += &format!(
                    "activation,{},{b},{:e},{}\n",
                    csv_field(&buffer.name),
                    self.activations[t][b.index()],
                    csv_field(&self.unit)
                );
            }
        }
        out
    }

    pub fn write_csv(&self, fused: &FusedGraph, path: &Path) -> Result<(), SensitivityError> {
        crate::results::write_atomic(path, self.to_csv(fused).as_bytes()).map_err(|source| {
            SensitivityError::Io {
                path: path.display().to_string(),
                source,
            }
        })
    }

    /// Reads a table written by [`Sensitivity::to_csv`] or by hand: every layer with weights and
    /// every activation buffer needs its three entries, all in one unit.
    pub(crate) fn read_csv(
        path: &Path,
        fused: &FusedGraph,
    ) -> Result<Sensitivity, SensitivityError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SensitivityError::Io {
            path: name.clone(),
            source,
        })?;
        Sensitivity::parse_csv(&text, &name, fused)
    }

    pub(crate) fn parse_csv(
        text: &str,
        path: &str,
        fused: &FusedGraph,
    ) -> Result<Sensitivity, SensitivityError> {
        let file_err = |message: String| SensitivityError::File {
            path: path.to_string(),
            message,
        };
        let records = csv_records(text).map_err(file_err)?;
        let mut records = records.into_iter();
        match records.next() {
            Some((_, header)) if header == ["kind", "name", "bits", "value", "unit"] => {}
            _ => {
                return Err(file_err(
                    "the first line must be the header kind,name,bits,value,unit".into(),
                ));
            }
        }
        let nan = [f64::NAN; 3];
        let mut weights = vec![nan; fused.layers.len()];
        let mut activations = vec![nan; fused.tensors.len()];
        let mut unit: Option<String> = None;
        for (line, fields) in records {
            let row_err = |message: String| SensitivityError::Row {
                path: path.to_string(),
                line,
                message,
            };
            let [kind, name, bits, value, row_unit] = &fields[..] else {
                return Err(row_err(format!(
                    "has {} fields, expected 5 (kind,name,bits,value,unit)",
                    fields.len()
                )));
            };
            let (kind, name, bits, value, row_unit) = (
                kind.as_str(),
                name.as_str(),
                bits.as_str(),
                value.as_str(),
                row_unit.as_str(),
            );
            let bits = bits
                .parse::<u32>()
                .ok()
                .and_then(Bits::from_count)
                .ok_or_else(|| row_err(format!("bits '{bits}' must be 2, 4 or 8")))?;
            let value: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| row_err(format!("value '{value}' is not a number")))?;
            match &unit {
                Some(u) if u != row_unit => {
                    return Err(row_err(format!(
                        "unit '{row_unit}' differs from the table's '{u}'"
                    )));
                }
                None => unit = Some(row_unit.to_string()),
                _ => {}
            }
            let slot = match kind {
                "weight" => fused
                    .weighted_layers()
                    .find(|(_, l)| l.name == name)
                    .map(|(l, _)| &mut weights[l])
                    .ok_or_else(|| {
                        row_err(format!(
                            "'{name}' is not a layer with weights of {}",
                            fused.name
                        ))
                    })?,
                "activation" => fused
                    .tensors
                    .iter()
                    .position(|t| t.name == name)
                    .map(|t| &mut activations[t])
                    .ok_or_else(|| {
                        row_err(format!(
                            "'{name}' is not an activation buffer of {}",
                            fused.name
                        ))
                    })?,
                other => {
                    return Err(row_err(format!(
                        "kind '{other}' must be weight or activation"
                    )));
                }
            };
            slot[bits.index()] = value;
        }
        let mut missing: Vec<String> = fused
            .weighted_layers()
            .filter(|(l, _)| weights[*l].iter().any(|v| v.is_nan()))
            .map(|(_, l)| format!("weight {}", l.name))
            .collect();
        missing.extend(
            fused
                .tensors
                .iter()
                .enumerate()
                .filter(|(t, _)| activations[*t].iter().any(|v| v.is_nan()))
                .map(|(_, t)| format!("activation {}", t.name)),
        );
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(6).map(String::as_str).collect();
            return Err(file_err(format!(
                "lacks entries for {} tensors ({}{}); `qsearch sensitivity` writes a complete table to start from",
                missing.len(),
                shown.join(", "),
                if missing.len() > 6 { ", ..." } else { "" }
            )));
        }
        for w in &mut weights {
            if w.iter().all(|v| v.is_nan()) {
                *w = [0.0; 3];
            }
        }
        Ok(Sensitivity {
            unit: unit.unwrap_or_else(|| NOISE_UNIT.into()),
            source: format!("imported from {path}"),
            weights,
            activations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::zoo;

    #[test]
    fn weight_noise_shrinks_with_bits() {
        let w: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0)
            .collect();
        let n2 = weight_noise(&w, 16, Bits::B2);
        let n4 = weight_noise(&w, 16, Bits::B4);
        let n8 = weight_noise(&w, 16, Bits::B8);
        assert!(n2 > n4 && n4 > n8 && n8 > 0.0, "{n2} {n4} {n8}");
        // A value on the grid has no error.
        assert_eq!(weight_noise(&[1.0, -1.0, 0.0], 3, Bits::B2), 0.0);
    }

    #[test]
    fn proxy_round_trips_through_csv() {
        let graph = zoo::build("resnet8").unwrap();
        let fused = FusedGraph::from_graph(&graph);
        let inputs = synthetic_inputs(graph.input_shape().elements() as usize, 2, 0);
        let table =
            Sensitivity::noise_proxy(&graph, &fused, &inputs, "2 synthetic inputs").unwrap();
        assert!(
            table.activations[fused.output][Bits::B2.index()]
                > table.activations[fused.output][Bits::B8.index()]
        );
        let csv = table.to_csv(&fused);
        let back = Sensitivity::parse_csv(&csv, "t.csv", &fused).unwrap();
        for (a, b) in table.weights.iter().zip(&back.weights) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-30));
            }
        }
        let truncated: String = csv.lines().take(10).collect::<Vec<_>>().join("\n");
        let err = Sensitivity::parse_csv(&truncated, "t.csv", &fused)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.csv: lacks entries for"), "{err}");
        let bad = csv.replacen("weight,conv1,8", "weight,conv99,8", 1);
        let err = Sensitivity::parse_csv(&bad, "t.csv", &fused)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'conv99' is not a layer with weights of resnet8"),
            "{err}"
        );
    }
}
