//! A seeded mutation fuzzer for every reader of untrusted input.
//!
//! Model files, platform descriptions, search spaces, tables and datasets come from anywhere, so
//! each reader must refuse what it cannot use with an error that names the file and says what is
//! wrong; it must never panic, hang, or allocate what a header claims before checking it.
//! [`targets`] lists one entry per reader: seed inputs (the repository's fixtures and valid files
//! built in code), how to mutate them (protobuf structure, binary headers or text tokens) and the
//! call of the reader on the bytes in memory. [`run`] feeds a target mutated inputs, each on a
//! worker thread under `catch_unwind` with a time limit, and counts panics, hangs, errors that do
//! not name the input, and large allocations (measured when the running binary installs an
//! allocator that records them in [`LARGEST_ALLOCATION`], as `tests/fuzz.rs` does).
//!
//! Input `i` of a target is a pure function of the seed, the target's name and `i`
//! ([`input`]), so a finding is reproduced from the three.

use inputs::words;
use serde::Serialize;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The largest single allocation requested while the current input was read, in bytes. A
/// binary that wants allocations measured installs a global allocator that raises it (with
/// `fetch_max`); [`run`] resets it before each input.
pub static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

/// The index of the input being read, for an allocator's message when it refuses a request.
pub static CURRENT_INPUT: AtomicU64 = AtomicU64::new(0);

/// An allocation above this many bytes while reading one (small) input is a finding: the reader
/// trusted a size the input claims.
pub(crate) const ALLOCATION_LIMIT: usize = 256 << 20;

/// Mutated inputs are cut to this many bytes.
mod inputs;
mod protobuf;
mod targets;
mod text;

pub use inputs::input;
pub use targets::targets;

/// Mutated inputs are cut to this many bytes.
const MAX_INPUT_BYTES: usize = 1 << 20;

/// Name of the worker threads; the panic hook keeps their panics quiet and records them.
const WORKER: &str = "qsearch-fuzz-worker";

/// How a target's inputs are mutated, besides plain byte mutations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Protobuf: the wire format's fields (varints, lengths, nested messages) and, for ONNX,
    /// the model's nodes, tensors and attributes.
    Onnx,
    /// Binary headers: big- and little-endian integers at any offset.
    Binary,
    /// Text (TOML, CSV, JSON): numbers, words, punctuation and lines; kept valid UTF-8.
    Text,
}

type Reader = Arc<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

/// One reader under test.
pub struct Target {
    pub name: &'static str,
    /// The name the reader is given for its input; every error must contain it.
    pub origin: String,
    pub style: Style,
    pub seeds: Vec<Vec<u8>>,
    /// Words to insert (field names, operator names, layer names of the seeds).
    pub dictionary: Vec<Vec<u8>>,
    read: Reader,
}

impl Target {
    fn new(
        name: &'static str,
        origin: &str,
        style: Style,
        seeds: Vec<Vec<u8>>,
        read: impl Fn(&[u8], &str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Target {
        let mut dictionary: Vec<Vec<u8>> = seeds.iter().flat_map(|s| words(s)).collect();
        dictionary.sort();
        dictionary.dedup();
        let label = origin.to_string();
        Target {
            name,
            origin: origin.to_string(),
            style,
            seeds,
            dictionary,
            read: Arc::new(move |bytes| read(bytes, &label)),
        }
    }

    /// Calls the reader on `bytes` (on the calling thread, panics included).
    pub fn read(&self, bytes: &[u8]) -> Result<(), String> {
        (self.read)(bytes)
    }
}

/// How long and how hard to fuzz.
#[derive(Clone, Debug)]
pub struct Settings {
    pub seed: u64,
    /// Wall time per target.
    pub budget: Duration,
    /// Stop a target after this many inputs, if earlier.
    pub max_inputs: Option<u64>,
    /// An input that takes longer is a hang.
    pub time_limit: Duration,
}

/// An input that made a reader panic, hang, allocate too much, or fail without naming it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub index: u64,
    pub input_bytes: usize,
    pub message: String,
}

/// The outcome of fuzzing one target.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub origin: String,
    pub seed: u64,
    pub inputs: u64,
    pub accepted: u64,
    pub errors: u64,
    pub distinct_errors: usize,
    pub panics: u64,
    pub hangs: u64,
    /// Errors whose message does not contain the input's name.
    pub unnamed_errors: u64,
    pub large_allocations: u64,
    pub largest_allocation_bytes: usize,
    pub slowest_input_ms: f64,
    pub seconds: f64,
    /// The first findings of each kind, to reproduce with [`input`].
    pub findings: Vec<Finding>,
}

