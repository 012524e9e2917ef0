//! The collector: every field of the window, every summary rule, and bad input.

use std::time::{Duration, SystemTime};

use actix::prelude::*;
use electric_telemetry::internals::*;
use electric_telemetry::*;

async fn snapshot(collector: &Addr<Collector>) -> WindowSnapshot {
    collector
        .send(TakeSnapshot { used_memory: None })
        .await
        .expect("the collector answers")
}

#[actix_rt::test]
async fn every_usage_field_is_aggregated_over_the_window() {
    let c = Collector::new().start();
    c.do_send(ClientConnected::new("c1", "u1"));
    c.do_send(ClientConnected::new("c2", "u1"));
    c.do_send(ClientConnected::new("c3", "u2"));
    c.do_send(SampleGauges {
        used_memory: Some(1000),
    });
    c.do_send(ClientDisconnected::new("c3"));
    c.do_send(SubscriptionEstablished::new("c1", 2));
    c.do_send(SubscriptionEstablished::new("c2", 5));
    c.do_send(SubscriptionEstablished::new("c2", 2));
    for client in ["c1", "c1", "c1", "c2"] {
        c.do_send(SubscriptionContinued::new(client));
    }
    c.do_send(InitialSync::new(vec![10, 30]));
    c.do_send(InitialSync::new(vec![20]));
    c.do_send(ReplicatedFromPg::new(2, 7));
    c.do_send(ReplicatedFromPg::new(1, 3));
    c.do_send(ReceivedFromClient::new(4, 9));
    c.do_send(SentToClients::new(6, 21));
    c.do_send(ElectrifiedTables { count: 4 });
    c.do_send(PgVersion::new("14.9").unwrap());
    let wal_time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_695_134_445);
    c.do_send(WalStatus {
        oldest_wal_time: Some(wal_time),
        wal_cache_memory: 2520,
        wal_transactions: 2,
    });
    let snap = c
        .send(TakeSnapshot {
            used_memory: Some(3000),
        })
        .await
        .unwrap();
    let u = &snap.usage;
    assert_eq!((u.distinct_clients, u.distinct_users), (3, 2));
    // Samples: 3 connected at the gauge tick, 2 at the snapshot.
    assert_eq!((u.concurrent_clients.min, u.concurrent_clients.max), (2, 3));
    assert_eq!(u.concurrent_clients.mean, 2.5);
    assert_eq!(u.subscriptions_established, 3);
    assert_eq!(u.subscriptions_included_tables.median.as_u64(), Some(2));
    assert_eq!(u.subscriptions_included_tables.mode, Some(2));
    assert_eq!(u.subscriptions_included_tables.max, 5);
    assert_eq!(u.subscriptions_continued, 4);
    // c1 continued 3, c2 continued 1.
    let per_client = &u.subscriptions_continued_per_client;
    assert_eq!(
        (per_client.min, per_client.max, per_client.mean),
        (1, 3, 2.0)
    );
    assert_eq!(u.initial_syncs, 2);
    let rows = &u.subscriptions_rows_per_shape;
    assert_eq!((rows.min, rows.max, rows.mean), (10, 30, 20.0));
    assert_eq!(rows.median.as_u64(), Some(20));
    assert_eq!((u.transactions_from_pg, u.operations_from_pg), (3, 10));
    assert_eq!(
        (
            u.transactions_received_from_clients,
            u.operations_received_from_clients
        ),
        (4, 9)
    );
    assert_eq!(
        (u.transactions_sent_to_clients, u.operations_sent_to_clients),
        (6, 21)
    );
    assert_eq!(u.electrified_tables, 4);
    assert_eq!(snap.pg_version.as_deref(), Some("14.9"));
    assert_eq!(snap.wal.oldest_wal_time, Some(wal_time));
    assert_eq!(
        (snap.wal.wal_cache_memory, snap.wal.wal_transactions),
        (2520, 2)
    );
    assert_eq!((snap.used_memory.min, snap.used_memory.max), (1000, 3000));
    assert_eq!(snap.dropped_events, 0);
    assert!(snap.began <= snap.taken);
}

