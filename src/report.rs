//! The report's wire shape: the envelope and the seed's payload, field for field.
//!
//! Every struct denies unknown fields so that a test reading a report back fails the moment
//! the shape drifts; Electric's payload changed shape unnoticed and broke its receiver.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::collector::WindowSnapshot;
use crate::environment::HostFacts;
use crate::identity::Identity;
use crate::summary::SummaryStats;

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
    /// This report's window was restored from a checkpoint after the previous process stopped
    /// without a clean shutdown (killed, crashed): it ends at the checkpoint (`timestamp`),
    /// and the usage between that checkpoint and the stop, at most one checkpoint period, is
    /// missing. Absent in version 1 reports (read as `false`).
    #[serde(default)]
    pub recovered: bool,
    /// The previous run of this storage dir ended uncleanly and nothing of its last window
    /// could be recovered (it was killed before its first checkpoint, or its checkpoint could
    /// not be written or read): a stretch of usage before this report's window is missing.
    /// Absent in version 1 reports (read as `false`).
    #[serde(default)]
    pub after_unclean_stop: bool,
    /// The payload.
    pub data: ReportData,
}

/// The payload: the seed's `%{electric_version, environment, resources, usage}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
pub struct Os {
    /// `unix` or `windows`.
    pub family: String,
    /// e.g. `linux`, `macos`.
    pub name: String,
}

/// Resources the service used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Usage in the window. Counts are per window; `electrified_tables` is the latest value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

/// Formats a time as RFC 3339 in UTC with microseconds, as the seed does.
/// `None` for a time RFC 3339 cannot show (before 1970 or after 9999), which humantime would
/// panic on: a host's clock or a WAL time from the host must never take the reporter down.
pub(crate) fn rfc3339(time: SystemTime) -> Option<String> {
    use std::fmt::Write;
    // 9999-12-31T23:59:59Z, the last second humantime can format.
    const LAST: Duration = Duration::from_secs(253_402_300_799);
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    if since_epoch > LAST {
        return None;
    }
    let mut text = String::new();
    write!(text, "{}", humantime::format_rfc3339_micros(time)).ok()?;
    Some(text)
}

/// [`rfc3339`] for our own clock readings: a clock set outside RFC 3339's range shows as the
/// nearest end of it rather than failing the report.
fn rfc3339_clamped(time: SystemTime) -> String {
    rfc3339(time).unwrap_or_else(|| {
        if time < SystemTime::UNIX_EPOCH {
            "1970-01-01T00:00:00.000000Z".to_owned()
        } else {
            "9999-12-31T23:59:59.000000Z".to_owned()
        }
    })
}

/// Turns a collector's [`WindowSnapshot`] into a [`Report`], adding what does not change
/// between windows: the host's facts, the ids, the version and the uptime clock.
#[derive(Debug)]
pub(crate) struct ReportBuilder {
    electric_version: String,
    host: HostFacts,
    identity: Identity,
    started: tokio::time::Instant,
}

impl ReportBuilder {
    pub(crate) fn new(config: &crate::TelemetryConfig) -> Self {
        Self {
            electric_version: config.electric_version().to_owned(),
            host: HostFacts::gather(),
            identity: Identity::resolve(config),
            started: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn build(&self, snapshot: WindowSnapshot) -> Report {
        let host = &self.host;
        Report {
            report_id: Uuid::new_v4(),
            report_version: REPORT_VERSION,
            timestamp: rfc3339_clamped(snapshot.taken),
            last_reported: rfc3339_clamped(snapshot.began),
            dropped_events: snapshot.dropped_events,
            dropped_reports: 0,
            recovered: false,
            after_unclean_stop: false,
            data: ReportData {
                electric_version: self.electric_version.clone(),
                environment: Environment {
                    arch: host.arch.clone(),
                    cores: host.cores,
                    electric_cluster_uuid: self.identity.cluster_uuid,
                    electric_instance_id: self.identity.instance_id.clone(),
                    os: host.os.clone(),
                    pg_version: snapshot.pg_version,
                    ram: host.ram,
                },
                resources: Resources {
                    // Out of range means not a real WAL time: sent as unknown.
                    oldest_wal_time: snapshot.oldest_wal_time.and_then(rfc3339),
                    uptime: self.started.elapsed().as_secs(),
                    used_memory: snapshot.used_memory,
                    wal_cache_memory: snapshot.wal_cache_memory,
                    wal_transactions: snapshot.wal_transactions,
                },
                usage: snapshot.usage,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_outside_rfc3339_never_panic() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(
            rfc3339(epoch).as_deref(),
            Some("1970-01-01T00:00:00.000000Z")
        );
        assert_eq!(rfc3339(epoch - Duration::from_secs(1)), None);
        let last = epoch + Duration::from_secs(253_402_300_799);
        assert_eq!(
            rfc3339(last).as_deref(),
            Some("9999-12-31T23:59:59.000000Z")
        );
        assert_eq!(rfc3339(last + Duration::from_secs(1)), None);
        assert_eq!(
            rfc3339_clamped(epoch - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
        assert!(rfc3339_clamped(last + Duration::from_secs(86_400)).starts_with("9999"));
    }
}
