//! The main command: at every searched width and resolution, train the network (once, cached),
//! measure its sensitivity, search, fine-tune the best candidates and uniform 8 bit; choose among
//! all of them and report the accuracy-latency-size trade-off of mixed precision against uniform
//! 8 bit.

use super::variants::{self, Variant};
use super::{
    DeploySettings, FlowError, Inputs, Measure, Prepared, cached_model, deploy,
    finetune_assignment, measured_sensitivity, model_hash, prepare_graph, search,
};
use crate::graph::{FusedGraph, Graph};
use crate::objective::{Limit, Metric};
use crate::precision::Bits;
use crate::report::{
    Figures, Row, assignment_json, bits_summary, deployment_text, plot, stages_text,
    tradeoff_frame, tradeoff_markdown, tradeoff_plot, tradeoff_text,
};
use crate::results::{slug, write_frame, write_json, write_text};
use crate::search::{Candidate, EXACT_POLICY, Problem, SearchError, Settings, policy, run_policy};
use crate::sensitivity::Sensitivity;
use crate::space::SpaceConfig;
use crate::train::data::{self, Dataset};
use crate::train::{TrainConfig, TrainError, presets};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The main flow's knobs.
#[derive(Clone, Debug)]
pub struct MainSettings {
    pub data: String,
    /// Floating-point training schedule (of the network at every width and resolution).
    pub train: TrainConfig,
    /// Quantization-aware fine-tuning schedule (short).
    pub finetune: TrainConfig,
    /// Candidates fine-tuned and re-ranked by measured accuracy.
    pub top_k: usize,
    /// Policies whose winners are fine-tuned and reported.
    pub policies: Vec<String>,
    pub search: Settings,
    pub run: Option<String>,
    /// Whether the chosen network is deployed and verified (step 5); a sweep's cells skip it.
    pub deploy: bool,
    /// Measured accuracies this many points apart count as equal when choosing.
    pub accuracy_tie: f64,
    pub progress: bool,
}

/// The main flow's schedule as the CLI's flags and a main sweep's `[main]` table give it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MainSchedule {
    /// Dataset to train and fine-tune on (`fashion-mnist`, a directory or an `.npz`).
    pub data: String,
    /// Floating-point training epochs at every width and resolution.
    pub epochs: usize,
    /// Only the first N training images for floating-point training (all when absent).
    pub train_images: Option<usize>,
    /// Training images per fine-tuning run (one pass).
    pub finetune_images: usize,
    /// Candidates fine-tuned at every width and resolution.
    pub top_k: usize,
    /// Measured accuracies this many points apart count as equal: the fastest network within
    /// it of the most accurate is chosen.
    pub accuracy_tie: f64,
}

impl Default for MainSchedule {
    fn default() -> MainSchedule {
        MainSchedule {
            data: "fashion-mnist".into(),
            epochs: 3,
            train_images: None,
            finetune_images: 10_000,
            top_k: 3,
            accuracy_tie: ACCURACY_TIE_POINTS,
        }
    }
}

impl MainSchedule {
    /// Refuses an accuracy tie that is negative or not a number.
    pub fn check(&self) -> Result<(), String> {
        if !(self.accuracy_tie >= 0.0 && self.accuracy_tie.is_finite()) {
            return Err(format!(
                "accuracy tie {}: give the points (0 or more) within which measured accuracies count as equal",
                self.accuracy_tie
            ));
        }
        Ok(())
    }

    /// The main flow's settings on this schedule: training and fine-tuning seeded by
    /// `search.seed`, each policy's winner fine-tuned too; the chosen network deployed when
    /// `deploy`.
    pub fn settings(
        &self,
        policies: &[String],
        search: Settings,
        run: Option<String>,
        deploy: bool,
        progress: bool,
    ) -> MainSettings {
        let seed = search.seed;
        MainSettings {
            data: self.data.clone(),
            train: TrainConfig {
                epochs: self.epochs,
                seed,
                limit: self.train_images,
                holdout: MAIN_CALIBRATION_IMAGES,
                ..TrainConfig::default()
            },
            finetune: TrainConfig {
                seed,
                limit: Some(self.finetune_images),
                holdout: MAIN_CALIBRATION_IMAGES,
                ..presets::finetune()
            },
            top_k: self.top_k.max(1),
            policies: policies.to_vec(),
            search,
            run,
            deploy,
            accuracy_tie: self.accuracy_tie,
            progress,
        }
    }
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

