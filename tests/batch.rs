//! Batch sweeps end to end through the `qsearch` binary: local processes, and a real
//! single-node SLURM (brought up by scripts/slurm-up.sh) with a task cancelled midway.

use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn qsearch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qsearch"))
        .args(args)
        .output()
        .expect("run qsearch")
}

fn ok(args: &[&str]) -> String {
    let out = qsearch(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "qsearch {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qsearch-batch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 4-task sweep (2 policies x 2 budgets) on ResNet-8; `evaluations` sets how long the
/// evolutionary tasks take.
fn sweep_file(dir: &Path, evaluations: u64) -> String {
    let path = dir.join("sweep.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "test-sweep"
models = ["zoo:resnet8"]
platforms = ["gap8"]
budgets = ["60KB", "100KB"]
policies = ["memory-driven", "evolution"]
seeds = 1

[settings]
evaluations = {evaluations}

[slurm]
time = "00:10:00"
memory = "1G"
max_concurrent = 2
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The merged table without the wall-time column (the one thing that differs between runs).
fn merged(dir: &Path) -> DataFrame {
    let file = std::fs::File::open(dir.join("merged.parquet")).unwrap();
    ParquetReader::new(file)
        .finish()
        .unwrap()
        .drop("seconds")
        .unwrap()
}

#[test]
fn local_sweep_is_resumable_and_merges() {
    let work = temp("local");
    let sweep = sweep_file(&work, 4000);
    let dir = work.join("sweep");
    let d = dir.to_str().unwrap();
    assert!(ok(&["batch", "plan", &sweep, "-o", d]).contains("4 tasks planned"));
    // Planning the same sweep again is a no-op; another sweep in the folder is refused.
    ok(&["batch", "plan", &sweep, "-o", d]);
    let other = sweep_file(&temp("local-other"), 5000);
    let out = qsearch(&["batch", "plan", &other, "-o", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds the plan of another sweep"));

    let out = qsearch(&["batch", "merge", d]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 of 4 tasks"));

    assert!(ok(&["batch", "run", d, "--task", "1"]).contains("task 1: done"));
    let shard = dir.join("shards/task-00001.parquet");
    let written = std::fs::metadata(&shard).unwrap().modified().unwrap();
    assert!(ok(&["batch", "run", d, "--task", "1"]).contains("already done"));
    assert_eq!(
        std::fs::metadata(&shard).unwrap().modified().unwrap(),
        written
    );
    let out = qsearch(&["batch", "run", d, "--task", "9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has tasks 0 to 3"));

    let status = ok(&["batch", "status", d]);
    assert!(
        status.contains("1 done") && status.contains("3 missing"),
        "{status}"
    );
    assert!(ok(&["batch", "submit", d, "--local", "2"]).contains("ran 3 tasks"));
    assert!(ok(&["batch", "status", d]).contains("4 tasks: 4 done"));
    let text = ok(&["batch", "merge", d]);
    assert!(
        text.contains("memory-driven") && text.contains("evolution"),
        "{text}"
    );
    for file in ["merged.csv", "summary.csv", "summary.txt", "plots"] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let frame = merged(&dir);
    let tasks = frame.column("task").unwrap().u32().unwrap();
    assert_eq!(tasks.unique().unwrap().len(), 4);

    let (model, hostile) = hostile_sweep(&work);
    let h = hostile.to_str().unwrap();
    assert!(ok(&["batch", "submit", h, "--local", "1"]).contains("ran 1 task"));
    hostile_sweep_merged(&work, &model, &hostile);
}

/// A main sweep on a small schedule: two cells (GAP8 and XpulpNN at 128 KB) of the default network
/// at width 0.5, searched also at width 0.25 and at the widest width whose uniform 8-bit network
/// fits (0.425), run as two local processes that share the trained networks.
#[test]
fn local_main_sweep_compares_the_joint_choice_with_both_kinds() {
    let work = temp("main");
    let space = work.join("space.toml");
    let default = include_str!("../search_spaces/default.toml");
    std::fs::write(&space, format!("widths = [0.5, 0.25]\n{default}")).unwrap();
    let sweep = work.join("sweep.toml");
    std::fs::write(
        &sweep,
        format!(
            r#"name = "test-main"
models = ["zoo:fashion-cnn:width=0.5"]
platforms = ["gap8", "xpulpnn"]
budgets = ["128KB"]
policies = ["memory-driven"]
space = "{}"

[main]
epochs = 1
train_images = 1500
finetune_images = 300
top_k = 2
"#,
            space.display()
        ),
    )
    .unwrap();
    let dir = work.join("sweep");
    let d = dir.to_str().unwrap();
    let sweep = sweep.to_str().unwrap();
    assert!(ok(&["batch", "plan", sweep, "-o", d]).contains("2 tasks planned"));
    assert!(ok(&["batch", "submit", d, "--local", "2"]).contains("ran 2 tasks"));
    assert!(ok(&["batch", "submit", d, "--local", "2"]).contains("nothing to run"));
    let text = ok(&["batch", "merge", d]);
    for line in [
        "joint search (chosen)",
        "uniform 8-bit, any width",
        "mixed, width 0.5",
        "gap8 memory 128KB: the joint search chose width ",
        "xpulpnn memory 128KB: the joint search chose width ",
        "The joint search is faster than both at equal accuracy (within 0.1 point)",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let trained: Vec<String> = std::fs::read_dir(dir.join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    assert_eq!(trained.len(), 3, "{trained:?}");

    let file = std::fs::File::open(dir.join("summary.parquet")).unwrap();
    let summary = ParquetReader::new(file).finish().unwrap();
    assert_eq!(summary.height(), 6, "{summary}");
    let column = |name: &str| -> Vec<Option<f64>> {
        let c = summary.column(name).unwrap().cast(&DataType::Float64);
        c.unwrap().f64().unwrap().iter().collect()
    };
    let (width, accuracy, memory) = (column("width"), column("accuracy"), column("memory_bytes"));
    for cell in 0..2 {
        let [joint, eight, _mixed] = [0, 1, 2].map(|k| 3 * cell + k);
        // The widest 8-bit network that fits 128 KB is the width-0.425 one.
        assert_eq!(width[eight], Some(0.425), "{summary}");
        assert!(memory[joint].unwrap() <= 128_000.0, "{summary}");
        // The joint choice is within the tie of the most accurate network that fits.
        for other in [3 * cell + 1, 3 * cell + 2] {
            if let (Some(j), Some(o)) = (accuracy[joint], accuracy[other]) {
                assert!(j >= o - 0.1 - 1e-9, "{summary}");
            }
        }
    }
    let merged = merged(&dir);
    assert!(merged.column("chosen").is_ok() && merged.column("uniform_8_bit").is_ok());
}

/// A one-task sweep over an ONNX model whose folder, file and node names hold spaces, quotes and
/// shell syntax, planned into a sweep folder under the same hostile folder; returns the model's
/// path and the sweep folder.
fn hostile_sweep(work: &Path) -> (String, PathBuf) {
    let odd = work.join("models $(touch pwned) `touch pwned` 'q' \"d\" é");
    std::fs::create_dir_all(&odd).unwrap();
    let mut graph = qsearch::graph::zoo::build("resnet8").unwrap();
    for node in &mut graph.nodes {
        node.name = format!("{} */ $(touch pwned) \"x\" <b>", node.name);
    }
    let model = odd.join("net;touch pwned.onnx");
    qsearch::graph::onnx::export_file(&graph, &model).unwrap();
    let model = model.display().to_string();
    let sweep = odd.join("sweep.toml");
    std::fs::write(
        &sweep,
        format!(
            "name = \"odd\"\nmodels = [{model:?}]\nplatforms = [\"gap8\"]\nbudgets = [\"60KB\"]\n\
             policies = [\"memory-driven\"]\nseeds = 1\n"
        ),
    )
    .unwrap();
    let dir = odd.join("sweep dir $(touch pwned)");
    ok(&[
        "batch",
        "plan",
        sweep.to_str().unwrap(),
        "-o",
        dir.to_str().unwrap(),
    ]);
    (model, dir)
}

/// The hostile sweep's merged table names the model verbatim, and nothing ran a name.
fn hostile_sweep_merged(work: &Path, model: &str, dir: &Path) {
    ok(&["batch", "merge", dir.to_str().unwrap()]);
    let frame = merged(dir);
    let models = frame.column("model").unwrap().str().unwrap();
    assert_eq!(models.get(0), Some(model));
    let pwned = std::process::Command::new("find")
        .arg(work)
        .args(["-name", "pwned"])
        .output()
        .unwrap();
    assert!(
        pwned.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&pwned.stdout)
    );
}

/// Polls `batch status` until `done` says so or a minute passes.
fn wait_for(d: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let status = ok(&["batch", "status", d]);
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn job_id(submit_output: &str) -> String {
    submit_output
        .split_whitespace()
        .nth(2)
        .expect("submitted job N")
        .to_string()
}

#[test]
fn slurm_sweep_survives_a_cancelled_task() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let up = Command::new(root.join("scripts/slurm-up.sh"))
        .output()
        .expect("scripts/slurm-up.sh (scripts/setup.sh installs slurm-wlm and munge)");
    assert!(
        up.status.success(),
        "single-node SLURM did not come up:\n{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    // Evolutionary tasks long enough to be cancelled midway.
    let work = temp("slurm");
    let sweep = sweep_file(&work, 2_500_000);
    let dir = work.join("sweep");
    let d = dir.to_str().unwrap();
    ok(&["batch", "plan", &sweep, "-o", d]);
    let submitted = ok(&["batch", "submit", d]);
    assert!(submitted.contains("array 0-3"), "{submitted}");
    let job = job_id(&submitted);
    let script = std::fs::read_to_string(dir.join("submit-1.sbatch")).unwrap();
    assert!(
        script.contains("--task \"$SLURM_ARRAY_TASK_ID\""),
        "{script}"
    );
    let jobs = std::fs::read_to_string(dir.join("jobs.json")).unwrap();
    assert!(jobs.contains("--array=0-3%2"), "{jobs}");

    // Task 1 (evolution, 100 KB) is cancelled while it runs.
    wait_for(d, "task 1 to run", |s| task_line(s, 1).contains("running"));
    std::thread::sleep(Duration::from_secs(1));
    let cancel = Command::new("scancel")
        .arg(format!("{job}_1"))
        .status()
        .unwrap();
    assert!(cancel.success());
    // Task 3's process is killed with SIGKILL while it runs (not cancelled through SLURM).
    wait_for(d, "task 3 to run", |s| task_line(s, 3).contains("running"));
    std::thread::sleep(Duration::from_secs(1));
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &format!("batch run {d} --task 3$")])
        .status()
        .unwrap();
    assert!(killed.success(), "no process of task 3 to kill");
    let status = wait_for(d, "the array to end", |s| {
        s.contains("2 done, 0 running, 0 queued, 2 failed")
    });
    let line = task_line(&status, 1);
    assert!(
        line.contains("failed") && line.contains("CANCELLED"),
        "{status}"
    );
    assert!(task_line(&status, 3).contains("failed"), "{status}");
    for task in [1, 3] {
        assert!(!dir.join(format!("shards/task-0000{task}.parquet")).exists());
    }

    let resubmitted = ok(&["batch", "submit", d, "--missing"]);
    assert!(resubmitted.contains("array 1,3"), "{resubmitted}");
    wait_for(d, "the resubmitted task", |s| s.contains("4 tasks: 4 done"));
    ok(&["batch", "merge", d]);

    // The same sweep as local processes gives the same merged result.
    let local = work.join("local");
    let l = local.to_str().unwrap();
    ok(&["batch", "plan", &sweep, "-o", l]);
    // A local task process killed with SIGKILL leaves no shard and is run again as missing.
    let mut task = Command::new(env!("CARGO_BIN_EXE_qsearch"))
        .args(["batch", "run", l, "--task", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    task.kill().unwrap();
    task.wait().unwrap();
    assert!(task_line(&ok(&["batch", "status", l]), 1).contains("missing"));
    ok(&["batch", "submit", l, "--local", "2"]);
    ok(&["batch", "merge", l]);
    assert!(merged(&dir).equals_missing(&merged(&local)));

    // Paths and names full of shell syntax go through sbatch and the batch script as data.
    let (model, hostile) = hostile_sweep(&work);
    let h = hostile.to_str().unwrap();
    ok(&["batch", "submit", h]);
    wait_for(h, "the hostile sweep", |s| s.contains("1 tasks: 1 done"));
    hostile_sweep_merged(&work, &model, &hostile);
}

/// The status line of `task`.
fn task_line(status: &str, task: usize) -> String {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&task.to_string()))
        .unwrap_or_default()
        .to_string()
}
