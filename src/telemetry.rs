//! The handle a service holds: start, record, shut down.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::config::{TelemetryConfig, TelemetryMode, ENV_DO_NOT_TRACK, ENV_TELEMETRY};
use crate::delivery::handle::DeliveryHandle;
use crate::delivery::http::url_for_logs;
use crate::delivery::log_only::LogOnly;
use crate::delivery::sender::{FinalAccount, GetOutboxStatus, OutboxStatus, Sender};
use crate::error::{DeliveryError, StartError};
use crate::report::wire::Report;
use crate::scheduler::{Preview, Scheduler, Shutdown};
use crate::usage::collector::{Collector, DrainIntake};
use crate::usage::counters::Counter;
use crate::usage::events::UsageEvent;
use crate::usage::intake::Intake;
use crate::usage::queued_event::QueuedEvent;

/// The handle to a running (or disabled) telemetry subsystem.
///
/// Cheap to clone and `Send + Sync`: give a clone to every actor or thread that records usage.
/// When telemetry is disabled every method returns at once and does nothing.
#[derive(Clone, Default)]
pub struct Telemetry {
    running: Option<Arc<Running>>,
}

struct Running {
    intake: Arc<Intake>,
    collector: Addr<Collector>,
    scheduler: Addr<Scheduler>,
    delivery: DeliveryHandle,
    /// The sender's own thread; `None` in log-only mode, which needs none.
    sender_arbiter: Option<ArbiterHandle>,
    shutdown_timeout: Duration,
    shut_down: AtomicBool,
}

impl Running {
    #[inline]
    fn queue(&self, event: QueuedEvent) {
        self.intake
            .push(event, || self.collector.do_send(DrainIntake));
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

impl Telemetry {
    /// Starts the collector, scheduler and sender in the caller's running actix System and
    /// returns the handle. With telemetry disabled nothing is started, no file is touched and
    /// no socket is opened. In log-only mode reports go to the log instead of a sender.
    ///
    /// Logs one info line saying whether telemetry is on, which setting decided it, where it
    /// sends and how to opt out.
    pub fn start(config: TelemetryConfig) -> Result<Self, StartError> {
        let decided_by = config.decided_by();
        if config.mode() == TelemetryMode::Disabled {
            tracing::info!(
                decided_by,
                "telemetry is disabled; no usage data is collected or sent"
            );
            return Ok(Self::disabled());
        }
        if actix_rt::System::try_current().is_none() {
            return Err(StartError::NoSystem);
        }
        if config.mode() == TelemetryMode::Send {
            // Before anything is spawned: a client that cannot be built is the caller's error,
            // not a silent failure on the sender's thread.
            crate::delivery::client::ClientSetup::new(&config).map_err(StartError::Client)?;
        }
        let intake = Intake::new();
        let collector = Collector::with_intake(Arc::clone(&intake)).start_bounded();
        let every = humantime::format_duration(config.interval());
        let first = humantime::format_duration(config.first_report_in());
        let (delivery, sender_arbiter) = if config.mode() == TelemetryMode::LogOnly {
            let sink = LogOnly.start();
            tracing::info!(
                decided_by,
                "telemetry is in log-only mode: a usage report is written to this log every \
                 {every}, the first in {first}, and nothing is sent. Set \
                 {ENV_TELEMETRY}=disabled to stop collecting"
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
                "telemetry is enabled: an anonymous usage report is sent every {every}, the \
                 first in {first}. Set {ENV_TELEMETRY}=disabled or {ENV_DO_NOT_TRACK}=1 to opt \
                 out"
            );
            (DeliveryHandle::sender(&sender), Some(arbiter))
        };
        let scheduler = Scheduler::delivering_to(&config, collector.clone(), &delivery).start();
        Ok(Self {
            running: Some(Arc::new(Running {
                intake,
                collector,
                scheduler,
                delivery,
                sender_arbiter,
                shutdown_timeout: config.shutdown_timeout(),
                shut_down: AtomicBool::new(false),
            })),
        })
    }

    /// A handle that records nothing, for when telemetry is off.
    pub fn disabled() -> Self {
        Self { running: None }
    }

    /// Whether this handle records anything.
    pub fn is_enabled(&self) -> bool {
        self.running.is_some()
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
        let Some(running) = &self.running else {
            return;
        };
        match event.into_event() {
            QueuedEvent::Count { counters, n } => running
                .intake
                .counters
                .add_two((counters[0], n[0]), (counters[1], n[1])),
            event => running.queue(event),
        }
    }

    /// Records the event `build` makes, calling it only when telemetry is enabled: the event's
    /// ids are not even hashed when it is off.
    ///
    /// ```
    /// # use electric_telemetry::{ClientConnected, Telemetry};
    /// # let telemetry = Telemetry::disabled();
    /// # let (client_id, user_id) = ("client-42", "user-7");
    /// telemetry.record_with(|| ClientConnected::new(client_id, user_id));
    /// ```
    #[inline]
    pub fn record_with<E: UsageEvent>(&self, build: impl FnOnce() -> E) {
        if self.running.is_some() {
            self.record(build());
        }
    }

    /// Adds `n` to one hot counter.
    #[inline]
    pub fn add(&self, counter: Counter, n: u64) {
        if let Some(running) = &self.running {
            running.intake.counters.add(counter, n);
        }
    }

    /// The collector's address, for actors that prefer to send it usage events as messages
    /// (`collector.recipient::<InitialSync>()`, say). `None` when telemetry is disabled.
    ///
    /// An actor send from another thread costs far more than [`record`](Self::record), and
    /// `Addr::do_send` ignores the mailbox bound; prefer the handle on busy paths.
    pub fn collector(&self) -> Option<Addr<Collector>> {
        self.running.as_ref().map(|r| r.collector.clone())
    }

    /// The report that would be sent if one were due now, without starting a new window,
    /// resetting anything or sending anything: any number of previews changes no later
    /// report. `None` when telemetry is disabled or shut down.
    ///
    /// It holds the current window's figures so far, with a fresh sample of the gauges shown
    /// alongside the window's samples (not added to them), and a `report_id` of its own.
    pub async fn preview(&self) -> Option<Report> {
        let running = self.running.as_ref()?;
        if running.shut_down.load(Relaxed) {
            return None;
        }
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
        let running = self.running.as_ref()?;
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
        let Some(running) = &self.running else {
            return ShutdownOutcome::NotRunning;
        };
        if running.shut_down.swap(true, Relaxed) {
            return ShutdownOutcome::NotRunning;
        }
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
