//! Log lines to standard error without a thread wake-up per line.
//!
//! Every message gets a verdict line. Handing each line to a writer thread through a channel
//! (tracing-appender's non-blocking writer) cost a futex wake of that thread per line, and
//! its sleeps and spins: about a tenth of the daemon's CPU per verified message under load.
//! Here a line is appended to a shared buffer under a short lock; the writer thread wakes on
//! its own every [`FLUSH_EVERY`] (or when the buffer passes [`URGENT`]) and writes all that
//! waited in one `write(2)`. A line never waits on standard error: when the writer cannot
//! keep up (a stuck terminal or journald) and [`MAX_BUFFERED`] bytes are waiting, lines are
//! dropped and counted, and the writer says how many once it can write again.
//!
//! [`LogSink::start`] returns the [`MakeWriter`] for `tracing_subscriber` and a guard whose
//! drop writes out what is left (main keeps it until it returns).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Past this many bytes waiting, the writer thread is woken at once.
pub const URGENT: usize = 64 * 1024;
/// Past this many bytes waiting, lines are dropped (and counted).
pub const MAX_BUFFERED: usize = 4 * 1024 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    /// Set by the writer thread when it has written its last batch.
    done: (Mutex<bool>, std::sync::Condvar),
    dropped: AtomicU64,
    stop: AtomicBool,
    writer: Thread,
}

/// The [`MakeWriter`] handed to the subscriber: cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Writes out what is buffered and stops the writer thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogSink {
    /// Starts the writer thread over `out` (standard error in the daemon).
    pub fn start<W: Write + Send + 'static>(mut out: W) -> io::Result<(LogSink, FlushGuard)> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Shared>>(1);
        let thread = thread::Builder::new()
            .name("authmilter-log".into())
            .spawn(move || {
                let Ok(shared) = rx.recv() else { return };
                let mut batch = Vec::new();
                loop {
                    let stopping = shared.stop.load(Relaxed);
                    std::mem::swap(&mut batch, &mut *lock(&shared.buf));
                    let dropped = shared.dropped.swap(0, Relaxed);
                    if dropped > 0 {
                        let _ = writeln!(
                            batch,
                            "authmilter: {dropped} log line(s) dropped: standard error was not keeping up"
                        );
                    }
                    if !batch.is_empty() {
                        let _ = out.write_all(&batch).and_then(|()| out.flush());
                        batch.clear();
                        // Don't keep a burst's worth of memory for ever.
                        batch.shrink_to(URGENT);
                    }
                    if stopping {
                        *lock_flag(&shared.done.0) = true;
                        shared.done.1.notify_all();
                        return;
                    }
                    thread::park_timeout(FLUSH_EVERY);
                }
            })?;
        let shared = Arc::new(Shared {
            buf: Mutex::new(Vec::with_capacity(URGENT)),
            done: (Mutex::new(false), std::sync::Condvar::new()),
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            writer: thread.thread().clone(),
        });
        // The thread was spawned first so that `Shared` can name it; it starts here.
        let _ = tx.send(Arc::clone(&shared));
        let guard = FlushGuard {
            shared: Arc::clone(&shared),
            thread: Some(thread),
        };
        Ok((LogSink { shared }, guard))
    }
}

