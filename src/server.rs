//! `authmilter serve`: listeners, signals, configuration reloads and shutdown. [`serve`] is
//! the command once `main` has built its configuration.
//!
//! Each connection takes the current [`Snapshot`] (configuration, resolver, policy; defined
//! in [`crate::runtime`], below the transports) when it starts and keeps it to the end, so a
//! reload never changes a session half-way. Control
//! comes through a channel of [`Signal`]s: `main` feeds it from SIGHUP/SIGTERM/SIGINT, tests
//! feed it directly. A graceful stop closes the listeners, lets every session finish the
//! message in flight (within the grace period), then returns.
//!
//! Beside the milter, [`run_with`] starts the verdict store's writer, the importer of report
//! mail and the HTTP API; every snapshot (the first and each reloaded one) carries the same
//! [`Journal`] and report [`Inbox`], so recording survives reloads and the metrics keep
//! counting.

use crate::check::metrics::Metrics;
use crate::config::{Config, ListenAddr};
use crate::identity::limits::Guard;
use crate::milter::listener::serve_connection;
use crate::report::failure;
use crate::report::inbox::{spawn_importer, Importer, Inbox};
use crate::runtime::{Current, ReloadRequest, Snapshot};
use crate::store::{spawn_writer, Journal, Writer, LAST_WORDS};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

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

/// What runs beside the milter listener.
#[derive(Default)]
pub struct Services {
    /// The HTTP API's bound listener (`None`: no API).
    pub http: Option<TcpListener>,
    /// The SMTP front end's bound listeners, each with its role (empty: milter only).
    pub smtp: Vec<crate::smtp::listener::SmtpListener>,
}

/// `authmilter serve` once its configuration is built: checks that the configured store
/// opens, binds the listeners, installs the signal handlers and serves until stopped.
/// `loader` builds the configuration again on each reload.
pub fn serve(config: Config, loader: Loader) -> Result<(), ServeError> {
    let snapshot = Snapshot::new(config.clone()).map_err(ServeError::msg)?;
    // A configured store that cannot be opened (permissions, a newer schema) is a
    // configuration error: refuse to start rather than run without the records the operator
    // asked for. (Once running, a store failure never stops mail; it is logged and counted.)
    // A PostgreSQL database that cannot be reached may instead be waited for
    // (`on_unavailable = "buffer"`): the writer connects in the background.
    if let Some(location) = config.store.location() {
        match crate::store::Store::connect(&location) {
            Ok(_) => {}
            Err(e)
                if e.is_connection()
                    && config.store.on_unavailable == crate::config::OnUnavailable::Buffer =>
            {
                tracing::warn!(error = %e, "verdict store unreachable; starting anyway (on_unavailable = \"buffer\")");
            }
            Err(e) => {
                let hint = if e.is_connection() {
                    " (or set [store] on_unavailable = \"buffer\" to start and wait for it)"
                } else {
                    ""
                };
                return Err(ServeError::new(
                    format!("verdict store {location}{hint}"),
                    e,
                ));
            }
        }
    }
    // The spool (PostgreSQL only) must open now too: without it an outage loses verdicts.
    if let (Some(path), Some(_)) = (&config.store.spool_path, &config.store.url) {
        crate::store::Spool::open(path, config.store.spool_max_bytes)
            .map_err(|e| ServeError::new("store.spool_path", e))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::new("starting the async runtime", e))?;
    let served = runtime.block_on(async move {
        let listener = MilterListener::bind(&config.milter.listen, config.milter.socket_mode)
            .await
            .map_err(|e| ServeError::new(format!("cannot listen on {}", config.milter.listen), e))?;
        tracing::info!(milter = %listener.local_addr(), authserv_id = %config.authserv_id, "listening");
        let http = match config.http.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| ServeError::new(format!("cannot listen on {addr} (HTTP API)"), e))?,
            ),
            None => None,
        };
        let mut smtp = Vec::new();
        for endpoint in config.smtp.all_listeners() {
            let addr = endpoint.address;
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::new(format!("cannot listen on {addr} (SMTP)"), e))?;
            let role = format!("{:?}", endpoint.role).to_ascii_lowercase();
            let tls = format!("{:?}", endpoint.tls).to_ascii_lowercase();
            match &config.smtp.delivery {
                crate::config::Delivery::Relay(to) => {
                    tracing::info!(smtp = %addr, %role, %tls, relay = %to, "SMTP front end listening")
                }
                crate::config::Delivery::Maildir(dir) => {
                    tracing::info!(smtp = %addr, %role, %tls, maildir = %dir.display(), "SMTP front end listening")
                }
            }
            smtp.push(crate::smtp::listener::SmtpListener { tcp, config: endpoint });
        }
        let mx = config.smtp.all_listeners().iter().any(|l| l.role == crate::config::Role::Mx);
        if mx && config.smtp.local_domains.is_empty() {
            tracing::warn!("no smtp.local_domains: only trusted clients can send mail through SMTP");
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(forward_signals(tx));
        run_with(snapshot, loader, listener, rx, Services { http, smtp }).await;
        Ok(())
    });
    // The stop is bounded in the server; a store call still stuck on the blocking pool (a
    // database that does not answer) would hold the runtime's drop without end: leave it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    served
}

