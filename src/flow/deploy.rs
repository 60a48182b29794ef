//! `qsearch deploy`: integerize a fine-tuned network, check the integer golden model against the
//! fake-quantized model on the test set, generate the C project, build it on the host and check
//! that it reproduces the golden model byte for byte at every layer; export it for DORY and
//! Deeploy, build it for rv32imc (QEMU), and run its PULP path on the simulated CV32E40P core,
//! every layer checked and timed next to the cost model's prediction.

use super::FlowError;
use crate::cost::CostTable;
use crate::deploy::codegen::{Project, generate, test_input_header};
use crate::deploy::pulp::PulpConfig;
use crate::deploy::rtl::{self, RtlRun};
use crate::deploy::verify::{cross_check, host_check};
use crate::deploy::{
    DeployError, IntGraph, deeploy, dory, golden, integerize, load_finetuned, overflow_report,
};
use crate::escape::terminal_text;
use crate::graph::{FusedGraph, Graph};
use crate::platform::Platform;
use crate::precision::{Assignment, Bits};
use crate::progress::Steps;
use crate::quant::{Quantization, packed_bytes};
use crate::results::write_text;
use crate::rtl::{Rtl, RtlError};
use crate::table::{Table, short_name};
use crate::train::data;
use crate::train::{GraphNet, QuantSpec, Ranges, Split, predictions, training_device};
use crate::units::group_thousands;
use rayon::prelude::*;
use serde::Serialize;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to deploy and how much to check.
pub struct DeploySettings {
    pub platform: String,
    pub data: String,
    /// Test images whose every layer the host build must reproduce.
    pub verify_images: usize,
    /// Test images on which the golden model's predictions are compared with the fake-quantized
    /// model's (all when larger than the test set).
    pub agreement_images: usize,
    /// An assignment the fine-tuned network must have been trained for (checked when given).
    pub assignment: Option<PathBuf>,
    /// Integer width of the requantization products (32 or 64).
    pub requant_bits: u32,
    /// Refuse, rather than carry in bytes, layers below 8 bits in the Deeploy export.
    pub deeploy_strict: bool,
    /// Test images the PULP path runs on the CV32E40P RTL, every layer checked (`None` skips the
    /// stage, as does a simulator tool that is not installed).
    pub rtl_images: Option<usize>,
}

pub struct DeployReport {
    pub dir: PathBuf,
    pub text: String,
    /// Fraction of agreement images on which golden and fake-quantized predictions agree.
    pub agreement: f64,
    /// Images whose every layer every check reproduced exactly (the portable C build, the
    /// emulated PULP path and, when Python with onnx is installed, the DORY export), of those
    /// checked.
    pub bit_exact: (usize, usize),
    /// Whether what Deeploy read for every target equals the integer graph (`None` when the
    /// export was refused or Deeploy is not installed).
    pub deeploy_exact: Option<bool>,
    /// The run on the CV32E40P RTL, every layer of which equalled the golden model (`None` when
    /// the stage was skipped).
    pub rtl: Option<RtlRun>,
}

/// The fake-quantized model of the fine-tuned network, as the fine-tuning last ran it.
fn fake_quantized(graph: &Graph, quantization: &Quantization) -> Result<GraphNet, FlowError> {
    let fused = FusedGraph::from_graph(graph);
    let bits = |b: u32| {
        Bits::from_count(b)
            .ok_or_else(|| FlowError::Input(format!("quantization: {b} bits is not 2, 4 or 8")))
    };
    let mut assignment = Assignment::uniform(fused.layers.len(), fused.tensors.len(), Bits::B8);
    for (l, layer) in fused.layers.iter().enumerate() {
        if let Some(q) = quantization.layers.iter().find(|q| q.layer == layer.name) {
            assignment.weight_bits[l] = bits(q.weight_bits)?;
        }
    }
    let mut ranges = Ranges {
        bound: vec![1.0; fused.tensors.len()],
        signed: vec![false; fused.tensors.len()],
    };
    for (b, buffer) in fused.tensors.iter().enumerate() {
        if let Some(q) = quantization
            .buffers
            .iter()
            .find(|q| q.buffer == buffer.name)
        {
            assignment.activation_bits[b] = bits(q.bits)?;
            ranges.bound[b] = q.bound;
            ranges.signed[b] = q.signed;
        }
    }
    Ok(GraphNet::quantized(
        graph,
        &fused,
        &QuantSpec::of(&fused, &assignment),
        &ranges,
        &training_device(),
    ))
}

