//! Training with burn: the models agree with the IR's reference interpreter, fake quantization
//! computes the quantization formula and lets gradients through, a small network learns, and a
//! resumed run ends where an uninterrupted one does.

use burn::prelude::*;
use qsearch::graph::{FusedGraph, eval, onnx, zoo};
use qsearch::precision::Bits;
use qsearch::quant::signed_levels;
use qsearch::train::model::{fake_quant_activation, fake_quant_weight};
use qsearch::train::{Checkpoint, GraphNet, TrainConfig, data, fit, training_device};
use std::path::PathBuf;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qsearch-train-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn burn_models_compute_what_the_reference_interpreter_computes() {
    let device = training_device();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let mut graphs = vec![
        zoo::build("fashion-cnn").unwrap(),
        zoo::build("resnet8").unwrap(),
    ];
    for name in ["torch_dscnn", "separate_bn", "legacy_opset9"] {
        graphs.push(onnx::import_file(&fixtures.join(format!("{name}.onnx"))).unwrap());
    }
    for graph in graphs {
        let s = graph.input_shape();
        let input: Vec<f32> = (0..s.elements())
            .map(|i| ((i * 7919 % 97) as f32) / 97.0)
            .collect();
        let reference = eval::run(&graph, &input).unwrap();
        let net = GraphNet::new(&graph, &device).valid();
        let x = Tensor::from_data(TensorData::new(input, [1, s.c, s.h, s.w]), &device);
        let got = values(net.forward(x));
        let want = &reference[graph.output];
        // The reference keeps softmax; the burn model returns logits.
        let want: Vec<f32> = if graph.nodes.last().unwrap().op.kind() == "softmax" {
            reference[graph.nodes.last().unwrap().inputs[0]].clone()
        } else {
            want.clone()
        };
        assert_eq!(got.len(), want.len(), "{}", graph.name);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-3 * (1.0 + w.abs()),
                "{}: {g} vs {w}",
                graph.name
            );
        }
    }
}

#[test]
fn fake_quantization_is_the_quantization_formula() {
    let device = training_device();
    // Two output channels of three weights.
    let w = [0.9f32, -0.2, 0.05, -1.5, 0.7, 0.1];
    for bits in Bits::ALL {
        let t = Tensor::<2>::from_data(TensorData::new(w.to_vec(), [2, 3]), &device);
        let got = values(fake_quant_weight(t, bits));
        let levels = signed_levels(bits.count()) as f32;
        for c in 0..2 {
            let row = &w[3 * c..3 * c + 3];
            let scale = row.iter().fold(0.0f32, |m, x| m.max(x.abs())) / levels;
            for k in 0..3 {
                let expected = (row[k] / scale + 0.5).floor().clamp(-levels, levels) * scale;
                assert!(
                    (got[3 * c + k] - expected).abs() < 1e-6,
                    "{bits}-bit weight {c},{k}: {} vs {expected}",
                    got[3 * c + k]
                );
            }
        }
    }
    // Activations: unsigned over [0, bound], signed over [-bound, bound].
    let x = [-0.5f32, 0.1, 0.33, 0.8, 1.7];
    let bound = 1.2f32;
    for (bits, signed) in [
        (Bits::B2, false),
        (Bits::B4, false),
        (Bits::B8, true),
        (Bits::B4, true),
    ] {
        let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [1, 1, 1, 5]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(vec![bound], [1]), &device);
        let got = values(fake_quant_activation(t, b, bits, signed));
        let (lo, levels) = if signed {
            (-bound, signed_levels(bits.count()) as f32)
        } else {
            (0.0, ((1u32 << bits.count()) - 1) as f32)
        };
        let scale = bound / levels;
        for (k, &v) in x.iter().enumerate() {
            let expected = (v.clamp(lo, bound) / scale + 0.5).floor() * scale;
            assert!(
                (got[k] - expected).abs() < 1e-6,
                "{bits}-bit activation {v}: {} vs {expected}",
                got[k]
            );
        }
    }
}

#[test]
fn gradients_pass_straight_through() {
    let device = training_device();
    let w = Tensor::<2>::from_data(
        TensorData::new(vec![0.3f32, -0.8, 0.05, 0.6], [2, 2]),
        &device,
    )
    .require_grad();
    let grads = fake_quant_weight(w.clone(), Bits::B2).sum().backward();
    assert_eq!(values(w.grad(&grads).unwrap()), vec![1.0; 4]);

    let x = Tensor::<4>::from_data(
        TensorData::new(vec![-0.5f32, 0.2, 0.9, 2.0], [1, 1, 1, 4]),
        &device,
    )
    .require_grad();
    let bound = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device).require_grad();
    let grads = fake_quant_activation(x.clone(), bound.clone(), Bits::B4, false)
        .sum()
        .backward();
    // Inside the clipping range the gradient is 1, outside 0; the bound collects the clipped one.
    assert_eq!(values(x.grad(&grads).unwrap()), vec![0.0, 1.0, 1.0, 0.0]);
    assert_eq!(values(bound.grad(&grads).unwrap()), vec![1.0]);
}

fn small_data() -> data::Dataset {
    let d = data::load("fashion-mnist")
        .expect("Fashion-MNIST (scripts/setup.sh installs dataset-fashion-mnist)");
    data::Dataset {
        train: d.train.take(1024),
        test: d.test.take(256),
        ..d
    }
}

