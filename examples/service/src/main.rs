//! A simulated Electric sync service that embeds `electric-telemetry`: the project's main job
//! (`make run`).
//!
//! The simulation (`simulation.rs`) records usage from real actix actors through one
//! `Recorder`, which keeps exact totals beside telemetry's. When the run ends (`--duration`,
//! Ctrl-C or SIGTERM) the simulation stops first, telemetry then delivers its final report, and
//! the exact totals are printed on stdout as `simulated: {...}`.
//!
//! Where reports go:
//! - `--local-receiver`: to a receiver inside this process (127.0.0.1, the same one the tests
//!   use); one line per report as it arrives, then `received: {...}` and whether the totals
//!   match;
//! - `--checkpoint-api URL`: wherever `ELECTRIC_TELEMETRY_URL` says (a `checkpoint` receiver);
//!   at the end its answers are read from `URL` (its `/api/overview`) and checked against the
//!   simulation;
//! - otherwise wherever the `ELECTRIC_TELEMETRY_*` variables say.
//!
//! As an opt-in service (`--opt-in`): telemetry starts nothing until consent, which
//! `--consent-after D --consent-level L` gives through the handle after `D`, as a service's
//! admin action would; `--status` prints what telemetry is doing and why at the end, and
//! `--print-dictionary` prints every report field (path, type, level, revision, source,
//! meaning) and exits.
//!
//! Logs go to stderr (`RUST_LOG`, default `info`); stdout carries the reports and the totals.

mod simulation;

// The loopback receiver the integration tests use: one receiver, not two copies.
#[path = "../../../tests/common/receiver.rs"]
mod receiver;

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use actix::prelude::*;
use clap::Parser;
use electric_telemetry::{
    DeliveryError, Level, Policy, Report, ShutdownOutcome, Telemetry, TelemetryConfig,
};

use receiver::Receiver;
use simulation::{Counts, Halt, Hub, Recorder, Replication};

/// A simulated Electric sync service that records usage with electric-telemetry.
///
/// Telemetry reads ELECTRIC_TELEMETRY (disabled to opt out, log to log reports instead of
/// sending them), DO_NOT_TRACK, ELECTRIC_TELEMETRY_URL, ELECTRIC_TELEMETRY_INTERVAL,
/// ELECTRIC_TELEMETRY_FIRST_REPORT_IN, ELECTRIC_STORAGE_DIR and the others in the README.
/// RUST_LOG sets the log level (default info). Logs go to stderr, reports and totals to stdout.
#[derive(Debug, Parser)]
#[command(name = "service", version)]
struct Args {
    /// Stop after this long (20s, 2m, 1h 30m); without it, run until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Keep this many clients connected (1 to 10000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    clients: u16,
    /// Send the reports to a receiver inside this process (127.0.0.1, a free port), print one
    /// line per report, and check the totals against the simulation's.
    #[arg(long, conflicts_with = "checkpoint_api")]
    local_receiver: bool,
    /// With --local-receiver, also print each received report's full JSON.
    #[arg(long, requires = "local_receiver")]
    show_json: bool,
    /// At exit, print the report telemetry would send now (a preview: it resets and sends
    /// nothing), before the final report is taken.
    #[arg(long)]
    print_report: bool,
    /// After the run, read the answers of the checkpoint receiver that ELECTRIC_TELEMETRY_URL
    /// points at from this URL (its /api/overview) and check them against the simulation.
    #[arg(long, value_name = "URL")]
    checkpoint_api: Option<String>,
    /// Behave as a service whose code chose the opt-in policy: telemetry starts nothing until
    /// an operator consents (ELECTRIC_TELEMETRY=enabled, a consent on record in the storage
    /// dir, or --consent-after).
    #[arg(long)]
    opt_in: bool,
    /// Consent through the handle after this long (as a service's admin action would),
    /// recorded in the storage dir; collection starts then.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    consent_after: Option<Duration>,
    /// The level --consent-after consents to: basic, usage or full (default full).
    #[arg(long, value_name = "L", requires = "consent_after", value_parser = parse_level)]
    consent_level: Option<Level>,
    /// At exit, before the final report, print what telemetry is doing and why: policy,
    /// mode, level, consent, the fields waiting for consent, the outbox.
    #[arg(long)]
    status: bool,
    /// Print the report's field dictionary (Markdown: path, type, level, schema revision,
    /// what feeds it, what it means) and exit; nothing starts.
    #[arg(long)]
    print_dictionary: bool,
}

