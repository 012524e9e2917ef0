//! The sender actor: delivers the outbox's reports, in order, until the endpoint has them.
//!
//! It runs on an Arbiter (thread) of its own, so a slow or hung endpoint never delays the
//! collector, the scheduler or a recording call, and the outbox's disk writes happen there too.
//!
//! - `Deliver` queues a report in the outbox (on disk first, serialised once: see `outbox`)
//!   and returns.
//! - The oldest report due is POSTed, as the exact bytes it was queued as, with its
//!   `report_id` as `Idempotency-Key`, so every retry of it can be de-duplicated by the
//!   receiver. Only a 2xx answer counts as delivered.
//! - A transport error, a timeout, 408, 429, 5xx or a redirect is retried after the wait the
//!   retry policy gives (see `retry`), and nothing is sent meanwhile.
//! - Any other answer (400, 404, 405, 409, 410, 413, 415, 422, any status telemetry does not
//!   know) is a refusal, and a refusal is curable (a wrong path, a receiver not yet upgraded):
//!   the report is kept in the outbox, parked for one report interval (`interval`), and the
//!   sender moves on to the next report, so a refused report never holds up the ones behind
//!   it. A parked report is tried again when its interval ends (at most once per interval),
//!   or at a flush; after a restart every report is due at once. Only the outbox's bounds
//!   drop a kept report (counted in `dropped_reports`).
//! - `Flush` (used at shutdown) tries every pending report now, parked ones included,
//!   skipping any backoff wait, and keeps retrying a short wait apart until the outbox is
//!   empty or the caller's deadline ends it. It ends at once, reports kept on disk, when
//!   trying again now cannot help: the endpoint could not be reached at all (connect, DNS,
//!   TLS handshake or proxy failure: nothing was sent), it asked for time with `Retry-After`,
//!   which the flush honours too (no attempt before then), or every report left was refused
//!   during the flush (the answer is the refusal).
//! - With an audit file configured, each accepted report is appended to it as sent.
//! - `KeepWindow` keeps the current window in the outbox's recovery file until the window's
//!   report is queued (see `outbox/recovery_file.rs`); `QueueFinal`, the shutdown's final
//!   report, marks the run as ended cleanly (and so does `Flush`).
//! - `FinalAccount` answers what the outbox keeps, for the shutdown's last line: the sender's
//!   thread is the only one that touches the outbox's files or counts.
//! - TLS verifies the endpoint's certificate against the webpki roots, plus the CA
//!   certificates of `ELECTRIC_TELEMETRY_CA_FILE` if set.
//!
//! Logs stay quiet on hosts that cannot reach the endpoint: the first failure of an outage is
//! one warning, later failures are debug lines, and the end of the outage (the outbox empty
//! again) is one info line saying how many reports went out. The first refusal of an outage
//! is one warning too, naming the status and the receiver's reason (the first 200 bytes of
//! its answer, printable text only, with what the URL's query holds hidden should the answer
//! echo it). An answer whose `Checkpoint-Report-Versions` header
//! lists a version newer than [`LEVELLED_REPORT_VERSION`] (the newest this build writes) is
//! one info line per process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::audit::AuditLog;
use super::client::ClientSetup;
use super::http::{post, url_for_logs, Answered, Attempt};
use super::outbox::{outbox_dir, Account, Bounds, KeepWindow, Outbox};
use super::retry::RetryPolicy;
use crate::config::TelemetryConfig;
use crate::error::DeliveryError;
use crate::report::sent_fields;
use crate::report::wire::Report;
use electric_telemetry_report::LEVELLED_REPORT_VERSION;

/// During a flush, the longest wait between two attempts: shutdown has a deadline.
const FLUSH_RETRY_MAX: Duration = Duration::from_millis(250);

/// Whether this process already said that a receiver knows a newer report version.
static NEWER_VERSION_SAID: AtomicBool = AtomicBool::new(false);

/// Queues one report for delivery. Returns once the report is in the outbox.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Report);

