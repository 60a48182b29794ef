//! The readers the fuzzer calls, with the seed inputs it mutates, grouped by kind of file.

use super::{Style, Target};
use crate::batch::{Plan, Sweep};
use crate::cost::CostTable;
use crate::cost::calibrate::{parse_measurements, predict};
use crate::deploy::integerize;
use crate::graph::onnx;
use crate::graph::{
    Activation, Conv, FusedGraph, Graph, GraphBuilder, GraphError, Linear, Op, PoolKind, Shape,
    Window, fold_for_analysis,
};
use crate::objective::{Objective, parse_config};
use crate::platform::Platform;
use crate::precision::Bits;
use crate::quant::{BufferQuant, LayerBits, Quantization};
use crate::sensitivity::Sensitivity;
use crate::space::{Space, SpaceConfig};
use crate::train::data::{add_cifar_records, gunzip_if_compressed, idx_split_from_bytes};
use crate::train::npz::{Npz, NpzArray, encode as encode_npz};
use crate::train::qat::parse_assignment;
use crate::train::trainer::{EpochLog, TrainConfig, TrainState};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Text of a text input, or an error naming the input (mutated text inputs are always UTF-8).
fn text<'a>(bytes: &'a [u8], origin: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("{origin}: not UTF-8 text: {e}"))
}

/// The small network the graph-dependent readers (search space, sensitivity table, assignment,
/// quantization) are read against: convolutions, a residual add, pooling and a classifier.
pub(crate) fn tiny_network() -> Graph {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut values =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-0.5..0.5)).collect() };
    build_tiny(&mut values).expect("the tiny network is well formed")
}

fn build_tiny(values: &mut dyn FnMut(usize) -> Vec<f32>) -> Result<Graph, GraphError> {
    let mut conv = |inputs: usize| {
        Op::Conv(Conv {
            out_channels: 8,
            window: Window::square(3, 1, 1),
            groups: 1,
            weight: values(8 * inputs * 9),
            bias: values(8),
        })
    };
    let (conv1, conv2) = (conv(4), conv(8));
    let relu = || Op::Activation(Activation::Relu);
    let mut b = GraphBuilder::new("tiny", "image", Shape::new(4, 8, 8));
    let c1 = b.add("conv1", conv1, &[b.input()])?;
    let r1 = b.add("relu1", relu(), &[c1])?;
    let c2 = b.add("conv2", conv2, &[r1])?;
    let r2 = b.add("relu2", relu(), &[c2])?;
    let sum = b.add("add", Op::Add, &[r1, r2])?;
    let pool = Op::Pool {
        kind: PoolKind::Max,
        window: Window::square(2, 2, 0),
    };
    let pooled = b.add("pool", pool, &[sum])?;
    let flat = b.add("flatten", Op::Flatten, &[pooled])?;
    let fc = Op::Linear(Linear {
        out_features: 10,
        weight: values(10 * 128),
        bias: values(10),
    });
    let out = b.add("fc", fc, &[flat])?;
    b.finish(out)
}

fn tiny_fused() -> FusedGraph {
    FusedGraph::from_graph(&fold_for_analysis(&tiny_network()))
}

fn gap8() -> Platform {
    Platform::load("gap8").expect("gap8 is built in")
}

/// An IDX file of unsigned bytes.
fn idx(dims: &[u32], fill: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    v.extend((0..n as usize).map(fill));
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Every reader, with its seeds. `root` is the repository (for `tests/fixtures` and
/// `search_spaces/sweeps`); seeds that need no file are built in code.
pub fn targets(root: &Path) -> Vec<Target> {
    let fx = Fixtures {
        root: root.to_path_buf(),
        fused: Arc::new(tiny_fused()),
        folded: Arc::new(fold_for_analysis(&tiny_network())),
        platform: Arc::new(gap8()),
    };
    [
        model_targets,
        description_targets,
        sweep_targets,
        table_targets,
        dataset_targets,
        run_file_targets,
    ]
    .iter()
    .flat_map(|family| family(&fx))
    .collect()
}

/// What the seeds of several readers are built from: the repository's fixtures and the small
/// network (as a fused graph, folded for integerization) on gap8.
struct Fixtures {
    root: PathBuf,
    fused: Arc<FusedGraph>,
    folded: Arc<Graph>,
    platform: Arc<Platform>,
}

impl Fixtures {
    /// The contents of the files in `dir` (relative to the repository) ending in `.ext`, sorted by name.
    fn files(&self, dir: &str, ext: &str) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.root.join(dir))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    }
}

