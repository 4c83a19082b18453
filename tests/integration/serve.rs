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
