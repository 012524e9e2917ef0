//! The ingest statements, built once from the counter list: multi-row statements cut into
//! chunks ([`CHUNKS`]), applied to a batch in rounds ([`rounds`]) so that each report's effect
//! is what it would be alone.

use super::{Backend, StoreError, EXTRA, MAX};
use crate::validate::{Accepted, COUNTERS};
use sqlx::any::AnyRow;

/// The queries, built once from [`COUNTERS`].
pub(super) struct Sql {
    pub(super) insert_reports: Multi,
    pub(super) upsert_clusters: Multi,
    pub(super) upsert_instances: Multi,
    pub(super) upsert_cluster_days: Multi,
    pub(super) upsert_days: Multi,
    pub(super) select_days: String,
}

/// Rows per multi-row statement: a batch's rows for one table are cut into statements of
/// these sizes, largest first (27 rows: 16 + 8 + 2 + 1), so that a connection prepares at most
/// seven shapes of each statement (sqlx caches 100 prepared statements per connection). Each
/// statement is a round trip to the database: a handful per table and batch, not one per
/// report. 64 rows of the widest statement (`days`, 22 values) bind 1 408 parameters, far
/// below both databases' limits.
pub(super) const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// One statement per size in [`CHUNKS`]: `head VALUES (row), (row), … tail`.
pub(super) struct Multi([String; CHUNKS.len()]);

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
pub(super) fn chunked(n: usize) -> Vec<(usize, std::ops::Range<usize>)> {
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

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Runs `multi` over `items` chunk by chunk, in order, `bind` binding one item's row; the
/// rows every chunk returned.
pub(super) async fn run_multi<'q, T>(
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
pub(super) fn rounds<'a, K: Ord>(
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
pub(super) struct DayAdd {
    pub(super) reports: i64,
    pub(super) clusters: i64,
    pub(super) instances: i64,
    pub(super) new_clusters: i64,
    pub(super) duplicates: i64,
    pub(super) instance_gaps: i64,
    pub(super) sums: [i64; COUNTERS.len() + EXTRA.len()],
}

pub(super) fn sat(table: &str, col: &str) -> String {
    format!(
        "{col} = CASE WHEN {table}.{col} > {MAX} - excluded.{col} THEN {MAX} \
         ELSE {table}.{col} + excluded.{col} END"
    )
}

/// The report being written is the cluster-day's latest so far.
pub(super) const DAY_NEWER: &str =
    "(cluster_days.latest_ts IS NULL OR excluded.latest_ts >= cluster_days.latest_ts)";

pub(super) fn day_latest(col: &str) -> String {
    format!("{col} = CASE WHEN {DAY_NEWER} THEN excluded.{col} ELSE cluster_days.{col} END")
}

pub(super) fn latest(col: &str) -> String {
    format!(
        "{col} = CASE WHEN excluded.latest_ts >= clusters.latest_ts THEN excluded.{col} \
         ELSE clusters.{col} END"
    )
}

impl Sql {
    /// `select_days`'s columns summed from the `cluster_days` rows (alias `d`) that `member`
    /// (a condition starting with ` AND`) keeps, one row per day.
    pub(super) fn select_cluster_days(&self, member: &str) -> String {
        let sums = COUNTERS
            .iter()
            .chain(EXTRA.iter())
            .map(|c| format!("CAST(SUM(d.{c}) AS BIGINT)"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT d.day, CAST(SUM(d.reports) AS BIGINT), CAST(COUNT(*) AS BIGINT), \
             CAST(SUM(d.instances) AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT), {sums} \
             FROM cluster_days d WHERE d.day >= $1 AND d.day <= $2{member} \
             GROUP BY d.day ORDER BY d.day"
        )
    }

    pub(super) fn new(backend: Backend) -> Self {
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
                     duplicates, instance_gaps, {cols})"
                ),
                &format!("(?, ?, ?, ?, ?, ?, ?, {params})"),
                &format!(
                    "ON CONFLICT (day) DO UPDATE SET \
                     reports = days.reports + excluded.reports, \
                     clusters = days.clusters + excluded.clusters, \
                     instances = days.instances + excluded.instances, \
                     new_clusters = days.new_clusters + excluded.new_clusters, \
                     duplicates = days.duplicates + excluded.duplicates, \
                     instance_gaps = days.instance_gaps + excluded.instance_gaps, {}",
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
