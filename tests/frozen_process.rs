//! A real process frozen past several report ticks (SIGSTOP, then SIGCONT) sends no burst of
//! empty windows when it wakes. The same with paused time, and the phase kept, is
//! `tests/suite/missed_ticks.rs`.
//!
//! A binary of its own: the frozen process is this test binary run again as a child (the
//! `child_reports_every_two_seconds` test, which does its part only when `ET_CHILD` is set),
//! and the parent sends it signals.

mod common;

use std::time::Duration;

use common::paused::scheduler_with_kept;
use electric_telemetry::*;

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
    let (kept, _collector) = scheduler_with_kept(&config);
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
