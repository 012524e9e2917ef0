//! The handle a service holds: start (what the policy, the consent on record and the levels
//! decide), record, consent and withdraw, status, preview, shut down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use electric_telemetry_report::{Level, SCHEMA_REVISION};

use crate::config::{
    Policy, TelemetryConfig, TelemetryMode, ENV_DO_NOT_TRACK, ENV_LEVEL, ENV_TELEMETRY,
};
use crate::consent::{self, Consent};
use crate::delivery::handle::DeliveryHandle;
use crate::delivery::http::url_for_logs;
use crate::delivery::log_only::LogOnly;
use crate::delivery::sender::{Discard, FinalAccount, GetOutboxStatus, OutboxStatus, Sender};
use crate::error::{ConsentError, DeliveryError, StartError};
use crate::report::sent_fields;
use crate::report::wire::Report;
use crate::scheduler::{Abandon, Preview, Scheduler, Shutdown};
use crate::usage::collector::{Collector, DrainIntake};
use crate::usage::counters::Counter;
use crate::usage::events::UsageEvent;
use crate::usage::gate::{Gate, Section};
use crate::usage::intake::Intake;
use crate::usage::queued_event::QueuedEvent;

/// The handle to a running (or disabled, or waiting for consent) telemetry subsystem.
///
/// Cheap to clone and `Send + Sync`: give a clone to every actor or thread that records usage.
/// When telemetry collects nothing every recording method returns at once and does nothing.
#[derive(Clone, Default)]
pub struct Telemetry {
    live: Option<Arc<Live>>,
    /// The setting that turned telemetry off and the policy, when an opt-out did (for
    /// [`Telemetry::status`] and the answer to a consent, which an opt-out outranks).
    off: Option<Arc<(String, Policy)>>,
}

/// A handle that may collect: running now, or waiting for consent, or withdrawn.
struct Live {
    /// What may be collected now; shut while nothing runs.
    gate: Arc<Gate>,
    intake: Arc<Intake>,
    control: Mutex<Control>,
}

/// What changes only at start, consent, withdrawal and shutdown.
struct Control {
    config: TelemetryConfig,
    /// The actors of the current run: `None` before consent, after a withdrawal, and once
    /// shut down.
    running: Option<Arc<Running>>,
    /// The decision on record in the storage dir, if any.
    consent: Option<Consent>,
    /// The level collected while running, and which setting decided it.
    level: (Level, String),
    shut_down: bool,
}

struct Running {
    collector: Addr<Collector>,
    scheduler: Addr<Scheduler>,
    delivery: DeliveryHandle,
    /// The sender's own thread; `None` in log-only mode, which needs none.
    sender_arbiter: Option<ArbiterHandle>,
    shutdown_timeout: Duration,
}

impl Live {
    #[inline]
    fn queue(&self, event: QueuedEvent) {
        self.intake.push(event, || {
            if let Some(running) = self.running() {
                running.collector.do_send(DrainIntake);
            }
        });
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        // Nothing that holds the lock panics midway; a poisoned lock is still consistent.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self) -> Option<Arc<Running>> {
        self.control().running.clone()
    }
}

