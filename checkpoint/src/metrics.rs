//! `/metrics` in the Prometheus text format, and the once-a-minute summary of refusals.
//!
//! Bounded whatever the traffic, scraped or not: every label value is one of a fixed set of
//! names chosen in the code (outcomes, reasons), never anything a sender chose, and histograms
//! have fixed buckets. Nothing about a source is exported.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Why an ingest request was refused, attached to its response (as a response extension) by
/// whatever refused it; the metrics and the refusal summary read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub &'static str);

/// A histogram with fixed upper bounds.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if value <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// What the writer records: one observation per committed (or failed) batch.
pub struct Writer {
    batch_size: Histogram,
    commit_seconds: Histogram,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            batch_size: Histogram::new(&[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
            commit_seconds: Histogram::new(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        }
    }
}

impl Writer {
    /// One batch of `reports` written in `took` (the transaction, commit included).
    pub fn batch(&self, reports: usize, took: Duration) {
        self.batch_size.observe(reports as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }
}

/// One receiver's counters.
pub struct Metrics {
    /// (outcome, reason) → requests. Keys are names from the code only.
    reports: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// reason → (refusals so far, refusals already summarised in the log).
    refusals: Mutex<BTreeMap<&'static str, (u64, u64)>>,
    /// Rows and bytes in the quarantine; negative = not known (not exported). Read from the
    /// database at each scrape and set with [`Metrics::set_quarantine`].
    quarantine_reports: AtomicI64,
    quarantine_bytes: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reports: Mutex::new(BTreeMap::new()),
            refusals: Mutex::new(BTreeMap::new()),
            quarantine_reports: AtomicI64::new(-1),
            quarantine_bytes: AtomicI64::new(-1),
        }
    }
}

/// The outcome named by an ingest status, and the reason when the refuser named none.
pub fn outcome_of(status: u16) -> (&'static str, &'static str) {
    match status {
        201 => ("stored", ""),
        200 => ("duplicate", ""),
        202 => ("quarantined", "quarantined"),
        400 => ("refused", "invalid"),
        401 => ("refused", "unauthorized"),
        404 | 405 => ("refused", "not_found"),
        408 => ("refused", "body_timeout"),
        413 => ("refused", "too_large"),
        415 => ("refused", "content_type"),
        422 => ("refused", "unprocessable"),
        429 => ("refused", "rate_limited"),
        503 => ("failed", "unavailable"),
        _ => ("refused", "other"),
    }
}

impl Metrics {
    /// Counts one ingest answer.
    pub fn answered(&self, status: u16, reason: Option<Reason>) {
        let (outcome, default) = outcome_of(status);
        let reason = reason.map(|r| r.0).unwrap_or(default);
        *self
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((outcome, reason))
            .or_insert(0) += 1;
        if outcome != "stored" && outcome != "duplicate" {
            self.refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(reason)
                .or_insert((0, 0))
                .0 += 1;
        }
    }

    /// The quarantine's size, for the `checkpoint_quarantine_*` gauges.
    pub fn set_quarantine(&self, reports: u64, bytes: u64) {
        self.quarantine_reports
            .store(reports.min(i64::MAX as u64) as i64, Ordering::Relaxed);
        self.quarantine_bytes
            .store(bytes.min(i64::MAX as u64) as i64, Ordering::Relaxed);
    }

    /// Logs one line per reason with refusals since the last call; called once a minute.
    pub fn log_refusals(&self) {
        let mut map = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        for (reason, (total, logged)) in map.iter_mut() {
            if *total > *logged {
                tracing::warn!(
                    reason = *reason,
                    refused = *total - *logged,
                    total = *total,
                    "reports refused in the last minute"
                );
                *logged = *total;
            }
        }
    }

    /// The text exposition.
    pub fn render(
        &self,
        writer: &Writer,
        queue_depth: usize,
        queue_capacity: usize,
        sources: usize,
    ) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP checkpoint_reports_total Ingest answers by outcome and reason.\n\
             # TYPE checkpoint_reports_total counter\n",
        );
        for ((outcome, reason), n) in self
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "checkpoint_reports_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP checkpoint_queue_depth Reports waiting for the writer.\n\
             # TYPE checkpoint_queue_depth gauge\ncheckpoint_queue_depth {queue_depth}\n\
             # HELP checkpoint_queue_capacity Reports the queue holds before 429.\n\
             # TYPE checkpoint_queue_capacity gauge\ncheckpoint_queue_capacity {queue_capacity}\n\
             # HELP checkpoint_sources_tracked Sources held in memory by the per-source limits.\n\
             # TYPE checkpoint_sources_tracked gauge\ncheckpoint_sources_tracked {sources}"
        );
        writer.batch_size.write(
            &mut out,
            "checkpoint_batch_size",
            "Reports per write transaction.",
        );
        writer.commit_seconds.write(
            &mut out,
            "checkpoint_commit_seconds",
            "Time to write and commit one batch.",
        );
        let (rows, bytes) = (
            self.quarantine_reports.load(Ordering::Relaxed),
            self.quarantine_bytes.load(Ordering::Relaxed),
        );
        if rows >= 0 {
            let _ = writeln!(
                out,
                "# HELP checkpoint_quarantine_reports Reports kept in the quarantine.\n\
                 # TYPE checkpoint_quarantine_reports gauge\ncheckpoint_quarantine_reports {rows}\n\
                 # HELP checkpoint_quarantine_bytes Bytes kept in the quarantine.\n\
                 # TYPE checkpoint_quarantine_bytes gauge\ncheckpoint_quarantine_bytes {bytes}"
            );
        }
        out
    }
}
