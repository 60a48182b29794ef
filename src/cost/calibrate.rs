//! Refits the kernel cost parameters of a platform from measured kernel cycles.
//!
//! A measurement is one kernel call on data in L1. The kernel model is linear in the parameters,
//! so each row's prediction is `sum_j phi_ij * theta_j`; the fit minimises the squared relative
//! error over the non-negative values of the parameters the rows exercise (non-negative least
//! squares), with a small pull towards the prior values so that parameters the data cannot tell
//! apart stay put.

use super::kernel::{KernelCall, Precisions, call_cycles};
use crate::graph::{LayerKind, Padding, Shape, Window};
use crate::platform::{CostParams, Platform};
use crate::precision::Bits;
use std::path::Path;

/// The columns of a measurements CSV, in the order `qsearch microbench` writes them.
pub const COLUMNS: &[&str] = &[
    "kernel", "in_c", "in_h", "in_w", "out_c", "kernel_h", "kernel_w", "stride", "pad", "groups",
    "w_bits", "in_bits", "out_bits", "cores", "cycles",
];

const KERNELS: &[(&str, LayerKind)] = &[
    ("conv", LayerKind::Conv),
    ("pointwise", LayerKind::Pointwise),
    ("depthwise", LayerKind::Depthwise),
    ("grouped", LayerKind::GroupedConv),
    ("linear", LayerKind::Linear),
    ("add", LayerKind::Add),
    ("maxpool", LayerKind::MaxPool),
    ("avgpool", LayerKind::AvgPool),
    ("globalavgpool", LayerKind::GlobalAvgPool),
    ("globalmaxpool", LayerKind::GlobalMaxPool),
];

/// Bounds on a measurement's channel counts (and cores) and on its sizes along one axis.
const MAX_CHANNELS: usize = 1 << 16;
const MAX_EXTENT: usize = 1 << 12;

/// Pull of each parameter towards its prior (relative deviation squared, deviations of priors
/// below one cycle taken relative to one cycle), against the data term.
const PRIOR_WEIGHT: f64 = 1e-8;

/// The denominator of the pull towards prior `p`: its square, at least one, so that a prior at
/// the fit's floor (SMALLEST_FITTED) does not pin its parameter there.
fn prior_scale(p: f64) -> f64 {
    (p * p).max(1.0)
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{path}: cannot read the file: {source}")]
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
}

/// One measured kernel call.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Line in the CSV (1-based, header = 1).
    pub line: usize,
    pub kernel: String,
    pub call: KernelCall,
    pub bits: Precisions,
    pub cores: usize,
    pub cycles: f64,
}

impl Measurement {
    /// Builds a measurement's kernel call from CSV-style geometry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn geometry(
        kind: LayerKind,
        input: Shape,
        out_c: usize,
        kernel: [usize; 2],
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Result<KernelCall, String> {
        let out_hw = |size: usize, k: usize| -> Result<usize, String> {
            let padded = size + 2 * pad;
            if stride == 0 || k == 0 || padded < k {
                return Err(format!(
                    "kernel {k} with stride {stride} and pad {pad} does not fit input size {size}"
                ));
            }
            Ok((padded - k) / stride + 1)
        };
        let output = match kind {
            LayerKind::Linear => Shape::vector(out_c),
            LayerKind::GlobalAvgPool | LayerKind::GlobalMaxPool => Shape::new(input.c, 1, 1),
            LayerKind::Add | LayerKind::Elementwise => input,
            LayerKind::MaxPool | LayerKind::AvgPool => Shape::new(
                input.c,
                out_hw(input.h, kernel[0])?,
                out_hw(input.w, kernel[1])?,
            ),
            _ => Shape::new(
                out_c,
                out_hw(input.h, kernel[0])?,
                out_hw(input.w, kernel[1])?,
            ),
        };
        if groups == 0 || !input.c.is_multiple_of(groups) || !output.c.is_multiple_of(groups) {
            return Err(format!(
                "groups {groups} must divide in_c {} and out_c {}",
                input.c, output.c
            ));
        }
        let input = if kind == LayerKind::Linear {
            Shape::vector(input.elements() as usize)
        } else {
            input
        };
        let window = match kind {
            LayerKind::Linear | LayerKind::Add | LayerKind::Elementwise => None,
            _ => Some(Window {
                kernel,
                stride: [stride, stride],
                padding: Padding::uniform(pad),
            }),
        };
        Ok(KernelCall::new(kind, input, output, window, groups))
    }
}

/// Reads a measurements CSV (header row naming the [`COLUMNS`], in any order).
pub fn read_measurements(path: &Path) -> Result<Vec<Measurement>, CalibrationError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Io {
        path: name.clone(),
        source,
    })?;
    parse_measurements(&text, &name)
}