/// The ONNX reader: the fixtures and an exported network.
fn model_targets(fx: &Fixtures) -> Vec<Target> {
    let mut targets = Vec::new();
    // ONNX models: the fixtures and an exported network.
    let mut seeds = fx.files("tests/fixtures/onnx", "onnx");
    seeds.push(onnx::export_bytes(&tiny_network()));
    targets.push(Target::new(
        "onnx",
        "fuzz/model.onnx",
        Style::Onnx,
        seeds,
        |bytes, origin| {
            let graph = onnx::import_bytes(bytes, origin, "model").map_err(|e| e.to_string())?;
            FusedGraph::from_graph(&fold_for_analysis(&graph));
            Ok(())
        },
    ));
    targets
}

/// Platform descriptions, search spaces and objectives (TOML), each read against the small network.
fn description_targets(fx: &Fixtures) -> Vec<Target> {
    let (fused, platform) = (&fx.fused, &fx.platform);
    let mut targets = Vec::new();
    // Platform descriptions, then the cost table of a small network on the platform read.
    let mut seeds: Vec<Vec<u8>> = crate::platform::BUILT_IN
        .iter()
        .map(|(_, t)| t.as_bytes().to_vec())
        .collect();
    seeds.push(gap8().to_toml().unwrap_or_default().into_bytes());
    let f = fused.clone();
    targets.push(Target::new(
        "platform-toml",
        "fuzz/platform.toml",
        Style::Text,
        seeds,
        move |bytes, origin| {
            let p = Platform::parse(text(bytes, origin)?, origin).map_err(|e| e.to_string())?;
            CostTable::build(&f, &p);
            Ok(())
        },
    ));

    // Search spaces, resolved against the small network on gap8.
    let mut seeds: Vec<Vec<u8>> = crate::space::BUILT_IN
        .iter()
        .map(|(_, t)| t.as_bytes().to_vec())
        .collect();
    seeds.push(
        br#"name = "mine"
description = "every option"
weight_bits = [2, 4, 8]
activation_bits = [4, 8]
frozen = ["conv2"]
frozen_bits = 8
tie_residual_inputs = false
ties = [["relu1", "add"], ["flatten", "fc"]]

[kinds.conv]
weight_bits = [4, 8]
activation_bits = [8]

[layers.fc]
weight_bits = [2]

[pin]
first_layer = 8
last_layer = 4
input = 8
output = 8
"#
        .to_vec(),
    );
    let (f, p) = (fused.clone(), platform.clone());
    targets.push(Target::new(
        "search-space-toml",
        "fuzz/space.toml",
        Style::Text,
        seeds,
        move |bytes, origin| {
            let config =
                SpaceConfig::parse(text(bytes, origin)?, origin).map_err(|e| e.to_string())?;
            Space::resolve(&config, &f, &p).map_err(|e| e.to_string())?;
            Ok(())
        },
    ));

    // Objectives.
    let mut seeds: Vec<Vec<u8>> = crate::objective::BUILT_IN
        .iter()
        .map(|(_, t)| t.as_bytes().to_vec())
        .collect();
    seeds.push(
        br#"name = "all-limits"
description = "every limit"
minimize = ["latency", "flash", "ram", "memory", "energy", "accuracy"]

[limits]
memory = "512KB"
flash = "0.5MB"
ram = "64KiB"
latency = "5ms"
energy = 0.001
accuracy_drop = 1.5
"#
        .to_vec(),
    );
    targets.push(Target::new(
        "objective-toml",
        "fuzz/objective.toml",
        Style::Text,
        seeds,
        |bytes, origin| {
            let config = parse_config(text(bytes, origin)?, origin).map_err(|e| e.to_string())?;
            Objective::resolve(&config, 100e6, origin).map_err(|e| e.to_string())?;
            Ok(())
        },
    ));
    targets
}

