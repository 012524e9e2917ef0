//! The quarantine: reports that were JSON objects under the body limit but refused (an
//! unknown `report_version`, a schema violation, an implausible figure or clock, a string
//! Postgres cannot store) are kept here with their reason, never counted in the answers.
//!
//! Bounded: the table holds at most `--quarantine-max` bytes of reports (100 MB by default);
//! past it the oldest are deleted and counted as dropped. A report is kept once per
//! `report_id`, however often it is sent. `checkpoint quarantine list` shows counts by reason
//! and samples; `checkpoint quarantine replay` re-checks every kept report under the rules of
//! the day and ingests those that now pass, exactly once (ingest refuses a `report_id` already
//! stored, so a replay cut short and run again stores nothing twice).
//!
//! Nothing about the sender is kept: the report as canonical compact JSON, when it arrived,
//! and why it was refused.

use serde::Serialize;
use sqlx::Row;

use crate::store::{Outcome, Store, StoreError};
use crate::validate::{Refused, Validator};

/// The quarantine's default bound, in bytes: 100 MB.
pub const DEFAULT_MAX_BYTES: u64 = 100_000_000;

/// How many kept reports the quarantine holds and their bytes, and how many were dropped to
/// keep it under its bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub reports: u64,
    pub bytes: u64,
    pub dropped: u64,
}

/// What keeping a refused report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Kept now; the quarantine's totals after it.
    Now(Totals),
    /// A report with this `report_id` is kept already.
    Already,
    /// Not a report (not a JSON object): nothing to keep.
    Nothing,
}

/// What each kept row costs against the bound beside its body and detail: its ids, time,
/// reason and index entries, so that a flood of tiny refused bodies cannot hold far more rows
/// than the bound suggests.
pub const ROW_CHARGE: u64 = 256;

/// Keeps `refused` (received at `received_us`) under a bound of `max_bytes`, in one
/// transaction: the totals row (locked first, always, so that receivers and a replay sharing
/// one Postgres never deadlock), the new row, and the oldest other rows dropped to bring the
/// quarantine back under the bound. The new row itself is never dropped: the quarantine may
/// exceed the bound by at most one report.
pub async fn keep(
    store: &Store,
    refused: &Refused,
    received_us: i64,
    max_bytes: u64,
) -> Result<Kept, StoreError> {
    let Some(body) = refused.body.clone() else {
        return Ok(Kept::Nothing);
    };
    let reason = refused.error.reason().to_owned();
    let detail = crate::validate::printable(&refused.error.to_string());
    let report_id = refused.report_id.clone();
    store
        .run(move |s| async move {
            let mut conn = s.pool().acquire().await?;
            let row = NewRow {
                body: &body,
                reason: &reason,
                detail: &detail,
                report_id,
                received_us,
            };
            let result = keep_on(&mut conn, row, max_bytes).await;
            if result.is_err() {
                // As for ingest: a connection whose transaction failed is never reused.
                let _ = conn.close().await;
            }
            result
        })
        .await
}

/// One row to keep.
struct NewRow<'a> {
    body: &'a str,
    reason: &'a str,
    detail: &'a str,
    report_id: Option<String>,
    received_us: i64,
}

