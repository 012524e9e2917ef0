//! Durable storage of reports and their rollups, in SQLite or Postgres through one code path.
//!
//! **Why sqlx's `Any` driver**: one pool type and one set of queries for both databases, chosen
//! at run time from `--db`. The SQL is the subset both dialects share: `$N` placeholders
//! (SQLite reads `$1` as parameter 1; the multi-row statements give SQLite anonymous `?`
//! instead, see `Multi`), `INSERT … ON CONFLICT … DO UPDATE`, `RETURNING`, `CASE`,
//! `BIGINT`/`TEXT`. The price is that values travel as a few types (`i64`, `f64`, text) and
//! queries are not checked at compile time; the tests run every query against both databases
//! instead. The only dialect switch is the Postgres advisory lock around migrations, so that
//! several receivers starting at once on one database apply them once.
//!
//! **What is stored** (see the migration below):
//! - `reports`: every accepted report as canonical compact JSON (re-serialised, not the bytes
//!   sent), keyed by `report_id` (which is how duplicates are refused), kept for the retention
//!   period (30 days by default) from its receipt;
//! - `clusters`: one row per `electric_cluster_uuid`: first and last day seen and the latest
//!   reported attributes (versions, OS, arch), kept for good;
//! - `instances`: one row per (cluster, instance): first and last day seen, the last report's
//!   `timestamp` and `last_reported` and the one before's `timestamp` (to detect missed
//!   windows), kept for good;
//! - `cluster_days`: per cluster per day, the summed counters and completeness figures;
//! - `days`: the same summed over all clusters, plus active, new and duplicate counts.
//!
//! The overview reads `clusters`, `instances` and `days` only: its cost grows with the number
//! of clusters, instances and days, never with the number of raw reports.
//!
//! **Lock order**: a batch writes `reports`, `clusters`, `instances`, `cluster_days`, `days` in
//! that order, each table's rows sorted by key, so that receivers sharing one Postgres never
//! deadlock on the rollup rows.
//!
//! **Few statements per batch**: each table's rows of a batch go in multi-row statements
//! (see `CHUNKS`): a batch of 32 reports costs about 15 round trips to the database, where
//! one statement per report and table cost 160. The `days` rows are summed in memory first
//! (one row per day per batch); the other rollups are applied in rounds (see `rounds`) so
//! that each report's effect is exactly what it would be alone, which
//! `tests/stored.rs` checks against the same reports stored one at a time.
//!
//! **Durability**: a report's raw row and every rollup change are one transaction; the caller
//! hears "stored" only after it committed (SQLite in WAL mode with `synchronous=FULL`).
//! Reports are written by one writer task in batches (group commit): everything waiting when a
//! transaction starts goes into it, so a burst costs one fsync, not one per report.
//!
//! **Counts** are BIGINT: a count above 2^63-1 (the reporter's saturate at 2^64-1) is stored
//! as 2^63-1, and sums saturate there rather than failing.
//!
//! All database work runs on a small tokio runtime owned by the store, so connections never
//! depend on which actix worker happened to open them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::{mpsc, oneshot};

use crate::overview::{Bucket, Completeness, Day, Overview, Share};
use crate::validate::{Accepted, COUNTERS};

/// Rolled-up figures besides the usage counters, in column order after them.
const EXTRA: [&str; 6] = [
    "dropped_events",
    "dropped_reports",
    "missed_windows",
    "recovered",
    "after_unclean_stop",
    "clock_skewed",
];

/// The largest BIGINT; sums stop there.
const MAX: &str = "9223372036854775807";

/// A store error. Its text never holds the database URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Other(String),
}

/// Which database `--db` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Turns `--db` into a connection URL: `postgres://…`/`postgresql://…` and `sqlite:…` are used
/// as given; anything else is a SQLite file path, created if missing.
pub fn db_url(db: &str) -> (Backend, String) {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        (Backend::Postgres, db.to_owned())
    } else if db.starts_with("sqlite:") {
        (Backend::Sqlite, db.to_owned())
    } else {
        (Backend::Sqlite, format!("sqlite://{db}?mode=rwc"))
    }
}

/// `--db` for logs: a Postgres URL without its password and query.
pub fn redacted(db: &str) -> String {
    match db.split_once("://") {
        Some((scheme, rest)) if scheme.starts_with("postgres") => {
            let rest = rest.split('?').next().unwrap_or_default();
            let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
            format!("{scheme}://…@{host}")
        }
        _ => db.to_owned(),
    }
}

/// Owns the runtime the database work runs on; shut down without blocking, so a store may be
/// dropped inside async code.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    sql: Arc<Sql>,
    rt: Arc<Runtime>,
    /// Batch sizes and commit latencies, for `/metrics`.
    writer_metrics: Arc<crate::metrics::Writer>,
    health: Arc<Health>,
}

/// Whether writes succeed: set by every batch the writer commits or fails and by the
/// readiness probe, which writes for real at most once a second.
#[derive(Default)]
struct Health {
    failing: AtomicBool,
    /// When the probe last ran.
    probed: tokio::sync::Mutex<Option<Instant>>,
}

/// How often the readiness probe writes at most.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Consecutive failed single-report transactions after which the rest of a failed batch is
/// answered 503 without a try of its own (the database fails, not the reports).
const FALLBACK_GIVE_UP: usize = 3;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// What happened to one submitted report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed now.
    Stored,
    /// A report with this `report_id` was already stored; nothing was stored now.
    Duplicate,
}

/// One report waiting for the writer, and where to tell the outcome.
pub struct Submission {
    pub report: Accepted,
    pub reply: oneshot::Sender<Result<Outcome, String>>,
}

