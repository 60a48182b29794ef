//! Sweep files and their plans: the grid (models x platforms x objectives x budgets x policies x
//! seeds, or for a main sweep one main job per model, platform, objective and budget) and the
//! SLURM resources, expanded into numbered tasks in a fixed order.

use super::BatchError;
use crate::flow::MainSchedule;
use crate::results::write_json;
use crate::search::{self, Settings};
use crate::units::parse_bytes;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The most tasks one sweep may expand to.
const MAX_TASKS: usize = 100_000;

/// A sweep file (`search_spaces/sweeps/*.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    pub name: String,
    pub models: Vec<String>,
    #[serde(default = "default_platforms")]
    pub platforms: Vec<String>,
    #[serde(default = "default_objectives")]
    pub objectives: Vec<String>,
    /// Which memory the budgets limit.
    #[serde(default)]
    pub limit: BudgetKind,
    pub budgets: Vec<String>,
    /// A search sweep's policies (one task each), or the policies whose winners every main job
    /// of a main sweep fine-tunes.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Seeds 0..N of the seed-dependent policies; deterministic ones run once (seed 0).
    #[serde(default = "one")]
    pub seeds: u64,
    #[serde(default = "default_space")]
    pub space: String,
    /// Search settings of every task; absent ones take `qsearch search`'s defaults, and each
    /// task's seed comes from `seeds`.
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub slurm: SlurmResources,
    /// Present in a main sweep: every grid cell runs the main job (train at every width, search,
    /// fine-tune, choose) on this schedule instead of one search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<MainSchedule>,
}

/// The policy name a main sweep's tasks carry.
pub const MAIN_TASK: &str = "main";

/// The memory a budget limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetKind {
    /// Flash plus peak RAM, as `--budget`.
    #[default]
    Memory,
    Flash,
    Ram,
}

impl BudgetKind {
    pub fn name(self) -> &'static str {
        match self {
            BudgetKind::Memory => "memory",
            BudgetKind::Flash => "flash",
            BudgetKind::Ram => "ram",
        }
    }
}

/// What each array task asks SLURM for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmResources {
    /// `--time` (e.g. `00:30:00`).
    #[serde(default = "default_time")]
    pub time: String,
    /// `--mem` (e.g. `2G`).
    #[serde(default = "default_memory")]
    pub memory: String,
    #[serde(default = "one_usize")]
    pub cpus_per_task: usize,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Tasks running at once (`--array=...%K`).
    #[serde(default = "default_concurrent")]
    pub max_concurrent: usize,
}

impl Default for SlurmResources {
    fn default() -> SlurmResources {
        SlurmResources {
            time: default_time(),
            memory: default_memory(),
            cpus_per_task: 1,
            partition: None,
            account: None,
            max_concurrent: default_concurrent(),
        }
    }
}

fn default_platforms() -> Vec<String> {
    vec![crate::platform::DEFAULT_PLATFORM.to_string()]
}
fn default_objectives() -> Vec<String> {
    vec!["latency".into()]
}
fn default_space() -> String {
    "default".into()
}
fn default_time() -> String {
    "01:00:00".into()
}
fn default_memory() -> String {
    "4G".into()
}
fn default_concurrent() -> usize {
    8
}
fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}

/// One search of the grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task: usize,
    pub model: String,
    pub platform: String,
    pub objective: String,
    pub limit: BudgetKind,
    /// The budget as written in the sweep file, and in bytes.
    pub budget: String,
    pub budget_bytes: u64,
    pub policy: String,
    pub seed: u64,
}

/// A sweep expanded into tasks: `plan.json` in the sweep folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub sweep: Sweep,
    pub tasks: Vec<Task>,
}