async fn keep_on(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    row: NewRow<'_>,
    max_bytes: u64,
) -> Result<Kept, StoreError> {
    let bytes = (row.body.len() + row.detail.len()) as u64 + ROW_CHARGE;
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = sqlx::Connection::begin(&mut **conn).await?;
    lock_totals(&mut tx).await?;
    let inserted = sqlx::query(
        "INSERT INTO quarantine (id, received_us, reason, detail, report_id, bytes, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (report_id) DO NOTHING RETURNING id",
    )
    .bind(&id)
    .bind(row.received_us)
    .bind(row.reason)
    .bind(row.detail)
    .bind(row.report_id)
    .bind(bytes as i64)
    .bind(row.body)
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        tx.commit().await?;
        return Ok(Kept::Already);
    }
    let updated = sqlx::query(
        "UPDATE quarantine_totals SET reports = reports + 1, bytes = bytes + $1 WHERE id = 1 \
         RETURNING reports, bytes, dropped",
    )
    .bind(bytes as i64)
    .fetch_one(&mut *tx)
    .await?;
    let mut totals = totals_of(&updated)?;
    // The oldest first, a few at a time, until the quarantine is under its bound again.
    while totals.bytes > max_bytes && totals.reports > 1 {
        let oldest = sqlx::query(
            "SELECT id, bytes FROM quarantine WHERE id <> $1 ORDER BY received_us, id LIMIT 32",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await?;
        if oldest.is_empty() {
            break;
        }
        let mut over = totals.bytes - max_bytes;
        let (mut gone, mut freed) = (0i64, 0u64);
        for r in &oldest {
            if over == 0 {
                break;
            }
            let old: String = r.try_get(0)?;
            let b = r.try_get::<i64, _>(1)?.max(0) as u64;
            sqlx::query("DELETE FROM quarantine WHERE id = $1")
                .bind(old)
                .execute(&mut *tx)
                .await?;
            gone += 1;
            freed += b;
            over = over.saturating_sub(b);
        }
        let updated = sqlx::query(
            "UPDATE quarantine_totals SET reports = reports - $1, bytes = bytes - $2, \
             dropped = dropped + $1 WHERE id = 1 RETURNING reports, bytes, dropped",
        )
        .bind(gone)
        .bind(freed as i64)
        .fetch_one(&mut *tx)
        .await?;
        totals = totals_of(&updated)?;
    }
    tx.commit().await?;
    Ok(Kept::Now(totals))
}

/// Takes the totals row's lock for the rest of the transaction (SQLite: the write lock). Every
/// writer of the quarantine takes it first, so they queue in one order and never deadlock.
async fn lock_totals(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
    sqlx::query("UPDATE quarantine_totals SET dropped = dropped WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn totals_of(row: &sqlx::any::AnyRow) -> Result<Totals, StoreError> {
    let get = |i: usize| -> Result<u64, StoreError> { Ok(row.try_get::<i64, _>(i)?.max(0) as u64) };
    Ok(Totals {
        reports: get(0)?,
        bytes: get(1)?,
        dropped: get(2)?,
    })
}

/// The quarantine's totals now.
pub async fn totals(store: &Store) -> Result<Totals, StoreError> {
    store
        .run(|s| async move {
            let row =
                sqlx::query("SELECT reports, bytes, dropped FROM quarantine_totals WHERE id = 1")
                    .fetch_one(s.pool())
                    .await?;
            totals_of(&row)
        })
        .await
}

/// One reason's share of the quarantine, with a few samples (the newest).
#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    pub reason: String,
    pub reports: u64,
    pub bytes: u64,
    pub samples: Vec<Sample>,
}

/// One kept report, shortened.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When it arrived, RFC 3339 UTC.
    pub received: String,
    pub report_id: Option<String>,
    pub detail: String,
    /// Its first 300 characters.
    pub body: String,
}

/// Counts by reason (most reports first) and up to `samples` of each, the newest.
pub async fn list(store: &Store, samples: u32) -> Result<Vec<ReasonCount>, StoreError> {
    store
        .run(move |s| async move {
            let rows = sqlx::query(
                "SELECT reason, COUNT(*), CAST(SUM(bytes) AS BIGINT) FROM quarantine GROUP BY reason \
                 ORDER BY COUNT(*) DESC, reason",
            )
            .fetch_all(s.pool())
            .await?;
            let mut out = Vec::new();
            for r in rows {
                let reason: String = r.try_get(0)?;
                let reports: i64 = r.try_get(1)?;
                let bytes: i64 = r.try_get::<Option<i64>, _>(2)?.unwrap_or(0);
                let picked = sqlx::query(
                    "SELECT received_us, report_id, detail, body FROM quarantine \
                     WHERE reason = $1 ORDER BY received_us DESC, id LIMIT $2",
                )
                .bind(&reason)
                .bind(i64::from(samples))
                .fetch_all(s.pool())
                .await?;
                let mut kept = Vec::new();
                for p in picked {
                    let us: i64 = p.try_get(0)?;
                    let body: String = p.try_get(3)?;
                    kept.push(Sample {
                        received: chrono::DateTime::from_timestamp_micros(us)
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                            .unwrap_or_default(),
                        report_id: p.try_get(1)?,
                        detail: p.try_get(2)?,
                        body: body.chars().take(300).collect(),
                    });
                }
                out.push(ReasonCount {
                    reason,
                    reports: reports.max(0) as u64,
                    bytes: bytes.max(0) as u64,
                    samples: kept,
                });
            }
            Ok(out)
        })
        .await
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Reports that now pass and were stored.
    pub stored: u64,
    /// Reports that now pass but were stored already (by an earlier, interrupted replay, or
    /// sent again and accepted): removed from the quarantine, not stored twice.
    pub already_stored: u64,
    /// Reports still refused, by their reason now.
    pub still_refused: std::collections::BTreeMap<String, u64>,
}

