//! Shared by the checkpoint tests: the databases to run against, a receiver on 127.0.0.1:0,
//! and an HTTP client for it.
//!
//! Every test runs against a fresh SQLite file in a temporary directory, and also against a
//! fresh Postgres database of its own when `CHECKPOINT_TEST_POSTGRES_URL` names a server (a
//! URL whose user may create databases, e.g. postgres://postgres:postgres@127.0.0.1/postgres).
//! Without it the Postgres half is skipped with a printed note.

#![allow(dead_code)]

use std::time::Duration;

use checkpoint::{Overview, Running, ServerConfig};
use serde_json::Value;
use sqlx::Connection;

/// The seed's sample report, the template of every generated report.
pub const SEED: &str = include_str!("../../../tests/fixtures/seed_report.json");

pub fn seed() -> Value {
    serde_json::from_str(SEED).expect("the seed fixture is JSON")
}

/// One database to run a test against.
pub struct Backend {
    pub name: &'static str,
    pub db: String,
    _dir: Option<tempfile::TempDir>,
    /// (server URL, database name) to drop at the end.
    postgres: Option<(String, String)>,
}

impl Backend {
    /// Drops the test's Postgres database (a SQLite file goes with its directory).
    pub async fn finish(self) {
        if let Some((server, name)) = &self.postgres {
            if let Ok(mut conn) = sqlx::AnyConnection::connect(server).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// `url` with its database path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}/{name}{query}")
}

/// A fresh SQLite file, and a fresh Postgres database when one is configured.
pub async fn backends(test: &str) -> Vec<Backend> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("checkpoint.db").display().to_string();
    let mut all = vec![Backend {
        name: "sqlite",
        db,
        _dir: Some(dir),
        postgres: None,
    }];
    match std::env::var("CHECKPOINT_TEST_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => {
            let name = format!("checkpoint_{}_{:08x}", test, fastrand::u32(..));
            let mut conn = sqlx::AnyConnection::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("CHECKPOINT_TEST_POSTGRES_URL is set but: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
            all.push(Backend {
                name: "postgres",
                db: with_database(&server, &name),
                _dir: None,
                postgres: Some((server, name)),
            });
        }
        _ => eprintln!(
            "note: {test}: Postgres half skipped; set CHECKPOINT_TEST_POSTGRES_URL \
             (e.g. postgres://postgres:postgres@127.0.0.1/postgres) to run it"
        ),
    }
    all
}

/// A receiver on 127.0.0.1 (any free port) storing into `db`.
pub async fn start_with(db: &str, tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), db);
    config.shutdown_timeout = Duration::from_secs(10);
    // Every test sends from 127.0.0.1: the per-source limits are off unless a test sets them.
    config.source_new_clusters_per_hour = 0;
    config.source_per_minute = 0;
    config.source_connections = 0;
    tweak(&mut config);
    checkpoint::start(config)
        .await
        .unwrap_or_else(|e| panic!("the receiver starts: {e}"))
}

pub async fn start(db: &str) -> Running {
    start_with(db, |_| {}).await
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
    /// `Checkpoint-Report-Versions`.
    pub versions: Option<String>,
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

/// POSTs `body` to the receiver's `/`.
pub async fn post_with(
    client: &awc::Client,
    running: &Running,
    body: impl Into<Vec<u8>>,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = client.post(format!("http://{}/", running.addr()));
    if let Some(ct) = content_type {
        req = req.insert_header(("content-type", ct));
    }
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req
        .send_body(body.into())
        .await
        .unwrap_or_else(|e| panic!("POST to the receiver: {e}"));
    let bytes = res.body().limit(1 << 20).await.expect("an answer body");
    Answer {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        retry_after: res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned()),
        versions: res
            .headers()
            .get("checkpoint-report-versions")
            .map(|v| v.to_str().unwrap_or_default().to_owned()),
    }
}

/// POSTs a report as the reporter does: JSON with `Idempotency-Key` = `report_id`.
pub async fn post(client: &awc::Client, running: &Running, report: &Value) -> Answer {
    let key = report["report_id"].as_str().unwrap_or_default().to_owned();
    post_with(
        client,
        running,
        serde_json::to_vec(report).unwrap(),
        Some("application/json"),
        &[("idempotency-key", &key)],
    )
    .await
}

/// `GET /api/overview?days=..&until=..`.
pub async fn overview(client: &awc::Client, running: &Running, days: u32, until: &str) -> Overview {
    let mut res = client
        .get(format!(
            "http://{}/api/overview?days={days}&until={until}",
            running.addr()
        ))
        .send()
        .await
        .expect("GET /api/overview");
    assert_eq!(res.status().as_u16(), 200, "GET /api/overview");
    res.json().limit(16 << 20).await.expect("an overview")
}

/// Today in UTC, as the receiver's default `until`.
pub fn today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// The seed with a fresh `report_id`, for `cluster`.
pub fn report_for(cluster: &str) -> Value {
    let mut v = seed();
    v["report_id"] = Value::String(uuid::Uuid::new_v4().to_string());
    v["data"]["environment"]["electric_cluster_uuid"] = Value::String(cluster.to_owned());
    v
}

/// The real reporter's configuration for a test against `running`: reports to its ingest path,
/// its outbox in `storage`, the first report after 150 ms and one a second after that. Each
/// test adds what it needs (backoffs, shutdown timeout) before `build()`.
pub fn reporter_to(
    running: &Running,
    storage: &std::path::Path,
) -> electric_telemetry::TelemetryConfigBuilder {
    electric_telemetry::TelemetryConfig::builder()
        .url(format!("http://{}/", running.addr()))
        .storage_dir(storage)
        .first_report_in(Duration::from_millis(150))
        .interval(Duration::from_secs(1))
}
