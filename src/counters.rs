//! The hot counters: operations and transactions, recorded without a message, a lock or an
//! allocation.
//!
//! A replicating service counts hundreds of thousands of operations a second, far too many to
//! send each one through an actor mailbox. These counts are instead added to a block of
//! relaxed atomics that the collector owns and drains when it takes a snapshot. The block is
//! split into cache-line-aligned shards and each thread adds to its own, so two threads that
//! record at once do not fight over one cache line. `swap(0)` on drain makes the counts exact:
//! every add lands either in the snapshot being taken or in the next one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// A usage counter that is recorded on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Operations (row changes) replicated from Postgres.
    OperationsFromPg = 0,
    /// Transactions replicated from Postgres.
    TransactionsFromPg = 1,
    /// Operations received from clients.
    OperationsReceivedFromClients = 2,
    /// Transactions received from clients.
    TransactionsReceivedFromClients = 3,
    /// Operations sent to clients.
    OperationsSentToClients = 4,
    /// Transactions sent to clients.
    TransactionsSentToClients = 5,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTERS] = [
        Counter::OperationsFromPg,
        Counter::TransactionsFromPg,
        Counter::OperationsReceivedFromClients,
        Counter::TransactionsReceivedFromClients,
        Counter::OperationsSentToClients,
        Counter::TransactionsSentToClients,
    ];

    /// The counter's field name in the report's `usage` object.
    pub fn field_name(self) -> &'static str {
        match self {
            Counter::OperationsFromPg => "operations_from_pg",
            Counter::TransactionsFromPg => "transactions_from_pg",
            Counter::OperationsReceivedFromClients => "operations_received_from_clients",
            Counter::TransactionsReceivedFromClients => "transactions_received_from_clients",
            Counter::OperationsSentToClients => "operations_sent_to_clients",
            Counter::TransactionsSentToClients => "transactions_sent_to_clients",
        }
    }
}

/// How many hot counters there are.
pub const COUNTERS: usize = 6;

/// One thread's share of the counters, alone on its cache lines (128 bytes covers the
/// adjacent-line prefetcher of current x86 cores).
#[repr(align(128))]
#[derive(Default)]
struct Shard([AtomicU64; COUNTERS]);

/// The drained totals, indexed by `Counter as usize`.
pub(crate) type Totals = [u64; COUNTERS];

pub(crate) struct HotCounters {
    shards: Box<[Shard]>,
    mask: usize,
}

impl HotCounters {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        let shards = (cores * 2).next_power_of_two().clamp(4, 64);
        Self {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            mask: shards - 1,
        }
    }

    /// Adds `n` to `counter`. Saturates at `u64::MAX` instead of wrapping.
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let cell = &self.shards[shard_index() & self.mask].0[counter as usize];
        let before = cell.fetch_add(n, Relaxed);
        if before.checked_add(n).is_none() {
            cell.store(u64::MAX, Relaxed);
        }
    }

    /// Takes every count recorded so far, leaving zeros behind.
    pub(crate) fn drain(&self) -> Totals {
        let mut totals = [0u64; COUNTERS];
        for shard in self.shards.iter() {
            for (total, cell) in totals.iter_mut().zip(&shard.0) {
                *total = total.saturating_add(cell.swap(0, Relaxed));
            }
        }
        totals
    }
}

/// The shard a thread adds to: threads are numbered in the order they first record.
#[inline]
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed);
    }
    INDEX.with(|i| *i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn drain_returns_exact_totals_and_resets() {
        let c = HotCounters::new();
        c.add(Counter::OperationsFromPg, 5);
        c.add(Counter::OperationsFromPg, 7);
        c.add(Counter::TransactionsSentToClients, 1);
        let totals = c.drain();
        assert_eq!(totals[Counter::OperationsFromPg as usize], 12);
        assert_eq!(totals[Counter::TransactionsSentToClients as usize], 1);
        assert_eq!(c.drain(), [0; COUNTERS]);
    }

    #[test]
    fn adds_from_many_threads_are_all_counted() {
        let c = Arc::new(HotCounters::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.add(Counter::OperationsReceivedFromClients, 3);
                    }
                })
            })
            .collect();
        let mut total = 0;
        // Drain while the threads run: nothing may fall between two drains.
        while threads.iter().any(|t| !t.is_finished()) {
            total += c.drain()[Counter::OperationsReceivedFromClients as usize];
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        total += c.drain()[Counter::OperationsReceivedFromClients as usize];
        assert_eq!(total, 4 * 10_000 * 3);
    }

    #[test]
    fn counts_near_u64_max_saturate() {
        let c = HotCounters::new();
        c.add(Counter::OperationsFromPg, u64::MAX - 1);
        c.add(Counter::OperationsFromPg, 5);
        assert_eq!(c.drain()[Counter::OperationsFromPg as usize], u64::MAX);
    }

    #[test]
    fn field_names_follow_the_counter_order() {
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, i);
        }
        assert_eq!(Counter::ALL[4].field_name(), "operations_sent_to_clients");
    }
}
