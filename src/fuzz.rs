//! A seeded mutation fuzzer for every reader of untrusted input.
//!
//! Model files, platform descriptions, search spaces, tables and datasets come from anywhere, so
//! each reader must refuse what it cannot use with an error that names the file and says what is
//! wrong; it must never panic, hang, or allocate what a header claims before checking it.
//! [`targets`] lists one entry per reader: seed inputs (the repository's fixtures and valid files
//! built in code), how to mutate them (protobuf structure, binary headers or text tokens) and the
//! call of the reader on the bytes in memory. [`run`] feeds a target mutated inputs, each on a
//! worker thread under `catch_unwind` with a time limit, and counts panics, hangs, errors that do
//! not name the input, and large allocations (measured when the running binary installs an
//! allocator that records them in [`LARGEST_ALLOCATION`], as `tests/fuzz.rs` does).
//!
//! Input `i` of a target is a pure function of the seed, the target's name and `i`
//! ([`input`]), so a finding is reproduced from the three.

use crate::batch::{Plan, Sweep};
use crate::cost::CostTable;
use crate::cost::calibrate::{parse_measurements, predict};
use crate::deploy::integerize;
use crate::graph::onnx::{self, proto};
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
use crate::train::qat::parse_assignment;
use crate::train::trainer::{EpochLog, TrainConfig, TrainState};
use prost::Message;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The largest single allocation requested while the current input was read, in bytes. A
/// binary that wants allocations measured installs a global allocator that raises it (with
/// `fetch_max`); [`run`] resets it before each input.
pub static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

/// The index of the input being read, for an allocator's message when it refuses a request.
pub static CURRENT_INPUT: AtomicU64 = AtomicU64::new(0);

/// An allocation above this many bytes while reading one (small) input is a finding: the reader
/// trusted a size the input claims.
pub const ALLOCATION_LIMIT: usize = 256 << 20;

/// Mutated inputs are cut to this many bytes.
const MAX_INPUT_BYTES: usize = 1 << 20;

/// Name of the worker threads; the panic hook keeps their panics quiet and records them.
const WORKER: &str = "qsearch-fuzz-worker";

/// How a target's inputs are mutated, besides plain byte mutations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Protobuf: the wire format's fields (varints, lengths, nested messages) and, for ONNX,
    /// the model's nodes, tensors and attributes.
    Onnx,
    /// Binary headers: big- and little-endian integers at any offset.
    Binary,
    /// Text (TOML, CSV, JSON): numbers, words, punctuation and lines; kept valid UTF-8.
    Text,
}

type Reader = Arc<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

/// One reader under test.
pub struct Target {
    pub name: &'static str,
    /// The name the reader is given for its input; every error must contain it.
    pub origin: String,
    pub style: Style,
    pub seeds: Vec<Vec<u8>>,
    /// Words to insert (field names, operator names, layer names of the seeds).
    pub dictionary: Vec<Vec<u8>>,
    read: Reader,
}

impl Target {
    fn new(
        name: &'static str,
        origin: &str,
        style: Style,
        seeds: Vec<Vec<u8>>,
        read: impl Fn(&[u8], &str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Target {
        let mut dictionary: Vec<Vec<u8>> = seeds.iter().flat_map(|s| words(s)).collect();
        dictionary.sort();
        dictionary.dedup();
        let label = origin.to_string();
        Target {
            name,
            origin: origin.to_string(),
            style,
            seeds,
            dictionary,
            read: Arc::new(move |bytes| read(bytes, &label)),
        }
    }

    /// Calls the reader on `bytes` (on the calling thread, panics included).
    pub fn read(&self, bytes: &[u8]) -> Result<(), String> {
        (self.read)(bytes)
    }
}

/// Text of a text input, or an error naming the input (mutated text inputs are always UTF-8).
fn text<'a>(bytes: &'a [u8], origin: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("{origin}: not UTF-8 text: {e}"))
}

/// The small network the graph-dependent readers (search space, sensitivity table, assignment,
/// quantization) are read against: convolutions, a residual add, pooling and a classifier.
pub fn tiny_network() -> Graph {
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
    let fused = Arc::new(tiny_fused());
    let folded = Arc::new(fold_for_analysis(&tiny_network()));
    let platform = Arc::new(gap8());
    let files = |dir: &str, ext: &str| -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .filter_map(|p| std::fs::read(p).ok())
            .collect()
    };
    let mut targets = Vec::new();

    // ONNX models: the fixtures and an exported network.
    let mut seeds = files("tests/fixtures/onnx", "onnx");
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

    // Sweeps, expanded into their tasks.
    let mut seeds = files("search_spaces/sweeps", "toml");
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
    let csv = table.to_csv(&fused);
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

