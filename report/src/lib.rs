//! The wire format of electric-telemetry's usage report: the types a reporter sends and a
//! receiver reads, the counter list, and every published JSON Schema, frozen.
//!
//! # Versioning rules
//!
//! - [`REPORT_VERSION`] names a report's shape. **Adding an optional field does not bump it**:
//!   readers ignore what they do not know. The types here accept fields they do not know and
//!   keep them (a private flattened map in each object), so a report read and re-serialised by
//!   an older build loses nothing; a receiver validates a report against its version's
//!   schema with `additionalProperties` relaxed (see [`reader_schema`]), so a later release's
//!   new fields pass and are stored.
//! - **Removing a field, renaming it or changing its type or meaning is a new version**: a new
//!   frozen schema in `schemas/report-vN.json`, a new entry in [`SCHEMAS`], and a receiver
//!   that carries a conversion from every older version into what it stores.
//! - **A published schema never changes.** A test fails if the bytes of one do; each schema
//!   describes exactly what its version's reporters send (every object closed, every property
//!   required), which the reporter's own tests check of what it really sends.
//! - Version 1 was never published (the reporter upgrades any version 1 report left in its
//!   outbox into version 2 before sending it); version 2 is the first published one.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use uuid::Uuid;

/// The version of the envelope and payload shape this crate writes.
pub const REPORT_VERSION: u32 = 2;

/// The JSON Schema (draft 2020-12) of a version [`REPORT_VERSION`] report as sent: every object
/// closed (`additionalProperties: false`), every property required and described with its
/// unit. Frozen: `schemas/report-v2.json`.
pub const REPORT_SCHEMA: &str = include_str!("../schemas/report-v2.json");

/// Every published version with its frozen schema, oldest first. A receiver accepts each.
pub const SCHEMAS: &[(u32, &str)] = &[(2, REPORT_SCHEMA)];

/// The usage counters a receiver sums over reports, keyed exactly as in `data.usage`.
/// `distinct_clients` and `distinct_users` are per-window estimates: their sums count a client
/// once per window it connected in. `electrified_tables` is a latest value, not a count
/// ([`GAUGES`]). A test checks this list against the schema's integer properties of `usage`.
pub const COUNTERS: [&str; 11] = [
    "operations_from_pg",
    "transactions_from_pg",
    "operations_received_from_clients",
    "transactions_received_from_clients",
    "operations_sent_to_clients",
    "transactions_sent_to_clients",
    "initial_syncs",
    "subscriptions_established",
    "subscriptions_continued",
    "distinct_clients",
    "distinct_users",
];

/// Usage properties that are integers but latest values, not counts.
pub const GAUGES: [&str; 1] = ["electrified_tables"];

/// `schema` (one of [`SCHEMAS`]) as a reader applies it: the same, except that no object is
/// closed (every `"additionalProperties": false` removed), so that a later release's added
/// optional fields are accepted. `None` if `schema` is not JSON.
pub fn reader_schema(schema: &str) -> Option<Value> {
    fn open(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                    map.remove("additionalProperties");
                }
                map.values_mut().for_each(open);
            }
            Value::Array(items) => items.iter_mut().for_each(open),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(schema).ok()?;
    open(&mut v);
    Some(v)
}

