//! Postfix in front of the daemon, for real: a private Postfix instance (a scratch folder with
//! its own main.cf and master.cf, loopback ports chosen at run time) whose smtpd hands every
//! message to a daemon running in this process. A small SMTP client makes each message look
//! external (XCLIENT), and the tests assert on what really happened: the client's SMTP reply,
//! the Maildir file Postfix delivered, its hold queue and its log.
//!
//! One instance serves the whole module (starting Postfix takes about two seconds). It has three
//! smtpd listeners, one per daemon ([`Door`]): the default policy, a fail-open policy
//! (`dns_temperror = "accept"`), and a daemon whose DNS server is gone.
//!
//! Needs Debian's `postfix` and root. Without them each test prints "skipped: ..." and passes,
//! unless `AUTHMILTER_REQUIRE_PEERS=1` (CI), where it fails: CI can never pass by skipping.

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::milter_client::Daemon;
use crate::smtp_client::*;
use authmilter::server::Signal;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// Set to `1` in CI: a missing peer program is then a failure, never a silent skip.
pub const REQUIRE_PEERS: &str = "AUTHMILTER_REQUIRE_PEERS";

/// How long Postfix may take to deliver or hold an accepted message.
const DELIVERY: Duration = Duration::from_secs(10);

/// An outside SMTP client inside example.com's SPF range (192.0.2.0/24).
const GOOD_HOST: (&str, &str) = ("192.0.2.10", "ext.example");
/// An outside SMTP client no test domain authorizes.
const BAD_HOST: (&str, &str) = ("203.0.113.66", "evil.example");

/// Where a peer program is: on PATH, or in the sbin folders a non-root PATH often lacks.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Prints "skipped: {why}" and returns `None`; panics instead when `AUTHMILTER_REQUIRE_PEERS`
/// is set (to anything but `0`).
pub fn skip<T>(why: &str) -> Option<T> {
    let required = std::env::var(REQUIRE_PEERS).is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{why}, and {REQUIRE_PEERS} is set: install the Debian packages .ci/run installs"
    );
    println!("skipped: {why}");
    None
}

/// A peer program the test needs, or `None` (see [`skip`]) when it is not installed.
pub fn require(program: &str) -> Option<PathBuf> {
    find_program(program).or_else(|| skip(&format!("{program} not installed")))
}

pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uids = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            // Real, effective, saved, filesystem: the effective one counts.
            Some(uids.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Which daemon a message goes through: each has its own smtpd listener in Postfix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    /// The default policy (main.cf's `smtpd_milters`), signing example.com with the RSA and
    /// Ed25519 test keys (selectors `rsa` and `ed`).
    Default,
    /// A policy folder whose default.toml says `dns_temperror = "accept"`; also writes
    /// Received-SPF (a second inserted field).
    FailOpen,
    /// A daemon whose loopback DNS server was dropped right after it started.
    NoDns,
}

const DOORS: [Door; 3] = [Door::Default, Door::FailOpen, Door::NoDns];

/// A daemon kept alive for the whole test process.
struct Milter {
    addr: SocketAddr,
    /// Dropping the last sender could read as "shut down".
    _control: mpsc::Sender<Signal>,
    _dns: Option<DnsServer>,
}

/// Postfix, its daemons and the runtime they run on; one per test process.
struct Lab {
    postfix: Postfix,
    /// Postfix's smtpd port for each door, in [`DOORS`] order.
    ports: Vec<u16>,
    _milters: Vec<Milter>,
    _runtime: Runtime,
}

static LAB: OnceLock<Result<Lab, String>> = OnceLock::new();

/// The shared instance, started by whichever test comes first; `None` when skipped.
fn lab() -> Option<&'static Lab> {
    match LAB.get_or_init(Lab::start) {
        Ok(lab) => Some(lab),
        Err(why) => skip(why),
    }
}

