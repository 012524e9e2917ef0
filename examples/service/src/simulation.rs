//! The simulated sync service: real actix actors standing in for the parts of a sync service
//! that see usage, all recording through one `Recorder` that keeps exact totals beside
//! telemetry's.
//!
//! - a `Hub` keeps N client connections alive. Each `ClientConn` connects with a client id and
//!   a user id (about three clients per user), then every 50–200 ms does something at random:
//!   establishes a subscription, runs an initial sync, continues a subscription or sends a
//!   transaction. After 2–8 s it disconnects and the hub connects a replacement (usually a new
//!   client id, sometimes the same one reconnecting);
//! - a `Replication` actor streams transactions "from Postgres", fans each out to the connected
//!   clients, and reports the Postgres version, the WAL cache and the electrified tables.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use electric_telemetry::{
    ClientConnected, ClientDisconnected, ElectrifiedTables, InitialSync, PgVersion,
    ReceivedFromClient, ReplicatedFromPg, SentToClients, SubscriptionContinued,
    SubscriptionEstablished, Telemetry, Usage, UsageEvent, WalStatus,
};
use serde::Serialize;

/// The Postgres version the simulated replication connection "learns".
const PG_VERSION: &str = "14.9";

/// The report's nine usage counters, keyed by their field names in `data.usage`: what the
/// simulation generated, or what the received reports add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub operations_from_pg: u64,
    pub transactions_from_pg: u64,
    pub operations_received_from_clients: u64,
    pub transactions_received_from_clients: u64,
    pub operations_sent_to_clients: u64,
    pub transactions_sent_to_clients: u64,
    pub initial_syncs: u64,
    pub subscriptions_established: u64,
    pub subscriptions_continued: u64,
}

impl Counts {
    pub fn add(&mut self, usage: &Usage) {
        self.operations_from_pg += usage.operations_from_pg;
        self.transactions_from_pg += usage.transactions_from_pg;
        self.operations_received_from_clients += usage.operations_received_from_clients;
        self.transactions_received_from_clients += usage.transactions_received_from_clients;
        self.operations_sent_to_clients += usage.operations_sent_to_clients;
        self.transactions_sent_to_clients += usage.transactions_sent_to_clients;
        self.initial_syncs += usage.initial_syncs;
        self.subscriptions_established += usage.subscriptions_established;
        self.subscriptions_continued += usage.subscriptions_continued;
    }

    pub fn to_json(self) -> String {
        serde_json::to_string(&self).expect("nine integers always serialise")
    }
}

/// What an event adds to the simulation's totals; most events add nothing.
pub trait Tally {
    fn tally(&self, _counts: &mut Counts) {}
}

impl Tally for ReplicatedFromPg {
    fn tally(&self, c: &mut Counts) {
        c.transactions_from_pg += self.transactions;
        c.operations_from_pg += self.operations;
    }
}
impl Tally for ReceivedFromClient {
    fn tally(&self, c: &mut Counts) {
        c.transactions_received_from_clients += self.transactions;
        c.operations_received_from_clients += self.operations;
    }
}
impl Tally for SentToClients {
    fn tally(&self, c: &mut Counts) {
        c.transactions_sent_to_clients += self.transactions;
        c.operations_sent_to_clients += self.operations;
    }
}
impl Tally for InitialSync {
    fn tally(&self, c: &mut Counts) {
        c.initial_syncs += 1;
    }
}
impl Tally for SubscriptionEstablished {
    fn tally(&self, c: &mut Counts) {
        c.subscriptions_established += 1;
    }
}
impl Tally for SubscriptionContinued {
    fn tally(&self, c: &mut Counts) {
        c.subscriptions_continued += 1;
    }
}
impl Tally for ClientConnected {}
impl Tally for ClientDisconnected {}
impl Tally for PgVersion {}
impl Tally for WalStatus {}
impl Tally for ElectrifiedTables {}

/// The one way the simulation records usage: counts the event, then hands it to telemetry.
#[derive(Clone)]
pub struct Recorder {
    telemetry: Telemetry,
    /// `None` once closed: nothing may be recorded after the simulation stopped.
    totals: Arc<Mutex<Option<Tallies>>>,
}

/// Everything generated, and what was generated while telemetry collected usage (from a
/// consent on, say): what the reports can hold.
#[derive(Debug, Default)]
struct Tallies {
    all: Counts,
    collected: Counts,
    collecting: bool,
}

