//! Built-in networks, selected as `zoo:NAME` or `zoo:NAME:key=value,...` wherever a model path
//! is accepted. Weights are random (Kaiming-uniform, seeded) until a checkpoint is loaded.

use super::op::{Activation, BatchNorm, Conv, Linear, Op, Padding, PoolKind, Shape, Window};
use super::{Graph, GraphBuilder, GraphError, TensorId};
use crate::table::Table;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// The network the main command uses when none is given.
pub const DEFAULT_MODEL: &str = "zoo:fashion-cnn";

/// A zoo network: its name, what it is, and the options it accepts with their defaults.
pub struct ZooEntry {
    pub name: &'static str,
    pub description: &'static str,
    /// `(key, default)` for every option the network accepts.
    pub options: &'static [(&'static str, f64)],
    /// The smallest input resolution its downsampling leaves at least one pixel for (0 without
    /// a resolution option).
    min_resolution: f64,
    build: fn(&Options) -> Result<Graph, GraphError>,
}

pub const ENTRIES: &[ZooEntry] = &[
    ZooEntry {
        name: "fashion-cnn",
        description: "default: 3 conv + 2 FC for 28x28x1 Fashion-MNIST (other resolutions take resized images); ~0.63 MB of 8-bit weights, so uniform 8-bit misses a 512 KB budget",
        options: &[
            ("width", 1.0),
            ("resolution", 28.0),
            ("classes", 10.0),
            ("seed", 0.0),
        ],
        min_resolution: 4.0,
        build: fashion_cnn,
    },
    ZooEntry {
        name: "mobilenet-v1",
        description: "MobileNetV1 (Howard et al. 2017), width 0.25/0.5/0.75/1.0, any resolution",
        options: &[
            ("width", 1.0),
            ("resolution", 224.0),
            ("classes", 1000.0),
            ("seed", 0.0),
        ],
        min_resolution: 32.0,
        build: mobilenet_v1,
    },
    ZooEntry {
        name: "mobilenet-v2",
        description: "MobileNetV2 (Sandler et al. 2018): inverted residuals, ReLU6, linear bottlenecks",
        options: &[
            ("width", 1.0),
            ("resolution", 224.0),
            ("classes", 1000.0),
            ("seed", 0.0),
        ],
        min_resolution: 32.0,
        build: mobilenet_v2,
    },
    ZooEntry {
        name: "mcunet",
        description: "MCUNet-style MBConv network: searched-looking mix of 3/5/7 kernels and expansion 3-6",
        options: &[
            ("width", 1.0),
            ("resolution", 96.0),
            ("classes", 1000.0),
            ("seed", 0.0),
        ],
        min_resolution: 32.0,
        build: mcunet,
    },
    ZooEntry {
        name: "resnet8",
        description: "ResNet-8 of MLPerf Tiny image classification: 32x32x3 CIFAR-10, 3 residual stacks",
        options: &[("classes", 10.0), ("seed", 0.0)],
        min_resolution: 0.0,
        build: resnet8,
    },
    ZooEntry {
        name: "ds-cnn",
        description: "DS-CNN of MLPerf Tiny keyword spotting: 49x10x1 MFCC input, 12 classes",
        options: &[("classes", 12.0), ("seed", 0.0)],
        min_resolution: 0.0,
        build: ds_cnn,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("unknown zoo network '{name}'; available: {available}")]
    Unknown { name: String, available: String },
    #[error("zoo:{name}: {message}")]
    Option { name: String, message: String },
    #[error("zoo:{name}: {source}")]
    Graph { name: String, source: GraphError },
}

/// Options of one zoo network, resolved against its defaults.
pub(crate) struct Options {
    values: BTreeMap<&'static str, f64>,
}

impl Options {
    fn get(&self, key: &str) -> f64 {
        self.values[key]
    }

    fn count(&self, key: &str) -> usize {
        self.values[key] as usize
    }

    fn seed(&self) -> u64 {
        self.values["seed"] as u64
    }
}

