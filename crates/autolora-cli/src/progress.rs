//! Progress bars for long loops: position, rate, ETA and a live message (losses, throughput).

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over a loop of known length (hidden when stderr is not a terminal; the loop's
/// metrics files hold the same numbers).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar named `what` over `total` steps, starting at `done`.
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
        Progress { bar }
    }

    /// One step done, with its message.
    pub fn advance(&mut self, message: &str) {
        self.bar.set_message(message.to_string());
        self.bar.inc(1);
    }

    /// Ends the bar, leaving its last state on screen.
    pub fn finish(self) {
        self.bar.finish();
    }
}
