//! The collector actor: owns every aggregate of the current window.
//!
//! It handles each typed usage message (see [`crate::messages`]), owns the hot counters that
//! [`Telemetry::record`](crate::Telemetry::record) adds to without a message, and on
//! [`TakeSnapshot`] hands out the window's figures and starts a new window. Actix runs one
//! handler at a time, so a snapshot sees every message that arrived before it and none after.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;

use crate::counters::{Counter, HotCounters, Totals};
use crate::distinct::{AnonymousId, DistinctCount};
use crate::messages::*;
use crate::report::Usage;
use crate::summary::{Summary, SummaryStats};

/// How many usage messages may wait in the collector's mailbox before
/// [`Telemetry::record`](crate::Telemetry::record) sheds (and counts) new ones.
pub const MAILBOX_CAPACITY: usize = 16_384;

/// The collector actor. Start it through [`Telemetry::start`](crate::Telemetry::start); it
/// is public so that actors can hold an `Addr<Collector>` or a `Recipient<M>`.
pub struct Collector {
    counters: Arc<HotCounters>,
    dropped_events: Arc<AtomicU64>,
    window: Window,
    /// Connections per connected client; a client may hold several.
    connected: HashMap<AnonymousId, u64>,
    connected_total: u64,
    electrified_tables: u64,
    pg_version: Option<String>,
    wal: WalStatus,
}

/// What accumulates over one window and starts afresh with the next.
struct Window {
    began: SystemTime,
    initial_syncs: u64,
    subscriptions_established: u64,
    subscriptions_continued: u64,
    distinct_clients: DistinctCount,
    distinct_users: DistinctCount,
    concurrent_clients: Summary,
    used_memory: Summary,
    continued_per_client: HashMap<AnonymousId, u64>,
    included_tables: Summary,
    rows_per_shape: Summary,
}

impl Window {
    fn new(began: SystemTime) -> Self {
        Self {
            began,
            initial_syncs: 0,
            subscriptions_established: 0,
            subscriptions_continued: 0,
            distinct_clients: DistinctCount::new(),
            distinct_users: DistinctCount::new(),
            concurrent_clients: Summary::new(),
            used_memory: Summary::new(),
            continued_per_client: HashMap::new(),
            included_tables: Summary::new(),
            rows_per_shape: Summary::new(),
        }
    }
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector {
    /// A collector whose first window begins now.
    pub fn new() -> Self {
        Self::with_shared(Arc::new(HotCounters::new()), Arc::new(AtomicU64::new(0)))
    }

    pub(crate) fn with_shared(counters: Arc<HotCounters>, dropped_events: Arc<AtomicU64>) -> Self {
        Self {
            counters,
            dropped_events,
            window: Window::new(SystemTime::now()),
            connected: HashMap::new(),
            connected_total: 0,
            electrified_tables: 0,
            pg_version: None,
            wal: WalStatus::default(),
        }
    }

    /// Starts a collector with its bounded mailbox in place before any address is handed out.
    pub(crate) fn start_bounded(self) -> Addr<Self> {
        Collector::create(|ctx| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            self
        })
    }

    fn sample_gauges(&mut self, used_memory: Option<u64>) {
        if let Some(bytes) = used_memory {
            self.window.used_memory.record(bytes);
        }
        self.window.concurrent_clients.record(self.connected_total);
    }

    fn snapshot(&mut self, used_memory: Option<u64>) -> WindowSnapshot {
        self.sample_gauges(used_memory);
        let taken = SystemTime::now();
        let w = std::mem::replace(&mut self.window, Window::new(taken));
        let hot: Totals = self.counters.drain();
        let hot = |c: Counter| hot[c as usize];
        let mut per_client = Summary::new();
        w.continued_per_client
            .values()
            .for_each(|&n| per_client.record(n));
        WindowSnapshot {
            began: w.began,
            taken,
            usage: Usage {
                concurrent_clients: w.concurrent_clients.stats(),
                distinct_clients: w.distinct_clients.count(),
                distinct_users: w.distinct_users.count(),
                electrified_tables: self.electrified_tables,
                initial_syncs: w.initial_syncs,
                operations_from_pg: hot(Counter::OperationsFromPg),
                operations_received_from_clients: hot(Counter::OperationsReceivedFromClients),
                operations_sent_to_clients: hot(Counter::OperationsSentToClients),
                subscriptions_continued: w.subscriptions_continued,
                subscriptions_continued_per_client: per_client.stats(),
                subscriptions_established: w.subscriptions_established,
                subscriptions_included_tables: w.included_tables.stats(),
                subscriptions_rows_per_shape: w.rows_per_shape.stats(),
                transactions_from_pg: hot(Counter::TransactionsFromPg),
                transactions_received_from_clients: hot(Counter::TransactionsReceivedFromClients),
                transactions_sent_to_clients: hot(Counter::TransactionsSentToClients),
            },
            used_memory: w.used_memory.stats(),
            oldest_wal_time: self.wal.oldest_wal_time,
            wal_cache_memory: self.wal.wal_cache_memory,
            wal_transactions: self.wal.wal_transactions,
            pg_version: self.pg_version.clone(),
            dropped_events: self.dropped_events.swap(0, Relaxed),
        }
    }
}

