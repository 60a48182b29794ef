//! SLURM: the sbatch script of a job array over a sweep's tasks, its submission, and the state
//! of submitted array tasks from `squeue`. Submitted jobs are recorded in `jobs.json`.

use super::BatchError;
use super::sweep::{Plan, SweepDir};
use crate::escape::shell_word;
use crate::results::write_json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A submitted job array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub tasks: Vec<usize>,
    pub script: String,
    /// The options it was submitted with (`--array=...`, ...).
    #[serde(default)]
    pub options: Vec<String>,
}

/// `0-3,7,9-10`: the task list as SLURM's `--array` ranges.
pub fn array_ranges(tasks: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < tasks.len() {
        let start = tasks[i];
        let mut end = start;
        while i + 1 < tasks.len() && tasks[i + 1] == end + 1 {
            i += 1;
            end = tasks[i];
        }
        parts.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
        i += 1;
    }
    parts.join(",")
}

/// The sbatch options of a job array over `tasks` of the sweep in `dir`. They are passed to
/// sbatch as arguments, never written into the script, so that no value from the sweep file or
/// the folder's path is read by a shell or by sbatch's `#SBATCH` parser.
pub(crate) fn sbatch_options(plan: &Plan, dir: &Path, tasks: &[usize]) -> Vec<String> {
    let r = &plan.sweep.slurm;
    let mut options = vec![
        format!("--job-name=qsearch-{}", plan.sweep.name),
        format!("--array={}%{}", array_ranges(tasks), r.max_concurrent),
        format!("--time={}", r.time),
        format!("--mem={}", r.memory),
        format!("--cpus-per-task={}", r.cpus_per_task),
        format!("--output={}/logs/task-%a-job-%A.log", dir.display()),
    ];
    if let Some(p) = &r.partition {
        options.push(format!("--partition={p}"));
    }
    if let Some(a) = &r.account {
        options.push(format!("--account={a}"));
    }
    options
}

/// The batch script each array task runs: `qsearch batch run DIR --task $SLURM_ARRAY_TASK_ID`
/// with the `qsearch` binary `exe` and the sweep folder `dir` (absolute) as quoted shell words.
pub(crate) fn sbatch_script(dir: &Path, exe: &Path) -> String {
    format!(
        "#!/bin/bash\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\n\
         exec {} batch run {} --task \"$SLURM_ARRAY_TASK_ID\"\n",
        shell_word(&exe.display().to_string()),
        shell_word(&dir.display().to_string())
    )
}

/// The jobs submitted for the sweep in `folder`, oldest first.
pub fn jobs(folder: &SweepDir) -> Result<Vec<Job>, BatchError> {
    let path = folder.jobs_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| BatchError::Input(format!("{}: {e}", path.display()))),
        Err(_) => Ok(Vec::new()),
    }
}

/// Writes the sbatch script for `tasks`, submits it and records the job.
pub fn submit(plan: &Plan, dir: &Path, tasks: &[usize]) -> Result<Job, BatchError> {
    let folder = SweepDir::new(dir);
    let exe = std::env::current_exe()
        .map_err(|e| BatchError::Input(format!("cannot locate the qsearch binary: {e}")))?;
    let mut recorded = jobs(&folder)?;
    let script_path = dir.join(format!("submit-{}.sbatch", recorded.len() + 1));
    std::fs::create_dir_all(folder.logs()).map_err(|e| io(&folder.logs(), e))?;
    crate::results::write_text(&script_path, &sbatch_script(dir, &exe))?;
    let options = sbatch_options(plan, dir, tasks);
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(&options)
        .arg(&script_path)
        .output()
        .map_err(|e| {
            BatchError::Slurm(format!(
                "cannot run sbatch ({e}); submit from a SLURM login node, start a single-node \
                 SLURM with scripts/slurm-up.sh, or run the tasks here with --local J"
            ))
        })?;
    if !out.status.success() {
        return Err(BatchError::Slurm(format!(
            "sbatch {} failed: {}",
            script_path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job_id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(BatchError::Slurm(format!(
            "sbatch printed '{}' where a job id was expected",
            stdout.trim()
        )));
    }
    let job = Job {
        job_id,
        tasks: tasks.to_vec(),
        script: script_path.display().to_string(),
        options,
    };
    recorded.push(job.clone());
    let json = serde_json::to_value(&recorded).map_err(|e| BatchError::Input(e.to_string()))?;
    write_json(&folder.jobs_file(), &json)?;
    Ok(job)
}

fn io(path: &Path, e: std::io::Error) -> BatchError {
    BatchError::Input(format!("{}: {e}", path.display()))
}

/// SLURM's state of each task of the recorded `jobs` (`RUNNING`, `PENDING`, `CANCELLED`, ...),
/// the latest submission of a task winning. Jobs SLURM has forgotten (finished a while ago) are
/// absent. `None` when `squeue` cannot be run.
pub(crate) fn task_states(jobs: &[Job]) -> Option<BTreeMap<usize, String>> {
    let mut states = BTreeMap::new();
    for job in jobs {
        let out = Command::new("squeue")
            .args(["-h", "-r", "-t", "all", "-o", "%i|%T", "-j", &job.job_id])
            .output()
            .ok()?;
        // squeue fails for a job id it no longer knows; that job simply reports nothing.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((id, state)) = line.trim().split_once('|') else {
                continue;
            };
            let task = id
                .strip_prefix(&format!("{}_", job.job_id))
                .and_then(|t| t.parse::<usize>().ok());
            if let Some(task) = task.filter(|t| job.tasks.contains(t)) {
                states.insert(task, state.to_string());
            }
        }
    }
    Some(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_ranges_compress_runs() {
        assert_eq!(array_ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_ranges(&[1, 3, 4, 5, 9]), "1,3-5,9");
        assert_eq!(array_ranges(&[7]), "7");
    }
}
