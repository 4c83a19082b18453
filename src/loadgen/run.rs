//! What every run shares: the target, its limits and the budget they give, the pacing of
//! sends, the client's identity, and the message helpers both generators use.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// No run lasts longer than this, whatever `--messages` says.
pub const HARD_TIME_LIMIT: Duration = Duration::from_secs(3600);

/// Pause after a failed connection attempt, so a dead target costs a few errors per second
/// per connection instead of a busy loop.
pub(super) const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Where the load goes: `ip:port` (also `inet:ip:port`) or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl Target {
    /// Parses `127.0.0.1:8895`, `inet:127.0.0.1:8895`, `[::1]:8895` or `unix:/run/m.sock`.
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{s}: empty socket path"));
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        let addr = s.strip_prefix("inet:").unwrap_or(s);
        addr.parse()
            .map(Target::Tcp)
            .map_err(|_| format!("{s}: expected ip:port or unix:/path"))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// How long a run goes on. At least one of the two must be set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limit {
    /// Stop after this many messages (answered or failed) in all.
    pub messages: Option<u64>,
    /// Stop starting messages after this long.
    pub duration: Option<Duration>,
}

/// The shared ticket counter: a worker takes a ticket before each message, so the total is
/// exact however many workers there are, and nothing starts after the deadline.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: Option<u64>,
    issued: AtomicU64,
    deadline: Instant,
}

impl Budget {
    pub(crate) fn new(limit: Limit, start: Instant) -> Budget {
        let time = limit
            .duration
            .map_or(HARD_TIME_LIMIT, |d| d.min(HARD_TIME_LIMIT));
        Budget {
            limit: limit.messages,
            issued: AtomicU64::new(0),
            deadline: start + time,
        }
    }

    /// True if one more message may start.
    pub(crate) fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        match self.limit {
            // Relaxed is enough: the counter only has to hand out distinct numbers.
            Some(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            None => true,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Spacing of message starts on one connection when the run is rate-limited: `rate`
/// messages per second in all, shared by `connections`.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub(crate) fn new(rate: Option<f64>, connections: usize, worker: usize) -> Pacer {
        let interval = rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(connections as f64 / r));
        // Stagger the workers so they don't all fire at the same instant.
        let offset = interval.map_or(Duration::ZERO, |i| i * worker as u32 / connections as u32);
        Pacer {
            interval,
            next: Instant::now() + offset,
        }
    }

    /// Waits until the next message may start (at once when not rate-limited).
    pub(crate) async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next.into()).await;
        } else if now - self.next > interval * 4 {
            // Fell far behind (a slow peer): don't burst to catch up.
            self.next = now;
        }
        self.next += interval;
    }
}

/// The envelope and client a run presents.
#[derive(Debug, Clone)]
pub struct Client {
    /// The SMTP client's address (milter CONNECT; XCLIENT ADDR for SMTP).
    pub ip: std::net::IpAddr,
    /// HELO/EHLO name; also the client's host name in CONNECT.
    pub helo: String,
    /// Envelope sender, without brackets; empty is the null sender.
    pub mail_from: String,
    /// Envelope recipient, without brackets.
    pub rcpt: String,
}

/// Mail on the wire is CRLF; files saved by editors are often LF only.
pub fn to_crlf(raw: Vec<u8>) -> Vec<u8> {
    if raw.windows(2).any(|w| w == b"\r\n") || !raw.contains(&b'\n') {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for b in raw {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The address in the message's first `From:` field (`<...>` if present), for a default
/// envelope sender that aligns with it.
pub fn from_address(raw: &[u8]) -> Option<String> {
    let head = &raw[..raw.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("from") {
            continue;
        }
        let mut value = value.to_string();
        while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
            value.push_str(next);
            lines.next();
        }
        let addr = match (value.rfind('<'), value.rfind('>')) {
            (Some(a), Some(b)) if a < b => value[a + 1..b].trim().to_string(),
            _ => value.trim().to_string(),
        };
        return (!addr.is_empty()).then_some(addr);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("127.0.0.1:8895"),
            Ok(Target::Tcp("127.0.0.1:8895".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("inet:[::1]:25"),
            Ok(Target::Tcp("[::1]:25".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("unix:/run/m.sock"),
            Ok(Target::Unix("/run/m.sock".into()))
        );
        assert!(Target::parse("unix:").is_err());
        assert!(Target::parse("localhost").is_err());
        assert_eq!(Target::parse("unix:/x").unwrap().to_string(), "unix:/x");
    }

    #[test]
    fn budget_hands_out_exactly_the_limit() {
        let b = Budget::new(
            Limit {
                messages: Some(3),
                duration: None,
            },
            Instant::now(),
        );
        assert_eq!((0..10).filter(|_| b.take()).count(), 3);
        let past = Budget::new(
            Limit {
                messages: None,
                duration: Some(Duration::ZERO),
            },
            Instant::now(),
        );
        assert!(!past.take());
    }

    #[test]
    fn crlf_and_from() {
        assert_eq!(to_crlf(b"a\nb\n".to_vec()), b"a\r\nb\r\n");
        assert_eq!(to_crlf(b"a\r\nb\n".to_vec()), b"a\r\nb\n");
        let msg = b"To: b@x\r\nFrom: Alice\r\n <alice@example.com>\r\n\r\nFrom: no@x\r\n";
        assert_eq!(from_address(msg).as_deref(), Some("alice@example.com"));
        assert_eq!(
            from_address(b"From: a@b.example\r\n\r\n").as_deref(),
            Some("a@b.example")
        );
        assert_eq!(from_address(b"To: x\r\n\r\nFrom: a@b\r\n"), None);
    }
}
