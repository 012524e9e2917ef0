//! The collector actor: owns every aggregate of the current window.
//!
//! It handles each typed usage message (see [`crate::messages`]), and owns the two things
//! [`Telemetry::record`](crate::Telemetry::record) writes into without a message: the hot
//! counters (one slot per recording thread) and the bounded queue of compact structured events.
//! It folds both into its window once a second, when a producer finds the queue filling up,
//! and at the start of every [`TakeSnapshot`], which hands out the window's figures and starts
//! a new window. Actix runs one handler at a time, so a snapshot sees every message that
//! arrived before it and none after, and every recorded event lands in exactly one window.
//!
//! Its state is bounded whatever the load: summaries turn into fixed-size histograms, distinct
//! counts into 16 KiB sketches, and the per-client tables stop growing (see
//! [`crate::summary`], [`crate::distinct`] and [`clients`](crate::clients)). In all, under
//! 1 MiB, plus the 320 KiB queue allocated at start.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;

use crate::clients::{Connections, ContinuedPerClient};
use crate::counters::{Counter, Totals, COUNTERS};
use crate::distinct::DistinctCount;
use crate::intake::{Event, Intake};
use crate::messages::*;
use crate::report::Usage;
use crate::report_clock::ReportClock;
use crate::summary::{Summary, SummaryStats};

/// How many typed messages may wait in the collector's mailbox. [`Telemetry::record`] does not
/// use the mailbox for the crate's own events (they go through the intake queue); it falls
/// back to it, shedding and counting when full, only for event types it has no compact form
/// for.
///
/// [`Telemetry::record`]: crate::Telemetry::record
pub const MAILBOX_CAPACITY: usize = 16_384;

/// How often the collector folds the hot counters and the intake queue into its window when
/// nothing asks it sooner. Also bounds how long a counter slot goes unread (see
/// [`crate::counters`]).
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// The collector actor. Start it through [`Telemetry::start`](crate::Telemetry::start); it
/// is public so that actors can hold an `Addr<Collector>` or a `Recipient<M>`.
pub struct Collector {
    intake: Arc<Intake>,
    window: Window,
    /// Where windows begin and end: on the monotonic clock, so a wall-clock step never makes
    /// one negative or a month long (see [`crate::report_clock`]).
    clock: ReportClock,
    connections: Connections,
    electrified_tables: u64,
    pg_version: Option<String>,
    wal: WalStatus,
}

/// What accumulates over one window and starts afresh with the next.
struct Window {
    began: SystemTime,
    /// The hot counters: folded from the slots plus added by counter messages.
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

    fn add(&mut self, counter: Counter, n: u64) {
        let count = &mut self.counts[counter as usize];
        *count = count.saturating_add(n);
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
        Self::with_intake(Intake::new())
    }

