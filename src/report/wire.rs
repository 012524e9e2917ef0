//! The report's wire shape: the envelope and the seed's payload, field for field.
//!
//! Every struct denies unknown fields, so reading a report of another shape fails loudly
//! instead of dropping what it does not know; the schema tests hold these types and
//! `report.schema.json` to each other in both directions. Every struct is `#[non_exhaustive]`:
//! a receiver reads fields, and a later version may add some (and bump [`REPORT_VERSION`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sketch::summary::SummaryStats;
use crate::usage::window::Usage;

/// The version of the envelope and payload shape. Bumped on any change a receiver would see.
pub const REPORT_VERSION: u32 = 2;

/// The JSON Schema (draft 2020-12) of a [`Report`] as sent: every object closed
/// (`additionalProperties: false`), every property required and described with its unit.
/// Receivers can validate reports with it; the crate's tests validate real reports against it
/// and fail when it and these types drift apart.
pub const REPORT_SCHEMA: &str = include_str!("report.schema.json");

/// One report, as POSTed to the endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Earlier reports dropped without delivery since the last delivered one: past the
    /// outbox's bound, or refused for good by the endpoint (counted, never silent).
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
}

/// The payload: the seed's `%{electric_version, environment, resources, usage}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

/// Facts about the host and this instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

/// Operating system family and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Os {
    /// `unix` or `windows`.
    pub family: String,
    /// e.g. `linux`, `macos`.
    pub name: String,
}

/// Resources the service used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}
