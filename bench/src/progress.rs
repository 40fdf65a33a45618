//! How the run shows its progress: on a terminal, one progress bar over the load's
//! duration with the latest second's figures beside it; otherwise (a CI log, a
//! pipe) one plain `bench: …` line a second, which reads well in a file.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of one run.
pub enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    /// A bar over `duration` when stderr is a terminal, plain lines otherwise.
    pub fn new(duration: Duration) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::with_draw_target(
            Some(duration.as_secs().max(1)),
            // Redrawn at most twice a second: the figures change once a second.
            ProgressDrawTarget::stderr_with_hz(2),
        );
        let style = ProgressStyle::with_template("bench {bar:24} {pos:>4}/{len}s {msg}")
            .expect("valid progress template")
            .progress_chars("=> ");
        bar.set_style(style);
        Progress::Bar(bar)
    }

    /// Shows the figures of second `t`.
    pub fn update(&self, t: f64, figures: &str) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(t as u64);
                bar.set_message(figures.to_owned());
            }
            Progress::Lines => eprintln!("bench: {t:>5.1}s {figures}"),
        }
    }

    /// A message that stays (above the bar on a terminal).
    pub fn note(&self, message: &str) {
        match self {
            Progress::Bar(bar) => bar.println(format!("bench: {message}")),
            Progress::Lines => eprintln!("bench: {message}"),
        }
    }

    /// Removes the bar, leaving its last figures as a plain line.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            let last = bar.message();
            bar.finish_and_clear();
            eprintln!("bench: {last}");
        }
    }
}
