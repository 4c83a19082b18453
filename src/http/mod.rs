//! The HTTP API (axum): check or sign a message on request, query past verdicts and the DMARC
//! reports received, metrics.
//!
//! Routes are added through [`Routes`], which also lists them, so the OpenAPI document can be
//! checked against the router itself. Every error goes through [`ApiError`]; access rules are
//! in [`auth`]. The API reads the snapshot in force per request, so a reload changes tokens,
//! keys and policy for the next request.

pub mod auth;
pub mod browser;
pub mod error;
mod failures;
mod handlers;
pub mod openapi;
mod reports;
pub mod ui;

pub use error::ApiError;

use crate::runtime::{Current, ReloadRequest, Snapshot};
use crate::store::{Handle, Journal, Location, Store};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    loopback: bool,
    /// The listener's own address (what `Host` may name on a tokenless listener).
    local: Option<SocketAddr>,
}

/// The API's read connections: [`READERS`] of them, of which at most [`SCANS`] run
/// expensive reads, so that one always stays for lookups by id or queue id.
const READERS: usize = 3;
const SCANS: usize = READERS - 1;

struct Inner {
    current: Current,
    reload: mpsc::Sender<ReloadRequest>,
    /// The API's own read connections, each opened on first use (and again after the
    /// database went away); empty without a store.
    readers: Vec<Handle>,
    /// Indexes of the readers not in use.
    free: std::sync::Mutex<Vec<usize>>,
    /// A permit per reader, and one per reader an expensive read may take.
    any: Arc<tokio::sync::Semaphore>,
    scans: Arc<tokio::sync::Semaphore>,
    journal: Journal,
}

/// What a read costs: a lookup through an index, or a scan (statistics, lists over time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    Lookup,
    Scan,
}

impl AppState {
    /// `store`: the verdict store to query (`None`: the verdict routes answer 503).
    pub fn new(
        current: Current,
        reload: mpsc::Sender<ReloadRequest>,
        store: Option<Location>,
        journal: Journal,
    ) -> AppState {
        let host = current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .store
            .host
            .clone();
        let readers: Vec<Handle> = store
            .map(|location| {
                (0..READERS)
                    .map(|_| Handle::new(location.clone(), &host))
                    .collect()
            })
            .unwrap_or_default();
        AppState {
            inner: Arc::new(Inner {
                current,
                reload,
                free: std::sync::Mutex::new((0..readers.len()).collect()),
                any: Arc::new(tokio::sync::Semaphore::new(readers.len())),
                scans: Arc::new(tokio::sync::Semaphore::new(SCANS.min(readers.len()))),
                readers,
                journal,
            }),
            loopback: true,
            local: None,
        }
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.inner.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the listener is on a loopback address (tokenless reads allowed).
    pub fn loopback(&self) -> bool {
        self.loopback
    }

    /// The listener's own address, once serving.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// Runs an expensive read (see [`AppState::read`]).
    pub async fn query<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        self.read(Cost::Scan, f).await
    }

    /// Runs a read on one of the API's read connections, off the async threads, stopped
    /// when it runs past `http.query_timeout_ms` (SQLite: interrupted from here; PostgreSQL:
    /// its `statement_timeout`). A [`Cost::Scan`] waits while [`SCANS`] others run, so a
    /// [`Cost::Lookup`] always finds a connection that no scan holds.
    pub async fn read<T, F>(&self, cost: Cost, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        if self.inner.readers.is_empty() {
            return Err(ApiError::StoreDisabled);
        }
        let closed = |_| ApiError::Unavailable;
        let scan = match cost {
            Cost::Scan => Some(
                Arc::clone(&self.inner.scans)
                    .acquire_owned()
                    .await
                    .map_err(closed)?,
            ),
            Cost::Lookup => None,
        };
        let any = Arc::clone(&self.inner.any)
            .acquire_owned()
            .await
            .map_err(closed)?;
        let slot = Slot::take(&self.inner);
        let limit = self.snapshot().config.http.query_timeout;
        let phase = Arc::new(std::sync::Mutex::new(Phase::Waiting));
        let state = self.clone();
        let reading = Arc::clone(&phase);
        let task = tokio::task::spawn_blocking(move || {
            // Held by the read, not by the request: a request given up (its own timeout)
            // leaves the connection taken until the read ends.
            // (A tuple drops in order: the reader goes back before its permits.)
            let index = slot.1;
            let _held = (slot, any, scan);
            let _done = Done(Arc::clone(&reading));
            state.inner.readers[index].with(
                |store| {
                    store.limit_statements(limit)?;
                    if let Some(handle) = store.interrupt_handle() {
                        *lock(&reading) = Phase::Running(handle);
                    }
                    let result = f(store);
                    *lock(&reading) = Phase::Done;
                    result
                },
                |_| false,
            )
        });
        tokio::spawn(watchdog(phase, limit));
        let result = task
            .await
            .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?;
        if let Err(ApiError::QueryStopped) = &result {
            tracing::warn!(
                limit_ms = limit.as_millis() as u64,
                "HTTP API: a read ran past its time limit and was stopped"
            );
        }
        result
    }
}

