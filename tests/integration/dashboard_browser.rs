//! The web dashboard in headless Chromium: the pages rendered after real traffic (DOM dumps
//! and screenshots under `target/ui-screenshots/`), and a person's path driven over the
//! DevTools protocol: the login form, a search, a verdict, logging out. Skipped without
//! `chromium`, unless `AUTHMILTER_REQUIRE_PEERS=1`.

use crate::common::*;
use crate::dashboard::{by_id, get, hostile_report, store_path, tokened_listener, traffic};
use crate::milter_client::Daemon;
use crate::postfix::require;
use authmilter::store::Store;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs chromium headless with `args` and `url`; its stdout.
pub(crate) fn chromium(program: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let out = std::process::Command::new(program)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_pages_after_real_traffic() {
    let Some(program) = require("chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = signing_keys(dir.path());
    let d = Daemon::start_with_api(move |c| c.signing.add_keys(keys)).await;
    traffic(&d).await;
    let a = d.http.unwrap();
    let profile = tempfile::tempdir().unwrap();
    let base = format!("http://{a}");
    let shots = screenshot_dir();
    let (program, profile_path) = (program.clone(), profile.path().to_path_buf());
    let run = move |args: Vec<String>, url: String| {
        let (program, profile_path) = (program.clone(), profile_path.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                chromium(&program, &profile_path, &args, &url)
            })
            .await
            .unwrap()
        }
    };
    let dump = |path: &str| run(vec!["--dump-dom".into()], format!("{base}{path}"));

    // The overview as the browser built it: the chart and the API's figures.
    let dom = dump("/ui/").await;
    assert!(dom.contains("<svg id=\"hourly-chart\""), "{dom}");
    assert_eq!(dom.matches("class=\"bar\"").count(), 2, "{dom}");
    // The figures the API reports for the same window.
    let stats: Value =
        serde_json::from_str(&get(a, "/v1/stats?group_by=dmarc").await.body).unwrap();
    let dmarc_pass = stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "pass")
        .map(|g| g["count"].as_u64().unwrap())
        .unwrap();
    let total = stats["total"].as_u64().unwrap();
    assert_eq!(by_id(&dom, "total-messages"), total.to_string());
    assert_eq!(
        by_id(&dom, "rate-dmarc"),
        format!("{:.1} %", dmarc_pass as f64 * 100.0 / total as f64)
    );
    assert_eq!(by_id(&dom, "rate-dmarc"), "75.0 %");

    // Follow a search to a verdict.
    let dom = dump("/ui/verdicts?queue_id=UIFAIL1").await;
    let at = dom.find("href=\"/ui/verdicts/").expect("a result link") + 6;
    let link = dom[at..][..dom[at..].find('"').unwrap()].to_string();
    // The hostile Message-ID is text in the DOM, not an element.
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;@test"),
        "{dom}"
    );
    assert!(!dom.contains("<script"), "{dom}");
    let dom = dump(&link).await;
    assert!(dom.contains("Authentication-Results"), "{dom}");
    assert!(dom.contains("dmarc=fail"), "{dom}");
    assert!(!dom.contains("<script"));

    // A report received, as the importer stores one (the importer has its own tests).
    let mut report = hostile_report();
    report.org_name = "Reporter Mail".into();
    report.email = "dmarc@reporter.example".into();
    report.report_id = "2026.12.05.1".into();
    report.policy = json!({"domain": "example.com", "p": "reject"});
    report.errors.clear();
    report.messages = 7;
    report.rows[0].header_from = "example.com".into();
    report.rows[0].envelope_from = None;
    report.rows[0].reasons = json!([]);
    let mut passing = report.rows[0].clone();
    (passing.source_ip, passing.count, passing.disposition) =
        ("192.0.2.1".into(), 2, "none".into());
    (passing.dkim, passing.spf) = ("pass".into(), "pass".into());
    report.rows.push(passing);
    Store::open(&store_path(&d))
        .unwrap()
        .insert_received_report(&report)
        .unwrap();
    let dom = dump("/ui/reports").await;
    assert_eq!(by_id(&dom, "report-count"), "1");
    assert_eq!(by_id(&dom, "report-pass-rate"), "28.6 %");

    let dom = dump("/ui/keys").await;
    assert_eq!(dom.matches(">matches<").count(), 2, "{dom}");

    for (name, path) in [
        ("overview", "/ui/"),
        ("verdicts", "/ui/verdicts"),
        ("verdict", link.as_str()),
        ("reports", "/ui/reports"),
        ("report", "/ui/reports/1"),
        ("reports-sent", "/ui/reports/sent"),
        ("keys", "/ui/keys"),
        ("login", "/ui/login"),
    ] {
        let file = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&file);
        run(
            vec![
                format!("--screenshot={}", file.display()),
                "--window-size=1280,1000".into(),
            ],
            format!("{base}{path}"),
        )
        .await;
        let png = std::fs::read(&file).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
    }
}

/// Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: commands
/// in on fd 3, answers out on fd 4, each a JSON text ended by NUL), so a test can type into
/// the login form and click like a person.
struct Browser {
    child: std::process::Child,
    to: std::io::PipeWriter,
    from: std::io::BufReader<std::io::PipeReader>,
    id: u64,
    session: Option<String>,
}

extern "C" {
    fn dup2(old: i32, new: i32) -> i32;
}

impl Browser {
    fn launch(program: &Path, profile: &Path) -> Browser {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let (commands_in, commands) = std::io::pipe().unwrap();
        let (answers, answers_out) = std::io::pipe().unwrap();
        let (fd3, fd4) = (commands_in.as_raw_fd(), answers_out.as_raw_fd());
        // dup2 onto 3 and 4 must not overwrite one of the two first.
        assert!(fd3 > 4 && fd4 > 4, "pipe fds {fd3} {fd4}");
        let mut command = std::process::Command::new(program);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: dup2 is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if dup2(fd3, 3) < 0 || dup2(fd4, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("chromium starts");
        drop((commands_in, answers_out));
        Browser {
            child,
            to: commands,
            from: std::io::BufReader::new(answers),
            id: 0,
            session: None,
        }
    }

    /// Sends a command (to the attached page, once there is one) and waits for its answer.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|error| panic!("{method}: {error}"))
    }

    /// As [`Browser::call`], the protocol's error returned.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        use std::io::{BufRead, Write};
        self.id += 1;
        let mut message = json!({"id": self.id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = session.clone().into();
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let mut raw = Vec::new();
            let n = self.from.read_until(0, &mut raw).unwrap();
            assert!(n > 0, "chromium closed the pipe during {method}");
            raw.pop();
            let answer: Value = serde_json::from_slice(&raw).unwrap();
            if answer["id"] == self.id {
                return match answer["error"].is_null() {
                    true => Ok(answer["result"].clone()),
                    false => Err(answer["error"].clone()),
                };
            }
        }
    }

    /// Opens a page target and attaches to it.
    fn open_page(&mut self) {
        let target = self.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// The value of a JavaScript expression in the page (DevTools evaluation is not subject to
    /// the page's CSP, which forbids every script of the page's own); null while the page is
    /// being replaced by the next one (the waits poll through that).
    fn eval(&mut self, expression: &str) -> Value {
        let Ok(r) = self.try_call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        ) else {
            return Value::Null;
        };
        r["result"]["value"].clone()
    }