/// Integerizes the fine-tuned network in `finetuned` and deploys it into `out`.
pub fn deploy(
    finetuned: &Path,
    settings: &DeploySettings,
    out: &Path,
) -> Result<DeployReport, FlowError> {
    let mut steps = Steps::new(true, "deploy", 8);
    steps.step("integerizing");
    let (graph, quantization) = load_finetuned(finetuned)?;
    let int_graph = integerize(&graph, &quantization, settings.requant_bits)?;
    if let Some(file) = &settings.assignment {
        check_assignment(file, &graph, &int_graph)?;
    }
    let dataset = data::load(&settings.data).map_err(crate::train::TrainError::from)?;
    super::check_fit(&graph, &dataset)?;
    let test = &dataset.test;
    let mut text = format!(
        "{} deployed from {}\n\nintegerization (docs/integer-semantics.md):\n{}",
        terminal_text(&int_graph.name),
        terminal_text(&finetuned.display().to_string()),
        overflow_report(&int_graph)
    );

    steps.step("golden model vs fake-quantized model");
    let n = settings.agreement_images.min(test.len());
    let agreement = golden_agreement(&graph, &quantization, &int_graph, test, n, &mut text)?;

    // The C project, built and run on the host: the portable build, then the PULP path with the
    // cluster, the DMA and the XpulpV2 dot products emulated.
    steps.step("host build");
    let platform = Platform::load(&settings.platform)?;
    let project = generate(&int_graph, PulpConfig::of(&platform));
    for (name, content) in &project.files {
        write_text(&out.join(name), content)?;
    }
    let verify = settings.verify_images.min(test.len()).max(1);
    let images: Vec<Vec<u8>> = (0..verify).map(|i| test.image_hwc(i)).collect();
    write_text(&out.join("test_input.h"), &test_input_header(&images[0]))?;
    let host_exact = host_build(&int_graph, &images, out, &mut text)?;
    pulp_tiling(&platform, &project, &mut text);
    steps.step("PULP path, emulated on the host");
    let pulp_exact = pulp_emulated(&int_graph, &images, out, &mut text)?;
    let mut bit_exact = host_exact.min(pulp_exact);

    steps.step("DORY export");
    if let Some(dory_exact) = dory_export(&int_graph, &images, out, &mut text)? {
        bit_exact = bit_exact.min(dory_exact);
    }

    steps.step("Deeploy export");
    let (deeploy_text, deeploy_exact) =
        deeploy_export(&int_graph, settings.deeploy_strict, &out.join("deeploy"))?;
    text.push_str(&deeploy_text);

    steps.step("rv32imc build on QEMU");
    cross_build(&int_graph, &images[0], out, &mut text)?;
    memory_against_cost_model(&graph, &int_graph, &platform, &project, &mut text);

    steps.step("PULP path on the CV32E40P RTL");
    let rtl_images: Vec<Vec<u8>> = (0..settings.rtl_images.unwrap_or(0).min(test.len()))
        .map(|i| test.image_hwc(i))
        .collect();
    let rtl = if rtl_images.is_empty() {
        text.push_str("CV32E40P RTL stage: not run (`qsearch deploy` runs it unless --no-rtl)\n");
        None
    } else {
        rtl_stage(&graph, &int_graph, &platform, &rtl_images, out, &mut text)?
    };
    write_text(&out.join("report.txt"), &text)?;
    Ok(DeployReport {
        dir: out.to_path_buf(),
        text,
        agreement,
        bit_exact: (bit_exact, verify),
        deeploy_exact,
        rtl,
    })
}

