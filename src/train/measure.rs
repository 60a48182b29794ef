//! Measured sensitivity of a trained network: per layer and weight precision, and per buffer and
//! activation precision, the accuracy drop (points) on a held-out calibration split when only
//! that tensor is quantized; and the Hutchinson estimate of each layer's Hessian trace, which
//! turns weight quantization error into a predicted loss increase (HAWQ-V2: half the average
//! Hessian eigenvalue times the squared quantization error).

use super::data::Split;
use super::model::{GraphNet, QuantSpec, Ranges};
use super::trainer::{evaluate, training_device};
use crate::graph::{FusedGraph, Graph, fold_for_analysis};
use crate::precision::Bits;
use crate::sensitivity::{Sensitivity, weight_noise};
use burn::module::Param;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use indicatif::ProgressBar;

/// Measured effects of quantizing one tensor at a time: the accuracy drops (unit `points`) and
/// the loss increases (unit `loss`).
pub(crate) fn accuracy_drops(
    graph: &Graph,
    fused: &FusedGraph,
    ranges: &Ranges,
    calibration: &Split,
    progress: &ProgressBar,
) -> (Sensitivity, Sensitivity) {
    let device = training_device();
    let folded = fold_for_analysis(graph);
    let reference = GraphNet::new(&folded, &device);
    let (base_loss, base) = evaluate(&reference, calibration, 512, &device);
    let measure = |spec: QuantSpec| -> (f64, f64) {
        let net = GraphNet::quantized(graph, fused, &spec, ranges, &device);
        let (loss, acc) = evaluate(&net, calibration, 512, &device);
        progress.inc(1);
        (base - acc, loss - base_loss)
    };
    let mut weights = vec![[0.0; 3]; fused.layers.len()];
    let mut weight_loss = vec![[0.0; 3]; fused.layers.len()];
    for (l, _) in fused.weighted_layers() {
        for b in Bits::ALL {
            let mut spec = QuantSpec::none(fused);
            spec.weights[l] = Some(b);
            let (points, loss) = measure(spec);
            weights[l][b.index()] = points;
            weight_loss[l][b.index()] = loss;
        }
    }
    let mut activations = vec![[0.0; 3]; fused.tensors.len()];
    let mut activation_loss = vec![[0.0; 3]; fused.tensors.len()];
    for t in (0..fused.tensors.len()).filter(|&t| t != fused.input) {
        for b in Bits::ALL {
            let mut spec = QuantSpec::none(fused);
            spec.activations[t] = Some(b);
            let (points, loss) = measure(spec);
            activations[t][b.index()] = points;
            activation_loss[t][b.index()] = loss;
        }
    }
    let points = Sensitivity {
        unit: "points".into(),
        source: format!(
            "accuracy drop on {} held-out calibration images when only that tensor is quantized (floating-point accuracy {base:.2}%)",
            calibration.len()
        ),
        weights,
        activations,
    };
    let loss = Sensitivity {
        unit: "loss".into(),
        source: format!(
            "cross-entropy increase on {} held-out calibration images when only that tensor is quantized",
            calibration.len()
        ),
        weights: weight_loss,
        activations: activation_loss,
    };
    (points, loss)
}

/// Hutchinson samples per layer, and the finite-difference step of the Hessian-vector products.
const HUTCHINSON_SAMPLES: usize = 8;
const EPSILON: f32 = 1e-3;

