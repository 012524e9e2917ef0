//! A process frozen past several report ticks (SIGSTOP then SIGCONT, a paused container, a VM
//! migration) sends one report when it wakes, not one per missed tick, and keeps its phase.
//!
//! With paused tokio time: one `advance` far past several ticks is what a frozen process sees
//! when it wakes. The scheduler hands reports to an actor that keeps them (no socket, so
//! paused time is safe). A real process stopped with SIGSTOP is `tests/frozen_process.rs`.

use std::time::Duration;

use crate::common::paused::{scheduler_with_kept, settle};
use electric_telemetry::*;
use tokio::time::{advance, pause};

const MS: Duration = Duration::from_millis(1);
const INTERVAL: Duration = Duration::from_secs(30);

#[actix_rt::test]
async fn missed_ticks_collapse_into_one_report_and_the_phase_is_kept() {
    pause();
    let storage = tempfile::tempdir().unwrap();
    let config = TelemetryConfig::builder()
        .first_report_in(INTERVAL)
        .interval(INTERVAL)
        // The phase of each instance is tests/suite/spread.rs's business; here ticks are predicted.
        .spread_reports(false)
        .sample_every(Duration::from_secs(3600))
        .storage_dir(storage.path())
        .build()
        .unwrap();
    let (kept, collector) = scheduler_with_kept(&config);
    settle().await;

    advance(INTERVAL + MS).await;
    settle().await;
    assert_eq!(kept.reports().len(), 1, "the first report, on time");

    // Frozen from 30 s to 181 s: the ticks at 60, 90, 120, 150 and 180 s were all missed.
    collector.do_send(ReplicatedFromPg::new(1, 5));
    advance(Duration::from_secs(151)).await;
    settle().await;
    let reports = kept.reports();
    assert_eq!(reports.len(), 2, "one report for the whole stall, not five");
    assert_eq!(reports[1].data.usage.operations_from_pg, 5);

    // The phase is kept: the next report is due at 210 s, not 30 s after the late one.
    advance(Duration::from_secs(29) - 2 * MS).await;
    settle().await;
    assert_eq!(kept.reports().len(), 2, "nothing before 210 s");
    advance(2 * MS).await;
    settle().await;
    assert_eq!(
        kept.reports().len(),
        3,
        "the next tick of the anchored phase"
    );
}

/// With spreading on (the default), a process frozen from before its first report until past
/// the lattice's first point also sends one report when it wakes: the spread first report and
/// the lattice's tick must not both fire, the second with an empty window.
#[actix_rt::test]
async fn a_stall_over_the_spread_first_report_and_the_lattice_gives_one_report() {
    pause();
    let storage = tempfile::tempdir().unwrap();
    let config = TelemetryConfig::builder()
        .first_report_in(INTERVAL)
        .interval(INTERVAL)
        .spread_reports(true)
        // Fixed ids, so the phase (and so this test) is the same at every run.
        .instance_id("stalled-instance-1")
        .cluster_uuid(uuid::Uuid::from_u128(0x5eed))
        .sample_every(Duration::from_secs(3600))
        .storage_dir(storage.path())
        .build()
        .unwrap();
    let (kept, collector) = scheduler_with_kept(&config);
    settle().await;

    // The first report is due within 30–45 s and the lattice's first point at least 15 s
    // after it, so before 75 s: frozen from start to 200 s misses both.
    collector.do_send(ReplicatedFromPg::new(1, 5));
    advance(Duration::from_secs(200)).await;
    settle().await;
    let reports = kept.reports();
    assert_eq!(reports.len(), 1, "one report for the whole stall");
    assert_eq!(reports[0].data.usage.operations_from_pg, 5);

    // And the lattice goes on: exactly one report per interval after that.
    advance(INTERVAL).await;
    settle().await;
    assert_eq!(kept.reports().len(), 2, "the next tick of the lattice");
}