/// Sweep files (TOML) and the plans they expand to (`plan.json`).
fn sweep_targets(fx: &Fixtures) -> Vec<Target> {
    let mut targets = Vec::new();
    // Sweeps, expanded into their tasks.
    let mut seeds = fx.files("search_spaces/sweeps", "toml");
    let sweep_seed = br#"name = "small"
models = ["zoo:fashion-cnn", "zoo:resnet8"]
platforms = ["gap8", "gap9"]
objectives = ["latency", "memory"]
limit = "flash"
budgets = ["100KB", "0.5MB", "524288"]
policies = ["ilp", "evolution", "random", "uniform"]
seeds = 2
space = "wide"

[settings]
evaluations = 1000
population = 20
episodes = 5
pareto_points = 4
time_limit = 10.0

[slurm]
time = "00:05:00"
memory = "1G"
cpus_per_task = 2
partition = "debug"
account = "me"
max_concurrent = 4
"#;
    seeds.push(sweep_seed.to_vec());
    targets.push(Target::new(
        "sweep-toml",
        "fuzz/sweep.toml",
        Style::Text,
        seeds,
        |bytes, origin| {
            let sweep = Sweep::parse(text(bytes, origin)?, origin).map_err(|e| e.to_string())?;
            sweep.expand();
            Ok(())
        },
    ));

    // Sweep plans (`plan.json`).
    let seeds: Vec<Vec<u8>> = [
        &sweep_seed[..],
        b"name = \"one\"\nmodels = [\"m.onnx\"]\nbudgets = [\"1MB\"]\npolicies = [\"ilp\"]\n",
    ]
    .iter()
    .filter_map(|t| Sweep::parse(std::str::from_utf8(t).ok()?, "seed").ok())
    .map(|sweep| {
        let plan = Plan {
            tasks: sweep.expand(),
            sweep,
        };
        serde_json::to_vec_pretty(&plan).unwrap_or_default()
    })
    .collect();
    targets.push(Target::new(
        "sweep-plan-json",
        "fuzz/plan.json",
        Style::Text,
        seeds,
        |bytes, origin| {
            Plan::parse(text(bytes, origin)?, origin).map_err(|e| e.to_string())?;
            Ok(())
        },
    ));
    targets
}

/// Tables: sensitivity and kernel-measurement CSV.
fn table_targets(fx: &Fixtures) -> Vec<Target> {
    let (fused, platform) = (&fx.fused, &fx.platform);
    let mut targets = Vec::new();
    // Sensitivity tables of the small network.
    let table = Sensitivity {
        unit: "points".into(),
        source: "fuzz".into(),
        weights: (0..fused.layers.len())
            .map(|l| [0.5 + l as f64, 0.25, 1e-3])
            .collect(),
        activations: (0..fused.tensors.len())
            .map(|t| [2.0 + t as f64, 0.125, 0.0])
            .collect(),
    };
    let csv = table.to_csv(fused);
    let quoted = csv.replacen("weight,conv1,", "\"weight\",\"conv1\",", 1);
    let f = fused.clone();
    targets.push(Target::new(
        "sensitivity-csv",
        "fuzz/sensitivity.csv",
        Style::Text,
        vec![csv.into_bytes(), quoted.into_bytes()],
        move |bytes, origin| {
            Sensitivity::parse_csv(text(bytes, origin)?, origin, &f).map_err(|e| e.to_string())?;
            Ok(())
        },
    ));

    // Kernel measurements, then their predicted cycles on gap8.
    let header = crate::cost::calibrate::COLUMNS.join(",");
    let rows = [
        "conv,8,16,16,16,3,3,1,1,1,8,8,8,8,120000",
        "pointwise,32,8,8,64,1,1,1,0,1,4,8,4,8,40000.5",
        "depthwise,32,16,16,32,3,3,2,1,32,8,8,8,1,9000",
        "grouped,16,8,8,16,3,3,1,1,4,2,4,8,8,7000",
        "linear,256,1,1,10,1,1,1,0,1,2,2,8,8,3000",
        "add,16,8,8,16,1,1,1,0,1,8,8,8,8,2000",
        "maxpool,16,8,8,16,2,2,2,0,1,8,8,8,8,1500",
        "avgpool,16,8,8,16,3,3,1,1,1,8,4,4,8,1600",
        "globalavgpool,64,4,4,64,4,4,1,0,1,8,8,8,8,900",
        "globalmaxpool,64,4,4,64,4,4,1,0,1,8,8,8,8,800",
    ];
    let measurements = format!("# measured on QEMU\n{header}\n{}\n", rows.join("\n"));
    let reordered = "cycles,cores,out_bits,in_bits,w_bits,groups,pad,stride,kernel_w,kernel_h,out_c,in_w,in_h,in_c,kernel\n120000,8,8,8,8,1,1,1,3,3,16,16,16,8,conv\n".to_string();
    let p = platform.clone();
    targets.push(Target::new(
        "measurements-csv",
        "fuzz/measurements.csv",
        Style::Text,
        vec![measurements.into_bytes(), reordered.into_bytes()],
        move |bytes, origin| {
            let rows =
                parse_measurements(text(bytes, origin)?, origin).map_err(|e| e.to_string())?;
            predict(&p.cost, &rows);
            Ok(())
        },
    ));
    targets
}

