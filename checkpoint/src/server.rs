//! The HTTP side: ingest, the answers, the page, and a graceful stop.
//!
//! Ingest (`POST` on the configured path, `/` by default) answers, in this order of checks:
//! - `415` unless `Content-Type` is `application/json` (parameters such as `charset` allowed);
//! - `413` when the body is over the limit (64 KiB by default), from `Content-Length` or while
//!   reading;
//! - `400` when the body is not JSON, its `report_version` is not one of
//!   [`crate::validate::ACCEPTED_VERSIONS`] (the message lists them), it does not match
//!   `REPORT_SCHEMA` (the message names the first violation and where), or an
//!   `Idempotency-Key` header differs from its `report_id`;
//! - `429` with `Retry-After` when the cluster sent more than its budget (a token bucket per
//!   `electric_cluster_uuid`) or the write queue is full;
//! - `201` once the report is committed, `200` when a report with that `report_id` was already
//!   stored (nothing is stored again), `503` with `Retry-After` if the database failed.
//!
//! Error bodies are JSON `{"error": "..."}`. A 2xx is only ever sent after the commit. On a
//! graceful stop the server stops accepting connections, lets requests in flight finish (each
//! waits for its commit) and the writer drains its queue before [`Running::stop`] returns, so
//! no report that was answered 2xx, nor any queued one, is lost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Outcome, Store, Submission};
use crate::validate::{Invalid, Validator};

/// Everything the server needs; the binary (`src/main.rs`) fills it from flags and variables.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub db: String,
    /// The ingest path, e.g. `/`.
    pub path: String,
    pub body_limit: usize,
    pub retention: Duration,
    /// Reports waiting for the writer before ingest answers 429.
    pub queue: usize,
    /// Reports a cluster may send at once (token bucket size).
    pub cluster_burst: u32,
    /// Reports a cluster may send per hour once its burst is spent (refill rate).
    pub cluster_per_hour: u32,
    pub workers: usize,
    pub db_connections: u32,
    pub shutdown_timeout: Duration,
    /// Stop gracefully on SIGINT/SIGTERM (the binary); tests stop through [`Running::stop`].
    pub handle_signals: bool,
}

impl ServerConfig {
    /// Defaults for `db`, listening on `listen`.
    pub fn new(listen: SocketAddr, db: impl Into<String>) -> Self {
        ServerConfig {
            listen,
            db: db.into(),
            path: "/".to_owned(),
            body_limit: 64 * 1024,
            retention: Duration::from_secs(30 * 86_400),
            queue: 4096,
            cluster_burst: 120,
            cluster_per_hour: 600,
            workers: 2,
            db_connections: 4,
            shutdown_timeout: Duration::from_secs(30),
            handle_signals: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running receiver.
pub struct Running {
    addr: SocketAddr,
    store: Store,
    server: actix_web::dev::ServerHandle,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    writer: tokio::task::JoinHandle<()>,
    pruner: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The address it listens on (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops gracefully: see the module docs. Returns once every queued report is committed.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.finish().await;
    }

    /// Waits until the server stops by itself (a signal, with `handle_signals`), then drains.
    pub async fn wait(self) -> std::io::Result<()> {
        self.finish().await
    }

    async fn finish(self) -> std::io::Result<()> {
        let served = self.served.await;
        self.pruner.abort();
        // The app data (and with it every queue sender) is gone with the workers: the writer
        // drains the queue and ends.
        let _ = self.writer.await;
        served.unwrap_or(Ok(()))
    }
}

/// Per-cluster token buckets. Bounded: past 100 000 clusters, full buckets (quiet clusters)
/// are forgotten, which costs them nothing.
struct Limiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    /// `Ok` to go ahead, or the seconds to wait.
    fn take(&self, cluster: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            let (burst, per_sec) = (self.burst, self.per_sec);
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = map.entry(cluster.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = if self.per_sec > 0.0 {
                ((1.0 - *tokens) / self.per_sec).ceil() as u64
            } else {
                3600
            };
            Err(wait.max(1))
        }
    }
}

struct State {
    validator: Validator,
    limiter: Limiter,
    queue: mpsc::Sender<Submission>,
    store: Store,
    body_limit: usize,
}

/// Opens the store (applying migrations), binds, and serves in the current actix System.
pub async fn start(config: ServerConfig) -> Result<Running, StartError> {
    if !config.path.starts_with('/') {
        return Err(StartError::Config(format!(
            "--path must start with '/', got {:?}",
            config.path
        )));
    }
    if config.body_limit < 1024 {
        return Err(StartError::Config(format!(
            "--body-limit must be at least 1024 bytes, got {}",
            config.body_limit
        )));
    }
    let validator = Validator::new().map_err(StartError::Config)?;
    let store = Store::open(&config.db, config.db_connections).await?;
    let (queue, writer) = store.start_writer(config.queue);
    let state = web::Data::new(State {
        validator,
        limiter: Limiter {
            burst: f64::from(config.cluster_burst.max(1)),
            per_sec: f64::from(config.cluster_per_hour) / 3600.0,
            buckets: Mutex::new(HashMap::new()),
        },
        queue,
        store: store.clone(),
        body_limit: config.body_limit,
    });
    let path = config.path.clone();
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(state.clone())
            .route("/api/overview", web::get().to(overview_json))
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
            );
        // One resource per path, so that GET and POST on `/` both reach their handler.
        if path == "/" {
            app.service(
                web::resource("/")
                    .route(web::post().to(ingest))
                    .route(web::get().to(page)),
            )
        } else {
            app.route(&path, web::post().to(ingest))
                .route("/", web::get().to(page))
        }
    })
    .workers(config.workers.max(1))
    .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    if !config.handle_signals {
        server = server.disable_signals();
    }
    let server = server
        .bind(config.listen)
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let served = actix_rt::spawn(server);
    let pruner = {
        let store = store.clone();
        let retention = config.retention;
        actix_rt::spawn(async move {
            loop {
                let before = chrono::Utc::now().timestamp() - retention.as_secs() as i64;
                match store.prune(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "deleted raw reports past retention"),
                    Err(e) => tracing::warn!(error = %e, "could not delete old raw reports"),
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        })
    };
    tracing::info!(
        %addr,
        ingest = %config.path,
        db = %crate::store::redacted(&config.db),
        retention_days = config.retention.as_secs() / 86_400,
        "checkpoint receiver listening"
    );
    Ok(Running {
        addr,
        store,
        server: handle,
        served,
        writer,
        pruner,
    })
}

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