impl Sweep {
    /// Reads and checks a sweep file.
    pub fn read(path: &Path) -> Result<Sweep, BatchError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| BatchError::Sweep {
            origin: origin.clone(),
            message: format!("cannot read the file: {e}"),
        })?;
        Sweep::parse(&text, &origin)
    }

    /// Parses and checks a sweep file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Sweep, BatchError> {
        let sweep: Sweep = toml::from_str(text).map_err(|e| BatchError::Sweep {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        sweep.check(origin)?;
        Ok(sweep)
    }

    /// The policies of one grid cell's tasks: each policy of a search sweep, the main job of a
    /// main sweep.
    fn task_policies(&self) -> Vec<String> {
        match self.main {
            Some(_) => vec![MAIN_TASK.to_string()],
            None => self.policies.clone(),
        }
    }

    /// Runs of `policy` per grid point: one per seed when its result depends on the seed.
    fn seeds_of(&self, policy: &str) -> u64 {
        if self.main.is_none() && search::seeded(policy) {
            self.seeds
        } else {
            1
        }
    }

    /// The number of tasks the grid expands to, `None` past `usize`.
    fn task_count(&self) -> Option<usize> {
        let policies = self.task_policies();
        let seeds = usize::try_from(self.seeds).ok()?;
        let per_budget = policies.iter().try_fold(0usize, |n, p| {
            n.checked_add(if self.seeds_of(p) == 1 { 1 } else { seeds })
        })?;
        [
            self.models.len(),
            self.platforms.len(),
            self.objectives.len(),
            self.budgets.len(),
        ]
        .into_iter()
        .try_fold(per_budget, |n, k| n.checked_mul(k))
    }

    fn check(&self, origin: &str) -> Result<(), BatchError> {
        let fail = |message: String| {
            Err(BatchError::Sweep {
                origin: origin.to_string(),
                message,
            })
        };
        for (field, list) in [
            ("models", &self.models),
            ("platforms", &self.platforms),
            ("objectives", &self.objectives),
            ("budgets", &self.budgets),
            ("policies", &self.task_policies()),
        ] {
            if list.is_empty() {
                return fail(format!("'{field}' is empty; give at least one entry"));
            }
        }
        if let Some(Err(e)) = self.main.as_ref().map(MainSchedule::check) {
            return fail(format!("'main.accuracy_tie': {e}"));
        }
        if self.main.is_some() && self.seeds != 1 {
            return fail(
                "'seeds': a main sweep runs each cell once (its seed is 0); leave 'seeds' out"
                    .into(),
            );
        }
        for p in &self.policies {
            if let Err(e) = search::policy(p, &self.settings) {
                return fail(format!("'policies': {e}"));
            }
        }
        if let Err(e) = self.settings.check() {
            return fail(format!("'settings': {e}"));
        }
        if self.settings.seed != 0 {
            return fail(
                "'settings.seed': the tasks' seeds are 0 to 'seeds' - 1; set 'seeds' instead"
                    .into(),
            );
        }
        for b in &self.budgets {
            if let Err(e) = parse_bytes(b) {
                return fail(format!("'budgets': {e}"));
            }
        }
        if self.seeds == 0 {
            return fail("'seeds' must be at least 1".into());
        }
        let s = &self.slurm;
        if s.cpus_per_task == 0 || s.max_concurrent == 0 {
            return fail(
                "'slurm.cpus_per_task' and 'slurm.max_concurrent' must be at least 1".into(),
            );
        }
        match self.task_count() {
            Some(n) if n <= MAX_TASKS => {}
            _ => {
                return fail(format!(
                    "the grid (models x platforms x objectives x budgets x policies x seeds) has more than {MAX_TASKS} tasks; split the sweep"
                ));
            }
        }
        if self.name.is_empty() || crate::results::slug(&self.name) != self.name {
            return fail(format!(
                "'name' = '{}' must be a non-empty file-name-safe word (letters, digits, '-', '.')",
                self.name
            ));
        }
        Ok(())
    }

    /// The grid in a fixed order: models, platforms, objectives, budgets, policies, seeds.
    pub(crate) fn expand(&self) -> Vec<Task> {
        let mut tasks = Vec::new();
        for model in &self.models {
            for platform in &self.platforms {
                for objective in &self.objectives {
                    for budget in &self.budgets {
                        let budget_bytes = parse_bytes(budget).unwrap_or(0);
                        for policy in &self.task_policies() {
                            for seed in 0..self.seeds_of(policy) {
                                tasks.push(Task {
                                    task: tasks.len(),
                                    model: model.clone(),
                                    platform: platform.clone(),
                                    objective: objective.clone(),
                                    limit: self.limit,
                                    budget: budget.clone(),
                                    budget_bytes,
                                    policy: policy.clone(),
                                    seed,
                                });
                            }
                        }
                    }
                }
            }
        }
        tasks
    }
}

/// The files of a sweep folder.
pub struct SweepDir {
    pub root: PathBuf,
}

