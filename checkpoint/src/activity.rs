//! `GET /api/activity`: the answers per calendar period, with the fleet's lifecycle.
//!
//! `period=day|week|month|quarter` (ISO weeks from Monday, calendar months and quarters, all
//! UTC), `periods=K` (1–120, default 12), `until=D` (default today): the K periods up to and
//! including the one holding D, oldest first. Each period has the overview's figures for its
//! days (`applications`, `instances`, `peak_instances`, `totals`, `completeness`,
//! `by_electric_version` as of the period) and:
//! - `new`: active clusters whose first active day (over everything stored) is in the period;
//! - `returning`: active in the period and in the previous one;
//! - `resurrected`: active in the period, not in the previous one, but before it;
//! - `dormant`: active in the previous period, not in this one;
//! - `volume_per_application`: over the active clusters' sums of `operations_from_pg` and of
//!   `operations_sent_to_clients` in the period, the median and 90th percentile (nearest rank),
//!   the largest, and the share of the total held by the 10 largest;
//! - `partial`: the period holds the receiver's current day (or is later).
//!
//! `new + returning + resurrected = applications`, always. `GET /api/retention` ([`Cohort`])
//! groups clusters by the week or month of their first active day. Both are computed from the
//! rollups (the `cluster_days` rows of the periods), never from raw reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, Days, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::overview::{Completeness, Share};
use crate::store::{Backend, Filter, History, Kept, Store, StoreError};

/// A calendar period kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    Quarter,
}

impl Period {
    /// `day`, `week`, `month` or `quarter`.
    pub fn parse(s: &str) -> Result<Period, String> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            "quarter" => Ok(Period::Quarter),
            _ => Err(format!(
                "period must be day, week, month or quarter, got {s:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Quarter => "quarter",
        }
    }

    /// The first day of the period holding `d`.
    pub fn start_of(self, d: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => d,
            Period::Week => d - Days::new(u64::from(d.weekday().num_days_from_monday())),
            Period::Month => d.with_day(1).unwrap_or(d),
            Period::Quarter => {
                let month = (d.month0() / 3) * 3 + 1;
                NaiveDate::from_ymd_opt(d.year(), month, 1).unwrap_or(d)
            }
        }
    }

    /// The first day of the period after the one starting on `start`.
    pub fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => start + Days::new(1),
            Period::Week => start + Days::new(7),
            Period::Month => start + Months::new(1),
            Period::Quarter => start + Months::new(3),
        }
    }

    /// The first day of the period before the one starting on `start`.
    pub fn previous(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => start - Days::new(1),
            Period::Week => start - Days::new(7),
            Period::Month => start - Months::new(1),
            Period::Quarter => start - Months::new(3),
        }
    }
}

/// How a volume spreads over the active applications of a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: u64,
    pub p90: u64,
    pub max: u64,
    /// The share of the period's total held by its 10 largest applications (0 when the total
    /// is 0).
    pub top10_share: f64,
}

impl Spread {
    /// Of per-application sums (any order).
    pub fn of(mut sums: Vec<u64>) -> Spread {
        if sums.is_empty() {
            return Spread::default();
        }
        sums.sort_unstable();
        let rank =
            |p: f64| sums[((p * sums.len() as f64).ceil() as usize).clamp(1, sums.len()) - 1];
        let total: u128 = sums.iter().map(|&v| u128::from(v)).sum();
        let top: u128 = sums.iter().rev().take(10).map(|&v| u128::from(v)).sum();
        Spread {
            median: rank(0.5),
            p90: rank(0.9),
            max: *sums.last().unwrap_or(&0),
            top10_share: if total == 0 {
                0.0
            } else {
                top as f64 / total as f64
            },
        }
    }
}

/// Volume per application in a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub operations_from_pg: Spread,
    pub operations_sent_to_clients: Spread,
}