/// Starts the actors at `level` (the gate opens once they are in place) and logs the
/// start-up line. `allowed_by` says why telemetry may collect (the consent, the policy).
fn start_running(
    live: &Live,
    control: &Control,
    level: Level,
    allowed_by: &str,
) -> Result<Arc<Running>, StartError> {
    let config = &control.config;
    let decided_by = config.decided_by();
    if config.mode() == TelemetryMode::Send {
        // Before anything is spawned: a client that cannot be built is the caller's error,
        // not a silent failure on the sender's thread.
        crate::delivery::client::ClientSetup::new(config).map_err(StartError::Client)?;
    }
    // Nothing recorded while the gate was shut reaches this run.
    live.intake.drain(drop);
    let _ = live.intake.counters.drain();
    let collector =
        Collector::gated(Arc::clone(&live.intake), Arc::clone(&live.gate)).start_bounded();
    let every = humantime::format_duration(config.interval());
    let first = humantime::format_duration(config.first_report_in());
    let policy = config.policy();
    let level_by = control.level.1.as_str();
    let waiting = control
        .consent
        .as_ref()
        .map(|c| c.fields_waiting().join(", "))
        .filter(|w| !w.is_empty());
    // What this run sends that the storage dir's last delivered report did not have.
    let revision = control
        .consent
        .as_ref()
        .filter(|c| !c.withdrawn)
        .map_or(SCHEMA_REVISION, |c| c.revision);
    let new_fields = sent_fields::read(config.storage_dir())
        .map(|before| sent_fields::new_since(&sent_fields::at_level(level, revision), &before))
        .filter(|new| !new.is_empty())
        .map(|new| new.join(", "));
    let withdraw = match policy {
        Policy::OptIn => "; the service can withdraw the consent",
        Policy::OptOut => "",
    };
    let (delivery, sender_arbiter) = if config.mode() == TelemetryMode::LogOnly {
        let sink = LogOnly.start();
        tracing::info!(
            decided_by,
            %policy,
            %level,
            level_decided_by = level_by,
            allowed_by,
            fields_waiting_for_consent = waiting,
            fields_new_since_last_report = new_fields,
            "telemetry is in log-only mode: a usage report is written to this log every \
             {every}, the first in {first}, and nothing is sent. Set \
             {ENV_TELEMETRY}=disabled to stop collecting{withdraw}"
        );
        (DeliveryHandle::log_only(&sink), None)
    } else {
        // Its own thread, so that a slow endpoint never delays anyone else.
        let arbiter = Arbiter::new().handle();
        let sender_config = config.clone();
        let sender = Sender::start_in_arbiter(&arbiter, move |_| Sender::new(&sender_config));
        if let Some(why) = &config.proxy_route().unusable {
            tracing::warn!("{why}");
        }
        tracing::info!(
            url = url_for_logs(config.url()),
            // host:port and the setting that chose it; never credentials.
            proxy = %config.proxy_route(),
            decided_by,
            %policy,
            %level,
            level_decided_by = level_by,
            allowed_by,
            fields_waiting_for_consent = waiting,
            fields_new_since_last_report = new_fields,
            "telemetry is enabled: an anonymous usage report is sent every {every}, the \
             first in {first}. Set {ENV_TELEMETRY}=disabled or {ENV_DO_NOT_TRACK}=1 to opt \
             out, {ENV_LEVEL}=basic or usage to send less{withdraw}"
        );
        (DeliveryHandle::sender(&sender), Some(arbiter))
    };
    let scheduler =
        Scheduler::delivering_to(config, collector.clone(), &delivery, Arc::clone(&live.gate))
            .start();
    live.gate.set(Some(level));
    Ok(Arc::new(Running {
        collector,
        scheduler,
        delivery,
        sender_arbiter,
        shutdown_timeout: config.shutdown_timeout(),
    }))
}

/// The start-up line of a telemetry that waits for consent: nothing runs.
fn say_waiting(control: &Control) {
    let policy = control.config.policy();
    match &control.consent {
        Some(c) if c.withdrawn => tracing::info!(
            %policy,
            consent = c.describe(),
            "telemetry is off: consent was withdrawn, and nothing is collected, written or \
             sent until the service records a new consent"
        ),
        _ => tracing::info!(
            %policy,
            consent = "none on record",
            "telemetry is off until an operator consents (this service asks first): nothing \
             is collected, written or sent. Set {ENV_TELEMETRY}=enabled (and optionally \
             {ENV_LEVEL}=basic, usage or full), or consent through the service, to turn it on"
        ),
    }
}