/// Queues the shutdown's final report and marks the run as ended cleanly, in one step: the
/// run is clean exactly when the sender has the final report (queued, on disk first).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct QueueFinal(pub Report);

/// Tries to deliver every queued report now, skipping any backoff wait and retrying a short
/// wait apart. Answers `Ok` once the outbox is empty; bound it with a timeout, as shutdown
/// does. Reports not delivered by then stay queued (and on disk). Answers the error at once,
/// without waiting for the timeout, when the endpoint cannot be reached (connect, DNS, TLS
/// handshake, proxy) or has asked for time with `Retry-After` (no attempt before then).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), DeliveryError>")]
pub struct Flush;

/// Consent was withdrawn: removes every report not yet delivered and the recovery file, then
/// stops the sender (an attempt on the wire is abandoned). Answers how many reports went.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub(crate) struct Discard;

/// Asks how the outbox stands.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "OutboxStatus")]
pub struct GetOutboxStatus;

/// Asks what the outbox keeps now, for the shutdown's last line.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Account")]
pub(crate) struct FinalAccount;

/// How the outbox stands ([`Telemetry::outbox_status`](crate::Telemetry::outbox_status)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutboxStatus {
    /// Reports waiting for delivery.
    pub pending: usize,
    /// Failed attempts since the last delivery.
    pub failed_attempts: u64,
    /// Reports dropped and not yet reported in a queued report's `dropped_reports`.
    pub dropped_not_yet_reported: u64,
    /// When a report last reached the endpoint (a 2xx) in this run, if one did.
    pub last_delivered: Option<std::time::SystemTime>,
}

/// The sender actor.
pub struct Sender {
    url: String,
    /// The URL as logs show it: no userinfo, no query.
    shown_url: String,
    request_timeout: Duration,
    /// What the client is built from, or why it cannot be (then reports stay queued).
    setup: Result<ClientSetup, String>,
    audit: Option<AuditLog>,
    retry: RetryPolicy,
    /// The report interval: how long a refused report waits before it is tried again.
    interval: Duration,
    /// Built in `started`, on the sender's own thread: `awc::Client` is `!Send`.
    client: Option<awc::Client>,
    outbox: Outbox,
    /// The report on the wire now, by outbox sequence number.
    in_flight: Option<u64>,
    /// The wait before the next attempt, while one is armed.
    retry_timer: Option<SpawnHandle>,
    /// The wake-up for the first parked (refused) report, while every pending one is parked.
    unpark_timer: Option<SpawnHandle>,
    /// Failed attempts in a row (transient failures: they set the backoff).
    failures: u32,
    /// Refusals since the last delivery.
    refusals: u64,
    /// `Some` while an outage lasts: reports delivered since it began to end.
    outage: Option<u64>,
    /// A refusal was warned of in this outage.
    refusal_warned: bool,
    /// The last refusal, the answer to a flush that ends with refused reports only.
    last_refusal: Option<DeliveryError>,
    /// Set while the endpoint's `Retry-After` holds: no attempt before then, flush included.
    not_before: Option<std::time::Instant>,
    /// The last failure, the answer to a flush that ends without trying.
    last_error: Option<DeliveryError>,
    flush_waiters: Vec<oneshot::Sender<Result<(), DeliveryError>>>,
    /// When a report last reached the endpoint in this run.
    last_delivered: Option<std::time::SystemTime>,
    /// Where the storage dir keeps the payload fields last delivered, and what it holds (read
    /// at start): rewritten only when a delivered report's fields differ.
    storage_dir: std::path::PathBuf,
    sent_fields: Option<std::collections::BTreeSet<String>>,
}

