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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::{mpsc, oneshot};

use crate::overview::Overview;

mod answers;
pub use answers::Filter;
mod cache;
pub(crate) use cache::{History, Kept};
mod ingest;
mod migrate;
mod sql;

use crate::validate::Accepted;
use migrate::migrate;
use sql::Sql;

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
    /// Answers for finished periods (see `cache`).
    answers: Arc<cache::Answers>,
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
            answers: Arc::default(),
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

    /// The answers for the `days` days ending with `until` (inclusive, UTC), counting every
    /// cluster. With the headline figures of the window of the same length just before
    /// (`previous`).
    pub async fn overview(&self, days: u32, until: NaiveDate) -> Result<Overview, StoreError> {
        self.overview_for(days, until, Filter::default()).await
    }

    /// [`Store::overview`] counting only the clusters `filter` keeps.
    pub async fn overview_for(
        &self,
        days: u32,
        until: NaiveDate,
        filter: Filter,
    ) -> Result<Overview, StoreError> {
        let days = days.max(1);
        self.run(move |s| async move {
            let history = s.history().await?;
            let before = until - chrono::Days::new(u64::from(days));
            // Both windows at once, on two connections: the wall time of one, not of two.
            let (o, p) = tokio::join!(
                s.overview_kept(&history, days, until, filter),
                s.overview_kept(&history, days, before, filter)
            );
            let mut o = Overview::clone(&*o?);
            o.previous = Some(Box::new(crate::overview::Previous::of(&*p?)));
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
        filter: Filter,
    ) -> Result<crate::activity::Activity, StoreError> {
        let periods = periods.clamp(1, crate::activity::MAX_PERIODS);
        self.run(move |s| async move {
            crate::activity::compute(&s, period, periods, until, filter).await
        })
        .await
    }

    /// Retention cohorts (see [`crate::activity::Cohort`]).
    pub async fn retention(
        &self,
        period: crate::activity::Period,
        cohorts: u32,
        until: NaiveDate,
        filter: Filter,
    ) -> Result<crate::activity::Retention, StoreError> {
        let cohorts = cohorts.clamp(1, crate::activity::MAX_PERIODS);
        self.run(move |s| async move {
            crate::activity::retention(&s, period, cohorts, until, filter).await
        })
        .await
    }
}

impl Store {
    /// The overview of `days` days up to `until` without `previous`, kept when finished.
    pub(crate) async fn overview_kept(
        &self,
        history: &History,
        days: u32,
        until: NaiveDate,
        filter: Filter,
    ) -> Result<Arc<Overview>, StoreError> {
        let key = ("overview", days.to_string(), until, filter);
        let kept = self
            .kept(history, key, || async {
                Ok(Kept::Overview(Arc::new(
                    self.overview_now(days, until, filter).await?,
                )))
            })
            .await?;
        match kept {
            Kept::Overview(o) => Ok(o),
            _ => Err(StoreError::Other(
                "an overview was kept as another answer".to_owned(),
            )),
        }
    }
}

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}