    pub(crate) fn with_intake(intake: Arc<Intake>) -> Self {
        let clock = ReportClock::start(SystemTime::now(), Instant::now());
        Self {
            intake,
            window: Window::new(clock.began()),
            clock,
            connections: Connections::default(),
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

    /// Applies the queued structured events, oldest first.
    fn drain_queue(&mut self) {
        let intake = Arc::clone(&self.intake);
        intake.drain(|event| self.apply(event));
    }

    /// Brings the window up to date with everything recorded through the handle.
    fn fold(&mut self) {
        self.drain_queue();
        let drained = self.intake.counters.drain();
        for counter in Counter::ALL {
            self.window.add(counter, drained.counts[counter as usize]);
        }
        self.window.shed = self.window.shed.saturating_add(drained.shed);
    }

    fn apply(&mut self, event: Event) {
        let w = &mut self.window;
        match event {
            Event::Connected { client, user } => {
                w.distinct_clients.insert(client);
                w.distinct_users.insert(user);
                self.connections.connect(client);
            }
            // An unknown client changes nothing: no underflow, no phantom disconnect.
            Event::Disconnected(client) => self.connections.disconnect(client),
            Event::Established { included_tables } => {
                w.subscriptions_established = w.subscriptions_established.saturating_add(1);
                w.included_tables.record(included_tables);
            }
            Event::Continued(client) => {
                w.subscriptions_continued = w.subscriptions_continued.saturating_add(1);
                w.continued_per_client.record(client);
            }
            Event::SyncInline { shapes, rows } => {
                w.initial_syncs = w.initial_syncs.saturating_add(1);
                let shapes = usize::from(shapes).min(rows.len());
                rows[..shapes]
                    .iter()
                    .for_each(|&n| w.rows_per_shape.record(n));
            }
            Event::SyncMany(rows) => {
                w.initial_syncs = w.initial_syncs.saturating_add(1);
                rows.iter().for_each(|&n| w.rows_per_shape.record(n));
            }
            Event::PgVersion(version) => self.pg_version = Some(version.into_string()),
            Event::Wal(status) => self.wal = *status,
            Event::ElectrifiedTables(count) => self.electrified_tables = count,
        }
    }

    fn sample_gauges(&mut self, used_memory: Option<u64>) {
        if let Some(bytes) = used_memory {
            self.window.used_memory.record(bytes);
        }
        self.window
            .concurrent_clients
            .record(self.connections.total());
    }

    fn snapshot(&mut self, used_memory: Option<u64>) -> WindowSnapshot {
        self.fold();
        self.sample_gauges(used_memory);
        let taken = self
            .clock
            .next_window_logged(SystemTime::now(), Instant::now());
        let w = std::mem::replace(&mut self.window, Window::new(taken));
        let gauges = (w.concurrent_clients.stats(), w.used_memory.stats());
        self.figures(&w, taken, gauges)
    }

    /// The figures the window would have if a snapshot were taken now, leaving the window as
    /// it is: no new window, no sample added, nothing reset.
    fn preview(&mut self, used_memory: Option<u64>) -> WindowSnapshot {
        // Folding only moves what was recorded into the current window, where the next
        // snapshot would put it anyway.
        self.fold();
        let mut concurrent = self.window.concurrent_clients.clone();
        concurrent.record(self.connections.total());
        let mut memory = self.window.used_memory.clone();
        if let Some(bytes) = used_memory {
            memory.record(bytes);
        }
        let gauges = (concurrent.stats(), memory.stats());
        self.figures(&self.window, self.clock.peek(Instant::now()), gauges)
    }

    /// The figures of window `w`, taken at `taken`, with the gauges' summaries given.
    fn figures(
        &self,
        w: &Window,
        taken: SystemTime,
        (concurrent_clients, used_memory): (SummaryStats, SummaryStats),
    ) -> WindowSnapshot {
        let hot = |c: Counter| w.counts[c as usize];
        WindowSnapshot {
            began: w.began,
            taken,
            usage: Usage {
                concurrent_clients,
                distinct_clients: w.distinct_clients.count(),
                distinct_users: w.distinct_users.count(),
                electrified_tables: self.electrified_tables,
                initial_syncs: w.initial_syncs,
                operations_from_pg: hot(Counter::OperationsFromPg),
                operations_received_from_clients: hot(Counter::OperationsReceivedFromClients),
                operations_sent_to_clients: hot(Counter::OperationsSentToClients),
                subscriptions_continued: w.subscriptions_continued,
                subscriptions_continued_per_client: w.continued_per_client.summary().stats(),
                subscriptions_established: w.subscriptions_established,
                subscriptions_included_tables: w.included_tables.stats(),
                subscriptions_rows_per_shape: w.rows_per_shape.stats(),
                transactions_from_pg: hot(Counter::TransactionsFromPg),
                transactions_received_from_clients: hot(Counter::TransactionsReceivedFromClients),
                transactions_sent_to_clients: hot(Counter::TransactionsSentToClients),
            },
            used_memory,
            oldest_wal_time: self.wal.oldest_wal_time,
            wal_cache_memory: self.wal.wal_cache_memory,
            wal_transactions: self.wal.wal_transactions,
            pg_version: self.pg_version.clone(),
            dropped_events: w.shed,
        }
    }
}

impl Actor for Collector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(FOLD_EVERY, |collector, _| collector.fold());
    }
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
    /// Usage events shed since the last snapshot because the intake queue (or, for event types
    /// without a compact form, the mailbox) was full.
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

/// Asks the collector to drain the intake queue now; sent by a producer that found it filling.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct DrainIntake;

/// Stops the collector once every message before it has been handled.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct StopCollector;

/// The figures a snapshot taken now would hold, without taking one: the window goes on
/// untouched, so any number of previews changes no later report.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "WindowSnapshot")]
pub struct PreviewSnapshot {
    /// A sample of resident memory to show with the window's samples (not recorded in it).
    pub used_memory: Option<u64>,
}

impl Handler<PreviewSnapshot> for Collector {
    type Result = MessageResult<PreviewSnapshot>;
    fn handle(&mut self, msg: PreviewSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.preview(msg.used_memory))
    }
}

impl Handler<TakeSnapshot> for Collector {
    type Result = MessageResult<TakeSnapshot>;
    fn handle(&mut self, msg: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot(msg.used_memory))
    }
}

impl Handler<SampleGauges> for Collector {
    type Result = ();
    fn handle(&mut self, msg: SampleGauges, _: &mut Context<Self>) {
        // Connects and disconnects queued before the tick count in its sample.
        self.drain_queue();
        self.sample_gauges(msg.used_memory);
    }
}

impl Handler<DrainIntake> for Collector {
    type Result = ();
    fn handle(&mut self, _: DrainIntake, _: &mut Context<Self>) {
        self.drain_queue();
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
                // Into the same window totals the handle's slots are folded into.
                for (counter, n) in msg.hot_counts().into_iter().flatten() {
                    self.window.add(counter, n);
                }
            }
        }
    )*};
}
handle_counter_event!(ReplicatedFromPg, ReceivedFromClient, SentToClients);

macro_rules! handle_structured_event {
    ($($event:ty),*) => {$(
        impl Handler<$event> for Collector {
            type Result = ();
            fn handle(&mut self, msg: $event, _: &mut Context<Self>) {
                // What was queued through the handle before this message comes first. The other
                // way round is not ordered: handle events recorded after this message was sent
                // but before it is handled also come first. Use one path per client.
                if !self.intake.is_empty() {
                    self.drain_queue();
                }
                self.apply(Event::from(msg));
            }
        }
    )*};
}
handle_structured_event!(
    ClientConnected,
    ClientDisconnected,
    SubscriptionEstablished,
    SubscriptionContinued,
    InitialSync,
    PgVersion,
    WalStatus,
    ElectrifiedTables
);