impl Sender {
    /// A sender for the endpoint, timeouts, retry policy and outbox in `config`.
    pub fn new(config: &TelemetryConfig) -> Self {
        let bounds = Bounds {
            max_reports: config.outbox_max_reports(),
            max_bytes: config.outbox_max_bytes(),
        };
        Self {
            url: config.url().to_owned(),
            shown_url: url_for_logs(config.url()),
            request_timeout: config.request_timeout(),
            setup: ClientSetup::new(config),
            audit: config
                .audit_log()
                .map(|path| AuditLog::new(path.to_owned(), config.audit_log_max_bytes())),
            retry: RetryPolicy {
                initial: config.retry_initial_backoff(),
                max: config.retry_max_backoff(),
            },
            interval: config.interval(),
            client: None,
            outbox: Outbox::new(Some(outbox_dir(config.storage_dir())), bounds),
            in_flight: None,
            retry_timer: None,
            unpark_timer: None,
            failures: 0,
            refusals: 0,
            outage: None,
            refusal_warned: false,
            last_refusal: None,
            not_before: None,
            last_error: None,
            flush_waiters: Vec::new(),
            last_delivered: None,
            storage_dir: config.storage_dir().to_owned(),
            sent_fields: None,
        }
    }

    /// Sends the oldest report due unless one is on the wire or a retry wait is armed.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() || self.retry_timer.is_some() {
            return;
        }
        if self.outbox.len() == 0 {
            self.end_outage();
            self.answer_flush(Ok(()));
            return;
        }
        let Some(client) = &self.client else {
            // The client could not be set up (warned at start): reports wait on disk.
            let e = DeliveryError::Transport("telemetry has no HTTP client".into());
            return self.answer_flush(Err(e));
        };
        let now = tokio::time::Instant::now();
        let Some((seq, id, body)) = self.outbox.take_due(now) else {
            // Every pending report was refused and waits for its interval to end.
            let refusal = self.last_refusal.clone();
            self.answer_flush(Err(refusal.unwrap_or(DeliveryError::DeadlineExceeded)));
            return self.arm_unpark(ctx);
        };
        // Kept only for the audit file, which records exactly the bytes the endpoint took.
        let sent = self.audit.is_some().then(|| body.clone());
        let attempt = post(client, &self.url, id, body, self.request_timeout);
        self.in_flight = Some(seq);
        ctx.spawn(attempt.into_actor(self).map(move |answered, sender, ctx| {
            sender.in_flight = None;
            let Answered {
                attempt,
                newest_version,
            } = answered;
            sender.note_versions(newest_version);
            sender.settle(seq, attempt, sent, ctx);
        }));
    }

    /// Wakes the sender when the first parked report is due again.
    fn arm_unpark(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.unpark_timer.take() {
            ctx.cancel_future(timer);
        }
        let Some(at) = self.outbox.next_unpark() else {
            return;
        };
        let wait = at.saturating_duration_since(tokio::time::Instant::now());
        self.unpark_timer = Some(ctx.run_later(wait, |sender, ctx| {
            sender.unpark_timer = None;
            sender.pump(ctx);
        }));
    }

    /// Keeps which payload fields the delivered report `seq` had, when they differ from the
    /// last ones kept (see `report/sent_fields.rs`).
    fn note_sent_fields(&mut self, seq: u64) {
        let Some(report) = self.outbox.report(seq) else {
            return;
        };
        let Ok(value) = serde_json::to_value(report) else {
            return;
        };
        let now = sent_fields::present(&value);
        if self.sent_fields.as_ref() == Some(&now) {
            return;
        }
        if let Err(e) = sent_fields::write(&self.storage_dir, &now) {
            tracing::debug!(error = %e, "telemetry could not note the fields it sent");
        }
        self.sent_fields = Some(now);
    }

    /// One info line per process when a receiver accepts a newer report version than this
    /// build sends: an upgrade would send it.
    fn note_versions(&self, newest: Option<u32>) {
        let Some(newest) = newest.filter(|v| *v > LEVELLED_REPORT_VERSION) else {
            return;
        };
        if !NEWER_VERSION_SAID.swap(true, Ordering::Relaxed) {
            tracing::info!(
                url = %self.shown_url, newest, known = LEVELLED_REPORT_VERSION,
                "the telemetry endpoint accepts a newer report version than this build sends; \
                 reports still go out as the version this build knows, which the endpoint also \
                 accepts"
            );
        }
    }

    fn settle(
        &mut self,
        seq: u64,
        attempt: Attempt,
        sent: Option<Vec<u8>>,
        ctx: &mut Context<Self>,
    ) {
        match attempt {
            Attempt::Delivered => {
                self.not_before = None;
                if let (Some(audit), Some(body)) = (&mut self.audit, sent) {
                    audit.append(&body);
                }
                self.note_sent_fields(seq);
                self.outbox.delivered(seq);
                self.last_delivered = Some(std::time::SystemTime::now());
                self.failures = 0;
                self.refusals = 0;
                match &mut self.outage {
                    Some(delivered) => *delivered += 1,
                    None => tracing::debug!(url = %self.shown_url, "telemetry report delivered"),
                }
            }
            Attempt::Refused(e) => {
                self.not_before = None;
                let until = tokio::time::Instant::now() + self.interval;
                self.outbox.park(seq, until);
                self.refusals = self.refusals.saturating_add(1);
                self.note_refusal(&e);
                self.last_error = Some(e.clone());
                self.last_refusal = Some(e);
            }
            Attempt::Transient(e, retry_after) => return self.failed(e, retry_after, false, ctx),
            Attempt::Unreachable(e) => return self.failed(e, None, true, ctx),
        }
        self.pump(ctx);
    }

    /// A failed attempt: arms the next one, or at shutdown ends the flush when trying again
    /// within its seconds cannot help. `unreachable`: nothing reached the endpoint.
    fn failed(
        &mut self,
        e: DeliveryError,
        retry_after: Option<Duration>,
        unreachable: bool,
        ctx: &mut Context<Self>,
    ) {
        self.failures = self.failures.saturating_add(1);
        let mut wait = self.retry.next_wait(self.failures, retry_after);
        let asked = retry_after.is_some_and(|asked| !asked.is_zero());
        self.not_before = asked.then(|| std::time::Instant::now() + wait);
        self.last_error = Some(e.clone());
        if !self.flush_waiters.is_empty() {
            if unreachable || (asked && wait > FLUSH_RETRY_MAX) {
                // Shutting down, and another try within its seconds cannot help (or the
                // endpoint asked us not to): end the flush now, the report on disk.
                self.answer_flush(Err(e.clone()));
            } else {
                // Keep trying until the flush's deadline, not the backoff's.
                wait = wait.min(FLUSH_RETRY_MAX);
            }
        }
        self.note_failure(&e, wait);
        self.retry_timer = Some(ctx.run_later(wait, |sender, ctx| {
            sender.retry_timer = None;
            sender.pump(ctx);
        }));
    }

    fn note_failure(&mut self, e: &DeliveryError, wait: Duration) {
        if self.outage.is_none() {
            self.outage = Some(0);
            tracing::warn!(
                url = %self.shown_url, error = %e,
                "telemetry could not deliver its usage report; it is kept and retried, this \
                 does not affect the service, and further failures are logged at debug level. \
                 Set ELECTRIC_TELEMETRY=disabled to opt out"
            );
        } else {
            tracing::debug!(
                url = %self.shown_url, error = %e, retry_in = ?wait, failures = self.failures,
                "telemetry report not delivered; will retry"
            );
        }
    }

    /// A refusal: the first of an outage is one warning with the status and the receiver's
    /// reason, later ones are debug lines.
    fn note_refusal(&mut self, e: &DeliveryError) {
        let (status, reason) = match e {
            DeliveryError::Status { status, body_start } => (*status, body_start.as_str()),
            _ => (0, ""),
        };
        self.outage.get_or_insert(0);
        let retry_in = humantime::format_duration(self.interval);
        if !std::mem::replace(&mut self.refusal_warned, true) {
            tracing::warn!(
                url = %self.shown_url, status, reason,
                "the telemetry endpoint refused a report (HTTP {status}: {reason:?}); it is \
                 kept in the outbox and tried again every {retry_in}, the reports behind it \
                 are still sent, and further refusals are logged at debug level. This does \
                 not affect the service"
            );
        } else {
            tracing::debug!(
                url = %self.shown_url, status, reason, retry_in = %retry_in,
                "telemetry report refused; kept and tried again later"
            );
        }
    }

    fn end_outage(&mut self) {
        self.refusal_warned = false;
        if let Some(delivered) = self.outage.take() {
            tracing::info!(
                url = %self.shown_url, delivered,
                "telemetry reaches its endpoint again; every pending report was delivered"
            );
        }
    }

    fn answer_flush(&mut self, result: Result<(), DeliveryError>) {
        for waiter in self.flush_waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

impl Actor for Sender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Telemetry::start checked the setup; a sender started otherwise, or a CA file gone
        // since, gets a warning and keeps its reports queued (on disk) for a later start.
        match self
            .setup
            .as_ref()
            .map_err(Clone::clone)
            .and_then(ClientSetup::client)
        {
            Ok(client) => self.client = Some(client),
            Err(e) => tracing::warn!(
                error = %e,
                "telemetry cannot send: its HTTP client could not be set up; reports are kept \
                 in the outbox"
            ),
        }
        self.sent_fields = sent_fields::read(&self.storage_dir);
        let loaded = self.outbox.load();
        if loaded.reports > 0 {
            tracing::info!(
                pending = loaded.reports,
                recovered = loaded.recovered,
                "telemetry found reports an earlier run could not deliver; sending them now"
            );
        }
        self.pump(ctx);
    }
}

