//! The real binary: `authmilter serve` on a Unix socket, answering a milter negotiation,
//! reloading on SIGHUP, and exiting 0 on SIGTERM.

use crate::common::*;
use authmilter::milter::codec::{Decoded, Decoder};
use authmilter::milter::command::Command;
use authmilter::milter::reply::Reply;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

fn negotiate(path: &std::path::Path) -> Reply {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    Command::OptNeg {
        version: 6,
        actions: 0x1ff,
        protocol: 0x1fffff,
    }
    .encode(&mut out);
    s.write_all(&out).unwrap();
    let (mut buf, mut decoder, mut chunk) = (Vec::new(), Decoder::new(1 << 16), [0u8; 4096]);
    loop {
        if let Decoded::Frame(f) = decoder.decode(&mut buf) {
            return Reply::decode(f).unwrap();
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed without a reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn kill(pid: u32, signal: &str) {
    let ok = Process::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} failed");
}

#[test]
fn serve_on_a_unix_socket_reloads_and_stops_on_signals() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let config = dir.path().join("authmilter.toml");
    std::fs::write(&config, "authserv_id = \"mx.serve.test\"\n[milter]\nsocket_mode = \"0600\"\n[dns]\nnameservers = [\"127.0.0.1:9\"]\n").unwrap();
    let log = dir.path().join("log");
    let mut child = Process::new(env!("CARGO_BIN_EXE_authmilter"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--milter",
            &format!("unix:{}", socket.display()),
        ])
        .env("AUTHMILTER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "socket never appeared: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(matches!(
        negotiate(&socket),
        Reply::OptNeg { version: 6, .. }
    ));

    // SIGHUP with a broken file: logged, the old configuration stays, still serving.
    std::fs::write(
        &config,
        "authserv_id = \"mx.serve.test\"\n[dns]\ntimeout = 3\n",
    )
    .unwrap();
    kill(child.id(), "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(matches!(negotiate(&socket), Reply::OptNeg { .. }));
    // SIGHUP with a good file: reloaded.
    std::fs::write(&config, "authserv_id = \"mx.reloaded.test\"\n").unwrap();
    kill(child.id(), "-HUP");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("configuration reloaded") {
            assert!(text.contains("reload failed"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no reload logged: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }

    kill(child.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(!socket.exists(), "socket left behind");
}

#[test]
fn serve_refuses_to_start_on_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[milter]\nlisten = \"nowhere\"\n").unwrap();
    let out = Process::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2: key `milter.listen`"), "{err}");
    let _ = testdata("");
}

#[test]
fn serve_refuses_to_start_when_the_store_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the database file should be: SQLite cannot open it.
    let store = dir.path().join("verdicts.sqlite");
    std::fs::create_dir(&store).unwrap();
    let out = Process::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--milter", "127.0.0.1:0", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("verdict store"), "{err}");
}

/// The next sd_notify datagram (fails the test after 20 s).
fn next_notification(socket: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("no sd_notify datagram within 20 s");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

// systemd's Type=notify protocol (sd_notify(3)): READY=1 once the listeners are bound,
// RELOADING=1 (with MONOTONIC_USEC, systemd >= 253) then READY=1 around a SIGHUP reload, and
// STOPPING=1 on SIGTERM, each a datagram on $NOTIFY_SOCKET.
#[test]
fn serve_notifies_systemd_of_ready_reload_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = dir.path().join("authmilter.toml");
    std::fs::write(&config, "[dns]\nnameservers = [\"127.0.0.1:9\"]\n").unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--milter", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = next_notification(&notify);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");

    kill(child.id(), "-HUP");
    let reloading = next_notification(&notify);
    let lines: Vec<&str> = reloading.lines().collect();
    assert!(lines.contains(&"RELOADING=1"), "{reloading}");
    let usec: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    assert!(usec > 0);
    let again = next_notification(&notify);
    assert!(again.lines().any(|l| l == "READY=1"), "{again}");

    kill(child.id(), "-TERM");
    let stopping = next_notification(&notify);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

// [store] url to a PostgreSQL that does not answer, with the default on_unavailable =
// "refuse": serve refuses to start and says how to start anyway.
#[test]
fn serve_refuses_to_start_when_postgres_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("fleet.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nlisten = \"127.0.0.1:0\"\n[store]\n\
             url = \"postgres://am:secret@127.0.0.1:{port}/authmilter?sslmode=disable\"\n"
        ),
    )
    .unwrap();
    let out = Process::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "verdict store postgres://am:***@127.0.0.1:{port}/authmilter"
        )) && err.contains("on_unavailable = \"buffer\""),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

