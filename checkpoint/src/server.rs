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

/// What the edge middleware needs.
struct Edge {
    path: String,
    token: Option<crate::auth::ReadToken>,
    /// Set once bound, before any request.
    answers_addr: std::sync::OnceLock<SocketAddr>,
    body_timeout: Duration,
}

/// A request body with a deadline: past it, the stream ends with a timeout error and `fired`
/// is set, so that the answer becomes 408 whatever the handler made of the error.
struct Deadline {
    inner: actix_web::dev::Payload,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    fired: std::rc::Rc<std::cell::Cell<bool>>,
}

impl futures_util::Stream for Deadline {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        if let Poll::Ready(item) = std::pin::Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.fired.set(true);
            return Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "body timeout"),
            ))));
        }
        Poll::Pending
    }
}

/// What [`edge_after`] needs of a request [`edge_before`] let through or answered.
struct EdgeContext {
    edge: std::sync::Arc<Edge>,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    fired: std::rc::Rc<std::cell::Cell<bool>>,
    /// An ingest request on an address that serves ingest: its answer, whoever gives it (the
    /// handler, or the edge before or instead of it), names the accepted versions.
    ingest: bool,
}

/// Routes by listener, checks the token, caps connections per source and puts a deadline on
/// the body; `Err` is the answer when the request goes no further.
fn edge_before(
    edge: &std::sync::Arc<Edge>,
    mut req: actix_web::dev::ServiceRequest,
) -> (
    Result<actix_web::dev::ServiceRequest, actix_web::dev::ServiceResponse>,
    EdgeContext,
) {
    use actix_web::http::{Method, StatusCode};
    use actix_web::HttpMessage;
    let ingest = req.method() == Method::POST && req.path() == edge.path;
    let probe = matches!(req.path(), "/healthz" | "/readyz");
    let on_answers = edge
        .answers_addr
        .get()
        .map(|a| *a == req.app_config().local_addr());
    let over = req
        .conn_data::<crate::sources::Connection>()
        .is_some_and(|c| c.over);
    let early = if over {
        Some(with_reason(
            "source_connections",
            HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, "10"))
                .force_close()
                .json(
                    json!({ "error": "too many connections from this source; retry after 10 s" }),
                ),
        ))
    } else if match on_answers {
        // The ingest address serves ingest and the probes only; the answers address no ingest.
        Some(false) => !(ingest || probe),
        Some(true) => ingest,
        None => false,
    } {
        Some(error(StatusCode::NOT_FOUND, "not found"))
    } else if !(ingest || probe)
        && edge
            .token
            .as_ref()
            .is_some_and(|t| !t.allows(req.request()))
    {
        Some(
            HttpResponse::Unauthorized()
                .insert_header((
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"checkpoint\", charset=\"UTF-8\"",
                ))
                .json(json!({
                    "error": "the answers need the read token: Authorization: Bearer TOKEN, or HTTP Basic with the token as the password"
                })),
        )
    } else {
        None
    };
    let metrics = if ingest {
        req.app_data::<web::Data<State>>()
            .map(|s| s.metrics.clone())
    } else {
        None
    };
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let context = EdgeContext {
        edge: edge.clone(),
        metrics,
        fired: fired.clone(),
        ingest: ingest && on_answers != Some(true),
    };
    if let Some(res) = early {
        return (Err(req.into_response(res)), context);
    }
    let payload = req.take_payload();
    let deadline = Deadline {
        inner: payload,
        sleep: Box::pin(tokio::time::sleep(edge.body_timeout)),
        fired,
    };
    req.set_payload(actix_web::dev::Payload::Stream {
        payload: Box::pin(deadline),
    });
    (Ok(req), context)
}

