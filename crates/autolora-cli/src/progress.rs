//! Progress for long loops: a live bar (position, rate, ETA, losses, throughput) on a
//! terminal; when stderr is not a terminal (logs, CI), a plain line every 5% instead.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress over a loop of known length.
pub struct Progress {
    bar: ProgressBar,
    what: String,
    total: u64,
    plain: bool,
}

impl Progress {
    /// Progress named `what` over `total` steps, starting at `done`.
    pub fn new(what: &str, total: u64, done: u64) -> Self {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{elapsed_precise}] {bar:30} {pos}/{len} ({per_sec}, eta {eta}) {msg}",
            )
            .expect("the template is valid"),
        );
        bar.set_prefix(what.to_string());
        bar.set_position(done);
        Progress {
            bar,
            what: what.to_string(),
            total,
            plain: !std::io::stderr().is_terminal(),
        }
    }

    /// One step done, with its message.
    pub fn advance(&mut self, message: &str) {
        self.bar.set_message(message.to_string());
        self.bar.inc(1);
        let pos = self.bar.position();
        let every = (self.total / 20).max(1);
        if self.plain && (pos % every == 0 || pos == self.total) {
            let elapsed = self.bar.elapsed().as_secs_f64();
            eprintln!(
                "{} {pos}/{} [{elapsed:.0} s] {message}",
                self.what, self.total
            );
        }
    }

    /// Ends the bar, leaving its last state on screen.
    pub fn finish(self) {
        self.bar.finish();
    }
}