// ---------------------------------------------------------------------------------------------
// Inputs

/// A 64-bit FNV-1a hash (stable across runs and platforms, unlike `DefaultHasher`).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Input `index` of `target` for `seed`: the seeds as they are first, then mutants.
pub fn input(target: &Target, seed: u64, index: u64) -> Vec<u8> {
    if let Some(s) = usize::try_from(index)
        .ok()
        .and_then(|i| target.seeds.get(i))
    {
        return s.clone();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ fnv(target.name.as_bytes()) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    mutate(target, &mut rng)
}

/// Integers that break size arithmetic: zero, one, signs, powers of two around 2^8, 2^16, 2^31,
/// 2^32, 2^40, 2^53, 2^63 and the all-ones patterns.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    16,
    31,
    32,
    64,
    127,
    128,
    255,
    256,
    1000,
    3072,
    3073,
    4096,
    65535,
    65536,
    (1 << 24) + 1,
    (1 << 31) - 1,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    1 << 40,
    1 << 53,
    1 << 62,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX,
    u64::MAX - 1,
    (-128i64) as u64,
    (-(1i64 << 31)) as u64,
    (-(1i64 << 40)) as u64,
];

/// Numbers as a text format writes them, including the ones a parser may choke on.
const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "3",
    "4",
    "8",
    "16",
    "255",
    "256",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "4294967304",
    "1099511627776",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e308",
    "1e-320",
    "0.5",
    "-0.5",
    "2.5",
    "nan",
    "inf",
    "-inf",
    "NaN",
    "1_000",
    "0x10",
    "1e3",
    "\"\"",
    "\"8\"",
    "true",
    "null",
    "[]",
    "{}",
];

/// Characters that change the structure of a text format.
const PUNCTUATION: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    ":",
    "\"",
    "'",
    "#",
    "\n",
    "\r\n",
    "\\",
    ".",
    "-",
    " ",
    "\t",
    "\u{0}",
    "\u{feff}",
    "é",
    "\u{1f600}",
    "\"\"\"",
    "'''",
    "[[",
    "]]",
    "\\u0000",
    "\\ud800",
];

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.random_range(0..items.len())])
}

fn interesting(rng: &mut ChaCha8Rng) -> u64 {
    if rng.random_bool(0.8) {
        INTERESTING[rng.random_range(0..INTERESTING.len())]
    } else {
        rng.random::<u64>() >> rng.random_range(0..64)
    }
}

fn mutate(target: &Target, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let Some(seed) = pick(rng, &target.seeds) else {
        return Vec::new();
    };
    let mut data = seed.clone();
    // Mostly one or two mutations, sometimes many.
    let rounds = match rng.random_range(0..10) {
        0..=4 => 1,
        5..=7 => 2,
        _ => rng.random_range(3..9),
    };
    for _ in 0..rounds {
        match target.style {
            Style::Onnx => match rng.random_range(0..10) {
                0..=3 => onnx_mutation(&mut data, rng, target),
                4..=7 => protobuf_mutation(&mut data, rng, target),
                _ => byte_mutation(&mut data, rng, target),
            },
            Style::Binary => byte_mutation(&mut data, rng, target),
            Style::Text => {
                if rng.random_bool(0.85) {
                    text_mutation(&mut data, rng, target);
                } else {
                    byte_mutation(&mut data, rng, target);
                }
            }
        }
    }
    data.truncate(MAX_INPUT_BYTES);
    if target.style == Style::Text {
        data = String::from_utf8_lossy(&data).into_owned().into_bytes();
    }
    data
}

/// The words (runs of letters, digits, `_`, `-`, `.`) of a seed, for the dictionary.
fn words(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| !(b.is_ascii_alphanumeric() || b"_-.".contains(b)))
        .filter(|w| (2..=40).contains(&w.len()) && w.iter().any(u8::is_ascii_alphabetic))
        .map(<[u8]>::to_vec)
        .collect()
}

