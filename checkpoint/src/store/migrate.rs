//! The schema's migrations: frozen SQL files, applied once each and checksummed at every
//! start.

use std::collections::BTreeMap;

use chrono::Utc;
use sqlx::{AnyPool, Executor, Row};

use super::{Backend, StoreError};

/// The schema's migrations: plain SQL files under `checkpoint/migrations/`, frozen once
/// published (a test holds each file to its recorded checksum), applied once each, in order,
/// each in its own transaction. Never generated from the counter list: a new counter is a new
/// migration (a test checks every counter has its columns). (version, file, SQL.)
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_reports_and_rollups.sql",
        include_str!("../../migrations/0001_reports_and_rollups.sql"),
    ),
    (
        2,
        "0002_readiness_probe.sql",
        include_str!("../../migrations/0002_readiness_probe.sql"),
    ),
    (
        3,
        "0003_quarantine.sql",
        include_str!("../../migrations/0003_quarantine.sql"),
    ),
    (
        4,
        "0004_instances_claimed_prev_ts.sql",
        include_str!("../../migrations/0004_instances_claimed_prev_ts.sql"),
    ),
    (
        5,
        "0005_activity_by_day.sql",
        include_str!("../../migrations/0005_activity_by_day.sql"),
    ),
    (
        6,
        "0006_reports_by_day.sql",
        include_str!("../../migrations/0006_reports_by_day.sql"),
    ),
    (
        7,
        "0007_instance_gaps.sql",
        include_str!("../../migrations/0007_instance_gaps.sql"),
    ),
];

/// A migration's statements: its SQL without `--` comment lines, split at `;` (no migration
/// has a `;` inside a literal).
pub(super) fn statements(sql: &str) -> Vec<String> {
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
pub(super) fn checksum(sql: &str) -> String {
    let h = sql.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

pub(super) async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
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
        ("0007_instance_gaps.sql", 644, "9815d05274b1b8b4"),
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
