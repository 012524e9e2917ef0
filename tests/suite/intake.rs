//! The handle's intake: structured events through the bounded queue, shedding that is counted
//! exactly, and the order between the queue and typed messages. No timing anywhere.

use std::time::Duration;

use actix::prelude::*;
use electric_telemetry::internals::*;
use electric_telemetry::*;

/// Telemetry that never reports on its own (the first report is an hour away) and never
/// reaches past loopback.
fn start(storage: &tempfile::TempDir) -> (Telemetry, Addr<Collector>) {
    let config = TelemetryConfig::builder()
        .url("http://127.0.0.1:9/")
        .storage_dir(storage.path())
        .first_report_in(Duration::from_secs(3600))
        .build()
        .unwrap();
    let telemetry = Telemetry::start(config).unwrap();
    let collector = telemetry.collector().unwrap();
    (telemetry, collector)
}

async fn snapshot(collector: &Addr<Collector>) -> WindowSnapshot {
    collector
        .send(TakeSnapshot { used_memory: None })
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_full_queue_sheds_and_every_shed_event_is_counted() {
    let storage = tempfile::tempdir().unwrap();
    let (telemetry, collector) = start(&storage);
    // The collector runs on this thread: while this loop runs without yielding it cannot
    // drain, so the queue fills and the rest is shed.
    let sent = 50_000u64;
    for i in 0..sent {
        telemetry.record(SubscriptionEstablished::new("c", i % 4));
    }
    let snap = snapshot(&collector).await;
    let counted = snap.usage.subscriptions_established;
    assert!(snap.dropped_events > 0, "the queue is bounded");
    assert!(counted > 0);
    assert_eq!(counted + snap.dropped_events, sent);
    // Shedding is per window: the next one starts at zero.
    assert_eq!(snapshot(&collector).await.dropped_events, 0);
}

#[actix_rt::test]
async fn events_from_threads_under_snapshots_are_counted_or_shed_never_lost() {
    let storage = tempfile::tempdir().unwrap();
    let (telemetry, collector) = start(&storage);
    let per_thread = 60_000u64;
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let telemetry = telemetry.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    match (i + t) % 3 {
                        0 => telemetry.record(SubscriptionContinued::new("c")),
                        1 => telemetry.record(InitialSync::new(vec![1, 2, 3])),
                        _ => telemetry.record(SubscriptionEstablished::new("c", 1)),
                    }
                    telemetry.record(ReplicatedFromPg::new(1, 3));
                }
            })
        })
        .collect();
    let (mut counted, mut shed, mut transactions, mut operations) = (0u64, 0u64, 0u64, 0u64);
    let mut add = |snap: WindowSnapshot| {
        let u = &snap.usage;
        counted += u.subscriptions_continued + u.initial_syncs + u.subscriptions_established;
        shed += snap.dropped_events;
        transactions += u.transactions_from_pg;
        operations += u.operations_from_pg;
    };
    while threads.iter().any(|t| !t.is_finished()) {
        add(snapshot(&collector).await);
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
    threads.into_iter().for_each(|t| t.join().unwrap());
    add(snapshot(&collector).await);
    assert_eq!(counted + shed, 2 * per_thread);
    // Hot counters are never shed.
    assert_eq!((transactions, operations), (2 * per_thread, 6 * per_thread));
}

#[actix_rt::test]
async fn a_typed_message_comes_after_what_the_same_actor_queued_through_the_handle() {
    let storage = tempfile::tempdir().unwrap();
    let (telemetry, collector) = start(&storage);
    telemetry.record(ClientConnected::new("c1", "u1"));
    telemetry.record(InitialSync::new(vec![5, 6, 7]));
    collector.do_send(ClientDisconnected::new("c1"));
    let snap = snapshot(&collector).await;
    // Had the disconnect been handled first it would have been ignored, leaving c1 connected.
    assert_eq!(snap.usage.concurrent_clients.max, 0);
    assert_eq!(snap.usage.distinct_clients, 1);
    let rows = snap.usage.subscriptions_rows_per_shape;
    assert_eq!((rows.min, rows.max, rows.mean), (5, 7, 6.0));
}

#[actix_rt::test]
async fn gauge_samples_see_the_connects_queued_before_them() {
    let storage = tempfile::tempdir().unwrap();
    let (telemetry, collector) = start(&storage);
    for i in 0..3 {
        telemetry.record(ClientConnected::new(&format!("c{i}"), "u"));
    }
    collector
        .send(SampleGauges { used_memory: None })
        .await
        .unwrap();
    telemetry.record(ClientDisconnected::new("c0"));
    let snap = snapshot(&collector).await;
    let c = snap.usage.concurrent_clients;
    assert_eq!((c.min, c.max), (2, 3));
}

#[actix_rt::test]
async fn record_with_builds_nothing_when_disabled_and_records_when_enabled() {
    let disabled = Telemetry::disabled();
    disabled.record_with(|| -> ClientConnected { unreachable!("not built when disabled") });
    let storage = tempfile::tempdir().unwrap();
    let (telemetry, collector) = start(&storage);
    telemetry.record_with(|| ClientConnected::new("c", "u"));
    assert_eq!(snapshot(&collector).await.usage.distinct_clients, 1);
}
