//! What the collector aggregates: the current window (counts, distinct ids, summaries) and the
//! latest values that carry over from window to window (connections, WAL figures, versions),
//! and the figures a window reports.
//!
//! A plain value with no actor in it: the collector owns one and feeds it events in order.
//! Applying an event never fails and never allocates more than the sketches' bounds allow.

use std::time::SystemTime;

use super::counters::{Counter, Totals, COUNTERS};
use super::queued_event::{QueuedEvent, WalFigures};
use crate::sketch::clients::{Connections, ContinuedPerClient};
use crate::sketch::distinct::DistinctCount;
use crate::sketch::summary::{Summary, SummaryStats};
pub use electric_telemetry_report::Usage;

/// Everything one window produced; the report builder turns it into a report.
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
    /// Latest reported WAL figures.
    pub wal: WalFigures,
    /// Postgres version, once reported.
    pub pg_version: Option<String>,
    /// Usage events shed since the last snapshot because the intake queue was full.
    pub dropped_events: u64,
}

/// What accumulates over one window and starts afresh with the next.
struct Window {
    began: SystemTime,
    /// The hot counters: folded from the slots plus counts applied as events.
    counts: Totals,
    /// Events shed since the window began.
    shed: u64,
    initial_syncs: u64,
    subscriptions_established: u64,
    subscriptions_continued: u64,
    distinct_clients: DistinctCount,
    distinct_users: DistinctCount,
    concurrent_clients: Summary,
    used_memory: Summary,
    continued_per_client: ContinuedPerClient,
    included_tables: Summary,
    rows_per_shape: Summary,
}

impl Window {
    fn new(began: SystemTime) -> Self {
        Self {
            began,
            counts: [0; COUNTERS],
            shed: 0,
            initial_syncs: 0,
            subscriptions_established: 0,
            subscriptions_continued: 0,
            distinct_clients: DistinctCount::new(),
            distinct_users: DistinctCount::new(),
            concurrent_clients: Summary::new(),
            used_memory: Summary::new(),
            continued_per_client: ContinuedPerClient::default(),
            included_tables: Summary::new(),
            rows_per_shape: Summary::new(),
        }
    }
}

/// The current window plus the latest values that outlive it.
pub(crate) struct Aggregates {
    window: Window,
    connections: Connections,
    electrified_tables: u64,
    pg_version: Option<String>,
    wal: WalFigures,
}

impl Aggregates {
    /// Aggregates whose first window begins at `began`.
    pub(crate) fn new(began: SystemTime) -> Self {
        Self {
            window: Window::new(began),
            connections: Connections::default(),
            electrified_tables: 0,
            pg_version: None,
            wal: WalFigures::default(),
        }
    }

    /// Adds `n` to a counter; a window's count saturates at `u64::MAX` instead of wrapping.
    pub(crate) fn add(&mut self, counter: Counter, n: u64) {
        let count = &mut self.window.counts[counter as usize];
        *count = count.saturating_add(n);
    }

    /// Adds what the hot counters took since the last fold.
    pub(crate) fn add_all(&mut self, counts: &Totals, shed: u64) {
        for counter in Counter::ALL {
            self.add(counter, counts[counter as usize]);
        }
        self.window.shed = self.window.shed.saturating_add(shed);
    }

