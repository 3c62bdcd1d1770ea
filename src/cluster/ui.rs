//! Step-by-step progress as kind prints it: a spinner per step on a terminal, then ✓ or ✗
//! and the time it took; plain lines when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Ui {
    quiet: bool,
    verbosity: u8,
    tty: bool,
    /// The running step's spinner, so detail lines print above it instead of through it.
    spinner: std::sync::Mutex<Option<ProgressBar>>,
}

impl Ui {
    pub fn new(quiet: bool, verbosity: u8) -> Self {
        Ui {
            quiet,
            verbosity,
            tty: std::io::stderr().is_terminal(),
            spinner: std::sync::Mutex::new(None),
        }
    }

    /// `-v`: 0 prints steps and results, 1 adds what each step is doing and waiting
    /// for, 2 and above add each node-level operation and its time.
    pub fn verbosity(&self) -> u8 {
        if self.quiet { 0 } else { self.verbosity }
    }

    /// Runs one step, showing `title` while it runs and ✓/✗ with its duration after.
    pub async fn step<T, F>(&self, title: &str, work: F) -> anyhow::Result<T>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        let started = Instant::now();
        let spinner = (!self.quiet && self.tty).then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template(" {spinner} {msg}") {
                bar.set_style(style.tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓"));
            }
            bar.set_message(title.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if let (Some(bar), Ok(mut active)) = (&spinner, self.spinner.lock()) {
            *active = Some(bar.clone());
        }
        if !self.quiet && !self.tty {
            eprintln!(" • {title}");
        }
        let result = work.await;
        let took = format_duration(started.elapsed());
        let mark = if result.is_ok() { "✓" } else { "✗" };
        if let Ok(mut active) = self.spinner.lock() {
            *active = None;
        }
        match spinner {
            Some(bar) => bar.finish_and_clear(),
            None if self.quiet => return result,
            None => {}
        }
        if !self.quiet {
            eprintln!(" {mark} {title} ({took})");
        }
        result
    }

    /// A line of output for the user (suppressed by `-q`).
    pub fn info(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Detail shown only at `-v 1` and above.
    pub fn detail(&self, line: &str) {
        if self.verbosity() >= 1 {
            self.print_detail(line);
        }
    }

    /// Node-level operations, shown only at `-v 2` and above.
    pub fn debug(&self, line: &str) {
        if self.verbosity() >= 2 {
            self.print_detail(line);
        }
    }

    fn print_detail(&self, line: &str) {
        let active = self.spinner.lock().ok().and_then(|a| a.clone());
        match active {
            Some(bar) => bar.suspend(|| eprintln!("   {line}")),
            None => eprintln!("   {line}"),
        }
    }
}

fn format_duration(d: Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
