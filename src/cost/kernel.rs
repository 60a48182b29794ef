//! Cycles of one kernel call on data already in L1: the part of the model a microbenchmark
//! measures, and the part `qsearch calibrate` refits. It is linear in the cost parameters.
//! See `docs/cost-model.md` for the formulas and their derivation.

use crate::graph::{Layer, LayerKind, Shape, Window};
use crate::platform::{CostParams, KernelStyle};
use crate::precision::Bits;

/// Relative cost per MAC of the 1-channel x 2-pixel leftover kernel against the 4x2 kernel:
/// 5 instructions per 8 MACs against 14 per 32.
const LEFTOVER_CHANNEL_FACTOR: f64 = (5.0 / 8.0) / (14.0 / 32.0);

/// A pooling's cost per input element read: sums (average poolings) have parameters of their
/// own where the platform gives them.
fn pool_cycles(p: &CostParams, kind: LayerKind, input: Bits) -> f64 {
    let sums = &p.sum_pool_cycles_per_element;
    let averages = matches!(kind, LayerKind::AvgPool | LayerKind::GlobalAvgPool);
    if averages && sums.get(input) > 0.0 {
        sums.get(input)
    } else {
        p.pool_cycles_per_element.get(input)
    }
}

/// Weights per 32-bit word: the blocked kernels' step along the reduction.
fn chunk(weight: Bits) -> usize {
    32 / weight.count() as usize
}

/// The set-up of a leftover channel's 1x2 step against a 4x2 block's (one accumulator row).
const LEFTOVER_CHANNEL_BLOCK: f64 = 0.25;

/// The geometry of one kernel call (a whole layer, or one L1 tile of it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelCall {
    pub kind: LayerKind,
    pub input: Shape,
    pub output: Shape,
    pub kernel: [usize; 2],
    pub groups: usize,
    /// The fraction of the window's taps that fall inside the input rather than the zero
    /// padding (1 without padding). Portable kernels skip padded taps; PULP-NN's im2col does not.
    pub inside_taps: f64,
    /// Contiguous runs the blocked kernels' im2col copies per output pixel: one per kernel row
    /// wholly inside the input, one per tap of the other rows (`kernel[0]` without padding).
    pub im2col_runs: f64,
}

impl KernelCall {
    /// The call over `input` producing `output`; `window` for convolutions and poolings.
    pub fn new(
        kind: LayerKind,
        input: Shape,
        output: Shape,
        window: Option<Window>,
        groups: usize,
    ) -> KernelCall {
        KernelCall {
            kind,
            input,
            output,
            kernel: window.map_or([1, 1], |w| w.kernel),
            groups,
            inside_taps: window.map_or(1.0, |w| inside_taps(input, output, w)),
            im2col_runs: window.map_or(1.0, |w| im2col_runs(input, output, w)),
        }
    }

    /// The call that computes `layer` in one piece.
    pub(crate) fn of_layer(layer: &Layer) -> KernelCall {
        KernelCall::new(
            layer.kind,
            layer.input_shape,
            layer.output_shape,
            layer.window,
            layer.groups,
        )
    }
}

/// For each kernel row `ky`, the output rows whose input row `oy * stride + ky - pad` exists.
fn rows_inside(size: usize, outputs: usize, k: usize, stride: usize, pad: usize) -> Vec<usize> {
    (0..k)
        .map(|t| {
            (0..outputs)
                .filter(|&o| (o * stride + t).checked_sub(pad).is_some_and(|i| i < size))
                .count()
        })
        .collect()
}

/// The fraction of `window`'s taps, over all output pixels, that read the input rather than
/// its padding.
pub fn inside_taps(input: Shape, output: Shape, window: Window) -> f64 {
    let axis = |size: usize, outputs: usize, k: usize, stride: usize, pad: usize| {
        let inside: usize = rows_inside(size, outputs, k, stride, pad).iter().sum();
        inside as f64 / (outputs * k).max(1) as f64
    };
    axis(
        input.h,
        output.h,
        window.kernel[0],
        window.stride[0],
        window.padding.top,
    ) * axis(
        input.w,
        output.w,
        window.kernel[1],
        window.stride[1],
        window.padding.left,
    )
}

