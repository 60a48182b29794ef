//! The main command: train the network (once, cached), measure its sensitivity, search, fine-tune
//! the best candidates and the baselines, and report the accuracy-latency-size trade-off against
//! uniform 8 bit and against the 8-bit network scaled down until it fits the same budget.

use super::{
    DeploySettings, FlowError, Inputs, Measure, Prepared, assignment_json, cached_model, deploy,
    finetune_assignment, measured_sensitivity, model_hash, prepare_graph, search,
};
use crate::escape::{markdown_code_block, terminal_text};
use crate::graph::{FusedGraph, Graph, zoo};
use crate::objective::{Metric, Objective};
use crate::precision::{Assignment, Bits};
use crate::report::plot;
use crate::results::{slug, write_frame, write_json, write_text};
use crate::search::{Candidate, EXACT_POLICY, Problem, Settings, policy, run_policy};
use crate::sensitivity::Sensitivity;
use crate::table::Table;
use crate::train::data::{self, Dataset};
use crate::train::{TrainConfig, TrainError};
use crate::units::group_thousands;
use polars::prelude::*;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The main flow's knobs.
#[derive(Clone, Debug)]
pub struct MainSettings {
    pub data: String,
    /// Floating-point training schedule (of the network and of the width-scaled baseline).
    pub train: TrainConfig,
    /// Quantization-aware fine-tuning schedule (short).
    pub finetune: TrainConfig,
    /// Candidates fine-tuned and re-ranked by measured accuracy.
    pub top_k: usize,
    /// Policies whose winners are fine-tuned and reported.
    pub policies: Vec<String>,
    pub search: Settings,
    pub run: Option<String>,
    pub progress: bool,
}

/// Latency and memory of a quantized network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub cycles: f64,
    pub flash: u64,
    pub ram: u64,
}

/// One line of the trade-off report.
#[derive(Clone, Debug)]
pub struct Row {
    pub label: String,
    /// The precisions, summarised (`w 8848 / a 88888888`).
    pub bits: String,
    /// `None` for the floating-point network.
    pub figures: Option<Figures>,
    pub accuracy: f64,
    /// Whether it meets the limits.
    pub fits: bool,
}

fn figures(c: &Candidate) -> Figures {
    Figures {
        cycles: c.metrics.cycles,
        flash: c.metrics.flash,
        ram: c.metrics.ram,
    }
}

fn bits_summary(problem: &Problem, genes: &[u8]) -> String {
    let a = problem.space.decode(genes);
    let w: String = problem
        .fused
        .weighted_layers()
        .map(|(l, _)| a.weight_bits[l].to_string())
        .collect();
    let x: String = a.activation_bits.iter().map(|b| b.to_string()).collect();
    format!("w {w} / a {x}")
}

pub struct MainReport {
    pub rows: Vec<Row>,
    /// Seconds per stage.
    pub stages: Vec<(String, f64)>,
    pub dir: PathBuf,
    pub text: String,
    /// Index in `rows` of the chosen network.
    pub winner: usize,
}

struct Stopwatch {
    started: Instant,
    stages: Vec<(String, f64)>,
    progress: bool,
}

impl Stopwatch {
    fn lap(&mut self, name: &str) {
        let seconds =
            self.started.elapsed().as_secs_f64() - self.stages.iter().map(|s| s.1).sum::<f64>();
        if self.progress {
            eprintln!("stage {name}: {seconds:.1} s");
        }
        self.stages.push((name.to_string(), seconds));
    }
}

/// Test images the chosen network's generated C must reproduce at every layer.
const DEPLOY_VERIFY_IMAGES: usize = 1000;

/// Calibration images of the main flow's sensitivity measurement: the last ones of the training
/// split, which the main flow keeps out of training (`TrainConfig::holdout`).
pub const MAIN_CALIBRATION_IMAGES: usize = 1000;

/// The measured accuracy-drop table of a trained network, cached by the network's fingerprint.
fn measured(
    graph: &Graph,
    dataset: &Dataset,
    inputs: &Inputs,
    progress: bool,
) -> Result<Sensitivity, FlowError> {
    let fused = FusedGraph::from_graph(graph);
    let cache = inputs.results.join("cache").join(format!(
        "measured-{}-{}.csv",
        slug(&graph.name),
        model_hash(graph)
    ));
    if let Ok(mut table) = Sensitivity::read_csv(&cache, &fused) {
        table.source = format!("measured accuracy drops (cached in {})", cache.display());
        return Ok(table);
    }
    let points = measured_sensitivity(
        graph,
        dataset,
        Measure::Accuracy,
        MAIN_CALIBRATION_IMAGES,
        progress,
    );
    points.write_csv(&fused, &cache)?;
    Ok(points)
}

