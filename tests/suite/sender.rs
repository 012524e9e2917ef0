//! The sender and its outbox against real servers on loopback that inject faults.
//!
//! In each test the reports the endpoint accepted, de-duplicated by `report_id`, add up
//! exactly to what was queued, except what the test drops on purpose, which is counted in
//! `dropped_reports`.

use std::path::Path;
use std::time::Duration;

use crate::common::sender::{numbered_report, sender_config, start_sender};
use crate::common::{
    accepted, eventually, free_port, outbox_status_when, Answer, CuttingServer, Receiver,
};
use actix::prelude::*;
use electric_telemetry::internals::*;
use electric_telemetry::*;

const WAIT: Duration = Duration::from_secs(10);

fn ops(reports: &[Report]) -> Vec<u64> {
    reports
        .iter()
        .map(|r| r.data.usage.operations_from_pg)
        .collect()
}

async fn pending(sender: &Addr<Sender>) -> usize {
    sender.send(GetOutboxStatus).await.unwrap().pending
}

/// Waits (bounded) until the outbox is empty. The receiver notes a request before it answers,
/// so the sender settles a delivery a moment after the receiver has it.
async fn drained(sender: &Addr<Sender>) -> bool {
    outbox_status_when(sender, |s| s.pending == 0).await.pending == 0
}

fn outbox_files(storage: &Path, ext: &str) -> usize {
    std::fs::read_dir(outbox_dir(storage)).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == ext))
            .count()
    })
}

#[actix_rt::test]
async fn a_2xx_answer_is_delivered_as_json_with_an_idempotency_key() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let (sender, _) = start_sender(sender_config(&receiver.url, storage.path()));
    let sent = numbered_report(1);
    sender.send(Deliver(sent.clone())).await.unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 1).await);
    let first = &receiver.received()[0];
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    assert_eq!(first.idempotency_key, Some(sent.report_id.to_string()));
    assert!(first
        .user_agent
        .as_deref()
        .unwrap()
        .starts_with("electric-telemetry/"));
    assert_eq!(first.report(), sent, "the body is the report, unchanged");
    assert!(
        first.body.len() < 2048,
        "about the seed's ~1.5 kB: {}",
        first.body.len()
    );
    assert!(eventually(WAIT, || outbox_files(storage.path(), "json") == 0).await);
    assert!(drained(&sender).await, "the outbox empties");
    receiver.stop().await;
}

#[actix_rt::test]
async fn transient_statuses_are_retried_with_the_same_report_id_until_delivered() {
    let receiver = Receiver::start();
    receiver.script([500, 502, 503, 408].map(Answer::status));
    let storage = tempfile::tempdir().unwrap();
    let (sender, _) = start_sender(sender_config(&receiver.url, storage.path()));
    sender.send(Deliver(numbered_report(5))).await.unwrap();
    sender.send(Deliver(numbered_report(7))).await.unwrap();
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 2).await);
    let received = receiver.received();
    assert_eq!(received.len(), 6, "four failures, then both reports");
    let keys: std::collections::HashSet<_> = received[..5]
        .iter()
        .map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "every retry of the first report carries its id"
    );
    assert_eq!(ops(&accepted(&received)), [5, 7], "in order, nothing lost");
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_redirect_is_not_followed_and_the_report_is_kept() {
    // Each redirect names a real place to go: one that is followed would be seen there.
    let elsewhere = Receiver::start();
    let receiver = Receiver::start();
    receiver.answer_header("Location", &elsewhere.url);
    receiver.script([301, 307, 308].map(Answer::status));
    let storage = tempfile::tempdir().unwrap();
    let (sender, _) = start_sender(sender_config(&receiver.url, storage.path()));
    sender.send(Deliver(numbered_report(5))).await.unwrap();
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 1).await);
    let received = receiver.received();
    assert_eq!(
        received.len(),
        4,
        "three redirects, each retried at the same URL"
    );
    assert!(
        elsewhere.received().is_empty(),
        "no redirect was followed to its Location"
    );
    assert!(received
        .iter()
        .all(|r| r.idempotency_key == received[0].idempotency_key));
    assert_eq!(
        accepted(&received)[0].dropped_reports,
        0,
        "nothing was dropped"
    );
    elsewhere.stop().await;
    receiver.stop().await;
}