/// The blocked im2col's runs per output pixel (`KernelCall::im2col_runs`): a kernel row is one
/// run where its input row exists and its taps are all inside the row, else one run per tap.
pub fn im2col_runs(input: Shape, output: Shape, window: Window) -> f64 {
    let [kh, kw] = window.kernel;
    let pixels = output.h * output.w;
    let (stride, pad) = (window.stride[1], window.padding.left);
    let whole_columns = (0..output.w)
        .filter(|&o| {
            (o * stride)
                .checked_sub(pad)
                .is_some_and(|i| i + kw <= input.w)
        })
        .count();
    let runs: usize = rows_inside(input.h, output.h, kh, window.stride[0], window.padding.top)
        .into_iter()
        .map(|rows| {
            let whole = rows * whole_columns;
            whole + (pixels - whole) * kw
        })
        .sum();
    runs as f64 / pixels.max(1) as f64
}

/// The precisions a kernel runs at. `second` is the second input's precision of an add (other
/// kernels ignore it); `weight` is ignored by kernels without weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Precisions {
    pub weight: Bits,
    pub input: Bits,
    pub second: Bits,
    pub output: Bits,
}

impl Precisions {
    pub fn uniform(bits: Bits) -> Precisions {
        Precisions {
            weight: bits,
            input: bits,
            second: bits,
            output: bits,
        }
    }
}

/// Cycles of the busiest core for one kernel call, layer overhead excluded.
pub(crate) fn kernel_cycles(
    p: &CostParams,
    cores: usize,
    call: &KernelCall,
    bits: Precisions,
) -> f64 {
    p.cycles_per_instruction.value * kernel_instructions(p, cores, call, bits)
}

/// Instructions the busiest core issues for one kernel call.
fn kernel_instructions(p: &CostParams, cores: usize, call: &KernelCall, bits: Precisions) -> f64 {
    let (input, output) = (call.input, call.output);
    let (w, x, y) = (bits.weight, bits.input, bits.output);
    let [kh, kw] = call.kernel;
    let per_core = |n: usize| n.div_ceil(cores) as f64;
    let requant = p.requant_cycles_per_output.get(y);
    if p.style == KernelStyle::Portable {
        return portable_instructions(p, call, bits);
    }
    match call.kind {
        // DORY calls PULP-NN's row-parallel convolution (`pulp_nn_conv_Ho_parallel`) and its
        // pixel-parallel pointwise kernel (`pulp_nn_pointwise_HoWo_parallel`).
        LayerKind::Conv | LayerKind::GroupedConv => {
            conv_core_cycles(p, call, bits, per_core(output.h) * output.w as f64)
        }
        LayerKind::Pointwise => conv_core_cycles(p, call, bits, per_core(output.h * output.w)),
        LayerKind::Depthwise => {
            let channels = per_core(output.c);
            let gather = (input.h * input.w) as f64 * p.depthwise_gather_cycles_per_element.get(x);
            let per_output = (kh * kw) as f64 * p.depthwise_cycles_per_mac.get(w, x) + requant;
            channels * (gather + (output.h * output.w) as f64 * per_output)
        }
        // Each core runs its neurons in blocks of 4 and leftovers alone, on the input the layer
        // unpacked once (`operand_cycles`).
        LayerKind::Linear => {
            let n_in = input.elements() as f64;
            let neurons = per_core(output.c);
            let full = (neurons / 4.0).floor() * 4.0;
            let left = neurons - full;
            let tail = (input.elements() as usize % chunk(w)) as f64;
            (full / 4.0 + LEFTOVER_CHANNEL_BLOCK * left) * p.block_overhead_cycles.value
                + n_in * (full + LEFTOVER_CHANNEL_FACTOR * left) * p.linear_cycles_per_mac.get(w, x)
                + (full + left) * tail * p.reduction_tail_cycles_per_mac.value
                + neurons * requant
        }
        // The add's rescaling is part of its per-element cost, measured per input width.
        LayerKind::Add => {
            let elements = per_core(output.h * output.w) * output.c as f64;
            let add = &p.add_cycles_per_element;
            elements * (add.get(x) + add.get(bits.second))
        }
        // A pooling reduces the taps of every output channel, then requantizes it.
        LayerKind::MaxPool | LayerKind::AvgPool => {
            let elements = per_core(output.h * output.w) * output.c as f64;
            let taps = (kh * kw) as f64 * call.inside_taps;
            elements * (taps * pool_cycles(p, call.kind, x) + requant)
        }
        LayerKind::GlobalAvgPool | LayerKind::GlobalMaxPool => {
            let channels = per_core(output.c);
            let pixels = (input.h * input.w) as f64;
            channels * (pixels * pool_cycles(p, call.kind, x) + requant)
        }
        LayerKind::Elementwise => {
            let elements = per_core(output.h * output.w) * output.c as f64;
            elements * p.pool_cycles_per_element.get(x)
        }
    }
}

