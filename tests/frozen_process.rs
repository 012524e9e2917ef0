//! A process frozen past several report ticks (SIGSTOP then SIGCONT, a paused container, a VM
//! migration) sends one report when it wakes, not one per missed tick, and keeps its phase.
//!
//! With paused tokio time: one `advance` far past several ticks is what a frozen process sees
//! when it wakes. The scheduler hands reports to an actor that keeps them (no socket, so
//! paused time is safe).

mod common;

use std::time::Duration;

use actix::prelude::*;
use common::paused::{settle, Kept};
use electric_telemetry::internals::*;
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
        // The phase of each instance is tests/spread.rs's business; here ticks are predicted.
        .spread_reports(false)
        .sample_every(Duration::from_secs(3600))
        .storage_dir(storage.path())
        .build()
        .unwrap();
    let kept = Kept::default();
    let collector = Collector::new().start();
    let addr = kept.clone().start();
    Scheduler::new(
        &config,
        collector.clone(),
        addr.clone().recipient(),
        addr.recipient(),
    )
    .start();
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

/// Run only as the child of the test below: a scheduler on real time with a 2 s interval,
/// printing each report's window in milliseconds, for 13 s of monotonic time (which goes on
/// while the process is stopped).
#[actix_rt::test]
async fn child_reports_every_two_seconds() {
    // An entry point for the parent test's child process: does nothing in a plain run.
    if std::env::var_os("ET_CHILD").is_none() {
        return;
    }
    let storage = tempfile::tempdir().unwrap();
    let config = TelemetryConfig::builder()
        .first_report_in(Duration::from_secs(2))
        .interval(Duration::from_secs(2))
        .spread_reports(false)
        .storage_dir(storage.path())
        .build()
        .unwrap();
    let kept = Kept::default();
    let collector = Collector::new().start();
    let addr = kept.clone().start();
    Scheduler::new(
        &config,
        collector,
        addr.clone().recipient(),
        addr.recipient(),
    )
    .start();
    println!("child ready");
    actix_rt::time::sleep(Duration::from_secs(13)).await;
    for report in kept.reports() {
        let end = humantime::parse_rfc3339(&report.timestamp).unwrap();
        let start = humantime::parse_rfc3339(&report.last_reported).unwrap();
        let window = end.duration_since(start).expect("never negative");
        println!("window_ms {}", window.as_millis());
    }
}

#[cfg(unix)]
#[test]
fn a_real_process_stopped_and_continued_sends_no_burst_of_empty_windows() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reports_every_two_seconds",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ET_CHILD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the test binary runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("child ready"));
    assert!(ready, "the child started");
    let pid = child.id().to_string();
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &pid]).status().unwrap();
        assert!(status.success(), "kill {name}");
    };
    // Stopped from about 3 s to 10 s: the ticks at 4, 6, 8 and 10 s are missed.
    std::thread::sleep(Duration::from_secs(3));
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(7));
    signal("-CONT");
    let windows: Vec<u64> = lines
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("window_ms ").map(|n| n.parse().unwrap()))
        .collect();
    assert!(child.wait().unwrap().success(), "the child passed");
    assert!(
        windows.len() >= 3,
        "reports before, across and after the stop: {windows:?}"
    );
    // Missed ticks fired at once gave windows of a few milliseconds; a collapsed stall gives
    // one long window. 200 ms is far below the 2 s interval and far above a burst's gap.
    assert!(
        windows.iter().all(|&ms| ms >= 200),
        "no empty windows after the stop: {windows:?}"
    );
    assert!(
        windows.iter().any(|&ms| ms >= 5000),
        "one window spans the stop: {windows:?}"
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
        .instance_id("review-stall-1")
        .cluster_uuid(uuid::Uuid::from_u128(0x5eed))
        .sample_every(Duration::from_secs(3600))
        .storage_dir(storage.path())
        .build()
        .unwrap();
    let kept = Kept::default();
    let collector = Collector::new().start();
    let addr = kept.clone().start();
    Scheduler::new(
        &config,
        collector.clone(),
        addr.clone().recipient(),
        addr.recipient(),
    )
    .start();
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