impl Recorder {
    /// `collecting`: whether telemetry collects usage now.
    pub fn new(telemetry: Telemetry, collecting: bool) -> Self {
        Self {
            telemetry,
            totals: Arc::new(Mutex::new(Some(Tallies {
                collecting,
                ..Tallies::default()
            }))),
        }
    }

    pub fn record<E: UsageEvent + Tally>(&self, event: E) {
        let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        // A guard, not the mechanism: the actors are halted before this is closed, so an event
        // refused here is a bug in the simulation's shutdown order.
        let Some(totals) = totals.as_mut() else {
            tracing::error!("an event was recorded after the simulation stopped; dropped");
            return;
        };
        event.tally(&mut totals.all);
        if totals.collecting {
            event.tally(&mut totals.collected);
        }
        self.telemetry.record(event);
    }

    /// Runs `change` (a consent through the handle, which answers whether telemetry collects
    /// usage afterwards) between two recorded events, so that the collected totals start
    /// exactly where telemetry's do.
    pub fn change_collection(&self, change: impl FnOnce() -> bool) {
        let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        let collecting = change();
        if let Some(totals) = totals.as_mut() {
            totals.collecting = collecting;
        }
    }

    /// Stops recording and returns the totals: everything generated, and what was generated
    /// while telemetry collected usage.
    pub fn close(&self) -> (Counts, Counts) {
        let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        let t = totals.take().unwrap_or_default();
        (t.all, t.collected)
    }
}

/// Stops an actor from recording anything more; answered once it has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Halt;

/// One replicated transaction, to pass on to every connected client.
#[derive(Message)]
#[rtype(result = "()")]
struct Fanout {
    operations: u64,
}

/// One replicated transaction, sent to one client.
#[derive(Message)]
#[rtype(result = "()")]
struct Transaction {
    operations: u64,
}

/// A client left on its own; its slot needs a replacement.
#[derive(Message)]
#[rtype(result = "()")]
struct Left {
    slot: usize,
    client_id: String,
}

/// Keeps one client connected in each of its slots and passes transactions on to them.
pub struct Hub {
    recorder: Recorder,
    slots: Vec<Option<Addr<ClientConn>>>,
    users: usize,
    last_client: u64,
    halted: bool,
}

impl Hub {
    pub fn new(clients: usize, recorder: Recorder) -> Self {
        Self {
            recorder,
            slots: (0..clients).map(|_| None).collect(),
            // About three clients per user, so that distinct_users < distinct_clients.
            users: clients.div_ceil(3),
            last_client: 0,
            halted: false,
        }
    }

    fn new_client_id(&mut self) -> String {
        self.last_client += 1;
        format!("client-{:05}", self.last_client)
    }

    fn connect(&mut self, slot: usize, client_id: String, ctx: &mut Context<Self>) {
        let client = ClientConn {
            slot,
            user_id: format!("user-{}", slot % self.users),
            client_id,
            hub: ctx.address(),
            recorder: self.recorder.clone(),
            connected: false,
        };
        self.slots[slot] = Some(client.start());
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for slot in 0..self.slots.len() {
            let client_id = self.new_client_id();
            self.connect(slot, client_id, ctx);
        }
    }
}

impl Handler<Left> for Hub {
    type Result = ();

    fn handle(&mut self, left: Left, ctx: &mut Context<Self>) {
        self.slots[left.slot] = None;
        if self.halted {
            return;
        }
        // Mostly a new client; now and then the same one reconnecting.
        let client_id = if fastrand::u8(0..5) == 0 {
            left.client_id
        } else {
            self.new_client_id()
        };
        tracing::debug!(slot = left.slot, client_id, "client connecting");
        self.connect(left.slot, client_id, ctx);
    }
}

impl Handler<Fanout> for Hub {
    type Result = ();

    fn handle(&mut self, fanout: Fanout, _: &mut Context<Self>) {
        for client in self.slots.iter().flatten() {
            client.do_send(Transaction {
                operations: fanout.operations,
            });
        }
    }
}

impl Handler<Halt> for Hub {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Halt, _: &mut Context<Self>) -> Self::Result {
        self.halted = true;
        let clients: Vec<_> = self.slots.iter_mut().filter_map(Option::take).collect();
        Box::pin(async move {
            for client in clients {
                // An error means the client had already left: it records nothing more either.
                let _ = client.send(Halt).await;
            }
        })
    }
}

/// The service's side of one client connection.
struct ClientConn {
    slot: usize,
    client_id: String,
    user_id: String,
    hub: Addr<Hub>,
    recorder: Recorder,
    connected: bool,
}