fn byte_mutation(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, target: &Target) {
    let len = data.len();
    let at = |rng: &mut ChaCha8Rng| {
        if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        }
    };
    match rng.random_range(0..11) {
        0 if len > 0 => {
            let i = at(rng);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            data[i] = *pick(rng, &[0u8, 1, 0x7f, 0x80, 0xff, b'0', b'9']).unwrap_or(&0);
        }
        2 | 3 if len > 0 => {
            // An interesting integer over 1, 2, 4 or 8 bytes, big- or little-endian.
            let width = *pick(rng, &[1usize, 2, 4, 8]).unwrap_or(&4);
            let value = interesting(rng);
            let bytes = if rng.random_bool(0.5) {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let bytes = if rng.random_bool(0.5) {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            // Header fields sit at the start: favour it.
            let i = if rng.random_bool(0.5) {
                rng.random_range(0..len.min(24))
            } else {
                at(rng)
            };
            for (k, b) in bytes.iter().enumerate() {
                if let Some(slot) = data.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        4 => {
            let n = rng.random_range(1..33);
            let i = at(rng).min(len);
            let fresh: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(i..i, fresh);
        }
        5 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(256));
            data.drain(i..i + n);
        }
        6 if len > 0 => {
            // Duplicate a chunk somewhere else.
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(4096));
            let chunk = data[i..i + n].to_vec();
            let j = at(rng);
            data.splice(j..j, chunk);
        }
        7 if len > 0 => {
            let i = at(rng);
            data.truncate(i);
        }
        8 => {
            // Splice: this input's head, another seed's tail.
            if let Some(other) = pick(rng, &target.seeds) {
                let i = at(rng).min(len);
                let j = if other.is_empty() {
                    0
                } else {
                    rng.random_range(0..other.len())
                };
                data.truncate(i);
                data.extend_from_slice(&other[j..]);
            }
        }
        9 => {
            if let Some(word) = pick(rng, &target.dictionary) {
                let i = at(rng).min(len);
                data.splice(i..i, word.iter().copied());
            }
        }
        _ => {
            if len > 0 {
                let i = at(rng);
                data[i] = rng.random();
            }
        }
    }
}

// Text ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Token {
    Number,
    Word,
    Space,
    Other,
}

/// Splits text into tokens (byte ranges): numbers, words, whitespace and single characters.
fn tokens(text: &str) -> Vec<(Token, std::ops::Range<usize>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let class = |c: u8| {
            if c.is_ascii_digit() {
                Token::Number
            } else if c.is_ascii_alphabetic() || c == b'_' {
                Token::Word
            } else if c.is_ascii_whitespace() {
                Token::Space
            } else {
                Token::Other
            }
        };
        let kind = class(b);
        let mut j = i + 1;
        match kind {
            Token::Number => {
                while j < bytes.len()
                    && (bytes[j].is_ascii_digit() || b".eE+-_".contains(&bytes[j]))
                {
                    j += 1;
                }
            }
            Token::Word => {
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || b"_-".contains(&bytes[j]))
                {
                    j += 1;
                }
            }
            Token::Space => {
                while j < bytes.len() && bytes[j].is_ascii_whitespace() && bytes[j] != b'\n' {
                    j += 1;
                }
            }
            Token::Other => {
                while j < bytes.len() && !text.is_char_boundary(j) {
                    j += 1;
                }
            }
        }
        out.push((kind, i..j));
        i = j;
    }
    out
}

fn text_mutation(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, target: &Target) {
    let text = String::from_utf8_lossy(data).into_owned();
    let toks = tokens(&text);
    let replace = |range: std::ops::Range<usize>, with: &[u8]| -> Vec<u8> {
        let mut out = text.as_bytes()[..range.start].to_vec();
        out.extend_from_slice(with);
        out.extend_from_slice(&text.as_bytes()[range.end..]);
        out
    };
    let of_kind = |kind: Token| -> Vec<std::ops::Range<usize>> {
        toks.iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    *data = match rng.random_range(0..12) {
        0..=2 => {
            // A number becomes an interesting one (or a word does, less often).
            let mut spots = of_kind(Token::Number);
            if spots.is_empty() || rng.random_bool(0.1) {
                spots.extend(of_kind(Token::Word));
            }
            match pick(rng, &spots) {
                Some(r) => {
                    let n = pick(rng, INTERESTING_TEXT).unwrap_or(&"0");
                    replace(r.clone(), n.as_bytes())
                }
                None => return,
            }
        }
        3 | 4 => {
            // A word becomes another word of the dictionary.
            match (
                pick(rng, &of_kind(Token::Word)),
                pick(rng, &target.dictionary),
            ) {
                (Some(r), Some(w)) => replace(r.clone(), w),
                _ => return,
            }
        }
        5 => match pick(rng, &toks) {
            Some((_, r)) => replace(r.clone(), b""),
            None => return,
        },
        6 => match pick(rng, &toks) {
            Some((_, r)) => {
                let t = text.as_bytes()[r.clone()].to_vec();
                replace(r.start..r.start, &t)
            }
            None => return,
        },
        7 => {
            // Punctuation, a word or a long string at a token boundary.
            let at = pick(rng, &toks).map_or(0, |(_, r)| r.start);
            let insert: Vec<u8> = match rng.random_range(0..4) {
                0 => pick(rng, &target.dictionary).cloned().unwrap_or_default(),
                1 => "A".repeat(rng.random_range(100..5000)).into_bytes(),
                _ => pick(rng, PUNCTUATION).unwrap_or(&",").as_bytes().to_vec(),
            };
            replace(at..at, &insert)
        }
        8 | 9 if !lines.is_empty() => {
            // Lines: delete, duplicate, swap, or take one from another seed.
            let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let i = rng.random_range(0..lines.len());
            match rng.random_range(0..4) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let l = lines[i].clone();
                    let n = rng.random_range(1..4);
                    for _ in 0..n {
                        lines.insert(i, l.clone());
                    }
                }
                2 => {
                    let j = rng.random_range(0..lines.len());
                    lines.swap(i, j);
                }
                _ => {
                    if let Some(other) = pick(rng, &target.seeds) {
                        let other = String::from_utf8_lossy(other).into_owned();
                        let theirs: Vec<&str> = other.split_inclusive('\n').collect();
                        if let Some(l) = pick(rng, &theirs) {
                            lines.insert(i, l.to_string());
                        }
                    }
                }
            }
            lines.concat().into_bytes()
        }
        10 if !text.is_empty() => {
            let cut = toks
                .get(rng.random_range(0..toks.len().max(1)))
                .map_or(0, |(_, r)| r.start);
            text.as_bytes()[..cut].to_vec()
        }
        _ => return,
    };
}

