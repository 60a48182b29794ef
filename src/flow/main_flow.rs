//! The main command: train the network (once, cached), measure its sensitivity, search, fine-tune
//! the best candidates and the baselines, and report the accuracy-latency-size trade-off against
//! uniform 8 bit and against the 8-bit network scaled down until it fits the same budget.

use super::{
    DeploySettings, FlowError, Inputs, Measure, Prepared, cached_model, deploy,
    finetune_assignment, measured_sensitivity, model_hash, prepare_graph, search,
};
use crate::graph::{FusedGraph, Graph, zoo};
use crate::objective::{Metric, Objective};
use crate::precision::{Assignment, Bits};
use crate::report::{
    Figures, Row, assignment_json, bits_summary, deployment_text, plot, stages_text,
    tradeoff_frame, tradeoff_markdown, tradeoff_plot, tradeoff_text,
};
use crate::results::{slug, write_frame, write_json, write_text};
use crate::search::{Candidate, EXACT_POLICY, Problem, Settings, policy, run_policy};
use crate::sensitivity::Sensitivity;
use crate::train::data::{self, Dataset};
use crate::train::{TrainConfig, TrainError};
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

fn figures(c: &Candidate) -> Figures {
    Figures {
        cycles: c.metrics.cycles,
        flash: c.metrics.flash,
        ram: c.metrics.ram,
    }
}

/// What the main flow printed and wrote, with the trade-off it measured.
pub struct MainReport {
    pub rows: Vec<Row>,
    /// Seconds per stage.
    pub stages: Vec<(String, f64)>,
    pub dir: PathBuf,
    pub text: String,
    /// Index in `rows` of the chosen network.
    pub winner: usize,
}

/// Wall time per stage of the main flow.
struct Stopwatch {
    started: Instant,
    stages: Vec<(String, f64)>,
    progress: bool,
}

impl Stopwatch {
    fn new(progress: bool) -> Stopwatch {
        Stopwatch {
            started: Instant::now(),
            stages: Vec::new(),
            progress,
        }
    }

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
    let (_, calibration) = dataset.train.split_off(MAIN_CALIBRATION_IMAGES);
    let points = measured_sensitivity(graph, &calibration, Measure::Accuracy, progress);
    points.write_csv(&fused, &cache)?;
    Ok(points)
}

