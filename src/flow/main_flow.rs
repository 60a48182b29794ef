//! The main command: at every searched width, train the network (once, cached), measure its
//! sensitivity, search, fine-tune the best candidates and uniform 8 bit; choose among all of them
//! and report the accuracy-latency-size trade-off of mixed precision against uniform 8 bit.

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
use crate::space::SpaceConfig;
use crate::train::data::{self, Dataset};
use crate::train::{TrainConfig, TrainError};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The main flow's knobs.
#[derive(Clone, Debug)]
pub struct MainSettings {
    pub data: String,
    /// Floating-point training schedule (of the network at every width).
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

    /// Adds the time since the last lap to stage `name` (a stage met again, at another width,
    /// keeps its first place).
    fn lap(&mut self, name: &str) {
        let seconds =
            self.started.elapsed().as_secs_f64() - self.stages.iter().map(|s| s.1).sum::<f64>();
        if self.progress {
            eprintln!("stage {name}: {seconds:.1} s");
        }
        match self.stages.iter_mut().find(|s| s.0 == name) {
            Some(stage) => stage.1 += seconds,
            None => self.stages.push((name.to_string(), seconds)),
        }
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

/// A zoo network with a width option: its name, its options (`a=1,b=2`) and its default width.
fn zoo_with_width(model: &str) -> Option<(&str, &str, f64)> {
    let name = model.strip_prefix("zoo:")?;
    let (base, options) = name.split_once(':').unwrap_or((name, ""));
    let entry = zoo::ENTRIES.iter().find(|e| e.name == base)?;
    let default = entry.options.iter().find(|(k, _)| *k == "width")?.1;
    Some((base, options, default))
}

/// The width of `model`, when it is a zoo network with a width option.
fn own_width(model: &str) -> Option<f64> {
    let (_, options, default) = zoo_with_width(model)?;
    let given = options
        .split(',')
        .find_map(|o| o.strip_prefix("width=")?.parse().ok());
    Some(given.unwrap_or(default))
}

/// The zoo spec of `model` at `width`, when it is a zoo network with a width option.
fn scaled_spec(model: &str, width: f64) -> Option<String> {
    let (base, options, _) = zoo_with_width(model)?;
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

/// The widths the search space lists, widest first, each with its model spec (`model` itself at
/// its own width); without a list, `model` alone at its own width (1.0 when it has none). An error
/// when widths are listed for a network without a width option.
fn listed_widths(
    model: &str,
    space: &str,
    listed: &[f64],
) -> Result<Vec<(f64, String)>, FlowError> {
    let own = own_width(model);
    if listed.is_empty() {
        return Ok(vec![(own.unwrap_or(1.0), model.to_string())]);
    }
    let mut specs = Vec::new();
    for &width in listed {
        let spec = match scaled_spec(model, width) {
            Some(_) if Some(width) == own => model.to_string(),
            Some(spec) => spec,
            None => {
                return Err(FlowError::Input(format!(
                    "the search space {space} lists widths, but {model} has no width option; widths apply to the zoo networks that take one (see `qsearch zoo`)"
                )));
            }
        };
        specs.push((width, spec));
    }
    specs.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(specs)
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

/// One searched width: its trained network's problem (with its measured sensitivity table), the
/// network's floating-point accuracy and what the report's labels start with.
struct Width {
    width: f64,
    prepared: Prepared,
    fp_accuracy: f64,
    /// `width 0.9 ` when several widths are searched, else empty.
    prefix: String,
}

/// The search stage's result at one width: the candidates to fine-tune (the exact optimum
/// first), each policy's winner and, at the primary width, the run folder the search wrote.
struct Shortlist {
    dir: Option<PathBuf>,
    candidates: Vec<Candidate>,
    winners: Vec<(String, Candidate)>,
}

/// A fine-tuned network: its report row, its fine-tune folder, its width (an index into the
/// searched widths) and assignment, and whether every weight and activation is 8-bit.
struct Finetuned {
    row: Row,
    dir: PathBuf,
    width: usize,
    genes: Vec<u8>,
    eight_bit: bool,
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
    let pool = if fitting.is_empty() {
        (0..networks.len()).collect()
    } else {
        fitting
    };
    fastest_within_tie(networks, pool).unwrap_or(0)
}

/// Of the networks at `pool`'s indices, the fastest whose measured accuracy is within
/// [`ACCURACY_TIE_POINTS`] of the most accurate one's (the earlier on equal latency).
fn fastest_within_tie(networks: &[Finetuned], pool: Vec<usize>) -> Option<usize> {
    let accuracy = |i: usize| networks[i].row.accuracy;
    let best = pool.iter().map(|&i| accuracy(i)).fold(f64::MIN, f64::max);
    let cycles = |i: usize| networks[i].row.figures.map_or(f64::MAX, |f| f.cycles);
    pool.into_iter()
        .filter(|&i| accuracy(i) >= best - ACCURACY_TIE_POINTS)
        .min_by(|&a, &b| cycles(a).total_cmp(&cycles(b)).then(a.cmp(&b)))
}

/// Runs the whole flow.
pub fn run_main(inputs: &Inputs, settings: &MainSettings) -> Result<MainReport, FlowError> {
    let mut watch = Stopwatch::new(settings.progress);
    let dataset = data::load(&settings.data).map_err(TrainError::from)?;

    // 1-2. At every width: the floating-point network and its measured sensitivity. Without a
    // width list, the widest width whose uniform 8-bit network fits joins the network's own.
    let listed = SpaceConfig::load(&inputs.space)?.widths;
    let mut widths = Vec::new();
    for (width, spec) in listed_widths(&inputs.model, &inputs.space, &listed)? {
        widths.push(prepare_width(
            inputs, settings, &dataset, width, &spec, &mut watch,
        )?);
    }
    if listed.is_empty()
        && let Some((spec, width)) = widest_fitting(inputs, &widths[0].prepared.problem)?
        && width != widths[0].width
    {
        widths.push(prepare_width(
            inputs, settings, &dataset, width, &spec, &mut watch,
        )?);
        widths.sort_by(|a, b| b.width.total_cmp(&a.width));
    }
    if widths.len() > 1 {
        for w in &mut widths {
            w.prefix = format!("width {:?} ", w.width);
        }
    }
    // The primary width (the network's own, else the widest) writes the run's search and also
    // gets the policies' winners and uniform 4 bit.
    let primary = own_width(&inputs.model)
        .and_then(|own| widths.iter().position(|w| w.width == own))
        .unwrap_or(0);

    // 3. Search: at every width the exact optimum and the candidates along the predicted front.
    let mut shortlists = Vec::new();
    for (i, w) in widths.iter().enumerate() {
        shortlists.push(shortlist(&w.prepared, settings, i == primary)?);
    }
    let dir = shortlists[primary]
        .dir
        .clone()
        .expect("the primary width's search writes the run folder");
    watch.lap("search");

    // 4. Quantization-aware fine-tuning of every width's candidates, winners and baselines.
    let mut networks = Vec::new();
    for (i, (w, list)) in widths.iter().zip(&shortlists).enumerate() {
        let root = if i == primary {
            dir.join("finetune")
        } else {
            dir.join("finetune")
                .join(slug(&format!("width-{:?}", w.width)))
        };
        let jobs = finetune_jobs(w, list, i == primary);
        networks.extend(finetune_width(i, w, &jobs, &dataset, settings, &root)?);
    }
    watch.lap("fine-tune");

    // 5. The chosen network as integer C code, verified against the golden model.
    let winner = choose(&networks);
    let chosen = &networks[winner];
    write_chosen(&widths[chosen.width].prepared.problem, chosen, &dir)?;
    let deployment = deploy_chosen(inputs, settings, &dataset, &chosen.dir, &dir)?;
    watch.lap("deploy");

    // 6. The trade-off: report.md, the frame and the plot.
    let main = &widths[primary];
    let verdict = verdict(&main.prepared.problem, &networks, winner);
    let mut rows = vec![Row {
        label: "FP32".into(),
        bits: "fp32".into(),
        figures: None,
        accuracy: main.fp_accuracy,
        fits: false,
    }];
    rows.extend(networks.into_iter().map(|n| n.row));
    let ranked = Ranked {
        rows,
        winner: winner + 1,
    };
    let text = write_report(
        &main.prepared,
        &ranked,
        main.fp_accuracy,
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

/// Steps 1-2 at one width: the floating-point network (trained on first use, then cached) and
/// its problem with the measured sensitivity table (the accuracy drop of quantizing each tensor
/// alone; cached too).
fn prepare_width(
    inputs: &Inputs,
    settings: &MainSettings,
    dataset: &Dataset,
    width: f64,
    spec: &str,
    watch: &mut Stopwatch,
) -> Result<Width, FlowError> {
    let trained = cached_model(
        spec,
        &settings.data,
        &settings.train,
        &inputs.results,
        settings.progress,
    )?;
    let fp_accuracy = trained
        .state
        .history
        .last()
        .map_or(0.0, |h| h.test_accuracy);
    watch.lap("train");
    let table = measured(&trained.graph, dataset, inputs, settings.progress)?;
    watch.lap("sensitivity");
    Ok(Width {
        width,
        prepared: prepare_graph(trained.graph, inputs, Some(table))?,
        fp_accuracy,
        prefix: String::new(),
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
    let chosen_is_8_bit = chosen.eight_bit;
    let kind = |eight: bool| {
        if eight {
            "uniform 8-bit"
        } else {
            "mixed-precision"
        }
    };
    // The other kind's best: the fastest within the tie of its most accurate that fits.
    let others = (0..networks.len())
        .filter(|&i| networks[i].row.fits && networks[i].eight_bit != chosen_is_8_bit)
        .collect();
    let rival = fastest_within_tie(networks, others).map(|i| &networks[i]);
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

/// Step 3 at one width: the exact optimum, the ILP Pareto set against the predicted accuracy loss
/// for the other candidates (`top_k` in all, spread along the set) and, at the primary width,
/// each policy's winner, with the exact search written as the run. Another width whose search
/// finds nothing meeting the limits has no candidates.
fn shortlist(
    prepared: &Prepared,
    settings: &MainSettings,
    primary: bool,
) -> Result<Shortlist, FlowError> {
    let problem = &prepared.problem;
    let (optimum, dir) = if primary {
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
        (Some(optimum), Some(exact.dir))
    } else {
        let mut ilp = policy(EXACT_POLICY, &settings.search)?;
        let exact = run_policy(ilp.as_mut(), problem, &settings.search, false)?;
        (exact.best().cloned(), None)
    };
    let Some(optimum) = optimum else {
        return Ok(Shortlist {
            dir,
            candidates: Vec::new(),
            winners: Vec::new(),
        });
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
    let policies = if primary { &settings.policies[..] } else { &[] };
    for name in policies {
        let mut p = policy(name, &settings.search)?;
        let r = run_policy(p.as_mut(), problem, &settings.search, false)?;
        if let Some(best) = r.best() {
            winners.push((name.clone(), best.clone()));
        }
    }
    Ok(Shortlist {
        dir,
        candidates,
        winners,
    })
}

/// What step 4 fine-tunes at one width, labelled as the report names it: the candidates, the
/// winners, uniform 8 bit (at another width than the primary one only when it fits) and, at the
/// primary width, uniform 4 bit.
fn finetune_jobs(width: &Width, shortlist: &Shortlist, primary: bool) -> Vec<(String, Candidate)> {
    let problem = &width.prepared.problem;
    let prefix = &width.prefix;
    let mut jobs: Vec<(String, Candidate)> = shortlist
        .candidates
        .iter()
        .enumerate()
        .map(|(k, c)| (format!("{prefix}candidate {}", k + 1), c.clone()))
        .collect();
    jobs.extend(
        shortlist
            .winners
            .iter()
            .map(|(name, c)| (format!("{prefix}{name} winner"), c.clone())),
    );
    let uniform = if primary {
        &[Bits::B8, Bits::B4][..]
    } else {
        &[Bits::B8][..]
    };
    for &bits in uniform {
        let c = problem.evaluate(&problem.space.uniform(bits));
        if primary || c.feasible() {
            jobs.push((format!("{prefix}uniform {bits}-bit"), c));
        }
    }
    jobs
}

/// Step 4 at one width (`index` among the searched ones): fine-tunes every job into `root` (an
/// assignment met twice is fine-tuned once) and measures its test accuracy.
fn finetune_width(
    index: usize,
    width: &Width,
    jobs: &[(String, Candidate)],
    dataset: &Dataset,
    settings: &MainSettings,
    root: &Path,
) -> Result<Vec<Finetuned>, FlowError> {
    let problem = &width.prepared.problem;
    let mut accuracy_of: Vec<(Vec<u8>, f64)> = Vec::new();
    let mut networks = Vec::new();
    for (label, c) in jobs {
        let a = problem.space.decode(&c.genes);
        let dir = finetune_dir(root, c);
        let accuracy = match accuracy_of.iter().find(|(g, _)| *g == c.genes) {
            Some((_, accuracy)) => *accuracy,
            None => {
                let accuracy = finetune_assignment(
                    &width.prepared.graph,
                    &a,
                    dataset,
                    &settings.finetune,
                    &dir,
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
            dir,
            width: index,
            genes: c.genes.clone(),
            eight_bit: a
                .weight_bits
                .iter()
                .chain(&a.activation_bits)
                .all(|&b| b == Bits::B8),
        });
    }
    Ok(networks)
}

/// `chosen.json`: the chosen network's assignment (`problem` is its width's) with its measured
/// accuracy and fine-tuned network.
fn write_chosen(problem: &Problem, chosen: &Finetuned, dir: &Path) -> Result<(), FlowError> {
    let mut chosen_json = assignment_json(problem, &problem.evaluate(&chosen.genes));
    chosen_json["network"] = chosen.row.label.clone().into();
    chosen_json["test_accuracy"] = chosen.row.accuracy.into();
    chosen_json["finetuned"] = chosen.dir.display().to_string().into();
    write_json(&dir.join("chosen.json"), &chosen_json)?;
    Ok(())
}

/// Step 5: deploys the fine-tuned network in `finetuned` to `dir/deploy/` and returns the lines
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

/// Step 6: writes `report.md`, `tradeoff.{parquet,csv}` and `tradeoff.{svg,png}`; returns the
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

/// Where a candidate's fine-tuning writes (checkpoint, quantized.onnx, quantization.json) under
/// its width's folder `root`.
fn finetune_dir(root: &Path, c: &Candidate) -> PathBuf {
    root.join(format!(
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
            width: 0,
            genes: Vec::new(),
            eight_bit: false,
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

    #[test]
    fn listed_widths_name_their_zoo_specs_and_need_a_width_option() {
        let specs = listed_widths("zoo:fashion-cnn:seed=1", "w.toml", &[0.5, 1.0]).unwrap();
        assert_eq!(
            specs,
            vec![
                (1.0, "zoo:fashion-cnn:seed=1".to_string()),
                (0.5, "zoo:fashion-cnn:seed=1,width=0.5".to_string()),
            ]
        );
        let own = listed_widths("zoo:fashion-cnn:width=0.5", "default", &[]).unwrap();
        assert_eq!(own, vec![(0.5, "zoo:fashion-cnn:width=0.5".to_string())]);
        assert_eq!(
            listed_widths("net.onnx", "default", &[]).unwrap(),
            vec![(1.0, "net.onnx".to_string())]
        );
        for model in ["net.onnx", "zoo:resnet8"] {
            let err = listed_widths(model, "w.toml", &[0.5])
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
}