#[actix_rt::test]
async fn retry_after_in_seconds_is_honoured() {
    let receiver = Receiver::start();
    receiver.script([Answer::retry_after(429, "1")]);
    let storage = tempfile::tempdir().unwrap();
    // The backoff alone would retry within 100 ms; the endpoint asks for 1 s.
    let (sender, _) = start_sender(
        sender_config(&receiver.url, storage.path()).retry_max_backoff(Duration::from_secs(5)),
    );
    sender.send(Deliver(numbered_report(3))).await.unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 2).await);
    let received = receiver.received();
    let gap = received[1].at - received[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
    assert_eq!(ops(&accepted(&received)), [3]);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_hanging_endpoint_times_out_and_the_report_is_retried() {
    let receiver = Receiver::start();
    receiver.script([Answer {
        status: 200,
        delay: Duration::from_secs(5),
        ..Answer::default()
    }]);
    let storage = tempfile::tempdir().unwrap();
    let (sender, _) = start_sender(sender_config(&receiver.url, storage.path()));
    sender.send(Deliver(numbered_report(9))).await.unwrap();
    assert!(eventually(WAIT, || receiver.received().len() >= 2).await);
    let received = receiver.received();
    // The first attempt was accepted by the server but never answered in time: the retry
    // carries the same id, so the receiver counts the report once.
    assert_eq!(received[0].idempotency_key, received[1].idempotency_key);
    assert_eq!(ops(&accepted(&received)), [9]);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_refused_connection_is_retried_until_the_endpoint_comes_up() {
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/checkpoint");
    let (sender, _) = start_sender(sender_config(&url, storage.path()));
    for n in 1..=3 {
        sender.send(Deliver(numbered_report(n))).await.unwrap();
    }
    let failed = outbox_status_when(&sender, |s| s.failed_attempts >= 3)
        .await
        .failed_attempts;
    assert!(failed >= 3, "the endpoint was tried while down");
    assert_eq!(
        outbox_files(storage.path(), "json"),
        3,
        "kept on disk meanwhile"
    );
    let receiver = Receiver::start_on(port);
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 3).await);
    assert_eq!(ops(&accepted(&receiver.received())), [1, 2, 3]);
    assert!(drained(&sender).await, "the outbox empties");
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_connection_cut_mid_response_is_retried() {
    let server = CuttingServer::start(2);
    let storage = tempfile::tempdir().unwrap();
    let (sender, _) = start_sender(sender_config(&server.url, storage.path()));
    sender.send(Deliver(numbered_report(4))).await.unwrap();
    assert!(eventually(WAIT, || server.reports().len() == 1).await);
    assert_eq!(ops(&server.reports()), [4]);
    assert!(eventually(WAIT, || outbox_files(storage.path(), "json") == 0).await);
}

#[actix_rt::test]
async fn a_refused_report_is_kept_and_does_not_hold_up_the_next_one() {
    let receiver = Receiver::start();
    receiver.script([Answer::status(422)]);
    let storage = tempfile::tempdir().unwrap();
    // A long report interval: the refused report is not tried again within the test, unless
    // flushed.
    let (sender, _) = start_sender(
        sender_config(&receiver.url, storage.path()).interval(Duration::from_secs(3600)),
    );
    let first = numbered_report(1);
    sender.send(Deliver(first.clone())).await.unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 1).await);
    sender.send(Deliver(numbered_report(2))).await.unwrap();
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 1).await);
    let delivered = accepted(&receiver.received());
    assert_eq!(
        ops(&delivered),
        [2],
        "the next report went out behind the refused one"
    );
    assert_eq!(delivered[0].dropped_reports, 0, "nothing was dropped");
    let status = outbox_status_when(&sender, |s| s.pending == 1).await;
    assert_eq!(status.pending, 1, "the refused report is kept");
    assert_eq!(status.dropped_not_yet_reported, 0);
    assert_eq!(outbox_files(storage.path(), "json"), 1, "on disk");
    assert_eq!(receiver.received().len(), 2, "not retried before its time");
    // A flush tries it now, and it goes out under its own id, exactly once.
    assert_eq!(sender.send(Flush).await.unwrap(), Ok(()));
    let delivered = accepted(&receiver.received());
    assert_eq!(ops(&delivered), [2, 1]);
    assert_eq!(delivered[1].report_id, first.report_id);
    assert!(delivered.iter().all(|r| r.dropped_reports == 0));
    assert_eq!(outbox_files(storage.path(), "json"), 0);
    receiver.stop().await;
}

