//! The hot counters: operations and transactions, recorded without a message, a lock, an
//! allocation or even a read-modify-write instruction.
//!
//! A replicating service counts hundreds of thousands of operations a second, far too many to
//! send each one through an actor mailbox. These counts are instead added to a block of
//! counters that the collector owns and reads when it folds them into its window.
//!
//! Each recording thread claims a slot of its own in the block the first time it records, so
//! a slot has exactly one writer: an add is a plain load and store of a relaxed atomic
//! (`mov`, `add`, `mov` on x86), with no `lock` prefix and no cache line shared with another
//! writer (slots are 128-byte aligned, which also covers the adjacent-line prefetcher).
//! A slot holds running totals that only ever grow (modulo 2^64); the collector remembers
//! what it read last time and takes the difference, so it never writes a slot and every add
//! lands either in the fold being taken or in the next one. A thread gives its slot back when
//! it exits; the next owner continues the same running totals, so nothing is lost.
//!
//! Two cases take a slower but still exact and lock-free path (`fetch_add` into shared,
//! sharded atomics that the collector empties with `swap(0)`): a thread that finds every slot
//! taken, and a single add larger than 2^24. The latter keeps the running-total difference
//! exact: to add 2^64 to one slot between two folds (the collector folds at least every
//! second) a thread would have to make 2^40 maximal adds in that time, about 18 minutes of
//! nothing else even at one add per nanosecond.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Declares the hot counters once: the public enum, its list, its report field names and
/// their number all come from this one table.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident => $field:literal,)*) => {
        /// A usage counter that is recorded on the hot path (see
        /// [`Telemetry::add`](crate::Telemetry::add)).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Counter {
            $($(#[$doc])* $name,)*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: [Counter; COUNTERS] = [$(Counter::$name),*];

            /// The counter's field name in the report's `usage` object.
            pub fn field_name(self) -> &'static str {
                match self {
                    $(Counter::$name => $field,)*
                }
            }
        }

        /// How many hot counters there are.
        pub(crate) const COUNTERS: usize = [$($field),*].len();
    };
}

counters! {
    /// Operations (row changes) replicated from Postgres.
    OperationsFromPg => "operations_from_pg",
    /// Transactions replicated from Postgres.
    TransactionsFromPg => "transactions_from_pg",
    /// Operations received from clients.
    OperationsReceivedFromClients => "operations_received_from_clients",
    /// Transactions received from clients.
    TransactionsReceivedFromClients => "transactions_received_from_clients",
    /// Operations sent to clients.
    OperationsSentToClients => "operations_sent_to_clients",
    /// Transactions sent to clients.
    TransactionsSentToClients => "transactions_sent_to_clients",
}

/// Cells per slot: the counters, then the events the intake shed (counted the same cheap way,
/// so that a flood of shed events does not make every producer fight over one cache line).
pub(crate) const CELLS: usize = COUNTERS + 1;
/// The cell that counts shed events.
pub(crate) const SHED: usize = COUNTERS;

/// Slots with a single writer each. Actix services record from one thread per Arbiter; more
/// concurrent recording threads than this share the `fetch_add` shards instead.
const SLOTS: usize = 64;
/// Shards of the shared fallback.
const SHARDS: usize = 8;
/// The largest add that goes into a slot (see the module docs for why there is a limit).
const SLOT_ADD_MAX: u64 = 1 << 24;
/// "No slot": the thread uses the shared shards.
const NO_SLOT: usize = usize::MAX;

/// One thread's running totals, alone on its cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Slot {
    cells: [AtomicU64; CELLS],
    claimed: AtomicBool,
}

/// A shard of the shared fallback, emptied with `swap(0)`.
#[repr(align(128))]
#[derive(Default)]
struct Shard([AtomicU64; CELLS]);

/// The drained totals, indexed by `Counter as usize`.
pub(crate) type Totals = [u64; COUNTERS];

/// What one fold took out of the block since the previous fold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Drained {
    pub counts: Totals,
    pub shed: u64,
}

