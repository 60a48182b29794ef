//! The PULP path on the CV32E40P RTL: `main_rtl.c` with the generated network, compiled by
//! clang-19 for one bare-metal core (`pulp_target.h`'s `QSEARCH_PULP_BAREMETAL`: every core's
//! share in turn, DMA transfers as copies counted apart), run on the simulator on the first test
//! images, every layer's output compared byte for byte with the golden model and every layer's
//! cycles measured. The images are split into one share per worker thread, each its own program
//! and simulator run, since a run simulates one core on one host thread.

use super::DeployError;
use super::codegen::push_byte_rows;
use super::golden;
use super::integerize::IntGraph;
use super::verify::io;
use crate::quant::pack;
use crate::rtl::{Rtl, SimConfig};
use rayon::prelude::*;
use std::path::Path;

/// One layer's measurements, per image.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerCycles {
    pub name: String,
    /// Cycles of the layer on the core, its DMA copies excluded.
    pub core: Vec<u64>,
    /// Cycles of the copies that stand in for its DMA transfers.
    pub dma: Vec<u64>,
}

/// What the run on the core showed: every layer of every image equal to the golden model (or
/// [`run`] fails) and its cycles.
#[derive(Clone, Debug)]
pub struct RtlRun {
    pub images: usize,
    pub layers: Vec<LayerCycles>,
    /// Cycles the simulator ran, printing included, summed over the shares.
    pub simulated_cycles: u64,
}

/// Per image, per layer: the layer's cycles (its DMA copies included) and its DMA-copy cycles.
type Measured = Vec<Vec<(u64, u64)>>;

/// `rtl_images_<share>.h`: the images of one share, numbered from `first`.
fn images_header(first: usize, images: &[Vec<u8>]) -> String {
    let mut s = format!(
        "/* Images {first} to {} of the CV32E40P run of main_rtl.c (bytes, HWC). */\n\
         #define RTL_FIRST_IMAGE {first}\n#define RTL_IMAGES {}\n\
         static const uint8_t rtl_images[RTL_IMAGES][NETWORK_INPUT_BYTES] = {{",
        first + images.len() - 1,
        images.len()
    );
    for image in images {
        s.push_str("\n    {");
        push_byte_rows(&mut s, image, "        ");
        s.push_str("\n    },");
    }
    s.push_str("\n};\n");
    s
}

/// Runs the project written in `dir` on the core on `images` (one value per element, packed
/// here at the input's width); `cycle_limit` bounds one image's run (printing included). Every
/// layer's output must equal the golden model's.
pub fn run(
    rtl: &Rtl,
    graph: &IntGraph,
    images: &[Vec<u8>],
    dir: &Path,
    cycle_limit: u64,
) -> Result<RtlRun, DeployError> {
    let shares = rayon::current_num_threads().clamp(1, images.len().max(1));
    let per_share = images.len().div_ceil(shares).max(1);
    let runs: Vec<(Measured, u64)> = images
        .chunks(per_share)
        .enumerate()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(s, share)| {
            let first = s * per_share;
            let header = dir.join(format!("rtl_images_{s}.h"));
            let program = dir.join(format!("rtl_run_{s}.c"));
            let input_bits = graph.tensors[graph.input].bits;
            let packed: Vec<Vec<u8>> = share
                .iter()
                .map(|image| {
                    pack(
                        &image.iter().map(|&v| i32::from(v)).collect::<Vec<_>>(),
                        input_bits,
                    )
                })
                .collect();
            crate::results::write_atomic(&header, images_header(first, &packed).as_bytes())
                .map_err(io(&header))?;
            let source = format!(
                "/* The CV32E40P program on images {first} to {}. */\n\
                 #define RTL_IMAGES_HEADER \"rtl_images_{s}.h\"\n#include \"main_rtl.c\"\n",
                first + share.len() - 1
            );
            crate::results::write_atomic(&program, source.as_bytes()).map_err(io(&program))?;
            let elf = dir.join(format!("network_rtl_{s}.elf"));
            rtl.compile(&[&program, &dir.join("freestanding.c")], &elf)?;
            let config = SimConfig {
                max_cycles: cycle_limit * share.len() as u64,
                wait_states: 0,
            };
            let out = rtl.run(&elf, &config)?;
            if out.exit_code != 0 {
                return Err(DeployError::Build(format!(
                    "{} exited with {} on the CV32E40P",
                    elf.display(),
                    out.exit_code
                )));
            }
            let layers = compare(
                graph,
                &images[first..first + share.len()],
                first,
                &out.stdout,
            )?;
            Ok((layers, out.cycles))
        })
        .collect::<Result<_, DeployError>>()?;
    let mut layers: Vec<LayerCycles> = graph
        .layers
        .iter()
        .map(|l| LayerCycles {
            name: l.name.clone(),
            core: Vec::new(),
            dma: Vec::new(),
        })
        .collect();
    for per_image in runs.iter().flat_map(|(share, _)| share) {
        for (layer, &(total, dma)) in layers.iter_mut().zip(per_image) {
            layer.core.push(total.saturating_sub(dma));
            layer.dma.push(dma);
        }
    }
    Ok(RtlRun {
        images: images.len(),
        layers,
        simulated_cycles: runs.iter().map(|(_, c)| c).sum(),
    })
}

/// Reads what `main_rtl.c` printed for `images` (numbered from `first`) and compares every
/// layer's output with the golden model's.
fn compare(
    graph: &IntGraph,
    images: &[Vec<u8>],
    first: usize,
    printed: &str,
) -> Result<Measured, DeployError> {
    let garbled = |what: &str| {
        DeployError::Build(format!(
            "the CV32E40P program printed {what}; its output:\n{}",
            printed.chars().take(2000).collect::<String>()
        ))
    };
    let mut lines = printed.lines();
    let mut measured = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let index = first + i;
        if lines.next() != Some(&format!("image {index}")) {
            return Err(garbled(&format!("no line 'image {index}'")));
        }
        let buffers = golden::run(graph, image);
        let mut per_layer = Vec::new();
        for (l, layer) in graph.layers.iter().enumerate() {
            let line = lines.next().unwrap_or_default();
            let fields: Vec<&str> = line.split(' ').collect();
            let (cycles, dma, hex) = match fields[..] {
                ["layer", n, cycles, dma, hex] if n == l.to_string() => (
                    cycles.parse::<u64>().map_err(|_| garbled(line))?,
                    dma.parse::<u64>().map_err(|_| garbled(line))?,
                    hex,
                ),
                _ => return Err(garbled(&format!("'{line}' where layer {l} was expected"))),
            };
            let got = decode_hex(hex).ok_or_else(|| garbled(line))?;
            let expected = pack(&buffers[layer.output], graph.tensors[layer.output].bits);
            if let Some(byte) =
                (0..expected.len().max(got.len())).find(|&b| got.get(b) != expected.get(b))
            {
                return Err(DeployError::RtlMismatch {
                    image: index,
                    layer: layer.name.clone(),
                    byte,
                    got: got.get(byte).copied(),
                    expected: expected.get(byte).copied(),
                });
            }
            per_layer.push((cycles, dma));
        }
        measured.push(per_layer);
    }
    Ok(measured)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The median of `values` (the upper one of an even count); 0 when empty.
pub fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_and_refuses_odd_or_foreign_text() {
        assert_eq!(decode_hex("00ff1a"), Some(vec![0, 255, 26]));
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn medians_take_the_middle_value() {
        assert_eq!(median(&[5, 1, 3]), 3);
        assert_eq!(median(&[4, 1]), 4);
        assert_eq!(median(&[]), 0);
    }
}