impl Report {
    /// No panic, hang, unnamed error or large allocation.
    pub fn clean(&self) -> bool {
        self.panics == 0
            && self.hangs == 0
            && self.unnamed_errors == 0
            && self.large_allocations == 0
    }
}

enum Outcome {
    Accepted,
    Refused(String),
    Panicked(String),
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps worker threads' panics off stderr and records their message and place; other threads'
/// panics go to the hook that was there before.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(WORKER) {
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let place = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{payload}{place}")));
            } else {
                previous(info);
            }
        }));
    });
}

struct Worker {
    inputs: mpsc::Sender<Vec<u8>>,
    outcomes: mpsc::Receiver<Outcome>,
}

impl Worker {
    fn spawn(read: Reader) -> Worker {
        let (inputs, rx) = mpsc::channel::<Vec<u8>>();
        let (tx, outcomes) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(WORKER.into())
            .spawn(move || {
                for input in rx {
                    let outcome = match catch_unwind(AssertUnwindSafe(|| read(&input))) {
                        Ok(Ok(())) => Outcome::Accepted,
                        Ok(Err(message)) => Outcome::Refused(message),
                        Err(_) => Outcome::Panicked(
                            LAST_PANIC
                                .with(|p| p.borrow_mut().take())
                                .unwrap_or_else(|| "(no message)".into()),
                        ),
                    };
                    if tx.send(outcome).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            // Without a worker every input reports as a panic; say why once.
            eprintln!("fuzz: cannot start a worker thread: {e}");
        }
        Worker { inputs, outcomes }
    }
}

/// Fuzzes `target` under `settings`; `progress` is called about once a second with the report
/// so far.
pub fn run(target: &Target, settings: &Settings, mut progress: impl FnMut(&Report)) -> Report {
    install_panic_hook();
    let mut report = Report {
        target: target.name.into(),
        origin: target.origin.clone(),
        seed: settings.seed,
        inputs: 0,
        accepted: 0,
        errors: 0,
        distinct_errors: 0,
        panics: 0,
        hangs: 0,
        unnamed_errors: 0,
        large_allocations: 0,
        largest_allocation_bytes: 0,
        slowest_input_ms: 0.0,
        seconds: 0.0,
        findings: Vec::new(),
    };
    let mut distinct = std::collections::HashSet::new();
    let mut worker = Worker::spawn(target.read.clone());
    let started = Instant::now();
    let mut last_progress = started;
    // The first input of each distinct finding (numbers aside), up to 20.
    let record =
        |report: &mut Report, kind: &'static str, index: u64, input: &[u8], message: String| {
            let known = report
                .findings
                .iter()
                .any(|f| f.kind == kind && without_digits(&f.message) == without_digits(&message));
            if !known && report.findings.len() < 20 {
                report.findings.push(Finding {
                    kind,
                    index,
                    input_bytes: input.len(),
                    message,
                });
            }
        };
    for index in 0.. {
        if started.elapsed() >= settings.budget || settings.max_inputs.is_some_and(|m| index >= m) {
            break;
        }
        let data = input(target, settings.seed, index);
        CURRENT_INPUT.store(index, Ordering::SeqCst);
        LARGEST_ALLOCATION.store(0, Ordering::SeqCst);
        let t0 = Instant::now();
        let outcome = match worker.inputs.send(data.clone()) {
            Ok(()) => worker.outcomes.recv_timeout(settings.time_limit),
            Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
        };
        let elapsed = t0.elapsed();
        report.inputs += 1;
        report.slowest_input_ms = report.slowest_input_ms.max(elapsed.as_secs_f64() * 1e3);
        match outcome {
            Ok(Outcome::Accepted) => report.accepted += 1,
            Ok(Outcome::Refused(message)) => {
                report.errors += 1;
                let named = message.contains(&target.origin)
                    && message.trim().len() > target.origin.len() + 2;
                if !named {
                    report.unnamed_errors += 1;
                    record(&mut report, "unnamed error", index, &data, message.clone());
                }
                // Distinct errors, numbers aside.
                distinct.insert(
                    without_digits(&message)
                        .chars()
                        .take(80)
                        .collect::<String>(),
                );
            }
            Ok(Outcome::Panicked(message)) => {
                report.panics += 1;
                record(&mut report, "panic", index, &data, message);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                report.hangs += 1;
                record(
                    &mut report,
                    "hang",
                    index,
                    &data,
                    format!("no answer within {:?}", settings.time_limit),
                );
                // The stuck worker is left to finish on its own.
                worker = Worker::spawn(target.read.clone());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                report.panics += 1;
                record(
                    &mut report,
                    "panic",
                    index,
                    &data,
                    "the worker thread died".into(),
                );
                worker = Worker::spawn(target.read.clone());
            }
        }
        let largest = LARGEST_ALLOCATION.load(Ordering::SeqCst);
        report.largest_allocation_bytes = report.largest_allocation_bytes.max(largest);
        if largest > ALLOCATION_LIMIT {
            report.large_allocations += 1;
            record(
                &mut report,
                "large allocation",
                index,
                &data,
                format!("allocated {largest} bytes at once"),
            );
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            report.distinct_errors = distinct.len();
            report.seconds = started.elapsed().as_secs_f64();
            progress(&report);
        }
    }
    report.distinct_errors = distinct.len();
    report.seconds = started.elapsed().as_secs_f64();
    report
}

fn without_digits(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// The reports as a table: one row per target.
pub fn table(reports: &[Report]) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>10} {:>10} {:>8} {:>7} {:>6} {:>8} {:>9} {:>10} {:>8}\n",
        "reader",
        "inputs",
        "accepted",
        "errors",
        "kinds",
        "panics",
        "hangs",
        "unnamed",
        "big alloc",
        "slowest ms",
        "seconds"
    );
    out += &"-".repeat(out.len() - 1);
    out.push('\n');
    for r in reports {
        out += &format!(
            "{:<24} {:>10} {:>10} {:>10} {:>8} {:>7} {:>6} {:>8} {:>9} {:>10.1} {:>8.1}\n",
            r.target,
            r.inputs,
            r.accepted,
            r.errors,
            r.distinct_errors,
            r.panics,
            r.hangs,
            r.unnamed_errors,
            r.large_allocations,
            r.slowest_input_ms,
            r.seconds
        );
    }
    for r in reports {
        for f in &r.findings {
            out += &format!(
                "{} {} at input {} ({} bytes): {}\n",
                r.target, f.kind, f.index, f.input_bytes, f.message
            );
        }
    }
    out
}

/// The reports as JSON (`results/fuzz.json`).
pub fn report_json(reports: &[Report], settings: &Settings) -> serde_json::Value {
    serde_json::json!({
        "seed": settings.seed,
        "seconds_per_reader": settings.budget.as_secs_f64(),
        "max_inputs_per_reader": settings.max_inputs,
        "time_limit_per_input_s": settings.time_limit.as_secs_f64(),
        "allocation_limit_bytes": ALLOCATION_LIMIT,
        "not_fuzzed": {"npz": "qsearch has no NPZ reader"},
        "readers": reports,
    })
}
