//! Deployment end to end on imported networks (a residual network and a depthwise-separable
//! one) with mixed 2/4/8-bit precisions: integerize, generate C, build it with gcc and check
//! every layer of every image against the integer golden model (portable C and the PULP path,
//! emulated, tiled through a small L1); build it for rv32imc and run it
//! on QEMU; export it for DORY and evaluate the export independently; run the PULP path on the
//! CV32E40P RTL, every layer checked. The kernel library builds and agrees on every target.

mod common;

use common::simulator;
use qsearch::deploy::codegen::{generate, test_input_header};
use qsearch::deploy::pulp::{LayerTiling, PulpConfig};
use qsearch::deploy::verify::{cross_check, host_check};
use qsearch::deploy::{DeployError, IntGraph, IntOp, dory, golden, integerize, rtl};
use qsearch::graph::{FusedGraph, Graph, LayerKind, onnx};
use qsearch::quant::{BufferQuant, LayerBits, Quantization};
use qsearch::rtl::SimConfig;
use qsearch::train::Split;
use qsearch::train::qat::ranges;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name);
    onnx::import_file(&path).unwrap()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qsearch-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `count` random images of the network's input shape, CHW (as datasets hold them).
fn random_images(graph: &Graph, count: usize, seed: u64) -> Split {
    let s = graph.input_shape();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Split {
        images: (0..count * s.elements() as usize)
            .map(|_| rng.random_range(0..=255u8))
            .collect(),
        labels: vec![0; count],
        channels: s.c,
        height: s.h,
        width: s.w,
    }
}

/// A quantization cycling through 8, 4 and 2 bits (logits at 8), with bounds calibrated on
/// `calibration`.
fn mixed_quantization(graph: &Graph, calibration: &Split) -> Quantization {
    let fused = FusedGraph::from_graph(graph);
    let r = ranges(graph, &fused, calibration);
    let cycle = [8u32, 4, 2];
    let mut quantization = Quantization {
        layers: fused
            .weighted_layers()
            .enumerate()
            .map(|(i, (_, l))| LayerBits {
                layer: l.name.clone(),
                weight_bits: cycle[i % 3],
            })
            .collect(),
        buffers: fused
            .tensors
            .iter()
            .enumerate()
            .map(|(b, t)| BufferQuant {
                buffer: t.name.clone(),
                // The logits stay at 8 bit so that the predictions still differ.
                bits: if b == fused.output {
                    8
                } else {
                    cycle[(b + 1) % 3]
                },
                bound: r.bound[b].max(1e-3),
                signed: r.signed[b],
            })
            .collect(),
    };
    // A max pooling keeps its input's quantization, as a quantizer does (the maximum of
    // quantized values is one of them; DORY's max pooling cannot rescale).
    for layer in &fused.layers {
        if matches!(layer.kind, LayerKind::MaxPool | LayerKind::GlobalMaxPool) {
            let input = quantization.buffers[layer.inputs[0]].clone();
            quantization.buffers[layer.output] = BufferQuant {
                buffer: quantization.buffers[layer.output].buffer.clone(),
                ..input
            };
        }
    }
    quantization
}

/// Deploys `graph` with mixed precisions and checks every build and the export; returns the
/// integer graph, the generated project's folder and the host program's output.
fn deploys_bit_exact(graph: &Graph, name: &str, requant_bits: u32) -> (IntGraph, PathBuf, String) {
    let calibration = random_images(graph, 32, 1);
    let quantization = mixed_quantization(graph, &calibration);
    let int_graph = integerize(graph, &quantization, requant_bits).unwrap();
    assert!(
        int_graph
            .layers
            .iter()
            .all(|l| l.product_bound < 1i128 << (requant_bits - 1))
    );
    let bits: Vec<u32> = int_graph.tensors.iter().map(|t| t.bits).collect();
    assert!(bits.contains(&2) && bits.contains(&4), "{bits:?}");
    // A small L1, so that the PULP path cuts layers into several tiles.
    let pulp = PulpConfig {
        cores: 8,
        l1_bytes: 2000,
    };
    let project = generate(&int_graph, pulp);
    let tiles = |t: &LayerTiling| match t {
        LayerTiling::Rows { tiles, .. } | LayerTiling::Neurons { tiles, .. } => *tiles,
        LayerTiling::L2 { .. } => 0,
    };
    assert!(
        project.tiling.iter().any(|(_, t)| tiles(t) > 2),
        "{:?}",
        project.tiling
    );
    let dir = temp(name);
    for (file, content) in &project.files {
        std::fs::write(dir.join(file), content).unwrap();
    }
    let test = random_images(graph, 20, 2);
    let images: Vec<Vec<u8>> = (0..test.len()).map(|i| test.image_hwc(i)).collect();
    let mut host_output = String::new();
    for program in ["network", "network_pulp_emu"] {
        let check = host_check(&int_graph, &images, &dir, program).unwrap();
        host_output = check.stdout.clone();
        assert_eq!(
            (check.exact, check.total),
            (20, 20),
            "{program}: {:?}\n{}",
            check.first_mismatch,
            check.stdout
        );
    }
    // At 32-bit requantization the PULP path's blocked kernels are their 32-bit variants, bit-exact
    // on the emulated path above and on the core.
    let network = std::fs::read_to_string(dir.join("network.c")).unwrap();
    assert_eq!(network.contains("_narrow"), requant_bits == 32);
    if let (32, Some(sim)) = (requant_bits, simulator()) {
        rtl::run(sim, &int_graph, &images[..2], &dir, 50_000_000).unwrap();
    }
    // The rv32imc build runs on QEMU and prints the golden model's output.
    std::fs::write(dir.join("test_input.h"), test_input_header(&images[0])).unwrap();
    let cross = cross_check(&int_graph, &images[0], &dir).unwrap();
    pulp_path_type_checks(&dir);
    assert!(cross.text > project.constant_bytes as u64);
    assert_eq!(cross.emulated_exact, Some(true));
    // The golden model is not trivially constant: images give different outputs.
    let outputs: Vec<Vec<i32>> = images
        .iter()
        .map(|im| golden::run(&int_graph, im)[int_graph.output].clone())
        .collect();
    assert!(outputs.iter().any(|o| *o != outputs[0]));
    // The DORY export, read as integers by an independent evaluator, equals the golden model.
    let export = dory::export(&int_graph).unwrap();
    let checked = dory::write_and_check(&int_graph, &export, &images, &dir.join("dory"))
        .unwrap()
        .expect("python3 with onnx (scripts/setup.sh installs python3-onnx)");
    assert_eq!(
        (checked.exact, checked.total),
        (20, 20),
        "{:?} {}",
        checked.first_mismatch,
        checked.summary
    );
    // DORY's golden files: the first image's input and every layer's output, HWC.
    let golden_outputs = golden::run(&int_graph, &images[0]);
    let read = |file: &str| -> Vec<i32> {
        std::fs::read_to_string(dir.join("dory").join(file))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.parse().unwrap())
            .collect()
    };
    assert_eq!(read("input.txt"), golden_outputs[int_graph.input]);
    for (i, layer) in int_graph.layers.iter().enumerate() {
        assert_eq!(
            read(&format!("out_layer{i}.txt")),
            golden_outputs[layer.output]
        );
    }
    let config = std::fs::read_to_string(dir.join("dory/config.json")).unwrap();
    assert!(config.contains("\"BNRelu_bits\": 64"), "{config}");
    (int_graph, dir, host_output)
}