// Protobuf -------------------------------------------------------------------------------------

/// A protobuf field as it is on the wire; length-delimited payloads that parse as messages are
/// kept as messages.
#[derive(Clone, Debug)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Message(Vec<Field>),
    Fixed32(u32),
}

#[derive(Clone, Debug)]
struct Field {
    number: u64,
    value: Wire,
}

fn read_varint(bytes: &[u8], i: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*i)?;
        *i += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn parse_wire(bytes: &[u8], depth: usize) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let key = read_varint(bytes, &mut i)?;
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        let value = match key & 7 {
            0 => Wire::Varint(read_varint(bytes, &mut i)?),
            1 => {
                let b = bytes.get(i..i + 8)?;
                i += 8;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().ok()?))
            }
            2 => {
                let n = usize::try_from(read_varint(bytes, &mut i)?).ok()?;
                let b = bytes.get(i..i.checked_add(n)?)?;
                i += n;
                match (depth < 12 && !b.is_empty())
                    .then(|| parse_wire(b, depth + 1))
                    .flatten()
                {
                    Some(inner) => Wire::Message(inner),
                    None => Wire::Bytes(b.to_vec()),
                }
            }
            5 => {
                let b = bytes.get(i..i + 4)?;
                i += 4;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().ok()?))
            }
            _ => return None,
        };
        fields.push(Field { number, value });
    }
    Some(fields)
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode_wire(fields: &[Field], out: &mut Vec<u8>) {
    for f in fields {
        let wire_type = match f.value {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) | Wire::Message(_) => 2,
            Wire::Fixed32(_) => 5,
        };
        write_varint((f.number << 3) | wire_type, out);
        match &f.value {
            Wire::Varint(v) => write_varint(*v, out),
            Wire::Fixed64(v) => out.extend(v.to_le_bytes()),
            Wire::Fixed32(v) => out.extend(v.to_le_bytes()),
            Wire::Bytes(b) => {
                write_varint(b.len() as u64, out);
                out.extend_from_slice(b);
            }
            Wire::Message(m) => {
                let mut inner = Vec::new();
                encode_wire(m, &mut inner);
                write_varint(inner.len() as u64, out);
                out.extend(inner);
            }
        }
    }
}

fn count_fields(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| {
            1 + match &f.value {
                Wire::Message(m) => count_fields(m),
                _ => 0,
            }
        })
        .sum()
}

/// Calls `f` with the list holding the `n`-th field (depth first) and its index there.
fn with_nth(
    fields: &mut Vec<Field>,
    n: &mut usize,
    f: &mut dyn FnMut(&mut Vec<Field>, usize),
) -> bool {
    for i in 0..fields.len() {
        if *n == 0 {
            f(fields, i);
            return true;
        }
        *n -= 1;
        if let Wire::Message(inner) = &mut fields[i].value
            && with_nth(inner, n, f)
        {
            return true;
        }
    }
    false
}