/// Instructions of the portable C kernels of `qsearch deploy` (one core): per output, the
/// requantization (and for convolutions the loop set-up and a bounds check per kernel row) and
/// per kernel tap the bounds checks (`block_overhead_cycles`, also per pooling
/// tap); per MAC two
/// unpacking loads, a multiply and an add.
fn portable_instructions(p: &CostParams, call: &KernelCall, bits: Precisions) -> f64 {
    let (input, output) = (call.input, call.output);
    let (w, x) = (bits.weight, bits.input);
    let requant = p.requant_cycles_per_output.get(bits.output);
    let taps = (call.kernel[0] * call.kernel[1]) as f64;
    let outputs = output.elements() as f64;
    match call.kind {
        // Depthwise layers run the same loop with one channel per group: their per-MAC cost
        // (one tap each) has its own parameters.
        LayerKind::Conv | LayerKind::GroupedConv | LayerKind::Pointwise | LayerKind::Depthwise => {
            let macs = outputs * taps * call.inside_taps * (input.c / call.groups) as f64;
            let per_mac = if call.kind == LayerKind::Depthwise {
                p.depthwise_cycles_per_mac.get(w, x)
            } else {
                p.conv_cycles_per_mac.get(w, x)
            };
            let per_output = p.conv_output_cycles.value
                + call.kernel[0] as f64 * p.conv_row_cycles.value
                + taps * p.block_overhead_cycles.value;
            outputs * (requant + per_output) + macs * per_mac
        }
        LayerKind::Linear => {
            outputs * (requant + input.elements() as f64 * p.linear_cycles_per_mac.get(w, x))
        }
        LayerKind::Add => {
            let add = &p.add_cycles_per_element;
            outputs * (add.get(x) + add.get(bits.second) + requant)
        }
        // A pooling window walks its taps as a convolution does (bounds checks per tap) and
        // reads the ones inside the input.
        LayerKind::MaxPool | LayerKind::AvgPool => {
            let per_tap =
                p.block_overhead_cycles.value + call.inside_taps * p.pool_cycles_per_element.get(x);
            outputs * (taps * per_tap + requant)
        }
        LayerKind::GlobalAvgPool | LayerKind::GlobalMaxPool => {
            outputs * ((input.h * input.w) as f64 * p.pool_cycles_per_element.get(x) + requant)
        }
        LayerKind::Elementwise => outputs * (p.pool_cycles_per_element.get(x) + requant),
    }
}

/// One core's cycles for a convolution computing `px` output pixels of `out_c` channels: the
/// im2col of every pixel (8-bit 1x1 layers read their input in place), per pixel pair the 4x2
/// blocks and the leftover channels, per output the requantization.
fn conv_core_cycles(p: &CostParams, call: &KernelCall, bits: Precisions, px: f64) -> f64 {
    let out_c = call.output.c;
    let (w, x) = (bits.weight, bits.input);
    let [kh, kw] = call.kernel;
    let k = (call.input.c / call.groups * kh * kw) as f64;
    let eight_bit = w == Bits::B8 && x == Bits::B8;
    let im2col = if eight_bit && call.kind == LayerKind::Pointwise {
        0.0
    } else {
        let per_element = if eight_bit {
            p.im2col_cycles_per_byte.value
        } else {
            p.unpack_cycles_per_element.get(w, x)
        };
        px * (k * per_element + call.im2col_runs * p.im2col_run_cycles.value)
    };
    let per_group = out_c / call.groups;
    let full = (per_group / 4 * 4) as f64;
    let left = (per_group % 4) as f64;
    let pairs = (px / 2.0).ceil();
    let tail = (call.input.c / call.groups * kh * kw) % chunk(w);
    let matmul = call.groups as f64
        * (2.0
            * pairs
            * (k * (full + LEFTOVER_CHANNEL_FACTOR * left) * p.conv_cycles_per_mac.get(w, x)
                + (full + left) * tail as f64 * p.reduction_tail_cycles_per_mac.value)
            + pairs * (full / 4.0 + LEFTOVER_CHANNEL_BLOCK * left) * p.block_overhead_cycles.value);
    im2col
        + matmul
        + px * (p.conv_pixel_cycles.value
            + out_c as f64 * p.requant_cycles_per_output.get(bits.output))
}

/// Cycles of the one core that makes a linear layer's input into its blocked kernel's operand,
/// once per layer before the cores start (`kernels/linear_blocked.h`): the input unpacked to a
/// byte per value, unless the kernel reads it in place (8-bit weights and inputs). No other
/// kernel has such a step.
pub(crate) fn operand_cycles(p: &CostParams, call: &KernelCall, bits: Precisions) -> f64 {
    let in_place = bits.weight == Bits::B8 && bits.input == Bits::B8;
    if call.kind != LayerKind::Linear || p.style == KernelStyle::Portable || in_place {
        return 0.0;
    }
    p.cycles_per_instruction.value
        * call.input.elements() as f64
        * p.unpack_cycles_per_element.get(bits.weight, bits.input)
}