/// The same problem minimising `[primary, predicted accuracy loss]`, for the candidates.
fn with_accuracy(prepared: &Prepared) -> Result<Problem, FlowError> {
    let p = &prepared.problem;
    let objective = Objective {
        name: format!("{}-accuracy", p.objective.name),
        minimize: vec![p.objective.primary(), Metric::Accuracy],
        limits: p.objective.limits.clone(),
    };
    Ok(Problem::new(
        p.fused.clone(),
        p.platform.clone(),
        p.space.clone(),
        objective,
        p.sensitivity.clone(),
    )?)
}

/// The zoo spec of `model` at `width`, when it is a zoo network with a width option.
fn scaled_spec(model: &str, width: f64) -> Option<String> {
    let name = model.strip_prefix("zoo:")?;
    let (base, options) = name.split_once(':').unwrap_or((name, ""));
    let entry = zoo::ENTRIES.iter().find(|e| e.name == base)?;
    entry
        .options
        .iter()
        .any(|(k, _)| *k == "width")
        .then_some(())?;
    let kept: Vec<&str> = options
        .split(',')
        .filter(|o| !o.is_empty() && !o.starts_with("width="))
        .collect();
    let mut opts = kept.join(",");
    if !opts.is_empty() {
        opts.push(',');
    }
    Some(format!("zoo:{base}:{opts}width={width}"))
}

/// The widest scaling of the network whose uniform 8-bit version meets the memory limits.
fn widest_fitting(inputs: &Inputs, problem: &Problem) -> Result<Option<(String, f64)>, FlowError> {
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
        let Some(spec) = scaled_spec(&inputs.model, width) else {
            return Ok(None);
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
            return Ok(Some((spec, width)));
        }
    }
    Ok(None)
}

