//! The Debian package and what ships in it: the sample configuration, the systemd unit, the
//! man pages and completions generated from the binary, JSON logs, and the Grafana
//! dashboard (every metric it queries must exist in `/metrics`).

use crate::http::call;
use crate::milter_client::Daemon;
use crate::postfix::{find_program, require, running_as_root, skip};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_authmilter");

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_shipped_configuration_validates() {
    let out = run(Command::new(BIN)
        .args(["validate", "--config"])
        .arg(repo("packaging/authmilter.toml")));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
}

#[test]
fn json_log_lines_parse_with_the_expected_fields() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--milter", "127.0.0.1:0"])
        .args(["--nameserver", "127.0.0.1:9"])
        .env("AUTHMILTER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("authmilter serving")
    {
        assert!(Instant::now() < deadline, "never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    // Event fields sit at the top level, beside the message.
    let listening = lines
        .iter()
        .find(|l| l["message"] == "listening")
        .expect("the listening line");
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["milter"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{listening}"
    );
}

#[test]
fn man_pages_cover_every_command_and_the_configuration_reference() {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(BIN).arg("man").arg(dir.path()));
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let main = read("authmilter.8");
    assert!(
        main.starts_with(".ie") || main.contains(".TH authmilter 8"),
        "{main}"
    );
    for command in [
        "serve",
        "check",
        "validate",
        "sign",
        "keygen",
        "report",
        "completions",
    ] {
        assert!(main.contains(command), "authmilter.8 lacks {command}");
        let page = read(&format!("authmilter-{command}.8"));
        let title = format!(
            ".TH authmilter-{command} 8  \"authmilter {}\"",
            env!("CARGO_PKG_VERSION")
        );
        assert!(page.contains(&title), "{page}");
    }
    // Nested commands get theirs too, under the name their parent's page gives them.
    assert!(read("authmilter-report.8").contains("authmilter\\-report\\-send"));
    assert!(read("authmilter-report-send.8").contains(".TH authmilter-report-send 8"));
    let serve = read("authmilter-serve.8");
    for flag in ["\\-\\-milter", "\\-\\-config", "\\-\\-log\\-format"] {
        assert!(serve.contains(flag), "authmilter-serve.8 lacks {flag}");
    }
    // The configuration page is the README's reference: every key of the table is on it.
    let config = read("authmilter.toml.5");
    let keys = authmilter::manpage::reference_keys(authmilter::manpage::README);
    assert!(keys.len() > 50);
    for key in &keys {
        let name = key.key.split('`').nth(1).unwrap().replace('-', "\\-");
        assert!(
            config.contains(&name),
            "authmilter.toml.5 lacks {}",
            key.key
        );
    }
    // groff reads them without a warning (when man-db is here).
    let Some(man) = find_program("man") else {
        println!("skipped: man not installed, pages not rendered");
        return;
    };
    for page in ["authmilter.8", "authmilter-serve.8", "authmilter.toml.5"] {
        let out = run(Command::new(&man)
            .args(["--warnings", "-E", "UTF-8", "-l"])
            .arg(dir.path().join(page))
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0"));
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.trim().is_empty(), "{page}: {warnings}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, check) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = run(Command::new(BIN).args(["completions", shell]));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("authmilter"), "{shell}");
        assert!(script.contains("validate") && script.contains("log-format"));
        // The shell parses it, when installed.
        if let Some(program) = find_program(check) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("completion");
            std::fs::write(&file, &script).unwrap();
            run(Command::new(program).arg("-n").arg(&file));
        }
    }
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit = std::fs::read_to_string(repo("packaging/systemd/authmilter.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ReadWritePaths=/var/lib/authmilter",
        "User=authmilter",
        "ExecStart=/usr/bin/authmilter serve --config /etc/authmilter/authmilter.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    let Some(analyze) = require("systemd-analyze") else {
        return;
    };
    // The unit as installed, pointing at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authmilter.service");
    std::fs::write(&file, unit.replace("/usr/bin/authmilter", BIN)).unwrap();
    let out = run(Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&file));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("authmilter.service"), "{said}");
}

