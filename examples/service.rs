//! A simulated Electric sync service that embeds `electric-telemetry`: the project's "main job".
//!
//! Real actix actors stand in for the parts of a sync service that see usage:
//!
//! - a `Hub` keeps `--clients N` client connections alive. Each `ClientConn` connects with a
//!   client id and a user id (users are shared between clients), then every 50–200 ms does
//!   something at random: establishes a subscription, runs an initial sync, continues a
//!   subscription or sends a transaction. After a few seconds it disconnects and the hub
//!   connects a replacement in its place (usually with a new client id, sometimes the same one
//!   reconnecting), so N clients stay connected;
//! - a `Replication` actor streams transactions "from Postgres", fans each out to the connected
//!   clients, and reports the Postgres version, the WAL cache and the electrified tables.
//!
//! Every event goes through one `Recorder`, which adds its exact numbers to the simulation's
//! own totals before handing it to telemetry. When the run ends (`--duration`, Ctrl-C or
//! SIGTERM) the simulation stops first, telemetry then delivers its final report, and the
//! totals are printed on stdout as `simulated: {...}`. With `--local-receiver` the reports go
//! to a small HTTP server inside this process, which prints each one and sums its counters,
//! so the last lines say whether what was received equals what was simulated.
//!
//! Run it with `make run`, or:
//!
//! ```text
//! ELECTRIC_TELEMETRY_FIRST_REPORT_IN=3s ELECTRIC_TELEMETRY_INTERVAL=8s \
//!     cargo run --example service -- --local-receiver --duration 20s
//! ```
//!
//! Without `--local-receiver` reports go wherever the `ELECTRIC_TELEMETRY_*` variables and the
//! defaults say, which is the real checkpoint endpoint unless `ELECTRIC_TELEMETRY_URL` is set.
//! `ELECTRIC_STORAGE_DIR` says where the cluster id is kept (default `./persistent`). Logs go
//! to stderr (`RUST_LOG`, default `info`); stdout carries only the reports and the totals.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use electric_telemetry::Usage;
use electric_telemetry::{
    ClientConnected, ClientDisconnected, Collector, ElectrifiedTables, InitialSync, PgVersion,
    ReceivedFromClient, ReplicatedFromPg, Report, SentToClients, ShutdownOutcome,
    SubscriptionContinued, SubscriptionEstablished, Telemetry, TelemetryConfig, UsageEvent,
    WalStatus,
};
use serde::Serialize;

const USAGE: &str = "\
A simulated Electric sync service that records usage with electric-telemetry.

Usage: service [--duration D] [--clients N] [--local-receiver] [--print-report]

Options:
  --duration D       stop after D (e.g. 20s, 2m, 1h 30m); without it, run until Ctrl-C or SIGTERM
  --clients N        keep N clients connected, 1 to 10000 (default 8)
  --local-receiver   send the reports to a receiver inside this process (127.0.0.1, a free
                     port) that prints each one, and check its totals against the simulation's
  --print-report     at exit, print the report telemetry would send now (a preview: it resets
                     and sends nothing), before the final report is taken
  -h, --help         print this help

Telemetry reads ELECTRIC_TELEMETRY (set it to disabled to opt out, or to log to log reports
instead of sending them), DO_NOT_TRACK, ELECTRIC_TELEMETRY_URL, ELECTRIC_TELEMETRY_AUDIT_LOG,
ELECTRIC_TELEMETRY_CA_FILE, ELECTRIC_TELEMETRY_INTERVAL, ELECTRIC_TELEMETRY_FIRST_REPORT_IN,
ELECTRIC_INSTANCE_ID and ELECTRIC_STORAGE_DIR. RUST_LOG sets the log level (default info). Logs go to stderr, reports
and totals to stdout.";

