//! The `qsearch` binary end to end: inspect on every zoo network and ONNX fixture, size parsing
//! at the command line, calibration from a CSV, and clear errors for bad input.

use qsearch::cost::calibrate::COLUMNS;
use qsearch::cost::{KernelCall, Precisions, call_cycles};
use qsearch::graph::{LayerKind, Padding, Shape, Window, zoo};
use qsearch::platform::Platform;
use qsearch::precision::Bits;
use std::path::PathBuf;
use std::process::{Command, Output};

fn qsearch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qsearch"))
        .args(args)
        .output()
        .expect("run qsearch")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn inspect_works_on_every_zoo_network_and_fixture() {
    let mut models: Vec<String> = zoo::ENTRIES
        .iter()
        .map(|e| format!("zoo:{}", e.name))
        .collect();
    for name in [
        "torch_resnet",
        "torch_dscnn",
        "separate_bn",
        "tflite_style",
        "legacy_opset9",
    ] {
        models.push(fixture(&format!("{name}.onnx")));
    }
    for model in &models {
        for platform in ["gap8", "xpulpnn"] {
            let out = qsearch(&["inspect", "--model", model, "--platform", platform]);
            assert!(
                out.status.success(),
                "{model} on {platform}: {}",
                stderr(&out)
            );
            let text = stdout(&out);
            assert!(
                text.contains("latency") && text.contains("flash") && text.contains("RAM"),
                "{text}"
            );
        }
    }
}

