//! The intake: how the handle hands structured events (connects, subscriptions, initial
//! syncs, ...) to the collector without an actor send.
//!
//! An actix send from another thread is costly, and `do_send` ignores the mailbox bound
//! altogether. [`Telemetry::record`](crate::Telemetry::record) instead pushes a compact event
//! (32 bytes, ids already hashed) into a bounded lock-free queue that the collector owns and
//! drains: once a second, whenever a producer finds the queue half full or full (one wake-up
//! message, not one per event), before every typed message it handles, and at the start of
//! every snapshot. A snapshot drains at least as many events as the queue can hold, so every
//! event pushed before the snapshot was requested is in it or in the next one.
//!
//! When the queue is full the event is shed and counted in the pusher's hot-counter slot; the
//! count reaches the next report as `dropped_events`. Nothing is lost silently.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use super::counters::HotCounters;
use super::queued_event::QueuedEvent;

/// How many events the queue holds: 8 192 × 40 bytes (event and slot stamp) = 320 KiB,
/// allocated once at start.
pub(crate) const QUEUE_CAPACITY: usize = 8 * 1024;

/// How many pushes a thread makes between two looks at the queue's fill level.
const CHECK_EVERY: u32 = 64;

/// What the handles share with the collector: the hot counters and the event queue.
pub(crate) struct Intake {
    pub(crate) counters: Arc<HotCounters>,
    queue: ArrayQueue<QueuedEvent>,
    /// Set by the producer that asks the collector to drain, cleared by the collector when it
    /// does: at most one wake-up message is in flight.
    drain_requested: AtomicBool,
}

impl Intake {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            counters: HotCounters::new(),
            queue: ArrayQueue::new(QUEUE_CAPACITY),
            drain_requested: AtomicBool::new(false),
        })
    }

    /// Queues `event`, or sheds and counts it if the queue is full. Never blocks. `wake` asks
    /// the collector to drain; it is called only when the queue fills up and no earlier
    /// request is pending.
    #[inline]
    pub(crate) fn push(&self, event: QueuedEvent, wake: impl FnOnce()) {
        match self.queue.push(event) {
            Ok(()) => {
                if time_to_check() && self.queue.len() >= QUEUE_CAPACITY / 2 {
                    self.request_drain(wake);
                }
            }
            Err(_shed) => {
                self.counters.add_shed();
                self.request_drain(wake);
            }
        }
    }

    fn request_drain(&self, wake: impl FnOnce()) {
        // The plain load keeps a flood of pushes from bouncing the flag's cache line.
        if !self.drain_requested.load(Relaxed) && !self.drain_requested.swap(true, Relaxed) {
            wake();
        }
    }

    /// Hands queued events to `apply`, at most one queue's worth: everything queued before
    /// the call (the queue cannot hold more), and perhaps some queued meanwhile. Returns how
    /// many.
    pub(crate) fn drain(&self, mut apply: impl FnMut(QueuedEvent)) -> usize {
        self.drain_requested.store(false, Relaxed);
        let mut taken = 0;
        while taken < QUEUE_CAPACITY {
            let Some(event) = self.queue.pop() else { break };
            apply(event);
            taken += 1;
        }
        taken
    }

    /// Whether nothing is queued (cheap: two loads).
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// True once every `CHECK_EVERY` pushes of this thread.
#[inline]
fn time_to_check() -> bool {
    thread_local! {
        static PUSHES: Cell<u32> = const { Cell::new(0) };
    }
    PUSHES.with(|pushes| {
        let n = pushes.get().wrapping_add(1);
        pushes.set(n);
        n.is_multiple_of(CHECK_EVERY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_full_queue_sheds_counts_and_wakes_the_collector_once() {
        let intake = Intake::new();
        let wakes = AtomicUsize::new(0);
        let wake = || {
            wakes.fetch_add(1, Relaxed);
        };
        for _ in 0..QUEUE_CAPACITY + 10 {
            intake.push(QueuedEvent::ElectrifiedTables(1), wake);
        }
        assert_eq!(
            wakes.load(Relaxed),
            1,
            "one wake-up until the collector drains"
        );
        assert_eq!(intake.counters.drain().shed, 10);
        assert_eq!(intake.drain(|_| {}), QUEUE_CAPACITY);
        assert!(intake.is_empty());
        intake.push(QueuedEvent::ElectrifiedTables(1), wake);
        assert_eq!(intake.drain(|_| {}), 1);
    }
}