/// Means whose shortest decimal form does not read back exactly without care (such as
/// `3.1363636363636362`): a report re-serialised after being read from disk could differ from
/// its first attempt in the last digit.
fn awkward_floats(mut r: Report) -> Report {
    let means = [
        3.1363636363636362,
        0.30000000000000004,
        2.0 / 3.0,
        1.0e-7 / 3.0,
        123_456_789.123_456_78 / 7.0,
    ];
    r.data.resources.used_memory.mean = means[0];
    r.data.usage.concurrent_clients.mean = means[1];
    r.data.usage.subscriptions_continued_per_client.mean = means[2];
    r.data.usage.subscriptions_included_tables.mean = means[3];
    r.data.usage.subscriptions_rows_per_shape.mean = means[4];
    r
}

#[actix_rt::test]
async fn a_report_read_from_disk_after_a_restart_is_sent_byte_for_byte() {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = |body: &[u8]| BuildHasherDefault::<DefaultHasher>::default().hash_one(body);
    let receiver = Receiver::start();
    receiver.answer_with(503);
    let storage = tempfile::tempdir().unwrap();
    let (first, arbiter) = start_sender(sender_config(&receiver.url, storage.path()));
    let queued: Vec<Report> = (1..=5)
        .map(|n| awkward_floats(numbered_report(n)))
        .collect();
    for r in &queued {
        first.send(Deliver(r.clone())).await.unwrap();
    }
    // The first report's first attempt, then the process "dies".
    assert!(eventually(WAIT, || !receiver.received().is_empty()).await);
    arbiter.stop();
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let before = receiver.received();
    receiver.answer_with(200);

    let (second, _) = start_sender(sender_config(&receiver.url, storage.path()));
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 5).await);
    assert!(drained(&second).await);
    let after = receiver.received();
    let first_attempt = hash(&before[0].body);
    for attempt in after
        .iter()
        .filter(|r| r.idempotency_key == before[0].idempotency_key)
    {
        assert_eq!(
            hash(&attempt.body),
            first_attempt,
            "every attempt of a report sends the same bytes, before and after the restart:\n{}\n{}",
            String::from_utf8_lossy(&before[0].body),
            String::from_utf8_lossy(&attempt.body)
        );
    }
    // Every report read from disk goes out as the bytes it was queued as.
    let sent_first: std::collections::HashMap<_, _> = after
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| (r.idempotency_key.clone().unwrap(), hash(&r.body)))
        .collect();
    for r in &queued {
        let queued_bytes = serde_json::to_vec(r).unwrap();
        assert_eq!(
            sent_first[&r.report_id.to_string()],
            hash(&queued_bytes),
            "report {} as it was queued",
            r.data.usage.operations_from_pg
        );
    }
    assert_eq!(accepted(&after), queued, "same figures, same order");
    receiver.stop().await;
}

#[actix_rt::test]
async fn past_the_retention_bound_the_oldest_reports_are_dropped_and_counted() {
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/checkpoint");
    // 3 h of 1 h reports, plus a final one: 4 reports at most.
    let (sender, _) = start_sender(
        sender_config(&url, storage.path())
            .interval(Duration::from_secs(3600))
            .outbox_retention(Duration::from_secs(3 * 3600)),
    );
    for n in 1..=7 {
        sender.send(Deliver(numbered_report(n))).await.unwrap();
    }
    assert_eq!(pending(&sender).await, 4);
    assert_eq!(outbox_files(storage.path(), "json"), 4);
    let receiver = Receiver::start_on(port);
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 4).await);
    let delivered = accepted(&receiver.received());
    let dropped: u64 = delivered.iter().map(|r| r.dropped_reports).sum();
    assert_eq!(dropped, 3, "every dropped report is counted");
    assert_eq!(delivered.len() as u64 + dropped, 7);
    assert_eq!(ops(&delivered)[1..], [5, 6, 7], "the newest are kept");
    receiver.stop().await;
}