/// One report, as POSTed to the endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// A fresh random id per report, for the receiver to drop duplicates.
    pub report_id: Uuid,
    /// [`REPORT_VERSION`].
    pub report_version: u32,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub timestamp: String,
    /// When the window this report covers began (RFC 3339, UTC): the previous report's
    /// `timestamp`, or the start of telemetry for the first report.
    pub last_reported: String,
    /// Usage events shed since the last report because the collector's event queue (or, for
    /// event types without a compact form, its mailbox) was full: counted, never silent.
    pub dropped_events: u64,
    /// Earlier reports dropped without delivery since the last delivered one, past the
    /// outbox's bound (counted, never silent). Reporters before the one that keeps refused
    /// reports (see the CHANGELOG) also counted reports the endpoint refused; the frozen
    /// schema's description still names both.
    pub dropped_reports: u64,
    /// This report's window was restored from its recovery file after the previous process
    /// stopped without a clean shutdown (killed, crashed): it ends where the file was written
    /// (`timestamp`), and the usage between then and the stop, at most one `checkpoint_every`,
    /// is missing. Its `report_id` is the window's own: a receiver that already has the
    /// window's full report drops it. Absent in version 1 reports (read as `false`).
    #[serde(default)]
    pub recovered: bool,
    /// The previous run of this storage dir ended uncleanly and nothing of its last window
    /// could be recovered (it was killed before its first recovery file, or the file could
    /// not be written or read, or its shutdown ended before its final report was queued): a stretch of usage before this report's window is missing.
    /// Absent in version 1 reports (read as `false`).
    #[serde(default)]
    pub after_unclean_stop: bool,
    /// The payload.
    pub data: ReportData,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// The payload: the seed's `%{electric_version, environment, resources, usage}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReportData {
    /// The version of the service that embeds telemetry.
    pub electric_version: String,
    /// Facts about the host and this instance, gathered once at start.
    pub environment: Environment,
    /// Resources the service used.
    pub resources: Resources,
    /// Usage in the window.
    pub usage: Usage,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Facts about the host and this instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Environment {
    /// The target triple the service was built for, e.g. `x86_64-unknown-linux-gnu`.
    pub arch: String,
    /// Logical CPU cores.
    pub cores: u64,
    /// Random id shared by every instance of a cluster.
    pub electric_cluster_uuid: Uuid,
    /// Random id of this instance (or `ELECTRIC_INSTANCE_ID`).
    pub electric_instance_id: String,
    /// Operating system.
    pub os: Os,
    /// Postgres server version, once the replication side reported it.
    pub pg_version: Option<String>,
    /// Total RAM in bytes.
    pub ram: u64,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Operating system family and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Os {
    /// `unix` or `windows`.
    pub family: String,
    /// e.g. `linux`, `macos`.
    pub name: String,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Resources the service used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Resources {
    /// Commit time of the oldest transaction kept in the WAL cache (RFC 3339), if known.
    pub oldest_wal_time: Option<String>,
    /// Seconds since telemetry started.
    pub uptime: u64,
    /// The process's resident memory in bytes, over the window's samples.
    pub used_memory: SummaryStats,
    /// Bytes held by the WAL cache (latest reported value).
    pub wal_cache_memory: u64,
    /// Transactions held by the WAL cache (latest reported value).
    pub wal_transactions: u64,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Usage in the window, as the report's `data.usage` object carries it. Counts are per
/// window; `electrified_tables` is the latest value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Connected clients, over the window's samples.
    pub concurrent_clients: SummaryStats,
    /// Different client ids that connected in the window.
    pub distinct_clients: u64,
    /// Different user ids that connected in the window.
    pub distinct_users: u64,
    /// Electrified tables (latest value).
    pub electrified_tables: u64,
    /// Initial syncs run.
    pub initial_syncs: u64,
    /// Operations replicated from Postgres.
    pub operations_from_pg: u64,
    /// Operations received from clients.
    pub operations_received_from_clients: u64,
    /// Operations sent to clients.
    pub operations_sent_to_clients: u64,
    /// Subscriptions continued (resumed) by clients.
    pub subscriptions_continued: u64,
    /// Over the clients that continued any subscription: how many each continued.
    pub subscriptions_continued_per_client: SummaryStats,
    /// Subscriptions established.
    pub subscriptions_established: u64,
    /// Over established subscriptions: how many tables each included.
    pub subscriptions_included_tables: SummaryStats,
    /// Over shapes sent in initial syncs: how many rows each had.
    pub subscriptions_rows_per_shape: SummaryStats,
    /// Transactions replicated from Postgres.
    pub transactions_from_pg: u64,
    /// Transactions received from clients.
    pub transactions_received_from_clients: u64,
    /// Transactions sent to clients.
    pub transactions_sent_to_clients: u64,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// A summary of a window's samples, as the report carries it: `{min, max, mean, median, mode}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SummaryStats {
    /// The smallest sample, or 0 without samples.
    pub min: u64,
    /// The largest sample, or 0 without samples.
    pub max: u64,
    /// The arithmetic mean, or 0.0 without samples.
    pub mean: f64,
    /// The median: the middle sample, or the mean of the two middle samples for an even
    /// count; 0 without samples. Exact while the summary is; within 0.79 % once bucketed.
    pub median: Median,
    /// The most frequent sample (the smallest one on a tie), or `null` without samples. Once
    /// bucketed: the midpoint of the fullest bucket.
    pub mode: Option<u64>,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// A median of integer samples, kept exact: it is either an integer or an integer plus one
/// half. Serialised as a JSON integer when whole, else as a float (e.g. `2.5`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Median {
    doubled: u128,
}

impl Median {
    /// The median of a single value.
    pub fn of_value(value: u64) -> Self {
        Self {
            doubled: u128::from(value) * 2,
        }
    }

    /// The median of an even count of samples: the mean of its two middle values.
    pub fn of_pair(low: u64, high: u64) -> Self {
        Self {
            doubled: u128::from(low) + u128::from(high),
        }
    }

    /// The median as a float (exact up to 2^53).
    pub fn as_f64(self) -> f64 {
        self.doubled as f64 / 2.0
    }

    /// The median as an integer, if it is whole.
    pub fn as_u64(self) -> Option<u64> {
        self.doubled
            .is_multiple_of(2)
            .then_some((self.doubled / 2) as u64)
    }
}

impl Serialize for Median {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.as_u64() {
            Some(whole) => serializer.serialize_u64(whole),
            None => serializer.serialize_f64(self.as_f64()),
        }
    }
}

impl<'de> Deserialize<'de> for Median {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MedianVisitor;
        impl Visitor<'_> for MedianVisitor {
            type Value = Median;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number that is whole or ends in .5")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Median, E> {
                Ok(Median::of_value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Median, E> {
                u64::try_from(v)
                    .map(Median::of_value)
                    .map_err(|_| E::custom("a median is never negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Median, E> {
                let doubled = v * 2.0;
                if v.is_finite() && v >= 0.0 && doubled.fract() == 0.0 {
                    Ok(Median {
                        doubled: doubled as u128,
                    })
                } else {
                    Err(E::custom(format!(
                        "{v} is not a median of integer samples (whole or .5 expected)"
                    )))
                }
            }
        }
        deserializer.deserialize_any(MedianVisitor)
    }
}
