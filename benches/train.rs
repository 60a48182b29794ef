//! Training throughput of the default network (images/s at batch 128) with burn's flex backend,
//! median of several timed runs after a warm-up; written to `results/bench/train.json`.
//! `scripts/bench-train.sh` runs it next to PyTorch training the identical network.
//! With `--features ndarray` it also times burn's ndarray backend (fewer steps: it is far slower),
//! the figures behind the choice of backend.
//!
//! Run: `cargo bench --bench train`

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use qsearch::graph::zoo;
use qsearch::train::{GraphNet, data, training_device};
use std::time::Instant;

const BATCH: usize = 128;
const STEPS: usize = 40;
const RUNS: usize = 5;

/// Timed steps per run and runs of one backend.
struct Schedule {
    steps: usize,
    runs: usize,
}

fn main() {
    let dataset =
        data::load("fashion-mnist").expect("Fashion-MNIST (scripts/setup.sh installs it)");
    let full = Schedule {
        steps: STEPS,
        runs: RUNS,
    };
    #[allow(unused_mut)]
    let mut results = vec![("flex", measure(&dataset, &training_device(), &full))];
    #[cfg(feature = "ndarray")]
    {
        let short = Schedule { steps: 3, runs: 3 };
        // Deprecated in burn in favour of flex; measured here as the alternative that builds.
        #[allow(deprecated)]
        let device = Device::ndarray().autodiff();
        results.push(("ndarray", measure(&dataset, &device, &short)));
    }
    for (name, (median, rates)) in &results {
        println!(
            "burn ({name} backend) training fashion-cnn, batch {BATCH}: median {median:.0} images/s over {} runs (min {:.0}, max {:.0})",
            rates.len(),
            rates[0],
            rates[rates.len() - 1]
        );
    }
    let (median, rates) = &results[0].1;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/bench");
    std::fs::create_dir_all(&dir).expect("results/bench");
    let others: Vec<serde_json::Value> = results
        .iter()
        .map(|(n, (m, _))| serde_json::json!({"backend": n, "images_per_second": m}))
        .collect();
    let json = serde_json::json!({ "backend": "flex", "batch": BATCH, "images_per_second": median, "runs": rates, "backends": others });
    qsearch::results::write_json(&dir.join("train.json"), &json).expect("write");
}

/// Median and sorted rates of training steps on `device`.
fn measure(dataset: &data::Dataset, device: &Device, schedule: &Schedule) -> (f64, Vec<f64>) {
    let graph = zoo::build("fashion-cnn").expect("zoo network");
    let device = device.clone();
    let mut net = GraphNet::new(&graph, &device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let order = dataset.train.epoch_order(0, 0);
    let mut step = 0usize;
    let mut run = |net: GraphNet, steps: usize| -> (GraphNet, f64) {
        let mut net = net;
        let started = Instant::now();
        for _ in 0..steps {
            let chunk = &order[(step * BATCH) % (order.len() - BATCH)..][..BATCH];
            step += 1;
            let (x, y) = dataset.train.batch(chunk);
            let x = Tensor::from_data(TensorData::new(x, [BATCH, 1, 28, 28]), &device);
            let y = Tensor::from_data(TensorData::new(y, [BATCH]), &device);
            let loss = loss_fn.forward(net.forward(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(1e-3, net, grads);
        }
        let seconds = started.elapsed().as_secs_f64();
        (net, (steps * BATCH) as f64 / seconds)
    };
    let (warm, _) = run(net, 2);
    net = warm;
    let mut rates = Vec::new();
    for _ in 0..schedule.runs {
        let (n, rate) = run(net, schedule.steps);
        net = n;
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    (rates[schedule.runs / 2], rates)
}
