//! End to end through the public handle: recorded usage reaches a real receiver on loopback
//! exactly, across several reports and the final flush; disabled telemetry sends nothing.

use std::time::{Duration, Instant};

use crate::common::{accepted, env_of, eventually, free_port, sum_counters, Answer, Receiver};
use electric_telemetry::internals::*;
use electric_telemetry::*;

fn config(receiver: &Receiver, storage: &tempfile::TempDir) -> TelemetryConfigBuilder {
    TelemetryConfig::builder()
        .url(&receiver.url)
        .storage_dir(storage.path())
        .request_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(3))
        // These tests count reports on a short real clock; spreading has tests/suite/spread.rs.
        .spread_reports(false)
}

/// What a worker recorded, in the order of `common::counters`.
fn work(telemetry: &Telemetry, worker: u64, rounds: u64) -> [u64; 9] {
    let mut totals = [0u64; 9];
    for round in 0..rounds {
        let client = format!("client-{worker}-{round}");
        let ops = 1 + (round % 7);
        telemetry.record(ReplicatedFromPg::new(1, ops));
        telemetry.record(ReceivedFromClient::new(1, ops + 1));
        telemetry.record(SentToClients::new(2, 2 * ops));
        totals[0] += ops;
        totals[1] += 1;
        totals[2] += ops + 1;
        totals[3] += 1;
        totals[4] += 2 * ops;
        totals[5] += 2;
        // Few enough structured events (5 per 50 rounds) that all of a test's fit the intake
        // queue (8 192) even if the collector never drained during the run: none can be shed.
        if round % 50 == 0 {
            telemetry.record(ClientConnected::new(&client, "user"));
            telemetry.record(InitialSync::new(vec![ops, 3]));
            telemetry.record(SubscriptionEstablished::new(&client, 2));
            telemetry.record(SubscriptionContinued::new(&client));
            telemetry.record(ClientDisconnected::new(&client));
            totals[6] += 1;
            totals[7] += 1;
            totals[8] += 1;
        }
        if round % 100 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    totals
}

#[actix_rt::test]
async fn counts_over_all_reports_equal_what_was_recorded_including_the_final_flush() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(
        config(&receiver, &storage)
            .first_report_in(Duration::from_millis(200))
            .interval(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .unwrap();
    // Two plain threads and this actix thread record at once, across report boundaries.
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let t = telemetry.clone();
            std::thread::spawn(move || work(&t, w, 20_000))
        })
        .collect();
    let mut expected = [0u64; 9];
    while workers.iter().any(|w| !w.is_finished()) {
        let mine = work(&telemetry, 9, 100);
        expected.iter_mut().zip(mine).for_each(|(e, m)| *e += m);
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    for w in workers {
        let theirs = w.join().unwrap();
        expected.iter_mut().zip(theirs).for_each(|(e, t)| *e += t);
    }
    assert!(
        eventually(Duration::from_secs(5), || receiver.received().len() >= 2).await,
        "at least two scheduled reports before the shutdown"
    );
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);

    let reports = receiver.reports();
    let dropped: u64 = reports.iter().map(|r| r.dropped_events).sum();
    assert_eq!(dropped, 0, "nothing was shed at this rate");
    assert_eq!(sum_counters(&reports), expected);
    // Windows are contiguous: each report begins where the previous one ended.
    for pair in reports.windows(2) {
        assert_eq!(pair[1].last_reported, pair[0].timestamp);
    }
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_clean_stop_before_the_first_report_loses_nothing() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(config(&receiver, &storage).build().unwrap()).unwrap();
    telemetry.record(ClientConnected::new("c1", "u1"));
    telemetry.record(ClientConnected::new("c2", "u1"));
    telemetry.record(ReplicatedFromPg::new(3, 30));
    telemetry.record(ElectrifiedTables { count: 2 });
    telemetry.add(Counter::OperationsSentToClients, 11);
    let outcome = telemetry.shutdown().await;
    assert_eq!(outcome, ShutdownOutcome::Delivered);
    let reports = receiver.reports();
    assert_eq!(reports.len(), 1, "the final flush is the only report");
    let usage = &reports[0].data.usage;
    assert_eq!(
        (usage.transactions_from_pg, usage.operations_from_pg),
        (3, 30)
    );
    assert_eq!(usage.operations_sent_to_clients, 11);
    assert_eq!((usage.distinct_clients, usage.distinct_users), (2, 1));
    assert_eq!(usage.electrified_tables, 2);
    // Shut down once; later calls do nothing and recording is harmless.
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::NotRunning);
    telemetry.record(ClientConnected::new("late", "u"));
    receiver.stop().await;
}