/// Datasets: IDX (plain and gzipped), CIFAR-10 binary batches and .npz files.
fn dataset_targets(_: &Fixtures) -> Vec<Target> {
    let mut targets = Vec::new();
    // IDX datasets (MNIST format), plain and gzipped: images against valid labels, and labels
    // against valid images.
    let images = idx(&[3, 4, 5], |i| (i * 7) as u8);
    let labels = idx(&[3], |i| i as u8);
    let (images_path, labels_path) = (
        PathBuf::from("fuzz/train-images-idx3-ubyte"),
        PathBuf::from("fuzz/train-labels-idx1-ubyte"),
    );
    let (fixed_labels, lp) = (labels.clone(), labels_path.clone());
    targets.push(Target::new(
        "idx-images",
        "fuzz/train-images-idx3-ubyte",
        Style::Binary,
        vec![images.clone(), gzip(&images)],
        move |bytes, origin| {
            let images = gunzip_if_compressed(bytes.to_vec(), Path::new(origin))
                .map_err(|e| e.to_string())?;
            idx_split_from_bytes(&images, Path::new(origin), &fixed_labels, &lp)
                .map_err(|e| e.to_string())?;
            Ok(())
        },
    ));
    targets.push(Target::new(
        "idx-labels",
        "fuzz/train-labels-idx1-ubyte",
        Style::Binary,
        vec![labels.clone(), gzip(&labels)],
        move |bytes, origin| {
            let labels = gunzip_if_compressed(bytes.to_vec(), Path::new(origin))
                .map_err(|e| e.to_string())?;
            idx_split_from_bytes(&images, &images_path, &labels, Path::new(origin))
                .map_err(|e| e.to_string())?;
            Ok(())
        },
    ));

    // CIFAR-10 binary batches.
    let record = |label: u8| -> Vec<u8> {
        std::iter::once(label)
            .chain((0..3072).map(|i| (i % 251) as u8))
            .collect()
    };
    let batch: Vec<u8> = [record(3), record(9)].concat();
    targets.push(Target::new(
        "cifar10-bin",
        "fuzz/data_batch_1.bin",
        Style::Binary,
        vec![batch.clone(), gzip(&batch)],
        |bytes, origin| {
            let path = Path::new(origin);
            let bytes = gunzip_if_compressed(bytes.to_vec(), path).map_err(|e| e.to_string())?;
            add_cifar_records(&bytes, path, &mut Vec::new(), &mut Vec::new())
                .map_err(|e| e.to_string())?;
            Ok(())
        },
    ));
    targets.extend(npz_targets());
    targets
}