impl ClientConn {
    fn schedule_action(&self, ctx: &mut Context<Self>) {
        let pause = Duration::from_millis(fastrand::u64(50..=200));
        ctx.run_later(pause, |client, ctx| {
            if client.connected {
                client.act();
                client.schedule_action(ctx);
            }
        });
    }

    fn act(&self) {
        let id = self.client_id.as_str();
        match fastrand::u8(0..100) {
            0..15 => self
                .recorder
                .record(SubscriptionEstablished::new(id, fastrand::u64(1..=5))),
            15..30 => {
                let shapes = fastrand::usize(1..=4);
                let rows: Vec<u64> = (0..shapes).map(|_| fastrand::u64(0..=5_000)).collect();
                self.recorder.record(InitialSync::new(rows));
            }
            30..45 => self.recorder.record(SubscriptionContinued::new(id)),
            45..75 => self
                .recorder
                .record(ReceivedFromClient::new(1, fastrand::u64(1..=10))),
            _ => {} // idle this time
        }
    }

    /// Disconnects once; `tell_hub` asks for a replacement.
    fn disconnect(&mut self, tell_hub: bool, ctx: &mut Context<Self>) {
        if !self.connected {
            return;
        }
        self.connected = false;
        self.recorder
            .record(ClientDisconnected::new(&self.client_id));
        if tell_hub {
            self.hub.do_send(Left {
                slot: self.slot,
                client_id: self.client_id.clone(),
            });
        }
        ctx.stop();
    }
}

impl Actor for ClientConn {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connected = true;
        self.recorder
            .record(ClientConnected::new(&self.client_id, &self.user_id));
        let lifetime = Duration::from_millis(fastrand::u64(2_000..=8_000));
        ctx.run_later(lifetime, |client, ctx| client.disconnect(true, ctx));
        self.schedule_action(ctx);
    }
}

impl Handler<Transaction> for ClientConn {
    type Result = ();

    fn handle(&mut self, transaction: Transaction, _: &mut Context<Self>) {
        // A transaction that arrives after the client left is never sent, so not counted.
        if self.connected {
            self.recorder
                .record(SentToClients::new(1, transaction.operations));
        }
    }
}

impl Handler<Halt> for ClientConn {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        // The service is going away, so its connections close.
        self.disconnect(false, ctx);
    }
}

/// The logical replication connection to Postgres.
pub struct Replication {
    hub: Addr<Hub>,
    recorder: Recorder,
    electrified_tables: u64,
    halted: bool,
}

impl Replication {
    pub fn new(hub: Addr<Hub>, recorder: Recorder) -> Self {
        Self {
            hub,
            recorder,
            electrified_tables: 3,
            halted: false,
        }
    }

    fn stream(&mut self) {
        for _ in 0..fastrand::u8(0..=3) {
            let operations = fastrand::u64(1..=40);
            self.recorder.record(ReplicatedFromPg::new(1, operations));
            self.hub.do_send(Fanout { operations });
        }
    }

    fn report_wal(&mut self) {
        let transactions = fastrand::u64(2_000..=6_000);
        self.recorder.record(WalStatus {
            oldest_wal_time: SystemTime::now()
                .checked_sub(Duration::from_secs(fastrand::u64(120..=900))),
            wal_cache_memory: transactions * fastrand::u64(300..=900),
            wal_transactions: transactions,
        });
    }

    fn maybe_migrate(&mut self) {
        // Now and then a migration electrifies a table (or one is dropped).
        if fastrand::u8(0..3) == 0 {
            self.electrified_tables = fastrand::u64(3..=6);
            self.recorder.record(ElectrifiedTables {
                count: self.electrified_tables,
            });
        }
    }
}

impl Actor for Replication {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match PgVersion::new(PG_VERSION) {
            Ok(version) => self.recorder.record(version),
            Err(e) => tracing::warn!(error = %e, "cannot report the Postgres version"),
        }
        self.recorder.record(ElectrifiedTables {
            count: self.electrified_tables,
        });
        self.report_wal();
        ctx.run_interval(Duration::from_millis(100), |r, _| {
            if !r.halted {
                r.stream();
            }
        });
        ctx.run_interval(Duration::from_secs(1), |r, _| {
            if !r.halted {
                r.report_wal();
            }
        });
        ctx.run_interval(Duration::from_secs(5), |r, _| {
            if !r.halted {
                r.maybe_migrate();
            }
        });
    }
}

impl Handler<Halt> for Replication {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        self.halted = true;
        ctx.stop();
    }
}
