//! Progress of long work (training, fine-tuning, measurements, searches, deployment, batch
//! tasks, microbenchmarks) on standard error, one way for every command: on a terminal a bar
//! with the elapsed time, the count and an ETA; when standard error goes to a file (a SLURM log,
//! a pipe) a plain line every `LOG_INTERVAL` (10 s); nothing after [`set_quiet`] (`--quiet`).

use indicatif::{
    HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike,
};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

/// How often a log (standard error not a terminal) gets a progress line.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Silences (or restores) every progress display of the process.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether progress is silenced.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A bar counting `total` `unit`s of work labelled `label`, hidden when `show` is false or
/// progress is silenced. `set_message` adds what is being done now.
pub(crate) fn bar(show: bool, label: &str, total: u64, unit: &str) -> ProgressBar {
    if !show || quiet() {
        return ProgressBar::hidden();
    }
    let bar = if std::io::stderr().is_terminal() {
        styled(
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            &format!(
                "{{prefix:>14}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}, ETA {{eta}}  {{msg}}"
            ),
        )
    } else {
        log_bar(total, unit, LogLines::new(LOG_INTERVAL, None))
    };
    bar.set_prefix(label.to_string());
    // Redrawn on a clock too, so that the elapsed time and the ETA move during a long step.
    bar.enable_steady_tick(Duration::from_secs(1));
    bar
}

fn styled(bar: ProgressBar, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("eta", mean_rate_eta);
    bar.set_style(style);
    bar
}

/// The time left at the mean rate so far. indicatif's own estimate weighs recent steps, which
/// for work of a few long steps (a sweep's tasks) decays towards no progress between steps and
/// shows centuries.
fn mean_rate_eta(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let (done, total) = (state.pos(), state.len().unwrap_or(0));
    let eta = if done == 0 || total < done {
        "?".to_string()
    } else {
        let left = state.elapsed().mul_f64((total - done) as f64 / done as f64);
        HumanDuration(left).to_string()
    };
    let _ = w.write_str(&eta);
}

/// The bar of a log: a plain line without the bar itself.
fn log_bar(total: u64, unit: &str, lines: LogLines) -> ProgressBar {
    styled(
        ProgressBar::with_draw_target(
            Some(total),
            ProgressDrawTarget::term_like_with_hz(Box::new(lines), 1),
        ),
        &format!(
            "{{prefix}}: {{pos}}/{{len}} {unit} ({{percent}}%), {{elapsed}} elapsed, ETA {{eta}}  {{msg}}"
        ),
    )
}

/// A bar over named steps (`deploy`'s integerization, builds and checks).
pub(crate) struct Steps {
    bar: ProgressBar,
    started: bool,
}

impl Steps {
    pub fn new(show: bool, label: &str, total: u64) -> Steps {
        Steps {
            bar: bar(show, label, total, "steps"),
            started: false,
        }
    }

    /// Marks the previous step done and names the one starting.
    pub fn step(&mut self, name: &str) {
        if self.started {
            self.bar.inc(1);
        }
        self.started = true;
        self.bar.set_message(name.to_string());
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A log's view of a progress bar: the bar's text as a line at most every `interval`, the
/// cursor movements of a terminal ignored. Lines go to standard error, or to `capture`.
#[derive(Debug)]
struct LogLines {
    interval: Duration,
    last: Mutex<Instant>,
    capture: Option<Arc<Mutex<Vec<String>>>>,
}

impl LogLines {
    fn new(interval: Duration, capture: Option<Arc<Mutex<Vec<String>>>>) -> LogLines {
        LogLines {
            interval,
            last: Mutex::new(Instant::now()),
            capture,
        }
    }

    fn line(&self, s: &str) -> std::io::Result<()> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(());
        }
        let Ok(mut last) = self.last.lock() else {
            return Ok(());
        };
        if last.elapsed() < self.interval {
            return Ok(());
        }
        *last = Instant::now();
        match &self.capture {
            Some(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(s.to_string());
                }
            }
            None => eprintln!("{s}"),
        }
        Ok(())
    }
}

impl TermLike for LogLines {
    fn width(&self) -> u16 {
        160
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.line(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hides_every_bar() {
        set_quiet(true);
        assert!(bar(true, "train", 10, "batches").is_hidden());
        set_quiet(false);
        assert!(bar(false, "train", 10, "batches").is_hidden());
    }

    #[test]
    fn a_log_gets_plain_lines_with_an_eta() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let bar = log_bar(
            10,
            "batches",
            LogLines::new(Duration::ZERO, Some(lines.clone())),
        );
        bar.set_prefix("train");
        bar.inc(3);
        bar.tick();
        bar.finish_and_clear();
        let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("train: 3/10 batches (30%)") && l.contains("ETA")),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");
    }
}