/// Runs the whole flow.
pub fn run_main(inputs: &Inputs, settings: &MainSettings) -> Result<MainReport, FlowError> {
    let progress = settings.progress;
    let mut watch = Stopwatch {
        started: Instant::now(),
        stages: Vec::new(),
        progress,
    };
    let dataset = data::load(&settings.data).map_err(TrainError::from)?;

    // 1. The floating-point network (trained on first use, then cached).
    let trained = cached_model(
        &inputs.model,
        &settings.data,
        &settings.train,
        &inputs.results,
        progress,
    )?;
    let fp_accuracy = trained
        .state
        .history
        .last()
        .map_or(0.0, |h| h.test_accuracy);
    watch.lap("train");

    // 2. Measured sensitivity: the accuracy drop of quantizing each tensor alone.
    let table = measured(&trained.graph, &dataset, inputs, progress)?;
    watch.lap("sensitivity");

    // 3. Search: the exact optimum (written as a search run), the Pareto set against the
    //    predicted accuracy loss for the candidates, and each policy's winner.
    let prepared = prepare_graph(trained.graph.clone(), inputs, Some(table))?;
    let problem = &prepared.problem;
    let run_name = settings.run.clone().unwrap_or_else(|| {
        slug(&format!(
            "main-{}-{}-{}",
            prepared.graph.name, problem.platform.name, problem.objective.name
        ))
    });
    let exact = search(
        &prepared,
        EXACT_POLICY,
        &settings.search,
        Some(&run_name),
        progress,
    )?;
    let dir = exact.dir.clone();
    let Some(optimum) = exact.result.best().cloned() else {
        return Err(FlowError::Input(
            "the search found no assignment meeting the limits".into(),
        ));
    };
    let pareto = with_accuracy(&prepared)?;
    let sweep = Settings {
        pareto_points: (3 * settings.top_k).max(6),
        ..settings.search.clone()
    };
    let mut ilp = policy(EXACT_POLICY, &sweep)?;
    let front = run_policy(ilp.as_mut(), &pareto, &sweep, false)?;
    let mut candidates: Vec<Candidate> = vec![optimum.clone()];
    for &i in &front.front {
        let c = problem.evaluate(&front.candidates[i].genes);
        if candidates.len() < settings.top_k && !candidates.iter().any(|x| x.genes == c.genes) {
            candidates.push(c);
        }
    }
    let mut winners: Vec<(String, Candidate)> = Vec::new();
    for name in &settings.policies {
        let mut p = policy(name, &settings.search)?;
        let r = run_policy(p.as_mut(), problem, &settings.search, false)?;
        if let Some(best) = r.best() {
            winners.push((name.clone(), best.clone()));
        }
    }
    watch.lap("search");

    // 4. Quantization-aware fine-tuning of the candidates, the winners and the uniform baselines.
    let mut jobs: Vec<(String, Candidate)> = candidates
        .iter()
        .enumerate()
        .map(|(k, c)| (format!("candidate {}", k + 1), c.clone()))
        .collect();
    jobs.extend(
        winners
            .iter()
            .map(|(name, c)| (format!("{name} winner"), c.clone())),
    );
    for bits in [Bits::B8, Bits::B4] {
        jobs.push((
            format!("uniform {bits}-bit"),
            problem.evaluate(&problem.space.uniform(bits)),
        ));
    }
    let mut accuracy_of: Vec<(Vec<u8>, f64)> = Vec::new();
    let mut rows = vec![Row {
        label: "FP32".into(),
        bits: "fp32".into(),
        figures: None,
        accuracy: fp_accuracy,
        fits: false,
    }];
    for (label, c) in &jobs {
        let accuracy = match accuracy_of.iter().find(|(g, _)| *g == c.genes) {
            Some((_, a)) => *a,
            None => {
                let a = problem.space.decode(&c.genes);
                let job_dir = finetune_dir(&dir, c);
                let accuracy = finetune_assignment(
                    &trained.graph,
                    &a,
                    &dataset,
                    &settings.finetune,
                    &job_dir,
                    label,
                    progress,
                )?;
                accuracy_of.push((c.genes.clone(), accuracy));
                accuracy
            }
        };
        rows.push(Row {
            label: label.clone(),
            bits: bits_summary(problem, &c.genes),
            figures: Some(figures(c)),
            accuracy,
            fits: c.feasible(),
        });
    }
    // Re-rank the candidates by measured accuracy.
    let winner = (1..=candidates.len())
        .max_by(|&a, &b| {
            rows[a]
                .accuracy
                .total_cmp(&rows[b].accuracy)
                .then(b.cmp(&a))
        })
        .unwrap_or(1);
    let chosen = &candidates[winner - 1];
    let mut chosen_json = assignment_json(problem, chosen);
    chosen_json["test_accuracy"] = rows[winner].accuracy.into();
    chosen_json["finetuned"] = finetune_dir(&dir, chosen).display().to_string().into();
    write_json(&dir.join("chosen.json"), &chosen_json)?;
    watch.lap("fine-tune");

    // 5. The 8-bit network scaled down until it fits the same limits.
    if let Some((spec, width)) = widest_fitting(inputs, problem)? {
        let scaled = cached_model(
            &spec,
            &settings.data,
            &settings.train,
            &inputs.results,
            progress,
        )?;
        let fused = FusedGraph::from_graph(&scaled.graph);
        let a = Assignment::uniform(fused.layers.len(), fused.tensors.len(), Bits::B8);
        let job_dir = dir.join("finetune").join(slug(&format!("width-{width}")));
        let accuracy = finetune_assignment(
            &scaled.graph,
            &a,
            &dataset,
            &settings.finetune,
            &job_dir,
            "width-scaled 8-bit",
            progress,
        )?;
        let table = crate::cost::CostTable::build(&fused, &problem.platform);
        let costs = table.evaluate(&a);
        rows.push(Row {
            label: format!("uniform 8-bit, width {width}"),
            bits: format!("8 everywhere ({spec})"),
            figures: Some(Figures {
                cycles: costs.cycles,
                flash: costs.flash,
                ram: costs.ram,
            }),
            accuracy,
            fits: true,
        });
    }
    watch.lap("baseline");

    // 6. The chosen network as integer C code, verified against the golden model.
    let deployed = deploy(
        &finetune_dir(&dir, chosen),
        &DeploySettings {
            platform: inputs.platform.clone(),
            data: settings.data.clone(),
            verify_images: DEPLOY_VERIFY_IMAGES,
            agreement_images: dataset.test.len(),
            assignment: None,
            requant_bits: 64,
            deeploy_strict: false,
        },
        &dir.join("deploy"),
    )?;
    let summary: String = deployed
        .text
        .lines()
        .filter(|l| {
            [
                "golden model vs",
                "host build",
                "PULP path emulated",
                "DORY export",
                "rv32imc build",
                "memory:",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (exact, of) = deployed.bit_exact;
    if exact < of {
        return Err(FlowError::Input(format!(
            "the chosen network's generated C and DORY export reproduced the golden model on only {exact} of {of} images; see {}",
            deployed.dir.join("report.txt").display()
        )));
    }
    watch.lap("deploy");
    let deployment = format!(
        "chosen network deployed to {}/:\n{summary}",
        deployed.dir.display()
    );

    let text = report_text(&prepared, &rows, winner, fp_accuracy, &deployment);
    let markdown = format!("# qsearch main job\n\n{}", markdown_code_block(&text));
    write_text(&dir.join("report.md"), &markdown)?;
    let text = text + &stages_text(&watch.stages);
    let mut frame = rows_frame(&prepared, &rows).map_err(|e| FlowError::Input(e.to_string()))?;
    write_frame(&mut frame, &dir, "tradeoff")?;
    tradeoff_plot(&prepared, &rows, winner, &dir)?;
    Ok(MainReport {
        rows,
        stages: watch.stages,
        dir,
        text,
        winner,
    })
}

/// Where a candidate's fine-tuning writes (checkpoint, quantized.onnx, quantization.json).
fn finetune_dir(run: &Path, c: &Candidate) -> PathBuf {
    run.join("finetune").join(format!(
        "genes-{}",
        c.genes.iter().map(u8::to_string).collect::<String>()
    ))
}

fn latency_ms(prepared: &Prepared, f: &Figures) -> f64 {
    1e3 * f.cycles / prepared.problem.platform.hardware.clock_hz.value
}

fn report_text(
    prepared: &Prepared,
    rows: &[Row],
    winner: usize,
    fp: f64,
    deployment: &str,
) -> String {
    let p = &prepared.problem;
    let mut t = Table::new(&[
        "network<",
        "bits (w / a)<",
        "accuracy %",
        "vs FP32",
        "latency ms",
        "cycles",
        "flash B",
        "RAM B",
        "fits<",
    ])
    .wrap("bits (w / a)");
    for (i, row) in rows.iter().enumerate() {
        let label = if i == winner {
            format!("{} (chosen)", row.label)
        } else {
            row.label.clone()
        };
        let (ms, cycles, flash, ram) = match &row.figures {
            Some(f) => (
                format!("{:.3}", latency_ms(prepared, f)),
                group_thousands(f.cycles.round() as u64),
                group_thousands(f.flash),
                group_thousands(f.ram),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        t.row(vec![
            label,
            bits_display(&row.bits),
            format!("{:.2}", row.accuracy),
            if row.figures.is_some() {
                format!("{:+.2}", row.accuracy - fp)
            } else {
                "".into()
            },
            ms,
            cycles,
            flash,
            ram,
            if row.figures.is_none() {
                "-".into()
            } else if row.fits {
                "yes".into()
            } else {
                "no".into()
            },
        ]);
    }
    let mut out = format!(
        "{} on {}, {}; limits: {}\n{}: {}\n\n",
        terminal_text(&prepared.graph.name),
        p.platform.name,
        p.objective.name,
        p.objective
            .limits
            .iter()
            .map(|l| format!(
                "{} <= {}",
                l.metric,
                crate::report::value_text(p, l.metric, l.max)
            ))
            .collect::<Vec<_>>()
            .join(", "),
        p.platform.name,
        p.platform.description,
    );
    out += &t.render();
    let _ = write!(out, "\n{deployment}");
    out
}

/// A row's precisions as the terminal table shows them: long digit runs in groups of ten (so
/// that a deep network's wrap at the spaces and a layer's position can be counted), and the
/// width-scaled baseline's model spec, which its network label names, left to the CSV.
fn bits_display(bits: &str) -> String {
    if !bits.starts_with("w ") {
        return bits.split(" (").next().unwrap_or(bits).to_string();
    }
    bits.split(' ')
        .map(|word| {
            if word.len() > 10 && word.chars().all(|c| c.is_ascii_digit()) {
                word.as_bytes()
                    .chunks(10)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wall time per stage: printed, kept out of `report.md` so that the report of a run repeats.
fn stages_text(stages: &[(String, f64)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nstages: {}",
        stages
            .iter()
            .map(|(s, t)| format!("{s} {t:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "total: {:.1} s",
        stages.iter().map(|s| s.1).sum::<f64>()
    );
    out
}

fn rows_frame(prepared: &Prepared, rows: &[Row]) -> Result<DataFrame, PolarsError> {
    let get = |f: &dyn Fn(&Figures) -> f64| -> Vec<Option<f64>> {
        rows.iter().map(|r| r.figures.as_ref().map(f)).collect()
    };
    DataFrame::new_infer_height(vec![
        Column::new(
            "network".into(),
            rows.iter().map(|r| r.label.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "bits".into(),
            rows.iter().map(|r| r.bits.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "accuracy".into(),
            rows.iter().map(|r| r.accuracy).collect::<Vec<_>>(),
        ),
        Column::new("latency_ms".into(), get(&|c| latency_ms(prepared, c))),
        Column::new("cycles".into(), get(&|f| f.cycles)),
        Column::new("flash_bytes".into(), get(&|f| f.flash as f64)),
        Column::new("ram_bytes".into(), get(&|f| f.ram as f64)),
        Column::new(
            "fits".into(),
            rows.iter().map(|r| r.fits).collect::<Vec<_>>(),
        ),
    ])
}

/// Accuracy against latency and against memory: a labelled marker per network (hollow when it
/// does not meet the limits), the FP32 accuracy and the limits as reference lines, and the
/// measured Pareto front of the networks that fit.
fn tradeoff_plot(
    prepared: &Prepared,
    rows: &[Row],
    winner: usize,
    dir: &std::path::Path,
) -> Result<(), FlowError> {
    let objective = &prepared.problem.objective;
    let clock = prepared.problem.platform.hardware.clock_hz.value;
    // The memory panel shows the figure a limit is on: the total, flash or RAM.
    let memory = [Metric::Memory, Metric::Flash, Metric::Ram]
        .into_iter()
        .find(|&m| objective.limit(m).is_some())
        .unwrap_or(Metric::Memory);
    let (memory_label, limit_name) = match memory {
        Metric::Flash => ("flash (kB)", "flash limit"),
        Metric::Ram => ("peak RAM (kB)", "RAM limit"),
        _ => ("memory (kB, flash + peak RAM)", "budget"),
    };
    let kilobytes = |f: &Figures| {
        let bytes = match memory {
            Metric::Flash => f.flash,
            Metric::Ram => f.ram,
            _ => f.flash + f.ram,
        };
        bytes as f64 / 1e3
    };
    let networks = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let f = r.figures.as_ref()?;
            Some(plot::Network {
                label: if i == winner {
                    format!("{} (chosen)", r.label)
                } else {
                    r.label.clone()
                },
                x: vec![latency_ms(prepared, f), kilobytes(f)],
                y: r.accuracy,
                fits: r.fits,
                chosen: i == winner,
            })
        })
        .collect();
    let latency_marks = objective
        .limit(Metric::Latency)
        .map(|cycles| {
            let ms = 1e3 * cycles / clock;
            (ms, format!("latency limit {ms:.3} ms"))
        })
        .into_iter()
        .collect();
    let memory_marks = objective
        .limit(memory)
        .map(|bytes| {
            (
                bytes / 1e3,
                format!("{limit_name} {}", crate::units::format_bytes(bytes as u64)),
            )
        })
        .into_iter()
        .collect();
    let y_marks = rows
        .iter()
        .filter(|r| r.figures.is_none())
        .map(|r| (r.accuracy, format!("{} {:.2}%", r.label, r.accuracy)))
        .collect();
    let spec = plot::Tradeoff {
        title: format!(
            "{} on {}: test accuracy against latency and memory",
            prepared.graph.name, prepared.problem.platform.name
        ),
        y_label: "test accuracy (%)".into(),
        panels: vec![
            plot::Panel {
                x_label: "latency (ms)".into(),
                x_marks: latency_marks,
            },
            plot::Panel {
                x_label: memory_label.into(),
                x_marks: memory_marks,
            },
        ],
        y_marks,
        networks,
    };
    plot::write_tradeoff(&spec, &dir.join("tradeoff")).map_err(FlowError::Input)
}