/// The Postgres version the simulated replication connection "learns".
const PG_VERSION: &str = "14.9";

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            say(USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("service: {message}\nRun with --help for usage.");
            return ExitCode::from(2);
        }
    };
    init_logging();
    // An explicit System rather than #[actix::main], so that bad flags are refused before
    // anything starts.
    actix::System::new().block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    // Known here, so the local receiver can tell this run's reports from those an earlier run
    // left in the outbox. ELECTRIC_INSTANCE_ID still wins (with_env comes after).
    let instance_id = std::env::var("ELECTRIC_INSTANCE_ID")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let builder = TelemetryConfig::builder()
        .instance_id(instance_id.clone())
        .electric_version(concat!(env!("CARGO_PKG_VERSION"), "-simulated"))
        // Gauges (memory, connected clients) are sampled once a minute by default, which a
        // short demo would never see.
        .sample_every(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(5))
        .with_env();
    let builder = match builder {
        Ok(builder) => builder,
        Err(e) => {
            eprintln!("service: {e}");
            return ExitCode::from(2);
        }
    };

    let receiver = if args.local_receiver {
        match LocalReceiver::start(instance_id) {
            Ok(receiver) => Some(receiver),
            Err(e) => {
                eprintln!("service: could not start the local receiver on 127.0.0.1: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // Set after with_env() so that it wins over ELECTRIC_TELEMETRY_URL: --local-receiver must
    // never let a report leave the machine.
    let builder = match &receiver {
        Some(receiver) => builder.url(receiver.url()),
        None => builder,
    };
    let config = match builder.build() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("service: {e}");
            if let Some(receiver) = receiver {
                receiver.stop().await;
            }
            return ExitCode::from(2);
        }
    };

    let telemetry = match Telemetry::start(config) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("service: {e}");
            if let Some(receiver) = receiver {
                receiver.stop().await;
            }
            return ExitCode::FAILURE;
        }
    };
    let recorder = Recorder::new(telemetry.clone());
    let hub = Hub::new(args.clients, recorder.clone()).start();
    let replication = Replication::new(hub.clone(), recorder.clone()).start();
    tracing::info!(
        clients = args.clients,
        duration = args
            .duration
            .map(|d| humantime::format_duration(d).to_string()),
        "simulation running; stop it with Ctrl-C"
    );

    let reason = wait_for_stop(args.duration).await;
    tracing::info!("{reason}: stopping the simulation");

    // Stop every source of events before telemetry takes its final snapshot, so that the
    // totals cover exactly what the reports can contain. Replication goes first: it feeds the
    // clients. Each `send` answers once the actor has handled the halt.
    let _ = replication.send(Halt).await;
    let _ = hub.send(Halt).await;
    recorder.close();
    let simulated = recorder.totals();

    if args.print_report {
        // A preview leaves the window as it is: the final report below holds the same counts.
        match telemetry.preview_json().await {
            Some(json) => say(&format!(
                "--- preview of the report telemetry would send now\n{json}"
            )),
            None => say("--- preview: telemetry is not running, so nothing would be sent"),
        }
    }

    // Before System::stop(): after it no asynchronous work, the final POST included, completes.
    match telemetry.shutdown().await {
        ShutdownOutcome::Delivered => tracing::info!("telemetry delivered its final report"),
        // The library logs this one itself, with the reason.
        ShutdownOutcome::NotRunning => tracing::info!("telemetry was not running"),
        _ => {}
    }

    say(&format!("simulated: {}", simulated.to_json()));
    if let Some(receiver) = receiver {
        // After telemetry's shutdown, so that the final report has been answered.
        receiver.stop().await;
        let received = receiver.received();
        say(&format!("received: {}", received.totals.to_json()));
        if received.dropped_events > 0 {
            tracing::warn!(
                dropped_events = received.dropped_events,
                "telemetry shed events (its mailbox was full), so the totals cannot match"
            );
        }
        let matches = received.totals == simulated;
        if !telemetry.is_enabled() {
            tracing::warn!("telemetry is disabled (ELECTRIC_TELEMETRY), so nothing was received");
        } else if !matches {
            tracing::warn!(?simulated, received = ?received.totals, "the totals differ");
        }
        if received.earlier_runs > 0 {
            tracing::info!(
                reports = received.earlier_runs,
                "the receiver also got reports an earlier run left in the outbox; they are not \
                 part of this run's totals"
            );
        }
        say(&format!(
            "reports received: {} (and {} from earlier runs), totals match: {matches}",
            received.reports, received.earlier_runs
        ));
    }
    actix::System::current().stop();
    ExitCode::SUCCESS
}

