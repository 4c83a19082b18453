//! A private PostgreSQL cluster for the fleet tests: Debian's `postgresql` 15 binaries,
//! `initdb` into a temporary folder and `postgres` on a free loopback port, run as the
//! `postgres` user when the tests run as root (the server refuses to run as root). Skipped
//! when the binaries are missing, unless `AUTHMILTER_REQUIRE_PEERS=1` (CI).

use crate::signing_interop::skip;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster; stopped (immediately) and deleted when dropped.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
    /// The user the server runs as (`None`: the current one).
    user: Option<String>,
    /// Extra `-c name=value` settings (TLS).
    settings: Vec<String>,
}

/// uid and gid of `name`, from `id`.
fn ids(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

impl PgCluster {
    /// A new cluster, or `None` (skipped) when PostgreSQL is not installed.
    pub fn start() -> Option<PgCluster> {
        PgCluster::start_with(|_| Vec::new())
    }

    /// As [`PgCluster::start`]; `settings` gets the cluster folder (to put files in, owned by
    /// the server's user afterwards) and returns `name=value` settings for the server.
    pub fn start_with(settings: impl FnOnce(&Path) -> Vec<String>) -> Option<PgCluster> {
        if !Path::new(BIN).join("initdb").exists() {
            skip("PostgreSQL 15 (Debian postgresql) not installed");
            return None;
        }
        let root = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let settings = settings(dir.path());
        let user = if root {
            let name = "postgres";
            let (uid, gid) = ids(name).expect("the postgres user (Debian postgresql creates it)");
            chown_tree(dir.path(), uid, gid);
            Some(name.to_string())
        } else {
            None
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cluster = PgCluster {
            dir,
            port,
            user,
            settings,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.start_server();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the PostgreSQL programs as the server's user; panics on failure.
    fn run(&self, program: &str, args: &[&str]) {
        let path = Path::new(BIN).join(program);
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts (or restarts, after [`PgCluster::kill`]) the server and waits until it answers.
    pub fn start_server(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        for s in &self.settings {
            options.push_str(&format!(" -c {s}"));
        }
        let data = self.data();
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Kills the server the hard way: SIGKILL to the postmaster and every process of it
    /// (connections break at once, as in a crash).
    pub fn kill(&self) {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let pid: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let children = children_of(pid);
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            for child in children {
                libc::kill(child, libc::SIGKILL);
            }
        }
        // Gone when the pid no longer answers signal 0.
        for _ in 0..100 {
            if unsafe { libc::kill(pid, 0) } != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`); [`PgCluster::start_server`] again.
    pub fn stop(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    /// The URL of database `db` (created by [`PgCluster::create_db`]), without TLS.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A new, empty database.
    pub fn create_db(&self, name: &str) {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// Runs `query` on database `db` with psql and returns its unaligned output (the tests'
    /// own look at the tables, apart from the code under test).
    pub fn sql(&self, db: &str, query: &str) -> String {
        let out = Command::new(Path::new(BIN).join("psql"))
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", query])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The server's log, for failure messages.
    #[allow(dead_code)]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let path = Path::new(BIN).join("pg_ctl");
        let args = [
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ];
        let _ = match &self.user {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&path)
                .args(args)
                .output(),
            None => Command::new(&path).args(args).output(),
        };
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        let after = &stat[stat.rfind(')').map(|i| i + 1).unwrap_or(0)..];
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}
