//! Answers for finished periods, kept in memory while the rollups they were computed from are
//! unchanged (cozystack's telemetry server keeps finished months as final; here "final" is
//! checked, because late reports still count on their own days).
//!
//! What an answer about the days up to `until` reads changes only when one of these moves,
//! and each of them only grows (the rollups are only ever added to):
//! - the reports and refused duplicates counted on days up to `until` (every stored report
//!   adds one to its day; so does every refused copy). A report that moves a cluster's first
//!   day earlier, or changes its versions as of a period, counts on a day up to `until` too;
//! - the reports that stretched an instance's first-to-last span over days it did not report
//!   on (`days.instance_gaps`, on any day): instances are counted by span, so such a report,
//!   even today, can make an instance active in a finished window;
//! - with `min_active_days` above 1, the cluster-day rows on any day (`days.clusters`): a
//!   cluster reaching N active days today enters every earlier answer.
//!
//! The fingerprint of those sums is read first, in one query over the `days` table (one row
//! per day); an answer computed after it covers at least what it says, so an answer stored
//! under it is never staler than its fingerprint: a later report changes the fingerprint and
//! the answer is computed again. Only periods that end before the receiver's current UTC day
//! are kept (their `partial` flags cannot change). Receivers on one database each keep their
//! own; the fingerprint comes from the database, so they never disagree.
//!
//! Bounded by weight (one unit per day, share or cluster held), least recently used first out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use sqlx::Row;

use super::{day_text, Filter, Store, StoreError};
use crate::activity::PeriodFigures;
use crate::overview::Overview;

/// The most weight the cache holds: about 50 MB at most (a cluster held in an active set is
/// about 100 bytes), room for two years of weekly and monthly periods of 10 000 clusters.
const MAX_WEIGHT: usize = 500_000;

/// What the answers about days up to some day were computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    counted: i64,
    gaps: i64,
    cluster_days: i64,
}

/// The sums behind every fingerprint, read once per answer.
#[derive(Debug, Clone)]
pub(crate) struct History {
    /// (day, reports and duplicates counted up to and including it), in day order.
    counted: Vec<(String, i64)>,
    gaps: i64,
    cluster_days: i64,
    /// The receiver's current UTC day: periods ending before it are kept.
    today: NaiveDate,
}

impl History {
    /// The fingerprint of what an answer about days up to `until` counting `filter` reads;
    /// `None` for a period that is not finished (nothing is kept for it).
    pub(crate) fn at(&self, until: NaiveDate, filter: Filter) -> Option<Fingerprint> {
        if until >= self.today {
            return None;
        }
        let until = day_text(until);
        let at = self.counted.partition_point(|(d, _)| *d <= until);
        Some(Fingerprint {
            counted: if at == 0 { 0 } else { self.counted[at - 1].1 },
            gaps: self.gaps,
            cluster_days: if filter.min_active_days > 1 {
                self.cluster_days
            } else {
                0
            },
        })
    }
}

/// A kept answer.
#[derive(Clone)]
pub(crate) enum Kept {
    Overview(Arc<Overview>),
    Period(Arc<PeriodFigures>),
    /// The clusters active in a period, with their volumes (`activity::active`).
    Active(Arc<BTreeMap<String, (u64, u64)>>),
}

impl Kept {
    fn weight(&self) -> usize {
        1 + match self {
            Kept::Overview(o) => {
                o.per_day.len()
                    + o.by_electric_version.len()
                    + o.by_pg_version.len()
                    + o.by_os.len()
                    + o.by_arch.len()
                    + o.instances_per_application.len()
            }
            Kept::Period(p) => p.by_electric_version.len(),
            Kept::Active(a) => a.len(),
        }
    }
}

/// What an answer is for: its kind, its parameters and its filter.
pub(crate) type Key = (&'static str, String, NaiveDate, Filter);

#[derive(Default)]
pub(crate) struct Answers {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, (Fingerprint, u64, Kept)>,
    weight: usize,
    tick: u64,
}

impl Answers {
    /// The answer kept for `key` if it was computed from what `fingerprint` says.
    pub(crate) fn get(&self, key: &Key, fingerprint: Fingerprint) -> Option<Kept> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        if entry.0 != fingerprint {
            return None;
        }
        entry.1 = tick;
        Some(entry.2.clone())
    }

    /// Keeps `kept` for `key`, computed after `fingerprint` was read.
    pub(crate) fn put(&self, key: Key, fingerprint: Fingerprint, kept: Kept) {
        let weight = kept.weight();
        if weight > MAX_WEIGHT / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(old) = inner.entries.insert(key, (fingerprint, tick, kept)) {
            inner.weight -= old.2.weight();
        }
        inner.weight += weight;
        while inner.weight > MAX_WEIGHT {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.1)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.weight -= e.2.weight();
            }
        }
    }
}

impl Store {
    /// The sums every fingerprint is taken from (one query over the `days` table).
    pub(crate) async fn history(&self) -> Result<History, StoreError> {
        let rows = sqlx::query(
            "SELECT day, reports + duplicates, clusters, instance_gaps FROM days ORDER BY day",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counted = Vec::with_capacity(rows.len());
        let (mut sum, mut gaps, mut cluster_days) = (0i64, 0i64, 0i64);
        for r in &rows {
            let n: i64 = r.try_get(1)?;
            sum = sum.saturating_add(n);
            cluster_days = cluster_days.saturating_add(r.try_get(2)?);
            gaps = gaps.saturating_add(r.try_get(3)?);
            counted.push((r.try_get::<String, _>(0)?, sum));
        }
        Ok(History {
            counted,
            gaps,
            cluster_days,
            today: chrono::Utc::now().date_naive(),
        })
    }

    /// The answer kept for `key` under `history`, or `compute`'s (kept when its period is
    /// finished).
    pub(crate) async fn kept<F, Fut>(
        &self,
        history: &History,
        key: Key,
        compute: F,
    ) -> Result<Kept, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Kept, StoreError>>,
    {
        let fingerprint = history.at(key.2, key.3);
        if let Some(f) = fingerprint {
            if let Some(kept) = self.answers.get(&key, f) {
                return Ok(kept);
            }
        }
        let kept = compute().await?;
        if let Some(f) = fingerprint {
            self.answers.put(key, f, kept.clone());
        }
        Ok(kept)
    }
}