/// The queries, built once from [`COUNTERS`].
struct Sql {
    insert_reports: Multi,
    upsert_clusters: Multi,
    upsert_instances: Multi,
    upsert_cluster_days: Multi,
    upsert_days: Multi,
    select_days: String,
}

/// Rows per multi-row statement: a batch's rows for one table are cut into statements of
/// these sizes, largest first (27 rows: 16 + 8 + 2 + 1), so that a connection prepares at most
/// seven shapes of each statement (sqlx caches 100 prepared statements per connection). Each
/// statement is a round trip to the database: a handful per table and batch, not one per
/// report. 64 rows of the widest statement (`days`, 22 values) bind 1 408 parameters, far
/// below both databases' limits.
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// One statement per size in [`CHUNKS`]: `head VALUES (row), (row), … tail`.
struct Multi([String; CHUNKS.len()]);

impl Multi {
    /// `row` is one row's value list with `?` for each parameter, bound in order. SQLite gets
    /// anonymous `?` placeholders: sqlx looks up the name of every numbered one, and SQLite
    /// finds a name by a linear scan, so numbered placeholders cost the square of a big
    /// statement's parameter count. Postgres gets `$1`, `$2`, … in the same order.
    fn new(backend: Backend, head: &str, row: &str, tail: &str) -> Multi {
        let width = row.matches('?').count();
        Multi(CHUNKS.map(|rows| {
            let mut values = String::new();
            let mut k = 0;
            for r in 0..rows {
                if r > 0 {
                    values.push_str(", ");
                }
                for part in row.split_inclusive('?') {
                    match part.strip_suffix('?') {
                        Some(text) => {
                            k += 1;
                            values.push_str(text);
                            match backend {
                                Backend::Sqlite => values.push('?'),
                                Backend::Postgres => values.push_str(&format!("${k}")),
                            }
                        }
                        None => values.push_str(part),
                    }
                }
            }
            debug_assert_eq!(k, rows * width);
            format!("{head} VALUES {values} {tail}")
        }))
    }
}