/// Runs `serve` on a free port with standard error into a pipe and `env`, stops it with
/// SIGTERM once it listens, and returns what it wrote. With `journal`, JOURNAL_STREAM
/// names that very pipe, as systemd does for a service logging to the journal.
fn serve_log(env: &[(&str, &str)], journal: bool) -> String {
    use std::os::fd::AsRawFd;
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_authmilter"));
    cmd.args(["serve", "--milter", "127.0.0.1:0"])
        .env("AUTHMILTER_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .envs(env.iter().copied());
    if journal {
        // SAFETY: fstat only writes the struct it is given.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(writer.as_raw_fd(), &mut st) }, 0);
        cmd.env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino));
    }
    let (out_reader, out_writer) = std::io::pipe().unwrap();
    let mut child = cmd.stdout(out_writer).stderr(writer).spawn().unwrap();
    drop(cmd);
    let reading = std::thread::spawn(move || {
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        text
    });
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let mut out_reader = out_reader;
        out_reader.read_to_string(&mut text).unwrap();
        text
    });
    // The milter port is 0; the listening line says it is up. Bounded by the child's own
    // stop below: give it 3 s to start.
    std::thread::sleep(Duration::from_secs(3));
    kill(child.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = reading.join().unwrap();
    assert_eq!(stdout.join().unwrap(), "", "serve writes nothing to stdout");
    assert!(text.contains("authmilter serving"), "{text}");
    text
}

// Issue 27: log lines to a pipe, a file or the journal carry no ANSI colour (it garbles them
// for journald, grep and shippers); under systemd's journal (JOURNAL_STREAM naming our
// stderr) no timestamp of ours, since the journal stamps each line.
#[test]
fn log_lines_fit_their_destination() {
    let piped = serve_log(&[], false);
    assert!(!piped.contains('\x1b'), "{piped:?}");
    // tracing's text format: the RFC 3339 timestamp first.
    assert!(
        piped.lines().all(|l| l.starts_with("20")),
        "timestamps expected: {piped}"
    );
    let journal = serve_log(&[], true);
    assert!(!journal.contains('\x1b'), "{journal:?}");
    assert!(
        journal
            .lines()
            .all(|l| l.trim_start().starts_with("INFO") || l.trim_start().starts_with("WARN")),
        "no timestamp expected: {journal}"
    );
    // A JOURNAL_STREAM inherited by a process whose stderr goes elsewhere is not the journal.
    let elsewhere = serve_log(&[("JOURNAL_STREAM", "1:1")], false);
    assert!(
        elsewhere.lines().all(|l| l.starts_with("20")),
        "{elsewhere}"
    );
    let no_color = serve_log(&[("NO_COLOR", "1")], false);
    assert!(!no_color.contains('\x1b'), "{no_color:?}");
}

// A spool that cannot be opened (its folder missing) is a configuration error: serve
// refuses to start rather than run on and lose verdicts in the next database outage.
#[test]
fn serve_refuses_to_start_when_the_spool_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fleet.toml");
    std::fs::write(
        &config,
        "[milter]\nlisten = \"127.0.0.1:0\"\n[store]\n\
         url = \"postgres://am@127.0.0.1:9/authmilter?sslmode=disable\"\n\
         on_unavailable = \"buffer\"\nspool_path = \"missing/spool.sqlite\"\n",
    )
    .unwrap();
    let out = Process::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("AUTHMILTER_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store.spool_path"), "{err}");
    assert!(err.contains("missing/spool.sqlite"), "{err}");
}