/// The built-in networks with their options and descriptions (what `qsearch zoo` prints).
pub fn listing() -> Table {
    let mut t =
        Table::new(&["network<", "options (defaults)<", "description<"]).wrap("description");
    for entry in ENTRIES {
        let options: Vec<String> = entry
            .options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        t.row(vec![
            format!("zoo:{}", entry.name),
            options.join(","),
            entry.description.into(),
        ]);
    }
    t
}

/// Builds the network named by `spec` (without the `zoo:` prefix), e.g. `mobilenet-v1:width=0.5`.
pub fn build(spec: &str) -> Result<Graph, ZooError> {
    let (name, options) = spec.split_once(':').unwrap_or((spec, ""));
    let entry = ENTRIES
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ZooError::Unknown {
            name: name.to_string(),
            available: ENTRIES
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let option_err = |message: String| ZooError::Option {
        name: name.to_string(),
        message,
    };
    let mut values: BTreeMap<&'static str, f64> = entry.options.iter().copied().collect();
    for pair in options.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| option_err(format!("option '{pair}' is not key=value")))?;
        let slot = entry
            .options
            .iter()
            .find(|(k, _)| *k == key.trim())
            .map(|(k, _)| *k)
            .ok_or_else(|| {
                let keys: Vec<&str> = entry.options.iter().map(|(k, _)| *k).collect();
                option_err(format!(
                    "unknown option '{key}'; accepted: {}",
                    keys.join(", ")
                ))
            })?;
        let number: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && (*v > 0.0 || (slot == "seed" && *v == 0.0)))
            .ok_or_else(|| option_err(format!("{key}={value} is not a positive number")))?;
        if slot != "width" && number.fract() != 0.0 {
            return Err(option_err(format!("{key}={value} must be a whole number")));
        }
        values.insert(slot, number);
    }
    if let Some(&w) = values.get("width")
        && !(0.05..=4.0).contains(&w)
    {
        return Err(option_err(format!("width={w} is outside 0.05..4")));
    }
    if let Some(&r) = values.get("resolution")
        && r < entry.min_resolution
    {
        return Err(option_err(format!(
            "resolution={r} is below the minimum of {}",
            entry.min_resolution
        )));
    }
    (entry.build)(&Options { values }).map_err(|source| ZooError::Graph {
        name: name.to_string(),
        source,
    })
}

/// A graph builder that initialises weights from a seeded generator.
struct Net {
    b: GraphBuilder,
    rng: ChaCha8Rng,
}

#[derive(Clone, Copy)]
struct ConvSpec {
    out: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: Padding,
    groups: usize,
}

impl ConvSpec {
    /// A square convolution with "same"-style symmetric padding.
    fn new(out: usize, kernel: usize, stride: usize) -> ConvSpec {
        ConvSpec {
            out,
            kernel: [kernel, kernel],
            stride,
            padding: Padding::uniform(kernel / 2),
            groups: 1,
        }
    }

    fn depthwise(channels: usize, kernel: usize, stride: usize) -> ConvSpec {
        ConvSpec {
            groups: channels,
            ..ConvSpec::new(channels, kernel, stride)
        }
    }
}

