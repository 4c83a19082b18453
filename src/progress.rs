//! Progress of a long one-off command (`store copy`, `report import` of a directory,
//! `report send`) on a terminal: a bar on standard error, drawn by indicatif, that clears
//! itself when the work ends so the command's summary line stays the last word. Nothing at
//! all when standard error is not a terminal (a pipe, a file, cron, the daemon).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, Write};

/// A progress bar, or nothing off a terminal. Cheap to pass around by reference.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// No output at all (the daemon, tests, library callers).
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }

    /// A bar counting `what` up to `total` (a spinner while the total is unknown), drawn
    /// only when standard error is a terminal.
    pub fn on_terminal(what: &str, total: Option<u64>) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(bar_style()),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {pos}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        bar.set_message(what.to_string());
        Progress { bar: Some(bar) }
    }

    /// Sets (or changes) how much there is in all: a spinner becomes a bar.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_style(bar_style());
            bar.set_length(total);
        }
    }

    /// `n` more done.
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// What is being done now (a file, a domain).
    pub fn status(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }
}

impl Progress {
    /// `out` with its lines shown above the bar: each whole line is written while the bar
    /// is cleared, so the two never mix on a terminal.
    pub fn above<W: Write>(&self, out: W) -> Above<'_, W> {
        Above {
            out,
            progress: self,
            line: Vec::new(),
        }
    }

    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({eta} left)")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// See [`Progress::above`].
pub struct Above<'a, W: Write> {
    out: W,
    progress: &'a Progress,
    /// The line being written, until its end.
    line: Vec<u8>,
}

impl<W: Write> Write for Above<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(data);
        if let Some(end) = self.line.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = self.line.drain(..=end).collect();
            let out = &mut self.out;
            self.progress
                .suspend(|| out.write_all(&lines).and_then(|()| out.flush()))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.line);
        let out = &mut self.out;
        self.progress
            .suspend(|| out.write_all(&rest).and_then(|()| out.flush()))
    }
}

impl<W: Write> Drop for Above<'_, W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_written_above_a_hidden_bar_arrive_whole_and_in_order() {
        let progress = Progress::hidden();
        let mut out = Vec::new();
        {
            let mut above = progress.above(&mut out);
            write!(above, "a: ").unwrap();
            writeln!(above, "one").unwrap();
            write!(above, "b: two\nc").unwrap();
        }
        assert_eq!(out, b"a: one\nb: two\nc");
    }
}