/// One calendar period's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodFigures {
    pub start: String,
    pub end: String,
    pub partial: bool,
    pub applications: u64,
    pub new: u64,
    pub returning: u64,
    pub resurrected: u64,
    pub dormant: u64,
    pub instances: u64,
    pub peak_instances: u64,
    pub totals: BTreeMap<String, u64>,
    pub completeness: Completeness,
    pub by_electric_version: Vec<Share>,
    pub volume_per_application: Volume,
}

/// The answer of `GET /api/activity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub period: String,
    pub periods: Vec<PeriodFigures>,
}

/// The most periods one answer holds.
pub const MAX_PERIODS: u32 = 120;

fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The clusters active from `start` to `end` (both included) that `filter` keeps, each with
/// its sums of `operations_from_pg` and `operations_sent_to_clients` there.
async fn active(
    store: &Store,
    start: NaiveDate,
    end: NaiveDate,
    filter: Filter,
) -> Result<BTreeMap<String, (u64, u64)>, StoreError> {
    // SQLite reads a long period faster in one pass over the table than row by row through
    // the day index (measured on a year of 10 000 clusters: a month 0.4 s against 0.9 s, a
    // week 0.2 s through the index against 0.4 s); Postgres's planner chooses by itself.
    let long = (end - start).num_days() > 7;
    let table = if long && store.backend() == Backend::Sqlite {
        "cluster_days d NOT INDEXED"
    } else {
        "cluster_days d"
    };
    let rows = sqlx::query(&format!(
        "SELECT d.cluster_uuid, CAST(SUM(d.operations_from_pg) AS BIGINT), \
         CAST(SUM(d.operations_sent_to_clients) AS BIGINT) \
         FROM {table} WHERE d.day >= $1 AND d.day <= $2{} GROUP BY d.cluster_uuid",
        filter.member("d")
    ))
    .bind(day_text(start))
    .bind(day_text(end))
    .fetch_all(store.pool())
    .await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        // SUM of BIGINTs is a NUMERIC on Postgres: cast back in the query.
        let sum = |i: usize| -> Result<u64, StoreError> {
            let v: Option<i64> = r.try_get(i)?;
            Ok(v.unwrap_or(0).max(0) as u64)
        };
        out.insert(r.try_get(0)?, (sum(1)?, sum(2)?));
    }
    Ok(out)
}

/// [`active`], kept while its period is finished and the rollups unchanged (`store::cache`).
async fn active_kept(
    store: &Store,
    history: &History,
    period: Period,
    start: NaiveDate,
    filter: Filter,
) -> Result<Arc<BTreeMap<String, (u64, u64)>>, StoreError> {
    let end = period.next(start) - Days::new(1);
    let key = ("active", format!("{}/{start}", period.name()), end, filter);
    let kept = store
        .kept(history, key, || async {
            Ok(Kept::Active(Arc::new(
                active(store, start, end, filter).await?,
            )))
        })
        .await?;
    match kept {
        Kept::Active(a) => Ok(a),
        _ => Err(StoreError::Other(
            "an active set was kept as another answer".to_owned(),
        )),
    }
}

/// The `periods` periods of kind `period` up to the one holding `until`, oldest first.
pub(crate) async fn compute(
    store: &Store,
    period: Period,
    periods: u32,
    until: NaiveDate,
    filter: Filter,
) -> Result<Activity, StoreError> {
    let history = store.history().await?;
    let mut starts = vec![period.start_of(until)];
    for _ in 1..periods.max(1) {
        let first = starts[0];
        starts.insert(0, period.previous(first));
    }
    let mut out = Vec::with_capacity(starts.len());
    for start in starts {
        let end = period.next(start) - Days::new(1);
        let key = ("period", format!("{}/{start}", period.name()), end, filter);
        let kept = store
            .kept(&history, key, || {
                figures(store, &history, period, start, filter)
            })
            .await?;
        match kept {
            Kept::Period(p) => out.push(PeriodFigures::clone(&p)),
            _ => {
                return Err(StoreError::Other(
                    "a period was kept as another answer".to_owned(),
                ))
            }
        }
    }
    Ok(Activity {
        period: period.name().to_owned(),
        periods: out,
    })
}