impl Handler<Deliver> for Sender {
    type Result = ();

    fn handle(&mut self, Deliver(report): Deliver, ctx: &mut Context<Self>) {
        self.outbox.push(report, self.in_flight);
        self.pump(ctx);
    }
}

impl Handler<QueueFinal> for Sender {
    type Result = ();

    fn handle(&mut self, QueueFinal(report): QueueFinal, ctx: &mut Context<Self>) {
        self.outbox.push(report, self.in_flight);
        self.outbox.close();
        self.pump(ctx);
    }
}

impl Handler<Flush> for Sender {
    type Result = ResponseFuture<Result<(), DeliveryError>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        // The shutdown queued its final report before flushing: no window is left to recover.
        self.outbox.close();
        if self.outbox.len() == 0 {
            return Box::pin(async { Ok(()) });
        }
        let held = self
            .not_before
            .is_some_and(|at| at > std::time::Instant::now() + FLUSH_RETRY_MAX);
        if held {
            // The endpoint asked for time: honoured at shutdown too, the reports wait on disk.
            let e = self
                .last_error
                .clone()
                .unwrap_or(DeliveryError::DeadlineExceeded);
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = oneshot::channel();
        self.flush_waiters.push(tx);
        if let Some(timer) = self.retry_timer.take() {
            ctx.cancel_future(timer);
        }
        // Refused reports are tried once more too: the receiver may have been fixed.
        self.outbox.unpark_all();
        self.pump(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(DeliveryError::NotRunning)) })
    }
}

impl Handler<KeepWindow> for Sender {
    type Result = ();

    fn handle(&mut self, KeepWindow(window): KeepWindow, _: &mut Context<Self>) {
        self.outbox.keep_window(&window);
    }
}

impl Handler<Discard> for Sender {
    type Result = MessageResult<Discard>;

    fn handle(&mut self, _: Discard, ctx: &mut Context<Self>) -> Self::Result {
        let gone = self.outbox.discard();
        for waiter in self.flush_waiters.drain(..) {
            let _ = waiter.send(Err(DeliveryError::NotRunning));
        }
        ctx.stop();
        MessageResult(gone)
    }
}

impl Handler<FinalAccount> for Sender {
    type Result = MessageResult<FinalAccount>;

    fn handle(&mut self, _: FinalAccount, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.outbox.account())
    }
}

impl Handler<GetOutboxStatus> for Sender {
    type Result = MessageResult<GetOutboxStatus>;

    fn handle(&mut self, _: GetOutboxStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(OutboxStatus {
            pending: self.outbox.len(),
            failed_attempts: u64::from(self.failures).saturating_add(self.refusals),
            dropped_not_yet_reported: self.outbox.carry(),
            last_delivered: self.last_delivered,
        })
    }
}