#[test]
fn inspect_reports_the_default_networks_budget_verdict() {
    let out = qsearch(&["inspect", "--budget", "512KB"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("budget    512,000 B : uniform 8-bit does NOT fit"),
        "{text}"
    );
    let out = qsearch(&["inspect", "--bits", "4", "--budget", "512KiB"]);
    assert!(
        stdout(&out).contains("budget    524,288 B : uniform 4-bit fits"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_sizes_and_names_get_clear_errors() {
    let out = qsearch(&["inspect", "--budget", "lots"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("'lots' is not a size") && err.contains("512KB (= 512,000 bytes)"),
        "{err}"
    );

    let out = qsearch(&["inspect", "--bits", "3"]);
    assert!(
        stderr(&out).contains("'3' is not a supported precision; use 2, 4 or 8"),
        "{}",
        stderr(&out)
    );

    let out = qsearch(&["inspect", "--platform", "gap10"]);
    assert!(
        stderr(&out).contains("unknown platform 'gap10'"),
        "{}",
        stderr(&out)
    );

    let out = qsearch(&["inspect", "--model", "zoo:lenet"]);
    assert!(
        stderr(&out).contains("unknown zoo network 'lenet'"),
        "{}",
        stderr(&out)
    );

    let out = qsearch(&["inspect", "--model", &fixture("unsupported_op.onnx")]);
    assert!(
        stderr(&out).contains("'Sigmoid', which qsearch does not support"),
        "{}",
        stderr(&out)
    );

    let out = qsearch(&["inspect", "--model", "weights.h5"]);
    assert!(
        stderr(&out).contains("weights.h5: unknown model format"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn calibrate_refits_from_a_csv_and_writes_a_platform() {
    let dir = std::env::temp_dir().join(format!("qsearch-cli-calibrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Measurements from a platform whose conv and requant costs are 30% higher than gap8's.
    let mut truth = Platform::load("gap8").unwrap();
    for (name, p) in truth.cost.entries_mut() {
        if name.starts_with("conv_cycles_per_mac") || name.starts_with("requant") {
            p.value *= 1.3;
        }
    }
    let mut csv = COLUMNS.join(",") + "\n";
    for (i, (c_in, c_out, hw, k)) in [
        (8, 16, 8, 3),
        (16, 32, 16, 3),
        (32, 32, 8, 1),
        (16, 64, 4, 1),
        (8, 8, 32, 3),
        (64, 16, 8, 3),
    ]
    .into_iter()
    .enumerate()
    {
        for bits in Bits::ALL {
            let kind = if k == 1 {
                LayerKind::Pointwise
            } else {
                LayerKind::Conv
            };
            let input = Shape::new(c_in, hw + k - 1, hw + k - 1);
            let window = Window {
                kernel: [k, k],
                stride: [1, 1],
                padding: Padding::uniform(0),
            };
            let call = KernelCall::new(kind, input, Shape::new(c_out, hw, hw), Some(window), 1);
            let prec = Precisions {
                weight: bits,
                input: Bits::B8,
                second: Bits::B8,
                output: Bits::ALL[i % 3],
            };
            let cycles = call_cycles(&truth.cost, 8, &call, prec);
            csv += &format!(
                "{},{c_in},{},{},{c_out},{k},{k},1,0,1,{},8,{},8,{cycles:.1}\n",
                kind.name(),
                input.h,
                input.w,
                bits.count(),
                prec.output.count()
            );
        }
    }
    let measurements = dir.join("m.csv");
    std::fs::write(&measurements, csv).unwrap();
    let output = dir.join("gap8-fit.toml");
    let out = qsearch(&[
        "calibrate",
        "--platform",
        "gap8",
        "--measurements",
        measurements.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("MAPE over 18 measurements"), "{text}");
    let fitted = Platform::load(output.to_str().unwrap()).unwrap();
    assert!(
        fitted.cost.conv_cycles_per_mac.0[2][2]
            .source
            .starts_with("fit: ")
    );
    // The refitted platform is usable by every other command.
    let out = qsearch(&["inspect", "--platform", output.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "kernel,cycles\nconv,10\n").unwrap();
    let out = qsearch(&[
        "calibrate",
        "--measurements",
        bad.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bad.csv: the header lacks column 'in_c'"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn zoo_and_platform_listings() {
    let out = qsearch(&["zoo"]);
    assert!(stdout(&out).contains("zoo:mobilenet-v1") && stdout(&out).contains("zoo:ds-cnn"));
    let out = qsearch(&["platforms"]);
    for p in ["gap8", "gap9", "pulp-open", "xpulpnn", "cv32e40p"] {
        assert!(stdout(&out).contains(p), "{}", stdout(&out));
    }
    let out = qsearch(&["platforms", "--show", "gap8"]);
    assert!(
        stdout(&out).contains("source = \"reference dma_bandwidth,GAP8"),
        "{}",
        stdout(&out)
    );
}

fn temp_results(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("qsearch-cli-{}-{name}", std::process::id()))
        .display()
        .to_string()
}

/// The main job at `budget` on a small schedule (one epoch on 1,500 images, two candidates, one
/// other policy), fine-tuning on `finetune_images`, with `extra` arguments first.
fn tiny_main_job(results: &str, extra: &[&str], budget: &str, finetune_images: &str) -> Output {
    let mut args = extra.to_vec();
    args.extend([
        "--budget",
        budget,
        "--objective",
        "latency",
        "--epochs",
        "1",
        "--train-images",
        "1500",
        "--finetune-images",
        finetune_images,
        "--top-k",
        "2",
        "--policies",
        "memory-driven",
        "--run",
        "main",
        "--results",
        results,
        "--quiet",
    ]);
    qsearch(&args)
}

/// The main flow end to end on a small schedule: training, measured sensitivity, search,
/// fine-tuning, the width-scaled baseline and the report.
#[test]
fn main_command_runs_the_whole_flow() {
    let results = temp_results("main");
    let out = tiny_main_job(&results, &[], "512KB", "500");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("fashion-cnn on gap8") && text.contains("memory <= 512,000 B"),
        "{text}"
    );
    for row in [
        "FP32",
        "candidate 1",
        "candidate 2",
        "memory-driven winner",
        "uniform 8-bit ",
        "uniform 4-bit",
        "width 0.9 uniform 8-bit",
        "(chosen)",
        "chosen network deployed to",
        "of 1000 images bit-exact at every layer",
        "on QEMU virt: output equals the golden model's",
        "stages: train",
    ] {
        assert!(text.contains(row), "{row} missing from\n{text}");
    }
    assert!(stderr(&out).contains("--budget = 512,000 B"));
    let dir = PathBuf::from(&results).join("main");
    for file in [
        "candidates.parquet",
        "manifest.json",
        "sensitivity.csv",
        "assignment.json",
        "report.md",
        "tradeoff.csv",
        "tradeoff.parquet",
        "tradeoff.svg",
        "tradeoff.png",
        "chosen.json",
        "deploy/network.c",
        "deploy/network.elf",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["objective"]["limits"][0]["max"], 512_000.0);
    let chosen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("chosen.json")).unwrap()).unwrap();
    assert!(chosen["test_accuracy"].as_f64().unwrap() > 10.0, "{chosen}");
    let tradeoff = std::fs::read_to_string(dir.join("tradeoff.csv")).unwrap();
    assert!(tradeoff.lines().count() >= 8, "{tradeoff}");
}

/// Under 128 KB no assignment of the full-width network fits: it gets no candidates and the
/// widest width whose 8-bit network fits (0.425) carries the answer; under 20 KB nothing fits,
/// and the error says what binds at the width it tried.
#[test]
fn main_command_skips_widths_that_cannot_fit() {
    let results = temp_results("main-small");
    let out = tiny_main_job(&results, &[], "128KB", "300");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for row in [
        "width 0.425 candidate 1",
        "width 0.425 uniform 8-bit",
        "(chosen)",
    ] {
        assert!(text.contains(row), "{row} missing from\n{text}");
    }
    assert!(!text.contains("width 1.0 candidate"), "{text}");
    let chosen = std::fs::read_to_string(PathBuf::from(&results).join("main/chosen.json"));
    assert!(chosen.unwrap().contains("width 0.425"));
    let out = tiny_main_job(&results, &[], "20KB", "300");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "no assignment meets the limits at any searched width or resolution; at width 1.0: memory limit 20,000 B cannot be met"
        ),
        "{}",
        stderr(&out)
    );
}

/// The small main job of `model` over the default search space with `line` added (its widths or
/// resolutions), in a fresh results folder `name`: it must succeed and print every row of
/// `rows`. Returns the results folder, the printed text and the search space file.
fn main_job_over(name: &str, model: &str, line: &str, rows: &[&str]) -> (String, String, PathBuf) {
    let results = temp_results(name);
    std::fs::create_dir_all(&results).unwrap();
    let space = PathBuf::from(&results).join("space.toml");
    let default = include_str!("../search_spaces/default.toml");
    std::fs::write(&space, format!("{line}\n{default}")).unwrap();
    let args = ["--model", model, "--space", space.to_str().unwrap()];
    let out = tiny_main_job(&results, &args, "512KB", "300");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for row in rows {
        assert!(text.contains(row), "{row} missing from\n{text}");
    }
    (results, text, space)
}

/// The main flow over a search space's widths: every width's networks are fine-tuned and
/// reported, and the chosen one, whichever width it has, deploys.
#[test]
fn main_command_searches_the_listed_widths() {
    // The network's own width is 0.5; the widest whose uniform 8-bit network fits 512 KB (0.9)
    // joins the listed ones.
    let rows = [
        "width 0.5 candidate 1",
        "width 0.5 memory-driven winner",
        "width 0.5 uniform 8-bit",
        "width 0.5 uniform 4-bit",
        "width 0.25 candidate 1",
        "width 0.25 uniform 8-bit",
        "width 0.9 uniform 8-bit",
        "(chosen)",
        "of 1000 images bit-exact at every layer",
    ];
    let (results, text, space) = main_job_over(
        "main-widths",
        "zoo:fashion-cnn:width=0.5",
        "widths = [0.5, 0.25]",
        &rows,
    );
    assert!(!text.contains("width 0.25 memory-driven"), "{text}");
    assert!(!text.contains("width 0.9 memory-driven"), "{text}");
    let dir = PathBuf::from(&results).join("main");
    let chosen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("chosen.json")).unwrap()).unwrap();
    let network = chosen["network"].as_str().unwrap();
    assert!(network.starts_with("width 0."), "{chosen}");
    let finetuned = PathBuf::from(chosen["finetuned"].as_str().unwrap());
    assert_eq!(
        finetuned.starts_with(dir.join("finetune").join("width-0.25")),
        network.starts_with("width 0.25"),
        "{chosen}"
    );
    assert!(dir.join("deploy/network.c").exists());
    let tradeoff = std::fs::read_to_string(dir.join("tradeoff.csv")).unwrap();
    assert!(tradeoff.contains("width 0.25 uniform 8-bit"), "{tradeoff}");
    let onnx = fixture("torch_dscnn.onnx");
    let out = qsearch(&[
        "--model",
        &onnx,
        "--space",
        space.to_str().unwrap(),
        "--results",
        &results,
        "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("lists widths, but {onnx} has no width option")),
        "{}",
        stderr(&out)
    );
}

/// Input resolution as a search variable: the network at 16x16 (Fashion-MNIST resized) next to
/// its own 28x28, each with its FP32 reference; a 16x16 network deploys bit-exact on the resized
/// images, and the wrong images are refused.
#[test]
fn main_command_searches_the_listed_resolutions() {
    let rows = [
        "width 0.25 at 28x28 FP32",
        "width 0.25 at 16x16 FP32",
        "width 0.25 at 16x16 candidate 1",
        "width 0.25 at 16x16 uniform 8-bit",
        "width 0.25 at 28x28 memory-driven",
        "width 0.9 at 28x28 uniform 8-bit",
    ];
    let (results, _, _) = main_job_over(
        "main-resolutions",
        "zoo:fashion-cnn:width=0.25",
        "resolutions = [16, 28]",
        &rows,
    );
    let dir = PathBuf::from(&results).join("main");
    let tradeoff = std::fs::read_to_string(dir.join("tradeoff.csv")).unwrap();
    assert!(
        tradeoff.lines().next().unwrap().contains("resolution"),
        "{tradeoff}"
    );
    let small = std::fs::read_dir(dir.join("finetune/width-0.25-at-16x16"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("quantized.onnx").exists())
        .expect("a fine-tuned 16x16 network");
    let small = small.to_str().unwrap();
    let deployed = PathBuf::from(&results).join("deploy-16");
    let deploy = |data: &str| {
        qsearch(&[
            "deploy",
            "--checkpoint",
            small,
            "--data",
            data,
            "--no-rtl",
            "--verify-images",
            "50",
            "--agreement-images",
            "200",
            "-o",
            deployed.to_str().unwrap(),
            "--quiet",
        ])
    };
    let out = deploy("fashion-mnist@16");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("50 of 50 images bit-exact at every layer"),
        "{}",
        stdout(&out)
    );
    let out = deploy("fashion-mnist");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("takes 1x16x16 inputs but fashion-mnist has 1x28x28 images"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn search_and_compare_commands() {
    let results = temp_results("compare");
    let out = qsearch(&[
        "search",
        "--model",
        "zoo:resnet8",
        "--objective",
        "latency-accuracy",
        "--ram",
        "48KB",
        "--policy",
        "evolution",
        "--evaluations",
        "20000",
        "--results",
        &results,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Pareto set ("), "{}", stdout(&out));

    let out = qsearch(&[
        "compare",
        "--model",
        "zoo:resnet8",
        "--budget",
        "120KB",
        "--policies",
        "memory-driven,ilp,evolution,random",
        "--seeds",
        "2",
        "--evaluations",
        "10000",
        "--results",
        &results,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for header in [
        "policy",
        "best latency (ms)",
        "gap to ILP",
        "hypervolume",
        "evaluations",
        "wall s",
    ] {
        assert!(text.contains(header), "{text}");
    }
    let evolution = text.lines().find(|l| l.starts_with("evolution")).unwrap();
    assert_eq!(evolution.split_whitespace().nth(1), Some("2"), "{text}");
    let dir = PathBuf::from(&results).join("compare-resnet8-gap8-latency");
    for file in [
        "summary.parquet",
        "summary.csv",
        "candidates.parquet",
        "overlay.svg",
        "overlay.png",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
}

#[test]
fn search_errors_are_specific() {
    let results = temp_results("errors");
    let out = qsearch(&[
        "search",
        "--budget",
        "10KB",
        "--results",
        &results,
        "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the smallest possible is"),
        "{}",
        stderr(&out)
    );

    let out = qsearch(&["search", "--policy", "annealing", "--results", &results]);
    assert!(stderr(&out).contains("unknown policy 'annealing'; available: evolution, ilp, memory-driven, random, rl, uniform"), "{}", stderr(&out));

    let out = qsearch(&["search", "--objective", "speed", "--results", &results]);
    assert!(
        stderr(&out).contains("unknown objective 'speed'"),
        "{}",
        stderr(&out)
    );

    let out = qsearch(&[
        "search",
        "--platform",
        "pulp-open",
        "--objective",
        "energy",
        "--results",
        &results,
    ]);
    assert!(
        stderr(&out).contains("platform pulp-open gives no power figures"),
        "{}",
        stderr(&out)
    );

    let out = qsearch(&["search", "--max-latency", "soon", "--results", &results]);
    assert!(
        stderr(&out).contains("'soon' is not a latency"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_wall_time_limit_stops_the_search_and_says_so() {
    let results = temp_results("wall-time");
    let out = qsearch(&[
        "search",
        "--budget",
        "512KB",
        "--policy",
        "random",
        "--evaluations",
        "100000000000",
        "--wall-time",
        "0.5",
        "--results",
        &results,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("random: stopped at the 0.5 s wall-time limit after "),
        "{}",
        stdout(&out)
    );
    let out = qsearch(&["search", "--wall-time", "0", "--results", &results]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the wall-time limit must be a positive number of seconds, not 0"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sensitivity_tables_are_written_and_read_back() {
    let dir = temp_results("sensitivity");
    std::fs::create_dir_all(&dir).unwrap();
    let table = format!("{dir}/table.csv");
    let out = qsearch(&["sensitivity", "--model", "zoo:resnet8", "-o", &table]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A user's own numbers, in accuracy points: read back by the search.
    let text = std::fs::read_to_string(&table)
        .unwrap()
        .replace(",nsr", ",points");
    std::fs::write(&table, text).unwrap();
    let out = qsearch(&[
        "search",
        "--model",
        "zoo:resnet8",
        "--objective",
        "accuracy",
        "--budget",
        "100KB",
        "--sensitivity",
        &table,
        "--results",
        &dir,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("sensitivity: points (imported from"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn train_finetune_and_measure_from_the_command_line() {
    let dir = temp_results("train");
    let ckpt = format!("{dir}/fp");
    let out = qsearch(&[
        "train",
        "--model",
        "zoo:fashion-cnn:width=0.5",
        "--epochs",
        "1",
        "--limit",
        "1024",
        "-o",
        &ckpt,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("epoch 1: loss"), "{}", stdout(&out));
    // The same folder again needs --resume.
    let out = qsearch(&[
        "train",
        "--model",
        "zoo:fashion-cnn:width=0.5",
        "--epochs",
        "1",
        "--limit",
        "1024",
        "-o",
        &ckpt,
        "--quiet",
    ]);
    assert!(
        stderr(&out).contains("already holds a checkpoint; pass --resume"),
        "{}",
        stderr(&out)
    );

    // An assignment from a search of the trained network, then fine-tuning at it.
    let out = qsearch(&[
        "search",
        "--model",
        &format!("{ckpt}/model.onnx"),
        "--budget",
        "200KB",
        "--results",
        &dir,
        "--run",
        "s",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tuned = format!("{dir}/qat");
    let out = qsearch(&[
        "finetune",
        "--assignment",
        &format!("{dir}/s/assignment.json"),
        "--checkpoint",
        &ckpt,
        "--limit",
        "512",
        "-o",
        &tuned,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("fine-tuned test accuracy"),
        "{}",
        stdout(&out)
    );
    let quantization: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{tuned}/quantization.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(quantization["layers"].as_array().unwrap().len(), 5);
    assert!(PathBuf::from(format!("{tuned}/quantized.onnx")).exists());

    // A measured table, read back by the search.
    let table = format!("{dir}/measured.csv");
    let out = qsearch(&[
        "sensitivity",
        "--checkpoint",
        &ckpt,
        "--calibration-images",
        "200",
        "-o",
        &table,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&table).unwrap().contains(",points"));

    // Bad inputs name the problem.
    let out = qsearch(&[
        "train",
        "--model",
        "zoo:resnet8",
        "--epochs",
        "1",
        "-o",
        &format!("{dir}/bad"),
        "--quiet",
    ]);
    assert!(
        stderr(&out).contains("resnet8 takes 3x32x32 inputs but fashion-mnist has 1x28x28 images"),
        "{}",
        stderr(&out)
    );
    let out = qsearch(&[
        "train",
        "--data",
        "/nonexistent",
        "-o",
        &format!("{dir}/bad2"),
        "--quiet",
    ]);
    assert!(
        stderr(&out).contains("unknown dataset '/nonexistent'"),
        "{}",
        stderr(&out)
    );
}

/// `count` 28x28 one-channel images (NHW, uint8) of three classes a small network tells apart
/// (a bright band at a class's rows on noise), and their int64 labels.
fn three_class_images(count: usize, seed: usize) -> (Vec<u8>, Vec<u8>) {
    let mut images = Vec::with_capacity(count * 784);
    let mut labels = Vec::with_capacity(count * 8);
    for i in 0..count {
        let class = (i * 7 + seed) % 3;
        images.extend((0..784).map(|p| {
            let noise = ((p * 31 + i * 17 + seed) % 64) as u8;
            if (p / 28) / 10 == class {
                180 + noise
            } else {
                noise
            }
        }));
        labels.extend((class as i64).to_le_bytes());
    }
    (images, labels)
}

/// `--data FILE.npz` trains end to end, and `qsearch sensitivity --calibration FILE.npz` measures
/// on its images; bad files stop with the file and the array named.
#[test]
fn npz_datasets_train_and_calibrate_from_the_command_line() {
    use qsearch::train::npz::{NpzArray, encode};
    let dir = temp_results("npz");
    std::fs::create_dir_all(&dir).unwrap();
    let (x_train, y_train) = three_class_images(300, 0);
    let (x_test, y_test) = three_class_images(60, 1);
    let array = |name, descr, shape, data| NpzArray {
        name,
        descr,
        shape,
        data,
    };
    let data = format!("{dir}/three.npz");
    let file = encode(
        &[
            array("x_train", "|u1", &[300, 28, 28], &x_train),
            array("y_train", "<i8", &[300], &y_train),
            array("x_test", "|u1", &[60, 28, 28], &x_test),
            array("y_test", "<i8", &[60], &y_test),
        ],
        true,
    );
    std::fs::write(&data, file).unwrap();
    let ckpt = format!("{dir}/fp");
    let out = qsearch(&[
        "train",
        "--model",
        "zoo:fashion-cnn:width=0.5",
        "--data",
        &data,
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "-o",
        &ckpt,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("epoch 1: loss"), "{}", stdout(&out));

    // Calibration images with labels for a measured table, without for the noise proxy.
    let calibration = format!("{dir}/calibration.npz");
    let x: Vec<u8> = x_test[..20 * 784].to_vec();
    let unlabelled = format!("{dir}/unlabelled.npz");
    std::fs::write(
        &calibration,
        encode(
            &[
                array("x", "|u1", &[20, 28, 28, 1], &x),
                array("y", "<i8", &[20], &y_test[..160]),
            ],
            false,
        ),
    )
    .unwrap();
    std::fs::write(
        &unlabelled,
        encode(&[array("x", "|u1", &[20, 28, 28], &x)], false),
    )
    .unwrap();
    let table = format!("{dir}/measured.csv");
    let out = qsearch(&[
        "sensitivity",
        "--checkpoint",
        &ckpt,
        "--calibration",
        &calibration,
        "-o",
        &table,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("20 held-out calibration images"),
        "{}",
        stdout(&out)
    );
    let proxy = format!("{dir}/proxy.csv");
    let out = qsearch(&[
        "sensitivity",
        "--model",
        "zoo:fashion-cnn:width=0.5",
        "--calibration",
        &unlabelled,
        "-o",
        &proxy,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("20 calibration images of {unlabelled}")),
        "{}",
        stdout(&out)
    );
    let out = qsearch(&[
        "sensitivity",
        "--checkpoint",
        &ckpt,
        "--calibration",
        &unlabelled,
        "-o",
        &table,
    ]);
    assert!(
        stderr(&out).contains("unlabelled.npz: has no array y; a measured table"),
        "{}",
        stderr(&out)
    );

    // The network's input shape is checked against the file's images.
    let out = qsearch(&[
        "train",
        "--model",
        "zoo:resnet8",
        "--data",
        &data,
        "-o",
        &format!("{dir}/bad"),
        "--quiet",
    ]);
    assert!(
        stderr(&out).contains(&format!(
            "resnet8 takes 3x32x32 inputs but {data} (array x_train) has 1x28x28 images"
        )),
        "{}",
        stderr(&out)
    );
    let out = qsearch(&[
        "train",
        "--data",
        &unlabelled,
        "-o",
        &format!("{dir}/bad2"),
        "--quiet",
    ]);
    assert!(
        stderr(&out).contains("unlabelled.npz: has no array x_train (it holds x.npy)"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Zoo fashion-cnn with TFLite-converter names (200+ characters: fused operations joined by
/// `;`), written as ONNX under `dir`.
fn long_named_model(dir: &std::path::Path) -> (PathBuf, Vec<String>) {
    let mut graph = qsearch::graph::load_model("zoo:fashion-cnn").unwrap();
    for (i, node) in graph.nodes.iter_mut().enumerate() {
        let scope = format!("StatefulPartitionedCall/sequential_1/{}_{i}", node.name);
        node.name = format!(
            "{scope}/Conv2D;{scope}/BiasAdd;StatefulPartitionedCall/sequential_1/batch_normalization_{i}/FusedBatchNormV3;StatefulPartitionedCall/sequential_1/re_lu_{i}/Relu6"
        );
        assert!(node.name.len() > 200);
    }
    for (i, tensor) in graph.tensors.iter_mut().enumerate() {
        tensor.name = format!(
            "StatefulPartitionedCall/sequential_1/tensor_{i};{}",
            "x".repeat(180)
        );
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("long_names.onnx");
    qsearch::graph::onnx::export_file(&graph, &path).unwrap();
    // The names of the layers with weights, whose precisions the search chooses.
    let fused = qsearch::graph::FusedGraph::from_graph(&graph);
    let names = fused
        .weighted_layers()
        .map(|(_, l)| l.name.clone())
        .collect();
    (path, names)
}

/// The lines of the table whose header starts with `header`, up to the blank line after it.
fn table_lines<'a>(text: &'a str, header: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.starts_with(header))
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn long_layer_names_are_shortened_in_tables_and_whole_in_files() {
    let dir = PathBuf::from(temp_results("long-names"));
    let (model, names) = long_named_model(&dir);
    let model = model.display().to_string();

    let out = qsearch(&["inspect", "--model", &model]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let table = table_lines(&text, "#  layer");
    assert!(table.len() > 5, "{text}");
    for line in &table {
        assert!(
            line.chars().count() <= 120,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    let shown: Vec<String> = (0..5)
        .map(|i| format!("#{i} "))
        .filter(|tag| table.iter().any(|l| l.contains(tag.as_str())))
        .collect();
    assert_eq!(shown.len(), 5, "{text}");
    for line in text.lines() {
        assert!(line.chars().count() <= 120, "{line}");
    }

    let results = dir.display().to_string();
    let out = qsearch(&[
        "search",
        "--model",
        &model,
        "--budget",
        "512KB",
        "--results",
        &results,
        "--run",
        "r",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let table = table_lines(&text, "#  layer");
    assert!(table.len() > 5, "{text}");
    assert!(table.iter().all(|l| l.chars().count() <= 120), "{text}");
    assert!(table.iter().any(|l| l.contains("#0 ")), "{text}");
    // The files keep the whole names.
    let csv = std::fs::read_to_string(dir.join("r/sensitivity.csv")).unwrap();
    let json = std::fs::read_to_string(dir.join("r/assignment.json")).unwrap();
    assert_eq!(names.len(), 5);
    for name in &names {
        assert!(
            csv.contains(name.as_str()),
            "{name} missing from sensitivity.csv"
        );
        assert!(
            json.contains(name.as_str()),
            "{name} missing from assignment.json"
        );
    }
}

#[test]
fn quiet_silences_progress_and_errors_end_with_the_documented_exit_code() {
    let dir = temp_results("quiet");
    let train = |out: &str, quiet: bool| {
        let mut args = vec![
            "train",
            "--model",
            "zoo:fashion-cnn:width=0.25",
            "--epochs",
            "1",
            "--limit",
            "256",
            "-o",
            out,
        ];
        if quiet {
            // Global: accepted before the command too.
            args.insert(0, "--quiet");
        }
        qsearch(&args)
    };
    let loud = train(&format!("{dir}/loud"), false);
    assert!(loud.status.success(), "{}", stderr(&loud));
    assert!(stderr(&loud).contains("epoch 1/1"), "{}", stderr(&loud));
    let quiet = train(&format!("{dir}/quiet"), true);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert_eq!(stderr(&quiet), "", "progress despite --quiet");
    assert!(stdout(&quiet).contains("epoch 1: loss"));

    // The codes --help documents, and the line every failure ends with.
    let help = qsearch(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = stdout(&help);
    assert!(
        text.contains("Exit codes: 0 success; 1 error")
            && text.contains("2 usage error")
            && text.contains("qsearch: exit code N"),
        "{text}"
    );
    let last = |o: &Output| {
        stderr(o)
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    let error = qsearch(&["inspect", "--model", "zoo:lenet", "--quiet"]);
    assert_eq!(error.status.code(), Some(1));
    assert_eq!(last(&error), "qsearch: exit code 1 (error)");
    assert!(stderr(&error).contains("unknown zoo network 'lenet'"));
    let usage = qsearch(&["inspect", "--frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(last(&usage), "qsearch: exit code 2 (usage error)");
    let usage = qsearch(&["inspect", "--bits", "3"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("use 2, 4 or 8"));
}
