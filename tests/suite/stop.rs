//! A stop nobody waits for: the shutdown flush against real sockets.
//!
//! - A refused connection ends the flush at once with the final report kept on disk: the
//!   outcome is the connect error, not the deadline.
//! - An endpoint that asked for time (`Retry-After`) gets no attempt before then, during the
//!   flush too: the report waits on disk.
//! - A hung endpoint still ends by `shutdown_timeout`.
//!
//! Outcomes are asserted (attempts, `ShutdownOutcome`, the outbox), never timings; the stop's
//! bounds are in docs/delivery.md ("The stop").

use std::path::Path;
use std::time::Duration;

use crate::common::{free_port, Answer, Receiver};
use electric_telemetry::internals::*;
use electric_telemetry::*;

fn config(url: &str, storage: &Path) -> TelemetryConfigBuilder {
    TelemetryConfig::builder()
        .url(url)
        .storage_dir(storage)
        .first_report_in(Duration::from_secs(3600))
        .interval(Duration::from_secs(4 * 3600))
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
        // Long: an early end can only come from the flush deciding so, not from this deadline.
        .shutdown_timeout(Duration::from_secs(10))
}

fn outbox_reports(storage: &Path) -> usize {
    std::fs::read_dir(outbox_dir(storage)).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count()
    })
}

#[actix_rt::test]
async fn a_refused_connection_ends_the_flush_at_once_and_keeps_the_report() {
    let storage = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/checkpoint", free_port());
    let telemetry = Telemetry::start(config(&url, storage.path()).build().unwrap()).unwrap();
    telemetry.record(ReplicatedFromPg::new(1, 3));
    let outcome = telemetry.shutdown().await;
    match &outcome {
        ShutdownOutcome::NotDelivered(DeliveryError::Transport(e)) => {
            assert!(!e.is_empty())
        }
        other => panic!("the connect error ends the flush, not the deadline: {other:?}"),
    }
    assert_eq!(
        outbox_reports(storage.path()),
        1,
        "the final report is kept for the next start"
    );
}

