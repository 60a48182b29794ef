//! Verification of a generated project on the host: build it with the host compiler, run it
//! on images, and compare every layer's packed output with the golden model's, byte for byte.

use super::DeployError;
use super::codegen::{Project, pack};
use super::golden;
use super::integerize::IntGraph;
use rayon::prelude::*;
use std::path::Path;
use std::process::Command;

/// What the host run showed.
pub struct HostCheck {
    /// Images whose every layer matched the golden model.
    pub exact: usize,
    pub total: usize,
    /// The program's output: per-layer checksums of the first image and the time per image.
    pub stdout: String,
    pub first_mismatch: Option<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |e| DeployError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Builds the project written in `dir` (`make`), runs it on `images` (bytes, HWC) and compares.
pub fn host_check(
    graph: &IntGraph,
    project: &Project,
    images: &[Vec<u8>],
    dir: &Path,
) -> Result<HostCheck, DeployError> {
    let build = Command::new("make")
        .args(["-s", "-C"])
        .arg(dir)
        .output()
        .map_err(|e| DeployError::Build(format!("cannot run make ({e}); install make and gcc")))?;
    if !build.status.success() {
        return Err(DeployError::Build(format!(
            "the generated C in {} did not build:\n{}",
            dir.display(),
            String::from_utf8_lossy(&build.stderr)
        )));
    }
    let inputs = dir.join("inputs.bin");
    let outputs = dir.join("outputs.bin");
    crate::results::write_atomic(&inputs, &images.concat()).map_err(io(&inputs))?;
    let program = dir.join("network");
    let run = Command::new(&program)
        .arg(&inputs)
        .arg(&outputs)
        .output()
        .map_err(io(&program))?;
    if !run.status.success() {
        return Err(DeployError::Build(format!(
            "{} failed: {}",
            program.display(),
            String::from_utf8_lossy(&run.stderr)
        )));
    }
    let produced = std::fs::read(&outputs).map_err(io(&outputs))?;
    let per_image: usize = graph
        .layers
        .iter()
        .map(|l| project.plan.sizes[l.output])
        .sum();
    if produced.len() != per_image * images.len() {
        return Err(DeployError::Build(format!(
            "{} holds {} bytes; {} images of {per_image} bytes were expected",
            outputs.display(),
            produced.len(),
            images.len()
        )));
    }
    let mismatches: Vec<Option<String>> = images
        .par_iter()
        .enumerate()
        .map(|(i, image)| {
            let buffers = golden::run(graph, image);
            let mut at = i * per_image;
            for layer in &graph.layers {
                let expected = pack(&buffers[layer.output], graph.tensors[layer.output].bits);
                if produced[at..at + expected.len()] != expected[..] {
                    return Some(format!("image {i}, layer '{}'", layer.name));
                }
                at += expected.len();
            }
            None
        })
        .collect();
    Ok(HostCheck {
        exact: mismatches.iter().filter(|m| m.is_none()).count(),
        total: images.len(),
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        first_mismatch: mismatches.into_iter().flatten().next(),
    })
}