/// The same problem minimising `[primary, predicted accuracy loss]`, for the candidates.
fn with_accuracy(p: &Problem) -> Result<Problem, FlowError> {
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

/// The search stage's result: the run folder, the candidates to fine-tune (the exact optimum
/// first) and each policy's winner.
struct Shortlist {
    dir: PathBuf,
    candidates: Vec<Candidate>,
    winners: Vec<(String, Candidate)>,
}

/// A fine-tuned network: its report row, its fine-tune folder and, for a network of the
/// searched architecture, its assignment (`None` for a width-scaled network).
struct Finetuned {
    row: Row,
    dir: PathBuf,
    candidate: Option<Candidate>,
}

impl Finetuned {
    /// Whether every weight and activation is 8-bit (a width-scaled network is).
    fn uniform_8_bit(&self, problem: &Problem) -> bool {
        self.candidate.as_ref().is_none_or(|c| {
            let a = problem.space.decode(&c.genes);
            a.weight_bits
                .iter()
                .chain(&a.activation_bits)
                .all(|&b| b == Bits::B8)
        })
    }
}

/// Measured accuracies this close count as equal when the main job chooses: the fastest of the
/// networks within this many points of the most accurate one wins.
pub const ACCURACY_TIE_POINTS: f64 = 0.1;

/// The chosen network: among those that meet the limits, the fastest whose measured accuracy is
/// within [`ACCURACY_TIE_POINTS`] of the most accurate one's; the most accurate network when
/// none meets them.
fn choose(networks: &[Finetuned]) -> usize {
    let fitting: Vec<usize> = (0..networks.len())
        .filter(|&i| networks[i].row.fits)
        .collect();
    let pool: Vec<usize> = if fitting.is_empty() {
        (0..networks.len()).collect()
    } else {
        fitting
    };
    let accuracy = |i: usize| networks[i].row.accuracy;
    let best = pool.iter().map(|&i| accuracy(i)).fold(f64::MIN, f64::max);
    let cycles = |i: usize| networks[i].row.figures.map_or(f64::MAX, |f| f.cycles);
    pool.into_iter()
        .filter(|&i| accuracy(i) >= best - ACCURACY_TIE_POINTS)
        .min_by(|&a, &b| cycles(a).total_cmp(&cycles(b)).then(a.cmp(&b)))
        .unwrap_or(0)
}

/// Runs the whole flow.
pub fn run_main(inputs: &Inputs, settings: &MainSettings) -> Result<MainReport, FlowError> {
    let progress = settings.progress;
    let mut watch = Stopwatch::new(progress);
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

    // 3. Search: the exact optimum, the candidates and each policy's winner.
    let prepared = prepare_graph(trained.graph.clone(), inputs, Some(table))?;
    let shortlist = shortlist(&prepared, settings)?;
    watch.lap("search");

    // 4. Quantization-aware fine-tuning of the candidates, the winners and the baselines.
    let mut networks = finetune_shortlist(
        &prepared.problem,
        &trained.graph,
        &dataset,
        settings,
        &shortlist,
    )?;
    let dir = shortlist.dir;
    watch.lap("fine-tune");

    // 5. The 8-bit network scaled down until it fits the same limits.
    networks.extend(width_scaled_baseline(
        inputs,
        settings,
        &prepared.problem,
        &dataset,
        &dir,
    )?);
    watch.lap("baseline");

    // 6. The chosen network as integer C code, verified against the golden model.
    let winner = choose(&networks);
    write_chosen(&prepared.problem, &networks[winner], &dir)?;
    let deployment = deploy_chosen(inputs, settings, &dataset, &networks[winner].dir, &dir)?;
    watch.lap("deploy");

    // 7. The trade-off: report.md, the frame and the plot.
    let verdict = verdict(&prepared.problem, &networks, winner);
    let mut rows = vec![Row {
        label: "FP32".into(),
        bits: "fp32".into(),
        figures: None,
        accuracy: fp_accuracy,
        fits: false,
    }];
    rows.extend(networks.into_iter().map(|n| n.row));
    let ranked = Ranked {
        rows,
        winner: winner + 1,
    };
    let text = write_report(
        &prepared,
        &ranked,
        fp_accuracy,
        &format!("{verdict}\n\n{deployment}"),
        &dir,
    )?;
    Ok(MainReport {
        text: text + &stages_text(&watch.stages),
        rows: ranked.rows,
        stages: watch.stages,
        dir,
        winner: ranked.winner,
    })
}

/// The report's rows (FP32 first) and the index in `rows` of the chosen network.
struct Ranked {
    rows: Vec<Row>,
    winner: usize,
}

/// The report's one-sentence answer: which kind of network won (mixed precision or uniform
/// 8-bit at some width) and by how much against the best of the other kind that fits.
fn verdict(problem: &Problem, networks: &[Finetuned], winner: usize) -> String {
    let chosen = &networks[winner];
    let ms = |n: &Finetuned| {
        n.row.figures.map_or(f64::NAN, |f| {
            crate::report::display_value(problem, Metric::Latency, f.cycles)
        })
    };
    let chosen_is_8_bit = chosen.uniform_8_bit(problem);
    let kind = |eight: bool| {
        if eight {
            "uniform 8-bit"
        } else {
            "mixed-precision"
        }
    };
    // The other kind's best: the fastest within the tie of its most accurate that fits.
    let others: Vec<&Finetuned> = networks
        .iter()
        .filter(|n| n.row.fits && n.uniform_8_bit(problem) != chosen_is_8_bit)
        .collect();
    let best = others
        .iter()
        .map(|n| n.row.accuracy)
        .fold(f64::MIN, f64::max);
    let rival = others
        .iter()
        .filter(|n| n.row.accuracy >= best - ACCURACY_TIE_POINTS)
        .min_by(|a, b| ms(a).total_cmp(&ms(b)));
    let head = format!(
        "Chosen: {}, a {} network: {:.2}% at {:.3} ms, the fastest that fits within {ACCURACY_TIE_POINTS} point of the most accurate that fits.",
        chosen.row.label,
        kind(chosen_is_8_bit),
        chosen.row.accuracy,
        ms(chosen),
    );
    let Some(r) = rival else {
        return format!("{head} No {} network fits.", kind(!chosen_is_8_bit));
    };
    let speed = ms(r) / ms(chosen);
    let margin = if speed >= 1.0 {
        format!("{speed:.2}x faster")
    } else {
        format!(
            "{:.2} points more accurate, the other {:.2}x faster",
            chosen.row.accuracy - r.row.accuracy,
            1.0 / speed
        )
    };
    format!(
        "{head} The best {} network that fits ({}) reaches {:.2}% at {:.3} ms: {} wins, {margin}.",
        kind(!chosen_is_8_bit),
        r.row.label,
        r.row.accuracy,
        ms(r),
        kind(chosen_is_8_bit),
    )
}

/// The ILP Pareto set of the objective's primary metric against the predicted accuracy loss
/// (`3 * top_k` points, at least 6), from the fastest assignment to the least predicted loss.
pub(super) fn predicted_front(
    problem: &Problem,
    settings: &MainSettings,
) -> Result<Vec<Candidate>, FlowError> {
    let pareto = with_accuracy(problem)?;
    let sweep = Settings {
        pareto_points: (3 * settings.top_k).max(6),
        ..settings.search.clone()
    };
    let mut ilp = policy(EXACT_POLICY, &sweep)?;
    let front = run_policy(ilp.as_mut(), &pareto, &sweep, false)?;
    let mut front: Vec<Candidate> = front
        .front
        .iter()
        .map(|&i| problem.evaluate(&front.candidates[i].genes))
        .collect();
    front.sort_by(|a, b| a.metrics.cycles.total_cmp(&b.metrics.cycles));
    Ok(front)
}

/// Step 3: the exact optimum (written as the run's search), the ILP Pareto set against the
/// predicted accuracy loss for the other candidates (`top_k` in all, spread along the set), and
/// each policy's winner.
fn shortlist(prepared: &Prepared, settings: &MainSettings) -> Result<Shortlist, FlowError> {
    let problem = &prepared.problem;
    let run_name = settings.run.clone().unwrap_or_else(|| {
        slug(&format!(
            "main-{}-{}-{}",
            prepared.graph.name, problem.platform.name, problem.objective.name
        ))
    });
    let exact = search(
        prepared,
        EXACT_POLICY,
        &settings.search,
        Some(&run_name),
        settings.progress,
    )?;
    let Some(optimum) = exact.result.best().cloned() else {
        return Err(FlowError::Input(
            "the search found no assignment meeting the limits".into(),
        ));
    };
    // The candidates spread along the front: the fine-tunes measure the whole trade-off, not
    // only its fast end.
    let front = predicted_front(problem, settings)?;
    let mut candidates: Vec<Candidate> = vec![optimum];
    let last = front.len().saturating_sub(1);
    let picks = settings.top_k.saturating_sub(1);
    for k in 1..=picks {
        let Some(c) = front.get((k * last).div_ceil(picks)) else {
            break;
        };
        if !candidates.iter().any(|x| x.genes == c.genes) {
            candidates.push(c.clone());
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
    Ok(Shortlist {
        dir: exact.dir,
        candidates,
        winners,
    })
}

/// What step 4 fine-tunes, labelled as the report names it: the candidates, the winners and
/// the uniform 8-bit and 4-bit baselines.
fn finetune_jobs(problem: &Problem, shortlist: &Shortlist) -> Vec<(String, Candidate)> {
    let mut jobs: Vec<(String, Candidate)> = shortlist
        .candidates
        .iter()
        .enumerate()
        .map(|(k, c)| (format!("candidate {}", k + 1), c.clone()))
        .collect();
    jobs.extend(
        shortlist
            .winners
            .iter()
            .map(|(name, c)| (format!("{name} winner"), c.clone())),
    );
    for bits in [Bits::B8, Bits::B4] {
        jobs.push((
            format!("uniform {bits}-bit"),
            problem.evaluate(&problem.space.uniform(bits)),
        ));
    }
    jobs
}

/// Step 4: fine-tunes every job (an assignment met twice is fine-tuned once) and measures its
/// test accuracy.
fn finetune_shortlist(
    problem: &Problem,
    graph: &Graph,
    dataset: &Dataset,
    settings: &MainSettings,
    shortlist: &Shortlist,
) -> Result<Vec<Finetuned>, FlowError> {
    let mut accuracy_of: Vec<(Vec<u8>, f64)> = Vec::new();
    let mut networks = Vec::new();
    for (label, c) in &finetune_jobs(problem, shortlist) {
        let accuracy = match accuracy_of.iter().find(|(g, _)| *g == c.genes) {
            Some((_, a)) => *a,
            None => {
                let a = problem.space.decode(&c.genes);
                let job_dir = finetune_dir(&shortlist.dir, c);
                let accuracy = finetune_assignment(
                    graph,
                    &a,
                    dataset,
                    &settings.finetune,
                    &job_dir,
                    label,
                    settings.progress,
                )?;
                accuracy_of.push((c.genes.clone(), accuracy));
                accuracy
            }
        };
        networks.push(Finetuned {
            row: Row {
                label: label.clone(),
                bits: bits_summary(problem, &c.genes),
                figures: Some(figures(c)),
                accuracy,
                fits: c.feasible(),
            },
            dir: finetune_dir(&shortlist.dir, c),
            candidate: Some(c.clone()),
        });
    }
    Ok(networks)
}

/// `chosen.json`: the chosen network (its assignment, or a width-scaled network's model and
/// bits) with its measured accuracy and fine-tuned network.
fn write_chosen(problem: &Problem, chosen: &Finetuned, dir: &Path) -> Result<(), FlowError> {
    let mut chosen_json = match &chosen.candidate {
        Some(c) => assignment_json(problem, c),
        None => serde_json::json!({ "bits": chosen.row.bits }),
    };
    chosen_json["network"] = chosen.row.label.clone().into();
    chosen_json["test_accuracy"] = chosen.row.accuracy.into();
    chosen_json["finetuned"] = chosen.dir.display().to_string().into();
    write_json(&dir.join("chosen.json"), &chosen_json)?;
    Ok(())
}

/// Step 5: the widest uniform 8-bit scaling of the network that meets the memory limits,
/// trained (cached) and fine-tuned; none when the network has no width option or no limit.
fn width_scaled_baseline(
    inputs: &Inputs,
    settings: &MainSettings,
    problem: &Problem,
    dataset: &Dataset,
    dir: &Path,
) -> Result<Option<Finetuned>, FlowError> {
    let Some((spec, width)) = widest_fitting(inputs, problem)? else {
        return Ok(None);
    };
    let scaled = cached_model(
        &spec,
        &settings.data,
        &settings.train,
        &inputs.results,
        settings.progress,
    )?;
    let fused = FusedGraph::from_graph(&scaled.graph);
    let a = Assignment::uniform(fused.layers.len(), fused.tensors.len(), Bits::B8);
    let job_dir = dir.join("finetune").join(slug(&format!("width-{width}")));
    let accuracy = finetune_assignment(
        &scaled.graph,
        &a,
        dataset,
        &settings.finetune,
        &job_dir,
        "width-scaled 8-bit",
        settings.progress,
    )?;
    let table = crate::cost::CostTable::build(&fused, &problem.platform);
    let costs = table.evaluate(&a);
    Ok(Some(Finetuned {
        row: Row {
            label: format!("uniform 8-bit, width {width}"),
            bits: format!("8 everywhere ({spec})"),
            figures: Some(Figures {
                cycles: costs.cycles,
                flash: costs.flash,
                ram: costs.ram,
            }),
            accuracy,
            fits: true,
        },
        dir: job_dir,
        candidate: None,
    }))
}

/// Step 6: deploys the fine-tuned network in `finetuned` to `dir/deploy/` and returns the lines
/// the report repeats; an error unless the generated C reproduced the golden model on every
/// image.
fn deploy_chosen(
    inputs: &Inputs,
    settings: &MainSettings,
    dataset: &Dataset,
    finetuned: &Path,
    dir: &Path,
) -> Result<String, FlowError> {
    let deployed = deploy(
        finetuned,
        &DeploySettings {
            platform: inputs.platform.clone(),
            data: settings.data.clone(),
            verify_images: DEPLOY_VERIFY_IMAGES,
            agreement_images: dataset.test.len(),
            assignment: None,
            requant_bits: 64,
            deeploy_strict: false,
            // The simulated core is `qsearch deploy`'s stage, outside the main flow's time budget.
            rtl_images: None,
        },
        &dir.join("deploy"),
    )?;
    let (exact, of) = deployed.bit_exact;
    if exact < of {
        return Err(FlowError::Input(format!(
            "the chosen network's generated C and DORY export reproduced the golden model on only {exact} of {of} images; see {}",
            deployed.dir.join("report.txt").display()
        )));
    }
    Ok(deployment_text(&deployed.dir, &deployed.text))
}

/// Step 7: writes `report.md`, `tradeoff.{parquet,csv}` and `tradeoff.{svg,png}`; returns the
/// report's text.
fn write_report(
    prepared: &Prepared,
    ranked: &Ranked,
    fp_accuracy: f64,
    deployment: &str,
    dir: &Path,
) -> Result<String, FlowError> {
    let problem = &prepared.problem;
    let network = &prepared.graph.name;
    let text = tradeoff_text(
        problem,
        network,
        &ranked.rows,
        ranked.winner,
        fp_accuracy,
        deployment,
    );
    write_text(&dir.join("report.md"), &tradeoff_markdown(&text))?;
    let mut frame =
        tradeoff_frame(problem, &ranked.rows).map_err(|e| FlowError::Input(e.to_string()))?;
    write_frame(&mut frame, dir, "tradeoff")?;
    let figure = tradeoff_plot(problem, network, &ranked.rows, ranked.winner);
    plot::write_tradeoff(&figure, &dir.join("tradeoff")).map_err(FlowError::Input)?;
    Ok(text)
}

/// Where a candidate's fine-tuning writes (checkpoint, quantized.onnx, quantization.json).
fn finetune_dir(run: &Path, c: &Candidate) -> PathBuf {
    run.join("finetune").join(format!(
        "genes-{}",
        c.genes.iter().map(u8::to_string).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(accuracy: f64, cycles: f64, fits: bool) -> Finetuned {
        Finetuned {
            row: Row {
                label: format!("{accuracy}% at {cycles}"),
                bits: String::new(),
                figures: Some(Figures {
                    cycles,
                    flash: 0,
                    ram: 0,
                }),
                accuracy,
                fits,
            },
            dir: PathBuf::new(),
            candidate: None,
        }
    }

    #[test]
    fn the_fastest_network_within_the_tie_of_the_most_accurate_that_fits_wins() {
        let networks = [
            network(92.0, 900.0, false),
            network(91.0, 500.0, true),
            network(91.45, 450.0, true),
            network(91.5, 600.0, true),
            network(91.38, 400.0, true),
        ];
        // 91.5 is the best that fits; 91.45 is within 0.1 point and faster; 91.38 is not.
        assert_eq!(choose(&networks), 2);
    }

    #[test]
    fn without_a_fitting_network_the_most_accurate_wins() {
        let networks = [network(90.0, 100.0, false), network(91.0, 900.0, false)];
        assert_eq!(choose(&networks), 1);
    }
}