#[actix_rt::test]
async fn retry_after_is_honoured_during_the_flush() {
    let receiver = Receiver::start();
    receiver.script(std::iter::repeat_n(Answer::retry_after(503, "3600"), 50));
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(
        config(&receiver.url, storage.path())
            .first_report_in(Duration::ZERO)
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(
        crate::common::eventually(Duration::from_secs(10), || receiver.received().len() == 1).await,
        "the first report is tried and answered 503, Retry-After: 3600"
    );
    let status = telemetry.outbox_status().await.unwrap();
    assert_eq!(status.pending, 1, "{status:?}");
    let outcome = telemetry.shutdown().await;
    assert!(
        matches!(
            outcome,
            ShutdownOutcome::NotDelivered(DeliveryError::Status { status: 503, .. })
        ),
        "the endpoint's answer ends the flush: {outcome:?}"
    );
    assert_eq!(
        receiver.received().len(),
        1,
        "no attempt before the time the endpoint asked for"
    );
    assert_eq!(
        outbox_reports(storage.path()),
        2,
        "the first and the final report wait on disk"
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn retry_after_first_heard_during_the_flush_ends_it() {
    let receiver = Receiver::start();
    receiver.script(std::iter::repeat_n(Answer::retry_after(429, "3600"), 50));
    let storage = tempfile::tempdir().unwrap();
    let telemetry =
        Telemetry::start(config(&receiver.url, storage.path()).build().unwrap()).unwrap();
    let outcome = telemetry.shutdown().await;
    assert!(
        matches!(
            outcome,
            ShutdownOutcome::NotDelivered(DeliveryError::Status { status: 429, .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(receiver.received().len(), 1, "one attempt, then it waits");
    assert_eq!(outbox_reports(storage.path()), 1);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_hung_endpoint_still_ends_by_the_shutdown_timeout() {
    let receiver = Receiver::start();
    receiver.delay_answers(Duration::from_secs(30));
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(
        config(&receiver.url, storage.path())
            .request_timeout(Duration::from_secs(30))
            .shutdown_timeout(Duration::from_millis(500))
            .build()
            .unwrap(),
    )
    .unwrap();
    let outcome = telemetry.shutdown().await;
    assert_eq!(
        outcome,
        ShutdownOutcome::NotDelivered(DeliveryError::DeadlineExceeded)
    );
    assert_eq!(receiver.received().len(), 1, "the one attempt that hung");
    assert_eq!(outbox_reports(storage.path()), 1);
    receiver.stop().await;
}

/// Waits (bounded) until no live sender holds the outbox directory: its thread has ended.
async fn released(storage: &Path) -> bool {
    let lock = outbox_dir(storage).join(".lock");
    crate::common::eventually(Duration::from_secs(10), || {
        std::fs::File::open(&lock).is_ok_and(|f| f.try_lock().is_ok())
    })
    .await
}

/// What the outbox left behind stands for: reports on disk (each once plus the drops it
/// carries) and drop counts; and whether the next start is told the run ended uncleanly.
fn left_behind(storage: &Path) -> (u64, bool) {
    let dir = outbox_dir(storage);
    let mut accounted = 0;
    let mut unclean = false;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        if name.ends_with(".json") && name.starts_with(|c: char| c.is_ascii_digit()) {
            let report: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            accounted += 1 + report["dropped_reports"].as_u64().unwrap();
        } else if name == "dropped_reports" || name == "unqueued" {
            let text = String::from_utf8(bytes).unwrap();
            accounted += text
                .split_whitespace()
                .next()
                .map_or(0, |n| n.parse::<u64>().unwrap());
        } else if name == "running" || name == "unclean_stop" {
            unclean = true;
        }
    }
    (accounted, unclean)
}

/// A shutdown cut by its deadline somewhere: before the final report is built, while it waits
/// in the mailbox of a sender busy with a large outbox left by an outage, or after it is queued.
/// Wherever it cuts, the final window is accounted for exactly once: on disk (or counted as
/// dropped) and the run marked as ended cleanly, or not queued at all and the run left marked
/// as unclean for the next start to say so. Never both, never neither.
#[actix_rt::test]
async fn a_shutdown_cut_anywhere_accounts_for_the_final_window_exactly_once() {
    const PENDING: u64 = 150;
    let url = format!("http://127.0.0.1:{}/checkpoint", free_port());
    let mut seen = std::collections::BTreeMap::new();
    for (trial, ms) in [1u64, 3, 10, 40, 1000].into_iter().enumerate() {
        let storage = tempfile::tempdir().unwrap();
        let dir = outbox_dir(storage.path());
        std::fs::create_dir_all(&dir).unwrap();
        for seq in 0..PENDING {
            let mut report = crate::common::seed_report();
            report.report_id = uuid::Uuid::new_v4();
            report.dropped_reports = 0;
            let name = format!("{seq:020}-{}.json", report.report_id);
            std::fs::write(dir.join(name), serde_json::to_vec(&report).unwrap()).unwrap();
        }
        let telemetry = Telemetry::start(
            config(&url, storage.path())
                .checkpoint_every(Duration::from_secs(3600))
                .shutdown_timeout(Duration::from_millis(ms))
                .build()
                .unwrap(),
        )
        .unwrap();
        telemetry.record(ReplicatedFromPg::new(1, 3));
        let _ = telemetry.shutdown().await;
        assert!(
            released(storage.path()).await,
            "trial {trial}: the sender ends"
        );
        let left = left_behind(storage.path());
        assert!(
            left == (PENDING + 1, false) || left == (PENDING, true),
            "trial {trial} ({ms} ms): {left:?} (reports accounted for, run marked unclean)"
        );
        *seen.entry(left).or_insert(0) += 1;
    }
    eprintln!("outcomes: {seen:?}");
}

#[actix_rt::test]
async fn a_refused_final_report_is_not_delivered_and_stays_in_the_outbox() {
    let receiver = Receiver::start();
    receiver.answer_with(404);
    let storage = tempfile::tempdir().unwrap();
    let telemetry =
        Telemetry::start(config(&receiver.url, storage.path()).build().unwrap()).unwrap();
    telemetry.record(ReplicatedFromPg::new(1, 3));
    let outcome = telemetry.shutdown().await;
    assert!(
        matches!(
            outcome,
            ShutdownOutcome::NotDelivered(DeliveryError::Status { status: 404, .. })
        ),
        "a refused final report was not delivered: {outcome:?}"
    );
    assert_eq!(receiver.received().len(), 1, "tried once");
    assert_eq!(outbox_reports(storage.path()), 1, "kept for the next start");
    receiver.stop().await;
}