/// Re-checks every report kept before it began with `validator` (today's rules, today's
/// clock) and ingests those that pass, oldest first, as received now; each is removed from
/// the quarantine once stored.
pub async fn replay(store: &Store, validator: &Validator) -> Result<Replayed, StoreError> {
    let mut done = Replayed::default();
    // Only what was kept before the replay began: under steady traffic it still ends.
    let began = chrono::Utc::now().timestamp_micros();
    let mut after: (i64, String) = (i64::MIN, String::new());
    loop {
        let (us, id) = after.clone();
        let page = store
            .run(move |s| async move {
                let rows = sqlx::query(
                    "SELECT id, received_us, reason, body, bytes FROM quarantine \
                     WHERE (received_us > $1 OR (received_us = $1 AND id > $2)) \
                     AND received_us <= $3 ORDER BY received_us, id LIMIT 500",
                )
                .bind(us)
                .bind(id)
                .bind(began)
                .fetch_all(s.pool())
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<String, _>(0)?,
                            r.try_get::<i64, _>(1)?,
                            r.try_get::<String, _>(2)?,
                            r.try_get::<String, _>(3)?,
                            r.try_get::<i64, _>(4)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        let Some(last) = page.last() else {
            return Ok(done);
        };
        after = (last.1, last.0.clone());
        for (id, _received_us, reason, body, bytes) in page {
            match validator.check(body.as_bytes()) {
                Ok(report) => {
                    let outcome = store
                        .run(move |s| async move {
                            // Received now, so that the raw row (the guard against storing it
                            // twice) outlives any replay cut short before its `forget`.
                            s.ingest_batch(&[&report], chrono::Utc::now().timestamp())
                                .await
                        })
                        .await?;
                    match outcome.first() {
                        Some(Outcome::Stored) => done.stored += 1,
                        _ => done.already_stored += 1,
                    }
                    forget(store, id, bytes).await?;
                }
                Err(e) => {
                    let now = e.error.reason();
                    if now != reason {
                        let detail = crate::validate::printable(&e.error.to_string());
                        store
                            .run(move |s| async move {
                                sqlx::query(
                                    "UPDATE quarantine SET reason = $1, detail = $2 WHERE id = $3",
                                )
                                .bind(now)
                                .bind(detail)
                                .bind(id)
                                .execute(s.pool())
                                .await?;
                                Ok(())
                            })
                            .await?;
                    }
                    *done.still_refused.entry(now.to_owned()).or_default() += 1;
                }
            }
        }
    }
}

/// Removes one replayed report and its bytes from the totals.
async fn forget(store: &Store, id: String, bytes: i64) -> Result<(), StoreError> {
    store
        .run(move |s| async move {
            let mut tx = s.pool().begin().await?;
            lock_totals(&mut tx).await?;
            let gone = sqlx::query("DELETE FROM quarantine WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if gone > 0 {
                sqlx::query(
                    "UPDATE quarantine_totals SET reports = reports - 1, bytes = bytes - $1 \
                     WHERE id = 1",
                )
                .bind(bytes)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
}