fn protobuf_mutation(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, target: &Target) {
    let Some(mut fields) = parse_wire(data, 0) else {
        return byte_mutation(data, rng, target);
    };
    let total = count_fields(&fields);
    if total == 0 {
        return byte_mutation(data, rng, target);
    }
    let donor: Option<Field> = pick(rng, &target.seeds)
        .and_then(|s| parse_wire(s, 0))
        .and_then(|mut other| {
            let n = count_fields(&other);
            let mut k = rng.random_range(0..n.max(1));
            let mut found = None;
            with_nth(&mut other, &mut k, &mut |list, i| {
                found = Some(list[i].clone())
            });
            found
        });
    let mut k = rng.random_range(0..total);
    let choice = rng.random_range(0..10);
    let value = interesting(rng);
    let word = pick(rng, &target.dictionary).cloned().unwrap_or_default();
    let cut = rng.random::<u32>() as usize;
    with_nth(&mut fields, &mut k, &mut |list, i| match choice {
        0 => {
            list.remove(i);
        }
        1 => {
            let copy = list[i].clone();
            list.insert(i, copy);
        }
        2 => {
            if let Some(d) = &donor {
                list.insert(i, d.clone());
            }
        }
        _ => match &mut list[i].value {
            Wire::Varint(v) => *v = value,
            Wire::Fixed64(v) => {
                *v = if choice % 2 == 0 {
                    value
                } else {
                    (*pick_float64(value)).to_bits()
                }
            }
            Wire::Fixed32(v) => *v = value as u32,
            Wire::Bytes(b) => match choice % 3 {
                0 => *b = word.clone(),
                1 => b.truncate(cut % (b.len() + 1)),
                _ => b.extend_from_slice(&word),
            },
            Wire::Message(m) => {
                let n = m.len();
                if n > 0 {
                    m.swap(cut % n, value as usize % n);
                }
            }
        },
    });
    let mut out = Vec::new();
    encode_wire(&fields, &mut out);
    *data = out;
}

fn pick_float64(value: u64) -> &'static f64 {
    const FLOATS: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e308,
        1e-310,
    ];
    &FLOATS[value as usize % FLOATS.len()]
}

/// Operators, attribute names and data types an ONNX mutation writes in.
const ONNX_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Relu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Pad",
    "Concat",
    "Gather",
    "Slice",
    "Shape",
    "Unsqueeze",
    "ConstantOfShape",
    "Constant",
    "Identity",
    "Squeeze",
    "ReduceMean",
    "BatchNormalization",
    "Softmax",
    "Cast",
    "Sum",
    "LSTM",
    "Split",
    "Sigmoid",
];
const ONNX_ATTRIBUTES: &[&str] = &[
    "kernel_shape",
    "strides",
    "pads",
    "dilations",
    "group",
    "perm",
    "axis",
    "axes",
    "shape",
    "transB",
    "transA",
    "alpha",
    "beta",
    "value",
    "auto_pad",
    "ceil_mode",
    "keepdims",
    "count_include_pad",
    "min",
    "max",
    "mode",
    "epsilon",
    "starts",
    "ends",
];