#[actix_rt::test]
async fn a_snapshot_starts_a_new_window_and_keeps_latest_values() {
    let c = Collector::new().start();
    c.do_send(ClientConnected::new("c1", "u1"));
    c.do_send(SubscriptionEstablished::new("c1", 3));
    c.do_send(ReplicatedFromPg::new(1, 1));
    c.do_send(ElectrifiedTables { count: 9 });
    let first = snapshot(&c).await;
    let second = snapshot(&c).await;
    assert_eq!(second.began, first.taken, "windows are contiguous");
    let u = &second.usage;
    assert_eq!(u.subscriptions_established, 0);
    assert_eq!(u.operations_from_pg, 0);
    assert_eq!(u.distinct_clients, 0, "no id connected in this window");
    assert_eq!(u.subscriptions_included_tables, SummaryStats::default());
    // Latest values carry over: the table count, and the client still connected.
    assert_eq!(u.electrified_tables, 9);
    assert_eq!(u.concurrent_clients.max, 1);
}

#[actix_rt::test]
async fn an_empty_window_has_zero_summaries_and_null_modes() {
    let c = Collector::new().start();
    let snap = snapshot(&c).await;
    let u = &snap.usage;
    for stats in [
        u.subscriptions_continued_per_client.clone(),
        u.subscriptions_included_tables.clone(),
        u.subscriptions_rows_per_shape.clone(),
        snap.used_memory,
    ] {
        assert_eq!(stats, SummaryStats::default());
        assert_eq!(stats.mode, None);
    }
    // The snapshot itself samples the connected clients: one sample of 0.
    assert_eq!(u.concurrent_clients.mode, Some(0));
}

#[actix_rt::test]
async fn disconnects_and_continues_of_unknown_clients_never_underflow() {
    let c = Collector::new().start();
    c.do_send(ClientDisconnected::new("ghost"));
    c.do_send(ClientDisconnected::new("ghost"));
    c.do_send(ClientConnected::new("real", "u"));
    c.do_send(ClientDisconnected::new("real"));
    c.do_send(ClientDisconnected::new("real"));
    c.do_send(SubscriptionContinued::new("never-connected"));
    let snap = snapshot(&c).await;
    assert_eq!(snap.usage.concurrent_clients.max, 0);
    assert_eq!(snap.usage.subscriptions_continued, 1);
    // The same client on two connections counts twice while both are open.
    c.do_send(ClientConnected::new("twice", "u"));
    c.do_send(ClientConnected::new("twice", "u"));
    c.do_send(ClientDisconnected::new("twice"));
    let snap = snapshot(&c).await;
    assert_eq!(snap.usage.concurrent_clients.max, 1);
    assert_eq!(snap.usage.distinct_clients, 1);
}

#[actix_rt::test]
async fn counts_near_u64_max_saturate_instead_of_wrapping() {
    let c = Collector::new().start();
    c.do_send(ReplicatedFromPg::new(u64::MAX, u64::MAX - 1));
    c.do_send(ReplicatedFromPg::new(5, 5));
    c.do_send(SubscriptionEstablished::new("c", u64::MAX));
    c.do_send(SubscriptionEstablished::new("c", u64::MAX));
    c.do_send(InitialSync::new(vec![u64::MAX, u64::MAX, 0]));
    let snap = snapshot(&c).await;
    let u = &snap.usage;
    assert_eq!(u.transactions_from_pg, u64::MAX);
    assert_eq!(u.operations_from_pg, u64::MAX);
    assert_eq!(u.subscriptions_included_tables.max, u64::MAX);
    assert_eq!(
        u.subscriptions_included_tables.median.as_u64(),
        Some(u64::MAX)
    );
    assert_eq!(
        u.subscriptions_rows_per_shape.median.as_u64(),
        Some(u64::MAX)
    );
    // The actor survived all of it.
    assert!(c.connected());
}

#[actix_rt::test]
async fn invalid_pg_version_is_refused_with_a_clear_error() {
    for bad in [
        "",
        "   ",
        "14.9;DROP",
        "10.0.0.1",
        "db.internal.example.com",
        "sk_live_abc123",
        "0d64597b-168b-45a2-ad64-a9baba55fd59",
        "PostgreSQL 14.9",
        "14.9beta123",
        "1234.5",
    ] {
        let err = PgVersion::new(bad).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pg_version"), "{text}");
        assert!(text.contains("such as 14.9"), "{text}");
    }
    for (given, sent) in [
        ("14.9", "14.9"),
        ("16.1 (Debian 16.1-1.pgdg120+1)", "16.1"),
        ("15beta2", "15beta2"),
        ("17devel", "17devel"),
        (" 9.6.24 ", "9.6.24"),
    ] {
        assert_eq!(PgVersion::new(given).unwrap().as_str(), sent);
    }
}