/// What telemetry is doing and why ([`Telemetry::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TelemetryStatus {
    /// Whether the service asks first.
    pub policy: Policy,
    /// The configured mode (send, log-only or disabled).
    pub mode: TelemetryMode,
    /// The setting that decided the mode, e.g. `DO_NOT_TRACK=1` or `default`.
    pub mode_decided_by: String,
    /// The level collected and sent now; `None` when nothing is (no consent yet, withdrawn,
    /// opted out, shut down).
    pub level: Option<Level>,
    /// The setting that decided the level: `default`, `level(..)`,
    /// `ELECTRIC_TELEMETRY_LEVEL=…` or `consent`.
    pub level_decided_by: String,
    /// The decision on record in the storage dir, if any.
    pub consent: Option<Consent>,
    /// Payload fields added after the consent's schema revision, by path: not sent until the
    /// operator consents again.
    pub fields_waiting: Vec<&'static str>,
    /// Payload fields (by path, a new section once) that a report taken now would hold and the
    /// last report this storage dir delivered did not: what a preview shows for the first
    /// time. Empty before any delivery.
    pub new_since_last_delivery: Vec<String>,
    /// How the outbox stands (the last delivery, what waits), while telemetry runs.
    pub outbox: Option<OutboxStatus>,
    /// One sentence: on or off, and which setting or decision made it so.
    pub why: String,
}

impl std::fmt::Display for TelemetryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "telemetry: {}", self.why)?;
        writeln!(f, "policy: {}", self.policy)?;
        writeln!(
            f,
            "mode: {:?} (decided by {})",
            self.mode, self.mode_decided_by
        )?;
        match self.level {
            Some(level) => writeln!(f, "level: {level} (decided by {})", self.level_decided_by)?,
            None => writeln!(f, "level: none (nothing is collected)")?,
        }
        match &self.consent {
            Some(c) => writeln!(f, "consent: {}", c.describe())?,
            None => writeln!(f, "consent: none on record")?,
        }
        if !self.fields_waiting.is_empty() {
            writeln!(
                f,
                "fields waiting for a newer consent: {}",
                self.fields_waiting.join(", ")
            )?;
        }
        if !self.new_since_last_delivery.is_empty() {
            writeln!(
                f,
                "new since the last delivered report: {}",
                self.new_since_last_delivery.join(", ")
            )?;
        }
        match &self.outbox {
            Some(o) => {
                let last = o
                    .last_delivered
                    .and_then(crate::report::builder::rfc3339)
                    .unwrap_or_else(|| "none in this run".to_owned());
                write!(
                    f,
                    "outbox: {} report(s) waiting, {} failed attempt(s) since the last \
                     delivery, last delivery {last}",
                    o.pending, o.failed_attempts
                )
            }
            None => write!(f, "outbox: not running"),
        }
    }
}

/// How a [`Telemetry::shutdown`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownOutcome {
    /// The final report, covering the window up to the shutdown, reached the endpoint (a 2xx
    /// answer), and so did every report queued before it.
    Delivered,
    /// Some report, maybe the final one, was not delivered before the deadline, or the
    /// endpoint refused it ([`DeliveryError::Status`] with the refusal's status). Undelivered
    /// reports stay in the outbox under the storage dir and are sent after the next start;
    /// those the disk could not keep are counted as dropped in the next report that gets out
    /// (the log line says which).
    NotDelivered(DeliveryError),
    /// Telemetry was disabled or already shut down: there was nothing to send.
    NotRunning,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// What start makes of the policy, the consent on record and the levels.
enum Decision {
    /// Collect at this level; the string says why it may (the consent, or the policy).
    Collect(Level, String),
    /// Wait for consent (opt-in without one, or a withdrawal on record).
    Wait,
}

fn decide(config: &TelemetryConfig, consent: Option<&Consent>) -> (Decision, (Level, String)) {
    let (mut level, mut level_by) = config.level();
    if let Some(c) = consent.filter(|c| !c.withdrawn) {
        if c.level < level {
            (level, level_by) = (c.level, "consent".to_owned());
        }
    }
    let decision = match (consent, config.policy(), config.operator_opt_in()) {
        (Some(c), _, _) if c.withdrawn => Decision::Wait,
        (Some(c), _, _) => Decision::Collect(level, format!("consent {}", c.describe())),
        (None, Policy::OptIn, Some(by)) => Decision::Collect(level, by.to_owned()),
        (None, Policy::OptIn, None) => Decision::Wait,
        (None, Policy::OptOut, _) => Decision::Collect(level, "policy opt-out".to_owned()),
    };
    (decision, (level, level_by))
}