impl Lab {
    /// `Err(reason to skip)` without Postfix or root; panics when Postfix will not start.
    fn start() -> Result<Lab, String> {
        let Some(postfix) = find_program("postfix") else {
            return Err("postfix not installed".into());
        };
        if !running_as_root() {
            return Err("postfix tests need root (postfix start)".into());
        }
        let started = Instant::now();
        // The daemons live on a runtime of their own, outliving every test's.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let scratch = tempfile::Builder::new()
            .prefix("authmilter-postfix-")
            .tempdir()
            .expect("a scratch folder")
            // From here on the reaper removes it (see tests/peers/postfix-reaper.sh).
            .keep();
        let policy_dir = scratch.join("fail-open-policy");
        std::fs::create_dir(&policy_dir).unwrap();
        std::fs::write(
            policy_dir.join("default.toml"),
            "dns_temperror = \"accept\"\n",
        )
        .unwrap();
        let keys = signing_keys(&scratch);
        let milters: Vec<Milter> = runtime.block_on(async {
            let mut milters = Vec::new();
            for door in DOORS {
                let dir = policy_dir.clone();
                let keys = keys.clone();
                let d = Daemon::start(move |c| {
                    if door == Door::FailOpen {
                        c.policy_dir = Some(dir);
                        c.received_spf = true;
                    }
                    if door == Door::Default {
                        c.signing.add_keys(keys);
                    }
                })
                .await;
                let dns = if door == Door::NoDns {
                    drop(d.dns);
                    None
                } else {
                    Some(d.dns)
                };
                milters.push(Milter {
                    addr: d.addr,
                    _control: d.control,
                    _dns: dns,
                });
            }
            milters
        });
        let ports: Vec<u16> = DOORS.iter().map(|_| free_port()).collect();
        let listeners: Vec<(u16, SocketAddr)> = ports
            .iter()
            .zip(&milters)
            .map(|(port, m)| (*port, m.addr))
            .collect();
        let postfix = Postfix::start(&postfix, scratch, &listeners);
        println!("postfix lab ready in {:?}", started.elapsed());
        Ok(Lab {
            postfix,
            ports,
            _milters: milters,
            _runtime: runtime,
        })
    }

