//! What a load run measured: per-worker recorders merged into one [`Report`].
//!
//! Each worker task owns a [`Recorder`] (no locks or atomics on the measuring path) and hands
//! it back when it stops; the run merges them. Latencies are kept exactly (microseconds, one
//! `u32` each) rather than in a histogram: runs are bounded in time, so even 1,000,000
//! messages cost 4 MB, and the percentiles are then exact.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One worker's measurements.
#[derive(Debug, Default)]
pub struct Recorder {
    latencies_us: Vec<u32>,
    replies: BTreeMap<&'static str, u64>,
    edits: BTreeMap<&'static str, u64>,
    errors: BTreeMap<&'static str, u64>,
    ended_early: u64,
    sessions: u64,
}

impl Recorder {
    /// A message that got its final answer `kind` after `latency` (from the write carrying
    /// end of message, or the command that was answered early, to that answer).
    pub fn message(&mut self, kind: &'static str, latency: Duration) {
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.latencies_us.push(us);
        *self.replies.entry(kind).or_default() += 1;
    }

    /// The final answer came before end of message (at MAIL, RCPT, ...).
    pub fn ended_early(&mut self) {
        self.ended_early += 1;
    }

    /// A header or envelope change the peer asked for at end of message.
    pub fn edit(&mut self, kind: &'static str) {
        *self.edits.entry(kind).or_default() += 1;
    }

    /// A message (or connection attempt) that failed; `kind` says how.
    pub fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// A connection that got through negotiation (milter) or the greeting (SMTP).
    pub fn session(&mut self) {
        self.sessions += 1;
    }

    fn merge(&mut self, other: Recorder) {
        self.latencies_us.extend(other.latencies_us);
        for (k, v) in other.replies {
            *self.replies.entry(k).or_default() += v;
        }
        for (k, v) in other.edits {
            *self.edits.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.ended_early += other.ended_early;
        self.sessions += other.sessions;
    }
}

/// The result of one run; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was measured: `milter` or `smtp`.
    pub mode: &'static str,
    pub target: String,
    pub connections: usize,
    /// Messages that got a final answer (the sum of `replies`).
    pub messages: u64,
    /// Wall-clock time from the first connection attempt to the last answer.
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Messages or connection attempts that failed (timeouts, closed or malformed streams).
    pub errors: u64,
    /// Final answers by kind, e.g. `continue`, `replycode_5xx`, `quarantine` (milter) or
    /// `2xx`, `4xx`, `5xx` (SMTP).
    pub replies: BTreeMap<&'static str, u64>,
    /// How many of the messages were answered before end of message.
    pub ended_early: u64,
    /// End-of-message modifications by kind (milter only), e.g. `insert_header`.
    pub edits: BTreeMap<&'static str, u64>,
    /// Errors by kind: `connect`, `timeout`, `closed`, `io`, `protocol`, `refused`.
    pub error_kinds: BTreeMap<&'static str, u64>,
    /// Connections that got through negotiation or the SMTP greeting.
    pub sessions: u64,
}

impl Report {
    /// Merges the workers' recorders; `elapsed` is the run's wall-clock time.
    pub fn build(
        mode: &'static str,
        target: String,
        connections: usize,
        recorders: Vec<Recorder>,
        elapsed: Duration,
    ) -> Report {
        let mut all = Recorder::default();
        for r in recorders {
            all.merge(r);
        }
        let mut lat = all.latencies_us;
        lat.sort_unstable();
        let messages = lat.len() as u64;
        let seconds = elapsed.as_secs_f64();
        let mean_ms = if lat.is_empty() {
            0.0
        } else {
            lat.iter().map(|&u| u as f64).sum::<f64>() / lat.len() as f64 / 1000.0
        };
        Report {
            mode,
            target,
            connections,
            messages,
            seconds: round3(seconds),
            msgs_per_sec: round3(if seconds > 0.0 {
                messages as f64 / seconds
            } else {
                0.0
            }),
            p50_ms: percentile_ms(&lat, 50.0),
            p90_ms: percentile_ms(&lat, 90.0),
            p99_ms: percentile_ms(&lat, 99.0),
            max_ms: lat.last().map_or(0.0, |&u| round3(u as f64 / 1000.0)),
            mean_ms: round3(mean_ms),
            errors: all.errors.values().sum(),
            replies: all.replies,
            ended_early: all.ended_early,
            edits: all.edits,
            error_kinds: all.errors,
            sessions: all.sessions,
        }
    }

    /// The human-readable summary printed without `--json`.
    pub fn text(&self) -> String {
        let join = |m: &BTreeMap<&'static str, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        format!(
            "{} load on {}: {} connections, {} sessions, {:.2} s\n\
             messages: {} ({:.1}/s), errors: {}\n\
             end-of-message latency (ms): p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}\n\
             replies: {}{}\n\
             edits: {}\n\
             errors by kind: {}\n",
            self.mode,
            self.target,
            self.connections,
            self.sessions,
            self.seconds,
            self.messages,
            self.msgs_per_sec,
            self.errors,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.mean_ms,
            join(&self.replies),
            if self.ended_early > 0 {
                format!(" ({} before end of message)", self.ended_early)
            } else {
                String::new()
            },
            join(&self.edits),
            join(&self.error_kinds),
        )
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    round3(sorted_us[index] as f64 / 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let lat: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&lat, 50.0), 50.0);
        assert_eq!(percentile_ms(&lat, 99.0), 99.0);
        assert_eq!(percentile_ms(&lat, 100.0), 100.0);
        assert_eq!(percentile_ms(&[], 99.0), 0.0);
        assert_eq!(percentile_ms(&[1500], 1.0), 1.5);
    }

    #[test]
    fn merged_counts_add_up() {
        let mut a = Recorder::default();
        a.message("continue", Duration::from_micros(500));
        a.edit("insert_header");
        a.session();
        let mut b = Recorder::default();
        b.message("continue", Duration::from_millis(2));
        b.message("replycode_5xx", Duration::from_millis(1));
        b.error("timeout");
        let r = Report::build("milter", "t".into(), 2, vec![a, b], Duration::from_secs(1));
        assert_eq!(r.messages, 3);
        assert_eq!(r.replies.values().sum::<u64>(), r.messages);
        assert_eq!(r.replies["continue"], 2);
        assert_eq!(r.errors, 1);
        assert_eq!(r.max_ms, 2.0);
        assert_eq!(r.msgs_per_sec, 3.0);
        assert!(r.text().contains("replycode_5xx 1"));
    }
}