#[actix_rt::test]
async fn the_byte_bound_drops_the_oldest_reports_too() {
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/checkpoint");
    let one = serde_json::to_vec(&numbered_report(1)).unwrap().len() as u64;
    let (sender, _) =
        start_sender(sender_config(&url, storage.path()).outbox_max_bytes(3 * one + 10));
    for n in 1..=6 {
        sender.send(Deliver(numbered_report(n))).await.unwrap();
    }
    assert_eq!(pending(&sender).await, 3);
    let receiver = Receiver::start_on(port);
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 3).await);
    let delivered = accepted(&receiver.received());
    let dropped: u64 = delivered.iter().map(|r| r.dropped_reports).sum();
    assert_eq!(delivered.len() as u64 + dropped, 6);
    receiver.stop().await;
}

#[actix_rt::test]
async fn pending_reports_survive_a_kill_and_are_sent_once_after_the_restart() {
    let storage = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}/checkpoint", free_port());
    let (first, arbiter) = start_sender(sender_config(&dead, storage.path()));
    let queued: Vec<Report> = (1..=3).map(numbered_report).collect();
    for r in &queued {
        first.send(Deliver(r.clone())).await.unwrap();
    }
    // Deliver returns once the report is on disk; then the process "dies".
    assert_eq!(outbox_files(storage.path(), "json"), 3);
    arbiter.stop();

    let receiver = Receiver::start();
    let (second, _) = start_sender(sender_config(&receiver.url, storage.path()));
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 3).await);
    assert_eq!(
        accepted(&receiver.received()),
        queued,
        "same reports, same ids, in order"
    );
    assert!(drained(&second).await, "the outbox empties");
    assert_eq!(outbox_files(storage.path(), "json"), 0);
    // And a third start finds nothing left to send.
    let (_third, _) = start_sender(sender_config(&receiver.url, storage.path()));
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 3);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_corrupt_outbox_file_is_moved_aside_and_the_rest_is_sent() {
    let storage = tempfile::tempdir().unwrap();
    let dir = outbox_dir(storage.path());
    std::fs::create_dir_all(&dir).unwrap();
    let good = numbered_report(8);
    std::fs::write(
        dir.join(format!("{:020}-{}.json", 1, good.report_id)),
        serde_json::to_vec(&good).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join(format!("{:020}-x.json", 0)), b"{ not json").unwrap();
    std::fs::write(
        dir.join("00000000000000000002-y.json"),
        b"{\"report_id\": 1}",
    )
    .unwrap();
    std::fs::write(dir.join("00000000000000000003-z.json.tmp-77"), b"half").unwrap();
    let receiver = Receiver::start();
    let (sender, _) = start_sender(sender_config(&receiver.url, storage.path()));
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 1).await);
    assert_eq!(accepted(&receiver.received()), [good]);
    assert_eq!(outbox_files(storage.path(), "corrupt"), 2);
    // The two unreadable reports are losses: the next report counts them.
    let status = sender.send(GetOutboxStatus).await.unwrap();
    assert_eq!(status.dropped_not_yet_reported, 2);
    sender.send(Deliver(numbered_report(9))).await.unwrap();
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 2).await);
    assert_eq!(accepted(&receiver.received())[1].dropped_reports, 2);
    assert!(drained(&sender).await, "the outbox empties");
    assert!(!dir.join("00000000000000000003-z.json.tmp-77").exists());
    receiver.stop().await;
}

#[actix_rt::test]
async fn an_unwritable_storage_dir_keeps_reports_in_memory() {
    let storage = tempfile::tempdir().unwrap();
    let blocker = storage.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let receiver = Receiver::start();
    receiver.script([Answer::status(503)]);
    let (sender, _) = start_sender(sender_config(&receiver.url, &blocker));
    sender.send(Deliver(numbered_report(6))).await.unwrap();
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 1).await);
    assert_eq!(ops(&accepted(&receiver.received())), [6]);
    assert!(drained(&sender).await, "the outbox empties");
    receiver.stop().await;
}