impl Telemetry {
    /// Starts the collector, scheduler and sender in the caller's running actix System and
    /// returns the handle. With telemetry disabled nothing is started, no file is touched and
    /// no socket is opened. In log-only mode reports go to the log instead of a sender.
    ///
    /// Under [`Policy::OptIn`] without consent (neither `ELECTRIC_TELEMETRY=enabled` nor a
    /// consent on record in the storage dir), nothing is started, written or sent either: the
    /// only file touched is the consent record, read if it is there; [`consent`](Self::consent)
    /// starts telemetry later. A withdrawal on record has the same effect under either policy.
    ///
    /// Logs one info line saying whether telemetry is on, which setting decided it, the
    /// policy, the level and the consent, where it sends and how to opt out (or in).
    pub fn start(config: TelemetryConfig) -> Result<Self, StartError> {
        let decided_by = config.decided_by();
        if config.mode() == TelemetryMode::Disabled {
            tracing::info!(
                decided_by,
                "telemetry is disabled; no usage data is collected or sent"
            );
            return Ok(Self {
                live: None,
                off: Some(Arc::new((decided_by.to_owned(), config.policy()))),
            });
        }
        if actix_rt::System::try_current().is_none() {
            return Err(StartError::NoSystem);
        }
        let consent = consent::read(config.storage_dir());
        let (decision, level) = decide(&config, consent.as_ref());
        let live = Arc::new(Live {
            gate: Arc::new(Gate::new(None)),
            intake: Intake::new(),
            control: Mutex::new(Control {
                config,
                running: None,
                consent,
                level,
                shut_down: false,
            }),
        });
        {
            let mut control = live.control();
            match decision {
                Decision::Collect(level, allowed_by) => {
                    let running = start_running(&live, &control, level, &allowed_by)?;
                    control.running = Some(running);
                }
                Decision::Wait => say_waiting(&control),
            }
        }
        Ok(Self {
            live: Some(live),
            off: None,
        })
    }

    /// A handle that records nothing, for when telemetry is off.
    pub fn disabled() -> Self {
        Self {
            live: None,
            off: Some(Arc::new((
                "Telemetry::disabled()".to_owned(),
                Policy::OptOut,
            ))),
        }
    }

    /// Whether this handle records anything now (false before consent and after a
    /// withdrawal or a shutdown).
    pub fn is_enabled(&self) -> bool {
        self.live
            .as_ref()
            .is_some_and(|live| live.gate.level().is_some())
    }

    /// The level collected and sent now, `None` while nothing is (no consent yet, a
    /// withdrawal, an opt-out). A plain atomic load: a service may check it before working
    /// out a figure that only a higher level would send.
    pub fn level(&self) -> Option<Level> {
        self.live.as_ref()?.gate.level()
    }

    /// Records the operator's consent to send reports at up to `level`, for the service's
    /// admin API or CLI: the decision, its date, its level and the schema revision it covers
    /// ([`SCHEMA_REVISION`]) are written to
    /// `<storage dir>/telemetry/consent.json`, and collection starts now (or, if it runs
    /// already, goes on at the new level). The first report covers only what is recorded from
    /// now on. The level sent is the lowest of this one, the service's and the operator's
    /// `ELECTRIC_TELEMETRY_LEVEL`. Call it from inside the actix System telemetry was started
    /// in.
    ///
    /// An opt-out (`ELECTRIC_TELEMETRY=disabled`, `DO_NOT_TRACK`, the service's code) wins:
    /// the answer is [`ConsentError::OptedOut`], naming the setting, and nothing is written.
    pub fn consent(&self, level: Level) -> Result<(), ConsentError> {
        let Some(live) = &self.live else {
            return Err(self.opted_out());
        };
        let mut control = live.control();
        if control.shut_down {
            return Err(ConsentError::ShutDown);
        }
        if control.running.is_none() && actix_rt::System::try_current().is_none() {
            // Nothing could start here: refused before anything is recorded.
            return Err(ConsentError::Start(StartError::NoSystem.to_string()));
        }
        let record = Consent::now(level, false);
        consent::write(control.config.storage_dir(), &record).map_err(|e| {
            ConsentError::Record(format!(
                "{}: {e}",
                consent::consent_path(control.config.storage_dir()).display()
            ))
        })?;
        control.consent = Some(record.clone());
        let (decision, level) = decide(&control.config, Some(&record));
        control.level = level.clone();
        // A consent just given always decides to collect (see `decide`).
        let Decision::Collect(level, allowed_by) = decision else {
            return Ok(());
        };
        match &control.running {
            Some(_) => {
                live.gate.set(Some(level));
                tracing::info!(
                    consent = record.describe(),
                    level = %level,
                    level_decided_by = control.level.1,
                    "telemetry consent recorded; reports now carry level {level}"
                );
            }
            None => {
                let running = start_running(live, &control, level, &allowed_by)
                    .map_err(|e| ConsentError::Start(e.to_string()))?;
                control.running = Some(running);
            }
        }
        Ok(())
    }