impl Actor for Collector {
    type Context = Context<Self>;
}

/// Everything one window produced; the scheduler turns it into a [`Report`](crate::Report).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSnapshot {
    /// When the window began.
    pub began: SystemTime,
    /// When the snapshot was taken (and the next window began).
    pub taken: SystemTime,
    /// The window's usage figures.
    pub usage: Usage,
    /// The process's resident memory over the window's samples.
    pub used_memory: SummaryStats,
    /// Latest reported oldest WAL time.
    pub oldest_wal_time: Option<SystemTime>,
    /// Latest reported WAL cache bytes.
    pub wal_cache_memory: u64,
    /// Latest reported WAL cache transactions.
    pub wal_transactions: u64,
    /// Postgres version, once reported.
    pub pg_version: Option<String>,
    /// Usage events shed since the last snapshot because the mailbox was full.
    pub dropped_events: u64,
}

/// Takes the current window's figures and starts a new window.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "WindowSnapshot")]
pub struct TakeSnapshot {
    /// A last sample of resident memory to include, if the caller took one.
    pub used_memory: Option<u64>,
}

/// Samples the gauges: records `used_memory` and the number of connected clients.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SampleGauges {
    /// The process's resident memory now, if known.
    pub used_memory: Option<u64>,
}

/// Stops the collector once every message before it has been handled.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct StopCollector;

impl Handler<TakeSnapshot> for Collector {
    type Result = MessageResult<TakeSnapshot>;
    fn handle(&mut self, msg: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot(msg.used_memory))
    }
}

impl Handler<SampleGauges> for Collector {
    type Result = ();
    fn handle(&mut self, msg: SampleGauges, _: &mut Context<Self>) {
        self.sample_gauges(msg.used_memory);
    }
}

impl Handler<StopCollector> for Collector {
    type Result = ();
    fn handle(&mut self, _: StopCollector, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

macro_rules! handle_counter_event {
    ($($event:ty),*) => {$(
        impl Handler<$event> for Collector {
            type Result = ();
            fn handle(&mut self, msg: $event, _: &mut Context<Self>) {
                // Into the same counters the handle adds to, so both paths sum exactly.
                for (counter, n) in msg.hot_counts().into_iter().flatten() {
                    self.counters.add(counter, n);
                }
            }
        }
    )*};
}
handle_counter_event!(ReplicatedFromPg, ReceivedFromClient, SentToClients);

impl Handler<ClientConnected> for Collector {
    type Result = ();
    fn handle(&mut self, msg: ClientConnected, _: &mut Context<Self>) {
        self.window.distinct_clients.insert(msg.client);
        self.window.distinct_users.insert(msg.user);
        *self.connected.entry(msg.client).or_insert(0) += 1;
        self.connected_total = self.connected_total.saturating_add(1);
    }
}

impl Handler<ClientDisconnected> for Collector {
    type Result = ();
    fn handle(&mut self, msg: ClientDisconnected, _: &mut Context<Self>) {
        // An unknown client changes nothing: no underflow, no phantom disconnect.
        if let Some(n) = self.connected.get_mut(&msg.client) {
            *n -= 1;
            if *n == 0 {
                self.connected.remove(&msg.client);
            }
            self.connected_total -= 1;
        }
    }
}

impl Handler<SubscriptionEstablished> for Collector {
    type Result = ();
    fn handle(&mut self, msg: SubscriptionEstablished, _: &mut Context<Self>) {
        let w = &mut self.window;
        w.subscriptions_established = w.subscriptions_established.saturating_add(1);
        w.included_tables.record(msg.included_tables);
    }
}

impl Handler<SubscriptionContinued> for Collector {
    type Result = ();
    fn handle(&mut self, msg: SubscriptionContinued, _: &mut Context<Self>) {
        let w = &mut self.window;
        w.subscriptions_continued = w.subscriptions_continued.saturating_add(1);
        let n = w.continued_per_client.entry(msg.client).or_insert(0);
        *n = n.saturating_add(1);
    }
}

impl Handler<InitialSync> for Collector {
    type Result = ();
    fn handle(&mut self, msg: InitialSync, _: &mut Context<Self>) {
        let w = &mut self.window;
        w.initial_syncs = w.initial_syncs.saturating_add(1);
        msg.rows_per_shape
            .iter()
            .for_each(|&rows| w.rows_per_shape.record(rows));
    }
}

impl Handler<PgVersion> for Collector {
    type Result = ();
    fn handle(&mut self, msg: PgVersion, _: &mut Context<Self>) {
        self.pg_version = Some(msg.as_str().to_owned());
    }
}

impl Handler<WalStatus> for Collector {
    type Result = ();
    fn handle(&mut self, msg: WalStatus, _: &mut Context<Self>) {
        self.wal = msg;
    }
}

impl Handler<ElectrifiedTables> for Collector {
    type Result = ();
    fn handle(&mut self, msg: ElectrifiedTables, _: &mut Context<Self>) {
        self.electrified_tables = msg.count;
    }
}