fn too_many(seconds: u64, message: String) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((header::RETRY_AFTER, seconds.to_string()))
        .json(json!({ "error": message }))
}

async fn ingest(req: HttpRequest, mut body: web::Payload, state: web::Data<State>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        let got = if content_type.is_empty() {
            "none".to_owned()
        } else {
            format!("{content_type:?}")
        };
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json; got {got}"),
        );
    }
    let limit = state.body_limit;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                if bytes.len() + c.len() > limit {
                    return too_large();
                }
                bytes.extend_from_slice(&c);
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            }
        }
    }
    let report = match state.validator.check(&bytes) {
        Ok(r) => r,
        Err(e) => {
            let kind = match e {
                Invalid::NotJson(_) => "not_json",
                Invalid::UnknownVersion { .. } => "unknown_version",
                Invalid::Schema(_) => "schema",
            };
            tracing::debug!(kind, error = %e, "refused a report");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    if let Some(key) = req.headers().get("idempotency-key") {
        let key = key.to_str().unwrap_or("").trim();
        if !key.eq_ignore_ascii_case(&report.report_id) {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the Idempotency-Key header ({key:?}) must equal the body's report_id ({})",
                    report.report_id
                ),
            );
        }
    }
    if let Err(wait) = state.limiter.take(&report.cluster_uuid) {
        tracing::warn!(cluster = %report.cluster_uuid, "cluster over its report budget; answering 429");
        return too_many(
            wait,
            format!(
                "too many reports from cluster {}; retry after {wait} s",
                report.cluster_uuid
            ),
        );
    }
    let (reply, answer) = oneshot::channel();
    let report_id = report.report_id.clone();
    match state.queue.try_send(Submission { report, reply }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!("write queue full; answering 429");
            return too_many(2, "the receiver is busy; retry after 2 s".to_owned());
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the receiver is stopping");
        }
    }
    match answer.await {
        Ok(Ok(Outcome::Stored)) => {
            HttpResponse::Created().json(json!({ "status": "stored", "report_id": report_id }))
        }
        Ok(Ok(Outcome::Duplicate)) => {
            HttpResponse::Ok().json(json!({ "status": "duplicate", "report_id": report_id }))
        }
        Ok(Err(_)) | Err(_) => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .json(json!({ "error": "the report could not be stored; retry after 5 s" })),
    }
}

#[derive(Debug, Deserialize)]
struct Window {
    days: Option<String>,
    until: Option<String>,
}

/// Reads `days` (1–3660, default 30) and `until` (`YYYY-MM-DD`, default today in UTC).
fn window(q: &Window) -> Result<(u32, chrono::NaiveDate), String> {
    let days = match q.days.as_deref() {
        None | Some("") => 30,
        Some(s) => match s.parse::<u32>() {
            Ok(n @ 1..=3660) => n,
            _ => {
                return Err(format!(
                    "days must be a whole number from 1 to 3660, got {s:?}"
                ))
            }
        },
    };
    let until = match q.until.as_deref() {
        None | Some("") => chrono::Utc::now().date_naive(),
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| format!("until must be a date like 2026-11-25, got {s:?}"))?,
    };
    Ok((days, until))
}

async fn overview_json(q: web::Query<Window>, state: web::Data<State>) -> HttpResponse {
    let (days, until) = match window(&q) {
        Ok(w) => w,
        Err(e) => return error(actix_web::http::StatusCode::BAD_REQUEST, e),
    };
    match state.store.overview(days, until).await {
        Ok(o) => HttpResponse::Ok().json(o),
        Err(e) => {
            tracing::error!(error = %e, "overview failed");
            error(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the overview could not be read",
            )
        }
    }
}

async fn page(q: web::Query<Window>, state: web::Data<State>) -> HttpResponse {
    let (days, until) = match window(&q) {
        Ok(w) => w,
        Err(e) => {
            return HttpResponse::BadRequest()
                .content_type("text/plain")
                .body(e)
        }
    };
    match state.store.overview(days, until).await {
        Ok(o) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(crate::page::render(&o)),
        Err(e) => {
            tracing::error!(error = %e, "overview failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain")
                .body("the overview could not be read")
        }
    }
}
