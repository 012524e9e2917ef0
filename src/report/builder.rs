//! How a window's snapshot becomes a report: the window's figures plus what does not change
//! between windows (the host's facts, the ids, the version, the uptime clock).

use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::host::HostFacts;
use super::identity::Identity;
use super::wire::{Environment, Report, ReportData, Resources, REPORT_VERSION};
use crate::usage::gate::Gate;
use crate::usage::window::WindowSnapshot;
use electric_telemetry_report::Level;

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

    /// The identity the instance's report phase is derived from.
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The report of `snapshot` at the level `gate` is open at (basic when shut, which only a
    /// shutdown racing a withdrawal sees): at full the whole report, version 2; below, the
    /// sections above the level left out (see `Report::at_level`).
    pub(crate) fn build_at(&self, snapshot: WindowSnapshot, gate: &Gate) -> Report {
        self.build(snapshot)
            .at_level(gate.level().unwrap_or(Level::Basic))
    }

    pub(crate) fn build(&self, snapshot: WindowSnapshot) -> Report {
        let host = &self.host;
        let mut environment = Environment::default();
        environment.arch = host.arch.clone();
        environment.cores = host.cores;
        environment.electric_cluster_uuid = self.identity.cluster_uuid;
        environment.electric_instance_id = self.identity.instance_id.clone();
        environment.os = host.os.clone();
        environment.pg_version = snapshot.pg_version;
        environment.ram = host.ram;
        let mut resources = Resources::default();
        // Out of range means not a real WAL time: sent as unknown.
        resources.oldest_wal_time = snapshot.wal.oldest_wal_time.and_then(rfc3339);
        resources.uptime = self.started.elapsed().as_secs();
        resources.used_memory = snapshot.used_memory;
        resources.wal_cache_memory = snapshot.wal.wal_cache_memory;
        resources.wal_transactions = snapshot.wal.wal_transactions;
        let mut data = ReportData::default();
        data.electric_version = self.electric_version.clone();
        data.environment = environment;
        data.resources = resources;
        data.usage = snapshot.usage;
        let mut report = Report::default();
        report.report_id = Uuid::new_v4();
        report.report_version = REPORT_VERSION;
        report.timestamp = rfc3339_clamped(snapshot.taken);
        report.last_reported = rfc3339_clamped(snapshot.began);
        report.dropped_events = snapshot.dropped_events;
        report.data = data;
        report
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