    /// Withdraws consent: collection stops at once, the window in progress and every report
    /// not yet delivered are removed (no final report is sent), and the withdrawal is
    /// recorded in the storage dir with its date, so that later starts collect nothing until
    /// consent is given again, under either policy. Returns how many undelivered reports were
    /// removed.
    pub async fn withdraw_consent(&self) -> Result<usize, ConsentError> {
        let Some(live) = &self.live else {
            return Err(self.opted_out());
        };
        let running = {
            let mut control = live.control();
            if control.shut_down {
                return Err(ConsentError::ShutDown);
            }
            live.gate.set(None);
            let level = control
                .consent
                .as_ref()
                .map_or(control.level.0, |c| c.level);
            let record = Consent::now(level, true);
            consent::write(control.config.storage_dir(), &record).map_err(|e| {
                ConsentError::Record(format!(
                    "{}: {e}",
                    consent::consent_path(control.config.storage_dir()).display()
                ))
            })?;
            control.consent = Some(record);
            control.running.take()
        };
        let mut removed = 0;
        if let Some(running) = running {
            let _ = running.scheduler.send(Abandon).await;
            removed = running.delivery.discard.send(Discard).await.unwrap_or(0);
            if let Some(arbiter) = &running.sender_arbiter {
                arbiter.stop();
            }
        }
        // Whatever was recorded but not yet folded goes too.
        live.intake.drain(drop);
        let _ = live.intake.counters.drain();
        tracing::info!(
            removed,
            "telemetry consent withdrawn: nothing more is collected or sent, and the reports \
             not yet delivered were removed; consent again to turn it back on"
        );
        Ok(removed)
    }

    /// What telemetry is doing and why: the policy, the mode and the setting that decided it,
    /// the level collected and the setting that decided it, the consent on record, the
    /// fields waiting for a newer consent, and how the outbox stands (the last delivery and
    /// what waits). For a service's admin API or `--status`; its `Display` is a few lines
    /// for people.
    pub async fn status(&self) -> TelemetryStatus {
        let Some(live) = &self.live else {
            let (decided_by, policy) = self
                .off
                .as_deref()
                .cloned()
                .unwrap_or(("Telemetry::default()".to_owned(), Policy::OptOut));
            return TelemetryStatus {
                policy,
                mode: TelemetryMode::Disabled,
                why: format!("opted out by {decided_by}: nothing is collected or sent"),
                mode_decided_by: decided_by,
                level: None,
                level_decided_by: String::new(),
                consent: None,
                fields_waiting: Vec::new(),
                new_since_last_delivery: Vec::new(),
                outbox: None,
            };
        };
        let (running, mut status) = {
            let control = live.control();
            let config = &control.config;
            let level = live.gate.level().filter(|_| control.running.is_some());
            let why = match (&control.consent, level, control.shut_down) {
                (_, _, true) => "shut down".to_owned(),
                (Some(c), None, _) if c.withdrawn => {
                    format!("off: consent {}", c.describe())
                }
                (None, None, _) => "off: no consent on record, and this service asks first \
                                    (policy opt-in)"
                    .to_owned(),
                (_, None, _) => "off".to_owned(),
                (Some(c), Some(_), _) => format!("on: consent {}", c.describe()),
                (None, Some(_), _) => match (config.policy(), config.operator_opt_in()) {
                    (Policy::OptIn, Some(by)) => format!("on: {by} (the operator's consent)"),
                    _ => "on: policy opt-out, and no opt-out is set".to_owned(),
                },
            };
            let status = TelemetryStatus {
                policy: config.policy(),
                mode: config.mode(),
                mode_decided_by: config.decided_by().to_owned(),
                level,
                level_decided_by: control.level.1.clone(),
                fields_waiting: control
                    .consent
                    .as_ref()
                    .filter(|c| !c.withdrawn)
                    .map(Consent::fields_waiting)
                    .unwrap_or_default(),
                consent: control.consent.clone(),
                new_since_last_delivery: Vec::new(),
                outbox: None,
                why,
            };
            let storage_dir = config.storage_dir().to_owned();
            (control.running.clone().map(|r| (r, storage_dir)), status)
        };
        if let Some((running, storage_dir)) = running {
            status.outbox = running.delivery.status.send(GetOutboxStatus).await.ok();
            let now = running.scheduler.send(Preview).await.ok().flatten();
            let before = sent_fields::read(&storage_dir);
            if let (Some(now), Some(before)) = (now, before) {
                let now = serde_json::to_value(&now).unwrap_or_default();
                status.new_since_last_delivery =
                    sent_fields::new_since(&sent_fields::present(&now), &before);
            }
        }
        status
    }