/// Cycles of a complete kernel call as a microbenchmark times it (fork/join included).
pub fn call_cycles(p: &CostParams, cores: usize, call: &KernelCall, bits: Precisions) -> f64 {
    operand_cycles(p, call, bits)
        + kernel_cycles(p, cores, call, bits)
        + p.layer_overhead_cycles.value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    fn conv(c_in: usize, c_out: usize, hw: usize, k: usize) -> KernelCall {
        let kind = if k == 1 {
            LayerKind::Pointwise
        } else {
            LayerKind::Conv
        };
        let window = Window {
            kernel: [k, k],
            stride: [1, 1],
            padding: crate::graph::Padding::uniform(0),
        };
        KernelCall::new(
            kind,
            Shape::new(c_in, hw + k - 1, hw + k - 1),
            Shape::new(c_out, hw, hw),
            Some(window),
            1,
        )
    }

    #[test]
    fn inside_taps_count_the_window_over_the_input() {
        let window = |k, stride, pad| Window {
            kernel: [k, k],
            stride: [stride, stride],
            padding: crate::graph::Padding::uniform(pad),
        };
        // 3x3, pad 1 on 5x5: per axis the border outputs see 2 rows, the others 3.
        let fraction = inside_taps(Shape::new(1, 5, 5), Shape::new(1, 5, 5), window(3, 1, 1));
        assert!((fraction - (13.0f64 / 15.0).powi(2)).abs() < 1e-12);
        assert_eq!(
            inside_taps(Shape::new(1, 6, 6), Shape::new(1, 4, 4), window(3, 1, 0)),
            1.0
        );
        // 3x3, stride 2, pad 1 on 4x4 -> 2x2: rows -1..1 and 1..3, so 2 + 3 of 6 per axis.
        let fraction = inside_taps(Shape::new(1, 4, 4), Shape::new(1, 2, 2), window(3, 2, 1));
        assert!((fraction - (5.0f64 / 6.0).powi(2)).abs() < 1e-12);
    }

    #[test]
    fn eight_bit_conv_matches_the_published_peak() {
        // PULP-NN reaches 15.5 MAC/cycle on 8 cores for a 3x3 32 -> 64 conv on 16x16 (reference
        // row peak_throughput,GAP8). gap8's per-core cycles are fitted on one CV32E40P, not to
        // this figure: split over 8 cores they land within 3% of it.
        let gap8 = Platform::load("gap8").unwrap();
        let call = conv(32, 64, 16, 3);
        let macs = (64 * 16 * 16 * 32 * 9) as f64;
        let cycles = call_cycles(&gap8.cost, 8, &call, Precisions::uniform(Bits::B8));
        let throughput = macs / cycles;
        assert!((throughput / 15.5 - 1.0).abs() < 0.03, "{throughput}");
    }

    #[test]
    fn sub_byte_weights_are_slower_on_xpulpv2_and_faster_on_xpulpnn() {
        let call = conv(64, 64, 8, 3);
        let at = |platform: &str, bits: Bits| {
            let p = Platform::load(platform).unwrap();
            kernel_cycles(&p.cost, 8, &call, Precisions::uniform(bits))
        };
        // XpulpV2 has 8-bit dot products only: sub-byte operands are widened, never faster.
        assert!(at("gap8", Bits::B4) > 1.2 * at("gap8", Bits::B8));
        assert!(at("xpulpnn", Bits::B4) < 0.7 * at("xpulpnn", Bits::B8));
        assert!(at("xpulpnn", Bits::B2) < at("xpulpnn", Bits::B4));
    }

    #[test]
    fn work_splits_over_cores_with_leftovers() {
        let gap8 = Platform::load("gap8").unwrap();
        let b8 = Precisions::uniform(Bits::B8);
        let cycles = |c_out: usize, h: usize, w: usize| {
            let mut call = conv(64, c_out, 1, 1);
            call.output.h = h;
            call.output.w = w;
            kernel_cycles(&gap8.cost, 8, &call, b8)
        };
        // 17 pixels on 8 cores take as long as 24 (three rounds), and 4 pixels as long as 8.
        assert!((cycles(16, 17, 1) - cycles(16, 24, 1)).abs() < 1e-9);
        assert!((cycles(64, 2, 2) - cycles(64, 8, 1)).abs() < 1e-9);
    }
}
