//! The HTTP side: ingest, the answers, the page, and a graceful stop.
//!
//! Ingest (`POST` on the configured path, `/` by default) answers, in this order of checks:
//! - `415` unless `Content-Type` is `application/json` (parameters such as `charset` allowed);
//! - `413` when the body is over the limit (64 KiB by default), from `Content-Length` or while
//!   reading;
//! - `400` when the body is not JSON, its `report_version` is not one of
//!   [`crate::validate::ACCEPTED_VERSIONS`] (the message lists them), it does not match its
//!   version's schema (the message names the first violation and where), or an
//!   `Idempotency-Key` header differs from its `report_id` (version and schema refusals are
//!   kept in the quarantine, [`crate::quarantine`]);
//! - `202 {"status":"quarantined"}` when it is valid but implausible
//!   ([`crate::validate::Plausibility`]): kept in the quarantine, never counted;
//! - `429` with `Retry-After` when the cluster sent more than its budget (a token bucket per
//!   `electric_cluster_uuid`) or the write queue is full;
//! - `201` once the report is committed, `200` when a report with that `report_id` was already
//!   stored (nothing is stored again), `503` with `Retry-After` if the database failed.
//!
//! `GET /healthz` is a liveness check (the process answers); `GET /readyz` answers `503` while
//! writes to the database fail (a real write at most once a second, and the writer's last
//! batch), so a load balancer sends reports elsewhere until the disk has room again.
//!
//! Every ingest answer carries [`VERSIONS_HEADER`] (`Checkpoint-Report-Versions: 2`): the
//! report versions this receiver accepts. Error bodies are JSON `{"error": "..."}`. A 2xx is
//! only ever sent after the commit: a
//! connection whose commit or rollback failed is closed, never reused (see
//! [`Store::ingest_batch`]), and the receiver recovers by itself once writes succeed again. On a
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
use crate::validate::Validator;

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
    // edge and operations
    /// The token the answers (`/`, `/api/*`, `/metrics`) need; `None`: no token.
    pub read_token: Option<crate::auth::ReadToken>,
    /// Serve the answers on this second address; the ingest address then serves only ingest,
    /// `/healthz` and `/readyz`.
    pub answers_listen: Option<SocketAddr>,
    /// Publish the answers without a token on a non-loopback address, on purpose.
    pub public_answers: bool,
    /// Distinct clusters one source may report for per hour (0 = unlimited).
    pub source_new_clusters_per_hour: u32,
    /// Reports one source may send per minute (0 = unlimited).
    pub source_per_minute: u32,
    /// Connections one source may hold open at once (0 = unlimited).
    pub source_connections: u32,
    /// Peers whose `X-Forwarded-For`/`Forwarded` names the source.
    pub trusted_proxies: Vec<crate::sources::Cidr>,
    /// The whole body must arrive within this long after the head (408 after it).
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub keep_alive: Duration,
    /// The most a counter may count per second of its report's window before the report is
    /// quarantined as implausible (0 = no check).
    pub max_per_window: u64,
    /// The quarantine's bound in bytes; past it the oldest kept reports are dropped.
    pub quarantine_max: u64,
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
            read_token: None,
            answers_listen: None,
            public_answers: false,
            source_new_clusters_per_hour: 30,
            source_per_minute: 600,
            source_connections: 32,
            trusted_proxies: Vec::new(),
            body_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            max_per_window: crate::validate::Plausibility::default().max_per_second,
            quarantine_max: crate::quarantine::DEFAULT_MAX_BYTES,
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
    #[error("{0}")]
    Database(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running receiver.
pub struct Running {
    addr: SocketAddr,
    answers_addr: Option<SocketAddr>,
    store: Store,
    server: actix_web::dev::ServerHandle,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    writer: tokio::task::JoinHandle<()>,
    pruner: tokio::task::JoinHandle<()>,
    summary: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The address it listens on (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `--answers-listen` address (the real port when started on port 0).
    pub fn answers_addr(&self) -> Option<SocketAddr> {
        self.answers_addr
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
        self.summary.abort();
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
    quarantine_max: u64,
    /// Refused reports being kept at once: a flood of refused bodies may not take the
    /// database connections that stored reports need.
    keeping: tokio::sync::Semaphore,
    // edge and operations
    sources: std::sync::Arc<crate::sources::Sources>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Checks the edge settings: limits, addresses and the answers' protection.
fn check_edge(config: &ServerConfig) -> Result<(), StartError> {
    let bad = |m: String| Err(StartError::Config(m));
    if config.body_timeout.is_zero() || config.body_timeout > Duration::from_secs(3600) {
        return bad(format!(
            "--body-timeout must be from 1ms to 1h, got {}",
            humantime::format_duration(config.body_timeout)
        ));
    }
    if config.keep_alive > Duration::from_secs(3600) {
        return bad(format!(
            "--keep-alive must be at most 1h (0 turns keep-alive off), got {}",
            humantime::format_duration(config.keep_alive)
        ));
    }
    for (flag, value, max) in [
        (
            "--source-new-clusters-per-hour",
            config.source_new_clusters_per_hour,
            1_000_000,
        ),
        ("--source-per-minute", config.source_per_minute, 1_000_000),
        ("--source-connections", config.source_connections, 100_000),
    ] {
        if value > max {
            return bad(format!(
                "{flag} must be from 0 (unlimited) to {max}, got {value}"
            ));
        }
    }
    if let Some(answers) = config.answers_listen {
        if answers == config.listen && answers.port() != 0 {
            return bad(format!(
                "--answers-listen {answers} is the --listen address; give another address or port"
            ));
        }
    }
    if config.read_token.is_none() && !config.public_answers {
        let public = match config.answers_listen {
            Some(a) => (!a.ip().is_loopback()).then_some(("--answers-listen", a)),
            None => (!config.listen.ip().is_loopback()).then_some(("--listen", config.listen)),
        };
        if let Some((flag, addr)) = public {
            return bad(format!(
                "{flag} {addr} is not a loopback address and the answers (/, /api/overview, \
                 /metrics) would be public: add --read-token-file PATH (or \
                 CHECKPOINT_READ_TOKEN) to protect them, or --answers-listen 127.0.0.1:PORT \
                 to serve them on a private address, or --public-answers to publish them on \
                 purpose"
            ));
        }
    }
    Ok(())
}

/// A SQLite file that cannot be written fails here, at once, naming the path and the cause
/// (the pool would only time out after 30 s). Postgres and `sqlite:` URLs are left to the pool.
fn check_sqlite_writable(db: &str) -> Result<(), StartError> {
    let (backend, _) = crate::store::db_url(db);
    if backend != crate::store::Backend::Sqlite || db.starts_with("sqlite:") {
        return Ok(());
    }
    let path = std::path::Path::new(db);
    if path.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StartError::Database(format!("cannot write the database {db}: {e}")))?;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    // SQLite writes its journal (-wal, -shm) beside the file: the directory must be writable.
    let probe = dir.join(format!(".checkpoint-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(StartError::Database(format!(
            "cannot write in {}, the directory of the database {db} (SQLite keeps its journal \
             there): {e}",
            dir.display()
        ))),
    }
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
    check_edge(&config)?;
    check_sqlite_writable(&config.db)?;
    let validator = Validator::with_rules(crate::validate::Plausibility {
        max_per_second: config.max_per_window,
    })
    .map_err(StartError::Config)?;
    let store = Store::open(&config.db, config.db_connections).await?;
    let (queue, writer) = store.start_writer(config.queue);
    let sources = std::sync::Arc::new(crate::sources::Sources::new(crate::sources::Limits {
        new_clusters_per_hour: config.source_new_clusters_per_hour,
        per_minute: config.source_per_minute,
        connections: config.source_connections,
        trusted: config.trusted_proxies.clone(),
    }));
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
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
        quarantine_max: config.quarantine_max,
        keeping: tokio::sync::Semaphore::new(1),
        sources: sources.clone(),
        metrics: metrics.clone(),
    });
    let edge = std::sync::Arc::new(Edge {
        path: config.path.clone(),
        token: config.read_token.clone(),
        answers_addr: std::sync::OnceLock::new(),
        body_timeout: config.body_timeout,
    });
    let path = config.path.clone();
    let app_edge = edge.clone();
    let mut server = HttpServer::new(move || {
        let edge = app_edge.clone();
        let app = App::new()
            .app_data(state.clone())
            .wrap_fn(move |req, srv| {
                use actix_web::dev::Service;
                let (req, context) = edge_before(&edge, req);
                let answer = match req {
                    Ok(req) => futures_util::future::Either::Left(srv.call(req)),
                    Err(res) => futures_util::future::Either::Right(std::future::ready(Ok(res))),
                };
                edge_after(context, answer)
            })
            .route("/api/overview", web::get().to(overview_json))
            .route("/api/activity", web::get().to(activity_json))
            .route("/api/retention", web::get().to(retention_json))
            .route("/api/per_day.csv", web::get().to(per_day_csv))
            .route("/api/activity.csv", web::get().to(activity_csv))
            .route("/api/reports.ndjson", web::get().to(reports_ndjson))
            .route("/metrics", web::get().to(metrics_text))
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
            )
            .route("/readyz", web::get().to(readyz));
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
    .keep_alive(if config.keep_alive.is_zero() {
        actix_web::http::KeepAlive::Disabled
    } else {
        actix_web::http::KeepAlive::Timeout(config.keep_alive)
    })
    .client_request_timeout(Duration::from_secs(5))
    .on_connect(move |conn, ext| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            if let Ok(peer) = tcp.peer_addr() {
                if let Some(counted) = sources.connect(peer.ip()) {
                    ext.insert(counted);
                }
            }
        }
    })
    .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    if !config.handle_signals {
        server = server.disable_signals();
    }
    let mut server = server
        .bind(config.listen)
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = server.addrs()[0];
    let answers_addr = match config.answers_listen {
        Some(answers) => {
            server = server.bind(answers).map_err(|source| StartError::Listen {
                addr: answers,
                source,
            })?;
            let bound = server.addrs()[1];
            let _ = edge.answers_addr.set(bound);
            Some(bound)
        }
        None => None,
    };
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
    let summary = actix_rt::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            metrics.log_refusals();
        }
    });
    tracing::info!(
        %addr,
        answers = %answers_addr.map_or_else(|| addr.to_string(), |a| a.to_string()),
        answers_protected = config.read_token.is_some(),
        ingest = %config.path,
        db = %crate::store::redacted(&config.db),
        retention_days = config.retention.as_secs() / 86_400,
        "checkpoint receiver listening"
    );
    Ok(Running {
        addr,
        answers_addr,
        store,
        server: handle,
        served,
        writer,
        pruner,
        summary,
    })
}

async fn metrics_text(state: web::Data<State>) -> HttpResponse {
    // The quarantine is shared by every receiver on the database (and a replay): read it now.
    if let Ok(kept) = crate::quarantine::totals(&state.store).await {
        state.metrics.set_quarantine(kept.reports, kept.bytes);
    }
    let depth = state.queue.max_capacity() - state.queue.capacity();
    let body = state.metrics.render(
        state.store.writer_metrics(),
        depth,
        state.queue.max_capacity(),
        state.sources.tracked(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

/// `res` tagged with why it refused (for `/metrics` and the once-a-minute refusal summary).
fn with_reason(reason: &'static str, mut res: HttpResponse) -> HttpResponse {
    res.extensions_mut().insert(crate::metrics::Reason(reason));
    res
}

fn too_many(seconds: u64, message: String) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((header::RETRY_AFTER, seconds.to_string()))
        .json(json!({ "error": message }))
}

mod answers;
mod edge;
mod ingest;

use answers::*;
use edge::*;
pub use ingest::VERSIONS_HEADER;
use ingest::*;