    /// Adds the time since the last lap to stage `name` (a stage met again, at another variant,
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

/// One searched variant: its trained network's problem (with its measured sensitivity table),
/// the network's floating-point accuracy, its dataset (resized to its resolution) and what the
/// report's labels start with.
struct Searched {
    variant: Variant,
    prepared: Prepared,
    fp_accuracy: f64,
    /// The dataset spec its network trains and is tested on (`fashion-mnist@20` when resized).
    data: String,
    dataset: Dataset,
    /// `width 0.9 ` (`width 0.9 at 20x20 ` when resolutions are listed) when several variants
    /// are searched, else empty.
    prefix: String,
}

/// The search stage's result at one variant: the candidates to fine-tune (the exact optimum
/// first) and each policy's winner; or, when no assignment of this variant can meet the memory
/// limits, why.
struct Shortlist {
    candidates: Vec<Candidate>,
    winners: Vec<(String, Candidate)>,
    out_of_reach: Option<String>,
}

/// A fine-tuned network: its report row, its fine-tune folder, its variant (an index into the
/// searched ones) and assignment.
struct Finetuned {
    row: Row,
    dir: PathBuf,
    variant: usize,
    genes: Vec<u8>,
}

/// The default accuracy tie: measured accuracies this close count as equal when the main job
/// chooses, so the fastest of the networks within this many points of the most accurate wins.
pub const ACCURACY_TIE_POINTS: f64 = 0.1;

/// The chosen network: among those that meet the limits, the fastest whose measured accuracy is
/// within `tie` points of the most accurate one's; the most accurate network when none meets
/// them.
fn choose(networks: &[Row], tie: f64) -> usize {
    let fitting: Vec<usize> = (0..networks.len()).filter(|&i| networks[i].fits).collect();
    let pool = if fitting.is_empty() {
        (0..networks.len()).collect()
    } else {
        fitting
    };
    fastest_within_tie(networks, pool, tie).unwrap_or(0)
}

/// Of the networks at `pool`'s indices, the fastest whose measured accuracy is within `tie`
/// points of the most accurate one's (the earlier on equal latency).
pub fn fastest_within_tie(networks: &[Row], pool: Vec<usize>, tie: f64) -> Option<usize> {
    let accuracy = |i: usize| networks[i].accuracy;
    let best = pool.iter().map(|&i| accuracy(i)).fold(f64::MIN, f64::max);
    let cycles = |i: usize| networks[i].figures.map_or(f64::MAX, |f| f.cycles);
    pool.into_iter()
        .filter(|&i| accuracy(i) >= best - tie)
        .min_by(|&a, &b| cycles(a).total_cmp(&cycles(b)).then(a.cmp(&b)))
}

/// Runs the whole flow.
pub fn run_main(inputs: &Inputs, settings: &MainSettings) -> Result<MainReport, FlowError> {
    let mut watch = Stopwatch::new(settings.progress);
    let dataset = data::load(&settings.data).map_err(TrainError::from)?;

    // 1-2. At every variant (width and resolution): the floating-point network and its measured
    // sensitivity. The widest width whose uniform 8-bit network fits joins the listed ones (or
    // the network's own), so that the best 8-bit network that fits is always among the answers.
    let space = SpaceConfig::load(&inputs.space)?;
    let mut searched = Vec::new();
    let listed = variants::listed(
        &inputs.model,
        &inputs.space,
        &space.widths,
        &space.resolutions,
    )?;
    for variant in listed {
        searched.push(prepare_variant(
            inputs, settings, &dataset, variant, &mut watch,
        )?);
    }
    if let Some(variant) = variants::widest_fitting(&inputs.model, &searched[0].prepared.problem)?
        && !searched.iter().any(|w| w.variant.same_shape(&variant))
    {
        searched.push(prepare_variant(
            inputs, settings, &dataset, variant, &mut watch,
        )?);
        searched.sort_by(|a, b| variants::widest_first(&a.variant, &b.variant));
    }
    let with_resolution = !space.resolutions.is_empty();
    if searched.len() > 1 {
        for w in &mut searched {
            w.prefix = format!("{} ", w.variant.name(with_resolution));
        }
    }
    // The primary variant (the network's own, else the widest) writes the run's search and also
    // gets the policies' winners and uniform 4 bit.
    let primary = searched
        .iter()
        .position(|w| w.variant.spec == inputs.model)
        .unwrap_or(0);

    // 3. Search: at every variant the exact optimum and the fastest within predicted drops.
    let main = &searched[primary];
    let run = settings.run.clone().unwrap_or_else(|| {
        let problem = &main.prepared.problem;
        slug(&format!(
            "main-{}-{}-{}",
            main.prepared.graph.name, problem.platform.name, problem.objective.name
        ))
    });
    let dir = inputs.results.join(&run);
    let mut shortlists = Vec::new();
    for (i, w) in searched.iter().enumerate() {
        let written = (i == primary).then_some(run.as_str());
        shortlists.push(shortlist(&w.prepared, settings, written)?);
    }
    if shortlists.iter().all(|s| s.candidates.is_empty()) {
        let why: Vec<String> = searched
            .iter()
            .zip(&shortlists)
            .map(|(w, s)| {
                let reason = s
                    .out_of_reach
                    .as_deref()
                    .unwrap_or("the exact search found none");
                format!("at {}: {reason}", w.variant.name(with_resolution))
            })
            .collect();
        return Err(FlowError::Input(format!(
            "no assignment meets the limits at any searched width or resolution; {}",
            why.join("; ")
        )));
    }
    watch.lap("search");

    // 4. Quantization-aware fine-tuning of every variant's candidates, winners and baselines.
    let mut networks = Vec::new();
    for (i, (w, list)) in searched.iter().zip(&shortlists).enumerate() {
        let root = if i == primary {
            dir.join("finetune")
        } else {
            dir.join("finetune")
                .join(slug(&w.variant.name(with_resolution).replace(' ', "-")))
        };
        let jobs = finetune_jobs(w, list, i == primary);
        networks.extend(finetune_variant(i, w, &jobs, settings, &root)?);
    }
    watch.lap("fine-tune");

    // 5. The chosen network as integer C code, verified against the golden model.
    let finetuned_rows: Vec<Row> = networks.iter().map(|n| n.row.clone()).collect();
    let winner = choose(&finetuned_rows, settings.accuracy_tie);
    let chosen = &networks[winner];
    let chosen_variant = &searched[chosen.variant];
    write_chosen(&chosen_variant.prepared.problem, chosen, &dir)?;
    let deployment = if settings.deploy {
        let text = deploy_chosen(inputs, chosen_variant, &chosen.dir, &dir)?;
        watch.lap("deploy");
        text
    } else {
        format!(
            "Not deployed here; `qsearch deploy --checkpoint {}` deploys the chosen network.",
            chosen.dir.display()
        )
    };

    // 6. The trade-off: report.md, the frame and the plot.
    let verdict = verdict(
        &main.prepared.problem,
        &finetuned_rows,
        winner,
        settings.accuracy_tie,
    );
    // Each variant's floating-point network, the primary's first: what its networks' accuracy
    // is compared with.
    let order = std::iter::once(primary).chain((0..searched.len()).filter(|&i| i != primary));
    let mut rows: Vec<Row> = order
        .map(|i| {
            let w = &searched[i];
            Row {
                label: format!("{}FP32", w.prefix),
                bits: "fp32".into(),
                figures: None,
                accuracy: w.fp_accuracy,
                fits: false,
                width: w.variant.width,
                resolution: w.prepared.graph.input_shape().h,
                uniform_8_bit: false,
            }
        })
        .collect();
    let winner = rows.len() + winner;
    rows.extend(finetuned_rows);
    let ranked = Ranked { rows, winner };
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

/// Steps 1-2 at one variant: its dataset (`dataset`, resized when the variant's resolution
/// differs from its images'), the floating-point network (trained on first use, then cached)
/// and its problem with the measured sensitivity table (the accuracy drop of quantizing each
/// tensor alone; cached too).
fn prepare_variant(
    inputs: &Inputs,
    settings: &MainSettings,
    dataset: &Dataset,
    variant: Variant,
    watch: &mut Stopwatch,
) -> Result<Searched, FlowError> {
    let (data, dataset) = match variant.resolution {
        Some(r) if (r, r) != (dataset.train.height, dataset.train.width) => {
            let data = format!("{}@{r}", settings.data);
            let resized = data::load(&data).map_err(TrainError::from)?;
            (data, resized)
        }
        _ => (settings.data.clone(), dataset.clone()),
    };
    let trained = cached_model(
        &variant.spec,
        &data,
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
    let table = measured(&trained.graph, &dataset, inputs, settings.progress)?;
    watch.lap("sensitivity");
    Ok(Searched {
        variant,
        prepared: prepare_graph(trained.graph, inputs, Some(table))?,
        fp_accuracy,
        data,
        dataset,
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
fn verdict(problem: &Problem, networks: &[Row], winner: usize, tie: f64) -> String {
    let chosen = &networks[winner];
    let ms = |n: &Row| {
        n.figures.map_or(f64::NAN, |f| {
            crate::report::display_value(problem, Metric::Latency, f.cycles)
        })
    };
    let chosen_is_8_bit = chosen.uniform_8_bit;
    let kind = |eight: bool| {
        if eight {
            "uniform 8-bit"
        } else {
            "mixed-precision"
        }
    };
    // The other kind's best: the fastest within the tie of its most accurate that fits.
    let others = (0..networks.len())
        .filter(|&i| networks[i].fits && networks[i].uniform_8_bit != chosen_is_8_bit)
        .collect();
    let rival = fastest_within_tie(networks, others, tie).map(|i| &networks[i]);
    let head = format!(
        "Chosen: {}, a {} network: {:.2}% at {:.3} ms, the fastest that fits within {tie} point of the most accurate that fits.",
        chosen.label,
        kind(chosen_is_8_bit),
        chosen.accuracy,
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
            chosen.accuracy - r.accuracy,
            1.0 / speed
        )
    };
    format!(
        "{head} The best {} network that fits ({}) reaches {:.2}% at {:.3} ms: {} wins, {margin}.",
        kind(!chosen_is_8_bit),
        r.label,
        r.accuracy,
        ms(r),
        kind(chosen_is_8_bit),
    )
}

/// The predicted accuracy drops (points, against uniform 8 bit) under which the main job looks
/// for the fastest assignment: the accuracy tie first, then in half-decades.
const PREDICTED_DROP_LADDER: [f64; 6] = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0];

/// For each of the first `n` drops of [`PREDICTED_DROP_LADDER`], the fastest assignment (the
/// exact ILP's, the drop a limit next to the problem's) whose predicted accuracy drop from
/// uniform 8 bit is at most that, loosest first. Candidates chosen by what they are predicted to
/// lose find the fast networks that keep the accuracy, where the choice is made; a spread over
/// the Pareto set's points missed them.
pub(super) fn fastest_within_drops(
    problem: &Problem,
    settings: &MainSettings,
    n: usize,
) -> Result<Vec<Candidate>, FlowError> {
    let eight_bit = problem.evaluate(&problem.space.uniform(Bits::B8));
    let reference = eight_bit.metrics.get(Metric::Accuracy);
    let mut found = Vec::new();
    for &drop in PREDICTED_DROP_LADDER.iter().take(n).rev() {
        let mut objective = problem.objective.clone();
        objective.limits.push(Limit {
            metric: Metric::Accuracy,
            max: reference + drop,
        });
        let limited = Problem::new(
            problem.fused.clone(),
            problem.platform.clone(),
            problem.space.clone(),
            objective,
            problem.sensitivity.clone(),
        )?;
        let mut ilp = policy(EXACT_POLICY, &settings.search)?;
        match run_policy(ilp.as_mut(), &limited, &settings.search, false) {
            Ok(result) => found.extend(result.best().map(|c| problem.evaluate(&c.genes))),
            // Nothing meets the limits within this drop; a looser one may still.
            Err(SearchError::Infeasible(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
}

/// Step 3 at one variant: the exact optimum, the fastest assignments within predicted accuracy
/// drops for the other candidates (`top_k` in all, [`fastest_within_drops`]) and, at the primary
/// variant, each policy's winner, with the exact search written as the run. A variant whose
/// search finds nothing meeting the limits has no candidates.
fn shortlist(
    prepared: &Prepared,
    settings: &MainSettings,
    run: Option<&str>,
) -> Result<Shortlist, FlowError> {
    let problem = &prepared.problem;
    let nothing = |out_of_reach| Shortlist {
        candidates: Vec::new(),
        winners: Vec::new(),
        out_of_reach,
    };
    if let Some(reason) = problem.memory_infeasibility() {
        return Ok(nothing(Some(reason)));
    }
    let optimum = match run {
        Some(run) => {
            let exact = search(
                prepared,
                EXACT_POLICY,
                &settings.search,
                Some(run),
                settings.progress,
            )?;
            exact.result.best().cloned()
        }
        None => {
            let mut ilp = policy(EXACT_POLICY, &settings.search)?;
            let exact = run_policy(ilp.as_mut(), problem, &settings.search, false)?;
            exact.best().cloned()
        }
    };
    let Some(optimum) = optimum else {
        return Ok(nothing(None));
    };
    let mut candidates: Vec<Candidate> = vec![optimum];
    for c in fastest_within_drops(problem, settings, settings.top_k.saturating_sub(1))? {
        if !candidates.iter().any(|x| x.genes == c.genes) {
            candidates.push(c);
        }
    }
    let mut winners: Vec<(String, Candidate)> = Vec::new();
    let policies = if run.is_some() {
        &settings.policies[..]
    } else {
        &[]
    };
    for name in policies {
        let mut p = policy(name, &settings.search)?;
        let r = run_policy(p.as_mut(), problem, &settings.search, false)?;
        if let Some(best) = r.best() {
            winners.push((name.clone(), best.clone()));
        }
    }
    Ok(Shortlist {
        candidates,
        winners,
        out_of_reach: None,
    })
}

/// What step 4 fine-tunes at one variant, labelled as the report names it: the candidates, the
/// winners, uniform 8 bit (at another variant than the primary one only when it fits) and, at
/// the primary variant, uniform 4 bit.
fn finetune_jobs(
    searched: &Searched,
    shortlist: &Shortlist,
    primary: bool,
) -> Vec<(String, Candidate)> {
    let problem = &searched.prepared.problem;
    let prefix = &searched.prefix;
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

/// Step 4 at one variant (`index` among the searched ones): fine-tunes every job into `root`
/// (an assignment met twice is fine-tuned once) and measures its test accuracy.
fn finetune_variant(
    index: usize,
    searched: &Searched,
    jobs: &[(String, Candidate)],
    settings: &MainSettings,
    root: &Path,
) -> Result<Vec<Finetuned>, FlowError> {
    let problem = &searched.prepared.problem;
    let mut accuracy_of: Vec<(Vec<u8>, f64)> = Vec::new();
    let mut networks = Vec::new();
    for (label, c) in jobs {
        let a = problem.space.decode(&c.genes);
        let dir = finetune_dir(root, c);
        let accuracy = match accuracy_of.iter().find(|(g, _)| *g == c.genes) {
            Some((_, accuracy)) => *accuracy,
            None => {
                let accuracy = finetune_assignment(
                    &searched.prepared.graph,
                    &a,
                    &searched.dataset,
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
                width: searched.variant.width,
                resolution: searched.prepared.graph.input_shape().h,
                uniform_8_bit: a
                    .weight_bits
                    .iter()
                    .chain(&a.activation_bits)
                    .all(|&b| b == Bits::B8),
            },
            dir,
            variant: index,
            genes: c.genes.clone(),
        });
    }
    Ok(networks)
}

/// `chosen.json`: the chosen network's assignment (`problem` is its variant's) with its measured
/// accuracy and fine-tuned network.
fn write_chosen(problem: &Problem, chosen: &Finetuned, dir: &Path) -> Result<(), FlowError> {
    let mut chosen_json = assignment_json(problem, &problem.evaluate(&chosen.genes));
    chosen_json["network"] = chosen.row.label.clone().into();
    chosen_json["test_accuracy"] = chosen.row.accuracy.into();
    chosen_json["finetuned"] = chosen.dir.display().to_string().into();
    write_json(&dir.join("chosen.json"), &chosen_json)?;
    Ok(())
}

/// Step 5: deploys the fine-tuned network in `finetuned` (of variant `searched`, tested on its
/// dataset) to `dir/deploy/` and returns the lines the report repeats; an error unless the
/// generated C reproduced the golden model on every image.
fn deploy_chosen(
    inputs: &Inputs,
    searched: &Searched,
    finetuned: &Path,
    dir: &Path,
) -> Result<String, FlowError> {
    let deployed = deploy(
        finetuned,
        &DeploySettings {
            platform: inputs.platform.clone(),
            data: searched.data.clone(),
            verify_images: DEPLOY_VERIFY_IMAGES,
            agreement_images: searched.dataset.test.len(),
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
/// its variant's folder `root`.
fn finetune_dir(root: &Path, c: &Candidate) -> PathBuf {
    root.join(format!(
        "genes-{}",
        c.genes.iter().map(u8::to_string).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(accuracy: f64, cycles: f64, fits: bool) -> Row {
        Row {
            label: format!("{accuracy}% at {cycles}"),
            bits: String::new(),
            figures: Some(Figures {
                cycles,
                flash: 0,
                ram: 0,
            }),
            accuracy,
            fits,
            width: 1.0,
            resolution: 28,
            uniform_8_bit: false,
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
        assert_eq!(choose(&networks, ACCURACY_TIE_POINTS), 2);
        // A looser tie trades 0.12 points for the faster network.
        assert_eq!(choose(&networks, 0.15), 4);
    }

    #[test]
    fn without_a_fitting_network_the_most_accurate_wins() {
        let networks = [network(90.0, 100.0, false), network(91.0, 900.0, false)];
        assert_eq!(choose(&networks, ACCURACY_TIE_POINTS), 1);
    }
}