    pub(crate) fn apply(&mut self, event: QueuedEvent) {
        let w = &mut self.window;
        match event {
            QueuedEvent::Count { counters, n } => {
                self.add(counters[0], n[0]);
                self.add(counters[1], n[1]);
            }
            QueuedEvent::Connected { client, user } => {
                w.distinct_clients.insert(client);
                w.distinct_users.insert(user);
                self.connections.connect(client);
            }
            // An unknown client changes nothing: no underflow, no phantom disconnect.
            QueuedEvent::Disconnected(client) => self.connections.disconnect(client),
            QueuedEvent::Established { included_tables } => {
                w.subscriptions_established = w.subscriptions_established.saturating_add(1);
                w.included_tables.record(included_tables);
            }
            QueuedEvent::Continued(client) => {
                w.subscriptions_continued = w.subscriptions_continued.saturating_add(1);
                w.continued_per_client.record(client);
            }
            QueuedEvent::SyncInline { shapes, rows } => {
                w.initial_syncs = w.initial_syncs.saturating_add(1);
                let shapes = usize::from(shapes).min(rows.len());
                rows[..shapes]
                    .iter()
                    .for_each(|&n| w.rows_per_shape.record(n));
            }
            QueuedEvent::SyncMany(rows) => {
                w.initial_syncs = w.initial_syncs.saturating_add(1);
                rows.iter().for_each(|&n| w.rows_per_shape.record(n));
            }
            QueuedEvent::PgVersion(version) => self.pg_version = Some(version),
            QueuedEvent::Wal(figures) => self.wal = *figures,
            QueuedEvent::ElectrifiedTables(count) => self.electrified_tables = count,
        }
    }

    /// Records a sample of the gauges: resident memory (if known) and connected clients.
    pub(crate) fn sample_gauges(&mut self, used_memory: Option<u64>) {
        if let Some(bytes) = used_memory {
            self.window.used_memory.record(bytes);
        }
        self.window
            .concurrent_clients
            .record(self.connections.total());
    }

    /// Hands out the window's figures, with a last sample of the gauges, and starts a new
    /// window at `taken`.
    pub(crate) fn snapshot(
        &mut self,
        used_memory: Option<u64>,
        taken: SystemTime,
    ) -> WindowSnapshot {
        self.sample_gauges(used_memory);
        let w = std::mem::replace(&mut self.window, Window::new(taken));
        let gauges = (w.concurrent_clients.stats(), w.used_memory.stats());
        self.figures(&w, taken, gauges)
    }

    /// The figures a snapshot taken at `now` would hold, leaving the window as it is: the
    /// fresh gauge sample is shown alongside the window's samples, not added to them.
    pub(crate) fn preview(&self, used_memory: Option<u64>, now: SystemTime) -> WindowSnapshot {
        let mut concurrent = self.window.concurrent_clients.clone();
        concurrent.record(self.connections.total());
        let mut memory = self.window.used_memory.clone();
        if let Some(bytes) = used_memory {
            memory.record(bytes);
        }
        let gauges = (concurrent.stats(), memory.stats());
        self.figures(&self.window, now, gauges)
    }

    /// The figures of window `w`, taken at `taken`, with the gauges' summaries given.
    fn figures(
        &self,
        w: &Window,
        taken: SystemTime,
        (concurrent_clients, used_memory): (SummaryStats, SummaryStats),
    ) -> WindowSnapshot {
        let count = |c: Counter| w.counts[c as usize];
        let mut usage = Usage::default();
        usage.concurrent_clients = concurrent_clients;
        usage.distinct_clients = w.distinct_clients.count();
        usage.distinct_users = w.distinct_users.count();
        usage.electrified_tables = self.electrified_tables;
        usage.initial_syncs = w.initial_syncs;
        usage.operations_from_pg = count(Counter::OperationsFromPg);
        usage.operations_received_from_clients = count(Counter::OperationsReceivedFromClients);
        usage.operations_sent_to_clients = count(Counter::OperationsSentToClients);
        usage.subscriptions_continued = w.subscriptions_continued;
        usage.subscriptions_continued_per_client = w.continued_per_client.summary().stats();
        usage.subscriptions_established = w.subscriptions_established;
        usage.subscriptions_included_tables = w.included_tables.stats();
        usage.subscriptions_rows_per_shape = w.rows_per_shape.stats();
        usage.transactions_from_pg = count(Counter::TransactionsFromPg);
        usage.transactions_received_from_clients = count(Counter::TransactionsReceivedFromClients);
        usage.transactions_sent_to_clients = count(Counter::TransactionsSentToClients);
        WindowSnapshot {
            began: w.began,
            taken,
            usage,
            used_memory,
            wal: self.wal,
            pg_version: self.pg_version.clone(),
            dropped_events: w.shed,
        }
    }
}