/// A structural mutation of an ONNX model: nodes, initializers, attributes, input shapes.
fn onnx_mutation(data: &mut Vec<u8>, rng: &mut ChaCha8Rng, target: &Target) {
    let Ok(mut model) = proto::ModelProto::decode(&data[..]) else {
        return protobuf_mutation(data, rng, target);
    };
    let Some(graph) = model.graph.as_mut() else {
        return protobuf_mutation(data, rng, target);
    };
    let mut names: Vec<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().chain(&n.output).cloned())
        .chain(graph.initializer.iter().map(|t| t.name().to_string()))
        .collect();
    names.push(String::new());
    let value = interesting(rng) as i64;
    match rng.random_range(0..14) {
        0 if !graph.node.is_empty() => {
            let i = rng.random_range(0..graph.node.len());
            graph.node[i].op_type = pick(rng, ONNX_OPS).map(|s| s.to_string());
        }
        1 if !graph.node.is_empty() => {
            // Rewire an input (or add one).
            let i = rng.random_range(0..graph.node.len());
            let name = pick(rng, &names).cloned().unwrap_or_default();
            let node = &mut graph.node[i];
            if node.input.is_empty() || rng.random_bool(0.3) {
                node.input.push(name);
            } else {
                let j = rng.random_range(0..node.input.len());
                node.input[j] = name;
            }
        }
        2 if !graph.node.is_empty() => {
            // An attribute's integers become interesting.
            let i = rng.random_range(0..graph.node.len());
            let node = &mut graph.node[i];
            if node.attribute.is_empty() || rng.random_bool(0.3) {
                let name = pick(rng, ONNX_ATTRIBUTES).unwrap_or(&"axis").to_string();
                let n = rng.random_range(0..9);
                node.attribute.push(proto::AttributeProto {
                    name: Some(name),
                    i: Some(value),
                    ints: (0..n).map(|_| interesting(rng) as i64).collect(),
                    r#type: Some(rng.random_range(0..13)),
                    ..Default::default()
                });
            } else {
                let j = rng.random_range(0..node.attribute.len());
                let a = &mut node.attribute[j];
                if a.ints.is_empty() || rng.random_bool(0.3) {
                    a.i = Some(value);
                    a.f = Some(*pick_float64(value as u64) as f32);
                } else {
                    let k = rng.random_range(0..a.ints.len());
                    a.ints[k] = value;
                }
            }
        }
        3 if !graph.initializer.is_empty() => {
            // Dimensions that disagree with the data, or overflow.
            let i = rng.random_range(0..graph.initializer.len());
            let t = &mut graph.initializer[i];
            if t.dims.is_empty() || rng.random_bool(0.3) {
                t.dims.push(value);
            } else {
                let k = rng.random_range(0..t.dims.len());
                t.dims[k] = value;
            }
        }
        4 if !graph.initializer.is_empty() => {
            let i = rng.random_range(0..graph.initializer.len());
            let t = &mut graph.initializer[i];
            match rng.random_range(0..4) {
                0 => t.data_type = Some(rng.random_range(0..17)),
                1 => {
                    let cut = rng.random_range(0..=t.raw_data().len());
                    if let Some(r) = t.raw_data.as_mut() {
                        r.truncate(cut);
                    }
                }
                2 => {
                    t.float_data = t.raw_data().chunks_exact(4).map(|_| 1.0).collect();
                    t.raw_data = None;
                }
                _ => t.data_location = Some(1),
            }
        }
        5 => {
            // The input's shape.
            if let Some(input) = graph.input.first_mut()
                && let Some(proto::type_proto::Value::TensorType(tt)) =
                    input.r#type.as_mut().and_then(|t| t.value.as_mut())
                && let Some(shape) = tt.shape.as_mut()
            {
                use proto::tensor_shape_proto::dimension::Value as Dim;
                if shape.dim.is_empty() || rng.random_bool(0.2) {
                    shape.dim.push(proto::tensor_shape_proto::Dimension {
                        value: Some(Dim::DimValue(value)),
                        ..Default::default()
                    });
                } else if rng.random_bool(0.2) {
                    shape.dim.pop();
                } else {
                    let k = rng.random_range(0..shape.dim.len());
                    shape.dim[k].value = Some(if rng.random_bool(0.2) {
                        Dim::DimParam("N".into())
                    } else {
                        Dim::DimValue(value)
                    });
                }
            }
        }
        6 if graph.node.len() > 1 => {
            let i = rng.random_range(0..graph.node.len());
            let j = rng.random_range(0..graph.node.len());
            graph.node.swap(i, j);
        }
        7 if !graph.node.is_empty() => {
            let i = rng.random_range(0..graph.node.len());
            if rng.random_bool(0.5) {
                graph.node.remove(i);
            } else {
                // The same node many times over (repeated reads of one initializer).
                let node = graph.node[i].clone();
                let n = rng.random_range(1..64);
                for _ in 0..n {
                    graph.node.insert(i, node.clone());
                }
            }
        }
        8 => {
            if let Some(o) = model.opset_import.first_mut() {
                o.version = Some(rng.random_range(1..22));
            }
        }
        9 if !graph.node.is_empty() => {
            // A shape-arithmetic node producing a constant of interesting shape.
            let i = rng.random_range(0..graph.node.len());
            let dims: Vec<i64> = (0..rng.random_range(1..4))
                .map(|_| interesting(rng) as i64)
                .collect();
            let shape_name = format!("fuzz_shape_{i}");
            let out = graph.node[i].input.first().cloned().unwrap_or_default();
            let new_out = format!("fuzz_out_{i}");
            graph.node.insert(
                i,
                proto::NodeProto {
                    op_type: Some(
                        pick(
                            rng,
                            &["ConstantOfShape", "Reshape", "Gather", "Slice", "Concat"],
                        )
                        .unwrap_or(&"ConstantOfShape")
                        .to_string(),
                    ),
                    input: vec![shape_name.clone(), out],
                    output: vec![new_out],
                    name: Some(format!("fuzz_{i}")),
                    ..Default::default()
                },
            );
            graph.initializer.push(proto::TensorProto {
                name: Some(shape_name),
                dims: vec![dims.len() as i64],
                data_type: Some(proto::tensor_proto::DataType::Int64 as i32),
                int64_data: dims,
                ..Default::default()
            });
        }
        10 if !graph.node.is_empty() => {
            let i = rng.random_range(0..graph.node.len());
            graph.node[i].domain = Some(
                pick(rng, &["", "ai.onnx", "com.microsoft", "ai.onnx.ml"])
                    .unwrap_or(&"")
                    .to_string(),
            );
        }
        11 if !graph.output.is_empty() => {
            let name = pick(rng, &names).cloned().unwrap_or_default();
            graph.output[0].name = Some(name);
        }
        _ => return protobuf_mutation(data, rng, target),
    }
    *data = model.encode_to_vec();
}