/// Where a read stands, for its watchdog.
enum Phase {
    /// Waiting for its connection (or on PostgreSQL, where the server keeps the time).
    Waiting,
    /// Running on a SQLite connection: this stops it.
    Running(rusqlite::InterruptHandle),
    /// Over: the connection may already run the next read, which must not be interrupted.
    Done,
}

/// Marks the read over however its task ends (a panicking closure included).
struct Done(Arc<std::sync::Mutex<Phase>>);

impl Drop for Done {
    fn drop(&mut self) {
        *lock(&self.0) = Phase::Done;
    }
}

/// Past `limit`, interrupts the read until it is over. An interrupt that lands between two
/// statements of one read is lost (SQLite interrupts only what runs), so it is repeated; the
/// phase is checked under its lock, so an interrupt never reaches the connection's next read.
async fn watchdog(phase: Arc<std::sync::Mutex<Phase>>, limit: Duration) {
    tokio::time::sleep(limit).await;
    loop {
        match &*lock(&phase) {
            Phase::Done => return,
            Phase::Running(handle) => handle.interrupt(),
            Phase::Waiting => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One reader taken from the free list, given back when dropped (before the permit that
/// let it be taken, so a permit always finds a free reader).
struct Slot(Arc<Inner>, usize);

impl Slot {
    fn take(inner: &Arc<Inner>) -> Slot {
        let i = lock(&inner.free).pop().expect("a permit per free reader");
        Slot(Arc::clone(inner), i)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.0.free).push(self.1);
    }
}

/// A router under construction that remembers its `(method, path)` pairs.
pub struct Routes {
    router: Router<AppState>,
    list: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        route: MethodRouter<AppState>,
    ) -> Self {
        self.list.push((method, path));
        self.router = self.router.route(path, route);
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add("get", path, get(h))
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add("post", path, post(h))
    }
}

/// Every route, with its handler.
fn routes() -> Routes {
    Routes {
        router: Router::new(),
        list: Vec::new(),
    }
    .get("/healthz", handlers::healthz)
    .get("/readyz", handlers::readyz)
    .post("/v1/check", handlers::check)
    .post("/v1/sign", handlers::sign)
    .get("/v1/verdicts", handlers::verdicts)
    .get("/v1/verdicts/{id}", handlers::verdict)
    .get("/v1/stats", handlers::stats)
    .get("/v1/reports", reports::list)
    .get("/v1/reports/summary", reports::summary)
    .get("/v1/reports/readiness", reports::readiness)
    .get("/v1/reports/failures", failures::list)
    .get("/v1/reports/failures/{id}", failures::one)
    .get("/v1/reports/{id}", reports::one)
    .post("/v1/reload", handlers::reload)
    .get("/metrics", handlers::metrics)
    .get("/openapi.json", handlers::openapi)
}

/// The `(method, path)` pairs the router serves.
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    routes().list
}

/// The application: routes, access control, size limit and timeout, JSON fallbacks.
pub fn router(state: AppState) -> Router {
    let limits = state.snapshot().config.clone();
    let max_body = limits.limits.max_message_size;
    routes()
        .router
        .route_layer(middleware::from_fn(browser::content_type))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require))
        // The dashboard: its own access check (cookie or bearer) and headers, not in the
        // OpenAPI document (see `ui`).
        .merge(ui::routes(state.clone()))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        // Outermost, after the fallbacks so that it covers them too: nothing runs for a
        // request that names another host.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            browser::host_guard,
        ))
        .with_state(state)
}

/// The request timeout (`[http] request_timeout_secs`), reading the body included.
async fn deadline(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let limit = state.snapshot().config.http.request_timeout;
    tokio::time::timeout(limit, next.run(request))
        .await
        .map_err(|_| ApiError::Timeout(limit.as_secs()))
}

/// Serves the API on `listener` until `stop` turns true (in-flight requests finish).
/// How long a client may take to send a request's header (or less: the request timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(listener: TcpListener, mut state: AppState, mut stop: watch::Receiver<bool>) {
    state.local = listener.local_addr().ok();
    state.loopback = state.local.is_some_and(|a| a.ip().is_loopback());
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tokens_required = !state.loopback, "HTTP API listening");
    }
    let header_timeout = HEADER_READ_TIMEOUT.min(state.snapshot().config.http.request_timeout);
    let app = router(state);
    // axum::serve gives hyper no timer, so it has no header-read timeout: a client could hold
    // a connection open by sending its request line a byte a minute. This loop is the same
    // thing with the timeout set.
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        let connection =
            graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    // Requests in flight finish (each is bounded by the request timeout); idle keep-alive
    // connections are closed.
    graceful.shutdown().await;
}