    fn port(&self, door: Door) -> u16 {
        self.ports[DOORS.iter().position(|d| *d == door).unwrap()]
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A private Postfix instance under a scratch folder `$B`: configuration in `$B/etc`, queue in
/// `$B/spool`, log in `$B/maillog`, Maildir deliveries in `$B/mail/inbox/new/`.
pub struct Postfix {
    dir: PathBuf,
    /// `sh tests/peers/postfix-reaper.sh`, waiting for its stdin to close to stop Postfix.
    reaper: Child,
}

impl Postfix {
    /// Configures and starts Postfix with one smtpd per `(port, milter)`; the first one's milter
    /// is also main.cf's `smtpd_milters`/`non_smtpd_milters`. Panics with Postfix's own words
    /// when it will not start.
    pub fn start(postfix: &Path, dir: PathBuf, listeners: &[(u16, SocketAddr)]) -> Postfix {
        let main = main_cf(&dir, Some(listeners[0].1));
        let smtpds: Vec<(u16, Option<SocketAddr>)> = listeners
            .iter()
            .enumerate()
            .map(|(i, (port, milter))| (*port, (i > 0).then_some(*milter)))
            .collect();
        Postfix::start_with(postfix, dir, &main, &smtpds)
    }

    /// Postfix as the next hop behind authmilter's SMTP front end: one smtpd on `port`, no
    /// milter, XFORWARD accepted from loopback, and `extra` lines appended to main.cf.
    pub fn start_downstream(postfix: &Path, dir: PathBuf, port: u16, extra: &str) -> Postfix {
        let main = format!(
            "{}smtpd_authorized_xforward_hosts = 127.0.0.0/8\n{extra}",
            main_cf(&dir, None)
        );
        Postfix::start_with(postfix, dir, &main, &[(port, None)])
    }

    /// Stops Postfix (`postfix stop`) and waits until its smtpd ports are closed.
    pub fn stop(&self, ports: &[u16]) {
        let postfix = find_program("postfix").expect("postfix");
        let _ = Command::new(postfix)
            .arg("-c")
            .arg(self.conf())
            .arg("stop")
            .output();
        // `postfix stop` returns before master has exited.
        let closed = poll(Duration::from_secs(10), || {
            ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
                .then_some(())
        });
        assert!(closed.is_some(), "postfix still listens after stop");
    }

    /// Configures and starts Postfix with `main` as main.cf and one smtpd per `(port, milter)`
    /// (an smtpd without its own milter uses main.cf's, if any).
    fn start_with(
        postfix: &Path,
        dir: PathBuf,
        main: &str,
        listeners: &[(u16, Option<SocketAddr>)],
    ) -> Postfix {
        // Postfix's daemons (user postfix) and virtual(8) (uid 65534) must get through $B.
        run(Command::new("chmod").arg("755").arg(&dir));
        for sub in ["etc", "spool", "data", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        run(Command::new("chown")
            .arg("postfix:postfix")
            .arg(dir.join("data")));
        run(Command::new("chown")
            .arg("65534:65534")
            .arg(dir.join("mail")));
        let etc = dir.join("etc");
        std::fs::copy("/etc/postfix/master.cf", etc.join("master.cf"))
            .expect("/etc/postfix/master.cf (Debian's postfix package)");
        std::fs::write(etc.join("main.cf"), main).unwrap();
        let postconf = postfix.with_file_name("postconf");
        // No port 25, no chroot (the chroot would need copies of /etc files).
        run(Command::new(&postconf)
            .arg("-c")
            .arg(&etc)
            .args(["-M#", "smtp/inet"]));
        run(Command::new(&postconf)
            .arg("-c")
            .arg(&etc)
            .args(["-F", "*/*/chroot = n"]));
        let mut master = std::fs::OpenOptions::new()
            .append(true)
            .open(etc.join("master.cf"))
            .unwrap();
        for (port, milter) in listeners {
            let own_milter = milter
                .map(|m| format!(" -o smtpd_milters=inet:{m}"))
                .unwrap_or_default();
            writeln!(master, "127.0.0.1:{port} inet n - n - - smtpd{own_milter}").unwrap();
        }
        drop(master);

        let reaper = Command::new("sh")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/postfix-reaper.sh"))
            .arg(postfix)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not in the terminal's process group: Ctrl-C must not kill it before it cleans up.
            .process_group(0)
            .spawn()
            .expect("sh runs the reaper");
        let instance = Postfix { dir, reaper };

        // Postfix writes errors to stderr only when it is a terminal, else to the log: keep both.
        let log = std::fs::File::create(instance.dir.join("start.log")).unwrap();
        let status = Command::new(postfix)
            .arg("-c")
            .arg(&etc)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .expect("postfix runs");
        assert!(
            status.success(),
            "postfix start: {status}\n{}\n{}",
            std::fs::read_to_string(instance.dir.join("start.log")).unwrap_or_default(),
            instance.maillog()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        for (port, _) in listeners {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "postfix does not listen on {port}\n{}",
                    instance.maillog()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        instance
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("etc")
    }

    pub fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// The first log line matching `pred`, waiting for Postfix's log daemon to write it.
    pub fn log_line(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        poll(DELIVERY, || {
            self.maillog().lines().find(|l| pred(l)).map(str::to_string)
        })
    }

    /// The delivered message containing `marker`, if one arrives in `within`.
    pub fn delivered(&self, marker: &str, within: Duration) -> Option<String> {
        let new = self.dir.join("mail/inbox/new");
        poll(within, || {
            std::fs::read_dir(&new)
                .ok()?
                .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .find(|text| text.contains(marker))
        })
    }

    /// `postqueue -p`: the queue listing, held messages marked with `!`.
    pub fn queue(&self) -> String {
        self.tool("postqueue", &["-p"])
    }

    /// `postcat -hq id`: the header of a queued message as it sits in the queue.
    pub fn queued_header(&self, queue_id: &str) -> String {
        self.tool("postcat", &["-h", "-q", queue_id])
    }

    fn tool(&self, name: &str, args: &[&str]) -> String {
        let program = find_program(name).unwrap_or_else(|| panic!("{name} not installed"));
        let out = Command::new(program)
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postfix {
    /// Closing the reaper's stdin makes it stop Postfix and remove `$B`. (An instance kept in a
    /// static is never dropped: the pipe closes when the process exits, with the same effect.)
    fn drop(&mut self) {
        drop(self.reaper.stdin.take());
        let _ = self.reaper.wait();
    }
}

fn main_cf(dir: &Path, milter: Option<SocketAddr>) -> String {
    let b = dir.display();
    let milters = match milter {
        Some(m) => format!(
            "smtpd_milters = inet:{m}
non_smtpd_milters = inet:{m}
milter_default_action = tempfail
milter_protocol = 6
milter_connect_timeout = 5s
milter_command_timeout = 10s
milter_content_timeout = 20s
"
        ),
        None => String::new(),
    };
    format!(
        "compatibility_level = 3.6
queue_directory = {b}/spool
data_directory = {b}/data
myhostname = mx.test.local
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = {b}/maillog
maillog_file_prefixes = {b}
biff = no
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
smtpd_authorized_xclient_hosts = 127.0.0.0/8
virtual_mailbox_domains = example.com example.net example.org
virtual_mailbox_base = {b}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
{milters}"
    )
}

fn run(command: &mut Command) {
    let out = command.output().expect("command runs");
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn poll<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A delivered message's header fields as `(name, value)`, the value as stored: the text after
/// the colon with its folds (LF + whitespace) intact.
fn header_fields(message: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in message.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().expect("no fold before the first field");
            last.1.push('\n');
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').expect("a header field");
            fields.push((name.to_string(), value.to_string()));
        }
    }
    fields
}

/// The header as it was in Postfix's queue: without the fields virtual(8) prepends when it
/// delivers (Return-Path, X-Original-To, Delivered-To), which sit above everything else.
fn queued_fields(message: &str) -> Vec<(String, String)> {
    header_fields(message)
        .into_iter()
        .skip_while(|(name, _)| {
            ["Return-Path", "X-Original-To", "Delivered-To"].contains(&name.as_str())
        })
        .collect()
}

fn results(fields: &[(String, String)]) -> Vec<&str> {
    fields
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
        .map(|(_, value)| value.as_str())
        .collect()
}

impl Lab {
    /// Hands `raw` to Postfix through `door` as if from `host`; asserts the transaction reached
    /// the end of DATA and was answered `code` there.
    fn send(
        &self,
        door: Door,
        host: (&str, &str),
        envelope: (&str, &str),
        raw: &[u8],
        code: u16,
    ) -> SmtpReply {
        let sent = send_mail(self.port(door), host, envelope.0, envelope.1, raw);
        let got = (sent.stage, sent.reply.code);
        assert_eq!(got, (Stage::EndOfData, code), "{sent}");
        sent.reply
    }

    /// The delivered copy of the message with Message-ID `<{subject}@test>` (see
    /// [`message`]); panics with Postfix's log when it does not arrive.
    fn delivered(&self, subject: &str) -> String {
        let marker = format!("<{subject}@test>");
        let found = self.postfix.delivered(&marker, DELIVERY);
        found.unwrap_or_else(|| panic!("{marker} not delivered\n{}", self.postfix.maillog()))
    }

    fn assert_not_delivered(&self, subject: &str) {
        let marker = format!("<{subject}@test>");
        let found = self.postfix.delivered(&marker, Duration::from_millis(300));
        assert_eq!(found, None, "{marker} delivered");
    }
}

#[test]
fn signed_mail_is_delivered_with_our_results_first() {
    let Some(lab) = lab() else { return };
    let msg = message("Alice <alice@example.com>", "pf-signed", "Hello Bob.\r\n");
    let raw = sign_rsa("example.com", &msg);
    let envelope = ("alice@example.com", "signed-a@example.net");
    lab.send(Door::Default, GOOD_HOST, envelope, &raw, 250);
    let mail = lab.delivered("pf-signed");
    let fields = queued_fields(&mail);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    // SMFIR_INSHEADER index 0: above Postfix's own Received:, which the milter never saw.
    assert_eq!(names[..2], ["Authentication-Results", "Received"], "{mail}");
    let received = &fields[1].1;
    assert!(received.contains("[192.0.2.10]"), "XCLIENT ignored: {mail}");
    let ar = &fields[0].1;
    // Exactly one space after the colon: we negotiated SMFIP_HDR_LEADSPC and send it ourselves.
    assert!(ar.starts_with(" mx.test.example;"), "{ar:?}");
    for method in ["dkim=pass", "spf=pass", "dmarc=pass"] {
        assert!(ar.contains(method), "{method} missing: {ar}");
    }
    // Folded with LF + whitespace on the wire; Postfix stores proper continuation lines.
    assert!(!ar.contains('\r') && ar.lines().skip(1).all(|l| l.starts_with([' ', '\t'])));
    assert_eq!(results(&fields).len(), 1, "{mail}");
}

#[test]
fn dmarc_reject_is_refused_at_end_of_data_and_never_delivered() {
    let Some(lab) = lab() else { return };
    let raw = message("ceo@example.com", "pf-reject", "Pay this invoice.\r\n");
    let envelope = ("ceo@example.com", "reject-b@example.net");
    let reply = lab.send(Door::Default, BAD_HOST, envelope, &raw, 550);
    assert!(reply.text().starts_with("5.7.1 "), "{reply:?}");
    // Postfix logs the milter's refusal and drops the queue file: nothing left to deliver.
    let logged = lab.postfix.log_line(|l| {
        l.contains("milter-reject: END-OF-MESSAGE") && l.contains("to=<reject-b@example.net>")
    });
    let line = logged.unwrap_or_else(|| panic!("no milter-reject\n{}", lab.postfix.maillog()));
    assert!(line.contains(reply.text()), "{line}");
    assert!(!lab.postfix.queue().contains("reject-b@"));
    lab.assert_not_delivered("pf-reject");
}

#[test]
fn dmarc_quarantine_is_accepted_into_the_hold_queue() {
    let Some(lab) = lab() else { return };
    let raw = message("news@example.net", "pf-quarantine", "This week's news.\r\n");
    let envelope = ("news@example.net", "quarantine-c@example.net");
    let reply = lab.send(Door::Default, BAD_HOST, envelope, &raw, 250);
    let id = reply.queue_id().expect("a queue id").to_string();
    // `postqueue -p` marks a held message with `!` after its id.
    let held = poll(DELIVERY, || {
        let q = lab.postfix.queue();
        q.contains(&format!("{id}!")).then_some(q)
    });
    let listing = held.unwrap_or_else(|| panic!("{id} not held: {}", lab.postfix.queue()));
    assert!(listing.contains("news@example.net"), "{listing}");
    assert!(lab.postfix.dir.join("spool/hold").join(&id).is_file());
    let logged = lab
        .postfix
        .log_line(|l| l.contains(&id) && l.contains("milter-hold"));
    assert!(
        logged.is_some(),
        "no milter-hold\n{}",
        lab.postfix.maillog()
    );
    // The held copy already carries our verdict.
    let header = lab.postfix.queued_header(&id);
    assert!(
        header.contains("Authentication-Results: mx.test.example;"),
        "{header}"
    );
    assert!(header.contains("dmarc=fail"), "{header}");
    lab.assert_not_delivered("pf-quarantine");
}

#[test]
fn dns_timeout_is_451_at_end_of_data() {
    let Some(lab) = lab() else { return };
    // slow.example: SPF and DKIM pass, its _dmarc lookup times out (DNS temperror).
    let raw = sign_rsa(
        "slow.example",
        &message("a@slow.example", "pf-slow", "x\r\n"),
    );
    let envelope = ("a@slow.example", "slow-d@example.net");
    let reply = lab.send(Door::Default, GOOD_HOST, envelope, &raw, 451);
    assert!(reply.text().starts_with("4."), "{reply:?}");
    lab.assert_not_delivered("pf-slow");
}

#[test]
fn dns_server_gone_is_451_at_end_of_data() {
    let Some(lab) = lab() else { return };
    let raw = sign_rsa(
        "example.com",
        &message("alice@example.com", "pf-nodns", "x\r\n"),
    );
    let envelope = ("alice@example.com", "nodns-d@example.net");
    let reply = lab.send(Door::NoDns, GOOD_HOST, envelope, &raw, 451);
    assert!(reply.text().starts_with("4."), "{reply:?}");
    lab.assert_not_delivered("pf-nodns");
}

#[test]
fn dns_timeout_is_accepted_when_the_policy_fails_open() {
    let Some(lab) = lab() else { return };
    let raw = sign_rsa(
        "slow.example",
        &message("a@slow.example", "pf-failopen", "x\r\n"),
    );
    let envelope = ("a@slow.example", "failopen-d@example.net");
    lab.send(Door::FailOpen, GOOD_HOST, envelope, &raw, 250);
    let mail = lab.delivered("pf-failopen");
    let fields = queued_fields(&mail);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    // INSHEADER indexes 0 and 1, in that order: Postfix counts the field inserted first (and
    // its own Received:, which the milter never saw), so both land above Received:.
    let want = ["Authentication-Results", "Received-SPF", "Received"];
    assert_eq!(names[..3], want, "{mail}");
    assert!(fields[0].1.contains("dmarc=temperror"), "{mail}");
    assert!(fields[1].1.trim_start().starts_with("pass"), "{mail}");
}

#[test]
fn forged_results_are_removed_and_foreign_ones_kept() {
    let Some(lab) = lab() else { return };
    let signed = sign_rsa(
        "example.com",
        &message("alice@example.com", "pf-forged", "Hi.\r\n"),
    );
    // Two fields claiming our authserv-id (one folded) around a foreign one: Postfix numbers
    // CHGHEADER per field name, so deleting #3 and #1 must leave #2 alone.
    let raw = [
        b"Authentication-Results: mx.test.example; dkim=pass header.d=example.com\r\n".as_slice(),
        b"Authentication-Results: other.example; spf=pass smtp.mailfrom=example.com\r\n",
        b"Authentication-Results: mx.test.example;\r\n\tdmarc=pass header.from=example.com\r\n",
        &signed,
    ]
    .concat();
    let envelope = ("alice@example.com", "forged-e@example.net");
    lab.send(Door::Default, GOOD_HOST, envelope, &raw, 250);
    let mail = lab.delivered("pf-forged");
    let fields = queued_fields(&mail);
    assert_eq!(fields[0].0, "Authentication-Results", "ours first: {mail}");
    let ar = results(&fields);
    assert_eq!(ar.len(), 2, "{mail}");
    assert!(ar[0].starts_with(" mx.test.example;") && ar[0].contains("dkim=pass"));
    let foreign = " other.example; spf=pass smtp.mailfrom=example.com";
    assert_eq!(ar[1], foreign, "{mail}");
}

#[test]
fn trusted_mail_is_dual_signed_and_verifies_when_it_comes_back() {
    let Some(lab) = lab() else { return };
    let raw = message(
        "Alice <alice@example.com>",
        "pf-dual",
        "Signed on the way out.\r\n",
    );
    // From the loopback (a trusted network): outbound, signed, not verified.
    let local = ("127.0.0.1", "localhost");
    lab.send(
        Door::Default,
        local,
        ("alice@example.com", "dual-out@example.net"),
        &raw,
        250,
    );
    let out = lab.delivered("pf-dual");
    let fields = queued_fields(&out);
    let signatures: Vec<&str> = fields
        .iter()
        .filter(|(name, _)| name == "DKIM-Signature")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(signatures.len(), 2, "{out}");
    assert!(
        signatures.iter().any(|v| v.contains("a=rsa-sha256")),
        "{out}"
    );
    assert!(
        signatures.iter().any(|v| v.contains("a=ed25519-sha256")),
        "{out}"
    );
    assert!(
        results(&fields).is_empty(),
        "outbound mail was verified: {out}"
    );

    // The delivered copy, fed back in from outside, verifies twice.
    let back = out.replace("\r\n", "\n").replace('\n', "\r\n");
    let envelope = ("alice@example.com", "dual-back@example.net");
    lab.send(Door::Default, GOOD_HOST, envelope, back.as_bytes(), 250);
    let maildir = lab.postfix.dir.join("mail/inbox/new");
    let inbound = poll(DELIVERY, || {
        std::fs::read_dir(&maildir)
            .ok()?
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .find(|t| t.contains("<pf-dual@test>") && t.contains("dual-back@example.net"))
    })
    .unwrap_or_else(|| panic!("not delivered back\n{}", lab.postfix.maillog()));
    let fields = queued_fields(&inbound);
    let ar = results(&fields);
    assert_eq!(ar.len(), 1, "{inbound}");
    let passes = ar[0].matches("dkim=pass").count();
    assert_eq!(passes, 2, "{}", ar[0]);
    assert!(
        ar[0].contains("header.s=rsa") && ar[0].contains("header.s=ed"),
        "{}",
        ar[0]
    );
}