impl Net {
    fn new(name: &str, input: Shape, seed: u64) -> Net {
        Net {
            b: GraphBuilder::new(name, "input", input),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn uniform(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        let bound = (6.0 / fan_in as f32).sqrt();
        (0..n)
            .map(|_| self.rng.random_range(-bound..bound))
            .collect()
    }

    /// Convolution, batch norm and (optionally) an activation.
    fn conv_bn(
        &mut self,
        name: &str,
        x: TensorId,
        spec: ConvSpec,
        act: Option<Activation>,
    ) -> Result<TensorId, GraphError> {
        let in_c = self.b.shape(x).c;
        let fan_in = in_c / spec.groups * spec.kernel[0] * spec.kernel[1];
        let conv = Op::Conv(Conv {
            out_channels: spec.out,
            window: Window {
                kernel: spec.kernel,
                stride: [spec.stride, spec.stride],
                padding: spec.padding,
            },
            groups: spec.groups,
            weight: self.uniform(spec.out * fan_in, fan_in),
            bias: vec![0.0; spec.out],
        });
        let y = self.b.add(name, conv, &[x])?;
        let y = self.b.add(
            &format!("{name}.bn"),
            Op::BatchNorm(BatchNorm::identity(spec.out)),
            &[y],
        )?;
        match act {
            Some(a) => self.act(&format!("{name}.act"), y, a),
            None => Ok(y),
        }
    }

    fn act(&mut self, name: &str, x: TensorId, act: Activation) -> Result<TensorId, GraphError> {
        self.b.add(name, Op::Activation(act), &[x])
    }

    fn linear(&mut self, name: &str, x: TensorId, out: usize) -> Result<TensorId, GraphError> {
        let fan_in = self.b.shape(x).elements() as usize;
        let op = Op::Linear(Linear {
            out_features: out,
            weight: self.uniform(out * fan_in, fan_in),
            bias: vec![0.0; out],
        });
        self.b.add(name, op, &[x])
    }

    fn flatten(&mut self, x: TensorId) -> Result<TensorId, GraphError> {
        self.b.add("flatten", Op::Flatten, &[x])
    }

    /// Global average pooling, flatten and the final linear layer.
    fn classifier(mut self, x: TensorId, classes: usize) -> Result<Graph, GraphError> {
        let x = self
            .b
            .add("pool", Op::GlobalPool(PoolKind::Average), &[x])?;
        let x = self.flatten(x)?;
        let y = self.linear("fc", x, classes)?;
        self.b.finish(y)
    }
}

/// `round(c * width)` to a multiple of `divisor`, never below `divisor` nor under 90% of the target
/// (the rule of the MobileNetV2 reference implementation).
fn scaled(c: usize, width: f64, divisor: usize) -> usize {
    let target = c as f64 * width;
    let rounded = ((target + divisor as f64 / 2.0) as usize / divisor * divisor).max(divisor);
    if (rounded as f64) < 0.9 * target {
        rounded + divisor
    } else {
        rounded
    }
}

fn fashion_cnn(o: &Options) -> Result<Graph, GraphError> {
    let (w, r) = (o.get("width"), o.count("resolution"));
    let mut net = Net::new("fashion-cnn", Shape::new(1, r, r), o.seed());
    let relu = Some(Activation::Relu);
    let pool = Op::Pool {
        kind: PoolKind::Max,
        window: Window::square(2, 2, 0),
    };
    let mut x = net.b.input();
    for (i, channels) in [16, 32, 64].into_iter().enumerate() {
        let name = format!("conv{}", i + 1);
        x = net.conv_bn(&name, x, ConvSpec::new(scaled(channels, w, 4), 3, 1), relu)?;
        if i < 2 {
            x = net.b.add(&format!("pool{}", i + 1), pool.clone(), &[x])?;
        }
    }
    let x = net.flatten(x)?;
    let x = net.linear("fc1", x, scaled(192, w, 4))?;
    let x = net.act("fc1.act", x, Activation::Relu)?;
    let y = net.linear("fc2", x, o.count("classes"))?;
    net.b.finish(y)
}

fn mobilenet_v1(o: &Options) -> Result<Graph, GraphError> {
    let (w, r) = (o.get("width"), o.count("resolution"));
    let mut net = Net::new("mobilenet-v1", Shape::new(3, r, r), o.seed());
    let relu6 = Some(Activation::Relu6);
    let c = |channels: usize| ((channels as f64 * w) as usize).max(1);
    let mut x = net.conv_bn("conv1", net.b.input(), ConvSpec::new(c(32), 3, 2), relu6)?;
    let blocks = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    ];
    for (i, (out, stride)) in blocks.into_iter().enumerate() {
        let in_c = net.b.shape(x).c;
        x = net.conv_bn(
            &format!("block{}.dw", i + 1),
            x,
            ConvSpec::depthwise(in_c, 3, stride),
            relu6,
        )?;
        x = net.conv_bn(
            &format!("block{}.pw", i + 1),
            x,
            ConvSpec::new(c(out), 1, 1),
            relu6,
        )?;
    }
    net.classifier(x, o.count("classes"))
}

/// An inverted residual block: 1x1 expansion, depthwise, linear 1x1 projection, and a residual
/// connection when the shape is kept.
fn mbconv(
    net: &mut Net,
    name: &str,
    x: TensorId,
    expansion: usize,
    kernel: usize,
    out: usize,
    stride: usize,
) -> Result<TensorId, GraphError> {
    let relu6 = Some(Activation::Relu6);
    let in_c = net.b.shape(x).c;
    let hidden = in_c * expansion;
    let mut y = x;
    if expansion != 1 {
        y = net.conv_bn(
            &format!("{name}.expand"),
            y,
            ConvSpec::new(hidden, 1, 1),
            relu6,
        )?;
    }
    y = net.conv_bn(
        &format!("{name}.dw"),
        y,
        ConvSpec::depthwise(hidden, kernel, stride),
        relu6,
    )?;
    y = net.conv_bn(
        &format!("{name}.project"),
        y,
        ConvSpec::new(out, 1, 1),
        None,
    )?;
    if stride == 1 && in_c == out {
        y = net.b.add(&format!("{name}.add"), Op::Add, &[x, y])?;
    }
    Ok(y)
}

fn mobilenet_v2(o: &Options) -> Result<Graph, GraphError> {
    let (w, r) = (o.get("width"), o.count("resolution"));
    let mut net = Net::new("mobilenet-v2", Shape::new(3, r, r), o.seed());
    let relu6 = Some(Activation::Relu6);
    let mut x = net.conv_bn(
        "conv1",
        net.b.input(),
        ConvSpec::new(scaled(32, w, 8), 3, 2),
        relu6,
    )?;
    // (expansion, channels, repeats, first stride)
    let settings = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut index = 0;
    for (t, c, n, s) in settings {
        for i in 0..n {
            index += 1;
            let stride = if i == 0 { s } else { 1 };
            x = mbconv(
                &mut net,
                &format!("block{index}"),
                x,
                t,
                3,
                scaled(c, w, 8),
                stride,
            )?;
        }
    }
    let last = scaled(1280, w.max(1.0), 8);
    x = net.conv_bn("conv_last", x, ConvSpec::new(last, 1, 1), relu6)?;
    net.classifier(x, o.count("classes"))
}

fn mcunet(o: &Options) -> Result<Graph, GraphError> {
    let (w, r) = (o.get("width"), o.count("resolution"));
    let mut net = Net::new("mcunet", Shape::new(3, r, r), o.seed());
    let relu6 = Some(Activation::Relu6);
    let mut x = net.conv_bn(
        "conv1",
        net.b.input(),
        ConvSpec::new(scaled(16, w, 8), 3, 2),
        relu6,
    )?;
    // (expansion, kernel, channels, stride): per-block choices in the style of MCUNet's searched
    // ImageNet models, mixing kernel sizes and expansion ratios.
    let blocks = [
        (1, 3, 8, 1),
        (4, 7, 16, 2),
        (3, 3, 16, 1),
        (4, 5, 24, 2),
        (3, 7, 24, 1),
        (4, 5, 24, 1),
        (5, 5, 40, 2),
        (4, 5, 40, 1),
        (4, 5, 40, 1),
        (5, 5, 48, 1),
        (4, 3, 48, 1),
        (6, 5, 96, 2),
        (3, 7, 96, 1),
        (4, 3, 96, 1),
        (6, 3, 160, 1),
    ];
    for (i, (t, k, c, s)) in blocks.into_iter().enumerate() {
        x = mbconv(
            &mut net,
            &format!("block{}", i + 1),
            x,
            t,
            k,
            scaled(c, w, 8),
            s,
        )?;
    }
    net.classifier(x, o.count("classes"))
}

fn resnet8(o: &Options) -> Result<Graph, GraphError> {
    let mut net = Net::new("resnet8", Shape::new(3, 32, 32), o.seed());
    let relu = Some(Activation::Relu);
    let mut x = net.conv_bn("conv1", net.b.input(), ConvSpec::new(16, 3, 1), relu)?;
    for (i, (channels, stride)) in [(16, 1), (32, 2), (64, 2)].into_iter().enumerate() {
        let name = format!("stack{}", i + 1);
        let y = net.conv_bn(
            &format!("{name}.conv1"),
            x,
            ConvSpec::new(channels, 3, stride),
            relu,
        )?;
        let y = net.conv_bn(
            &format!("{name}.conv2"),
            y,
            ConvSpec::new(channels, 3, 1),
            None,
        )?;
        let shortcut = if stride == 1 {
            x
        } else {
            net.conv_bn(
                &format!("{name}.shortcut"),
                x,
                ConvSpec::new(channels, 1, stride),
                None,
            )?
        };
        let sum = net.b.add(&format!("{name}.add"), Op::Add, &[shortcut, y])?;
        x = net.act(&format!("{name}.act"), sum, Activation::Relu)?;
    }
    net.classifier(x, o.count("classes"))
}

fn ds_cnn(o: &Options) -> Result<Graph, GraphError> {
    let mut net = Net::new("ds-cnn", Shape::new(1, 49, 10), o.seed());
    let relu = Some(Activation::Relu);
    // 10x4 stride-2 convolution with TensorFlow "same" padding on a 49x10 input: 25x5 output.
    let first = ConvSpec {
        out: 64,
        kernel: [10, 4],
        stride: 2,
        padding: Padding {
            top: 4,
            left: 1,
            bottom: 5,
            right: 1,
        },
        groups: 1,
    };
    let mut x = net.conv_bn("conv1", net.b.input(), first, relu)?;
    for i in 1..=4 {
        x = net.conv_bn(
            &format!("block{i}.dw"),
            x,
            ConvSpec::depthwise(64, 3, 1),
            relu,
        )?;
        x = net.conv_bn(&format!("block{i}.pw"), x, ConvSpec::new(64, 1, 1), relu)?;
    }
    net.classifier(x, o.count("classes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: u64, expected: f64, tolerance: f64) -> bool {
        (actual as f64 - expected).abs() <= tolerance * expected
    }

    #[test]
    fn mobilenet_v1_matches_published_counts() {
        let g = build("mobilenet-v1").unwrap();
        // Howard et al. 2017, Table 8: 569M mult-adds, 4.2M parameters.
        assert!(close(g.total_macs(), 569e6, 0.01), "{}", g.total_macs());
        assert!(close(g.total_params(), 4.2e6, 0.02), "{}", g.total_params());
    }

    #[test]
    fn resnet8_matches_mlperf_tiny_counts() {
        let g = build("resnet8").unwrap();
        assert!(close(g.total_macs(), 12.5e6, 0.01), "{}", g.total_macs());
        assert!(close(g.total_params(), 78e3, 0.03), "{}", g.total_params());
    }

    #[test]
    fn mobilenet_v2_matches_published_counts() {
        let g = build("mobilenet-v2").unwrap();
        // Sandler et al. 2018, Table 3: 300M multiply-adds, 3.4M parameters.
        assert!(close(g.total_macs(), 300e6, 0.03), "{}", g.total_macs());
        assert!(close(g.total_params(), 3.4e6, 0.05), "{}", g.total_params());
    }

    #[test]
    fn ds_cnn_output_and_macs() {
        let g = build("ds-cnn").unwrap();
        assert_eq!(g.output_shape(), Shape::vector(12));
        assert!(close(g.total_macs(), 2.66e6, 0.02), "{}", g.total_macs());
    }

    #[test]
    fn options_are_checked() {
        assert!(build("mobilenet-v1:width=0.25,resolution=128").is_ok());
        let err = build("mobilenet-v1:depth=2").unwrap_err().to_string();
        assert!(err.contains("unknown option 'depth'"), "{err}");
        let err = build("resnet8:classes=ten").unwrap_err().to_string();
        assert!(err.contains("not a positive number"), "{err}");
        let err = build("alexnet").unwrap_err().to_string();
        assert!(err.contains("available: fashion-cnn"), "{err}");
    }

    #[test]
    fn same_seed_same_weights() {
        assert_eq!(build("resnet8").unwrap(), build("resnet8").unwrap());
        assert_ne!(build("resnet8").unwrap(), build("resnet8:seed=1").unwrap());
    }
}