fn parse_level(text: &str) -> Result<Level, String> {
    text.parse()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err("must be longer than 0s".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e}; try 20s, 2m or 1h 30m")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_dictionary {
        say(&electric_telemetry_report::dictionary_markdown());
        return ExitCode::SUCCESS;
    }
    init_logging();
    // An explicit System rather than #[actix::main], so that bad flags are refused before
    // anything starts.
    actix::System::new().block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    // Known here, so the receiver can tell this run's reports from those an earlier run left
    // in the outbox. ELECTRIC_INSTANCE_ID still wins (with_env comes after).
    let instance_id = uuid::Uuid::new_v4().to_string();
    let receiver = args.local_receiver.then(Receiver::start);
    let config = TelemetryConfig::builder()
        .instance_id(instance_id.clone())
        .electric_version(concat!(env!("CARGO_PKG_VERSION"), "-simulated"))
        // Gauges are sampled once a minute by default, which a short demo would never see.
        .sample_every(Duration::from_secs(1))
        .policy(if args.opt_in {
            Policy::OptIn
        } else {
            Policy::OptOut
        })
        .with_env()
        // After with_env(), so that it wins over ELECTRIC_TELEMETRY_URL: --local-receiver must
        // never let a report leave the machine.
        .map(|b| match &receiver {
            Some(receiver) => b.url(receiver.url.clone()),
            None => b,
        })
        .and_then(|b| b.build());
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("service: {e}");
            return ExitCode::from(2);
        }
    };
    let instance_id = config.instance_id().unwrap_or(&instance_id).to_owned();
    let telemetry = match Telemetry::start(config) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("service: {e}");
            return ExitCode::FAILURE;
        }
    };

    let collects_usage = |level: Option<Level>| level.is_some_and(|l| l >= Level::Usage);
    let recorder = Recorder::new(telemetry.clone(), collects_usage(telemetry.level()));
    let hub = Hub::new(args.clients.into(), recorder.clone()).start();
    let replication = Replication::new(hub.clone(), recorder.clone()).start();
    tracing::info!(
        clients = args.clients,
        "simulation running; stop it with Ctrl-C"
    );
    let mut printer = ReportPrinter::new(instance_id, args.show_json);
    let stop = wait_for_stop(args.duration);
    tokio::pin!(stop);
    let consent = async {
        match args.consent_after {
            Some(after) => actix_rt::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(consent);
    let mut consented = false;
    let reason = loop {
        tokio::select! {
            reason = &mut stop => break reason,
            () = &mut consent, if !consented => {
                consented = true;
                let level = args.consent_level.unwrap_or(Level::Full);
                recorder.change_collection(|| match telemetry.consent(level) {
                    Ok(()) => {
                        tracing::info!(%level, "consent given through the handle");
                        // The level sent is the lowest of the consent's and the settings'.
                        collects_usage(telemetry.level())
                    }
                    Err(e) => {
                        tracing::warn!("the consent was not taken: {e}");
                        false
                    }
                });
            }
            () = actix_rt::time::sleep(Duration::from_millis(200)) => {
                if let Some(receiver) = &receiver {
                    printer.print_new(receiver);
                }
            }
        }
    };
    tracing::info!("{reason}: stopping the simulation");

    // Stop every source of events before telemetry takes its final snapshot, so that the
    // totals cover exactly what the reports can contain. Replication goes first: it feeds the
    // clients. Each `send` answers once the actor has handled the halt.
    let _ = replication.send(Halt).await;
    let _ = hub.send(Halt).await;
    let (simulated, collected) = recorder.close();

    if args.print_report {
        match telemetry.preview_json().await {
            Some(json) => {
                say(&format!(
                    "preview of the report telemetry would send now:\n{json}"
                ));
                let new = telemetry.status().await.new_since_last_delivery;
                if !new.is_empty() {
                    say(&format!(
                        "new in this preview (the last delivered report did not have them): {}",
                        new.join(", ")
                    ));
                }
            }
            None => say("preview: telemetry is not running, so nothing would be sent"),
        }
    }
    if args.status {
        say(&telemetry.status().await.to_string());
    }
    // Before System::stop(): after it no asynchronous work, the final POST included, completes.
    // The library logs what its outbox keeps; this line says what happened.
    match telemetry.shutdown().await {
        ShutdownOutcome::Delivered => tracing::info!("telemetry delivered its final report"),
        ShutdownOutcome::NotRunning => tracing::info!("telemetry was not running"),
        ShutdownOutcome::NotDelivered(DeliveryError::Status { status, body_start })
            if !(500..600).contains(&status) && !matches!(status, 408 | 429) =>
        {
            tracing::info!(
                "telemetry stopped with reports its endpoint refused ({status} {body_start:?}); \
                 they are kept in the outbox and tried again after the next start"
            )
        }
        ShutdownOutcome::NotDelivered(e) => tracing::info!(
            "telemetry stopped before its endpoint took every report ({e}); what it did not \
             take is kept in the outbox and sent after the next start"
        ),
        _ => tracing::info!("telemetry stopped"),
    }

    say(&format!("simulated: {}", simulated.to_json()));
    if collected != simulated {
        // Before a consent (or at basic) usage is not collected: the reports hold this part.
        say(&format!(
            "simulated while telemetry collected usage: {}",
            collected.to_json()
        ));
    }
    let verdict = if let Some(receiver) = receiver {
        printer.print_new(&receiver);
        receiver.stop().await;
        Some(printer.verdict(&collected, telemetry.is_enabled()))
    } else if let Some(url) = &args.checkpoint_api {
        Some(checkpoint_verdict(url, &collected).await)
    } else {
        None
    };
    actix::System::current().stop();
    match verdict {
        Some(true) | None => ExitCode::SUCCESS,
        Some(false) => ExitCode::FAILURE,
    }
}

/// Prints each report the local receiver got, once, as one line (and its JSON on request), and
/// sums this run's reports.
struct ReportPrinter {
    instance_id: String,
    show_json: bool,
    seen: HashSet<uuid::Uuid>,
    reports: u64,
    earlier_runs: u64,
    dropped: u64,
    received: Counts,
}

impl ReportPrinter {
    fn new(instance_id: String, show_json: bool) -> Self {
        Self {
            instance_id,
            show_json,
            seen: HashSet::new(),
            reports: 0,
            earlier_runs: 0,
            dropped: 0,
            received: Counts::default(),
        }
    }

    fn print_new(&mut self, receiver: &Receiver) {
        for request in receiver.received() {
            let Ok(report) = serde_json::from_slice::<Report>(&request.body) else {
                tracing::warn!(bytes = request.body.len(), "the receiver got a non-report");
                continue;
            };
            // Retries carry the same report_id: each report counts once.
            if !self.seen.insert(report.report_id) {
                continue;
            }
            let usage = &report.data.usage;
            let window = format!(
                "{} → {}",
                time_of(&report.last_reported),
                time_of(&report.timestamp)
            );
            let whose = if report.data.environment.electric_instance_id == self.instance_id {
                self.reports += 1;
                self.received.add(usage);
                self.dropped += report.dropped_events + report.dropped_reports;
                format!("report #{}", self.reports)
            } else {
                self.earlier_runs += 1;
                "report from an earlier run (not in this run's totals)".to_owned()
            };
            say(&format!(
                "{whose}: {window}, {} ops from Postgres, {} ops to clients, {} from clients, \
                 {} initial syncs, {} distinct clients, up to {} connected",
                usage.operations_from_pg,
                usage.operations_sent_to_clients,
                usage.operations_received_from_clients,
                usage.initial_syncs,
                usage.distinct_clients,
                usage.concurrent_clients.max,
            ));
            if self.show_json {
                let json = serde_json::to_string_pretty(&report).expect("a report serialises");
                say(&json);
            }
        }
    }

    fn verdict(&self, simulated: &Counts, enabled: bool) -> bool {
        say(&format!("received: {}", self.received.to_json()));
        let matches = self.received == *simulated;
        if !enabled {
            tracing::warn!("telemetry is disabled, so nothing was received");
        } else if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                "telemetry dropped events or reports"
            );
        }
        say(&format!(
            "reports received: {} (and {} from earlier runs), totals match: {matches}",
            self.reports, self.earlier_runs
        ));
        matches
    }
}