// ---------------------------------------------------------------------------------------------
// Running

/// How long and how hard to fuzz.
#[derive(Clone, Debug)]
pub struct Settings {
    pub seed: u64,
    /// Wall time per target.
    pub budget: Duration,
    /// Stop a target after this many inputs, if earlier.
    pub max_inputs: Option<u64>,
    /// An input that takes longer is a hang.
    pub time_limit: Duration,
}

/// An input that made a reader panic, hang, allocate too much, or fail without naming it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub index: u64,
    pub input_bytes: usize,
    pub message: String,
}

/// The outcome of fuzzing one target.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub origin: String,
    pub seed: u64,
    pub inputs: u64,
    pub accepted: u64,
    pub errors: u64,
    pub distinct_errors: usize,
    pub panics: u64,
    pub hangs: u64,
    /// Errors whose message does not contain the input's name.
    pub unnamed_errors: u64,
    pub large_allocations: u64,
    pub largest_allocation_bytes: usize,
    pub slowest_input_ms: f64,
    pub seconds: f64,
    /// The first findings of each kind, to reproduce with [`input`].
    pub findings: Vec<Finding>,
}

impl Report {
    /// No panic, hang, unnamed error or large allocation.
    pub fn clean(&self) -> bool {
        self.panics == 0
            && self.hangs == 0
            && self.unnamed_errors == 0
            && self.large_allocations == 0
    }
}

enum Outcome {
    Accepted,
    Refused(String),
    Panicked(String),
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps worker threads' panics off stderr and records their message and place; other threads'
/// panics go to the hook that was there before.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(WORKER) {
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let place = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{payload}{place}")));
            } else {
                previous(info);
            }
        }));
    });
}

struct Worker {
    inputs: mpsc::Sender<Vec<u8>>,
    outcomes: mpsc::Receiver<Outcome>,
}

