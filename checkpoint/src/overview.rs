//! The answers, as served at `GET /api/overview?days=N` and drawn at `GET /`.
//!
//! The contract of the JSON (fields may be added, none removed or renamed):
//! - `days`, `from`, `until`: the window, whole UTC days, both ends included;
//! - `applications`: distinct `electric_cluster_uuid`s active in the window (a cluster is
//!   active when at least one of its reports counts on a day of the window);
//!   `new_applications` (first active day, over everything stored, in the window) +
//!   `returning_applications` = `applications`;
//! - `instances`: distinct (cluster, `electric_instance_id`) pairs whose first-to-last reported
//!   days overlap the window, and `instances_per_application` their distribution;
//!   `peak_instances`: the most instances active on one day of the window;
//! - `by_electric_version`, `by_pg_version`, `by_os` (`family/name`), `by_arch`: active
//!   clusters by their value as of the window (their latest report counting in it);
//! - `totals`: every usage counter of the payload summed over the window's reports, keyed
//!   exactly as in `data.usage` ([`crate::validate::COUNTERS`]). `distinct_clients` and
//!   `distinct_users` are sums of per-window estimates: a client connected in three windows
//!   counts three times;
//! - `completeness`: reports stored, `dropped_events` and `dropped_reports` summed as reported,
//!   `duplicates_refused`, `missed_windows` (reports whose `last_reported` is not the
//!   `timestamp` of the report received before from the same instance, sent by a process whose
//!   uptime covers the gap), `clock_skewed` (reports counted on the day received because their
//!   `timestamp` was not believed), and the counts of reports flagged `recovered` /
//!   `after_unclean_stop` (0 while reports lack those fields);
//! - `previous`: the headline figures (`applications`, `new_applications`, `instances`,
//!   `peak_instances`, `totals`, `completeness`) of the window of the same length just before;
//! - `per_day`: one entry per day of the window, oldest first, with the same figures per day
//!   (`applications` there: clusters with a report counting that day; `new_applications`:
//!   clusters whose first active day it is; `partial` for the receiver's current day).
//!
//! A report counts on the UTC day of its `timestamp` when that is believed (see
//! [`crate::validate::Accepted::clock_skewed`]), else on the day it was received.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::COUNTERS;

/// The answers for one window. See the module docs for each field's meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub days: u32,
    pub from: String,
    pub until: String,
    pub applications: u64,
    pub instances: u64,
    /// The most instances active on one day of the window.
    #[serde(default)]
    pub peak_instances: u64,
    pub new_applications: u64,
    pub returning_applications: u64,
    pub instances_per_application: Vec<Bucket>,
    pub by_electric_version: Vec<Share>,
    pub by_pg_version: Vec<Share>,
    pub by_os: Vec<Share>,
    pub by_arch: Vec<Share>,
    pub totals: BTreeMap<String, u64>,
    pub completeness: Completeness,
    pub per_day: Vec<Day>,
    pub notes: BTreeMap<String, String>,
    /// The headline figures of the window of the same length just before this one, to compare
    /// with (absent in a `previous` itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<Previous>>,
}

/// The headline figures of the preceding window (see [`Overview::previous`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub from: String,
    pub until: String,
    pub applications: u64,
    pub new_applications: u64,
    pub instances: u64,
    pub peak_instances: u64,
    pub totals: BTreeMap<String, u64>,
    pub completeness: Completeness,
}

impl Previous {
    /// The headline figures of `o`.
    pub fn of(o: &Overview) -> Previous {
        Previous {
            from: o.from.clone(),
            until: o.until.clone(),
            applications: o.applications,
            new_applications: o.new_applications,
            instances: o.instances,
            peak_instances: o.peak_instances,
            totals: o.totals.clone(),
            completeness: o.completeness.clone(),
        }
    }
}

/// `applications` clusters had `instances` instances active in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub instances: u64,
    pub applications: u64,
}

/// `applications` active clusters reported `value` last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub value: String,
    pub applications: u64,
}

/// How complete the stored data is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completeness {
    pub reports: u64,
    pub dropped_events: u64,
    pub dropped_reports: u64,
    pub duplicates_refused: u64,
    pub missed_windows: u64,
    pub recovered: u64,
    pub after_unclean_stop: u64,
    /// Reports whose `timestamp` was not believed (before 2023, more than an hour after the
    /// receiver got them, or before their own `last_reported`): counted on the day received.
    #[serde(default)]
    pub clock_skewed: u64,
}

impl Completeness {
    pub(crate) fn add(&mut self, o: &Completeness) {
        self.reports = self.reports.saturating_add(o.reports);
        self.dropped_events = self.dropped_events.saturating_add(o.dropped_events);
        self.dropped_reports = self.dropped_reports.saturating_add(o.dropped_reports);
        self.duplicates_refused = self.duplicates_refused.saturating_add(o.duplicates_refused);
        self.missed_windows = self.missed_windows.saturating_add(o.missed_windows);
        self.recovered = self.recovered.saturating_add(o.recovered);
        self.after_unclean_stop = self.after_unclean_stop.saturating_add(o.after_unclean_stop);
        self.clock_skewed = self.clock_skewed.saturating_add(o.clock_skewed);
    }
}

/// One UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    pub day: String,
    pub applications: u64,
    pub instances: u64,
    pub new_applications: u64,
    pub reports: u64,
    pub totals: BTreeMap<String, u64>,
    pub completeness: Completeness,
    /// The receiver's current UTC day (or later): still filling up.
    #[serde(default)]
    pub partial: bool,
}

impl Day {
    pub(crate) fn empty(day: String) -> Day {
        Day {
            day,
            applications: 0,
            instances: 0,
            new_applications: 0,
            reports: 0,
            totals: COUNTERS.iter().map(|c| ((*c).to_owned(), 0)).collect(),
            completeness: Completeness::default(),
            partial: false,
        }
    }
}

pub(crate) fn notes() -> BTreeMap<String, String> {
    [
        ("distinct_clients", "sum of per-window estimates (exact up to 1 024 ids per window, then HyperLogLog): a client seen in several windows counts once per window"),
        ("distinct_users", "sum of per-window estimates, like distinct_clients"),
        ("day", "reports count on the UTC day of their timestamp, or on the day received when that timestamp is not believed (before 2023, more than an hour ahead, or before its last_reported: see clock_skewed)"),
        ("applications", "clusters with at least one report counting on a day of the window"),
        ("missed_windows", "reports whose last_reported is not the timestamp of the previous report received from the same instance, from a process whose uptime covers the gap (a restart is not a loss)"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `12345` as `12 345`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", grouped(n), if n == 1 { one } else { many })
}

impl Overview {
    /// The two answers as one line, e.g. `1 application, 1 instance, 12 345 operations from
    /// Postgres, 98 765 operations sent to clients`.
    pub fn summary_line(&self) -> String {
        let total = |k: &str| self.totals.get(k).copied().unwrap_or(0);
        format!(
            "{}, {}, {} from Postgres, {} sent to clients",
            plural(self.applications, "application", "applications"),
            plural(self.instances, "instance", "instances"),
            plural(total("operations_from_pg"), "operation", "operations"),
            plural(
                total("operations_sent_to_clients"),
                "operation",
                "operations"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(12_345), "12 345");
        assert_eq!(grouped(1_234_567), "1 234 567");
    }
}
