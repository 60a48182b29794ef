//! The main job survives `kill -9`: killed during training, during fine-tuning and during
//! deployment, and rerun each time, it ends with the report and the choice of an uninterrupted
//! run, and never redoes a finished fine-tune.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qsearch-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The main job on a small schedule (two training epochs, so that it can be killed between
/// them), writing under `results`.
fn main_job(results: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qsearch"));
    command
        .args([
            "--budget",
            "512KB",
            "--objective",
            "latency",
            "--epochs",
            "2",
        ])
        .args([
            "--train-images",
            "1500",
            "--finetune-images",
            "500",
            "--top-k",
            "2",
        ])
        .args(["--policies", "memory-driven", "--run", "main", "--quiet"])
        .arg("--results")
        .arg(results)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn run_to_end(results: &Path) {
    let out = main_job(results).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the main job and kills it with SIGKILL as soon as `moment` holds.
fn kill_when(results: &Path, what: &str, moment: impl Fn() -> bool) {
    let mut child = main_job(results).spawn().unwrap();
    let started = Instant::now();
    loop {
        if moment() {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the main job ended ({status}) before {what}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Files named `name` anywhere under `dir`.
fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

/// Finished fine-tunes (their record holds a test accuracy) with their record's time.
fn finished_finetunes(results: &Path) -> Vec<(PathBuf, SystemTime)> {
    find(&results.join("main/finetune"), "finetune.json")
        .into_iter()
        .filter(|p| {
            let record: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_default())
                    .unwrap_or_default();
            record["test_accuracy"].is_number()
        })
        .map(|p| {
            let time = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, time)
        })
        .collect()
}

/// `file` of the run under `results`, with the results folder's path taken out.
fn outcome(results: &Path, file: &str) -> String {
    std::fs::read_to_string(results.join("main").join(file))
        .unwrap()
        .replace(&results.display().to_string(), "RESULTS")
}

#[test]
fn main_job_survives_kill_9() {
    let reference = temp("reference");
    run_to_end(&reference);

    let results = temp("killed");
    // During training: the first of two epochs is checkpointed, the second runs.
    kill_when(&results, "the first training epoch", || {
        !find(&results.join("models"), "state.json").is_empty()
    });
    // During fine-tuning: one fine-tune has finished, the next runs.
    kill_when(&results, "a finished fine-tune", || {
        !finished_finetunes(&results).is_empty()
    });
    let finished = finished_finetunes(&results);
    // During deployment.
    kill_when(&results, "the deploy stage", || {
        results.join("main/deploy").exists()
    });
    run_to_end(&results);

    for (record, time) in &finished {
        assert_eq!(
            std::fs::metadata(record).unwrap().modified().unwrap(),
            *time,
            "{} was fine-tuned again",
            record.display()
        );
    }
    for file in ["report.md", "chosen.json"] {
        assert_eq!(
            outcome(&results, file),
            outcome(&reference, file),
            "{file} differs from the uninterrupted run's"
        );
    }
    std::fs::remove_dir_all(&reference).ok();
    std::fs::remove_dir_all(&results).ok();
}
