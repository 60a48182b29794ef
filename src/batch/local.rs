//! Running a sweep's tasks as local processes when there is no cluster: the same
//! `qsearch batch run DIR --task I` an array task runs, `jobs` at a time.

use super::BatchError;
use super::sweep::SweepDir;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `tasks` of the sweep in `dir` as up to `jobs` concurrent processes, each with its share
/// of the cores. Returns the tasks that failed with the end of their log.
pub fn run_local(
    dir: &Path,
    tasks: &[usize],
    jobs: usize,
) -> Result<Vec<(usize, String)>, BatchError> {
    let exe = std::env::current_exe()
        .map_err(|e| BatchError::Input(format!("cannot locate the qsearch binary: {e}")))?;
    let folder = SweepDir::new(dir);
    let logs = folder.logs();
    std::fs::create_dir_all(&logs)
        .map_err(|e| BatchError::Input(format!("{}: {e}", logs.display())))?;
    let jobs = jobs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1).to_string();
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let bar = crate::progress::bar(true, "batch", tasks.len() as u64, "tasks");
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(tasks.len()) {
            scope.spawn(|| {
                while let Some(&task) = tasks.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let log = logs.join(format!("task-{task}-local.log"));
                    let outcome = run_one(&exe, dir, task, &threads, &log);
                    if let Err(why) = outcome {
                        failed.lock().map(|mut f| f.push((task, why))).ok();
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut failed = failed.into_inner().unwrap_or_default();
    failed.sort();
    Ok(failed)
}

/// One task as a child process logging to `log`; the error is the log's last line that is not
/// the exit-code line every failed command ends with.
fn run_one(exe: &Path, dir: &Path, task: usize, threads: &str, log: &Path) -> Result<(), String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let status = Command::new(exe)
        .args(["batch", "run"])
        .arg(dir)
        .args(["--task", &task.to_string()])
        .env("RAYON_NUM_THREADS", threads)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Err(text
        .lines()
        .rev()
        .find(|l| !l.starts_with(crate::exit::LINE))
        .map_or_else(|| status.to_string(), str::to_string))
}
