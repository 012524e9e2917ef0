//! The compact queue element: the one internal form of a usage event, as the intake queue
//! carries it and the collector applies it.
//!
//! Every public usage event converts into a [`QueuedEvent`] right beside its own definition (in
//! `events.rs`); the handle routes it (counts to the hot counters, the rest through the intake
//! queue), and the collector applies it. Nothing else needs to know the list of events.

use super::counters::Counter;
use crate::sketch::distinct::AnonymousId;

/// A usage event in the form the collector applies: ids already hashed, only what the window
/// aggregates. At most 32 bytes, so the intake queue stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueuedEvent {
    /// Adds to two hot counters. Through the handle these never reach the queue: they are
    /// stores into the recording thread's counter slot.
    Count {
        counters: [Counter; 2],
        n: [u64; 2],
    },
    Connected {
        client: AnonymousId,
        user: AnonymousId,
    },
    Disconnected(AnonymousId),
    Established {
        included_tables: u64,
    },
    Continued(AnonymousId),
    /// An initial sync of at most two shapes, inline: the usual case needs no heap.
    SyncInline {
        shapes: u8,
        rows: [u64; 2],
    },
    /// An initial sync of more shapes: the caller's vector, moved, not copied.
    SyncMany(Vec<u64>),
    PgVersion(String),
    /// Boxed: rare, and inline it would make every event larger.
    Wal(Box<WalFigures>),
    ElectrifiedTables(u64),
}

/// The replication side's latest WAL cache figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalFigures {
    pub oldest_wal_time: Option<std::time::SystemTime>,
    pub wal_cache_memory: u64,
    pub wal_transactions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_fits_in_32_bytes() {
        assert!(std::mem::size_of::<QueuedEvent>() <= 32);
    }
}
