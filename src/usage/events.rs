//! The usage events a service records: one type per kind of event.
//!
//! Record them through [`Telemetry::record`](crate::Telemetry::record), which is the cheap
//! path: counter events ([`ReplicatedFromPg`], [`ReceivedFromClient`], [`SentToClients`])
//! become plain stores into the calling thread's own counter slot and never touch a mailbox;
//! the others go, in a compact form, through a bounded lock-free queue that the collector
//! drains. Every event is also an actix [`Message`] that the [`Collector`](crate::Collector)
//! handles, so an actor may hold a `Recipient<E>` instead.
//!
//! Client and user ids are hashed with a per-process random key as the event is built, so
//! raw ids never travel further than the constructor.
//!
//! Each event converts into the collector's internal [`QueuedEvent`] right beside its definition
//! (the `usage_event!` blocks below); that conversion is the only place that knows what an
//! event feeds.

use std::time::SystemTime;

use actix::Message;

use super::counters::Counter;
pub(crate) use super::gate::Section;
use super::queued_event::{QueuedEvent, WalFigures};
use crate::error::UsageError;
use crate::sketch::distinct::AnonymousId;

/// An event that can be passed to [`Telemetry::record`](crate::Telemetry::record) or sent to
/// the [`Collector`](crate::Collector). Implemented by this crate's events only (sealed): the
/// report has a field for each, and nothing else could be reported.
pub trait UsageEvent: Message<Result = ()> + sealed::Sealed + Send + 'static {}

pub(crate) mod sealed {
    /// Converts an event into the collector's internal form. Not nameable outside the crate,
    /// which seals [`UsageEvent`](super::UsageEvent).
    pub trait Sealed {
        /// The report section this event feeds, which decides at which level it is
        /// collected (see `gate.rs`).
        const SECTION: super::Section;
        fn into_event(self) -> super::QueuedEvent;
    }
}

/// Declares `$event` a usage event that converts into the collector's [`QueuedEvent`] by `$into`.
macro_rules! usage_event {
    ($event:ty, |$e:ident| $into:expr) => {
        usage_event!($event, Section::Usage, |$e| $into);
    };
    ($event:ty, $section:expr, |$e:ident| $into:expr) => {
        impl sealed::Sealed for $event {
            const SECTION: Section = $section;
            #[inline]
            fn into_event(self) -> QueuedEvent {
                let $e = self;
                $into
            }
        }
        impl UsageEvent for $event {}
    };
}

macro_rules! counter_event {
    ($(#[$doc:meta])* $name:ident: $transactions:ident, $operations:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Message)]
        #[rtype(result = "()")]
        pub struct $name {
            /// How many transactions.
            pub transactions: u64,
            /// How many operations (row changes) those transactions held.
            pub operations: u64,
        }

        impl $name {
            /// `transactions` transactions holding `operations` operations in all.
            pub fn new(transactions: u64, operations: u64) -> Self {
                Self { transactions, operations }
            }
        }

        usage_event!($name, |e| QueuedEvent::Count {
            counters: [Counter::$transactions, Counter::$operations],
            n: [e.transactions, e.operations],
        });
    };
}

counter_event!(
    /// Transactions replicated from Postgres (`transactions_from_pg`, `operations_from_pg`).
    ReplicatedFromPg: TransactionsFromPg, OperationsFromPg
);
counter_event!(
    /// Transactions a client sent to the service (`transactions_received_from_clients`,
    /// `operations_received_from_clients`).
    ReceivedFromClient: TransactionsReceivedFromClients, OperationsReceivedFromClients
);
counter_event!(
    /// Transactions the service sent to clients (`transactions_sent_to_clients`,
    /// `operations_sent_to_clients`). Count one per client that received it.
    SentToClients: TransactionsSentToClients, OperationsSentToClients
);

/// A client connected (`distinct_clients`, `distinct_users`, `concurrent_clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ClientConnected {
    client: AnonymousId,
    user: AnonymousId,
}

impl ClientConnected {
    /// Hashes both ids at once; the raw strings are not kept.
    pub fn new(client_id: &str, user_id: &str) -> Self {
        Self {
            client: AnonymousId::new(client_id),
            user: AnonymousId::new(user_id),
        }
    }
}

usage_event!(ClientConnected, |e| QueuedEvent::Connected {
    client: e.client,
    user: e.user,
});

/// A client disconnected. A disconnect for a client that is not connected is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ClientDisconnected {
    client: AnonymousId,
}

impl ClientDisconnected {
    /// Hashes the id at once; the raw string is not kept.
    pub fn new(client_id: &str) -> Self {
        Self {
            client: AnonymousId::new(client_id),
        }
    }
}

usage_event!(ClientDisconnected, |e| QueuedEvent::Disconnected(e.client));

/// A client established a new subscription (`subscriptions_established`,
/// `subscriptions_included_tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct SubscriptionEstablished {
    included_tables: u64,
}

impl SubscriptionEstablished {
    /// A subscription of `client_id` that includes `included_tables` tables. No figure is
    /// kept per client, so the id is neither hashed nor kept.
    pub fn new(client_id: &str, included_tables: u64) -> Self {
        let _ = client_id;
        Self { included_tables }
    }
}

usage_event!(SubscriptionEstablished, |e| QueuedEvent::Established {
    included_tables: e.included_tables,
});

/// A client continued (resumed) a subscription (`subscriptions_continued`,
/// `subscriptions_continued_per_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct SubscriptionContinued {
    client: AnonymousId,
}