/// The golden model's predictions against the fake-quantized model's on the first `n` test
/// images, written to `text`: the fraction on which they agree.
fn golden_agreement(
    graph: &Graph,
    quantization: &Quantization,
    int_graph: &IntGraph,
    test: &Split,
    n: usize,
    text: &mut String,
) -> Result<f64, FlowError> {
    let net = fake_quantized(graph, quantization)?;
    let fake = predictions(&net, &test.take(n), 256, &training_device());
    // Per image: the golden model's class and its margin over the runner-up.
    let golden: Vec<(usize, i32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let buffers = golden::run(int_graph, &test.image_hwc(i));
            let logits = &buffers[int_graph.output];
            let best = golden::argmax(logits);
            let runner_up = (0..logits.len())
                .filter(|&j| j != best)
                .map(|j| logits[j])
                .max()
                .unwrap_or(logits[best]);
            (best, logits[best] - runner_up)
        })
        .collect();
    let disagree: Vec<usize> = (0..n).filter(|&i| golden[i].0 as i64 != fake[i]).collect();
    let agreement = 1.0 - disagree.len() as f64 / n.max(1) as f64;
    let correct = (0..n)
        .filter(|&i| golden[i].0 == usize::from(test.labels[i]))
        .count();
    let _ = writeln!(
        text,
        "\ngolden model vs fake-quantized model, {n} test images: top-1 agreement {:.2}% ({} differ); golden accuracy {:.2}%",
        100.0 * agreement,
        disagree.len(),
        100.0 * correct as f64 / n.max(1) as f64
    );
    if !disagree.is_empty() {
        let margins: Vec<i32> = disagree.iter().map(|&i| golden[i].1).collect();
        let all: Vec<i32> = golden.iter().map(|g| g.1).collect();
        let median = |v: &[i32]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let _ = writeln!(
            text,
            "  on those images the golden model's two largest logits are {} output steps apart (median {}; median over all images {}): near-ties, where the float model and the integers, which round the requantization differently, can pick either class",
            if margins.len() <= 10 {
                format!("{margins:?}")
            } else {
                format!("{:?}...", &margins[..10])
            },
            median(&margins),
            median(&all)
        );
    }
    Ok(agreement)
}

/// The portable build on the host, checked on `images`, written to `text`: the images it
/// reproduced exactly.
fn host_build(
    int_graph: &IntGraph,
    images: &[Vec<u8>],
    out: &Path,
    text: &mut String,
) -> Result<usize, FlowError> {
    let check = host_check(int_graph, images, out, "network")?;
    let _ = writeln!(
        text,
        "\nhost run (per-layer checksums of image 0):\n{}",
        check.stdout
    );
    if let Some(first) = &check.first_mismatch {
        let _ = writeln!(text, "first mismatch: {first}");
    }
    let _ = writeln!(
        text,
        "host build (gcc -std=c99 -O2 -Wall -Wextra -Werror): {} of {} images bit-exact at every layer",
        check.exact,
        images.len()
    );
    Ok(check.exact)
}

/// How each layer runs on the PULP cluster of `platform`, written to `text`.
fn pulp_tiling(platform: &Platform, project: &Project, text: &mut String) {
    let _ = writeln!(
        text,
        "\nPULP path ({}: {} cores, {} B of L1 for tiles; Makefile.pulp builds it with the PULP/GAP SDK):",
        platform.name,
        platform.cores(),
        group_thousands(platform.hardware.l1_usable_bytes.value as u64)
    );
    for (l, (layer, tiling)) in project.tiling.iter().enumerate() {
        let layer = short_name(&terminal_text(layer), l, 40);
        let _ = writeln!(text, "  {layer:<12} {tiling}");
    }
}

/// The PULP path emulated on the host, checked on `images`, written to `text`: the images it
/// reproduced exactly.
fn pulp_emulated(
    int_graph: &IntGraph,
    images: &[Vec<u8>],
    out: &Path,
    text: &mut String,
) -> Result<usize, FlowError> {
    let pulp = host_check(int_graph, images, out, "network_pulp_emu")?;
    if let Some(first) = &pulp.first_mismatch {
        let _ = writeln!(text, "first mismatch: {first}");
    }
    let _ = writeln!(
        text,
        "PULP path emulated on the host (cores in turn, DMA as copies, sdotp in C): {} of {} images bit-exact at every layer",
        pulp.exact,
        images.len()
    );
    Ok(pulp.exact)
}

