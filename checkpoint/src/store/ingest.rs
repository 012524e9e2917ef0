//! One batch's transaction: the raw rows and every rollup, in the global lock order, with a
//! few multi-row statements per table (see `sql`).

use std::collections::BTreeMap;

use sqlx::Row;

use super::sql::{rounds, run_multi, DayAdd};
use super::{Outcome, Store, StoreError};
use crate::validate::Accepted;

impl Store {
    pub(super) async fn ingest_on(
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
        let mut instance_gap = vec![false; reports.len()];
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
                instance_new_today[i] = match &prev_day {
                    None => true,
                    Some(d) => *d < r.day,
                };
                // The instance's span now covers days it did not report on (see
                // `store::cache`): after a day or more of silence, or out of order.
                instance_gap[i] = prev_day.is_some_and(|d| !follows(&d, &r.day));
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
            d.instance_gaps += instance_gap[i] as i64;
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
                .bind(d.duplicates)
                .bind(d.instance_gaps);
            for v in d.sums {
                q = q.bind(v);
            }
            q
        })
        .await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Whether a report counted on `day` leaves no day without a report between the instance's
/// previous last day `prev` and it: the same day or the next.
fn follows(prev: &str, day: &str) -> bool {
    let parse = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
    match (parse(prev), parse(day)) {
        (Some(p), Some(d)) => d == p || p.succ_opt() == Some(d),
        _ => false,
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
