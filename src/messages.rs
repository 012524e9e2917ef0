//! The typed usage messages a service's actors send: one type per kind of event.
//!
//! Every message is an actix [`Message`] that the [`Collector`](crate::Collector) handles, so an
//! actor may hold an `Addr<Collector>` or a `Recipient<M>` for the events it produces. The
//! cheaper path is [`Telemetry::record`](crate::Telemetry::record): counter events
//! ([`ReplicatedFromPg`], [`ReceivedFromClient`], [`SentToClients`]) then become plain stores
//! into the calling thread's own counter slot and never touch a mailbox, and the other events
//! go, in a compact form, through a bounded lock-free queue that the collector drains.
//!
//! Client and user ids are hashed into an [`AnonymousId`] as the message is built, so raw ids
//! never travel further than the constructor.

use std::time::SystemTime;

use actix::Message;

use crate::counters::Counter;
use crate::distinct::AnonymousId;
use crate::error::UsageError;
use crate::intake::Event;

/// An event that can be passed to [`Telemetry::record`](crate::Telemetry::record).
pub trait UsageEvent: Message<Result = ()> + Send + 'static {
    /// The hot counters this event adds to, if it is a counter event. Such events are recorded
    /// with atomic adds instead of a message.
    #[inline]
    fn hot_counts(&self) -> Option<[(Counter, u64); 2]> {
        None
    }

    /// The event in the compact form the handle queues for the collector, or the event itself
    /// if it has none (it then goes through the collector's mailbox).
    #[inline]
    fn into_compact(self) -> Result<CompactEvent, Self>
    where
        Self: Sized,
    {
        Err(self)
    }
}

/// A structured event in the compact form [`Telemetry::record`](crate::Telemetry::record)
/// queues for the collector: ids hashed, only what the collector aggregates, 32 bytes. Opaque.
#[derive(Debug)]
pub struct CompactEvent(pub(crate) Event);

macro_rules! compact_event {
    ($($event:ty),*) => {$(
        impl UsageEvent for $event {
            #[inline]
            fn into_compact(self) -> Result<CompactEvent, Self> {
                Ok(CompactEvent(Event::from(self)))
            }
        }
    )*};
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

        impl UsageEvent for $name {
            #[inline]
            fn hot_counts(&self) -> Option<[(Counter, u64); 2]> {
                Some([
                    (Counter::$transactions, self.transactions),
                    (Counter::$operations, self.operations),
                ])
            }
        }
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
    /// The client, anonymised.
    pub client: AnonymousId,
    /// The user the client acts for, anonymised.
    pub user: AnonymousId,
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

/// A client disconnected. A disconnect for a client that is not connected is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ClientDisconnected {
    /// The client, anonymised.
    pub client: AnonymousId,
}

impl ClientDisconnected {
    /// Hashes the id at once; the raw string is not kept.
    pub fn new(client_id: &str) -> Self {
        Self {
            client: AnonymousId::new(client_id),
        }
    }
}

/// A client established a new subscription (`subscriptions_established`,
/// `subscriptions_included_tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct SubscriptionEstablished {
    /// The client, anonymised.
    pub client: AnonymousId,
    /// How many tables the subscription includes.
    pub included_tables: u64,
}

impl SubscriptionEstablished {
    /// Hashes the id at once; the raw string is not kept.
    pub fn new(client_id: &str, included_tables: u64) -> Self {
        Self {
            client: AnonymousId::new(client_id),
            included_tables,
        }
    }
}

/// A client continued (resumed) a subscription (`subscriptions_continued`,
/// `subscriptions_continued_per_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct SubscriptionContinued {
    /// The client, anonymised.
    pub client: AnonymousId,
}

impl SubscriptionContinued {
    /// Hashes the id at once; the raw string is not kept.
    pub fn new(client_id: &str) -> Self {
        Self {
            client: AnonymousId::new(client_id),
        }
    }
}

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

    pub(crate) fn into_string(self) -> String {
        self.version
    }
}

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

/// How many tables are electrified now (`electrified_tables`, latest value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct ElectrifiedTables {
    /// The number of electrified tables.
    pub count: u64,
}

compact_event!(
    ClientConnected,
    ClientDisconnected,
    SubscriptionEstablished,
    SubscriptionContinued,
    InitialSync,
    PgVersion,
    WalStatus,
    ElectrifiedTables
);