/// Compiles the PULP path's PMSIS branch (`network.c`, `main_pulp.c`) for rv32 against the PMSIS
/// API as the SDKs declare it (tests/fixtures/pmsis), warnings as errors.
fn pulp_path_type_checks(dir: &Path) {
    let stub = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pmsis");
    let out = std::process::Command::new("riscv64-unknown-elf-gcc")
        .args([
            "-march=rv32imc",
            "-mabi=ilp32",
            "--specs=picolibc.specs",
            "-std=gnu99",
        ])
        .arg("-fsyntax-only")
        .args(["-Wall", "-Wextra", "-Werror", "-DQSEARCH_PULP", "-I"])
        .arg(&stub)
        .args(["network.c", "main_pulp.c"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_residual_network_deploys_bit_exact() {
    let graph = fixture("torch_resnet.onnx");
    assert!(graph.nodes.iter().any(|n| n.op.kind() == "add"));
    deploys_bit_exact(&graph, "torch_resnet", 32);
}

/// A name built to escape every output language: it closes C comments and strings, continues
/// lines, spells a trigraph, runs shell commands, holds markup and non-ASCII text.
fn hostile_name(i: usize) -> String {
    format!(
        "{i} */ int injected_{i} = 42; /* \"x\\\" ??/\n$(touch pwned) `id` <script>alert(1)</script> é fc\", \"evil"
    )
}

/// Every node, tensor and the graph itself renamed with [`hostile_name`]s, through an ONNX file,
/// deploys bit-exact: the generated C compiles with -Werror, defines nothing the names spell,
/// and prints the names verbatim.
#[test]
fn hostile_names_stay_data_in_generated_code() {
    let mut graph = fixture("torch_resnet.onnx");
    graph.name = hostile_name(999);
    for (i, node) in graph.nodes.iter_mut().enumerate() {
        node.name = hostile_name(i);
    }
    for (i, tensor) in graph.tensors.iter_mut().enumerate() {
        tensor.name = format!("t{}", hostile_name(i));
    }
    let bytes = onnx::export_bytes(&graph);
    let graph = onnx::import_bytes(&bytes, "hostile.onnx", "hostile").unwrap();
    assert_eq!(graph.nodes[0].name, hostile_name(0));
    let (int_graph, dir, host_output) = deploys_bit_exact(&graph, "hostile", 64);
    // The host program prints every layer's name as the model spells it.
    for layer in &int_graph.layers {
        assert!(layer.name.contains("injected_"), "{}", layer.name);
        assert!(
            host_output.contains(&layer.name),
            "'{}' not printed verbatim in:\n{host_output}",
            layer.name
        );
    }
    // No symbol of the program is defined by a name (the constant arrays carry a layer index
    // and the name's letters as a prefix, nothing more).
    let nm = std::process::Command::new("nm")
        .arg(dir.join("network"))
        .output()
        .unwrap();
    let symbols = String::from_utf8_lossy(&nm.stdout);
    assert!(nm.status.success() && symbols.contains("network_run"));
    let defined: Vec<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert!(
        defined
            .iter()
            .all(|s| !s.starts_with("injected") && !s.starts_with("pwn")),
        "{symbols}"
    );
    assert!(!dir.join("pwned").exists());
}

#[test]
fn a_depthwise_separable_network_deploys_bit_exact() {
    deploys_bit_exact(&fixture("torch_dscnn.onnx"), "torch_dscnn", 64);
}

/// A chain of 27 layers with weights at `weight_bits`: 9 convolutions (3x3, 5x5 stride 2,
/// pointwise, padded or not, channel counts that leave blocks and weight rows that need the
/// scalar fallback), 9 depthwise and 9 linear layers, each kind through every (input, output)
/// pair of activation bits in {2, 4, 8}; every other activation signed. On 13x13 images of 6
/// channels.
fn precision_chain(weight_bits: u32) -> IntGraph {
    use qsearch::deploy::microbench::{Case, case_graph};
    use qsearch::graph::Shape;
    // Every pair of {8, 4, 2} once, each pair starting where the last ended.
    let activations = [8u32, 8, 4, 4, 2, 2, 8, 2, 4, 8];
    // (kind, out_c, kernel, stride, pad) of the convolutions, depthwise and linear layers.
    let convs = [
        (LayerKind::Conv, 6, 3, 1, 1),
        (LayerKind::Conv, 10, 3, 2, 1),
        (LayerKind::Pointwise, 5, 1, 1, 0),
        (LayerKind::Conv, 7, 3, 1, 0),
        (LayerKind::Conv, 6, 5, 2, 2),
        (LayerKind::Pointwise, 9, 1, 1, 0),
        (LayerKind::Conv, 6, 3, 1, 1),
        (LayerKind::Conv, 12, 3, 1, 1),
        (LayerKind::Conv, 8, 3, 1, 1),
    ];
    let mut layers: Vec<(LayerKind, usize, usize, usize, usize)> = convs.to_vec();
    layers.extend((0..9).map(|i| (LayerKind::Depthwise, 8, 3, 1 + (i == 8) as usize, 1)));
    // Window poolings padded and not, strided and not, then the global ones (over 4x4 pixels,
    // then over the one left).
    layers.extend([
        (LayerKind::MaxPool, 8, 3, 1, 1),
        (LayerKind::AvgPool, 8, 3, 2, 1),
        (LayerKind::MaxPool, 8, 2, 1, 0),
        (LayerKind::AvgPool, 8, 2, 1, 1),
        (LayerKind::GlobalAvgPool, 8, 1, 1, 0),
        (LayerKind::GlobalMaxPool, 8, 1, 1, 0),
    ]);
    layers.extend([12, 20, 9, 16, 7, 24, 8, 13, 10].map(|n| (LayerKind::Linear, n, 1, 1, 0)));
    let mut graph = IntGraph {
        name: format!("chain-w{weight_bits}"),
        tensors: Vec::new(),
        layers: Vec::new(),
        input: 0,
        output: 0,
    };
    let mut shape = Shape::new(6, 13, 13);
    for (i, &(kind, out_c, kernel, stride, pad)) in layers.iter().enumerate() {
        let (x, y) = (activations[i % 9], activations[i % 9 + 1]);
        let input = if kind == LayerKind::Linear {
            Shape::new(shape.elements() as usize, 1, 1)
        } else {
            shape
        };
        let case = Case {
            kind,
            input,
            out_c,
            kernel,
            stride,
            pad,
            groups: if kind == LayerKind::Depthwise {
                out_c
            } else {
                1
            },
            bits: (weight_bits, x, y),
        };
        let mut one = case_graph(&case, i as u64);
        let signed = i % 2 == 1;
        if signed {
            let half = 1 << (y - 1);
            one.layers[0].requant.lo = -half;
            one.layers[0].requant.hi = half - 1;
        }
        one.tensors[1].signed = signed;
        one.tensors[1].name = format!("t{}", i + 1);
        if i == 0 {
            graph.tensors.push(one.tensors[0].clone());
        }
        shape = one.tensors[1].shape;
        graph.tensors.push(one.tensors[1].clone());
        let mut layer = one.layers[0].clone();
        layer.name = format!("l{i}");
        layer.inputs = vec![i];
        layer.output = i + 1;
        graph.layers.push(layer);
    }
    graph.output = graph.layers.len();
    graph
}

/// The scratch area the PULP plan gives every blocked layer (each core's, or a linear layer's
/// shared one) equals the kernel's SCRATCH macro, evaluated by the C compiler on the largest share a core computes: ceil(rows / cores)
/// output rows of a tile, of the whole layer when it runs from L2 (all of them on one core where
/// its output rows are not whole bytes). On the host the cores run in turn, so the bit-exact
/// checks would not notice areas that overlap.
fn scratch_is_the_kernels(
    graph: &IntGraph,
    tiling: &[(String, LayerTiling)],
    cores: usize,
    dir: &Path,
) {
    use qsearch::deploy::pulp::{Blocked, blocked_kernel};
    let mut program = String::from(
        "#include <stdio.h>\n#include \"conv_blocked.h\"\n#include \"depthwise.h\"\n\
         #include \"linear_blocked.h\"\nint main(void)\n{\n    conv_shape s;\n    (void)s;\n",
    );
    let mut expected = String::new();
    for (layer, (_, plan)) in graph.layers.iter().zip(tiling) {
        let Some(blocked) = blocked_kernel(graph, layer) else {
            continue;
        };
        let (x, y) = (
            &graph.tensors[layer.inputs[0]],
            &graph.tensors[layer.output],
        );
        let rows = match *plan {
            LayerTiling::Rows { rows, .. } => rows.div_ceil(cores),
            _ if (y.shape.w * y.shape.c * y.bits as usize).is_multiple_of(8) => {
                y.shape.h.div_ceil(cores)
            }
            _ => y.shape.h,
        };
        let macro_call = match (&layer.op, blocked) {
            (IntOp::Conv { window, groups, .. }, _) => {
                let w = window;
                program.push_str(&format!(
                    "    s = (conv_shape){{{}, {}, {}, {}, {rows}, {}, {}, {}, {}, {}, {}, {}, {groups}}};\n",
                    x.shape.c, x.shape.h, x.shape.w, y.shape.c, y.shape.w, w.kernel[0],
                    w.kernel[1], w.stride[0], w.stride[1], w.padding.top, w.padding.left
                ));
                if blocked == Blocked::Depthwise {
                    "QK_DEPTHWISE_SCRATCH(&s)".to_string()
                } else {
                    "QK_CONV_BLOCKED_SCRATCH(&s)".to_string()
                }
            }
            (IntOp::Linear { .. }, _) => {
                format!("QK_LINEAR_BLOCKED_SCRATCH({})", x.shape.elements())
            }
            // The poolings need none.
            _ => "0".to_string(),
        };
        program.push_str(&format!("    printf(\"%d\\n\", (int)({macro_call}));\n"));
        expected.push_str(&format!("{}\n", plan.scratch().bytes));
    }
    program.push_str("    return 0;\n}\n");
    std::fs::write(dir.join("scratch.c"), program).unwrap();
    let built = Command::new("gcc")
        .args([
            "-std=gnu99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            "scratch",
            "scratch.c",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    succeeded(built, "scratch.c");
    let printed = succeeded(
        Command::new(dir.join("scratch")).output().unwrap(),
        "scratch",
    );
    assert_eq!(printed, expected);
}

/// Every precision triple the search may choose, signed and unsigned inputs, leftover channels
/// and pixels, stride 2 and padding, and the poolings, go through the PULP path's blocked kernels (or their scalar
/// fallback) bit-exact: on the host, emulated with a small L1 (tiles, per-core scratch), and on
/// the CV32E40P; the generated code instantiates the blocked kernels for every layer.
#[test]
fn every_precision_triple_runs_bit_exact_on_the_blocked_kernels() {
    use qsearch::deploy::pulp::blocked_kernel;
    for weight_bits in [8, 4, 2] {
        let graph = precision_chain(weight_bits);
        assert!(
            graph
                .layers
                .iter()
                .all(|l| blocked_kernel(&graph, l).is_some())
        );
        let project = generate(
            &graph,
            PulpConfig {
                cores: 8,
                l1_bytes: 2000,
            },
        );
        let dir = temp(&format!("chain-w{weight_bits}"));
        for (file, content) in &project.files {
            std::fs::write(dir.join(file), content).unwrap();
        }
        let network = std::fs::read_to_string(dir.join("network.c")).unwrap();
        for op in [
            "QK_CONV_BLOCKED(",
            "QK_DEPTHWISE(",
            "QK_LINEAR_BLOCKED(",
            "QK_MAXPOOL_BLOCKED(",
            "QK_AVGPOOL_BLOCKED(",
            "QK_GLOBALAVGPOOL_BLOCKED(",
            "QK_GLOBALMAXPOOL_BLOCKED(",
        ] {
            assert!(network.contains(op), "{op} missing");
        }
        scratch_is_the_kernels(&graph, &project.tiling, 8, &dir);
        let mut rng = ChaCha8Rng::seed_from_u64(u64::from(weight_bits));
        let images: Vec<Vec<u8>> = (0..3)
            .map(|_| {
                (0..6 * 13 * 13)
                    .map(|_| rng.random_range(0..=255u8))
                    .collect()
            })
            .collect();
        for program in ["network", "network_pulp_emu"] {
            let check = host_check(&graph, &images, &dir, program).unwrap();
            assert_eq!(
                (check.exact, check.total),
                (3, 3),
                "w{weight_bits} {program}: {:?}",
                check.first_mismatch
            );
        }
        if let Some(sim) = simulator() {
            let run = rtl::run(sim, &graph, &images[..1], &dir, 50_000_000).unwrap();
            assert_eq!(run.layers.len(), graph.layers.len());
        }
    }
}

/// Zoo networks with what the fixtures lack: strided and projected residual stacks (resnet8),
/// an asymmetric 10x4 stride-2 first layer on a 49x10 input, so rows of odd sizes (ds-cnn), and
/// ReLU6 with residual sums that stay signed (mobilenet-v2).
#[test]
fn zoo_networks_deploy_bit_exact() {
    for (spec, requant_bits) in [
        ("resnet8", 64),
        ("ds-cnn", 32),
        ("mobilenet-v2:width=0.35,resolution=32,classes=10", 64),
    ] {
        let graph = qsearch::graph::zoo::build(spec).unwrap();
        let (int_graph, ..) =
            deploys_bit_exact(&graph, spec.split(':').next().unwrap(), requant_bits);
        if spec.starts_with("mobilenet") {
            // Signed activations feed layers (the sdotsp4 lanes), not only the logits.
            assert!(int_graph.layers.iter().any(|l| {
                l.inputs.iter().any(|&t| int_graph.tensors[t].signed)
                    && matches!(l.op, IntOp::Conv { .. })
            }));
        }
    }
}

#[test]
fn microbenchmarks_count_kernel_instructions_on_qemu() {
    use qsearch::deploy::microbench::{case_graph, grid, run_on_qemu, write_bench};
    let case = grid().into_iter().next().unwrap();
    let dir = temp("microbench");
    let pulp = PulpConfig {
        cores: 1,
        l1_bytes: 0,
    };
    write_bench(&case_graph(&case, 0), &case.row(), &dir, 0, pulp).unwrap();
    let row = run_on_qemu(&dir).unwrap();
    assert!(row.starts_with(&case.row()), "{row}");
    let count: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
    // At least a few instructions per multiply-accumulate (8x8x8 -> 16, 3x3, padded).
    let macs = (16 * 8 * 8 * 8 * 9) as f64;
    assert!(count > 3.0 * macs && count < 30.0 * macs, "{count}");
    // -icount makes the count exact: a second run gives the same figure.
    assert_eq!(run_on_qemu(&dir).unwrap(), row);
}

/// A small network with what Deeploy's frontend must read: a 3x3 convolution, depthwise and
/// pointwise convolutions, a residual add whose sum stays signed and one followed by ReLU, max
/// and average pooling, a strided depthwise convolution, global average pooling and a linear
/// layer; on 16x16 images of `channels` channels.
fn residual_depthwise_network(channels: usize) -> Graph {
    use qsearch::graph::{
        Activation, BatchNorm, Conv, GraphBuilder, Linear, Op, PoolKind, Shape, Window,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut b = GraphBuilder::new("residual-depthwise", "input", Shape::new(channels, 16, 16));
    let mut conv = |b: &mut GraphBuilder,
                    name: &str,
                    x,
                    out: usize,
                    window: Window,
                    groups: usize,
                    relu: bool| {
        let fan_in = b.shape(x).c / groups * window.kernel[0] * window.kernel[1];
        let bound = (6.0 / fan_in as f32).sqrt();
        let op = Op::Conv(Conv {
            out_channels: out,
            window,
            groups,
            weight: (0..out * fan_in)
                .map(|_| rng.random_range(-bound..bound))
                .collect(),
            bias: (0..out).map(|_| rng.random_range(-0.1..0.1)).collect(),
        });
        let y = b.add(name, op, &[x]).unwrap();
        let y = b
            .add(
                &format!("{name}.bn"),
                Op::BatchNorm(BatchNorm::identity(out)),
                &[y],
            )
            .unwrap();
        if relu {
            b.add(
                &format!("{name}.relu"),
                Op::Activation(Activation::Relu),
                &[y],
            )
            .unwrap()
        } else {
            y
        }
    };
    let x = b.input();
    let stem = conv(&mut b, "stem", x, 16, Window::square(3, 1, 1), 1, true);
    let dw = conv(
        &mut b,
        "block1.dw",
        stem,
        16,
        Window::square(3, 1, 1),
        16,
        true,
    );
    let pw = conv(
        &mut b,
        "block1.pw",
        dw,
        16,
        Window::square(1, 1, 0),
        1,
        false,
    );
    let sum = b.add("block1.add", Op::Add, &[stem, pw]).unwrap();
    let dw = conv(
        &mut b,
        "block2.dw",
        sum,
        16,
        Window::square(3, 1, 1),
        16,
        true,
    );
    let pw = conv(
        &mut b,
        "block2.pw",
        dw,
        16,
        Window::square(1, 1, 0),
        1,
        false,
    );
    let sum = b.add("block2.add", Op::Add, &[sum, pw]).unwrap();
    let sum = b
        .add("block2.relu", Op::Activation(Activation::Relu), &[sum])
        .unwrap();
    let pooled = b
        .add(
            "maxpool",
            Op::Pool {
                kind: PoolKind::Max,
                window: Window::square(2, 2, 0),
            },
            &[sum],
        )
        .unwrap();
    let dw = conv(
        &mut b,
        "block3.dw",
        pooled,
        16,
        Window::square(3, 2, 1),
        16,
        true,
    );
    let pw = conv(
        &mut b,
        "block3.pw",
        dw,
        32,
        Window::square(1, 1, 0),
        1,
        true,
    );
    let avg = b
        .add(
            "avgpool",
            Op::Pool {
                kind: PoolKind::Average,
                window: Window::square(2, 2, 0),
            },
            &[pw],
        )
        .unwrap();
    let gap = b
        .add("gap", Op::GlobalPool(PoolKind::Average), &[avg])
        .unwrap();
    let flat = b.add("flatten", Op::Flatten, &[gap]).unwrap();
    let fc_in = b.shape(flat).elements() as usize;
    let fc = Op::Linear(Linear {
        out_features: 10,
        weight: (0..10 * fc_in)
            .map(|_| rng.random_range(-0.3..0.3))
            .collect(),
        bias: (0..10).map(|_| rng.random_range(-0.1..0.1)).collect(),
    });
    let y = b.add("fc", fc, &[flat]).unwrap();
    b.finish(y).unwrap()
}

/// The Deeploy export of a residual and depthwise network with mixed 2/4/8 bits: Deeploy
/// (deeploy-pulp 0.2.1, installed into the project venv by scripts/setup.sh) generates C for
/// PULP-open and Generic, and every requantization, weight tensor and window it read equals the
/// integer graph's. With QSEARCH_DEEPLOY_SOURCE naming a checkout of Deeploy's repository (at
/// v0.2.1), the Generic C is also built on the host against its TargetLibraries/Generic and
/// run on test images, and its logits must equal the golden model's.
#[test]
fn deeploy_generates_the_integer_graph() {
    use qsearch::deploy::deeploy::{self, Target};
    let graph = residual_depthwise_network(3);
    let calibration = random_images(&graph, 32, 1);
    let quantization = mixed_quantization(&graph, &calibration);
    let int_graph = integerize(&graph, &quantization, 32).unwrap();
    let bits: Vec<u32> = int_graph.tensors.iter().map(|t| t.bits).collect();
    assert!(
        bits.contains(&2) && bits.contains(&4) && bits.contains(&8),
        "{bits:?}"
    );
    let exports: Vec<_> = Target::ALL
        .iter()
        .map(|&t| (t, deeploy::export(&int_graph, t, false).unwrap()))
        .collect();
    // Sub-byte layers are carried in bytes, and say so; strict mode refuses them.
    assert!(exports[0].1.layers.iter().any(|l| !l.carried.is_empty()));
    let strict = deeploy::export(&int_graph, Target::PulpOpen, true)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(strict.contains("--deeploy-strict"), "{strict}");
    // A network at 64-bit requantization products is refused with the fix named.
    let wide = integerize(&graph, &quantization, 64).unwrap();
    let refused = deeploy::export(&wide, Target::Generic, false)
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("--requant-bits 32"), "{refused}");

    let dir = temp("deeploy").join("deeploy");
    deeploy::write(&exports, &dir).unwrap();
    let check = deeploy::generate_and_check(&int_graph, &dir)
        .unwrap()
        .expect("the project venv with deeploy-pulp (scripts/setup.sh installs it)");
    assert_eq!(check.version.as_deref(), Some(deeploy::DEEPLOY_VERSION));
    for t in &check.targets {
        assert!(t.ok(), "{}\n{:#?}", t.summary(), t.mismatches);
        assert!(dir.join(t.target.name()).join("Network.c").exists());
    }
    let ops = |t: usize, op: &str| check.targets[t].ops.get(op).copied().unwrap_or(0);
    // PULP-open fuses every convolution, linear layer and residual add with its
    // requantization; Generic runs them as written.
    let convs = int_graph
        .layers
        .iter()
        .filter(|l| {
            matches!(
                l.op,
                IntOp::Conv { .. } | IntOp::AvgPool { .. } | IntOp::GlobalAvgPool
            )
        })
        .count();
    let adds = int_graph
        .layers
        .iter()
        .filter(|l| matches!(l.op, IntOp::Add { .. }))
        .count();
    assert_eq!(ops(0, "RequantizedConv"), convs);
    assert_eq!(ops(0, "RequantizedGemm"), 1);
    assert_eq!(ops(0, "RequantizedAdd"), adds);
    assert_eq!(
        (ops(1, "Conv"), ops(1, "Gemm"), ops(1, "Add")),
        (convs, 1, adds)
    );
    for t in &check.targets {
        eprintln!("{}", t.summary());
        assert!(t.compared >= int_graph.layers.len(), "{}", t.summary());
    }

    if let Some(source) = std::env::var_os("QSEARCH_DEEPLOY_SOURCE") {
        let test = random_images(&graph, 200, 2);
        let exact = generic_host_run(&int_graph, &test, &dir, Path::new(&source));
        assert_eq!(exact, (200, 200));
    }
}

/// Builds Deeploy's Generic C in `dir/Generic` on the host against the `TargetLibraries/Generic`
/// of the Deeploy checkout `source` (as a static library, as its CMake build does), runs it on
/// `test` and returns the images whose logits equal the golden model's, of those run.
fn generic_host_run(
    int_graph: &IntGraph,
    test: &Split,
    dir: &Path,
    source: &Path,
) -> (usize, usize) {
    let lib = source.join("TargetLibraries/Generic");
    let build = dir.join("Generic/host");
    std::fs::create_dir_all(&build).unwrap();
    let gcc = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("gcc")
            .args([
                "-O2",
                "-std=gnu11",
                "-DDEEPLOY_GENERIC_PLATFORM",
                "-include",
                "math.h",
                "-I",
            ])
            .arg(lib.join("inc"))
            .args(args)
            .current_dir(&build)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut objects = Vec::new();
    for src in std::fs::read_dir(lib.join("src")).unwrap() {
        let src = src.unwrap().path();
        let object = build.join(src.file_stem().unwrap()).with_extension("o");
        gcc(&[
            "-c".as_ref(),
            src.as_os_str(),
            "-o".as_ref(),
            object.as_os_str(),
        ]);
        objects.push(object);
    }
    let ar = Command::new("ar")
        .arg("rcs")
        .arg(build.join("libdeeploybasic.a"))
        .args(&objects)
        .status();
    assert!(ar.unwrap().success());
    // The input is int8, the bytes shifted by 128, NCHW; the logits are int8.
    std::fs::write(
        build.join("main.c"),
        r#"#include <stdint.h>
#include <stdio.h>
#include "Network.h"
int main(void) {
  static uint8_t image[1 << 20];
  InitNetwork(0, 1);
  while (fread(image, 1, DeeployNetwork_inputs_bytes[0], stdin) == DeeployNetwork_inputs_bytes[0]) {
    for (uint32_t i = 0; i < DeeployNetwork_inputs_bytes[0]; i++)
      ((int8_t *)DeeployNetwork_inputs[0])[i] = (int8_t)(image[i] - 128);
    RunNetwork(0, 1);
    fwrite(DeeployNetwork_outputs[0], 1, DeeployNetwork_outputs_bytes[0], stdout);
  }
  return 0;
}
"#,
    )
    .unwrap();
    let network = dir.join("Generic");
    gcc(&[
        "-I".as_ref(),
        network.as_os_str(),
        network.join("Network.c").as_os_str(),
        "main.c".as_ref(),
        "-L.".as_ref(),
        "-ldeeploybasic".as_ref(),
        "-lm".as_ref(),
        "-o".as_ref(),
        "network".as_ref(),
    ]);
    let s = test.image_hwc(0).len() / test.channels;
    let mut input = Vec::new();
    for i in 0..test.len() {
        let hwc = test.image_hwc(i);
        input.extend(
            (0..test.channels)
                .flat_map(|c| (0..s).map(move |p| (c, p)))
                .map(|(c, p)| hwc[p * test.channels + c]),
        );
    }
    std::fs::write(build.join("images.bin"), &input).unwrap();
    let run = Command::new(build.join("network"))
        .stdin(std::fs::File::open(build.join("images.bin")).unwrap())
        .output()
        .unwrap();
    assert!(run.status.success());
    let n_out = int_graph.tensors[int_graph.output].shape.elements() as usize;
    let exact = run
        .stdout
        .chunks(n_out)
        .enumerate()
        .filter(|(i, logits)| {
            let golden = &golden::run(int_graph, &test.image_hwc(*i))[int_graph.output];
            logits
                .iter()
                .zip(golden)
                .all(|(&a, &b)| i32::from(a as i8) == b)
        })
        .count();
    (exact, run.stdout.len() / n_out)
}

/// The residual and depthwise network with mixed 2/4/8 bits, deployed with a small L1 (tiles),
/// runs on the CV32E40P bit-exact at every layer of every image, with each layer's cycles; a
/// difference from the golden model is caught, naming the image, the layer and the byte.
#[test]
fn a_residual_depthwise_network_runs_bit_exact_on_the_rtl() {
    let Some(sim) = simulator() else { return };
    let graph = residual_depthwise_network(3);
    let calibration = random_images(&graph, 32, 1);
    let quantization = mixed_quantization(&graph, &calibration);
    let int_graph = integerize(&graph, &quantization, 64).unwrap();
    let bits: Vec<u32> = int_graph.tensors.iter().map(|t| t.bits).collect();
    assert!(
        bits.contains(&2) && bits.contains(&4) && bits.contains(&8),
        "{bits:?}"
    );
    let project = generate(
        &int_graph,
        PulpConfig {
            cores: 8,
            l1_bytes: 3000,
        },
    );
    let dir = temp("rtl");
    for (file, content) in &project.files {
        std::fs::write(dir.join(file), content).unwrap();
    }
    let test = random_images(&graph, 2, 2);
    let images: Vec<Vec<u8>> = (0..test.len()).map(|i| test.image_hwc(i)).collect();
    let started = std::time::Instant::now();
    let run = rtl::run(sim, &int_graph, &images, &dir, 50_000_000).unwrap();
    eprintln!(
        "{} cycles simulated in {:.1} s",
        run.simulated_cycles,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(run.images, 2);
    assert_eq!(run.layers.len(), int_graph.layers.len());
    for layer in &run.layers {
        assert_eq!((layer.core.len(), layer.dma.len()), (2, 2), "{layer:?}");
        assert!(layer.core.iter().all(|&c| c > 0), "{layer:?}");
    }
    // Tiled layers copy their tiles; the copies are counted apart from the layer's computation.
    assert!(run.layers.iter().any(|l| l.dma[0] > 0));

    // Checked against a golden model whose first layer's biases saturate its outputs, the same
    // program must fail there, naming the image, the layer and the byte.
    let mut saturated = int_graph.clone();
    if let IntOp::Conv { bias, .. } = &mut saturated.layers[0].op {
        bias.iter_mut().for_each(|b| *b += 1 << 24);
    }
    let err = rtl::run(sim, &saturated, &images[..1], &dir, 50_000_000).unwrap_err();
    let DeployError::RtlMismatch { image, layer, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        (*image, layer.as_str()),
        (0, int_graph.layers[0].name.as_str()),
        "{err}"
    );
    assert!(err.to_string().contains("from byte"), "{err}");
}

/// What a build of `kernels/check.c` printed: its checksum line.
fn checksum_line(printed: &str) -> String {
    printed
        .lines()
        .find(|l| l.starts_with("checksum "))
        .unwrap_or_else(|| panic!("no checksum in {printed}"))
        .to_string()
}

fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&[&out.stdout[..], &out.stderr[..]].concat()).into_owned()
}

/// The kernel library (kernels/) compiles without a warning for every target that exists here
/// and its kernels compute the same on each: the host portably (gcc -std=c99 -pedantic) and
/// with the PULP path emulated, rv32imc (riscv64-unknown-elf-gcc, run on QEMU), the PMSIS build
/// against the SDK's declarations (a syntax check: the SDK's GCC with QK_PULP_BUILTINS is not
/// installed here) and the CV32E40P with clang-19 (run on the RTL).
#[test]
fn the_kernel_library_builds_and_agrees_on_every_target() {
    let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let check = kernels.join("check.c");
    let dir = temp("kernels");
    let warnings = ["-Wall", "-Wextra", "-Werror"];
    let mut checksums = Vec::new();
    for (name, flags) in [
        ("portable", &["-std=c99", "-pedantic"][..]),
        (
            "pulp-emulated",
            &["-std=gnu99", "-DQSEARCH_PULP", "-DQSEARCH_PULP_EMULATED"][..],
        ),
    ] {
        let exe = dir.join(name);
        let built = Command::new("gcc")
            .args(["-O2"])
            .args(warnings)
            .args(flags)
            .arg(&check)
            .arg("-o")
            .arg(&exe)
            .output()
            .unwrap();
        succeeded(built, name);
        let printed = succeeded(Command::new(&exe).output().unwrap(), name);
        checksums.push((name, checksum_line(&printed)));
    }

    let elf = dir.join("check-rv32imc.elf");
    let built = Command::new("riscv64-unknown-elf-gcc")
        .args(["-march=rv32imc", "-mabi=ilp32", "-Os", "-std=c99"])
        .args(warnings)
        .args([
            "--specs=picolibc.specs",
            "--oslib=semihost",
            "--crt0=semihost",
        ])
        .arg(&check)
        .arg("-o")
        .arg(&elf)
        .args([
            "-Wl,--defsym=__flash=0x80000000",
            "-Wl,--defsym=__flash_size=0x400000",
            "-Wl,--defsym=__ram=0x80400000",
            "-Wl,--defsym=__ram_size=0x100000",
        ])
        .output()
        .unwrap();
    succeeded(built, "rv32imc");
    let qemu = Command::new("qemu-system-riscv32")
        .args([
            "-machine",
            "virt",
            "-cpu",
            "rv32",
            "-bios",
            "none",
            "-nographic",
        ])
        .args(["-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on", "-kernel"])
        .arg(&elf)
        .output()
        .unwrap();
    checksums.push(("rv32imc", checksum_line(&succeeded(qemu, "QEMU"))));

    let stub = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pmsis");
    let pmsis = Command::new("riscv64-unknown-elf-gcc")
        .args(["-march=rv32imc", "-mabi=ilp32", "--specs=picolibc.specs"])
        .args(["-std=gnu99", "-fsyntax-only", "-DQSEARCH_PULP", "-I"])
        .arg(&stub)
        .args(warnings)
        .arg(&check)
        .output()
        .unwrap();
    succeeded(pmsis, "PMSIS");
    eprintln!("not built: the PULP/GAP SDK's GCC (QK_PULP_BUILTINS) is not installed here");

    if let Some(sim) = simulator() {
        // Rtl::compile takes no defines: a wrapper source sets the CV32E40P build's.
        let wrapper = dir.join("check_cv32e40p.c");
        std::fs::write(
            &wrapper,
            format!(
                "#define QSEARCH_PULP 1\n#define QSEARCH_PULP_BAREMETAL 1\n#define QK_CV32E40P 1\n#include \"{}\"\n",
                check.display()
            ),
        )
        .unwrap();
        let elf = dir.join("check-cv32e40p.elf");
        sim.compile(&[&wrapper, &kernels.join("freestanding.c")], &elf)
            .unwrap();
        let out = sim.run(&elf, &SimConfig::default()).unwrap();
        assert_eq!(out.exit_code, 0, "{}", out.stdout);
        checksums.push(("cv32e40p", checksum_line(&out.stdout)));
    }
    assert!(
        checksums.iter().all(|(_, c)| *c == checksums[0].1),
        "{checksums:?}"
    );
}

/// An IDX dataset (MNIST's format) of random 16x16 images in `dir`: `test` test images, 2 to train.
fn idx_dataset(dir: &Path, test: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (prefix, count) in [("train", 2u32), ("t10k", test as u32)] {
        let mut images = [0x0803u32, count, 16, 16]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>();
        images.extend((0..count * 256).map(|_| rng.random_range(0..=255u8)));
        let mut labels = [0x0801u32, count]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>();
        labels.extend((0..count).map(|_| rng.random_range(0..10u8)));
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// `qsearch deploy`'s flow on the residual and depthwise network (one input channel, mixed
/// 2/4/8 bits) with its RTL stage: every layer of two images bit-exact on the CV32E40P, the
/// per-layer table next to the cost model and `rtl.json`; with `--no-rtl` (no RTL images) the
/// stage is not run and says so. Where the simulator's tools are missing, the stage says so in
/// one line and the deploy goes on.
#[test]
fn the_deploy_flow_runs_the_rtl_stage_unless_told_not_to() {
    use qsearch::flow::{DeploySettings, deploy};
    let graph = residual_depthwise_network(1);
    let calibration = random_images(&graph, 16, 1);
    let quantization = mixed_quantization(&graph, &calibration);
    let dir = temp("flow-rtl");
    let finetuned = dir.join("finetuned");
    std::fs::create_dir_all(&finetuned).unwrap();
    onnx::export_file(&graph, &finetuned.join("quantized.onnx")).unwrap();
    std::fs::write(
        finetuned.join("quantization.json"),
        serde_json::to_string(&quantization).unwrap(),
    )
    .unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    idx_dataset(&data, 8);
    let settings = |rtl_images| DeploySettings {
        platform: "gap8".into(),
        data: data.display().to_string(),
        verify_images: 4,
        agreement_images: 8,
        assignment: None,
        requant_bits: 64,
        deeploy_strict: false,
        rtl_images,
    };

    let out = dir.join("deploy");
    let report = deploy(&finetuned, &settings(Some(2)), &out).unwrap();
    assert_eq!(report.bit_exact, (4, 4), "{}", report.text);
    match (simulator(), &report.rtl) {
        (Some(_), Some(run)) => {
            assert_eq!(run.images, 2);
            assert!(
                report.text.contains("2 images bit-exact at every layer")
                    && report.text.contains("core / model"),
                "{}",
                report.text
            );
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("rtl.json")).unwrap())
                    .unwrap();
            let layers = json["layers"].as_array().unwrap();
            assert_eq!(layers.len(), run.layers.len());
            assert!(
                layers
                    .iter()
                    .all(|l| l["predicted_one_core_cycles"].as_f64() > Some(0.0))
            );
        }
        (None, None) => assert!(
            report.text.contains("CV32E40P RTL stage: skipped: "),
            "{}",
            report.text
        ),
        (sim, run) => panic!("simulator {:?}, run {:?}", sim.is_some(), run.is_some()),
    }

    let out = dir.join("deploy-no-rtl");
    let report = deploy(&finetuned, &settings(None), &out).unwrap();
    assert!(report.rtl.is_none());
    assert!(
        report.text.contains("CV32E40P RTL stage: not run"),
        "{}",
        report.text
    );
    assert!(!out.join("rtl.json").exists());
}