/// Reads the checkpoint receiver's overview and checks its totals against the simulation's.
async fn checkpoint_verdict(url: &str, simulated: &Counts) -> bool {
    let answers = async {
        let mut response = awc::Client::default()
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response
            .json::<serde_json::Value>()
            .limit(1 << 20)
            .await
            .map_err(|e| e.to_string())
    };
    let overview = match answers.await {
        Ok(overview) => overview,
        Err(e) => {
            say(&format!(
                "the checkpoint receiver did not answer at {url}: {e}"
            ));
            return false;
        }
    };
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let totals = &overview["totals"];
    let expected = serde_json::to_value(simulated).expect("counts serialise");
    let matches = expected
        .as_object()
        .expect("an object")
        .iter()
        .all(|(key, value)| totals[key] == *value);
    say(&format!(
        "checkpoint answers: {} application(s), {} instance(s), {} operations from Postgres, \
         {} operations sent to clients",
        number(&overview["applications"]),
        number(&overview["instances"]),
        number(&totals["operations_from_pg"]),
        number(&totals["operations_sent_to_clients"]),
    ));
    say(&format!(
        "checkpoint totals match the simulation: {matches}"
    ));
    matches
}

/// `HH:MM:SS` of an RFC 3339 time, for a short line.
fn time_of(rfc3339: &str) -> &str {
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

/// Prints a line on stdout. Unlike println! it does not panic when stdout has gone away
/// (`... | head`): the shutdown must still finish.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Installs the stderr logger; RUST_LOG chooses the level; by default `info`, without actix-server's start-up chatter.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,actix_server=warn"));
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
        if actix_rt::signal::ctrl_c().await.is_err() {
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
                Err(_) => std::future::pending::<()>().await,
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