/// Prints a line on stdout. Unlike println! it does not panic when stdout has gone away
/// (`... | head`): the shutdown must still finish.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Installs the stderr logger; RUST_LOG chooses the level, `info` if unset or unreadable.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Waits for the end of `--duration`, Ctrl-C or SIGTERM, and says which came first.
async fn wait_for_stop(duration: Option<Duration>) -> &'static str {
    let elapsed = async {
        match duration {
            Some(duration) => actix_rt::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    let interrupted = async {
        if let Err(e) = actix_rt::signal::ctrl_c().await {
            // Without the handler Ctrl-C still kills the process, just without a final report.
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminated = async {
        #[cfg(unix)]
        {
            use actix_rt::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut sigterm) => {
                    sigterm.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = elapsed => "the duration has elapsed",
        () = interrupted => "interrupted (SIGINT)",
        () = terminated => "terminated (SIGTERM)",
    }
}

// ----------------------------------------------------------------------------------------------
// Flags

#[derive(Debug)]
struct Args {
    duration: Option<Duration>,
    clients: usize,
    local_receiver: bool,
    print_report: bool,
}

enum Parsed {
    Run(Args),
    Help,
}

const MAX_CLIENTS: usize = 10_000;

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut args = Args {
        duration: None,
        clients: 8,
        local_receiver: false,
        print_report: false,
    };
    while let Some(arg) = argv.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
            _ => (arg.clone(), None),
        };
        let value = |argv: &mut dyn Iterator<Item = String>| match inline {
            Some(value) => Ok(value.to_owned()),
            None => argv.next().ok_or_else(|| format!("{flag} needs a value")),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--duration" => {
                let text = value(&mut argv)?;
                let duration = humantime::parse_duration(text.trim()).map_err(|e| {
                    format!("--duration {text:?} is not a duration ({e}); try 20s, 2m or 1h 30m")
                })?;
                if duration.is_zero() {
                    return Err("--duration must be longer than 0s".to_owned());
                }
                args.duration = Some(duration);
            }
            "--clients" => {
                let text = value(&mut argv)?;
                args.clients = text
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_CLIENTS).contains(n))
                    .ok_or_else(|| {
                        format!("--clients {text:?} is not valid: expected a whole number from 1 to {MAX_CLIENTS}")
                    })?;
            }
            "--local-receiver" => {
                if inline.is_some() {
                    return Err("--local-receiver takes no value".to_owned());
                }
                args.local_receiver = true;
            }
            "--print-report" => {
                if inline.is_some() {
                    return Err("--print-report takes no value".to_owned());
                }
                args.print_report = true;
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Parsed::Run(args))
}

// ----------------------------------------------------------------------------------------------
// The nine usage counters, as the simulation counts them and as the receiver sums them

/// The report's nine usage counters, keyed by their field names in `data.usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
struct Counts {
    operations_from_pg: u64,
    transactions_from_pg: u64,
    operations_received_from_clients: u64,
    transactions_received_from_clients: u64,
    operations_sent_to_clients: u64,
    transactions_sent_to_clients: u64,
    initial_syncs: u64,
    subscriptions_established: u64,
    subscriptions_continued: u64,
}