pub(crate) fn parse_measurements(
    text: &str,
    path: &str,
) -> Result<Vec<Measurement>, CalibrationError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or_else(|| CalibrationError::File {
        path: path.to_string(),
        message: format!("is empty; expected a header row: {}", COLUMNS.join(",")),
    })?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let position = |column: &str| {
        names
            .iter()
            .position(|n| *n == column)
            .ok_or_else(|| CalibrationError::File {
                path: path.to_string(),
                message: format!(
                    "the header lacks column '{column}'; expected {}",
                    COLUMNS.join(",")
                ),
            })
    };
    let index: Vec<usize> = COLUMNS
        .iter()
        .map(|c| position(c))
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        let row_err = |message: String| CalibrationError::Row {
            path: path.to_string(),
            line: line_no,
            message,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |c: usize| -> Result<&str, CalibrationError> {
            fields.get(index[c]).copied().ok_or_else(|| {
                row_err(format!(
                    "has {} fields, the header {}",
                    fields.len(),
                    names.len()
                ))
            })
        };
        let number = |c: usize| -> Result<usize, CalibrationError> {
            let text = field(c)?;
            let n: usize = text.parse().map_err(|_| {
                row_err(format!(
                    "column '{}' = '{text}' is not a whole number",
                    COLUMNS[c]
                ))
            })?;
            // Channels and cores, then sizes along one axis (a kernel call in L1 is far smaller).
            let max = if matches!(COLUMNS[c], "in_c" | "out_c" | "groups" | "cores") {
                MAX_CHANNELS
            } else {
                MAX_EXTENT
            };
            if n > max {
                return Err(row_err(format!(
                    "column '{}' = {n} exceeds {max}, larger than any kernel call qsearch models",
                    COLUMNS[c]
                )));
            }
            Ok(n)
        };
        let bits = |c: usize| -> Result<Bits, CalibrationError> {
            let n = number(c)?;
            Bits::from_count(n as u32).ok_or_else(|| {
                row_err(format!(
                    "column '{}' = {n}; bits must be 2, 4 or 8",
                    COLUMNS[c]
                ))
            })
        };
        let kernel = field(0)?.to_string();
        let kind = KERNELS
            .iter()
            .find(|(k, _)| *k == kernel)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                let names: Vec<&str> = KERNELS.iter().map(|(k, _)| *k).collect();
                row_err(format!(
                    "kernel '{kernel}' is not one of {}",
                    names.join(", ")
                ))
            })?;
        let input = Shape::new(number(1)?, number(2)?, number(3)?);
        if input.elements() == 0 {
            return Err(row_err("input dimensions must be positive".into()));
        }
        let call = Measurement::geometry(
            kind,
            input,
            number(4)?,
            [number(5)?, number(6)?],
            number(7)?,
            number(8)?,
            number(9)?,
        )
        .map_err(row_err)?;
        let in_bits = bits(11)?;
        let cores = number(13)?;
        let cycles_text = field(14)?;
        let cycles: f64 = cycles_text
            .parse()
            .ok()
            .filter(|c: &f64| c.is_finite() && *c > 0.0)
            .ok_or_else(|| row_err(format!("cycles '{cycles_text}' is not a positive number")))?;
        if cores == 0 {
            return Err(row_err("cores must be at least 1".into()));
        }
        rows.push(Measurement {
            line: line_no,
            kernel,
            call,
            bits: Precisions {
                weight: bits(10)?,
                input: in_bits,
                second: in_bits,
                output: bits(12)?,
            },
            cores,
            cycles,
        });
    }
    if rows.is_empty() {
        return Err(CalibrationError::File {
            path: path.to_string(),
            message: "has a header but no measurements".into(),
        });
    }
    Ok(rows)
}

/// Whether the `row`-th measurement (from 0) of a microbenchmark grid is held out of the fit:
/// every fifth (five is prime to the grid's period, so the held-out rows cover every kernel and
/// shape).
pub(crate) fn held_out(row: usize) -> bool {
    row % 5 == 4
}

/// One row's measured and predicted cycles.
#[derive(Clone, Debug)]
pub struct RowFit {
    pub line: usize,
    pub kernel: String,
    pub measured: f64,
    pub before: f64,
    pub after: f64,
}

/// The outcome of a fit.
#[derive(Clone, Debug)]
pub struct FitReport {
    pub rows: Vec<RowFit>,
    pub mape_before: f64,
    pub mape_after: f64,
    /// `(parameter, value before, value after)` for the refitted parameters.
    pub fitted: Vec<(String, f64, f64)>,
    /// Parameters no measurement exercises (left as they were).
    pub untouched: Vec<String>,
}