impl SubscriptionContinued {
    /// Hashes the id at once; the raw string is not kept.
    pub fn new(client_id: &str) -> Self {
        Self {
            client: AnonymousId::new(client_id),
        }
    }
}

usage_event!(SubscriptionContinued, |e| QueuedEvent::Continued(e.client));

/// An initial sync ran (`initial_syncs`, `subscriptions_rows_per_shape`).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct InitialSync {
    /// For each shape the sync sent, how many rows it had.
    pub rows_per_shape: Vec<u64>,
}

impl InitialSync {
    /// An initial sync that sent shapes of these row counts.
    pub fn new(rows_per_shape: impl Into<Vec<u64>>) -> Self {
        Self {
            rows_per_shape: rows_per_shape.into(),
        }
    }
}

usage_event!(InitialSync, |e| match e.rows_per_shape[..] {
    [] => QueuedEvent::SyncInline {
        shapes: 0,
        rows: [0; 2],
    },
    [a] => QueuedEvent::SyncInline {
        shapes: 1,
        rows: [a, 0],
    },
    [a, b] => QueuedEvent::SyncInline {
        shapes: 2,
        rows: [a, b],
    },
    _ => QueuedEvent::SyncMany(e.rows_per_shape),
});

/// The Postgres server's version (`environment.pg_version`), as the replication side learnt it.
///
/// Only a version's shape is accepted, so that nothing else (a hostname, an address, a key)
/// can ride in the report as `pg_version`.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct PgVersion {
    version: String,
}

impl PgVersion {
    /// Accepts a Postgres version such as `14.9`, `16.1` or `15beta2`: one to three numbers
    /// (the first of up to 3 digits, the others of up to 4) separated by dots, optionally
    /// followed by `devel`, `alpha`, `beta` or `rc` and up to two digits. A full
    /// `server_version` like `16.1 (Debian 16.1-1.pgdg120+1)` is cut to its first word, so the
    /// free text after it is never sent.
    pub fn new(server_version: &str) -> Result<Self, UsageError> {
        let first_word = server_version.split_whitespace().next().unwrap_or("");
        if !is_version(first_word) {
            return Err(UsageError::InvalidPgVersion {
                len: server_version.chars().count(),
            });
        }
        Ok(Self {
            version: first_word.to_owned(),
        })
    }

    /// The version string that will be sent.
    pub fn as_str(&self) -> &str {
        &self.version
    }
}

usage_event!(PgVersion, Section::Environment, |e| QueuedEvent::PgVersion(
    e.version
));

fn is_version(word: &str) -> bool {
    let numeric_len = word
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(word.len());
    let (numbers, suffix) = word.split_at(numeric_len);
    let parts: Vec<&str> = numbers.split('.').collect();
    let numbers_ok = (1..=3).contains(&parts.len())
        && parts.iter().enumerate().all(|(i, p)| {
            let max = if i == 0 { 3 } else { 4 };
            (1..=max).contains(&p.len())
        });
    let suffix_ok = suffix.is_empty()
        || ["devel", "alpha", "beta", "rc"].iter().any(|tag| {
            suffix
                .strip_prefix(tag)
                .is_some_and(|n| n.len() <= 2 && n.chars().all(|c| c.is_ascii_digit()))
        });
    numbers_ok && suffix_ok
}

/// The replication side's WAL cache figures (`oldest_wal_time`, `wal_cache_memory`,
/// `wal_transactions`); each report carries the latest values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Message)]
#[rtype(result = "()")]
pub struct WalStatus {
    /// Commit time of the oldest transaction in the cache, if any.
    pub oldest_wal_time: Option<SystemTime>,
    /// Bytes the cache holds.
    pub wal_cache_memory: u64,
    /// Transactions the cache holds.
    pub wal_transactions: u64,
}

usage_event!(WalStatus, Section::Resources, |e| QueuedEvent::Wal(
    Box::new(WalFigures {
        oldest_wal_time: e.oldest_wal_time,
        wal_cache_memory: e.wal_cache_memory,
        wal_transactions: e.wal_transactions,
    })
));

/// How many tables are electrified now (`electrified_tables`, latest value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ElectrifiedTables {
    /// The number of electrified tables.
    pub count: u64,
}

usage_event!(ElectrifiedTables, |e| QueuedEvent::ElectrifiedTables(
    e.count
));

#[cfg(test)]
mod tests {
    use super::sealed::Sealed;
    use super::*;

    #[test]
    fn counter_events_become_two_counts() {
        assert_eq!(
            ReplicatedFromPg::new(2, 12).into_event(),
            QueuedEvent::Count {
                counters: [Counter::TransactionsFromPg, Counter::OperationsFromPg],
                n: [2, 12]
            }
        );
        assert_eq!(
            SentToClients::new(1, 3).into_event(),
            QueuedEvent::Count {
                counters: [
                    Counter::TransactionsSentToClients,
                    Counter::OperationsSentToClients
                ],
                n: [1, 3]
            }
        );
    }

    #[test]
    fn initial_syncs_of_up_to_two_shapes_are_inline() {
        assert_eq!(
            InitialSync::new(vec![7, 9]).into_event(),
            QueuedEvent::SyncInline {
                shapes: 2,
                rows: [7, 9]
            }
        );
        assert_eq!(
            InitialSync::new(vec![1, 2, 3]).into_event(),
            QueuedEvent::SyncMany(vec![1, 2, 3])
        );
    }
}