    fn opted_out(&self) -> ConsentError {
        ConsentError::OptedOut {
            decided_by: self
                .off
                .as_ref()
                .map_or("Telemetry::default()", |off| off.0.as_str())
                .to_owned(),
        }
    }

    /// Records one usage event. Never blocks, never waits for the collector.
    ///
    /// Counter events ([`ReplicatedFromPg`](crate::ReplicatedFromPg),
    /// [`ReceivedFromClient`](crate::ReceivedFromClient),
    /// [`SentToClients`](crate::SentToClients)) are plain stores into this thread's own
    /// counter slot: no lock, no allocation, no shared cache line. Other events go, in a
    /// compact form, into a bounded lock-free queue that the collector drains; if it is full
    /// the event is shed and counted in the next report's `dropped_events`.
    ///
    /// Building an event hashes its ids even when telemetry is off; on a busy path,
    /// [`record_with`](Self::record_with) skips that too.
    #[inline]
    pub fn record<E: UsageEvent>(&self, event: E) {
        let Some(live) = &self.live else {
            return;
        };
        if !live.gate.allows(E::SECTION) {
            return;
        }
        match event.into_event() {
            QueuedEvent::Count { counters, n } => live
                .intake
                .counters
                .add_two((counters[0], n[0]), (counters[1], n[1])),
            event => live.queue(event),
        }
    }

    /// Records the event `build` makes, calling it only when telemetry collects that kind of
    /// event: the event's ids are not even hashed when it is off, or at a level that does not
    /// send what the event feeds (client ids at `basic`).
    ///
    /// ```
    /// # use electric_telemetry::{ClientConnected, Telemetry};
    /// # let telemetry = Telemetry::disabled();
    /// # let (client_id, user_id) = ("client-42", "user-7");
    /// telemetry.record_with(|| ClientConnected::new(client_id, user_id));
    /// ```
    #[inline]
    pub fn record_with<E: UsageEvent>(&self, build: impl FnOnce() -> E) {
        if self
            .live
            .as_ref()
            .is_some_and(|live| live.gate.allows(E::SECTION))
        {
            self.record(build());
        }
    }

    /// Adds `n` to one hot counter.
    #[inline]
    pub fn add(&self, counter: Counter, n: u64) {
        if let Some(live) = self.live.as_ref().filter(|l| l.gate.allows(Section::Usage)) {
            live.intake.counters.add(counter, n);
        }
    }

    /// The collector's address, for actors that prefer to send it usage events as messages
    /// (`collector.recipient::<InitialSync>()`, say). `None` when telemetry is disabled.
    ///
    /// An actor send from another thread costs far more than [`record`](Self::record), and
    /// `Addr::do_send` ignores the mailbox bound; prefer the handle on busy paths.
    pub fn collector(&self) -> Option<Addr<Collector>> {
        self.live.as_ref()?.running().map(|r| r.collector.clone())
    }