impl SweepDir {
    pub fn new(root: &Path) -> SweepDir {
        SweepDir {
            root: root.to_path_buf(),
        }
    }

    pub(crate) fn plan_file(&self) -> PathBuf {
        self.root.join("plan.json")
    }

    pub fn shard(&self, task: usize) -> PathBuf {
        self.root
            .join("shards")
            .join(format!("task-{task:05}.parquet"))
    }

    pub fn failure(&self, task: usize) -> PathBuf {
        self.root.join("failed").join(format!("task-{task:05}.txt"))
    }

    pub(crate) fn jobs_file(&self) -> PathBuf {
        self.root.join("jobs.json")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Reads the plan; the error says how to make one.
    pub fn plan(&self) -> Result<Plan, BatchError> {
        let path = self.plan_file();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            BatchError::Input(format!(
                "{}: {e}; make the sweep folder with `qsearch batch plan SWEEP.toml -o {}`",
                path.display(),
                self.root.display()
            ))
        })?;
        Plan::parse(&text, &path.display().to_string())
    }
}

impl Plan {
    /// Parses a sweep folder's `plan.json` and checks that its tasks are its sweep's; `origin`
    /// names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Plan, BatchError> {
        let not_a_plan =
            |e: serde_json::Error| BatchError::Input(format!("{origin}: not a sweep plan: {e}"));
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(not_a_plan)?;
        // Plans written before the sweep settings were the search settings hold `null` for the
        // settings the sweep file left out: they take the defaults, as they did then.
        if let Some(settings) = value
            .pointer_mut("/sweep/settings")
            .and_then(|v| v.as_object_mut())
        {
            settings.retain(|_, v| !v.is_null());
        }
        let plan: Plan = serde_json::from_value(value).map_err(not_a_plan)?;
        plan.sweep.check(origin)?;
        if plan.tasks != plan.sweep.expand() {
            return Err(BatchError::Input(format!(
                "{origin}: its {} tasks are not the expansion of its sweep '{}'; the plan was edited or is corrupt: plan the sweep again in a new folder",
                plan.tasks.len(),
                plan.sweep.name
            )));
        }
        Ok(plan)
    }
}

