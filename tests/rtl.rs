//! Programs on the cycle-accurate CV32E40P (Verilator): a SIMD dot product with its result,
//! exit code and counters, and every way a run ends badly (trap, cycle limit, an access outside
//! memory, not an ELF), and the blocked kernels of `kernels/` at every precision triple against a
//! scalar reference (the poolings against the generic ones), on the core and (portable C) on the
//! host.
//! Skipped, with the reason printed, only where the simulator's tools are not installed.

mod common;

use common::simulator;
use qsearch::rtl::{Rtl, RtlError, SimConfig};
use std::path::{Path, PathBuf};

fn temp() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qsearch-rtl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `tests/fixtures/rtl/NAME.c` into an ELF in the temp folder.
fn compile(rtl: &Rtl, name: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rtl")
        .join(format!("{name}.c"));
    let elf = temp().join(format!("{name}.elf"));
    rtl.compile(&[&source], &elf).unwrap();
    elf
}

#[test]
fn sdotp_dot_product_runs_and_counts() {
    let Some(rtl) = simulator() else { return };
    let elf = compile(rtl, "dot_sdotsp");
    let out = rtl.run(&elf, &SimConfig::default()).unwrap();
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words[..2], ["dot", "-88064"], "{}", out.stdout);
    let loop_cycles: f64 = words[3].parse().unwrap();
    // 256 sdotp over 1024 MACs, plus loads, address and loop overhead: 1 to 4 cycles per MAC.
    let per_mac = loop_cycles / 1024.0;
    assert!((1.0..4.0).contains(&per_mac), "{per_mac} cycles/MAC");
    assert!(
        out.instructions > 1024 && out.instructions <= out.cycles,
        "{out:?}"
    );
    assert!(out.cycles < 100_000, "{out:?}");
    // Wait states on every request slow the same program down.
    let slow = SimConfig {
        wait_states: 1,
        ..SimConfig::default()
    };
    let waited = rtl.run(&elf, &slow).unwrap();
    assert_eq!(waited.instructions, out.instructions);
    assert!(waited.cycles > out.cycles, "{waited:?} vs {out:?}");
    println!(
        "1024-element int8 dot product, C loop around cv.sdotsp.b: {per_mac:.2} cycles/MAC \
         ({loop_cycles} cycles); whole program {} cycles, {} instructions; {} cycles with one \
         wait state per memory request",
        out.cycles, out.instructions, waited.cycles
    );
}

#[test]
fn illegal_instruction_is_a_trap_with_its_cause() {
    let Some(rtl) = simulator() else { return };
    let elf = compile(rtl, "illegal");
    match rtl.run(&elf, &SimConfig::default()) {
        Err(e @ RtlError::Trap { mcause: 2, .. }) => {
            let message = e.to_string();
            assert!(message.contains("illegal.elf"), "{message}");
            assert!(message.contains("illegal instruction"), "{message}");
        }
        other => panic!("expected a trap with mcause 2, got {other:?}"),
    }
}

#[test]
fn endless_loop_stops_at_the_cycle_limit() {
    let Some(rtl) = simulator() else { return };
    let elf = compile(rtl, "spin");
    let config = SimConfig {
        max_cycles: 200_000,
        ..SimConfig::default()
    };
    match rtl.run(&elf, &config) {
        Err(RtlError::CycleLimit { program, cycles }) => {
            assert_eq!(cycles, 200_000);
            assert!(program.ends_with("spin.elf"), "{program}");
        }
        other => panic!("expected the cycle limit, got {other:?}"),
    }
}

#[test]
fn store_outside_memory_stops_the_run() {
    let Some(rtl) = simulator() else { return };
    let elf = compile(rtl, "stray_store");
    match rtl.run(&elf, &SimConfig::default()) {
        Err(RtlError::BadAccess { address, .. }) => assert_eq!(address, 0x2000_0000),
        other => panic!("expected a bad access, got {other:?}"),
    }
}

#[test]
fn garbage_is_a_bad_elf() {
    let Some(rtl) = simulator() else { return };
    let file = temp().join("garbage.elf");
    std::fs::write(
        &file,
        b"\x7fELF but not really an executable at all........",
    )
    .unwrap();
    match rtl.run(&file, &SimConfig::default()) {
        Err(RtlError::BadElf { program, reason }) => {
            assert!(program.ends_with("garbage.elf"), "{program}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected a bad ELF, got {other:?}"),
    }
}

/// The checks of `tests/fixtures/rtl/kernels_wN.c`: 18 precisions x 11 layers, each with the
/// kernel and its 32-bit variant (`_narrow`).
const KERNEL_CHECKS: usize = 396;

/// Runs `tests/fixtures/rtl/kernels_wN.c` on the core: the blocked kernels at weight bits N and
/// their 32-bit variants, every input and output precision, shapes with leftovers, against the
/// scalar reference.
fn blocked_kernels_on_the_core(weight_bits: u32) {
    fixture_passes_on_the_core(&format!("kernels_w{weight_bits}"), KERNEL_CHECKS);
}

/// Runs the fixture `tests/fixtures/rtl/NAME.c` on the core: it exits 0 after `checks` checks.
fn fixture_passes_on_the_core(name: &str, checks: usize) {
    let Some(rtl) = simulator() else { return };
    let elf = compile(rtl, name);
    let out = rtl.run(&elf, &SimConfig::default()).unwrap();
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    assert_eq!(out.stdout.trim(), format!("ok {checks}"), "{}", out.stdout);
}

#[test]
fn blocked_kernels_with_8_bit_weights_match_the_reference_on_the_core() {
    blocked_kernels_on_the_core(8);
}

#[test]
fn blocked_kernels_with_4_bit_weights_match_the_reference_on_the_core() {
    blocked_kernels_on_the_core(4);
}

#[test]
fn blocked_kernels_with_2_bit_weights_match_the_reference_on_the_core() {
    blocked_kernels_on_the_core(2);
}

/// The checks of `tests/fixtures/rtl/pools.c`: 4 poolings x 18 precisions x 10 shapes.
const POOL_CHECKS: usize = 360;

/// Runs `tests/fixtures/rtl/pools.c` on the core: the blocked poolings (window and global, max
/// and average) at every input and output precision, shapes with leftovers and padding, against
/// the generic kernels.
#[test]
fn blocked_poolings_match_the_generic_kernels_on_the_core() {
    fixture_passes_on_the_core("pools", POOL_CHECKS);
}

/// The same checks built for the host with gcc: the portable C of `kernels/simd.h`, bit for bit.
/// Skipped, with the reason printed, where gcc is not installed.
#[test]
fn blocked_kernels_match_the_reference_on_the_host() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rtl");
    for (fixture, checks) in [
        ("kernels_w8", KERNEL_CHECKS),
        ("kernels_w4", KERNEL_CHECKS),
        ("kernels_w2", KERNEL_CHECKS),
        ("pools", POOL_CHECKS),
    ] {
        let exe = temp().join(format!("{fixture}_host"));
        let built = std::process::Command::new("gcc")
            .args(["-std=gnu99", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&exe)
            .arg(fixtures.join(format!("{fixture}.c")))
            .output();
        let built = match built {
            Ok(built) => built,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: gcc not found; install the Debian package gcc");
                return;
            }
            Err(e) => panic!("gcc: {e}"),
        };
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let run = std::process::Command::new(&exe).output().unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{fixture}: {stdout}");
        assert_eq!(stdout.trim(), format!("ok {checks}"), "{fixture}");
    }
}