/// Turns the answer into 408 when the body deadline fired, and counts every ingest answer.
async fn edge_after(
    context: EdgeContext,
    answer: impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse, actix_web::Error>>,
) -> Result<actix_web::dev::ServiceResponse, actix_web::Error> {
    let mut res = answer.await?;
    if context.fired.get() {
        let timeout = with_reason(
            "body_timeout",
            HttpResponse::RequestTimeout().force_close().json(json!({
                "error": format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(context.edge.body_timeout)
                )
            })),
        );
        res = res.into_response(timeout);
    }
    if context.ingest {
        res.headers_mut().insert(
            header::HeaderName::from_static(VERSIONS_HEADER),
            versions_value(),
        );
    }
    if let Some(m) = &context.metrics {
        let reason = res
            .response()
            .extensions()
            .get::<crate::metrics::Reason>()
            .copied();
        m.answered(res.status().as_u16(), reason);
    }
    Ok(res)
}

/// The per-source checks of an ingest request, before its body is read.
fn source_admits(req: &HttpRequest, state: &State) -> Result<(), crate::sources::Refusal> {
    let Some(key) = state.sources.source(req) else {
        return Ok(());
    };
    state.sources.take_report(key)
}

/// The per-source check of a report's cluster.
fn source_admits_cluster(
    req: &HttpRequest,
    state: &State,
    cluster: &str,
) -> Result<(), crate::sources::Refusal> {
    let Some(key) = state.sources.source(req) else {
        return Ok(());
    };
    state.sources.take_cluster(key, cluster)
}