/// Every `authmilter_*` name in the dashboard's queries (histogram series included).
fn dashboard_metrics(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    if let (true, Some(text)) = (
                        matches!(key.as_str(), "expr" | "query" | "definition"),
                        value.as_str(),
                    ) {
                        names_in(text, out);
                    } else {
                        walk(value, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out.sort();
    out.dedup();
    out
}

fn names_in(query: &str, out: &mut Vec<String>) {
    let mut rest = query;
    while let Some(i) = rest.find("authmilter_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_grafana_dashboard_queries_exists() {
    let text = std::fs::read_to_string(repo("packaging/grafana/authmilter.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let wanted = dashboard_metrics(&dashboard);
    assert!(wanted.len() >= 20, "{wanted:?}");
    let d = Daemon::start_with_api(|_| {}).await;
    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split([' ', '{']).next())
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !series.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in /metrics: {missing:?}\n{metrics}"
    );
    // The names the extractor found are the queried ones, not fragments.
    assert!(wanted.contains(&"authmilter_eom_duration_seconds_bucket".to_string()));
}

#[test]
fn a_dashboard_query_of_an_unknown_metric_is_caught() {
    let dashboard = serde_json::json!({"panels": [{"targets": [
        {"expr": "sum(rate(authmilter_no_such_total[5m])) / authmilter_open_connections"}
    ]}]});
    assert_eq!(
        dashboard_metrics(&dashboard),
        ["authmilter_no_such_total", "authmilter_open_connections"]
    );
}

/// `cargo deb` from `$CARGO_HOME/bin` (where `cargo install` puts it) or PATH.
fn cargo_deb() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    home.map(|h| h.join("bin/cargo-deb"))
        .filter(|p| p.is_file())
        .or_else(|| find_program("cargo-deb"))
}

// The .deb, built from the binary under test (`cargo deb --no-build`: about 6 s with --fast,
// so it runs with every `cargo test`), then installed into a scratch root with the real
// dpkg and its maintainer scripts (--force-script-chrootless; they honour DPKG_ROOT), and
// purged again.
#[test]
fn the_debian_package_installs_into_a_scratch_root() {
    for tool in ["dpkg-deb", "dpkg"] {
        if require(tool).is_none() {
            return;
        }
    }
    let Some(cargo_deb) = cargo_deb() else {
        skip::<()>("cargo-deb not installed (cargo install cargo-deb --locked)");
        return;
    };
    let exe = Path::new(BIN);
    // target/debug/authmilter -> target
    let target_dir = exe.parent().and_then(Path::parent).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(bin) = cargo_deb.parent() {
        let mut dirs = vec![bin.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        path = std::env::join_paths(dirs).unwrap();
    }
    run(Command::new(repo("packaging/build-deb.sh"))
        .args(["--no-build", "--fast", "-q", "-o"])
        .arg(out_dir.path())
        .env("PROFILE", "dev")
        .env("CARGO_TARGET_DIR", target_dir)
        .env("PATH", &path));
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let listing = String::from_utf8_lossy(&listing.stdout);
    for file in [
        "./usr/bin/authmilter",
        "./etc/authmilter/authmilter.toml",
        "./usr/lib/systemd/system/authmilter.service",
        "./usr/lib/sysusers.d/authmilter.conf",
        "./usr/lib/tmpfiles.d/authmilter.conf",
        "./usr/share/man/man8/authmilter.8.gz",
        "./usr/share/man/man8/authmilter-serve.8.gz",
        "./usr/share/man/man5/authmilter.toml.5.gz",
        "./usr/share/bash-completion/completions/authmilter",
        "./usr/share/zsh/vendor-completions/_authmilter",
        "./usr/share/fish/vendor_completions.d/authmilter.fish",
        "./usr/share/authmilter/grafana/authmilter.json",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(file)),
            "{file} not in the package:\n{listing}"
        );
    }
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(
        String::from_utf8_lossy(&conffiles.stdout).trim(),
        "/etc/authmilter/authmilter.toml"
    );

    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // With systemd running, the generated scripts would talk to the host's systemd
    // (daemon-reload, start): unpack with dpkg-deb there instead, and apply the sysusers.d
    // and tmpfiles.d files with --root as the postinst does.
    let full_install = running_as_root() && !Path::new("/run/systemd/system").exists();
    if full_install {
        for dir in ["info", "updates", "triggers"] {
            std::fs::create_dir_all(root.join("var/lib/dpkg").join(dir)).unwrap();
        }
        std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        run(dpkg(root).arg("-i").arg(&deb));
    } else {
        println!("note: not root or systemd running: dpkg-deb -x instead of dpkg --root -i");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root));
        if let Some(sysusers) = find_program("systemd-sysusers") {
            run(Command::new(sysusers)
                .arg(format!("--root={}", root.display()))
                .arg("authmilter.conf"));
        }
    }

    // The shipped configuration passes `validate`, with the shipped binary.
    let out = run(Command::new(root.join("usr/bin/authmilter"))
        .args(["validate", "--config"])
        .arg(root.join("etc/authmilter/authmilter.toml")));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));

    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let Some(user) = passwd.lines().find(|l| l.starts_with("authmilter:")) else {
        skip::<()>("systemd-sysusers not installed: the system user was not checked");
        return;
    };
    assert!(
        user.ends_with(":/var/lib/authmilter:/usr/sbin/nologin"),
        "{user}"
    );
    if !full_install {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    let state = std::fs::metadata(root.join("var/lib/authmilter")).unwrap();
    assert_eq!((state.uid(), state.mode() & 0o777), (uid, 0o750));
    let config = std::fs::metadata(root.join("etc/authmilter/authmilter.toml")).unwrap();
    assert_eq!((config.uid(), config.gid()), (0, state.gid()));
    assert_eq!(config.mode() & 0o777, 0o640);
    let wants = root.join("etc/systemd/system/multi-user.target.wants/authmilter.service");
    assert!(wants.symlink_metadata().is_ok(), "the unit is not enabled");

    // Purge: the configuration and the state go, the unit is no longer enabled.
    run(dpkg(root).args(["--purge", "authmilter"]));
    for gone in [
        "etc/authmilter/authmilter.toml",
        "var/lib/authmilter",
        "usr/bin/authmilter",
        "etc/systemd/system/multi-user.target.wants/authmilter.service",
    ] {
        let left = root.join(gone).symlink_metadata().is_ok();
        assert!(!left, "{gone} left after purge");
    }
}