impl Counts {
    fn add(&mut self, usage: &Usage) {
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

    fn to_json(self) -> String {
        serde_json::to_string(&self).expect("nine integers always serialise")
    }
}

/// The simulation's running totals. Atomics because the recorder is cloned into every actor
/// (they all run on the System's thread here, but nothing in the design requires it).
#[derive(Default)]
struct Totals {
    operations_from_pg: AtomicU64,
    transactions_from_pg: AtomicU64,
    operations_received_from_clients: AtomicU64,
    transactions_received_from_clients: AtomicU64,
    operations_sent_to_clients: AtomicU64,
    transactions_sent_to_clients: AtomicU64,
    initial_syncs: AtomicU64,
    subscriptions_established: AtomicU64,
    subscriptions_continued: AtomicU64,
}

impl Totals {
    fn counts(&self) -> Counts {
        Counts {
            operations_from_pg: self.operations_from_pg.load(Relaxed),
            transactions_from_pg: self.transactions_from_pg.load(Relaxed),
            operations_received_from_clients: self.operations_received_from_clients.load(Relaxed),
            transactions_received_from_clients: self
                .transactions_received_from_clients
                .load(Relaxed),
            operations_sent_to_clients: self.operations_sent_to_clients.load(Relaxed),
            transactions_sent_to_clients: self.transactions_sent_to_clients.load(Relaxed),
            initial_syncs: self.initial_syncs.load(Relaxed),
            subscriptions_established: self.subscriptions_established.load(Relaxed),
            subscriptions_continued: self.subscriptions_continued.load(Relaxed),
        }
    }
}

/// What an event adds to the simulation's totals; most events add nothing.
trait Tally {
    fn tally(&self, _totals: &Totals) {}
}

impl Tally for ReplicatedFromPg {
    fn tally(&self, t: &Totals) {
        t.transactions_from_pg.fetch_add(self.transactions, Relaxed);
        t.operations_from_pg.fetch_add(self.operations, Relaxed);
    }
}
impl Tally for ReceivedFromClient {
    fn tally(&self, t: &Totals) {
        t.transactions_received_from_clients
            .fetch_add(self.transactions, Relaxed);
        t.operations_received_from_clients
            .fetch_add(self.operations, Relaxed);
    }
}
impl Tally for SentToClients {
    fn tally(&self, t: &Totals) {
        t.transactions_sent_to_clients
            .fetch_add(self.transactions, Relaxed);
        t.operations_sent_to_clients
            .fetch_add(self.operations, Relaxed);
    }
}
impl Tally for InitialSync {
    fn tally(&self, t: &Totals) {
        t.initial_syncs.fetch_add(1, Relaxed);
    }
}
impl Tally for SubscriptionEstablished {
    fn tally(&self, t: &Totals) {
        t.subscriptions_established.fetch_add(1, Relaxed);
    }
}
impl Tally for SubscriptionContinued {
    fn tally(&self, t: &Totals) {
        t.subscriptions_continued.fetch_add(1, Relaxed);
    }
}
impl Tally for ClientConnected {}
impl Tally for ClientDisconnected {}
impl Tally for PgVersion {}
impl Tally for WalStatus {}
impl Tally for ElectrifiedTables {}

/// The one way the simulation records usage: counts the event, then hands it to telemetry.
#[derive(Clone)]
struct Recorder {
    telemetry: Telemetry,
    totals: Arc<Totals>,
    closed: Arc<AtomicBool>,
}

impl Recorder {
    fn new(telemetry: Telemetry) -> Self {
        Self {
            telemetry,
            totals: Arc::default(),
            closed: Arc::default(),
        }
    }

    fn record<E>(&self, event: E)
    where
        E: UsageEvent + Tally,
        Collector: Handler<E>,
    {
        // A guard, not the mechanism: the actors are halted before this is closed, so an event
        // refused here is a bug in the simulation's shutdown order.
        if self.closed.load(Relaxed) {
            tracing::error!("an event was recorded after the simulation stopped; dropped");
            return;
        }
        event.tally(&self.totals);
        self.telemetry.record(event);
    }

    fn close(&self) {
        self.closed.store(true, Relaxed);
    }