impl Worker {
    fn spawn(read: Reader) -> Worker {
        let (inputs, rx) = mpsc::channel::<Vec<u8>>();
        let (tx, outcomes) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(WORKER.into())
            .spawn(move || {
                for input in rx {
                    let outcome = match catch_unwind(AssertUnwindSafe(|| read(&input))) {
                        Ok(Ok(())) => Outcome::Accepted,
                        Ok(Err(message)) => Outcome::Refused(message),
                        Err(_) => Outcome::Panicked(
                            LAST_PANIC
                                .with(|p| p.borrow_mut().take())
                                .unwrap_or_else(|| "(no message)".into()),
                        ),
                    };
                    if tx.send(outcome).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            // Without a worker every input reports as a panic; say why once.
            eprintln!("fuzz: cannot start a worker thread: {e}");
        }
        Worker { inputs, outcomes }
    }
}

/// Fuzzes `target` under `settings`; `progress` is called about once a second with the report
/// so far.
pub fn run(target: &Target, settings: &Settings, mut progress: impl FnMut(&Report)) -> Report {
    install_panic_hook();
    let mut report = Report {
        target: target.name.into(),
        origin: target.origin.clone(),
        seed: settings.seed,
        inputs: 0,
        accepted: 0,
        errors: 0,
        distinct_errors: 0,
        panics: 0,
        hangs: 0,
        unnamed_errors: 0,
        large_allocations: 0,
        largest_allocation_bytes: 0,
        slowest_input_ms: 0.0,
        seconds: 0.0,
        findings: Vec::new(),
    };
    let mut distinct = std::collections::HashSet::new();
    let mut worker = Worker::spawn(target.read.clone());
    let started = Instant::now();
    let mut last_progress = started;
    // The first input of each distinct finding (numbers aside), up to 20.
    let record =
        |report: &mut Report, kind: &'static str, index: u64, input: &[u8], message: String| {
            let known = report
                .findings
                .iter()
                .any(|f| f.kind == kind && without_digits(&f.message) == without_digits(&message));
            if !known && report.findings.len() < 20 {
                report.findings.push(Finding {
                    kind,
                    index,
                    input_bytes: input.len(),
                    message,
                });
            }
        };
    for index in 0.. {
        if started.elapsed() >= settings.budget || settings.max_inputs.is_some_and(|m| index >= m) {
            break;
        }
        let data = input(target, settings.seed, index);
        CURRENT_INPUT.store(index, Ordering::SeqCst);
        LARGEST_ALLOCATION.store(0, Ordering::SeqCst);
        let t0 = Instant::now();
        let outcome = match worker.inputs.send(data.clone()) {
            Ok(()) => worker.outcomes.recv_timeout(settings.time_limit),
            Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
        };
        let elapsed = t0.elapsed();
        report.inputs += 1;
        report.slowest_input_ms = report.slowest_input_ms.max(elapsed.as_secs_f64() * 1e3);
        match outcome {
            Ok(Outcome::Accepted) => report.accepted += 1,
            Ok(Outcome::Refused(message)) => {
                report.errors += 1;
                let named = message.contains(&target.origin)
                    && message.trim().len() > target.origin.len() + 2;
                if !named {
                    report.unnamed_errors += 1;
                    record(&mut report, "unnamed error", index, &data, message.clone());
                }
                // Distinct errors, numbers aside.
                distinct.insert(
                    without_digits(&message)
                        .chars()
                        .take(80)
                        .collect::<String>(),
                );
            }
            Ok(Outcome::Panicked(message)) => {
                report.panics += 1;
                record(&mut report, "panic", index, &data, message);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                report.hangs += 1;
                record(
                    &mut report,
                    "hang",
                    index,
                    &data,
                    format!("no answer within {:?}", settings.time_limit),
                );
                // The stuck worker is left to finish on its own.
                worker = Worker::spawn(target.read.clone());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                report.panics += 1;
                record(
                    &mut report,
                    "panic",
                    index,
                    &data,
                    "the worker thread died".into(),
                );
                worker = Worker::spawn(target.read.clone());
            }
        }
        let largest = LARGEST_ALLOCATION.load(Ordering::SeqCst);
        report.largest_allocation_bytes = report.largest_allocation_bytes.max(largest);
        if largest > ALLOCATION_LIMIT {
            report.large_allocations += 1;
            record(
                &mut report,
                "large allocation",
                index,
                &data,
                format!("allocated {largest} bytes at once"),
            );
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            report.distinct_errors = distinct.len();
            report.seconds = started.elapsed().as_secs_f64();
            progress(&report);
        }
    }
    report.distinct_errors = distinct.len();
    report.seconds = started.elapsed().as_secs_f64();
    report
}

fn without_digits(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// The reports as a table: one row per target.
pub fn table(reports: &[Report]) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>10} {:>10} {:>8} {:>7} {:>6} {:>8} {:>9} {:>10} {:>8}\n",
        "reader",
        "inputs",
        "accepted",
        "errors",
        "kinds",
        "panics",
        "hangs",
        "unnamed",
        "big alloc",
        "slowest ms",
        "seconds"
    );
    out += &"-".repeat(out.len() - 1);
    out.push('\n');
    for r in reports {
        out += &format!(
            "{:<24} {:>10} {:>10} {:>10} {:>8} {:>7} {:>6} {:>8} {:>9} {:>10.1} {:>8.1}\n",
            r.target,
            r.inputs,
            r.accepted,
            r.errors,
            r.distinct_errors,
            r.panics,
            r.hangs,
            r.unnamed_errors,
            r.large_allocations,
            r.slowest_input_ms,
            r.seconds
        );
    }
    for r in reports {
        for f in &r.findings {
            out += &format!(
                "{} {} at input {} ({} bytes): {}\n",
                r.target, f.kind, f.index, f.input_bytes, f.message
            );
        }
    }
    out
}

/// The reports as JSON (`results/fuzz.json`).
pub fn report_json(reports: &[Report], settings: &Settings) -> serde_json::Value {
    serde_json::json!({
        "seed": settings.seed,
        "seconds_per_reader": settings.budget.as_secs_f64(),
        "max_inputs_per_reader": settings.max_inputs,
        "time_limit_per_input_s": settings.time_limit.as_secs_f64(),
        "allocation_limit_bytes": ALLOCATION_LIMIT,
        "not_fuzzed": {"npz": "qsearch has no NPZ reader"},
        "readers": reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_round_trips() {
        let bytes = onnx::export_bytes(&tiny_network());
        let fields = parse_wire(&bytes, 0).unwrap();
        let mut out = Vec::new();
        encode_wire(&fields, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn tokens_cover_the_text() {
        let text = "a = [1, 2.5e3]\n# é\nname = \"x_y\"\n";
        let toks = tokens(text);
        let joined: String = toks.iter().map(|(_, r)| &text[r.clone()]).collect();
        assert_eq!(joined, text);
        assert!(
            toks.iter()
                .any(|(k, r)| *k == Token::Number && &text[r.clone()] == "2.5e3")
        );
    }
}
