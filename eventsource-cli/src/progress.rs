//! A progress bar on stderr for long scans, shown only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar, or nothing when stderr is not a terminal (or the caller says not to show).
pub(crate) struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar of `total` steps labelled `what`, if `show` and stderr is a terminal.
    pub(crate) fn new(total: u64, what: &str, show: bool) -> Self {
        Self::styled(
            Some(total),
            "{msg} [{bar:40}] {pos}/{len} ({eta} left)",
            what,
            show,
        )
    }

    /// A bar over `total` bytes of input labelled `what`, if `show` and stderr is a terminal.
    pub(crate) fn bytes(total: u64, what: &str, show: bool) -> Self {
        Self::styled(
            Some(total),
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            what,
            show,
        )
    }

    /// A counter without a known end labelled `what`, if `show` and stderr is a terminal.
    pub(crate) fn counter(what: &str, show: bool) -> Self {
        Self::styled(None, "{spinner} {msg}: {human_pos} ({per_sec})", what, show)
    }

    fn styled(total: Option<u64>, template: &str, what: &str, show: bool) -> Self {
        if !show || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(template)
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what.to_owned());
        Progress(Some(bar))
    }

    /// Moves the bar to `position`.
    pub(crate) fn set(&self, position: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(position);
        }
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
