//! The fuzzer of every reader of untrusted input (`qsearch::fuzz`): a short seeded run of each
//! reader as a test, and the long run `scripts/fuzz.sh SECONDS` starts (an ignored test).
//!
//! This binary's allocator records the largest allocation request, so that a reader allocating
//! what a header claims is a finding; a request past `ABORT_BYTES` is refused outright (the
//! process aborts, after saying which input did it).

use qsearch::fuzz::{self, CURRENT_INPUT, LARGEST_ALLOCATION, Report, Settings};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Requests above this abort the process instead of exhausting the machine's memory.
const ABORT_BYTES: usize = 1 << 30;

struct Measured;

impl Measured {
    fn check(size: usize) -> bool {
        LARGEST_ALLOCATION.fetch_max(size, Ordering::Relaxed);
        if size > ABORT_BYTES {
            // No allocation from here on: format into a stack buffer.
            let mut buf = [0u8; 160];
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = writeln!(
                cursor,
                "fuzz: refusing an allocation of {size} bytes, reading input {} of the current reader",
                CURRENT_INPUT.load(Ordering::Relaxed)
            );
            let n = cursor.position() as usize;
            let _ = std::io::stderr().write_all(&buf[..n]);
            return false;
        }
        true
    }
}

unsafe impl GlobalAlloc for Measured {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Measured::check(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Measured::check(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Measured::check(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Measured = Measured;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_all(settings: &Settings, only: Option<&[String]>, verbose: bool) -> Vec<Report> {
    let mut reports = Vec::new();
    for target in fuzz::targets(root()) {
        if only.is_some_and(|names| !names.iter().any(|n| n == target.name)) {
            continue;
        }
        if verbose {
            eprintln!("fuzzing {} ({} seeds)", target.name, target.seeds.len());
        }
        let terminal = std::io::stderr().is_terminal();
        let mut shown = 0.0;
        let report = fuzz::run(&target, settings, |r| {
            if verbose && (terminal || r.seconds >= shown + 60.0) {
                shown = r.seconds;
                eprint!(
                    "{}  {}: {} inputs, {} errors, {} panics, {} hangs, {:.0} s   {}",
                    if terminal { "\r" } else { "" },
                    r.target,
                    r.inputs,
                    r.errors,
                    r.panics,
                    r.hangs,
                    r.seconds,
                    if terminal { "" } else { "\n" }
                );
            }
        });
        if verbose && terminal {
            eprintln!();
        }
        reports.push(report);
    }
    reports
}

/// Every reader, a few seconds each: no panic, no hang, no error without the file's name, no
/// allocation of what an input claims.
#[test]
fn every_reader_survives_a_short_seeded_run() {
    let settings = Settings {
        seed: 20_240_611,
        budget: Duration::from_millis(2500),
        max_inputs: Some(20_000),
        time_limit: Duration::from_secs(2),
    };
    let reports = run_all(&settings, None, false);
    let table = fuzz::table(&reports);
    println!("{table}");
    assert_eq!(reports.len(), fuzz::targets(root()).len());
    for r in &reports {
        assert!(r.clean(), "{table}");
        assert!(
            r.inputs >= 50,
            "{}: only {} inputs\n{table}",
            r.target,
            r.inputs
        );
        // The mutations reach past the seeds both ways: some inputs are refused, some read.
        assert!(r.errors > 0, "{}: no input was refused\n{table}", r.target);
        assert!(r.accepted > 0, "{}: no input was read\n{table}", r.target);
    }
}

/// The same seed gives the same inputs; another seed, other ones.
#[test]
fn inputs_are_a_function_of_the_seed() {
    for target in fuzz::targets(root()) {
        let first: Vec<Vec<u8>> = (0..40).map(|i| fuzz::input(&target, 7, i)).collect();
        let again: Vec<Vec<u8>> = (0..40).map(|i| fuzz::input(&target, 7, i)).collect();
        let other: Vec<Vec<u8>> = (0..40).map(|i| fuzz::input(&target, 8, i)).collect();
        assert_eq!(first, again, "{}", target.name);
        assert_ne!(first, other, "{}", target.name);
        // The seeds come first, unchanged; some are read (the ONNX fixtures include malformed
        // files, refused with the file's name).
        let mut read = 0;
        for (i, seed) in target.seeds.iter().enumerate() {
            assert_eq!(&first[i], seed, "{}", target.name);
            match target.read(seed) {
                Ok(()) => read += 1,
                Err(e) => assert!(e.contains(&target.origin), "{}: {e}", target.name),
            }
        }
        assert!(read > 0, "{}: no seed is read", target.name);
    }
}

/// The long run: `scripts/fuzz.sh SECONDS` (QSEARCH_FUZZ_SECONDS per reader, QSEARCH_FUZZ_SEED,
/// QSEARCH_FUZZ_TARGETS = comma-separated readers, QSEARCH_FUZZ_OUT = the JSON report).
/// `QSEARCH_FUZZ_REPLAY=reader:index` writes that input to `results/fuzz/` instead.
#[test]
#[ignore]
fn long_run() {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let seed = env("QSEARCH_FUZZ_SEED")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    if let Some(replay) = env("QSEARCH_FUZZ_REPLAY") {
        let (name, index) = replay
            .split_once(':')
            .expect("QSEARCH_FUZZ_REPLAY=reader:index");
        let index: u64 = index.parse().expect("an input index");
        let target = fuzz::targets(root())
            .into_iter()
            .find(|t| t.name == name)
            .expect("a reader's name");
        let dir = root().join("results/fuzz");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-seed{seed}-{index}.bin"));
        std::fs::write(&path, fuzz::input(&target, seed, index)).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    let seconds: f64 = env("QSEARCH_FUZZ_SECONDS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(600.0);
    let only: Option<Vec<String>> =
        env("QSEARCH_FUZZ_TARGETS").map(|t| t.split(',').map(|s| s.trim().to_string()).collect());
    let settings = Settings {
        seed,
        budget: Duration::from_secs_f64(seconds),
        max_inputs: None,
        time_limit: Duration::from_secs(2),
    };
    let reports = run_all(&settings, only.as_deref(), true);
    let table = fuzz::table(&reports);
    println!("{table}");
    let out = env("QSEARCH_FUZZ_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("results/fuzz.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let json = fuzz::report_json(&reports, &settings);
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("wrote {}", out.display());
    assert!(reports.iter().all(Report::clean), "{table}");
}