/// The block of hot counters. Shared (`Arc`) by the handles that add and the collector that
/// folds.
pub(crate) struct HotCounters {
    /// Tells this block apart in the thread-local claim cache; never 0.
    id: u64,
    me: Weak<HotCounters>,
    slots: Box<[Slot]>,
    shards: Box<[Shard]>,
    /// The running totals of each slot as of the last fold. Only the collector folds, so this
    /// lock is never contended; it is not on any recording path.
    folded: Mutex<Box<[[u64; CELLS]]>>,
}

thread_local! {
    /// The block this thread last recorded into and its slot there (or `NO_SLOT`). Constant
    /// initialised and without a destructor, so reading it is one thread-local load.
    static CLAIM: Cell<(u64, usize)> = const { Cell::new((0, NO_SLOT)) };
    /// Every slot this thread holds, given back when the thread exits.
    static HELD: RefCell<Held> = const { RefCell::new(Held(Vec::new())) };
}

struct Held(Vec<(Weak<HotCounters>, usize)>);

impl Drop for Held {
    fn drop(&mut self) {
        // Adds made after this (from other thread-local destructors) must not write into a
        // slot another thread may claim: send them to the shared shards.
        let _ = CLAIM.try_with(|claim| claim.set((0, NO_SLOT)));
        for (block, slot) in self.0.drain(..) {
            if let Some(block) = block.upgrade() {
                // Release: the next owner's Acquire claim sees this thread's last stores.
                block.slots[slot].claimed.store(false, Release);
            }
        }
    }
}

