//! Progress bars for the steps that can take more than a moment: hashing and caching
//! stones, unpacking content, the blit, `verify`, `gc` and `prune`.
//!
//! Bars are drawn on stderr only when it is a terminal and `--json` is off; otherwise every
//! function here returns a hidden bar, which costs nothing and draws nothing, so callers
//! never branch on it. All bars share one [`MultiProgress`], so parallel work (one bar per
//! package being unpacked under the total) stacks instead of fighting over a line, and a
//! bar is always cleared when its step ends ([`Bar`]'s `Drop`), so the summary line that
//! follows stands alone.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars are drawn in this run.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::io::stderr().is_terminal() && !crate::ui::json())
}

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(|| {
        let target = if enabled() {
            // 10 redraws a second are plenty for people and cheap for the work.
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        MultiProgress::with_draw_target(target)
    })
}

/// What a bar counts, which decides how it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Things: entries, assets, states.
    Items(&'static str),
    /// Bytes, with a rate.
    Bytes,
}

/// A bar that is cleared from the terminal when dropped, whatever way its step ends.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar for `label`, `total` long.
    pub fn new(label: &str, total: u64, unit: Unit) -> Bar {
        let template = match unit {
            Unit::Items(what) => format!(
                "{{prefix:>8}} [{{bar:32}}] {{human_pos}}/{{human_len}} {what} ({{rate}}, {{eta}} left) {{msg}}"
            ),
            Unit::Bytes => "{prefix:>8} [{bar:32}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left) {msg}".to_owned(),
        };
        let style = ProgressStyle::with_template(&template)
            .expect("the templates are fixed and valid")
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                },
            )
            .progress_chars("=> ");
        Bar::add(ProgressBar::new(total).with_style(style), label)
    }

    /// A spinner for work whose size is not known in advance, saying what it does.
    pub fn spinner(label: &str, doing: impl Into<std::borrow::Cow<'static, str>>) -> Bar {
        let style = ProgressStyle::with_template("{prefix:>8} {spinner} {msg} ({elapsed})")
            .expect("the template is fixed and valid");
        let spinner = ProgressBar::new_spinner()
            .with_style(style)
            .with_message(doing);
        let bar = Bar::add(spinner, label);
        bar.0.enable_steady_tick(Duration::from_millis(100));
        bar
    }

    fn add(bar: ProgressBar, label: &str) -> Bar {
        let bar = if enabled() {
            multi().add(bar)
        } else {
            bar.with_finish(indicatif::ProgressFinish::AndClear)
        };
        if !enabled() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_prefix(label.to_owned());
        Bar(bar)
    }

    /// Moves the bar on by `n`.
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// Sets the position.
    pub fn set(&self, position: u64) {
        self.0.set_position(position);
    }

    /// Sets the text after the bar.
    pub fn message(&self, text: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.set_message(text);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
        if enabled() {
            multi().remove(&self.0);
        }
    }
}

/// Standard error for log lines: when bars are drawn, they are lifted for the write and
/// drawn again below it, so a `-v` step or a warning never tears a bar.
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if enabled() {
            multi().suspend(|| std::io::stderr().write_all(buf))?;
            Ok(buf.len())
        } else {
            std::io::stderr().write(buf)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