/// The DORY export in `out/dory`, checked on `images` when Python with onnx is installed,
/// written to `text`: the images it reproduced exactly, when checked.
fn dory_export(
    int_graph: &IntGraph,
    images: &[Vec<u8>],
    out: &Path,
    text: &mut String,
) -> Result<Option<usize>, FlowError> {
    let export = match dory::export(int_graph) {
        Ok(export) => export,
        Err(why) => {
            let _ = writeln!(text, "DORY export: not written: {why}");
            return Ok(None);
        }
    };
    let checked = dory::write_and_check(int_graph, &export, images, &out.join("dory"))?;
    let _ = writeln!(
        text,
        "DORY export (dory/: network.onnx, config.json with BNRelu_bits {}, golden files; run DORY's network_generate.py Quantlab PULP.GAP8 dory/config.json): {}",
        dory::BNRELU_BITS,
        match &checked {
            Some(c) => format!(
                "{}; {} of {} images equal the golden model at every layer{}",
                c.summary,
                c.exact,
                c.total,
                c.first_mismatch
                    .as_ref()
                    .map(|m| format!(" (first mismatch: {m})"))
                    .unwrap_or_default()
            ),
            None => "written, not checked (no Python with the onnx package; scripts/setup.sh installs python3-onnx, QSEARCH_PYTHON names another interpreter)".into(),
        }
    );
    Ok(checked.map(|c| c.exact))
}

/// The rv32imc build, run on QEMU on `image` when it is installed, written to `text`.
fn cross_build(
    int_graph: &IntGraph,
    image: &[u8],
    out: &Path,
    text: &mut String,
) -> Result<(), FlowError> {
    let cross = cross_check(int_graph, image, out)?;
    let _ = writeln!(
        text,
        "rv32imc build (riscv64-unknown-elf-gcc -march=rv32imc -mabi=ilp32 -Os, picolibc): network.elf text {} B, data {} B, bss {} B; on QEMU virt: {}",
        group_thousands(cross.text),
        group_thousands(cross.data),
        group_thousands(cross.bss),
        match cross.emulated_exact {
            Some(true) => "output equals the golden model's",
            Some(false) => "OUTPUT DIFFERS from the golden model's",
            None => "not run (qemu-system-riscv32 not installed)",
        }
    );
    Ok(())
}

/// The generated code's memory next to the cost model's figures, written to `text`.
fn memory_against_cost_model(
    graph: &Graph,
    int_graph: &IntGraph,
    platform: &Platform,
    project: &Project,
    text: &mut String,
) {
    let fused = FusedGraph::from_graph(graph);
    let costs = CostTable::build(&fused, platform).evaluate(&assignment_of(int_graph, &fused));
    let _ = writeln!(
        text,
        "memory: activation arena {} B (static plan) vs cost model peak RAM {} B; constants {} B (packed weights, biases, multipliers) vs cost model flash {} B",
        group_thousands(project.plan.total as u64),
        group_thousands(costs.ram),
        group_thousands(project.constant_bytes as u64),
        group_thousands(costs.flash)
    );
}

/// The cost model's latency of every layer of `int_graph` on one core of `platform` (the
/// platform with its cluster cut to one core: same kernels, L1 and DMA).
pub(super) fn one_core_prediction(
    graph: &Graph,
    int_graph: &IntGraph,
    platform: &Platform,
) -> Vec<f64> {
    let mut one_core = platform.clone();
    one_core.hardware.cores.value = 1.0;
    let fused = FusedGraph::from_graph(graph);
    let assignment = assignment_of(int_graph, &fused);
    let table = CostTable::build(&fused, &one_core);
    (0..int_graph.layers.len())
        .map(|l| table.timing(l, &assignment).cycles)
        .collect()
}

/// One layer of `rtl.json`: medians over the images, then every image's cycles.
#[derive(Serialize)]
struct RtlLayer {
    layer: String,
    core_cycles: u64,
    dma_copy_cycles: u64,
    predicted_one_core_cycles: f64,
    ratio: f64,
    core_cycles_per_image: Vec<u64>,
    dma_copy_cycles_per_image: Vec<u64>,
}

/// `rtl.json`: what the RTL stage measured.
#[derive(Serialize)]
struct RtlReport {
    platform: String,
    images: usize,
    simulated_cycles: u64,
    wall_seconds: f64,
    layers: Vec<RtlLayer>,
}