/// .npz datasets: whole archives (stored and deflated), and one array (`x_train.npy`) inside
/// an archive built around it, so that mutations reach the .npy parser past the checksum.
fn npz_targets() -> Vec<Target> {
    let x: Vec<u8> = (0..4 * 3 * 3 * 2).map(|i| (i * 11) as u8).collect();
    let xf: Vec<u8> = x
        .iter()
        .flat_map(|&p| (f32::from(p) / 255.0).to_le_bytes())
        .collect();
    let y: Vec<u8> = [0i16, 1, 2, 1]
        .iter()
        .flat_map(|l| l.to_be_bytes())
        .collect();
    let arrays = |x_descr, x_data| {
        let shape: &[usize] = &[4, 3, 3, 2];
        let labels: &[usize] = &[4];
        encode_npz(
            &[
                NpzArray {
                    name: "x_train",
                    descr: x_descr,
                    shape,
                    data: x_data,
                },
                NpzArray {
                    name: "y_train",
                    descr: ">i2",
                    shape: labels,
                    data: &y,
                },
                NpzArray {
                    name: "x_test",
                    descr: x_descr,
                    shape,
                    data: x_data,
                },
                NpzArray {
                    name: "y_test",
                    descr: ">i2",
                    shape: labels,
                    data: &y,
                },
            ],
            x_descr == "<f4",
        )
    };
    let whole = vec![arrays("|u1", &x), arrays("<f4", &xf)];
    let read = |bytes: &[u8], origin: &str| -> Result<(), String> {
        Npz::open(bytes, Path::new(origin))
            .and_then(|n| n.dataset())
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    let images: Vec<Vec<u8>> = [("|u1", &x), ("<f4", &xf)]
        .iter()
        .map(|(descr, data)| crate::train::npy::encode(descr, &[4, 3, 3, 2], data))
        .collect();
    let labels = crate::train::npy::encode(">i2", &[4], &y);
    let npy_x_test = images[0].clone();
    vec![
        Target::new("npz", "fuzz/data.npz", Style::Binary, whole, read),
        Target::new(
            "npy",
            "fuzz/x_train-in.npz",
            Style::Binary,
            images,
            move |bytes, origin| {
                let member = |name: &str, data: &[u8]| (name.to_string(), data.to_vec());
                let archive = crate::train::zip::write(
                    &[
                        member("x_train.npy", bytes),
                        member("y_train.npy", &labels),
                        member("x_test.npy", &npy_x_test),
                        member("y_test.npy", &labels),
                    ],
                    false,
                );
                read(&archive, origin)
            },
        ),
    ]
}

/// Files a run writes and a later run reads: `assignment.json`, `quantization.json`, checkpoint `state.json`.
fn run_file_targets(fx: &Fixtures) -> Vec<Target> {
    let (fused, folded) = (&fx.fused, &fx.folded);
    let mut targets = Vec::new();
    // Assignments (`assignment.json` of a search run).
    let assignment = serde_json::json!({
        "layers": fused.layers.iter().map(|l| serde_json::json!({
            "layer": l.name,
            "kind": l.kind.name(),
            "weight_bits": l.kind.has_weights().then_some(4),
            "input_bits": l.inputs.iter().map(|_| 8).collect::<Vec<_>>(),
            "output_bits": 8,
        })).collect::<Vec<_>>(),
        "buffers": fused.tensors.iter().map(|t| serde_json::json!({"buffer": t.name, "bits": 8})).collect::<Vec<_>>(),
        "cycles": 123456,
        "latency_ms": 1.23,
        "flash_bytes": 4096,
        "ram_bytes": 2048,
        "predicted_loss": 0.5,
        "feasible": true,
    });
    let f = fused.clone();
    targets.push(Target::new(
        "assignment-json",
        "fuzz/assignment.json",
        Style::Text,
        vec![serde_json::to_vec_pretty(&assignment).unwrap_or_default()],
        move |bytes, origin| {
            parse_assignment(text(bytes, origin)?, origin, &f).map_err(|e| e.to_string())?;
            Ok(())
        },
    ));

    // Quantizations (`quantization.json` of a fine-tuning), then integerization of the small
    // network with them (whose refusals concern the network, not the file).
    let quantization = Quantization {
        layers: fused
            .weighted_layers()
            .map(|(_, l)| LayerBits {
                layer: l.name.clone(),
                weight_bits: 4,
            })
            .collect(),
        buffers: fused
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| BufferQuant {
                buffer: t.name.clone(),
                bits: Bits::ALL[i % 3].count(),
                bound: 1.0 + i as f32 * 0.5,
                signed: i % 2 == 1,
            })
            .collect(),
    };
    let g = folded.clone();
    targets.push(Target::new(
        "quantization-json",
        "fuzz/quantization.json",
        Style::Text,
        vec![serde_json::to_vec_pretty(&quantization).unwrap_or_default()],
        move |bytes, origin| {
            let q = Quantization::parse(text(bytes, origin)?, origin).map_err(|e| e.to_string())?;
            let _ = integerize(&g, &q, 64);
            let _ = integerize(&g, &q, 32);
            Ok(())
        },
    ));

    // Checkpoint states (`state.json`).
    let state = TrainState {
        config: TrainConfig {
            limit: Some(1000),
            holdout: 100,
            distill: 0.5,
            ..TrainConfig::default()
        },
        epoch: 2,
        history: (1..=2)
            .map(|epoch| EpochLog {
                epoch,
                loss: 0.5 / epoch as f64,
                test_accuracy: 80.0 + epoch as f64,
                seconds: 12.5,
                images_per_second: 900.0,
            })
            .collect(),
    };
    targets.push(Target::new(
        "checkpoint-state-json",
        "fuzz/state.json",
        Style::Text,
        vec![serde_json::to_vec_pretty(&state).unwrap_or_default()],
        |bytes, origin| {
            TrainState::parse(text(bytes, origin)?, origin).map_err(|e| e.to_string())?;
            Ok(())
        },
    ));
    targets
}