#[actix_rt::test]
async fn flush_skips_the_backoff_wait() {
    let receiver = Receiver::start();
    receiver.script([Answer::status(503)]);
    let storage = tempfile::tempdir().unwrap();
    // A long backoff: only a flush gets the report out within this test.
    let (sender, _) = start_sender(
        sender_config(&receiver.url, storage.path())
            .retry_initial_backoff(Duration::from_secs(600))
            .retry_max_backoff(Duration::from_secs(600)),
    );
    sender.send(Deliver(numbered_report(2))).await.unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 1).await);
    // The flush also retries a failure a short wait apart, not after the 600 s backoff.
    let flushed = sender.send(Flush).await.unwrap();
    assert_eq!(flushed, Ok(()));
    assert_eq!(ops(&accepted(&receiver.received())), [2]);
    receiver.stop().await;
}

#[actix_rt::test]
async fn retry_after_zero_never_turns_into_a_retry_storm() {
    let receiver = Receiver::start();
    let now = Answer::retry_after(503, "0");
    receiver.script(std::iter::repeat_n(now, 1000));
    let storage = tempfile::tempdir().unwrap();
    let (sender, _) = start_sender(
        sender_config(&receiver.url, storage.path())
            .retry_initial_backoff(Duration::from_millis(200))
            .retry_max_backoff(Duration::from_secs(5)),
    );
    sender.send(Deliver(numbered_report(1))).await.unwrap();
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    // The backoff still applies (ceilings 0.2, 0.4, 0.8 s ...): a handful of attempts, where
    // honouring "0" literally made hundreds.
    let attempts = receiver.received().len();
    assert!(
        (1..=8).contains(&attempts),
        "{attempts} attempts in one second"
    );
    receiver.stop().await;
}

/// An outbox file as builds before byte-for-byte bodies wrote one that had absorbed a dropped
/// report's count: the report as a JSON value (keys sorted) with `outbox_absorbed` among its
/// fields (`layout.rs` of those builds: `to_value`, insert the marker, `to_vec`).
fn as_an_earlier_build_wrote_it(report: &Report, absorbed: uuid::Uuid) -> Vec<u8> {
    let mut value = serde_json::to_value(report).unwrap();
    value
        .as_object_mut()
        .unwrap()
        .insert("outbox_absorbed".into(), absorbed.to_string().into());
    serde_json::to_vec(&value).unwrap()
}

#[actix_rt::test]
async fn an_earlier_builds_absorbed_marker_is_honoured_and_never_sent() {
    // A kill between an earlier build's two steps of a drop: the report that took the count
    // (naming the dropped one) is on disk, and the dropped one's file is still there.
    let storage = tempfile::tempdir().unwrap();
    let outbox = outbox_dir(storage.path());
    std::fs::create_dir_all(&outbox).unwrap();
    let dropped = numbered_report(5);
    let mut taker = numbered_report(7);
    taker.dropped_reports = 1;
    std::fs::write(
        outbox.join(format!("{:020}-{}.json", 0, dropped.report_id)),
        serde_json::to_vec(&dropped).unwrap(),
    )
    .unwrap();
    std::fs::write(
        outbox.join(format!("{:020}-{}.json", 1, taker.report_id)),
        as_an_earlier_build_wrote_it(&taker, dropped.report_id),
    )
    .unwrap();

    let receiver = Receiver::start();
    let (sender, arbiter) = start_sender(sender_config(&receiver.url, storage.path()));
    assert!(drained(&sender).await);
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let received = receiver.received();
    let delivered = accepted(&received);
    assert_eq!(
        delivered.iter().map(|r| r.report_id).collect::<Vec<_>>(),
        [taker.report_id],
        "the dropped report is counted in the taker's dropped_reports, so it is never sent too"
    );
    assert_eq!(delivered[0].dropped_reports, 1);
    for r in &received {
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("outbox_absorbed"),
            "the outbox's own marker never reaches the endpoint: {text}"
        );
    }
    arbiter.stop();
    receiver.stop().await;
}
