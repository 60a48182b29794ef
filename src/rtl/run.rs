//! Running an ELF on the simulator: bounded by a cycle limit inside the simulation and by a
//! wall-clock timeout outside it, so a run ends whatever the program or the simulator does.

use super::error::io;
use super::{Rtl, RtlError};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a program runs on the simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Simulated cycles after which the run stops with [`RtlError::CycleLimit`].
    pub max_cycles: u64,
    /// Cycles every memory request waits for its grant (0: an ideal single-cycle L1).
    pub wait_states: u32,
}

impl Default for SimConfig {
    /// 100 million cycles: about a minute and a half at the simulator's 1-1.5 million cycles/s.
    fn default() -> Self {
        SimConfig {
            max_cycles: 100_000_000,
            wait_states: 0,
        }
    }
}

impl SimConfig {
    /// The wall-clock bound: the cycle limit at a pessimistic 100,000 cycles/s (a loaded
    /// machine) plus time to start, so only a simulator that stopped making progress hits it.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(30 + self.max_cycles / 100_000)
    }
}

/// What a program that exited did.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// What it wrote to the putchar register.
    pub stdout: String,
    /// `main`'s return value.
    pub exit_code: i32,
    /// `mcycle` and `minstret` as the exit code read them: from the startup code's first
    /// instructions to the exit.
    pub cycles: u64,
    pub instructions: u64,
}

impl Rtl {
    /// Runs `elf` until it exits, traps or reaches `config.max_cycles`.
    pub fn run(&self, elf: &Path, config: &SimConfig) -> Result<RunOutput, RtlError> {
        let program = elf.display().to_string();
        let sim = self.dir.join("sim");
        let mut child = Command::new(&sim)
            .arg(elf)
            .arg(config.max_cycles.to_string())
            .arg(config.wait_states.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(&sim))?;
        let timeout = config.timeout();
        let (stdout, stderr) = wait(&mut child, timeout).ok_or(RtlError::Timeout {
            program: program.clone(),
            seconds: timeout.as_secs(),
        })?;
        outcome(&program, stdout, &stderr)
    }
}

/// The child's standard output and error once it ended, or `None` (and the child killed) after
/// `timeout`. Pipes are drained by threads so that a chatty program cannot block on a full pipe.
fn wait(child: &mut Child, timeout: Duration) -> Option<(String, String)> {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    while matches!(child.try_wait(), Ok(None)) {
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Some((
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    ))
}

/// Reads how the run ended from the harness's last line on standard error (`rtl/sim.cpp`).
fn outcome(program: &str, stdout: String, stderr: &str) -> Result<RunOutput, RtlError> {
    let program = program.to_string();
    let last = stderr
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("qsearch-rtl "));
    let Some(last) = last else {
        return Err(RtlError::Simulator {
            program,
            message: format!("no outcome reported; it printed:\n{stderr}"),
        });
    };
    let (kind, rest) = last.split_once(' ').unwrap_or((last, ""));
    let fields: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    match (kind, fields.as_slice()) {
        ("exit", &[code, cycles, instructions]) => Ok(RunOutput {
            stdout,
            // The harness prints the register's 32 bits unsigned; `main` returned an int.
            exit_code: narrow(code) as i32,
            cycles,
            instructions,
        }),
        ("trap", &[mcause, mepc]) => Err(RtlError::Trap {
            program,
            mcause: narrow(mcause),
            mepc: narrow(mepc),
        }),
        ("limit", &[cycles]) => Err(RtlError::CycleLimit { program, cycles }),
        ("bad-access", &[address]) => Err(RtlError::BadAccess {
            program,
            address: narrow(address),
        }),
        ("bad-elf", _) => Err(RtlError::BadElf {
            program,
            reason: rest.to_string(),
        }),
        _ => Err(RtlError::Simulator {
            program,
            message: format!("unreadable outcome '{last}'"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_past_its_timeout_is_killed() {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        assert!(wait(&mut child, Duration::from_millis(100)).is_none());
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(child.try_wait().unwrap().is_some(), "the child still runs");
    }

    #[test]
    fn outcomes_read_from_the_last_harness_line() {
        let out = outcome(
            "p.elf",
            "hi".into(),
            "warning\nqsearch-rtl exit 4294967295 30 20\n",
        );
        let out = out.unwrap();
        assert_eq!((out.exit_code, out.cycles, out.instructions), (-1, 30, 20));
        assert_eq!(out.stdout, "hi");
        let trap = outcome("p.elf", String::new(), "qsearch-rtl trap 2 469762326\n");
        assert!(matches!(
            trap,
            Err(RtlError::Trap {
                mcause: 2,
                mepc: 0x1c00_0116,
                ..
            })
        ));
        let bad = outcome(
            "p.elf",
            String::new(),
            "qsearch-rtl bad-elf not an ELF file\n",
        );
        assert!(matches!(bad, Err(RtlError::BadElf { reason, .. }) if reason == "not an ELF file"));
        let crashed = outcome("p.elf", String::new(), "Segmentation fault\n").unwrap_err();
        assert!(
            crashed.to_string().contains("p.elf: the simulator failed"),
            "{crashed}"
        );
    }
}