/// dpkg working on `root`: the maintainer scripts run on this host with DPKG_ROOT set
/// (no chroot, which would need a whole system inside); dependencies are not installed there.
fn dpkg(root: &Path) -> Command {
    let mut cmd = Command::new("dpkg");
    cmd.arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-not-root",
            "--force-depends",
            "--log=/dev/null",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Every key the README's configuration reference names, dotted (`[[signing.keys]]`
/// `domain` -> `signing.keys.domain`).
fn reference_key_names() -> Vec<String> {
    let mut names = Vec::new();
    for key in authmilter::manpage::reference_keys(authmilter::manpage::README) {
        let spans: Vec<&str> = key.key.split('`').skip(1).step_by(2).collect();
        let table = spans
            .first()
            .filter(|s| s.starts_with('['))
            .map(|s| s.trim_matches(['[', ']']));
        for span in &spans {
            match table {
                Some(t) if !span.starts_with('[') => names.push(format!("{t}.{span}")),
                _ => names.push(span.trim_matches(['[', ']']).to_string()),
            }
        }
    }
    names
}

// The sample's commented-out keys are not checked by `validate`: each must be a key of the
// reference (a typo there would become an operator's startup error).
#[test]
fn every_key_in_the_shipped_configuration_is_in_the_reference() {
    let known = reference_key_names();
    assert!(
        known.iter().any(|k| k == "signing.keys.key_file"),
        "{known:?}"
    );
    let sample = std::fs::read_to_string(repo("packaging/authmilter.toml")).unwrap();
    let mut table = String::new();
    let mut checked = 0;
    for line in sample.lines() {
        let line = line.trim_start_matches('#').trim();
        if line.starts_with('[') && line.ends_with(']') {
            table = line.trim_matches(['[', ']']).to_string();
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let dotted = if table.is_empty() {
            key.to_string()
        } else {
            format!("{table}.{key}")
        };
        assert!(
            known.contains(&dotted),
            "{dotted} is not in the README's reference"
        );
        checked += 1;
    }
    assert!(checked >= 20, "{checked} keys checked");
}
