//! `authmilter serve`: listeners, configuration reloads and shutdown.
//!
//! Each connection takes the current [`Snapshot`] (configuration, resolver, policy) when it
//! starts and keeps it to the end, so a reload never changes a session half-way. Control
//! comes through a channel of [`Signal`]s: `main` feeds it from SIGHUP/SIGTERM/SIGINT, tests
//! feed it directly. A graceful stop closes the listeners, lets every session finish the
//! message in flight (within the grace period), then returns.

use crate::auth::Verifier;
use crate::config::{Config, ListenAddr};
use crate::milter::listener::serve_connection;
use crate::policy::Policy;
use crate::sign::Signer;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

/// What a session needs, fixed for its lifetime.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub verifier: Verifier,
    pub policy: Arc<Policy>,
    /// Keys for outbound mail (empty: nothing is signed).
    pub signer: Arc<Signer>,
}

impl Snapshot {
    /// Builds the resolver and loads the policy and the signing keys the configuration
    /// names; a missing, unreadable or too widely readable key refuses to start (or reload).
    pub fn new(config: Config) -> Result<Snapshot, String> {
        let policy = match &config.policy_dir {
            Some(dir) => Policy::load_dir(dir).map_err(|e| e.to_string())?,
            None => Policy::default(),
        };
        let signer = Signer::new(&config.signing).map_err(|e| e.to_string())?;
        let config = Arc::new(config);
        let verifier = Verifier::new(Arc::clone(&config)).map_err(|e| e.to_string())?;
        Ok(Snapshot {
            config,
            verifier,
            policy: Arc::new(policy),
            signer: Arc::new(signer),
        })
    }
}

/// Re-reads configuration and policy for a reload.
pub type Loader = Arc<dyn Fn() -> Result<Snapshot, String> + Send + Sync>;

/// Instructions for a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Load configuration and policy again (SIGHUP); a broken one is logged and ignored.
    Reload,
    /// Stop accepting, finish messages in flight within the grace period (SIGTERM, SIGINT).
    Graceful,
    /// Stop now.
    Immediate,
}

/// A bound milter listener.
pub enum MilterListener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl MilterListener {
    /// Binds `addr`; a Unix socket replaces a stale file and gets `mode`.
    pub async fn bind(addr: &ListenAddr, mode: u32) -> io::Result<MilterListener> {
        match addr {
            ListenAddr::Tcp(a) => Ok(MilterListener::Tcp(TcpListener::bind(a).await?)),
            ListenAddr::Unix(path) => {
                if std::fs::symlink_metadata(path).is_ok() {
                    std::fs::remove_file(path)?;
                }
                let listener = UnixListener::bind(path)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                Ok(MilterListener::Unix(listener, path.clone()))
            }
        }
    }

    /// The address to tell the MTA (`127.0.0.1:8895` or `unix:/path`).
    pub fn local_addr(&self) -> String {
        match self {
            MilterListener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            MilterListener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }
}

/// Serves milter connections until told to stop.
pub async fn run(
    initial: Snapshot,
    loader: Loader,
    listener: MilterListener,
    mut control: mpsc::Receiver<Signal>,
) {
    let current = Arc::new(RwLock::new(Arc::new(initial)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = current
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .config
        .shutdown_grace;
    let accept = tokio::spawn(accept_loop(listener, Arc::clone(&current), stop_rx));
    tracing::info!("authmilter serving");

    let immediate = loop {
        match control.recv().await {
            Some(Signal::Reload) => match loader() {
                Ok(snapshot) => {
                    *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
                    tracing::info!("configuration reloaded; new sessions use it");
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload failed; keeping the old configuration")
                }
            },
            Some(Signal::Graceful) | None => break false,
            Some(Signal::Immediate) => break true,
        }
    };
    let _ = stop_tx.send(true);
    let mut sessions = match accept.await {
        Ok(sessions) => sessions,
        Err(_) => return,
    };
    if immediate {
        sessions.abort_all();
        return;
    }
    tracing::info!(
        sessions = sessions.len(),
        "stopping: waiting for messages in flight"
    );
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = sessions.len(),
            "grace period over; closing remaining sessions"
        );
        sessions.abort_all();
    }
}

/// Accepts until `stop` turns true; returns the sessions still running.
async fn accept_loop(
    listener: MilterListener,
    current: Arc<RwLock<Arc<Snapshot>>>,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut sessions = JoinSet::new();
    let max = current
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .config
        .milter
        .max_connections;
    let slots = Arc::new(Semaphore::new(max));
    loop {
        // Reap finished sessions so the set does not grow without bound.
        while sessions.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let stop_rx = stop.clone();
        tokio::select! {
            accepted = accept(&listener) => {
                // The configuration in force when the connection arrives, for its whole life.
                let snapshot = Arc::clone(&current.read().unwrap_or_else(|p| p.into_inner()));
                match accepted {
                Ok(Accepted::Tcp(stream)) => {
                    // End-of-message replies go out in one write; don't let Nagle hold them.
                    let _ = stream.set_nodelay(true);
                    sessions.spawn(async move {
                        serve_connection(stream, snapshot, stop_rx).await;
                        drop(permit);
                    });
                }
                Ok(Accepted::Unix(stream)) => {
                    sessions.spawn(async move {
                        serve_connection(stream, snapshot, stop_rx).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }},
            _ = stop.changed() => break,
        }
    }
    if let MilterListener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    sessions
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &MilterListener) -> io::Result<Accepted> {
    match listener {
        MilterListener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        MilterListener::Unix(l, _) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}
