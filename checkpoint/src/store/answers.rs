//! The overview's queries: what `GET /api/overview` (and each period of `/api/activity`) reads
//! from the rollups.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{day_text, Store, StoreError};
use crate::overview::{Bucket, Completeness, Day, Overview, Share};
use crate::validate::COUNTERS;

/// Which clusters an answer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Count only clusters active on at least this many distinct days over everything stored
    /// (1, the default, counts every cluster; 2 or more leaves out one-shot and CI clusters).
    pub min_active_days: u32,
}

impl Default for Filter {
    fn default() -> Self {
        Filter { min_active_days: 1 }
    }
}

impl Filter {
    /// A condition (starting with ` AND`) on the cluster `alias.cluster_uuid`: it has at least
    /// `min_active_days` cluster-day rows. An index walk of at most that many entries per
    /// cluster (`LIMIT 1 OFFSET n-1`), never a count of all its days. Empty for 1.
    pub(crate) fn clusters(&self, alias: &str) -> String {
        if self.min_active_days <= 1 {
            return String::new();
        }
        format!(
            " AND (SELECT x.day FROM cluster_days x WHERE x.cluster_uuid = {alias}.cluster_uuid \
             ORDER BY x.day LIMIT 1 OFFSET {}) IS NOT NULL",
            self.min_active_days - 1
        )
    }

    /// A condition (starting with ` AND`) on `alias.cluster_uuid` for tables other than
    /// `clusters`: the cluster is one of those counted, among the clusters active from `$1` to
    /// `$2`. Empty for 1.
    pub(crate) fn member(&self, alias: &str) -> String {
        if self.min_active_days <= 1 {
            return String::new();
        }
        format!(
            " AND {alias}.cluster_uuid IN (SELECT c.cluster_uuid FROM clusters c \
             WHERE c.last_day >= $1 AND c.first_day <= $2{})",
            self.clusters("c")
        )
    }
}

impl Store {
    pub(crate) async fn overview_now(
        &self,
        days: u32,
        until: NaiveDate,
        filter: Filter,
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
             WHERE c.last_day >= $1 AND c.first_day <= $2{kept} \
             AND d.day = CASE WHEN c.last_day <= $2 THEN c.last_day \
               ELSE (SELECT MAX(x.day) FROM cluster_days x \
               WHERE x.cluster_uuid = c.cluster_uuid AND x.day >= $1 AND x.day <= $2) END) active \
             GROUP BY is_new, ev, pg, osf, osn, arch",
            as_of("electric_version"),
            as_of("pg_version"),
            as_of("os_family"),
            as_of("os_name"),
            as_of("arch"),
            kept = filter.clusters("c"),
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
        let rows = sqlx::query(&format!(
            "SELECT c.first_day, COUNT(*) FROM clusters c \
             WHERE c.first_day >= $1 AND c.first_day <= $2{} GROUP BY c.first_day",
            filter.clusters("c")
        ))
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
            "SELECT n, COUNT(*) FROM (SELECT i.cluster_uuid, COUNT(*) AS n FROM instances i \
             WHERE {active}{} GROUP BY i.cluster_uuid) per_cluster GROUP BY n ORDER BY n",
            filter.member("i")
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
        if filter.min_active_days > 1 {
            // The days' figures summed over the counted clusters only. Refused duplicates are
            // not kept per cluster: they stay the whole fleet's.
            let duplicates: BTreeMap<String, u64> = std::mem::take(&mut stored)
                .into_iter()
                .map(|(day, d)| (day, d.completeness.duplicates_refused))
                .collect();
            let rows = sqlx::query(&self.sql.select_cluster_days(&filter.member("d")))
                .bind(&from_s)
                .bind(&until_s)
                .fetch_all(pool)
                .await?;
            for r in &rows {
                let d = day_row(r)?;
                stored.insert(d.day.clone(), d);
            }
            for (day, n) in duplicates {
                stored
                    .entry(day.clone())
                    .or_insert_with(|| Day::empty(day))
                    .completeness
                    .duplicates_refused = n;
            }
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
