//! Exports: the answers as CSV (`GET /api/per_day.csv`, `GET /api/activity.csv`) and the stored
//! raw reports as NDJSON (`GET /api/reports.ndjson`, `checkpoint export`).
//!
//! CSV: a header row, then one row per day or period, a column per figure; every cell that is
//! not a number is quoted, and one that starts with `=`, `+`, `-` or `@` is prefixed with `'`,
//! so that a spreadsheet never reads a cell as a formula. NDJSON: one stored report per line, as
//! stored (canonical compact JSON), in the order of their day and `report_id`, read page by
//! page so that memory does not grow with the number of reports; only what raw retention still
//! holds.

use chrono::NaiveDate;
use sqlx::Row;

use crate::activity::Activity;
use crate::overview::{Completeness, Overview};
use crate::store::{Store, StoreError};
use crate::validate::COUNTERS;

/// One CSV cell from text: quoted, quotes doubled, formula starts neutralised.
pub fn cell(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

const COMPLETENESS: [&str; 8] = [
    "reports",
    "dropped_events",
    "dropped_reports",
    "duplicates_refused",
    "missed_windows",
    "recovered",
    "after_unclean_stop",
    "clock_skewed",
];

fn completeness(c: &Completeness) -> [u64; 8] {
    [
        c.reports,
        c.dropped_events,
        c.dropped_reports,
        c.duplicates_refused,
        c.missed_windows,
        c.recovered,
        c.after_unclean_stop,
        c.clock_skewed,
    ]
}

fn row(cells: impl IntoIterator<Item = String>) -> String {
    let mut line = cells.into_iter().collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// `GET /api/per_day.csv`: one row per day of the overview's window.
pub fn per_day_csv(o: &Overview) -> String {
    let mut out = row([
        "day",
        "partial",
        "applications",
        "instances",
        "new_applications",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(COUNTERS.iter().map(|c| (*c).to_owned()))
    .chain(COMPLETENESS.iter().map(|c| format!("completeness_{c}"))));
    for d in &o.per_day {
        out.push_str(&row([
            cell(&d.day),
            d.partial.to_string(),
            d.applications.to_string(),
            d.instances.to_string(),
            d.new_applications.to_string(),
        ]
        .into_iter()
        .chain(
            COUNTERS
                .iter()
                .map(|c| d.totals.get(*c).copied().unwrap_or(0).to_string()),
        )
        .chain(completeness(&d.completeness).map(|n| n.to_string()))));
    }
    out
}

/// `GET /api/activity.csv`: one row per period.
pub fn activity_csv(a: &Activity) -> String {
    let volume = ["median", "p90", "max", "top10_share"];
    let mut out = row([
        "start",
        "end",
        "partial",
        "applications",
        "new",
        "returning",
        "resurrected",
        "dormant",
        "instances",
        "peak_instances",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(COUNTERS.iter().map(|c| (*c).to_owned()))
    .chain(COMPLETENESS.iter().map(|c| format!("completeness_{c}")))
    .chain(
        ["operations_from_pg", "operations_sent_to_clients"]
            .iter()
            .flat_map(|v| {
                volume
                    .iter()
                    .map(move |s| format!("per_application_{v}_{s}"))
            }),
    ));
    for p in &a.periods {
        let spreads = [
            &p.volume_per_application.operations_from_pg,
            &p.volume_per_application.operations_sent_to_clients,
        ];
        out.push_str(&row([
            cell(&p.start),
            cell(&p.end),
            p.partial.to_string(),
            p.applications.to_string(),
            p.new.to_string(),
            p.returning.to_string(),
            p.resurrected.to_string(),
            p.dormant.to_string(),
            p.instances.to_string(),
            p.peak_instances.to_string(),
        ]
        .into_iter()
        .chain(
            COUNTERS
                .iter()
                .map(|c| p.totals.get(*c).copied().unwrap_or(0).to_string()),
        )
        .chain(completeness(&p.completeness).map(|n| n.to_string()))
        .chain(spreads.iter().flat_map(|s| {
            [
                s.median.to_string(),
                s.p90.to_string(),
                s.max.to_string(),
                s.top10_share.to_string(),
            ]
        }))));
    }
    out
}

/// Stored reports per page of [`raw_page`].
pub const PAGE: i64 = 500;

/// Where a page of raw reports resumes: after this (day, report_id).
pub type Cursor = Option<(String, String)>;

/// Up to [`PAGE`] stored reports counted on days `from` to `until` (both included), after
/// `cursor`, in the order of (day, report_id): (day, report_id, body).
pub async fn raw_page(
    store: &Store,
    from: NaiveDate,
    until: NaiveDate,
    cursor: Cursor,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let pool = store.pool().clone();
    let (from, until) = (
        from.format("%Y-%m-%d").to_string(),
        until.format("%Y-%m-%d").to_string(),
    );
    store
        .run(move |_| async move {
            let (after_day, after_id) = cursor.unwrap_or_default();
            let rows = sqlx::query(
                "SELECT day, report_id, body FROM reports WHERE day >= $1 AND day <= $2 \
                 AND (day > $3 OR (day = $3 AND report_id > $4)) \
                 ORDER BY day, report_id LIMIT $5",
            )
            .bind(from)
            .bind(until)
            .bind(after_day)
            .bind(after_id)
            .bind(PAGE)
            .fetch_all(&pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect()
        })
        .await
}
