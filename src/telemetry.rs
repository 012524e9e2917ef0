//! The handle a service holds: start, record, shut down.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use actix::dev::SendError;
use actix::prelude::*;

use crate::collector::{Collector, DrainIntake};
use crate::config::{TelemetryConfig, ENV_TELEMETRY};
use crate::counters::Counter;
use crate::error::{DeliveryError, StartError};
use crate::intake::{Event, Intake};
use crate::messages::{CompactEvent, UsageEvent};
use crate::scheduler::{Scheduler, Shutdown};
use crate::sender::Sender;

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
    sender_arbiter: ArbiterHandle,
    shutdown_timeout: Duration,
    shut_down: AtomicBool,
}

impl Running {
    /// Outside `record`, whose `Collector: Handler<E>` bound would capture the wake-up's type.
    #[inline]
    fn queue(&self, event: Event) {
        self.intake
            .push(event, || self.collector.do_send(DrainIntake));
    }

    /// For event types without a compact form: the collector's bounded mailbox.
    #[cold]
    fn send_to_mailbox<E>(&self, event: E)
    where
        E: UsageEvent,
        Collector: Handler<E>,
    {
        match self.collector.try_send(event) {
            Ok(()) => {}
            Err(SendError::Full(_)) => self.intake.count_shed(),
            // Telemetry has shut down: there is nothing left to record into.
            Err(SendError::Closed(_)) => {}
        }
    }
}

/// How a [`Telemetry::shutdown`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The final report, covering the window up to the shutdown, reached the endpoint.
    Delivered,
    /// The final report was refused, failed, or the deadline passed first.
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
    /// no socket is opened.
    ///
    /// Logs one info line saying whether telemetry is on, where it sends and how to opt out.
    pub fn start(config: TelemetryConfig) -> Result<Self, StartError> {
        if !config.enabled() {
            tracing::info!("telemetry is disabled; no usage data is collected or sent");
            return Ok(Self::disabled());
        }
        if actix_rt::System::try_current().is_none() {
            return Err(StartError::NoSystem);
        }
        let intake = Intake::new();
        let collector = Collector::with_intake(Arc::clone(&intake)).start_bounded();
        // Its own thread, so that a slow endpoint never delays anyone else.
        let sender_arbiter = Arbiter::new().handle();
        let sender_config = config.clone();
        let sender =
            Sender::start_in_arbiter(&sender_arbiter, move |_| Sender::new(&sender_config));
        let scheduler = Scheduler::new(&config, collector.clone(), sender.recipient()).start();
        tracing::info!(
            url = config.url(),
            "telemetry is enabled: an anonymous usage report is sent every {}, the first in {}. \
             Set {ENV_TELEMETRY}=disabled to opt out",
            humantime::format_duration(config.interval()),
            humantime::format_duration(config.first_report_in()),
        );
        Ok(Self {
            running: Some(Arc::new(Running {
                intake,
                collector,
                scheduler,
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
    pub fn record<E>(&self, event: E)
    where
        E: UsageEvent,
        Collector: Handler<E>,
    {
        let Some(running) = &self.running else {
            return;
        };
        if let Some([a, b]) = event.hot_counts() {
            running.intake.counters.add_two(a, b);
            return;
        }
        match event.into_compact() {
            Ok(CompactEvent(event)) => running.queue(event),
            Err(event) => running.send_to_mailbox(event),
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
    pub fn record_with<E, F>(&self, build: F)
    where
        F: FnOnce() -> E,
        E: UsageEvent,
        Collector: Handler<E>,
    {
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

    /// The collector's address, for actors that prefer to send it typed messages directly.
    /// `None` when telemetry is disabled.
    ///
    /// Note that a send from another thread costs about a microsecond and that `Addr::do_send`
    /// ignores the mailbox bound; [`record`](Self::record) is bounded and much cheaper.
    pub fn collector(&self) -> Option<Addr<Collector>> {
        self.running.as_ref().map(|r| r.collector.clone())
    }

    /// Delivers a final report of the partial window and stops telemetry, within the configured
    /// shutdown timeout whatever the endpoint does. Call it before stopping the System: after
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
        let request = running.scheduler.send(Shutdown { deadline });
        // The scheduler bounds its own work by `deadline`; this bound covers a scheduler that
        // cannot answer at all.
        let outcome =
            match tokio::time::timeout(deadline + Duration::from_millis(50), request).await {
                Ok(Ok(Ok(()))) => ShutdownOutcome::Delivered,
                Ok(Ok(Err(e))) => ShutdownOutcome::NotDelivered(e),
                Ok(Err(_)) => ShutdownOutcome::NotDelivered(DeliveryError::NotRunning),
                Err(_) => ShutdownOutcome::NotDelivered(DeliveryError::DeadlineExceeded),
            };
        running.sender_arbiter.stop();
        if let ShutdownOutcome::NotDelivered(e) = &outcome {
            tracing::info!(
                error = %e,
                "telemetry stopped; its final report was not delivered"
            );
        } else {
            tracing::debug!("telemetry stopped after delivering its final report");
        }
        outcome
    }
}