    /// The report that would be sent if one were due now, without starting a new window,
    /// resetting anything or sending anything: any number of previews changes no later
    /// report. `None` when telemetry is disabled or shut down.
    ///
    /// It holds the current window's figures so far, with a fresh sample of the gauges shown
    /// alongside the window's samples (not added to them), and a `report_id` of its own.
    pub async fn preview(&self) -> Option<Report> {
        let running = self.live.as_ref()?.running()?;
        let mut report = running.scheduler.send(Preview).await.ok()??;
        // A report queued now would also carry the drops the outbox has yet to report.
        if let Ok(status) = running.delivery.status.send(GetOutboxStatus).await {
            report.dropped_reports = status.dropped_not_yet_reported;
        }
        Some(report)
    }

    /// [`preview`](Self::preview) as pretty-printed JSON, exactly the fields that would be sent.
    pub async fn preview_json(&self) -> Option<String> {
        let report = self.preview().await?;
        serde_json::to_string_pretty(&report).ok()
    }

    /// How the outbox stands (pending reports, failed attempts); `None` when telemetry is
    /// disabled or stopped.
    pub async fn outbox_status(&self) -> Option<OutboxStatus> {
        let running = self.live.as_ref()?.running()?;
        running.delivery.status.send(GetOutboxStatus).await.ok()
    }

    /// Delivers a final report of the partial window and stops telemetry, within the configured
    /// shutdown timeout whatever the endpoint does. Reports not delivered by then stay in the
    /// outbox on disk and are sent after the next start. Call it before stopping the System: after
    /// `System::stop()` no asynchronous work completes.
    ///
    /// Only the first call does anything; later calls, and calls on a disabled handle, return
    /// [`ShutdownOutcome::NotRunning`].
    pub async fn shutdown(&self) -> ShutdownOutcome {
        let Some(live) = &self.live else {
            return ShutdownOutcome::NotRunning;
        };
        let running = {
            let mut control = live.control();
            control.shut_down = true;
            control.running.take()
        };
        let Some(running) = running else {
            return ShutdownOutcome::NotRunning;
        };
        // The gate stays open: the final report is built at the level collected.
        let deadline = running.shutdown_timeout;
        let ends = tokio::time::Instant::now() + deadline;
        // The scheduler's own bound ends a little earlier, so that its answer (and the
        // collector's stop, and the sender's account) normally arrives; this one covers a
        // scheduler that cannot answer.
        let margin = (deadline / 10).min(Duration::from_millis(50));
        let request = running.scheduler.send(Shutdown {
            deadline: deadline - margin,
        });
        let outcome = match tokio::time::timeout(deadline, request).await {
            Ok(Ok(Ok(()))) => ShutdownOutcome::Delivered,
            Ok(Ok(Err(e))) => ShutdownOutcome::NotDelivered(e),
            Ok(Err(_)) => ShutdownOutcome::NotDelivered(DeliveryError::NotRunning),
            Err(_) => ShutdownOutcome::NotDelivered(DeliveryError::DeadlineExceeded),
        };
        if let ShutdownOutcome::NotDelivered(e) = &outcome {
            // Asked of the sender, the only one that knows: within what is left of the
            // deadline, behind everything the scheduler handed it.
            let asked = running.delivery.account.send(FinalAccount);
            let kept = match tokio::time::timeout_at(ends, asked).await {
                Ok(Ok(account)) => account.describe(),
                _ => "the sender did not answer in time (held up by a slow disk?): what it \
                      holds stays on disk, and reports not yet in its outbox are lost if the \
                      process ends now, in which case the next report says \
                      after_unclean_stop"
                    .to_owned(),
            };
            tracing::info!(
                error = %e,
                "telemetry stopped before its endpoint took every report: {kept}"
            );
        }
        if let Some(arbiter) = &running.sender_arbiter {
            arbiter.stop();
        }
        if !matches!(outcome, ShutdownOutcome::NotDelivered(_)) {
            tracing::debug!("telemetry stopped after delivering its final report");
        }
        outcome
    }
}