/// `n` rows cut into chunks of [`CHUNKS`] sizes: (which size, which rows).
fn chunked(n: usize) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = 0;
    for (shape, size) in CHUNKS.iter().enumerate() {
        while n - at >= *size {
            out.push((shape, at..at + size));
            at += size;
        }
    }
    out
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Runs `multi` over `items` chunk by chunk, in order, `bind` binding one item's row; the
/// rows every chunk returned.
async fn run_multi<'q, T>(
    conn: &mut sqlx::AnyConnection,
    multi: &'q Multi,
    items: &[T],
    bind: impl Fn(AnyQuery<'q>, &T) -> AnyQuery<'q>,
) -> Result<Vec<AnyRow>, StoreError> {
    let mut rows = Vec::new();
    for (shape, range) in chunked(items.len()) {
        let mut q = sqlx::query(&multi.0[shape]);
        for item in &items[range] {
            q = bind(q, item);
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// `stored` in rounds: sorted by (`key`, timestamp), round j holds the j-th report of every key
/// that has at least j + 1, in key order. Each round is one statement per chunk in which every
/// key appears once (Postgres refuses an upsert that touches a row twice), and a key's reports
/// are applied in the order of their windows, exactly as one statement per report would.
/// Round j's keys are a subset of round j - 1's, so a batch first touches, and locks, each row
/// in key order: the global lock order holds.
fn rounds<'a, K: Ord>(
    reports: &[&'a Accepted],
    stored: &[usize],
    key: impl Fn(&'a Accepted) -> K,
) -> Vec<Vec<usize>> {
    let mut sorted = stored.to_vec();
    sorted.sort_by(|&a, &b| {
        (key(reports[a]), reports[a].timestamp_us).cmp(&(key(reports[b]), reports[b].timestamp_us))
    });
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut j = 0;
    for (at, &i) in sorted.iter().enumerate() {
        j = if at > 0 && key(reports[sorted[at - 1]]) == key(reports[i]) {
            j + 1
        } else {
            0
        };
        if out.len() <= j {
            out.push(Vec::new());
        }
        out[j].push(i);
    }
    out
}

/// What a batch adds to one `days` row: summed in memory (the additions commute, and sums
/// saturate at the BIGINT maximum either way), written with one upsert per day.
#[derive(Default)]
struct DayAdd {
    reports: i64,
    clusters: i64,
    instances: i64,
    new_clusters: i64,
    duplicates: i64,
    sums: [i64; COUNTERS.len() + EXTRA.len()],
}

fn sat(table: &str, col: &str) -> String {
    format!(
        "{col} = CASE WHEN {table}.{col} > {MAX} - excluded.{col} THEN {MAX} \
         ELSE {table}.{col} + excluded.{col} END"
    )
}

/// The report being written is the cluster-day's latest so far.
const DAY_NEWER: &str =
    "(cluster_days.latest_ts IS NULL OR excluded.latest_ts >= cluster_days.latest_ts)";

fn day_latest(col: &str) -> String {
    format!("{col} = CASE WHEN {DAY_NEWER} THEN excluded.{col} ELSE cluster_days.{col} END")
}

fn latest(col: &str) -> String {
    format!(
        "{col} = CASE WHEN excluded.latest_ts >= clusters.latest_ts THEN excluded.{col} \
         ELSE clusters.{col} END"
    )
}

impl Sql {
    fn new(backend: Backend) -> Self {
        let rolled: Vec<&str> = COUNTERS.iter().chain(EXTRA.iter()).copied().collect();
        let cols = rolled.join(", ");
        let n = rolled.len();
        let params = vec!["?"; n].join(", ");
        let sats = |table: &str| {
            rolled
                .iter()
                .map(|c| sat(table, c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Sql {
            insert_reports: Multi::new(
                backend,
                "INSERT INTO reports (report_id, received_at, day, cluster_uuid, instance_id, \
                 report_version, body)",
                "(?, ?, ?, ?, ?, ?, ?)",
                "ON CONFLICT (report_id) DO NOTHING RETURNING report_id",
            ),
            upsert_clusters: Multi::new(
                backend,
                "INSERT INTO clusters (cluster_uuid, first_day, last_day, latest_ts, \
                 electric_version, pg_version, os_family, os_name, arch, reports)",
                // first_day and last_day: the report's day, bound twice.
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                &format!(
                    "ON CONFLICT (cluster_uuid) DO UPDATE SET \
                     first_day = CASE WHEN excluded.first_day < clusters.first_day \
                       THEN excluded.first_day ELSE clusters.first_day END, \
                     last_day = CASE WHEN excluded.last_day > clusters.last_day \
                       THEN excluded.last_day ELSE clusters.last_day END, \
                     {}, {}, {}, {}, \
                     pg_version = CASE WHEN excluded.latest_ts >= clusters.latest_ts \
                       THEN COALESCE(excluded.pg_version, clusters.pg_version) \
                       ELSE COALESCE(clusters.pg_version, excluded.pg_version) END, \
                     latest_ts = CASE WHEN excluded.latest_ts >= clusters.latest_ts \
                       THEN excluded.latest_ts ELSE clusters.latest_ts END, \
                     reports = clusters.reports + 1 \
                     RETURNING cluster_uuid, reports",
                    latest("electric_version"),
                    latest("os_family"),
                    latest("os_name"),
                    latest("arch"),
                ),
            ),
            // The SET expressions read the row as it was, so prev_* return the previous
            // report's values: one statement, atomic under concurrent receivers.
            upsert_instances: Multi::new(
                backend,
                "INSERT INTO instances (cluster_uuid, instance_id, first_day, last_day, \
                 last_ts, prev_ts, prev_day, reports, missed_windows, claimed_prev_ts)",
                "(?, ?, ?, ?, ?, NULL, NULL, 1, 0, ?)",
                "ON CONFLICT (cluster_uuid, instance_id) DO UPDATE SET \
                 prev_ts = instances.last_ts, prev_day = instances.last_day, \
                 last_ts = excluded.last_ts, \
                 first_day = CASE WHEN excluded.first_day < instances.first_day \
                   THEN excluded.first_day ELSE instances.first_day END, \
                 last_day = CASE WHEN excluded.last_day > instances.last_day \
                   THEN excluded.last_day ELSE instances.last_day END, \
                 reports = instances.reports + 1, \
                 missed_windows = instances.missed_windows + \
                   CASE WHEN instances.last_ts <> excluded.claimed_prev_ts THEN 1 ELSE 0 END, \
                 claimed_prev_ts = excluded.claimed_prev_ts \
                 RETURNING cluster_uuid, instance_id, reports, prev_ts, prev_day",
            ),
            // Beside the sums, the attributes of the cluster's latest report of the day, by the
            // clusters table's rules: what "versions as of a period" reads. A row from before
            // migration 5 has no latest_ts: the first report after it sets them.
            upsert_cluster_days: Multi::new(
                backend,
                &format!(
                    "INSERT INTO cluster_days (cluster_uuid, day, reports, instances, {cols}, \
                     latest_ts, electric_version, pg_version, os_family, os_name, arch)"
                ),
                &format!("(?, ?, 1, ?, {params}, ?, ?, ?, ?, ?, ?)"),
                &format!(
                    "ON CONFLICT (cluster_uuid, day) DO UPDATE SET \
                     reports = cluster_days.reports + 1, \
                     instances = cluster_days.instances + excluded.instances, {}, \
                     {}, {}, {}, {}, \
                     pg_version = CASE WHEN {newer} \
                       THEN COALESCE(excluded.pg_version, cluster_days.pg_version) \
                       ELSE COALESCE(cluster_days.pg_version, excluded.pg_version) END, \
                     latest_ts = CASE WHEN {newer} THEN excluded.latest_ts \
                       ELSE cluster_days.latest_ts END \
                     RETURNING cluster_uuid, day, reports",
                    sats("cluster_days"),
                    day_latest("electric_version"),
                    day_latest("os_family"),
                    day_latest("os_name"),
                    day_latest("arch"),
                    newer = DAY_NEWER,
                ),
            ),
            upsert_days: Multi::new(
                backend,
                &format!(
                    "INSERT INTO days (day, reports, clusters, instances, new_clusters, \
                     duplicates, {cols})"
                ),
                &format!("(?, ?, ?, ?, ?, ?, {params})"),
                &format!(
                    "ON CONFLICT (day) DO UPDATE SET \
                     reports = days.reports + excluded.reports, \
                     clusters = days.clusters + excluded.clusters, \
                     instances = days.instances + excluded.instances, \
                     new_clusters = days.new_clusters + excluded.new_clusters, \
                     duplicates = days.duplicates + excluded.duplicates, {}",
                    sats("days"),
                ),
            ),
            select_days: format!(
                "SELECT day, reports, clusters, instances, new_clusters, duplicates, {cols} \
                 FROM days WHERE day >= $1 AND day <= $2 ORDER BY day"
            ),
        }
    }
}

/// The schema's migrations: plain SQL files under `checkpoint/migrations/`, frozen once
/// published (a test holds each file to its recorded checksum), applied once each, in order,
/// each in its own transaction. Never generated from the counter list: a new counter is a new
/// migration (a test checks every counter has its columns). (version, file, SQL.)
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_reports_and_rollups.sql",
        include_str!("../migrations/0001_reports_and_rollups.sql"),
    ),
    (
        2,
        "0002_readiness_probe.sql",
        include_str!("../migrations/0002_readiness_probe.sql"),
    ),
    (
        3,
        "0003_quarantine.sql",
        include_str!("../migrations/0003_quarantine.sql"),
    ),
    (
        4,
        "0004_instances_claimed_prev_ts.sql",
        include_str!("../migrations/0004_instances_claimed_prev_ts.sql"),
    ),
    (
        5,
        "0005_activity_by_day.sql",
        include_str!("../migrations/0005_activity_by_day.sql"),
    ),
    (
        6,
        "0006_reports_by_day.sql",
        include_str!("../migrations/0006_reports_by_day.sql"),
    ),
];

/// A migration's statements: its SQL without `--` comment lines, split at `;` (no migration
/// has a `;` inside a literal).
fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A migration file's checksum as recorded in `checkpoint_migration_sums`: FNV-1a (64 bits) of
/// its bytes, in hex.
fn checksum(sql: &str) -> String {
    let h = sql.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

impl Store {
    /// Connects to `--db` (see [`db_url`]) and applies the migrations it lacks.
    pub async fn open(db: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("checkpoint-db")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(format!("cannot start the database runtime: {e}")))?;
        let rt = Arc::new(Runtime(Some(rt)));
        let (backend, url) = db_url(db);
        let handle =
            rt.0.as_ref()
                .expect("runtime is set until drop")
                .handle()
                .clone();
        let pool = handle
            .spawn(async move {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(1))
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            if backend == Backend::Sqlite {
                                // WAL: readers never block the writer; FULL: a commit is on
                                // disk before it returns, which is what a 2xx promises.
                                conn.execute("PRAGMA journal_mode = WAL").await?;
                                conn.execute("PRAGMA synchronous = FULL").await?;
                                conn.execute("PRAGMA busy_timeout = 10000").await?;
                                // 32 MiB of page cache (SQLite's default is 2 MiB): the
                                // rollups' pages stay in memory, not re-read from the OS.
                                conn.execute("PRAGMA cache_size = -32768").await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                migrate(&pool, backend).await?;
                Ok::<_, StoreError>(pool)
            })
            .await
            .map_err(|e| StoreError::Other(format!("database task failed: {e}")))??;
        Ok(Store {
            pool,
            backend,
            sql: Arc::new(Sql::new(backend)),
            rt,
            writer_metrics: Arc::default(),
            health: Arc::default(),
        })
    }

    /// What the writer records for `/metrics`.
    pub fn writer_metrics(&self) -> &crate::metrics::Writer {
        &self.writer_metrics
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for tools (the bench loads data sets through it).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs `f` on the store's runtime.
    pub async fn run<F, Fut, T>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Store) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let handle = self
            .rt
            .0
            .as_ref()
            .expect("runtime is set until drop")
            .handle();
        handle
            .spawn(f(self.clone()))
            .await
            .map_err(|e| StoreError::Other(format!("database task failed: {e}")))?
    }

    /// Starts the writer: reports sent to the returned queue are committed in batches. The
    /// task ends once every sender is dropped and the queue is drained, so awaiting the
    /// returned handle after the server stopped means every queued report was committed.
    pub fn start_writer(
        &self,
        capacity: usize,
    ) -> (mpsc::Sender<Submission>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Submission>(capacity.max(1));
        let store = self.clone();
        let handle = self
            .rt
            .0
            .as_ref()
            .expect("runtime is set until drop")
            .handle();
        let task = handle.spawn(async move {
            const BATCH: usize = 512;
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let now = Utc::now().timestamp();
                let reports: Vec<&Accepted> = batch.iter().map(|s| &s.report).collect();
                let began = std::time::Instant::now();
                let outcomes = match store.ingest_batch(&reports, now).await {
                    Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                    Err(e) if batch.len() == 1 => vec![Err(e.to_string())],
                    // One report must not fail its neighbours: each on its own.
                    Err(e) => {
                        tracing::warn!(error = %e, reports = batch.len(), "a batch of reports failed; storing them one by one");
                        let mut outcomes = Vec::with_capacity(batch.len());
                        let mut failed_in_a_row = 0;
                        for r in &reports {
                            if failed_in_a_row >= FALLBACK_GIVE_UP {
                                outcomes.push(Err("the database fails".to_owned()));
                                continue;
                            }
                            match store.ingest_batch(&[r], now).await {
                                Ok(mut o) => {
                                    failed_in_a_row = 0;
                                    outcomes.push(Ok(o.remove(0)));
                                }
                                Err(e) => {
                                    failed_in_a_row += 1;
                                    outcomes.push(Err(e.to_string()));
                                }
                            }
                        }
                        outcomes
                    }
                };
                store.writer_metrics.batch(reports.len(), began.elapsed());
                let failed = outcomes.iter().filter(|o| o.is_err()).count();
                if failed > 0 {
                    tracing::error!(failed, reports = batch.len(), "could not store reports; answering 503");
                }
                store.health.failing.store(failed == batch.len(), Ordering::Relaxed);
                for (s, o) in batch.drain(..).zip(outcomes) {
                    let _ = s.reply.send(o);
                }
            }
            tracing::info!("report writer drained and stopped");
        });
        (tx, task)
    }

    /// Stores reports in one transaction; outcomes in the same order. Public for tools.
    ///
    /// A connection whose transaction failed anywhere (a statement, the commit or the
    /// rollback) is closed, never returned to the pool: after `SQLITE_FULL` SQLite has rolled
    /// back by itself, sqlx's own ROLLBACK then fails and the connection would go on believing
    /// it is inside a transaction, so that later "commits" only release savepoints of a
    /// transaction that is never committed. The pool opens a fresh connection instead.
    pub async fn ingest_batch(
        &self,
        reports: &[&Accepted],
        received_at: i64,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        match self.ingest_on(&mut conn, reports, received_at).await {
            Ok(outcomes) => Ok(outcomes),
            Err(e) => {
                if let Err(close) = conn.close().await {
                    tracing::debug!(error = %close, "closing a failed connection");
                }
                Err(e)
            }
        }
    }

    async fn ingest_on(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        reports: &[&Accepted],
        received_at: i64,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        let sql = &self.sql;
        // Rows are locked in one global order, whichever receiver runs the batch: the tables
        // in the order below, and within each table by key (see `rounds`). Two receivers on
        // one Postgres then wait for each other's rows but never deadlock. Each table takes
        // a few multi-row statements per batch, not one per report: the round trips to the
        // database, not the rows, were most of the cost.
        let mut by_id: Vec<usize> = (0..reports.len()).collect();
        by_id.sort_by(|&a, &b| reports[a].report_id.cmp(&reports[b].report_id));
        // The same report twice in one batch: the first is stored, the second a duplicate.
        by_id.dedup_by(|b, a| reports[*a].report_id == reports[*b].report_id);
        let inserted: std::collections::HashSet<String> =
            run_multi(&mut tx, &sql.insert_reports, &by_id, |q, &i| {
                let r = reports[i];
                q.bind(&r.report_id)
                    .bind(received_at)
                    .bind(&r.day)
                    .bind(&r.cluster_uuid)
                    .bind(&r.instance_id)
                    .bind(r.report_version)
                    .bind(&r.body)
            })
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut outcomes = vec![Outcome::Duplicate; reports.len()];
        for &i in &by_id {
            if inserted.contains(&reports[i].report_id) {
                outcomes[i] = Outcome::Stored;
            }
        }
        let stored: Vec<usize> = (0..reports.len())
            .filter(|&i| outcomes[i] == Outcome::Stored)
            .collect();

        let mut cluster_new = vec![false; reports.len()];
        for round in rounds(reports, &stored, |r| r.cluster_uuid.as_str()) {
            let rows = run_multi(&mut tx, &sql.upsert_clusters, &round, |q, &i| {
                let r = reports[i];
                q.bind(&r.cluster_uuid)
                    .bind(&r.day)
                    .bind(&r.day)
                    .bind(r.timestamp_us)
                    .bind(&r.electric_version)
                    .bind(r.pg_version.clone())
                    .bind(&r.os_family)
                    .bind(&r.os_name)
                    .bind(&r.arch)
            })
            .await?;
            let mut at = std::collections::HashMap::with_capacity(round.len());
            for row in &rows {
                let key: String = row.try_get(0)?;
                let n: i64 = row.try_get(1)?;
                at.insert(key, n);
            }
            for &i in &round {
                cluster_new[i] = returned(&at, &reports[i].cluster_uuid)? == 1;
            }
        }

        let mut missed = vec![false; reports.len()];
        let mut instance_new_today = vec![false; reports.len()];
        for round in rounds(reports, &stored, |r| {
            (r.cluster_uuid.as_str(), r.instance_id.as_str())
        }) {
            let rows = run_multi(&mut tx, &sql.upsert_instances, &round, |q, &i| {
                let r = reports[i];
                q.bind(&r.cluster_uuid)
                    .bind(&r.instance_id)
                    .bind(&r.day)
                    .bind(&r.day)
                    .bind(r.timestamp_us)
                    .bind(r.last_reported_us)
            })
            .await?;
            let mut at = std::collections::HashMap::with_capacity(round.len());
            for row in &rows {
                let key: (String, String) = (row.try_get(0)?, row.try_get(1)?);
                let got: (i64, Option<i64>, Option<String>) =
                    (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
                at.insert(key, got);
            }
            for &i in &round {
                let r = reports[i];
                let (instance_reports, prev_ts, prev_day) =
                    returned(&at, &(r.cluster_uuid.clone(), r.instance_id.clone()))?;
                // A gap in the same process: a restart (a fixed instance id, uptime no longer
                // than the window) is not a lost report.
                missed[i] =
                    instance_reports > 1 && prev_ts != Some(r.last_reported_us) && r.same_process();
                // First report of this instance on this day.
                instance_new_today[i] = match prev_day {
                    None => true,
                    Some(d) => d < r.day,
                };
            }
        }
        let extra = |i: usize| {
            let r = reports[i];
            [
                r.dropped_events,
                r.dropped_reports,
                missed[i] as i64,
                r.recovered as i64,
                r.after_unclean_stop as i64,
                r.clock_skewed as i64,
            ]
        };

        let mut cluster_day_new = vec![false; reports.len()];
        for round in rounds(reports, &stored, |r| {
            (r.cluster_uuid.as_str(), r.day.as_str())
        }) {
            let rows = run_multi(&mut tx, &sql.upsert_cluster_days, &round, |q, &i| {
                let r = reports[i];
                let mut q = q
                    .bind(&r.cluster_uuid)
                    .bind(&r.day)
                    .bind(instance_new_today[i] as i64);
                for v in r.counters.iter().chain(extra(i).iter()) {
                    q = q.bind(*v);
                }
                q.bind(r.timestamp_us)
                    .bind(&r.electric_version)
                    .bind(r.pg_version.clone())
                    .bind(&r.os_family)
                    .bind(&r.os_name)
                    .bind(&r.arch)
            })
            .await?;
            let mut at = std::collections::HashMap::with_capacity(round.len());
            for row in &rows {
                let key: (String, String) = (row.try_get(0)?, row.try_get(1)?);
                let n: i64 = row.try_get(2)?;
                at.insert(key, n);
            }
            for &i in &round {
                let r = reports[i];
                cluster_day_new[i] = returned(&at, &(r.cluster_uuid.clone(), r.day.clone()))? == 1;
            }
        }

        let mut days: BTreeMap<&str, DayAdd> = BTreeMap::new();
        for (i, r) in reports.iter().enumerate() {
            let d = days.entry(r.day.as_str()).or_default();
            if outcomes[i] == Outcome::Duplicate {
                d.duplicates += 1;
                continue;
            }
            d.reports += 1;
            d.clusters += cluster_day_new[i] as i64;
            d.instances += instance_new_today[i] as i64;
            d.new_clusters += cluster_new[i] as i64;
            for (sum, v) in d
                .sums
                .iter_mut()
                .zip(r.counters.iter().chain(extra(i).iter()))
            {
                *sum = sum.saturating_add(*v);
            }
        }
        let days: Vec<(&str, DayAdd)> = days.into_iter().collect();
        run_multi(&mut tx, &sql.upsert_days, &days, |q, (day, d)| {
            let mut q = q
                .bind(*day)
                .bind(d.reports)
                .bind(d.clusters)
                .bind(d.instances)
                .bind(d.new_clusters)
                .bind(d.duplicates);
            for v in d.sums {
                q = q.bind(v);
            }
            q
        })
        .await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Whether writes succeed now: the outcome of the writer's last batch, or of a real
    /// write (a row inserted and deleted again, each its own commit) when the last one is
    /// more than a second old. Probes run at most once a second whoever asks.
    pub async fn ready(&self) -> bool {
        let mut probed = self.health.probed.lock().await;
        if probed.is_none_or(|at| at.elapsed() >= PROBE_EVERY) {
            let ok = self.run(|s| async move { s.probe().await }).await;
            if let Err(e) = &ok {
                tracing::warn!(error = %e, "the readiness probe could not write");
            }
            self.health.failing.store(ok.is_err(), Ordering::Relaxed);
            *probed = Some(Instant::now());
        }
        !self.health.failing.load(Ordering::Relaxed)
    }

    async fn probe(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let id = i64::from(fastrand::u32(..));
        let result = async {
            sqlx::query("INSERT INTO checkpoint_probe (id, at, pad) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(Utc::now().timestamp())
                .bind("p".repeat(16 * 1024))
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM checkpoint_probe")
                .execute(&mut *conn)
                .await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if result.is_err() {
            let _ = conn.close().await;
        }
        result
    }

    /// Deletes raw reports received before `before` (unix seconds), in chunks so that a large
    /// deletion never holds the write lock for long. Rollups are kept. Returns how many.
    pub async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        self.run(move |s| async move {
            let mut total = 0;
            loop {
                let done = sqlx::query(
                    "DELETE FROM reports WHERE report_id IN \
                     (SELECT report_id FROM reports WHERE received_at < $1 LIMIT 5000)",
                )
                .bind(before)
                .execute(&s.pool)
                .await?
                .rows_affected();
                total += done;
                if done == 0 {
                    return Ok(total);
                }
            }
        })
        .await
    }

    /// How many raw reports are stored.
    pub async fn raw_count(&self) -> Result<u64, StoreError> {
        self.run(|s| async move {
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM reports")
                .fetch_one(&s.pool)
                .await?
                .try_get(0)?;
            Ok(n as u64)
        })
        .await
    }

    /// The raw body stored for `report_id`, if any.
    pub async fn raw_body(&self, report_id: &str) -> Result<Option<String>, StoreError> {
        let id = report_id.to_ascii_lowercase();
        self.run(move |s| async move {
            let row = sqlx::query("SELECT body FROM reports WHERE report_id = $1")
                .bind(id)
                .fetch_optional(&s.pool)
                .await?;
            Ok(match row {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            })
        })
        .await
    }

    /// The answers for the `days` days ending with `until` (inclusive, UTC).
    /// With the headline figures of the window of the same length just before (`previous`).
    pub async fn overview(&self, days: u32, until: NaiveDate) -> Result<Overview, StoreError> {
        let days = days.max(1);
        self.run(move |s| async move {
            let before = until - chrono::Days::new(u64::from(days));
            // Both windows at once, on two connections: the wall time of one, not of two.
            let (o, p) = tokio::join!(s.overview_now(days, until), s.overview_now(days, before));
            let mut o = o?;
            o.previous = Some(Box::new(crate::overview::Previous::of(&p?)));
            Ok(o)
        })
        .await
    }

    /// The answers per calendar period (see [`crate::activity`]).
    pub async fn activity(
        &self,
        period: crate::activity::Period,
        periods: u32,
        until: NaiveDate,
    ) -> Result<crate::activity::Activity, StoreError> {
        let periods = periods.clamp(1, crate::activity::MAX_PERIODS);
        self.run(move |s| async move { crate::activity::compute(&s, period, periods, until).await })
            .await
    }

    /// Retention cohorts (see [`crate::activity::Cohort`]).
    pub async fn retention(
        &self,
        period: crate::activity::Period,
        cohorts: u32,
        until: NaiveDate,
    ) -> Result<crate::activity::Retention, StoreError> {
        let cohorts = cohorts.clamp(1, crate::activity::MAX_PERIODS);
        self.run(
            move |s| async move { crate::activity::retention(&s, period, cohorts, until).await },
        )
        .await
    }

    pub(crate) async fn overview_now(
        &self,
        days: u32,
        until: NaiveDate,
    ) -> Result<Overview, StoreError> {
        let from = until - chrono::Days::new(u64::from(days) - 1);
        let (from_s, until_s) = (day_text(from), day_text(until));
        let pool = &self.pool;
        // An instance is active in the window when its first reported day is not after the
        // window and its last not before it (instance ids are not kept per day).
        let active = "last_day >= $1 AND first_day <= $2";
        // A cluster is active when at least one of its reports counts on a day of the window:
        // it has a cluster-day row there. One row per active cluster: its latest day in the
        // window, whose attributes are its latest report's there (versions as of the window;
        // a row from before migration 5 has none and shows the cluster's latest instead).
        let as_of =
            |col: &str| format!("CASE WHEN d.latest_ts IS NULL THEN c.{col} ELSE d.{col} END");
        // Grouped in the database: one row per combination of attributes, not per cluster. A
        // cluster whose last day is in the window has it as its latest day there: one lookup,
        // the search for the latest day only for windows in the past.
        let rows = sqlx::query(&format!(
            "SELECT is_new, ev, pg, osf, osn, arch, COUNT(*) FROM (SELECT \
             CASE WHEN c.first_day >= $1 THEN 1 ELSE 0 END AS is_new, {} AS ev, {} AS pg, \
             {} AS osf, {} AS osn, {} AS arch FROM clusters c \
             JOIN cluster_days d ON d.cluster_uuid = c.cluster_uuid \
             WHERE c.last_day >= $1 AND c.first_day <= $2 \
             AND d.day = CASE WHEN c.last_day <= $2 THEN c.last_day \
               ELSE (SELECT MAX(x.day) FROM cluster_days x \
               WHERE x.cluster_uuid = c.cluster_uuid AND x.day >= $1 AND x.day <= $2) END) active \
             GROUP BY is_new, ev, pg, osf, osn, arch",
            as_of("electric_version"),
            as_of("pg_version"),
            as_of("os_family"),
            as_of("os_name"),
            as_of("arch"),
        ))
        .bind(&from_s)
        .bind(&until_s)
        .fetch_all(pool)
        .await?;
        let mut applications = 0u64;
        let mut new_applications = 0u64;
        let mut tallies: [BTreeMap<String, u64>; 4] = Default::default();
        for r in &rows {
            let is_new: i64 = r.try_get(0)?;
            let n: i64 = r.try_get(6)?;
            let n = n.max(0) as u64;
            let text = |i: usize| -> Result<String, StoreError> {
                let v: Option<String> = r.try_get(i)?;
                Ok(v.unwrap_or_else(|| "(unknown)".to_owned()))
            };
            applications += n;
            if is_new == 1 {
                new_applications += n;
            }
            let values = [
                text(1)?,
                text(2)?,
                format!("{}/{}", text(3)?, text(4)?),
                text(5)?,
            ];
            for (tally, value) in tallies.iter_mut().zip(values) {
                *tally.entry(value).or_default() += n;
            }
        }
        let shares = |tally: BTreeMap<String, u64>| {
            let mut shares: Vec<Share> = tally
                .into_iter()
                .map(|(value, applications)| Share {
                    value,
                    applications,
                })
                .collect();
            // Ordered here, not by the database's collation, so both databases agree.
            shares.sort_by(|a, b| {
                b.applications
                    .cmp(&a.applications)
                    .then_with(|| a.value.cmp(&b.value))
            });
            shares
        };
        let [ev, pg, os, arch] = tallies;
        let (by_electric_version, by_pg_version, by_os, by_arch) =
            (shares(ev), shares(pg), shares(os), shares(arch));
        // New per day: clusters whose first active day it is, so the days add up to the window.
        let rows = sqlx::query(
            "SELECT first_day, COUNT(*) FROM clusters WHERE first_day >= $1 AND first_day <= $2 \
             GROUP BY first_day",
        )
        .bind(&from_s)
        .bind(&until_s)
        .fetch_all(pool)
        .await?;
        let mut new_by_day: BTreeMap<String, u64> = BTreeMap::new();
        for r in &rows {
            let n: i64 = r.try_get(1)?;
            new_by_day.insert(r.try_get(0)?, n as u64);
        }
        let rows = sqlx::query(&format!(
            "SELECT n, COUNT(*) FROM (SELECT cluster_uuid, COUNT(*) AS n FROM instances \
             WHERE {active} GROUP BY cluster_uuid) per_cluster GROUP BY n ORDER BY n"
        ))
        .bind(&from_s)
        .bind(&until_s)
        .fetch_all(pool)
        .await?;
        let mut instances = 0u64;
        let mut instances_per_application = Vec::new();
        for r in &rows {
            let n: i64 = r.try_get(0)?;
            let c: i64 = r.try_get(1)?;
            instances += (n as u64) * (c as u64);
            instances_per_application.push(Bucket {
                instances: n as u64,
                applications: c as u64,
            });
        }
        let rows = sqlx::query(&self.sql.select_days)
            .bind(&from_s)
            .bind(&until_s)
            .fetch_all(pool)
            .await?;
        let mut stored: BTreeMap<String, Day> = BTreeMap::new();
        for r in &rows {
            let d = day_row(r)?;
            stored.insert(d.day.clone(), d);
        }
        let mut per_day = Vec::with_capacity(days as usize);
        let mut totals = Day::empty(String::new()).totals;
        let mut completeness = Completeness::default();
        let today = day_text(Utc::now().date_naive());
        let mut peak_instances = 0u64;
        for i in 0..u64::from(days) {
            let day = day_text(from + chrono::Days::new(i));
            let mut d = stored.remove(&day).unwrap_or_else(|| Day::empty(day));
            d.new_applications = new_by_day.get(&d.day).copied().unwrap_or(0);
            d.partial = d.day >= today;
            peak_instances = peak_instances.max(d.instances);
            for (k, v) in &d.totals {
                let t = totals.entry(k.clone()).or_insert(0);
                *t = t.saturating_add(*v);
            }
            completeness.add(&d.completeness);
            per_day.push(d);
        }
        Ok(Overview {
            days,
            from: from_s,
            until: until_s,
            applications,
            instances,
            peak_instances,
            new_applications,
            returning_applications: applications.saturating_sub(new_applications),
            instances_per_application,
            by_electric_version,
            by_pg_version,
            by_os,
            by_arch,
            totals,
            completeness,
            per_day,
            notes: crate::overview::notes(),
            previous: None,
        })
    }
}

/// What a multi-row upsert returned for `key`; a row it did not return is an error, never a
/// guess.
fn returned<K, V>(at: &std::collections::HashMap<K, V>, key: &K) -> Result<V, StoreError>
where
    K: std::hash::Hash + Eq,
    V: Clone,
{
    at.get(key)
        .cloned()
        .ok_or_else(|| StoreError::Other("an upsert did not return one of its rows".to_owned()))
}

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn day_row(r: &AnyRow) -> Result<Day, StoreError> {
    let get = |i: usize| -> Result<u64, StoreError> { Ok(r.try_get::<i64, _>(i)?.max(0) as u64) };
    let mut d = Day::empty(r.try_get(0)?);
    d.reports = get(1)?;
    d.applications = get(2)?;
    d.instances = get(3)?;
    d.new_applications = get(4)?;
    d.completeness.duplicates_refused = get(5)?;
    for (i, name) in COUNTERS.iter().enumerate() {
        d.totals.insert((*name).to_owned(), get(6 + i)?);
    }
    let at = 6 + COUNTERS.len();
    d.completeness.reports = d.reports;
    d.completeness.dropped_events = get(at)?;
    d.completeness.dropped_reports = get(at + 1)?;
    d.completeness.missed_windows = get(at + 2)?;
    d.completeness.recovered = get(at + 3)?;
    d.completeness.after_unclean_stop = get(at + 4)?;
    d.completeness.clock_skewed = get(at + 5)?;
    Ok(d)
}

async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    if backend == Backend::Postgres {
        // Receivers starting together on one database apply the migrations once.
        conn.execute("SELECT pg_advisory_lock(4318011)").await?;
    }
    let result = async {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS checkpoint_migrations \
             (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        // Beside the history rather than in it, so that databases from before checksums
        // keep their history table as it was; their sums are recorded at the next start.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS checkpoint_migration_sums \
             (version BIGINT PRIMARY KEY, checksum TEXT NOT NULL)",
        )
        .await?;
        let current: Option<i64> = sqlx::query("SELECT MAX(version) FROM checkpoint_migrations")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        let current = current.unwrap_or(0);
        let known = MIGRATIONS.last().map_or(0, |(v, _, _)| *v);
        if current > known {
            return Err(StoreError::Other(format!(
                "the database was migrated by a newer receiver (schema version {current}; this \
                 one knows up to {known}): run that release or a newer one"
            )));
        }
        let recorded: BTreeMap<i64, String> =
            sqlx::query("SELECT version, checksum FROM checkpoint_migration_sums")
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, _>>()?;
        for (version, file, sql) in MIGRATIONS {
            let sum = checksum(sql);
            if *version <= current {
                match recorded.get(version) {
                    Some(theirs) if *theirs != sum => {
                        return Err(StoreError::Other(format!(
                            "migration {file} is not the one this database applied (checksum \
                             {sum}, recorded {theirs}): migrations are frozen once published"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        sqlx::query(
                            "INSERT INTO checkpoint_migration_sums (version, checksum) \
                             VALUES ($1, $2)",
                        )
                        .bind(version)
                        .bind(&sum)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for statement in statements(sql) {
                tx.execute(statement.as_str()).await?;
            }
            sqlx::query("INSERT INTO checkpoint_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(Utc::now().timestamp())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO checkpoint_migration_sums (version, checksum) VALUES ($1, $2)",
            )
            .bind(version)
            .bind(&sum)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(version, file, "applied a database migration");
        }
        Ok::<_, StoreError>(())
    }
    .await;
    if backend == Backend::Postgres {
        conn.execute("SELECT pg_advisory_unlock(4318011)").await?;
    }
    result
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    /// Each published migration as it was published: (file, length, checksum). A change to a
    /// published file fails here (and a database that applied it refuses to start): add a
    /// new file instead.
    const PUBLISHED: &[(&str, usize, &str)] = &[
        ("0001_reports_and_rollups.sql", 3420, "a79296f61ba0110e"),
        ("0002_readiness_probe.sql", 189, "68e38513fc98113a"),
        ("0003_quarantine.sql", 653, "3146d1a9c0983828"),
        (
            "0004_instances_claimed_prev_ts.sql",
            216,
            "29d29a7fa1a54487",
        ),
        ("0005_activity_by_day.sql", 866, "6f09e4a6001f99ed"),
        ("0006_reports_by_day.sql", 147, "287d56c845978af3"),
    ];

    #[test]
    fn a_published_migration_never_changes() {
        let ours: Vec<(&str, usize, String)> = MIGRATIONS
            .iter()
            .map(|(_, file, sql)| (*file, sql.len(), checksum(sql)))
            .collect();
        for (i, (file, len, sum)) in PUBLISHED.iter().enumerate() {
            assert_eq!(
                (ours[i].0, ours[i].1, ours[i].2.as_str()),
                (*file, *len, *sum),
                "{file} changed after it was published"
            );
        }
        assert_eq!(ours.len(), PUBLISHED.len(), "{ours:?}");
        for (i, (version, file, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1, "{file}: versions are 1, 2, 3, …");
            assert!(file.starts_with(&format!("{version:04}_")), "{file}");
            assert!(!statements(sql).is_empty(), "{file}");
        }
    }
}