/// Predicted cycles of every measurement under `params`.
pub(crate) fn predict(params: &CostParams, rows: &[Measurement]) -> Vec<f64> {
    rows.iter()
        .map(|m| call_cycles(params, m.cores, &m.call, m.bits))
        .collect()
}

/// Mean absolute percentage error of `predicted` against the measurements.
pub(crate) fn mape(predicted: &[f64], rows: &[Measurement]) -> f64 {
    let total: f64 = predicted
        .iter()
        .zip(rows)
        .map(|(p, m)| ((p - m.cycles) / m.cycles).abs())
        .sum();
    100.0 * total / rows.len() as f64
}

/// The weighted least-squares problem: per row `(constant, [(free parameter, d cycles /
/// d theta)])` and the measured cycles; errors are relative to the measurement.
struct Problem {
    features: Vec<(f64, Vec<(usize, f64)>)>,
    measured: Vec<f64>,
    prior: Vec<f64>,
}

/// The least value a fitted parameter takes: zero marks work a kernel does not do, which a later
/// refit starting from the fitted values leaves alone, so a fit never sets a parameter to zero.
const SMALLEST_FITTED: f64 = 1e-4;

/// Coordinate sweeps of the fit; each is exact per coordinate, and the problem is small.
const SWEEPS: usize = 20_000;

impl Problem {
    /// The non-negative parameters minimising the squared relative errors plus a small pull
    /// towards the priors: a convex quadratic, solved by cyclic coordinate descent with each
    /// step exact and clipped at SMALLEST_FITTED (non-negative least squares).
    fn solve(&self) -> Vec<f64> {
        let mut theta = self.prior.clone();
        // Scaled rows: a_ij = phi_ij / y_i, and residuals r_i = (prediction_i - y_i) / y_i.
        let mut columns: Vec<Vec<(usize, f64)>> = vec![Vec::new(); theta.len()];
        let mut residual: Vec<f64> = Vec::with_capacity(self.measured.len());
        for (i, ((c, phi), y)) in self.features.iter().zip(&self.measured).enumerate() {
            let predicted = c + phi.iter().map(|&(j, f)| f * theta[j]).sum::<f64>();
            residual.push((predicted - y) / y);
            for &(j, f) in phi {
                columns[j].push((i, f / y));
            }
        }
        let curvature: Vec<f64> = columns
            .iter()
            .zip(&self.prior)
            .map(|(col, p)| {
                col.iter().map(|(_, a)| a * a).sum::<f64>() + PRIOR_WEIGHT / prior_scale(*p)
            })
            .collect();
        for _ in 0..SWEEPS {
            let mut largest_step = 0.0f64;
            for j in 0..theta.len() {
                if columns[j].is_empty() {
                    continue;
                }
                let p = self.prior[j];
                let gradient = columns[j]
                    .iter()
                    .map(|&(i, a)| a * residual[i])
                    .sum::<f64>()
                    + PRIOR_WEIGHT * (theta[j] - p) / prior_scale(p);
                let next = (theta[j] - gradient / curvature[j]).max(SMALLEST_FITTED);
                let step = next - theta[j];
                if step != 0.0 {
                    for &(i, a) in &columns[j] {
                        residual[i] += a * step;
                    }
                    theta[j] = next;
                    largest_step = largest_step.max((step / p).abs());
                }
            }
            if largest_step < 1e-12 {
                break;
            }
        }
        theta
    }
}