/// The RTL stage: the PULP path on the CV32E40P on `images`, every layer compared with the golden
/// model, and per layer the measured cycles next to the cost model's one-core prediction, written
/// to `text` and `out/rtl.json`. `None` (said in one line) when a simulator tool is missing.
fn rtl_stage(
    graph: &Graph,
    int_graph: &IntGraph,
    platform: &Platform,
    images: &[Vec<u8>],
    out: &Path,
    text: &mut String,
) -> Result<Option<RtlRun>, FlowError> {
    let started = Instant::now();
    let rtl = match Rtl::init() {
        Ok(rtl) => rtl,
        Err(missing @ RtlError::ToolMissing { .. }) => {
            let _ = writeln!(text, "CV32E40P RTL stage: skipped: {missing}");
            return Ok(None);
        }
        Err(e) => return Err(DeployError::from(e).into()),
    };
    let predicted = one_core_prediction(graph, int_graph, platform);
    // A wide margin over the model: the generic kernels, which poolings and int64 layers keep,
    // measure up to 40 times its PULP-NN-structured prediction on a layer (a convolution of one
    // input channel; 18 times on a pooling); plus the printing of every layer's output in hex.
    // Only a program that never ends reaches it.
    let printed_bytes: usize = int_graph
        .layers
        .iter()
        .map(|l| {
            let t = &int_graph.tensors[l.output];
            packed_bytes(t.shape.elements() as usize, t.bits)
        })
        .sum();
    let cycle_limit =
        (200.0 * predicted.iter().sum::<f64>()) as u64 + 100 * printed_bytes as u64 + 10_000_000;
    let run = rtl::run(&rtl, int_graph, images, out, cycle_limit)?;
    let mut table = Table::new(&[
        "layer<",
        "core cycles",
        "DMA copies",
        "model, 1 core",
        "core / model",
    ])
    .names("layer");
    let mut layers = Vec::new();
    let (mut core_total, mut dma_total, mut model_total) = (0, 0, 0.0);
    for (l, (layer, &model)) in run.layers.iter().zip(&predicted).enumerate() {
        let (core, dma) = (rtl::median(&layer.core), rtl::median(&layer.dma));
        let ratio = core as f64 / model.max(1.0);
        table.row(vec![
            short_name(&terminal_text(&layer.name), l, 40),
            group_thousands(core),
            group_thousands(dma),
            group_thousands(model.round() as u64),
            format!("{ratio:.2}"),
        ]);
        (core_total, dma_total, model_total) =
            (core_total + core, dma_total + dma, model_total + model);
        layers.push(RtlLayer {
            layer: layer.name.clone(),
            core_cycles: core,
            dma_copy_cycles: dma,
            predicted_one_core_cycles: model,
            ratio,
            core_cycles_per_image: layer.core.clone(),
            dma_copy_cycles_per_image: layer.dma.clone(),
        });
    }
    table.rule();
    table.row(vec![
        "total".into(),
        group_thousands(core_total),
        group_thousands(dma_total),
        group_thousands(model_total.round() as u64),
        format!("{:.2}", core_total as f64 / model_total.max(1.0)),
    ]);
    let wall_seconds = started.elapsed().as_secs_f64();
    let _ = writeln!(
        text,
        "\nPULP path on one CV32E40P (RTL on Verilator, clang-19; every core's share in turn, DMA as copies counted apart): {} images bit-exact at every layer; {} cycles simulated in {wall_seconds:.1} s\nper layer, medians over the images; the model is {}'s cost model with one core:\n{}",
        run.images,
        group_thousands(run.simulated_cycles),
        platform.name,
        table.render()
    );
    let report = RtlReport {
        platform: platform.name.clone(),
        images: run.images,
        simulated_cycles: run.simulated_cycles,
        wall_seconds,
        layers,
    };
    let json = out.join("rtl.json");
    let bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
    crate::results::write_atomic(&json, &bytes).map_err(|e| DeployError::Io {
        path: json.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(Some(run))
}

/// The Deeploy export in `dir` (`TARGET/network.onnx` and `deeploy_generate.py`), and, when the
/// project venv has Deeploy, its generation for every target compared with the integer graph:
/// the report's lines, and whether Deeploy read the integer graph exactly.
fn deeploy_export(
    graph: &IntGraph,
    strict: bool,
    dir: &Path,
) -> Result<(String, Option<bool>), FlowError> {
    let exports = deeploy::Target::ALL
        .iter()
        .map(|&t| deeploy::export(graph, t, strict).map(|e| (t, e)))
        .collect::<Result<Vec<_>, _>>();
    let exports = match exports {
        Ok(exports) => exports,
        Err(why) => {
            let why = terminal_text(&why.to_string());
            return Ok((format!("Deeploy export: not written: {why}\n"), None));
        }
    };
    deeploy::write(&exports, dir)?;
    let checked = deeploy::generate_and_check(graph, dir)?;
    let mut text = format!(
        "Deeploy export (deeploy/: PULPOpen/ and Generic/ network.onnx for deeploy-pulp {}; deeploy_generate.py generates their C): {}\n",
        deeploy::DEEPLOY_VERSION,
        match &checked {
            Some(c) => format!(
                "generated with deeploy-pulp {}",
                c.version.as_deref().unwrap_or("(version unknown)")
            ),
            None => "written, not generated (no Python with deeploy-pulp; scripts/setup.sh installs it into the project venv, QSEARCH_DEEPLOY_PYTHON names another interpreter)".into(),
        }
    );
    for t in checked.iter().flat_map(|c| &c.targets) {
        let _ = writeln!(text, "  {}", terminal_text(&t.summary()));
    }
    // Deeploy's PULP-open kernels are 8-bit: layers below carry their tensors in bytes.
    let carried: Vec<_> = exports[0]
        .1
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.carried.is_empty())
        .collect();
    if !carried.is_empty() {
        let _ = writeln!(
            text,
            "  {} layers below 8 bits run on 8-bit kernels, exact but without their memory saving on PULP-open (--deeploy-strict refuses them):",
            carried.len()
        );
        for (l, layer) in carried {
            let name = short_name(&terminal_text(&layer.name), l, 40);
            let _ = writeln!(text, "    {name:<12} {}", layer.carried.join("; "));
        }
    }
    let exact = checked.map(|c| c.targets.iter().all(|t| t.ok()));
    Ok((text, exact))
}

/// Fails unless the assignment in `file` is the one the network was fine-tuned for.
fn check_assignment(file: &Path, graph: &Graph, int_graph: &IntGraph) -> Result<(), FlowError> {
    let fused = FusedGraph::from_graph(graph);
    let wanted = crate::train::qat::read_assignment(file, &fused).map_err(FlowError::Train)?;
    let trained = assignment_of(int_graph, &fused);
    let differ = |kind: &str, name: &str, want: Bits, got: Bits| {
        FlowError::Input(format!(
            "{}: {kind} '{name}' is {want} bit there but the network was fine-tuned at {got} bit; fine-tune it for this assignment first",
            file.display()
        ))
    };
    for (l, layer) in fused.layers.iter().enumerate() {
        if layer.kind.has_weights() && wanted.weight_bits[l] != trained.weight_bits[l] {
            return Err(differ(
                "layer",
                &layer.name,
                wanted.weight_bits[l],
                trained.weight_bits[l],
            ));
        }
    }
    for (b, buffer) in fused.tensors.iter().enumerate() {
        if b != fused.input && wanted.activation_bits[b] != trained.activation_bits[b] {
            return Err(differ(
                "buffer",
                &buffer.name,
                wanted.activation_bits[b],
                trained.activation_bits[b],
            ));
        }
    }
    Ok(())
}

/// The precisions of the integer graph as an assignment of its fused graph.
fn assignment_of(graph: &IntGraph, fused: &FusedGraph) -> Assignment {
    let mut a = Assignment::uniform(fused.layers.len(), fused.tensors.len(), Bits::B8);
    for (b, t) in graph.tensors.iter().enumerate() {
        a.activation_bits[b] = Bits::from_count(t.bits).unwrap_or(Bits::B8);
    }
    for (l, layer) in graph.layers.iter().enumerate() {
        if let crate::deploy::IntOp::Conv { weight_bits, .. }
        | crate::deploy::IntOp::Linear { weight_bits, .. } = layer.op
        {
            a.weight_bits[l] = Bits::from_count(weight_bits).unwrap_or(Bits::B8);
        }
    }
    a
}