    fn totals(&self) -> Counts {
        self.totals.counts()
    }
}

// ----------------------------------------------------------------------------------------------
// The simulation's actors

/// Stops an actor from recording anything more; answered once it has stopped.
#[derive(Message)]
#[rtype(result = "()")]
struct Halt;

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
struct Hub {
    recorder: Recorder,
    slots: Vec<Option<Addr<ClientConn>>>,
    users: usize,
    last_client: u64,
    halted: bool,
}

impl Hub {
    fn new(clients: usize, recorder: Recorder) -> Self {
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
struct Replication {
    hub: Addr<Hub>,
    recorder: Recorder,
    electrified_tables: u64,
    halted: bool,
}

impl Replication {
    fn new(hub: Addr<Hub>, recorder: Recorder) -> Self {
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

// ----------------------------------------------------------------------------------------------
// The local receiver

/// A checkpoint endpoint on 127.0.0.1 that prints each report and sums its counters.
struct LocalReceiver {
    url: String,
    state: Arc<ReceiverState>,
    server: actix_web::dev::ServerHandle,
}

#[derive(Default)]
struct ReceiverState {
    /// This run's `electric_instance_id`.
    instance_id: String,
    received: Mutex<Received>,
}

#[derive(Debug, Clone, Default)]
struct Received {
    reports: u64,
    /// Reports from an earlier run, delivered from the outbox; not in `totals`.
    earlier_runs: u64,
    dropped_events: u64,
    totals: Counts,
    /// The sender sets an Idempotency-Key; a receiver counts each report once.
    seen: HashSet<uuid::Uuid>,
}

impl LocalReceiver {
    /// Binds a free port on the loopback interface and serves `/checkpoint` from one worker.
    fn start(instance_id: String) -> std::io::Result<Self> {
        let state = Arc::new(ReceiverState {
            instance_id,
            received: Mutex::default(),
        });
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/checkpoint", web::post().to(checkpoint))
        })
        .workers(1)
        // Signals are the simulation's business: it must shut telemetry down first.
        .disable_signals()
        .shutdown_timeout(5)
        .bind(("127.0.0.1", 0))?;
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        let url = format!("http://{addr}/checkpoint");
        tracing::info!(url, "local receiver listening");
        Ok(Self {
            url,
            state,
            server: handle,
        })
    }

    fn url(&self) -> &str {
        &self.url
    }

    async fn stop(&self) {
        self.server.stop(true).await;
    }

    fn received(&self) -> Received {
        self.state
            .received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn checkpoint(body: web::Bytes, state: web::Data<ReceiverState>) -> HttpResponse {
    // The typed Report denies unknown fields, so parsing also checks the payload's shape.
    let report: Report = match serde_json::from_slice(&body) {
        Ok(report) => report,
        Err(e) => return refuse(format!("the body is not a report: {e}")),
    };
    // Re-encoded from the typed report, not from a serde_json::Value: that keeps the fields in
    // the order they were sent instead of sorting them.
    let pretty = serde_json::to_string_pretty(&report).expect("a parsed report always serialises");
    let mut received = state
        .received
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if !received.seen.insert(report.report_id) {
        tracing::warn!(report_id = %report.report_id, "duplicate report ignored");
        return HttpResponse::Ok().finish();
    }
    let mut out = std::io::stdout().lock();
    if report.data.environment.electric_instance_id != state.instance_id {
        received.earlier_runs += 1;
        let _ = writeln!(
            out,
            "--- report from an earlier run received (report_id {}, {} bytes)\n{pretty}",
            report.report_id,
            body.len()
        );
        let _ = out.flush();
        return HttpResponse::Ok().finish();
    }
    received.reports += 1;
    received.dropped_events += report.dropped_events;
    received.totals.add(&report.data.usage);
    // Printed under the lock so that the numbering and the output agree.
    let _ = writeln!(
        out,
        "--- report #{} received (report_id {}, {} bytes)\n{pretty}",
        received.reports,
        report.report_id,
        body.len()
    );
    let _ = out.flush();
    HttpResponse::Ok().finish()
}

fn refuse(problem: String) -> HttpResponse {
    tracing::error!("local receiver refused a request: {problem}");
    HttpResponse::BadRequest().body(problem)
}