#[test]
fn a_small_network_learns() {
    let dataset = small_data();
    let graph = zoo::build("fashion-cnn:width=0.5").unwrap();
    let device = training_device();
    let net = GraphNet::new(&graph, &device);
    let (before, _) = qsearch::train::evaluate(&net, &dataset.train, 256, &device);
    let config = TrainConfig {
        epochs: 2,
        ..TrainConfig::default()
    };
    let (net, state) = fit(
        net,
        None,
        &dataset,
        &config,
        &Checkpoint::new(&temp("learns")),
        None,
    )
    .unwrap();
    let (after, _) = qsearch::train::evaluate(&net, &dataset.train, 256, &device);
    assert!(after < 0.8 * before, "loss {before} -> {after}");
    assert_eq!(state.history.len(), 2);
}

/// Training is reproducible on one machine whatever the thread count: the CPU backend's
/// parallel kernels split work without changing the order of any sum.
#[test]
fn same_seed_trains_to_the_same_weights_on_any_thread_count() {
    let dataset = small_data();
    let graph = zoo::build("fashion-cnn:width=0.5").unwrap();
    let config = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let train_with = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let dir = temp(&format!("threads-{threads}"));
            let device = training_device();
            let (net, state) = fit(
                GraphNet::new(&graph, &device),
                None,
                &dataset,
                &config,
                &Checkpoint::new(&dir),
                None,
            )
            .unwrap();
            let accuracy: Vec<f64> = state.history.iter().map(|h| h.test_accuracy).collect();
            (onnx::export_bytes(&net.to_graph(&graph)), accuracy)
        })
    };
    let one = train_with(1);
    assert!(
        one == train_with(3),
        "weights differ between 1 and 3 threads"
    );
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let dataset = small_data();
    let graph = zoo::build("fashion-cnn:width=0.5").unwrap();
    let device = training_device();
    let config = TrainConfig {
        epochs: 2,
        ..TrainConfig::default()
    };

    let whole = temp("whole");
    let (net, _) = fit(
        GraphNet::new(&graph, &device),
        None,
        &dataset,
        &config,
        &Checkpoint::new(&whole),
        None,
    )
    .unwrap();
    let uninterrupted = net.to_graph(&graph);

    // Stop after the first epoch as an interruption would, then resume from the checkpoint
    // files alone, with a fresh model.
    let split = temp("split");
    qsearch::train::fit_until(
        GraphNet::new(&graph, &device),
        None,
        &dataset,
        &config,
        &Checkpoint::new(&split),
        None,
        1,
    )
    .unwrap();
    assert_eq!(Checkpoint::new(&split).read_state().unwrap().epoch, 1);
    let (net, state) = fit(
        GraphNet::new(&graph, &device),
        None,
        &dataset,
        &config,
        &Checkpoint::new(&split),
        None,
    )
    .unwrap();
    assert_eq!(state.epoch, 2);
    let resumed = net.to_graph(&graph);
    assert!(
        onnx::export_bytes(&resumed) == onnx::export_bytes(&uninterrupted),
        "the resumed run's weights differ from the uninterrupted run's"
    );
}

#[test]
fn quantized_models_fine_tune() {
    let dataset = small_data();
    let graph = zoo::build("fashion-cnn:width=0.5").unwrap();
    let device = training_device();
    let config = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let (net, _) = fit(
        GraphNet::new(&graph, &device),
        None,
        &dataset,
        &config,
        &Checkpoint::new(&temp("fp")),
        None,
    )
    .unwrap();
    let trained = net.to_graph(&graph);
    let fused = FusedGraph::from_graph(&trained);
    let mut assignment =
        qsearch::precision::Assignment::uniform(fused.layers.len(), fused.tensors.len(), Bits::B4);
    assignment.activation_bits[fused.input] = Bits::B8;
    let qat_config = TrainConfig {
        distill: 0.5,
        ..config
    };
    let tune = |dir: &PathBuf| {
        qsearch::flow::finetune_assignment(
            &trained,
            &assignment,
            &dataset,
            &qat_config,
            dir,
            "qat",
            false,
        )
        .unwrap()
    };
    let dir = temp("qat");
    let accuracy = tune(&dir);
    assert!(accuracy > 30.0, "{accuracy}");
    let (_, quantization) = qsearch::deploy::load_finetuned(&dir).unwrap();
    assert_eq!(quantization.layers.len(), fused.weighted_layers().count());
    assert!(quantization.buffers.iter().all(|b| b.bound > 0.0));
    // The same seed fine-tunes to the same bytes in another folder.
    let again = temp("qat-again");
    assert_eq!(tune(&again), accuracy);
    for file in ["quantized.onnx", "quantization.json"] {
        assert!(
            std::fs::read(dir.join(file)).unwrap() == std::fs::read(again.join(file)).unwrap(),
            "{file} differs between two fine-tunes with the same seed"
        );
    }
    // A finished fine-tune is reused, not redone.
    let record = std::fs::metadata(dir.join("finetune.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(tune(&dir), accuracy);
    assert_eq!(
        std::fs::metadata(dir.join("finetune.json"))
            .unwrap()
            .modified()
            .unwrap(),
        record
    );
}

#[test]
fn held_out_images_stay_out_of_training() {
    let dataset = small_data();
    let graph = zoo::build("fashion-cnn:width=0.5").unwrap();
    let net = GraphNet::new(&graph, &training_device());
    // Holding out the whole (1024-image) training split leaves nothing to train on.
    let config = TrainConfig {
        epochs: 1,
        holdout: 1024,
        ..TrainConfig::default()
    };
    let err = fit(
        net,
        None,
        &dataset,
        &config,
        &Checkpoint::new(&temp("holdout")),
        None,
    )
    .expect_err("nothing to train on")
    .to_string();
    assert!(err.contains("the training split is empty"), "{err}");
}