/// One period's figures, from the rollups (and the kept answers of finished periods).
async fn figures(
    store: &Store,
    history: &History,
    period: Period,
    start: NaiveDate,
    filter: Filter,
) -> Result<Kept, StoreError> {
    let today = Utc::now().date_naive();
    let end = period.next(start) - Days::new(1);
    let days = (end - start).num_days() as u32 + 1;
    let (previous, now, o) = tokio::try_join!(
        active_kept(store, history, period, period.previous(start), filter),
        active_kept(store, history, period, start, filter),
        store.overview_kept(history, days, end, filter),
    )?;
    let returning = now.keys().filter(|c| previous.contains_key(*c)).count() as u64;
    let dormant = previous.keys().filter(|c| !now.contains_key(*c)).count() as u64;
    // From the same rows as the lifecycle, so that new + returning + resurrected adds up
    // even when a report is stored between this query and the overview's.
    let applications = now.len() as u64;
    Ok(Kept::Period(Arc::new(PeriodFigures {
        start: day_text(start),
        end: day_text(end),
        partial: end >= today,
        applications,
        new: o.new_applications,
        returning,
        resurrected: applications.saturating_sub(o.new_applications + returning),
        dormant,
        instances: o.instances,
        peak_instances: o.peak_instances,
        totals: o.totals.clone(),
        completeness: o.completeness.clone(),
        by_electric_version: o.by_electric_version.clone(),
        volume_per_application: Volume {
            operations_from_pg: Spread::of(now.values().map(|v| v.0).collect()),
            operations_sent_to_clients: Spread::of(now.values().map(|v| v.1).collect()),
        },
    })))
}

/// One cohort of `GET /api/retention`: the clusters whose first active day is in the period
/// starting `cohort`, and how many of them were active in it and in each later period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cohort {
    pub cohort: String,
    pub size: u64,
    /// `active[k]`: how many of the cohort were active `k` periods after its own (`active[0]`
    /// is `size`); up to the period holding `until`.
    pub active: Vec<u64>,
}

/// The answer of `GET /api/retention`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub period: String,
    pub cohorts: Vec<Cohort>,
}

/// `cohorts` cohorts of kind `period` (week or month), the last one holding `until`.
pub(crate) async fn retention(
    store: &Store,
    period: Period,
    cohorts: u32,
    until: NaiveDate,
    filter: Filter,
) -> Result<Retention, StoreError> {
    let mut starts = vec![period.start_of(until)];
    for _ in 1..cohorts.max(1) {
        let first = starts[0];
        starts.insert(0, period.previous(first));
    }
    let history = store.history().await?;
    let mut sets = Vec::with_capacity(starts.len());
    for &start in &starts {
        sets.push(active_kept(store, &history, period, start, filter).await?);
    }
    // Each cluster's first active day, for the clusters first active in these periods.
    let rows = sqlx::query(&format!(
        "SELECT c.cluster_uuid, c.first_day FROM clusters c \
         WHERE c.first_day >= $1 AND c.first_day <= $2{}",
        filter.clusters("c")
    ))
    .bind(day_text(starts[0]))
    .bind(day_text(until))
    .fetch_all(store.pool())
    .await?;
    let mut members: Vec<Vec<String>> = vec![Vec::new(); starts.len()];
    for r in &rows {
        let cluster: String = r.try_get(0)?;
        let first: String = r.try_get(1)?;
        if let Some(i) = starts.iter().rposition(|s| day_text(*s) <= first) {
            members[i].push(cluster);
        }
    }
    let cohorts = starts
        .iter()
        .enumerate()
        .map(|(i, start)| Cohort {
            cohort: day_text(*start),
            size: members[i].len() as u64,
            active: sets[i..]
                .iter()
                .map(|set| members[i].iter().filter(|c| set.contains_key(*c)).count() as u64)
                .collect(),
        })
        .collect();
    Ok(Retention {
        period: period.name().to_owned(),
        cohorts,
    })
}