impl HotCounters {
    pub(crate) fn new() -> Arc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Arc::new_cyclic(|me| Self {
            id: NEXT_ID.fetch_add(1, Relaxed),
            me: me.clone(),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            folded: Mutex::new(vec![[0; CELLS]; SLOTS].into_boxed_slice()),
        })
    }

    /// Adds `n` to `counter`. A window's count saturates at `u64::MAX` instead of wrapping.
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.add_cells([(counter as usize, n)]);
    }

    /// Adds to two counters with one look-up of this thread's slot.
    #[inline]
    pub(crate) fn add_two(&self, a: (Counter, u64), b: (Counter, u64)) {
        self.add_cells([(a.0 as usize, a.1), (b.0 as usize, b.1)]);
    }

    /// Counts one event that the intake shed.
    #[inline]
    pub(crate) fn add_shed(&self) {
        self.add_cells([(SHED, 1)]);
    }

    #[inline]
    fn add_cells<const N: usize>(&self, adds: [(usize, u64); N]) {
        let (block, slot) = CLAIM.with(Cell::get);
        if block == self.id {
            if let Some(slot) = self.slots.get(slot) {
                // Every rare case (no slot yet, a huge add) is behind one cold call, so this
                // path needs no stack frame.
                if adds.iter().all(|&(_, n)| n <= SLOT_ADD_MAX) {
                    for (cell, n) in adds {
                        // This thread is the slot's only writer: load + store loses nothing.
                        let cell = &slot.cells[cell];
                        cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
                    }
                    return;
                }
            }
        }
        self.add_slow(adds);
    }

    fn add_to_slot<const N: usize>(&self, slot: &Slot, adds: [(usize, u64); N]) {
        for (cell, n) in adds {
            if n <= SLOT_ADD_MAX {
                let cell = &slot.cells[cell];
                cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
            } else {
                self.add_shared(cell, n);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn add_slow<const N: usize>(&self, adds: [(usize, u64); N]) {
        match self.claim() {
            Some(slot) => self.add_to_slot(&self.slots[slot], adds),
            None => adds
                .into_iter()
                .for_each(|(cell, n)| self.add_shared(cell, n)),
        }
    }

    /// This thread's slot in this block, claiming one if it holds none; `None` if every slot
    /// is taken (or the thread is exiting).
    fn claim(&self) -> Option<usize> {
        let (block, slot) = CLAIM.with(Cell::get);
        if block == self.id {
            return (slot != NO_SLOT).then_some(slot);
        }
        HELD.try_with(|held| {
            let mut held = held.try_borrow_mut().ok()?;
            // Forget blocks that no longer exist, so a long-lived thread's list stays short.
            held.0.retain(|(block, _)| block.strong_count() > 0);
            let slot = match held.0.iter().find(|(b, _)| Weak::ptr_eq(b, &self.me)) {
                Some(&(_, slot)) => slot,
                None => match self.slots.iter().position(|s| {
                    s.claimed
                        .compare_exchange(false, true, Acquire, Relaxed)
                        .is_ok()
                }) {
                    Some(slot) => {
                        held.0.push((self.me.clone(), slot));
                        slot
                    }
                    None => NO_SLOT,
                },
            };
            CLAIM.with(|claim| claim.set((self.id, slot)));
            (slot != NO_SLOT).then_some(slot)
        })
        .ok()
        .flatten()
    }

    fn add_shared(&self, cell: usize, n: u64) {
        let cell = &self.shards[thread_number() % SHARDS].0[cell];
        let before = cell.fetch_add(n, Relaxed);
        if before.checked_add(n).is_none() {
            cell.store(u64::MAX, Relaxed);
        }
    }

    /// Takes every count added since the previous fold. Only the collector calls this.
    pub(crate) fn drain(&self) -> Drained {
        let mut folded = self.folded.lock().unwrap_or_else(PoisonError::into_inner);
        let mut totals = [0u64; CELLS];
        for (slot, seen) in self.slots.iter().zip(folded.iter_mut()) {
            for ((total, cell), seen) in totals.iter_mut().zip(&slot.cells).zip(seen.iter_mut()) {
                let now = cell.load(Relaxed);
                *total = total.saturating_add(now.wrapping_sub(*seen));
                *seen = now;
            }
        }
        for shard in self.shards.iter() {
            for (total, cell) in totals.iter_mut().zip(&shard.0) {
                *total = total.saturating_add(cell.swap(0, Relaxed));
            }
        }
        let mut counts = [0u64; COUNTERS];
        counts.copy_from_slice(&totals[..COUNTERS]);
        Drained {
            counts,
            shed: totals[SHED],
        }
    }
}

/// Threads numbered in the order they first use the shared shards.
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Relaxed);
    }
    NUMBER.try_with(|n| *n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(c: &HotCounters, counter: Counter) -> u64 {
        c.drain().counts[counter as usize]
    }

    #[test]
    fn drain_returns_exact_totals_and_resets() {
        let c = HotCounters::new();
        c.add(Counter::OperationsFromPg, 5);
        c.add(Counter::OperationsFromPg, 7);
        c.add(Counter::TransactionsSentToClients, 1);
        c.add_shed();
        let drained = c.drain();
        assert_eq!(drained.counts[Counter::OperationsFromPg as usize], 12);
        assert_eq!(
            drained.counts[Counter::TransactionsSentToClients as usize],
            1
        );
        assert_eq!(drained.shed, 1);
        assert_eq!(c.drain(), Drained::default());
    }

    #[test]
    fn adds_from_many_threads_are_all_counted() {
        let c = HotCounters::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        c.add(Counter::OperationsReceivedFromClients, 3);
                        if i % 1000 == 0 {
                            // A large add takes the shared path; it must count all the same.
                            c.add(Counter::OperationsReceivedFromClients, SLOT_ADD_MAX + 1);
                        }
                    }
                })
            })
            .collect();
        let mut total = 0;
        // Drain while the threads run: nothing may fall between two drains.
        while threads.iter().any(|t| !t.is_finished()) {
            total += count(&c, Counter::OperationsReceivedFromClients);
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        total += count(&c, Counter::OperationsReceivedFromClients);
        assert_eq!(total, 4 * (10_000 * 3 + 10 * (SLOT_ADD_MAX + 1)));
    }

    #[test]
    fn a_slot_given_back_by_an_exiting_thread_keeps_its_counts_and_is_reused() {
        let c = HotCounters::new();
        for round in 1..=3 * SLOTS as u64 {
            // More short-lived threads than slots: each must find a slot given back.
            let block = Arc::clone(&c);
            std::thread::spawn(move || block.add(Counter::TransactionsFromPg, round))
                .join()
                .unwrap();
            if round % 7 == 0 {
                c.drain();
            }
        }
        let claimed = c.slots.iter().filter(|s| s.claimed.load(Relaxed)).count();
        assert_eq!(claimed, 0, "every exited thread gave its slot back");
        // Re-count from scratch in a fresh block to check the totals survived the hand-overs.
        let c2 = HotCounters::new();
        let n = 3 * SLOTS as u64;
        for round in 1..=n {
            let block = Arc::clone(&c2);
            std::thread::spawn(move || block.add(Counter::TransactionsFromPg, round))
                .join()
                .unwrap();
        }
        assert_eq!(count(&c2, Counter::TransactionsFromPg), n * (n + 1) / 2);
    }

    #[test]
    fn threads_beyond_the_slots_fall_back_to_shared_shards_exactly() {
        let c = HotCounters::new();
        let barrier = Arc::new(std::sync::Barrier::new(SLOTS + 8));
        let threads: Vec<_> = (0..SLOTS + 8)
            .map(|_| {
                let (c, barrier) = (Arc::clone(&c), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    c.add(Counter::OperationsSentToClients, 2);
                    // Hold every slot until all threads have recorded once.
                    barrier.wait();
                    c.add(Counter::OperationsSentToClients, 1);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(
            count(&c, Counter::OperationsSentToClients),
            3 * (SLOTS as u64 + 8)
        );
    }

    #[test]
    fn one_thread_recording_into_two_blocks_keeps_them_apart() {
        let (a, b) = (HotCounters::new(), HotCounters::new());
        for _ in 0..3 {
            a.add(Counter::OperationsFromPg, 1);
            b.add(Counter::OperationsFromPg, 10);
        }
        assert_eq!(count(&a, Counter::OperationsFromPg), 3);
        assert_eq!(count(&b, Counter::OperationsFromPg), 30);
        drop(a);
        b.add(Counter::OperationsFromPg, 1);
        assert_eq!(count(&b, Counter::OperationsFromPg), 1);
    }

    #[test]
    fn counts_near_u64_max_saturate() {
        let c = HotCounters::new();
        c.add(Counter::OperationsFromPg, u64::MAX - 1);
        c.add(Counter::OperationsFromPg, 5);
        assert_eq!(count(&c, Counter::OperationsFromPg), u64::MAX);
        // The running totals of a slot wrap, and the difference stays exact across the wrap.
        c.add(Counter::TransactionsFromPg, 1);
        assert_eq!(count(&c, Counter::TransactionsFromPg), 1);
        let slot = CLAIM.with(Cell::get).1;
        c.slots[slot].cells[Counter::TransactionsFromPg as usize].store(u64::MAX - 5, Relaxed);
        c.folded.lock().unwrap()[slot][Counter::TransactionsFromPg as usize] = u64::MAX - 5;
        c.add(Counter::TransactionsFromPg, 10);
        assert_eq!(count(&c, Counter::TransactionsFromPg), 10);
    }

    #[test]
    fn two_recording_threads_never_write_the_same_cache_line() {
        assert_eq!(std::mem::align_of::<Slot>(), 128);
        assert_eq!(std::mem::size_of::<Slot>(), 128);
        let c = HotCounters::new();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let slots: Vec<usize> = (0..2)
            .map(|_| {
                let (c, barrier) = (Arc::clone(&c), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    c.add(Counter::OperationsFromPg, 1);
                    let slot = CLAIM.with(Cell::get).1;
                    // Both threads hold their slots at once.
                    barrier.wait();
                    slot
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_ne!(slots[0], slots[1]);
        let address = |i: usize| &c.slots[i] as *const Slot as usize;
        assert!(address(slots[0]).abs_diff(address(slots[1])) >= 128);
        assert_eq!(address(slots[0]) % 128, 0);
    }

    #[test]
    fn field_names_follow_the_counter_order() {
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(*counter as usize, i);
        }
        assert_eq!(Counter::ALL[4].field_name(), "operations_sent_to_clients");
    }
}
