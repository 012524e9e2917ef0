//! The collector's state stays under 1 MiB whatever it is fed: 100 000 distinct clients that
//! never disconnect, as many continuing clients, distinct table counts, distinct row counts and
//! memory samples, plus connect/disconnect churn.
//!
//! A binary of its own, with a single test: it is measured with a counting global allocator,
//! and any other test in the process would allocate in parallel and spoil the count.

use std::alloc::{GlobalAlloc, Layout, System as SystemAlloc};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use actix::prelude::*;
use electric_telemetry::internals::*;
use electric_telemetry::*;

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Relaxed);
        unsafe { SystemAlloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Relaxed);
        unsafe { SystemAlloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        unsafe { SystemAlloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: i64 = 1 << 20;

#[actix_rt::test]
async fn the_collector_state_stays_under_one_mib_whatever_it_is_fed() {
    let collector = Collector::new().start();
    let flush = || collector.send(SampleGauges { used_memory: None });
    flush().await.unwrap();
    let before = LIVE.load(Relaxed);
    let n = 100_000u64;
    for i in 0..n {
        let client = format!("client-{i}");
        collector.do_send(ClientConnected::new(&client, &format!("user-{i}")));
        collector.do_send(SubscriptionContinued::new(&client));
        collector.do_send(SubscriptionEstablished::new(&client, i * 7919));
        collector.do_send(InitialSync::new(vec![i * 104_729, i % 13, i << 20]));
        // Churn: a client that comes and goes, again and again.
        collector.do_send(ClientConnected::new(&format!("churn-{}", i % 20_000), "u"));
        collector.do_send(ClientDisconnected::new(&format!("churn-{}", i % 20_000)));
        if i % 10 == 0 {
            collector.do_send(SampleGauges {
                used_memory: Some(i * 4096 + 17),
            });
        }
        if i % 1_000 == 0 {
            // Keep the mailbox short, so that what is measured is the collector's state.
            flush().await.unwrap();
        }
    }
    flush().await.unwrap();
    let state = LIVE.load(Relaxed) - before;
    eprintln!("collector state: {} KiB", state / 1024);
    assert!(
        state <= MIB,
        "the collector's state grew by {} KiB",
        state / 1024
    );
    let snap = collector
        .send(TakeSnapshot { used_memory: None })
        .await
        .unwrap();
    let u = &snap.usage;
    // The counts themselves stay exact.
    assert_eq!(u.subscriptions_continued, n);
    assert_eq!(u.subscriptions_established, n);
    assert_eq!(u.initial_syncs, n);
    assert_eq!(
        u.concurrent_clients.max, n,
        "every never-disconnected client counts"
    );
    let error = |estimate: u64, truth: u64| (estimate as f64 - truth as f64).abs() / truth as f64;
    assert!(error(u.distinct_clients, n + 20_000) < 0.05);
    assert!(error(u.distinct_users, n + 1) < 0.05);
}