/// SIGHUP reloads; SIGTERM and SIGINT stop gracefully, a second one stops at once. The
/// handlers are installed when this is called, not when the returned task first runs, so a
/// signal sent as soon as READY=1 is out is never lost to its default action (a SIGHUP would
/// end the process).
fn forward_signals(
    tx: tokio::sync::mpsc::Sender<Signal>,
) -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let mut stopping = false;
        loop {
            let sig = tokio::select! {
                _ = hup.recv() => Signal::Reload,
                _ = term.recv() => Signal::Graceful,
                _ = int.recv() => Signal::Graceful,
            };
            let sig = match sig {
                Signal::Graceful if stopping => Signal::Immediate,
                Signal::Graceful => {
                    stopping = true;
                    Signal::Graceful
                }
                other => other,
            };
            if tx.send(sig).await.is_err() {
                return;
            }
        }
    }
}

/// Why `serve` could not start: what it was doing, and the error that stopped it.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct ServeError {
    context: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ServeError {
    fn new(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ServeError {
        ServeError {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    fn msg(message: String) -> ServeError {
        ServeError {
            context: message,
            source: None,
        }
    }
}

/// Serves milter connections until told to stop.
pub async fn run(
    initial: Snapshot,
    loader: Loader,
    listener: MilterListener,
    control: mpsc::Receiver<Signal>,
) {
    run_with(initial, loader, listener, control, Services::default()).await
}

/// Serves milter connections, and the HTTP API and verdict store when configured, until told
/// to stop. The store is opened from the first snapshot's configuration; a store that cannot
/// be opened is logged and the server runs without one (mail must keep flowing).
pub async fn run_with(
    mut initial: Snapshot,
    loader: Loader,
    listener: MilterListener,
    mut control: mpsc::Receiver<Signal>,
    services: Services,
) {
    let metrics = Arc::new(Metrics::default());
    metrics
        .inflight()
        .set_max(initial.config.limits.max_inflight_bytes);
    let store_config = initial.config.store.clone();
    let location = store_config.location();
    let writer: Option<Writer> = location.as_ref().and_then(|location| {
        match spawn_writer(location, &store_config, Arc::clone(&metrics)) {
            Ok(w) => {
                tracing::info!(store = %location, host = %store_config.host, "verdict store open");
                Some(w)
            }
            Err(e) => {
                tracing::error!(error = %e, "verdict store unavailable; verdicts are not recorded");
                None
            }
        }
    });
    // The other users of the store (API, importer, report job) only when the writer runs.
    let location = location.filter(|_| writer.is_some());
    let journal = match &writer {
        Some(w) => w.journal.clone(),
        None => Journal::disabled(Arc::clone(&metrics)),
    };
    initial.journal = journal.clone();
    let (failures, failure_queue) = failure::queue();
    initial.failures = failures.clone();
    // Report mail is imported by its own task, on its own connection to the same store.
    let importer: Option<Importer> = match &location {
        Some(location) => {
            match spawn_importer(location, &store_config.host, Arc::clone(&metrics)) {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::error!(error = %e, "report importer unavailable; report mail is not imported");
                    None
                }
            }
        }
        _ => None,
    };
    let inbox = match &importer {
        Some(i) => i.inbox.clone(),
        None => Inbox::disabled(Arc::clone(&metrics)),
    };
    initial.reports_in = inbox.clone();
    let current: Current = Arc::new(RwLock::new(Arc::new(initial)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = current
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .config
        .shutdown_grace;
    // The API's reload requests arrive here, beside the signals, each with a way to answer.
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let http = services.http.map(|l| {
        let state = crate::http::AppState::new(
            Arc::clone(&current),
            reload_tx.clone(),
            location.clone(),
            journal.clone(),
        );
        tokio::spawn(crate::http::serve(l, state, stop_rx.clone()))
    });
    // The abuse limits: shared through a PostgreSQL store by every host using it, else in
    // this host's memory (issue 22).
    let guard = match &location {
        Some(crate::store::Location::Postgres(target)) => {
            Guard::new(Arc::new(crate::store::PgCounts::start(
                target,
                crate::store::LIMITS_DEADLINE,
                Some(Arc::clone(&metrics)),
            )))
        }
        _ => Guard::default(),
    };
    let counts = guard.counts();
    let smtp_shared = crate::smtp::listener::Shared::new(&current, Arc::new(guard));
    let smtp_accept: Vec<_> = services
        .smtp
        .into_iter()
        .map(|l| {
            tokio::spawn(crate::smtp::listener::accept_loop(
                l,
                Arc::clone(&smtp_shared),
                Arc::clone(&current),
                stop_rx.clone(),
            ))
        })
        .collect();
    let report_job = location.clone().map(|location| {
        tokio::spawn(crate::jobs::reports(
            Arc::clone(&current),
            location,
            stop_rx.clone(),
        ))
    });
    let running = {
        let current = Arc::clone(&current);
        move || {
            let snapshot = Arc::clone(&current.read().unwrap_or_else(|p| p.into_inner()));
            (
                Arc::clone(&snapshot.config),
                Arc::clone(snapshot.verifier.dns()),
            )
        }
    };
    tokio::spawn(failure::run(
        failure_queue,
        running,
        stop_rx.clone(),
        counts,
    ));
    let accept = tokio::spawn(accept_loop(listener, Arc::clone(&current), stop_rx));
    tracing::info!("authmilter serving");
    crate::notify::ready();

    let load_snapshot = || match loader() {
        Ok(mut snapshot) => {
            snapshot.journal = journal.clone();
            snapshot.failures = failures.clone();
            snapshot.reports_in = inbox.clone();
            snapshot
                .budget()
                .set_max(snapshot.config.limits.max_inflight_bytes);
            *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
            tracing::info!("configuration reloaded; new sessions use it");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the old configuration");
            Err(e)
        }
    };
    // systemd hears of every reload (SIGHUP or the API's), and that it is over either way:
    // a failed reload keeps the old configuration serving.
    let reload = || {
        crate::notify::reloading();
        let result = load_snapshot();
        crate::notify::ready();
        result
    };
    let immediate = loop {
        let signal = tokio::select! {
            s = control.recv() => s,
            Some(answer) = reload_rx.recv() => {
                let _ = answer.send(reload());
                continue;
            }
        };
        match signal {
            Some(Signal::Reload) => {
                let _ = reload();
            }
            Some(Signal::Graceful) | None => break false,
            Some(Signal::Immediate) => break true,
        }
    };
    crate::notify::stopping();
    let _ = stop_tx.send(true);
    let mut stop = Stop::new(grace, control, immediate);
    stop.bounded("the HTTP API", async {
        if let Some(http) = http {
            let _ = http.await;
        }
    })
    .await;
    // A report being handed on finishes; its state is in the store either way.
    stop.bounded("the report job", async {
        if let Some(job) = report_job {
            let _ = job.await;
        }
    })
    .await;
    let mut sessions = stop
        .bounded("the listeners", async {
            let mut sessions = accept.await.unwrap_or_default();
            for smtp in smtp_accept {
                // SMTP sessions drain with the milter's, within the same grace period.
                if let Ok(mut smtp_sessions) = smtp.await {
                    sessions
                        .spawn(async move { while smtp_sessions.join_next().await.is_some() {} });
                }
            }
            sessions
        })
        .await
        .unwrap_or_default();
    if !stop.immediate {
        tracing::info!(
            sessions = sessions.len(),
            "stopping: waiting for messages in flight"
        );
    }
    let drained = stop
        .bounded("messages in flight", async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
    if drained.is_none() {
        // Dropping a session aborts it; so does the end of the set.
        sessions.abort_all();
    }
    // The store gets what is left of the grace period (all of it while sessions ended in
    // time); past the deadline the writer counts what it could not write as failed.
    if let Some(w) = &writer {
        w.stop_by(stop.deadline);
    }
    let mut writer = writer;
    let mut importer = importer.map(|i| tokio::spawn(i.shutdown()));
    let stored = stop
        .bounded("the verdict store", async {
            if let Some(w) = &mut writer {
                w.finished().await;
            }
            if let Some(i) = &mut importer {
                let _ = i.await;
            }
        })
        .await;
    if stored.is_none() {
        // Cut short by the deadline or a second signal: the writer is told (a second signal
        // moves its deadline to now) and has a moment to count what it holds.
        if let Some(w) = &mut writer {
            w.stop_by(Instant::now());
            if tokio::time::timeout(LAST_WORDS, w.finished())
                .await
                .is_err()
            {
                tracing::warn!("verdict store writer did not stop; leaving it");
            }
        }
        if let Some(i) = importer {
            i.abort();
        }
    }
}

/// A stop in progress: everything it waits for ends by its deadline (the grace period from
/// the first signal), or at once on a second signal.
struct Stop {
    deadline: Instant,
    control: Option<mpsc::Receiver<Signal>>,
    /// A second signal came (or the first asked to stop at once).
    immediate: bool,
}

impl Stop {
    fn new(grace: std::time::Duration, control: mpsc::Receiver<Signal>, immediate: bool) -> Stop {
        let now = Instant::now();
        Stop {
            deadline: if immediate { now } else { now + grace },
            control: Some(control),
            immediate,
        }
    }

    /// Waits for `work` until the deadline or a second stop signal (reloads are ignored
    /// now); `None` when cut short, with a line in the log saying what was left.
    async fn bounded<T>(
        &mut self,
        what: &str,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::pin!(work);
        while !self.immediate {
            let control = &mut self.control;
            let signal = async {
                match control {
                    Some(control) => control.recv().await,
                    None => std::future::pending().await,
                }
            };
            let signal = tokio::select! {
                biased;
                out = &mut work => return Some(out),
                () = tokio::time::sleep_until(self.deadline) => {
                    tracing::warn!(waiting_for = what, "grace period over; stopping without it");
                    return None;
                }
                signal = signal => signal,
            };
            match signal {
                Some(Signal::Graceful | Signal::Immediate) => {
                    tracing::warn!(waiting_for = what, "second stop signal; stopping at once");
                    self.immediate = true;
                    self.deadline = Instant::now();
                }
                Some(Signal::Reload) => {}
                // No more signals can come (the sender is gone): only the deadline.
                None => self.control = None,
            }
        }
        None
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
                    let metrics = Arc::clone(snapshot.journal.metrics());
                    sessions.spawn(async move {
                        let _open = metrics.connection_opened();
                        serve_connection(stream, snapshot, stop_rx).await;
                        drop(permit);
                    });
                }
                Ok(Accepted::Unix(stream)) => {
                    let metrics = Arc::clone(snapshot.journal.metrics());
                    sessions.spawn(async move {
                        let _open = metrics.connection_opened();
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