/// Expands `sweep` into `dir/plan.json`. Planning the same sweep again is a no-op that keeps
/// finished shards; a different sweep in the same folder is refused.
pub fn plan(sweep: &Sweep, dir: &Path) -> Result<Plan, BatchError> {
    let plan = Plan {
        sweep: sweep.clone(),
        tasks: sweep.expand(),
    };
    let folder = SweepDir::new(dir);
    if folder.plan_file().exists() {
        let old = folder.plan()?;
        if old == plan {
            return Ok(plan);
        }
        return Err(BatchError::Input(format!(
            "{} holds the plan of another sweep ('{}', {} tasks); choose another folder or remove it",
            dir.display(),
            old.sweep.name,
            old.tasks.len()
        )));
    }
    let json = serde_json::to_value(&plan).map_err(|e| BatchError::Input(e.to_string()))?;
    write_json(&folder.plan_file(), &json)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(text: &str) -> Result<Sweep, BatchError> {
        let sweep: Sweep = toml::from_str(text).map_err(|e| BatchError::Sweep {
            origin: "t".into(),
            message: e.to_string(),
        })?;
        sweep.check("t")?;
        Ok(sweep)
    }

    #[test]
    fn expansion_is_ordered_and_runs_deterministic_policies_once() {
        let s = sweep(
            r#"name = "t"
models = ["zoo:resnet8"]
budgets = ["96KB", "120KB"]
policies = ["memory-driven", "evolution"]
seeds = 2"#,
        )
        .unwrap();
        let tasks = s.expand();
        let got: Vec<(u64, &str, u64)> = tasks
            .iter()
            .map(|t| (t.budget_bytes, t.policy.as_str(), t.seed))
            .collect();
        assert_eq!(
            got,
            vec![
                (96_000, "memory-driven", 0),
                (96_000, "evolution", 0),
                (96_000, "evolution", 1),
                (120_000, "memory-driven", 0),
                (120_000, "evolution", 0),
                (120_000, "evolution", 1),
            ]
        );
        assert!(tasks.iter().enumerate().all(|(i, t)| t.task == i));
        assert_eq!(s.expand(), tasks);
    }

    #[test]
    fn bad_sweeps_name_the_field() {
        let base = "name = \"t\"\nmodels = [\"zoo:resnet8\"]\n";
        let err = sweep(&format!(
            "{base}budgets = [\"12 parsecs\"]\npolicies = [\"ilp\"]"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("'budgets'"), "{err}");
        let err = sweep(&format!(
            "{base}budgets = [\"1MB\"]\npolicies = [\"annealing\"]"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown policy 'annealing'"), "{err}");
        let err = sweep(&format!(
            "{base}budgets = [\"1MB\"]\npolicies = [\"ilp\"]\nbudget = 3"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `budget`"), "{err}");
        let err = sweep(&format!(
            "{base}budgets = [\"1MB\"]\npolicies = [\"ilp\"]\n[settings]\nseed = 3"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("'settings.seed'"), "{err}");
        let err = sweep(&format!(
            "{base}budgets = [\"1MB\"]\npolicies = [\"ilp\"]\n[settings]\nwall_time = -1.0"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("wall-time limit must be a positive"), "{err}");
    }

    #[test]
    fn a_main_sweep_runs_one_main_job_per_cell() {
        let s = sweep(
            r#"name = "t"
models = ["zoo:fashion-cnn"]
platforms = ["gap8", "xpulpnn"]
budgets = ["128KB", "512KB"]
policies = ["memory-driven", "evolution"]
[main]
epochs = 1
top_k = 2"#,
        )
        .unwrap();
        let schedule = s.main.clone().unwrap();
        assert_eq!((schedule.epochs, schedule.top_k), (1, 2));
        assert_eq!(
            schedule.finetune_images,
            MainSchedule::default().finetune_images
        );
        let tasks = s.expand();
        let cells: Vec<(&str, u64, &str)> = tasks
            .iter()
            .map(|t| (t.platform.as_str(), t.budget_bytes, t.policy.as_str()))
            .collect();
        assert_eq!(
            cells,
            vec![
                ("gap8", 128_000, MAIN_TASK),
                ("gap8", 512_000, MAIN_TASK),
                ("xpulpnn", 128_000, MAIN_TASK),
                ("xpulpnn", 512_000, MAIN_TASK),
            ]
        );
        // Without policies a main job fine-tunes no policy winners; a search sweep needs one.
        let base = "name = \"t\"\nmodels = [\"zoo:fashion-cnn\"]\nbudgets = [\"1MB\"]\n";
        assert_eq!(sweep(&format!("{base}[main]")).unwrap().expand().len(), 1);
        let err = sweep(base).unwrap_err().to_string();
        assert!(err.contains("'policies' is empty"), "{err}");
        let err = sweep(&format!("{base}seeds = 3\n[main]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'seeds': a main sweep runs each cell once"),
            "{err}"
        );
        let err = sweep(&format!("{base}[main]\naccuracy_tie = -1.0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'main.accuracy_tie': accuracy tie -1"),
            "{err}"
        );
        let err = sweep(&format!("{base}[main]\nepoch = 3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
    }

    #[test]
    fn plans_with_unset_settings_read_as_the_defaults() {
        let s = sweep(
            "name = \"t\"\nmodels = [\"zoo:resnet8\"]\nbudgets = [\"1MB\"]\npolicies = [\"ilp\"]",
        )
        .unwrap();
        let plan = Plan {
            tasks: s.expand(),
            sweep: s,
        };
        let mut json = serde_json::to_value(&plan).unwrap();
        json["sweep"]["settings"] = serde_json::json!({
            "evaluations": null, "population": null, "episodes": null,
            "pareto_points": null, "time_limit": null
        });
        assert_eq!(Plan::parse(&json.to_string(), "t").unwrap(), plan);
    }

    #[test]
    fn sweep_settings_are_the_search_settings_with_their_defaults() {
        let s = sweep(
            "name = \"t\"\nmodels = [\"zoo:resnet8\"]\nbudgets = [\"1MB\"]\npolicies = [\"ilp\"]\n\
             [settings]\nevaluations = 20000\nwall_time = 30.0",
        )
        .unwrap();
        assert_eq!(
            s.settings,
            Settings {
                evaluations: 20_000,
                wall_time: Some(30.0),
                ..Settings::default()
            }
        );
    }
}
