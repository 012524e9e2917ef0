//! The scheduler's clock, with paused tokio time: the first report after `first_report_in`,
//! then one every `interval`, and gauge samples on their own tick.
//!
//! The scheduler hands reports to a `Recipient<Deliver>`; here that is an actor that keeps
//! them, so no socket is involved and paused time is safe.

use std::time::Duration;

use crate::common::paused::{pass, scheduler_with_kept, Kept};
use actix::prelude::*;
use electric_telemetry::*;
use tokio::time::pause;

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

struct Rig {
    outbox: Kept,
    collector: Addr<Collector>,
    _storage: tempfile::TempDir,
}

async fn start(config: TelemetryConfigBuilder) -> Rig {
    pause();
    let storage = tempfile::tempdir().unwrap();
    // The exact schedule; spreading has tests of its own (tests/suite/spread.rs).
    let config = config
        .storage_dir(storage.path())
        .spread_reports(false)
        .build()
        .unwrap();
    let (outbox, collector) = scheduler_with_kept(&config);
    // Let the scheduler's `started` arm its timers.
    tokio::task::yield_now().await;
    Rig {
        outbox,
        collector,
        _storage: storage,
    }
}

#[actix_rt::test]
async fn first_report_is_due_five_minutes_after_start_then_every_four_hours() {
    let rig = start(TelemetryConfig::builder()).await;
    rig.collector.do_send(ReplicatedFromPg::new(1, 4));

    pass(Duration::from_secs(5 * 60) - MS).await;
    assert!(rig.outbox.reports().is_empty(), "nothing before 5 minutes");
    pass(2 * MS).await;
    let reports = rig.outbox.reports();
    assert_eq!(reports.len(), 1, "the first report at 5 minutes");
    assert_eq!(reports[0].data.usage.operations_from_pg, 4);

    rig.collector.do_send(ReplicatedFromPg::new(2, 6));
    pass(4 * HOUR - 2 * MS).await;
    assert_eq!(rig.outbox.reports().len(), 1, "nothing before the 4 h mark");
    pass(2 * MS).await;
    let reports = rig.outbox.reports();
    assert_eq!(reports.len(), 2, "the second report 4 h after the first");
    assert_eq!(reports[1].data.usage.operations_from_pg, 6);
    assert_eq!(reports[1].data.usage.transactions_from_pg, 2);
    assert_eq!(reports[1].last_reported, reports[0].timestamp);
    assert!(reports[1].data.resources.uptime >= 4 * 3600 + 5 * 60 - 1);

    pass(8 * HOUR + MS).await;
    assert_eq!(rig.outbox.reports().len(), 4, "one every 4 hours");
}

#[actix_rt::test]
async fn reports_follow_the_configured_schedule() {
    let rig = start(
        TelemetryConfig::builder()
            .first_report_in(Duration::ZERO)
            .interval(Duration::from_secs(30)),
    )
    .await;
    pass(MS).await;
    assert_eq!(rig.outbox.reports().len(), 1, "first report at once");
    pass(Duration::from_secs(90)).await;
    assert_eq!(rig.outbox.reports().len(), 4);
    let ids: std::collections::HashSet<_> =
        rig.outbox.reports().iter().map(|r| r.report_id).collect();
    assert_eq!(ids.len(), 4, "a fresh report_id per report");
}

#[actix_rt::test]
async fn gauges_are_sampled_on_their_own_tick() {
    let rig = start(
        TelemetryConfig::builder()
            .first_report_in(Duration::from_secs(600))
            .sample_every(Duration::from_secs(60)),
    )
    .await;
    rig.collector.do_send(ClientConnected::new("a", "u"));
    pass(Duration::from_secs(300) + MS).await;
    rig.collector.do_send(ClientConnected::new("b", "u"));
    pass(Duration::from_secs(300)).await;
    let reports = rig.outbox.reports();
    assert_eq!(reports.len(), 1);
    let concurrent = &reports[0].data.usage.concurrent_clients;
    // Ten ticks (5 with one client, 5 with two) and the snapshot's own sample (two).
    assert_eq!((concurrent.min, concurrent.max), (1, 2));
    assert_eq!(concurrent.mode, Some(2));
    let memory = &reports[0].data.resources.used_memory;
    assert!(memory.min > 0 && memory.min <= memory.max);
}

#[actix_rt::test]
async fn the_report_carries_the_environment_and_ids() {
    let cluster = uuid::Uuid::new_v4();
    let rig = start(
        TelemetryConfig::builder()
            .first_report_in(Duration::ZERO)
            .cluster_uuid(cluster)
            .instance_id("instance-7")
            .electric_version("1.2.3-test"),
    )
    .await;
    rig.collector.do_send(PgVersion::new("14.9").unwrap());
    pass(MS).await;
    let report = &rig.outbox.reports()[0];
    assert_eq!(report.report_version, REPORT_VERSION);
    let env = &report.data.environment;
    assert_eq!(env.electric_cluster_uuid, cluster);
    assert_eq!(env.electric_instance_id, "instance-7");
    assert_eq!(report.data.electric_version, "1.2.3-test");
    assert_eq!(env.pg_version.as_deref(), Some("14.9"));
    assert!(env.cores >= 1 && env.ram > 0);
    assert!(humantime::parse_rfc3339(&report.timestamp).is_ok());
    assert!(humantime::parse_rfc3339(&report.last_reported).is_ok());
}