fn source_refused(r: crate::sources::Refusal) -> HttpResponse {
    use crate::sources::Refusal;
    let (reason, wait, message) = match r {
        Refusal::PerMinute { retry_after } => (
            "source_rate",
            retry_after,
            format!("too many reports from this source; retry after {retry_after} s"),
        ),
        Refusal::NewClusters { retry_after } => (
            "source_new_clusters",
            retry_after,
            format!(
                "this source reported for too many distinct clusters this hour; retry after {retry_after} s"
            ),
        ),
    };
    let mut res = too_many(wait, message);
    res.extensions_mut().insert(crate::metrics::Reason(reason));
    res
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

/// The header on every ingest answer listing the report versions this receiver accepts
/// (`Checkpoint-Report-Versions: 2`), so that a reporter learns when the receiver knows a
/// newer version than it sends.
pub const VERSIONS_HEADER: &str = "checkpoint-report-versions";

/// [`VERSIONS_HEADER`]'s value: the accepted versions, e.g. `2`.
fn versions_value() -> header::HeaderValue {
    static VERSIONS: std::sync::LazyLock<header::HeaderValue> = std::sync::LazyLock::new(|| {
        header::HeaderValue::from_str(&crate::validate::accepted_versions())
            .expect("version numbers are a valid header value")
    });
    VERSIONS.clone()
}

/// An ingest answer; [`VERSIONS_HEADER`] is put on it at the edge (`edge_after`), which also
/// gives the answers that never reach here (408 at the body deadline, 429 for a source's
/// connections).
async fn ingest(req: HttpRequest, mut body: web::Payload, state: web::Data<State>) -> HttpResponse {
    use actix_web::http::StatusCode;
    if let Err(refused) = source_admits(&req, &state) {
        return source_refused(refused);
    }
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
        Err(refused) => return refuse(&state, refused).await,
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
    if let Err(refused) = source_admits_cluster(&req, &state, &report.cluster_uuid) {
        return source_refused(refused);
    }
    if let Err(wait) = state.limiter.take(&report.cluster_uuid) {
        return with_reason(
            "cluster_rate",
            too_many(
                wait,
                format!(
                    "too many reports from cluster {}; retry after {wait} s",
                    report.cluster_uuid
                ),
            ),
        );
    }
    let (reply, answer) = oneshot::channel();
    let report_id = report.report_id.clone();
    match state.queue.try_send(Submission { report, reply }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            return with_reason(
                "queue_full",
                too_many(2, "the receiver is busy; retry after 2 s".to_owned()),
            );
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

/// Answers a refused body, after keeping it in the quarantine when it was a report: `400`
/// naming the problem for a body no retry can cure (not JSON, an unknown version, a schema
/// violation), `202 {"status":"quarantined"}` for an implausible one, so that the reporter
/// does not send it again. A 202 is sent only once the report is kept; with
/// `--quarantine-max 0` an implausible report is answered `422` instead (refused, not kept).
/// One refused report is kept at a time per receiver: while one is being written, an
/// implausible report is answered `429` (retry later) and a 400 is answered without keeping.
async fn refuse(state: &State, refused: crate::validate::Refused) -> HttpResponse {
    use crate::validate::Invalid;
    use actix_web::http::StatusCode;
    let reason = refused.error.reason();
    tracing::debug!(reason, error = %refused.error, "refused a report");
    let implausible = matches!(refused.error, Invalid::Implausible { .. });
    let kept = if state.quarantine_max == 0 || refused.body.is_none() {
        None
    } else if let Ok(_one) = state.keeping.try_acquire() {
        let now = chrono::Utc::now().timestamp_micros();
        let kept = crate::quarantine::keep(&state.store, &refused, now, state.quarantine_max).await;
        // The gauges are read from the database at each scrape (the quarantine is shared).
        if let Err(e) = &kept {
            tracing::warn!(error = %e, reason, "could not keep a refused report in the quarantine");
        }
        Some(kept.is_ok())
    } else if implausible {
        return with_reason(
            "quarantine_busy",
            too_many(1, "the quarantine is busy; retry after 1 s".to_owned()),
        );
    } else {
        None
    };
    match refused.error {
        Invalid::Implausible { reason, detail } => match kept {
            Some(true) => with_reason(
                reason,
                HttpResponse::Accepted().json(json!({
                    "status": "quarantined",
                    "reason": reason,
                    "detail": detail,
                    "report_id": refused.report_id,
                })),
            ),
            None => with_reason(
                reason,
                HttpResponse::UnprocessableEntity().json(json!({
                    "error": format!("the report is implausible and not kept ({reason}): {detail}"),
                    "reason": reason,
                })),
            ),
            Some(false) => HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .json(json!({ "error": "the report could not be kept; retry after 5 s" })),
        },
        refusal => with_reason(
            reason,
            error(
                StatusCode::BAD_REQUEST,
                crate::validate::printable(&refusal.to_string()),
            ),
        ),
    }
}

/// `200 ready` while writes succeed, `503` with `Retry-After` while they fail (see
/// [`Store::ready`]: a real write at most once a second).
async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.store.ready().await {
        HttpResponse::Ok().body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .body("not ready: writes to the database fail\n")
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

fn csv(body: String, name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(body)
}

/// `GET /api/per_day.csv?days=N&until=D`: see [`crate::export`].
async fn per_day_csv(q: web::Query<Window>, state: web::Data<State>) -> HttpResponse {
    let (days, until) = match window(&q) {
        Ok(w) => w,
        Err(e) => return error(actix_web::http::StatusCode::BAD_REQUEST, e),
    };
    match state.store.overview(days, until).await {
        Ok(o) => csv(crate::export::per_day_csv(&o), "per_day.csv"),
        Err(e) => {
            tracing::error!(error = %e, "overview failed");
            error(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the overview could not be read",
            )
        }
    }
}

/// `GET /api/activity.csv`, with `/api/activity`'s parameters.
async fn activity_csv(q: web::Query<Periods>, state: web::Data<State>) -> HttpResponse {
    match activity_of(&q, &state).await {
        Ok(a) => csv(crate::export::activity_csv(&a), "activity.csv"),
        Err(refused) => refused,
    }
}

#[derive(Deserialize)]
struct Span {
    from: Option<String>,
    until: Option<String>,
}

/// `GET /api/reports.ndjson?from=D&until=D` (both default to today): the stored raw reports
/// counted on those days, one per line, read page by page.
async fn reports_ndjson(q: web::Query<Span>, state: web::Data<State>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let day = |v: &Option<String>, name: &str| match v.as_deref() {
        None | Some("") => Ok(chrono::Utc::now().date_naive()),
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| format!("{name} must be a date like 2026-11-25, got {s:?}")),
    };
    let (from, until) = match (day(&q.from, "from"), day(&q.until, "until")) {
        (Ok(f), Ok(u)) if f <= u => (f, u),
        (Ok(_), Ok(_)) => return error(StatusCode::BAD_REQUEST, "from must not be after until"),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let store = state.store.clone();
    let pages = futures_util::stream::unfold(Some(None::<(String, String)>), move |cursor| {
        let store = store.clone();
        async move {
            let cursor = cursor?;
            match crate::export::raw_page(&store, from, until, cursor).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let mut chunk = String::new();
                    for (_, _, body) in &rows {
                        chunk.push_str(body);
                        chunk.push('\n');
                    }
                    let next = rows
                        .last()
                        .map(|(d, id, _)| (d.clone(), id.clone()))
                        .filter(|_| rows.len() as i64 == crate::export::PAGE);
                    Some((
                        Ok::<_, actix_web::Error>(web::Bytes::from(chunk)),
                        next.map(Some),
                    ))
                }
                Err(e) => {
                    // The status is sent already: end the body early, and say so in the log.
                    tracing::error!(error = %e, "the report export failed part way");
                    Some((
                        Err(actix_web::error::ErrorInternalServerError("export failed")),
                        None,
                    ))
                }
            }
        }
    });
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(pages)
}

#[derive(Deserialize)]
struct Periods {
    period: Option<String>,
    periods: Option<String>,
    until: Option<String>,
}

/// `GET /api/activity?period=day|week|month|quarter&periods=K&until=D`: see [`crate::activity`].
async fn activity_json(q: web::Query<Periods>, state: web::Data<State>) -> HttpResponse {
    match activity_of(&q, &state).await {
        Ok(a) => HttpResponse::Ok().json(a),
        Err(refused) => refused,
    }
}

/// The activity `q` asks for, or the answer saying what was wrong.
async fn activity_of(
    q: &Periods,
    state: &State,
) -> Result<crate::activity::Activity, HttpResponse> {
    use actix_web::http::StatusCode;
    let period = crate::activity::Period::parse(q.period.as_deref().unwrap_or("week"))
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let max = crate::activity::MAX_PERIODS;
    let periods = match q.periods.as_deref() {
        None | Some("") => 12,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("periods must be a whole number from 1 to {max}, got {s:?}"),
                ))
            }
        },
    };
    let (_, until) = window(&Window {
        days: None,
        until: q.until.clone(),
    })
    .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    state
        .store
        .activity(period, periods, until)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "activity failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the activity could not be read",
            )
        })
}

#[derive(Deserialize)]
struct Cohorts {
    period: Option<String>,
    cohorts: Option<String>,
    until: Option<String>,
}

/// `GET /api/retention?period=week|month&cohorts=K&until=D`: see [`crate::activity::Cohort`].
async fn retention_json(q: web::Query<Cohorts>, state: web::Data<State>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let period = match q.period.as_deref().unwrap_or("week") {
        "week" => crate::activity::Period::Week,
        "month" => crate::activity::Period::Month,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("period must be week or month, got {other:?}"),
            )
        }
    };
    let max = crate::activity::MAX_PERIODS;
    let cohorts = match q.cohorts.as_deref() {
        None | Some("") => 12,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("cohorts must be a whole number from 1 to {max}, got {s:?}"),
                )
            }
        },
    };
    let until = match window(&Window {
        days: None,
        until: q.until.clone(),
    }) {
        Ok((_, until)) => until,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.store.retention(period, cohorts, until).await {
        Ok(r) => HttpResponse::Ok().json(r),
        Err(e) => {
            tracing::error!(error = %e, "retention failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the retention could not be read",
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