/// Refits `platform`'s cost parameters to `rows`. `label` names the measurements in the refitted
/// parameters' sources.
pub fn calibrate(
    platform: &Platform,
    rows: &[Measurement],
    label: &str,
) -> Result<(Platform, FitReport), CalibrationError> {
    let base = platform.cost.clone();
    let before = predict(&base, rows);
    let names: Vec<String> = base.entries().into_iter().map(|(n, _)| n).collect();
    let prior: Vec<f64> = base.entries().iter().map(|(_, p)| p.value).collect();

    // phi_ij by a small relative bump of parameter j: the model is linear in each parameter as
    // long as the bump does not change which kernel variant is fastest. Parameters at zero mark
    // structurally absent work (e.g. no unpacking of native operands) and stay zero.
    let mut columns: Vec<Vec<f64>> = Vec::new();
    for (j, &value) in prior.iter().enumerate() {
        if value <= 0.0 {
            columns.push(vec![0.0; rows.len()]);
            continue;
        }
        let mut bumped = base.clone();
        bumped.entries_mut()[j].1.value = 2.0 * value;
        let after = predict(&bumped, rows);
        columns.push(
            after
                .iter()
                .zip(&before)
                .map(|(a, b)| (a - b) / value)
                .collect(),
        );
    }
    let free: Vec<usize> = (0..prior.len())
        .filter(|&j| columns[j].iter().any(|f| f.abs() > 0.0))
        .collect();
    let features = (0..rows.len())
        .map(|i| {
            let phi: Vec<(usize, f64)> = free
                .iter()
                .map(|&j| (j, columns[j][i]))
                .filter(|(_, f)| *f != 0.0)
                .collect();
            let linear: f64 = phi.iter().map(|&(j, f)| f * prior[j]).sum();
            (before[i] - linear, phi)
        })
        .collect();
    let problem = Problem {
        features,
        measured: rows.iter().map(|m| m.cycles).collect(),
        prior: prior.clone(),
    };
    let theta = problem.solve();

    let mut fitted_cost = base.clone();
    for (j, (_, p)) in fitted_cost.entries_mut().into_iter().enumerate() {
        if free.contains(&j) {
            p.value = theta[j];
        }
    }
    let after = predict(&fitted_cost, rows);
    let (mape_before, mape_after) = (mape(&before, rows), mape(&after, rows));
    let source = format!(
        "fit: {label}, {} rows, MAPE {mape_before:.1}% -> {mape_after:.1}%",
        rows.len()
    );
    for (j, (_, p)) in fitted_cost.entries_mut().into_iter().enumerate() {
        if free.contains(&j) {
            p.source = format!("{source} (prior {}: {})", prior[j], p.source);
        }
    }
    let mut fitted_platform = platform.clone();
    fitted_platform.cost = fitted_cost.clone();
    let new_values: Vec<f64> = fitted_cost.entries().iter().map(|(_, p)| p.value).collect();
    let report = FitReport {
        rows: rows
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(m, (b, a))| RowFit {
                line: m.line,
                kernel: m.kernel.clone(),
                measured: m.cycles,
                before: *b,
                after: *a,
            })
            .collect(),
        mape_before,
        mape_after,
        fitted: free
            .iter()
            .map(|&j| (names[j].clone(), prior[j], new_values[j]))
            .collect(),
        untouched: (0..names.len())
            .filter(|j| !free.contains(j))
            .map(|j| names[j].clone())
            .collect(),
    };
    Ok((fitted_platform, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn cv32e40p_parameters_are_the_fit_of_its_rtl_measurements() {
        let csv = include_str!("../../search_spaces/platforms/measurements/cv32e40p-rtl.csv");
        let rows = parse_measurements(csv, "cv32e40p-rtl.csv").unwrap();
        let (test, fit): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .enumerate()
            .partition(|(i, _)| held_out(*i));
        let strip = |rows: Vec<(usize, Measurement)>| -> Vec<Measurement> {
            rows.into_iter().map(|(_, m)| m).collect()
        };
        let (fit, test) = (strip(fit), strip(test));
        let cv32e40p = Platform::load("cv32e40p").unwrap();
        let fit_mape = mape(&predict(&cv32e40p.cost, &fit), &fit);
        let held_out_mape = mape(&predict(&cv32e40p.cost, &test), &test);
        println!(
            "cv32e40p on its RTL measurements: MAPE {fit_mape:.1}% on {} fit rows, {held_out_mape:.1}% on {} held-out rows",
            fit.len(),
            test.len()
        );
        // The fitted parameters' sources quote these figures.
        let quoted = format!("MAPE {fit_mape:.1}%, held-out {held_out_mape:.1}%");
        let fitted = cv32e40p.cost.entries();
        let fitted: Vec<_> = fitted
            .iter()
            .filter(|(_, p)| p.source.starts_with("fit:"))
            .collect();
        assert!(fitted.len() > 30);
        for (name, p) in fitted {
            assert!(
                p.source.contains(&quoted),
                "{name}: {} ({quoted})",
                p.source
            );
        }
        // Refitting from them moves the fit-row error by little: they are the fit's optimum.
        let (_, report) = calibrate(&cv32e40p, &fit, "again").unwrap();
        assert!(report.mape_after > fit_mape - 0.5, "{}", report.mape_after);
    }

    /// Kernel calls over a grid of geometries and precisions.
    fn grid() -> Vec<(KernelCall, Precisions)> {
        let mut calls = Vec::new();
        let all = Bits::ALL;
        for (i, &w) in all.iter().enumerate() {
            for (j, &x) in all.iter().enumerate() {
                for (k, &y) in all.iter().enumerate() {
                    let bits = Precisions {
                        weight: w,
                        input: x,
                        second: x,
                        output: y,
                    };
                    let v = 4 * (1 + (i + 2 * j + k) % 4);
                    let shapes = [
                        (LayerKind::Conv, Shape::new(v, 10, 10), 8 + v, 3),
                        (LayerKind::Conv, Shape::new(16, 6 + v, 8), 4 * v + 2, 3),
                        (LayerKind::Pointwise, Shape::new(8 * v, 8, 4 + v), 16 + v, 1),
                        (LayerKind::Pointwise, Shape::new(16, 3 + v, 5), 6 + 2 * v, 1),
                        (LayerKind::Depthwise, Shape::new(8 * v, 9, 9), 8 * v, 3),
                        (LayerKind::Depthwise, Shape::new(16, 4 + v, 12), 16, 3),
                        (LayerKind::Linear, Shape::vector(64 * v), 10 + v, 1),
                        (LayerKind::Linear, Shape::vector(100), 3 * v + 1, 1),
                        (LayerKind::Add, Shape::new(8 * v, 6, 6), 0, 1),
                        (LayerKind::Add, Shape::new(32, v, 3), 0, 1),
                        (LayerKind::MaxPool, Shape::new(4 * v, 8, 8), 0, 2),
                        (LayerKind::AvgPool, Shape::new(16, 4 * v, 8), 0, 2),
                    ];
                    for (kind, input, out_c, kernel) in shapes {
                        let groups = if kind == LayerKind::Depthwise {
                            input.c
                        } else {
                            1
                        };
                        let stride = if kernel == 2 { 2 } else { 1 };
                        // Padding on some convolutions: im2col's runs per pixel then vary.
                        let pad = usize::from(kind == LayerKind::Conv && input.c == 16);
                        let call = Measurement::geometry(
                            kind,
                            input,
                            out_c,
                            [kernel, kernel],
                            stride,
                            pad,
                            groups,
                        )
                        .unwrap();
                        calls.push((call, bits));
                    }
                }
            }
        }
        calls
    }

    #[test]
    fn recovers_known_parameters_from_synthetic_measurements() {
        let prior = Platform::load("gap8").unwrap();
        let mut truth = prior.cost.clone();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // Away from the prior and from the fit's floor (SMALLEST_FITTED); absent work stays zero.
        for (_, p) in truth.entries_mut() {
            if p.value > 0.0 {
                p.value = p.value.max(0.1) * rng.random_range(0.7..1.4);
            }
        }
        let rows: Vec<Measurement> = grid()
            .into_iter()
            .enumerate()
            .map(|(i, (call, bits))| Measurement {
                line: i + 2,
                kernel: call.kind.name().into(),
                call,
                bits,
                cores: 8,
                cycles: call_cycles(&truth, 8, &call, bits),
            })
            .collect();
        let (fitted, report) = calibrate(&prior, &rows, "synthetic").unwrap();
        assert!(report.mape_before > 5.0, "{}", report.mape_before);
        assert!(report.mape_after < 0.01, "{}", report.mape_after);
        let truth_values = truth.entries();
        for (name, p) in fitted.cost.entries() {
            let expected = truth_values
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                .value;
            if report.fitted.iter().any(|(n, _, _)| *n == name) {
                let error = (p.value - expected).abs() / expected.max(1e-9);
                assert!(
                    error < 0.01,
                    "{name}: fitted {} vs true {expected}",
                    p.value
                );
                assert!(p.source.starts_with("fit: synthetic"));
            }
        }
        assert!(
            report
                .untouched
                .contains(&"tile_overhead_cycles".to_string())
        );
    }

    #[test]
    fn bad_rows_are_reported_with_their_line() {
        let header = COLUMNS.join(",");
        let err = parse_measurements(
            &format!("{header}\nconv,8,8,8,8,3,3,1,1,1,8,3,8,8,1000\n"),
            "m.csv",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.csv: line 2: column 'in_bits' = 3; bits must be 2, 4 or 8"
        );
        let err = parse_measurements(
            &format!("{header}\nfft,8,8,8,8,3,3,1,1,1,8,8,8,8,1000\n"),
            "m.csv",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("kernel 'fft' is not one of conv"),
            "{err}"
        );
        let err = parse_measurements("kernel,cycles\nconv,5\n", "m.csv").unwrap_err();
        assert!(err.to_string().contains("lacks column 'in_c'"), "{err}");
        let err = parse_measurements(
            &format!("{header}\nconv,8,8,8,8,3,3,1,1,1,8,8,8,8,-4\n"),
            "m.csv",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("cycles '-4' is not a positive number"),
            "{err}"
        );
    }
}
