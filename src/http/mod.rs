//! The HTTP API (axum): check or sign a message on request, query past verdicts and the DMARC
//! reports received, metrics.
//!
//! Routes are added through [`Routes`], which also lists them, so the OpenAPI document can be
//! checked against the router itself. Every error goes through [`ApiError`]; access rules are
//! in [`auth`]. The API reads the snapshot in force per request, so a reload changes tokens,
//! keys and policy for the next request.

pub mod auth;
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
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    loopback: bool,
}

struct Inner {
    current: Current,
    reload: mpsc::Sender<ReloadRequest>,
    /// The API's own read connection, opened on first use (and again after the database
    /// went away).
    reader: Option<Handle>,
    journal: Journal,
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
        AppState {
            inner: Arc::new(Inner {
                current,
                reload,
                reader: store.map(|location| Handle::new(location, &host)),
                journal,
            }),
            loopback: true,
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

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// Runs a query on the API's read connection, off the async threads.
    pub async fn query<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        if self.inner.reader.is_none() {
            return Err(ApiError::StoreDisabled);
        }
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = state.inner.reader.as_ref().expect("checked above");
            reader.with(|store| f(store), |_| false)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
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
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require))
        // The dashboard: its own access check (cookie or bearer) and headers, not in the
        // OpenAPI document (see `ui`).
        .merge(ui::routes(state.clone()))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
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
    state.loopback = listener
        .local_addr()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false);
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