/// How long the last lines may take to go out at exit: standard error that does not take
/// them (a stuck pipe) must not hold the process.
pub const LAST_FLUSH: Duration = Duration::from_secs(1);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.shared.writer.unpark();
        let (flag, written) = &self.shared.done;
        let done = written
            .wait_timeout_while(lock_flag(flag), LAST_FLUSH, |done| !*done)
            .map(|(done, _)| *done)
            .unwrap_or(false);
        if let (true, Some(thread)) = (done, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

fn lock_flag(flag: &Mutex<bool>) -> std::sync::MutexGuard<'_, bool> {
    flag.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How log lines are shaped for where standard error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStyle {
    /// ANSI colour: only on a terminal, and never with `NO_COLOR` set (no-color.org).
    pub colour: bool,
    /// Our own timestamp: not when the lines go to systemd's journal, which stamps them.
    pub timestamp: bool,
}

impl LogStyle {
    /// The style for this process's standard error and environment.
    pub fn for_stderr() -> LogStyle {
        use std::io::IsTerminal;
        LogStyle::decide(
            io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            std::env::var("JOURNAL_STREAM")
                .ok()
                .is_some_and(|stream| is_stderr(&stream)),
        )
    }

    fn decide(terminal: bool, no_color: bool, journal: bool) -> LogStyle {
        LogStyle {
            colour: terminal && !no_color && !journal,
            timestamp: !journal,
        }
    }
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd for a service whose output goes
/// to the journal) names this process's standard error: a child whose stderr was redirected
/// elsewhere inherits the variable but not the journal.
fn is_stderr(stream: &str) -> bool {
    let Some((dev, ino)) = stream.trim().split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat only writes the struct it is given.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(libc::STDERR_FILENO, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

fn lock(buf: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    buf.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One event's writer: the subscriber writes the whole formatted line in one `write_all`,
/// which lands in the buffer in one piece.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let urgent = {
            let mut buf = lock(&self.shared.buf);
            if buf.len() + data.len() > MAX_BUFFERED {
                self.shared.dropped.fetch_add(1, Relaxed);
                return Ok(data.len());
            }
            let was_urgent = buf.len() >= URGENT;
            buf.extend_from_slice(data);
            !was_urgent && buf.len() >= URGENT
        };
        if urgent {
            self.shared.writer.unpark();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color_and_no_time_for_the_journal() {
        let style = LogStyle::decide;
        assert!(style(true, false, false).colour);
        assert!(!style(false, false, false).colour);
        assert!(!style(true, true, false).colour);
        assert!(style(false, false, false).timestamp);
        assert_eq!(
            style(true, false, true),
            LogStyle {
                colour: false,
                timestamp: false
            }
        );
        assert!(!is_stderr("garbage"));
        assert!(!is_stderr("0:0"));
    }

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_in_order_and_the_guard_flushes_the_rest() {
        let out = Shared::default();
        let (sink, guard) = LogSink::start(out.clone()).unwrap();
        for i in 0..1000 {
            sink.make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert!(lines
            .iter()
            .enumerate()
            .all(|(i, l)| *l == format!("line {i}")));
    }

    #[test]
    fn lines_wait_at_most_about_the_flush_interval() {
        let out = Shared::default();
        let (sink, _guard) = LogSink::start(out.clone()).unwrap();
        sink.make_writer().write_all(b"soon\n").unwrap();
        // Bounded wait (no timing asserted): the line shows up without a flush by the guard.
        for _ in 0..500 {
            if !out.0.lock().unwrap().is_empty() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("the line was not written within 5 s");
    }

    /// A writer that blocks until told to go on, like a stuck terminal.
    struct Stuck(Arc<(Mutex<bool>, std::sync::Condvar)>, Shared);

    impl Write for Stuck {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let (go, cv) = &*self.0;
            let mut go = go.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
            self.1.write(data)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_lines_counts_them_and_says_so() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let out = Shared::default();
        let (sink, guard) = LogSink::start(Stuck(Arc::clone(&gate), out.clone())).unwrap();
        // The first line gets the writer thread stuck in write(2).
        sink.make_writer().write_all(b"first\n").unwrap();
        thread::sleep(FLUSH_EVERY * 3);
        let line = vec![b'x'; 1023];
        let lines = MAX_BUFFERED / 1024 + 100;
        for _ in 0..lines {
            let mut l = line.clone();
            l.push(b'\n');
            // Never blocks, whatever the output does.
            sink.make_writer().write_all(&l).unwrap();
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let kept = text.lines().filter(|l| l.starts_with('x')).count();
        assert!(kept < lines && kept >= MAX_BUFFERED / 1024 - 1, "{kept}");
        let said = text
            .lines()
            .find(|l| l.contains("log line(s) dropped"))
            .expect("the drop is reported");
        assert!(
            said.contains(&format!("{} log line(s)", lines - kept)),
            "{said}"
        );
    }
}