/// Per layer: half the estimated average Hessian eigenvalue times the squared quantization error
/// of its weights, a predicted loss increase (unit `loss`); buffers take their measured loss
/// increases, `activation_loss`.
pub fn hessian(
    graph: &Graph,
    fused: &FusedGraph,
    calibration: &Split,
    seed: u64,
    activation_loss: Vec<[f64; 3]>,
    progress: &ProgressBar,
) -> Sensitivity {
    let device = training_device();
    let folded = fold_for_analysis(graph);
    let net = GraphNet::new(&folded, &device);
    let n = calibration.len().min(256);
    let (x, y) = calibration.batch(&(0..n).collect::<Vec<_>>());
    let images: Tensor<4> = Tensor::from_data(
        TensorData::new(
            x,
            [
                n,
                calibration.channels,
                calibration.height,
                calibration.width,
            ],
        ),
        &device,
    );
    let labels: Tensor<1, Int> = Tensor::from_data(TensorData::new(y, [n]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let ops: std::collections::HashMap<&str, &crate::graph::Op> = folded
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), &n.op))
        .collect();

    // The gradient of the loss with respect to one layer's weights, flattened.
    let gradient = |net: &GraphNet, conv: Option<usize>, linear: Option<usize>| -> Vec<f32> {
        let loss = loss_fn.forward(net.forward(images.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), net);
        let values = match (conv, linear) {
            (Some(c), _) => grads
                .get::<4>(net.convs[c].weight.id)
                .map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default()),
            (_, Some(l)) => grads
                .get::<2>(net.linears[l].weight.id)
                .map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default()),
            _ => None,
        };
        values.unwrap_or_default()
    };
    let mut weights = vec![[0.0; 3]; fused.layers.len()];
    let (mut conv, mut lin) = (0usize, 0usize);
    for node in &folded.nodes {
        let (c, l) = match node.op {
            crate::graph::Op::Conv(_) => (Some(conv), None),
            crate::graph::Op::Linear(_) => (None, Some(lin)),
            _ => continue,
        };
        let layer = fused.layer_by_name(&node.name);
        let mut trace = 0.0f64;
        let mut count = 0usize;
        for _ in 0..HUTCHINSON_SAMPLES {
            let shifted = |sign: f32| -> Vec<f32> {
                let mut m = net.clone();
                if let Some(ci) = c {
                    let w = m.convs[ci].weight.val();
                    let dims = w.dims();
                    let v: Vec<f32> = (0..w.shape().num_elements())
                        .map(|k| if hash_sign(seed, count, k) { 1.0 } else { -1.0 })
                        .collect();
                    let v = Tensor::<4>::from_data(TensorData::new(v, dims), &device);
                    m.convs[ci].weight = Param::from_tensor((w + v * (sign * EPSILON)).detach());
                } else if let Some(li) = l {
                    let w = m.linears[li].weight.val();
                    let dims = w.dims();
                    let v: Vec<f32> = (0..w.shape().num_elements())
                        .map(|k| if hash_sign(seed, count, k) { 1.0 } else { -1.0 })
                        .collect();
                    let v = Tensor::<2>::from_data(TensorData::new(v, dims), &device);
                    m.linears[li].weight = Param::from_tensor((w + v * (sign * EPSILON)).detach());
                }
                gradient(&m, c, l)
            };
            let (plus, minus) = (shifted(1.0), shifted(-1.0));
            // v^T H v = sum_k v_k (g+_k - g-_k) / (2 eps)
            let mut vhv = 0.0f64;
            for (k, (gp, gm)) in plus.iter().zip(&minus).enumerate() {
                let v = if hash_sign(seed, count, k) { 1.0 } else { -1.0 };
                vhv += v * f64::from(gp - gm) / (2.0 * f64::from(EPSILON));
            }
            trace += vhv;
            count += 1;
            progress.inc(1);
        }
        if let (Some(layer), Some(op)) = (layer, ops.get(node.name.as_str())) {
            let w = match op {
                crate::graph::Op::Conv(cv) => &cv.weight,
                crate::graph::Op::Linear(lv) => &lv.weight,
                _ => unreachable!(),
            };
            let n_params = w.len() as f64;
            let mean_eigen = trace / count as f64 / n_params;
            let energy: f64 = w.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
            let row = w.len() / fused.layers[layer].output_shape.c;
            weights[layer] =
                Bits::ALL.map(|b| 0.5 * mean_eigen.max(0.0) * weight_noise(w, row, b) * energy);
        }
        match (c, l) {
            (Some(_), _) => conv += 1,
            _ => lin += 1,
        }
    }
    Sensitivity {
        unit: "loss".into(),
        source: format!(
            "weights: Hutchinson Hessian traces ({HUTCHINSON_SAMPLES} samples, {n} calibration images) times quantization error; activations: measured loss increase"
        ),
        weights,
        activations: activation_loss,
    }
}

/// A reproducible Rademacher sign for element `k` of sample `sample`.
fn hash_sign(seed: u64, sample: usize, k: usize) -> bool {
    let mut h = seed ^ ((sample as u64) << 32) ^ (k as u64);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h & 1 == 1
}