    /// Waits until the page at `path` has loaded; panics after 15 s.
    fn wait_for(&mut self, path: &str) {
        for _ in 0..150 {
            let at = self.eval("document.readyState + ' ' + location.pathname");
            if at.as_str() == Some(&format!("complete {path}")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("never reached {path}");
    }

    /// Waits until a JavaScript condition holds in the page; panics after 15 s.
    fn wait_until(&mut self, condition: &str) {
        for _ in 0..150 {
            if self.eval(condition) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("never true: {condition}");
    }

    fn screenshot(&mut self, file: &Path) {
        use base64ct::Encoding;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64ct::Base64::decode_vec(shot["data"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(file, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_through_the_form_and_out_again() {
    let Some(program) = require("chromium") else {
        return;
    };
    let d = Daemon::start_with_api(|_| {}).await;
    traffic(&d).await;
    let a = tokened_listener(Some(store_path(&d))).await;
    let base = format!("http://{a}");
    let shots = screenshot_dir();
    let profile = tempfile::tempdir().unwrap();
    let profile_path = profile.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(&program, &profile_path);
        b.open_page();
        b.call("Page.navigate", json!({"url": format!("{base}/ui/")}));
        // Sent to the form: this listener needs a token.
        b.wait_for("/ui/login");
        b.screenshot(&shots.join("login-form.png"));
        b.eval(
            "document.getElementById('token').value = 'reader token'; \
             document.querySelector('form.login button').click(); true",
        );
        b.wait_for("/ui/");
        assert_eq!(
            b.eval("document.getElementById('total-messages').textContent"),
            "4"
        );
        assert_eq!(
            b.eval("document.getElementById('rate-dmarc').textContent"),
            "75.0 %"
        );
        assert_eq!(
            b.eval("document.querySelectorAll('#hourly-chart rect.bar').length"),
            2
        );
        // HttpOnly: the page's scripts cannot read the token.
        assert_eq!(b.eval("document.cookie"), "");
        let cookies = b.call(
            "Network.getCookies",
            json!({"urls": [format!("{base}/ui/")]}),
        );
        let cookie = &cookies["cookies"][0];
        assert_eq!(cookie["name"], "authmilter_ui", "{cookies}");
        assert_eq!(
            (&cookie["httpOnly"], &cookie["sameSite"], &cookie["path"]),
            (&json!(true), &json!("Strict"), &json!("/ui"))
        );
        // The stylesheet applied (the CSP allows it, and nothing inline).
        assert_eq!(
            b.eval("getComputedStyle(document.querySelector('header')).backgroundColor"),
            "rgb(31, 42, 60)"
        );
        b.screenshot(&shots.join("overview-logged-in.png"));

        // A search from the form, then a result's page.
        b.eval("document.querySelector('nav a[href=\"/ui/verdicts\"]').click(); true");
        b.wait_for("/ui/verdicts");
        b.eval(
            "document.getElementById('queue_id').value = 'UIFAIL1'; \
             document.querySelector('form.search button').click(); true",
        );
        b.wait_until(
            "document.readyState == 'complete' && \
             location.search.startsWith('?queue_id=UIFAIL1&')",
        );
        assert_eq!(b.eval("document.querySelectorAll('#results a').length"), 1);
        // The hostile Message-ID is text, not an element.
        assert_eq!(b.eval("document.querySelectorAll('script').length"), 0);
        let text = b.eval("document.getElementById('results').textContent");
        assert!(
            text.as_str()
                .unwrap()
                .contains("<<script>alert(1)</script>@test>"),
            "{text}"
        );
        b.eval("document.querySelector('#results a').click(); true");
        b.wait_until(
            "document.readyState == 'complete' && \
             location.pathname.startsWith('/ui/verdicts/')",
        );
        let ar = b.eval("document.getElementById('authentication_results').textContent");
        assert!(ar.as_str().unwrap().contains("dmarc=fail"), "{ar}");
        b.screenshot(&shots.join("verdict-logged-in.png"));

        // Log out: the cookie is gone and the pages send the browser to the form again.
        b.eval("document.querySelector('form.logout button').click(); true");
        b.wait_for("/ui/login");
        let cookies = b.call(
            "Network.getCookies",
            json!({"urls": [format!("{base}/ui/")]}),
        );
        assert_eq!(cookies["cookies"], json!([]));
        b.call("Page.navigate", json!({"url": format!("{base}/ui/")}));
        b.wait_for("/ui/login");
        let _ = b.call("Browser.close", json!({}));
    })
    .await
    .unwrap();
}