#[actix_rt::test]
async fn shutdown_never_outlasts_its_deadline_when_the_endpoint_hangs() {
    let receiver = Receiver::start();
    receiver.delay_answers(Duration::from_secs(30));
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(
        config(&receiver, &storage)
            .request_timeout(Duration::from_secs(30))
            .shutdown_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .unwrap();
    telemetry.record(ReplicatedFromPg::new(1, 1));
    let started = Instant::now();
    let outcome = telemetry.shutdown().await;
    assert_eq!(
        outcome,
        ShutdownOutcome::NotDelivered(DeliveryError::DeadlineExceeded)
    );
    // Generous bound for a shared machine: the point is "not 30 s".
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let outbox = std::fs::read_dir(outbox_dir(storage.path()))
        .unwrap()
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            path.extension().is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(
        outbox, 1,
        "the final report waits in the outbox for the next start"
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn reports_a_dead_endpoint_missed_are_delivered_after_the_next_start() {
    let storage = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}/checkpoint", free_port());
    let first = Telemetry::start(
        TelemetryConfig::builder()
            .url(dead)
            .storage_dir(storage.path())
            .spread_reports(false)
            .first_report_in(Duration::ZERO)
            .interval(Duration::from_secs(1))
            .retry_initial_backoff(Duration::from_millis(20))
            .retry_max_backoff(Duration::from_millis(50))
            .shutdown_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut expected = work(&first, 1, 500);
    // A scheduled report fails and is kept, and snapshots keep coming meanwhile.
    actix_rt::time::sleep(Duration::from_millis(1300)).await;
    let status = first.outbox_status().await.unwrap();
    assert!(
        status.pending >= 2 && status.failed_attempts >= 1,
        "{status:?}"
    );
    expected
        .iter_mut()
        .zip(work(&first, 2, 300))
        .for_each(|(e, m)| *e += m);
    assert!(matches!(
        first.shutdown().await,
        ShutdownOutcome::NotDelivered(_)
    ));

    let receiver = Receiver::start();
    let second = Telemetry::start(config(&receiver, &storage).build().unwrap()).unwrap();
    expected
        .iter_mut()
        .zip(work(&second, 3, 200))
        .for_each(|(e, m)| *e += m);
    assert_eq!(second.shutdown().await, ShutdownOutcome::Delivered);
    let reports = accepted(&receiver.received());
    assert!(
        reports.len() >= 3,
        "the earlier run's reports, then this run's"
    );
    assert_eq!(
        sum_counters(&reports),
        expected,
        "nothing lost across the outage"
    );
    assert_eq!(reports.iter().map(|r| r.dropped_reports).sum::<u64>(), 0);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_flaky_endpoint_loses_nothing() {
    let receiver = Receiver::start();
    let retry_now = Answer::retry_after(429, "0");
    receiver.script([
        Answer::status(500),
        retry_now.clone(),
        Answer::status(503),
        Answer::status(200),
        Answer::status(502),
        retry_now,
    ]);
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(
        config(&receiver, &storage)
            .first_report_in(Duration::ZERO)
            .interval(Duration::from_secs(1))
            .retry_initial_backoff(Duration::from_millis(20))
            .retry_max_backoff(Duration::from_millis(50))
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut expected = [0u64; 9];
    for round in 0..12 {
        let done = work(&telemetry, round, 200);
        expected.iter_mut().zip(done).for_each(|(e, d)| *e += d);
        actix_rt::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let received = receiver.received();
    assert!(
        received.len() >= 7,
        "the script was played: {}",
        received.len()
    );
    assert_eq!(sum_counters(&accepted(&received)), expected);
    receiver.stop().await;
}

#[actix_rt::test]
async fn an_endpoint_failing_through_the_shutdown_is_not_counted_as_delivered() {
    let receiver = Receiver::start();
    receiver.answer_with(503);
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(
        config(&receiver, &storage)
            .shutdown_timeout(Duration::from_millis(800))
            .build()
            .unwrap(),
    )
    .unwrap();
    let outcome = telemetry.shutdown().await;
    assert_eq!(
        outcome,
        ShutdownOutcome::NotDelivered(DeliveryError::DeadlineExceeded)
    );
    assert!(
        receiver.received().len() >= 2,
        "retried until the deadline, not given up at the first 503"
    );
    let kept = std::fs::read_dir(outbox_dir(storage.path()))
        .unwrap()
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            path.extension().is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(
        kept, 1,
        "the final report waits in the outbox for the next start"
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_failure_during_the_shutdown_is_retried_within_the_deadline() {
    let receiver = Receiver::start();
    receiver.script([Answer::status(503), Answer::status(502)]);
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(config(&receiver, &storage).build().unwrap()).unwrap();
    telemetry.record(ReplicatedFromPg::new(1, 4));
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    assert_eq!(sum_counters(&accepted(&receiver.received()))[0], 4);
    receiver.stop().await;
}

#[actix_rt::test]
async fn the_cluster_uuid_is_the_same_after_a_restart() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let telemetry = Telemetry::start(config(&receiver, &storage).build().unwrap()).unwrap();
        assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    }
    let reports = receiver.reports();
    let env = |i: usize| &reports[i].data.environment;
    assert_eq!(env(0).electric_cluster_uuid, env(1).electric_cluster_uuid);
    assert_ne!(env(0).electric_instance_id, env(1).electric_instance_id);
    receiver.stop().await;
}

#[test]
fn starting_outside_an_actix_system_is_an_error_not_a_panic() {
    let storage = tempfile::tempdir().unwrap();
    let config = TelemetryConfig::builder()
        .url("http://127.0.0.1:9/")
        .storage_dir(storage.path())
        .build()
        .unwrap();
    let err = Telemetry::start(config).unwrap_err();
    assert!(matches!(err, StartError::NoSystem));
    assert!(err.to_string().contains("actix System"));
}

#[actix_rt::test]
async fn the_audit_file_holds_exactly_the_reports_the_endpoint_accepted() {
    let receiver = Receiver::start();
    receiver.script([Answer::status(503), Answer::status(400)]);
    let storage = tempfile::tempdir().unwrap();
    let audit = storage.path().join("audit").join("telemetry.jsonl");
    let telemetry = Telemetry::start(
        config(&receiver, &storage)
            .first_report_in(Duration::ZERO)
            .interval(Duration::from_secs(1))
            .retry_initial_backoff(Duration::from_millis(20))
            .retry_max_backoff(Duration::from_millis(50))
            .audit_log(&audit)
            .build()
            .unwrap(),
    )
    .unwrap();
    telemetry.record(ReplicatedFromPg::new(1, 2));
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    telemetry.record(ReplicatedFromPg::new(1, 3));
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let received = receiver.received();
    let accepted_bodies: Vec<&[u8]> = received
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.body.as_slice())
        .collect();
    let text = std::fs::read(&audit).unwrap();
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert!(!lines.is_empty());
    assert_eq!(
        lines, accepted_bodies,
        "byte for byte, in order, refused ones left out"
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn every_opt_out_sends_nothing_writes_nothing_and_the_handle_still_works() {
    let receiver = Receiver::start();
    let opt_outs: [&[(&str, &str)]; 3] = [
        &[("ELECTRIC_TELEMETRY", "disabled")],
        &[("DO_NOT_TRACK", "1"), ("ELECTRIC_TELEMETRY", "true")],
        &[("ELECTRIC_TELEMETRY", "OFF")],
    ];
    let mut running = Vec::new();
    for vars in opt_outs {
        let storage = tempfile::tempdir().unwrap();
        let config = config(&receiver, &storage)
            .first_report_in(Duration::ZERO)
            .interval(Duration::from_secs(1))
            .with_env_from(env_of(vars))
            .unwrap()
            .build()
            .unwrap();
        let telemetry = Telemetry::start(config).unwrap();
        assert!(!telemetry.is_enabled(), "{vars:?}");
        assert!(telemetry.collector().is_none());
        telemetry.record(ClientConnected::new("c", "u"));
        telemetry.record(ReplicatedFromPg::new(1, 1));
        telemetry.add(Counter::OperationsFromPg, 1);
        running.push((vars, telemetry, storage));
    }
    // Past a report's due time for every one of them.
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    for (vars, telemetry, storage) in running {
        assert_eq!(telemetry.shutdown().await, ShutdownOutcome::NotRunning);
        let written = std::fs::read_dir(storage.path()).unwrap().count();
        assert_eq!(
            written, 0,
            "nothing written to the storage dir with {vars:?}"
        );
    }
    assert!(
        receiver.received().is_empty(),
        "no report reached the receiver"
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn preview_shows_what_would_be_sent_and_changes_no_later_report() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(config(&receiver, &storage).build().unwrap()).unwrap();
    telemetry.record(ClientConnected::new("c1", "u1"));
    telemetry.record(ReplicatedFromPg::new(2, 9));
    telemetry.record(SubscriptionEstablished::new("c1", 3));
    let mut previews = Vec::new();
    for _ in 0..5 {
        previews.push(telemetry.preview().await.expect("telemetry is running"));
    }
    let preview = &previews[0];
    let usage = &preview.data.usage;
    assert_eq!(
        (usage.transactions_from_pg, usage.operations_from_pg),
        (2, 9)
    );
    assert_eq!(usage.subscriptions_established, 1);
    assert_eq!(usage.distinct_clients, 1);
    assert_eq!(
        (usage.concurrent_clients.min, usage.concurrent_clients.max),
        (1, 1)
    );
    for later in &previews[1..] {
        assert_eq!(
            later.data.usage, preview.data.usage,
            "a preview resets nothing"
        );
        assert_eq!(
            later.last_reported, preview.last_reported,
            "nor starts a window"
        );
    }
    let json = telemetry.preview_json().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Report>(&json).unwrap().data.usage,
        *usage
    );
    assert!(receiver.received().is_empty(), "a preview sends nothing");

    telemetry.record(ClientConnected::new("c2", "u2"));
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let reports = receiver.reports();
    assert_eq!(reports.len(), 1);
    let sent = &reports[0];
    assert_eq!(sent.last_reported, preview.last_reported, "the same window");
    assert_ne!(sent.report_id, preview.report_id);
    let usage = &sent.data.usage;
    assert_eq!(
        (usage.transactions_from_pg, usage.operations_from_pg),
        (2, 9)
    );
    assert_eq!(usage.subscriptions_established, 1);
    assert_eq!(usage.distinct_clients, 2);
    // Had a preview recorded its gauge sample (1 client), the minimum would be 1: the only
    // sample is the final snapshot's own, with both clients connected.
    assert_eq!(
        (usage.concurrent_clients.min, usage.concurrent_clients.max),
        (2, 2)
    );
    assert!(
        telemetry.preview().await.is_none(),
        "nothing to preview once stopped"
    );
    assert!(Telemetry::disabled().preview().await.is_none());
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_wal_time_outside_rfc3339_is_sent_as_null_and_never_stops_reporting() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(config(&receiver, &storage).build().unwrap()).unwrap();
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    for bad in [
        epoch - Duration::from_secs(1),
        epoch + Duration::from_secs(400_000_000_000),
    ] {
        telemetry.record(WalStatus {
            oldest_wal_time: Some(bad),
            wal_cache_memory: 7,
            wal_transactions: 1,
        });
        let preview = telemetry.preview().await.expect("the reporter survived");
        assert_eq!(preview.data.resources.oldest_wal_time, None);
        assert_eq!(preview.data.resources.wal_cache_memory, 7);
    }
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    assert_eq!(receiver.reports()[0].data.resources.oldest_wal_time, None);
    receiver.stop().await;
}
