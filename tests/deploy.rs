//! Deployment end to end on imported networks (a residual network and a depthwise-separable
//! one) with mixed 2/4/8-bit precisions: integerize, generate C, build it with gcc and check
//! every layer of every image against the integer golden model (portable C and the PULP path,
//! emulated, tiled through a small L1); build it for rv32imc and run it
//! on QEMU; export it for DORY and evaluate the export independently.

use qsearch::deploy::codegen::{generate, test_input_header};
use qsearch::deploy::pulp::{LayerTiling, PulpConfig};
use qsearch::deploy::verify::{cross_check, host_check};
use qsearch::deploy::{IntGraph, IntOp, dory, golden, integerize};
use qsearch::graph::{FusedGraph, Graph, onnx};
use qsearch::train::Split;
use qsearch::train::qat::{BufferQuant, LayerBits, Quantization, ranges};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

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
    Quantization {
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
    }
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
        LayerTiling::L2 => 0,
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
    assert_eq!(export.wide_layers.is_empty(), requant_bits == 32);
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
