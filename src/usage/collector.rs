//! The collector actor: owns the window's aggregates.
//!
//! It handles every usage event sent to it as a message, and owns the two things
//! [`Telemetry::record`](crate::Telemetry::record) writes into without a message: the hot
//! counters (one slot per recording thread) and the bounded queue of structured events. It
//! folds both into its window once a second, when a producer finds the queue filling up, and
//! at the start of every snapshot, which hands out the window's figures and starts a new
//! window. Actix runs one handler at a time, so a snapshot sees every message that arrived
//! before it and none after, and every recorded event lands in exactly one window.
//!
//! Its state is bounded whatever the load: summaries turn into fixed-size histograms, distinct
//! counts into fixed-size sketches, and the per-client tables stop growing (see the `sketch`
//! module); docs/report.md and docs/performance.md give the figures.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;

use super::clock::ReportClock;
use super::events::UsageEvent;
use super::gate::Gate;
use super::intake::Intake;
use super::queued_event::QueuedEvent;
use super::window::{Aggregates, WindowSnapshot};

/// How many typed messages may wait in the collector's mailbox. The handle does not use the
/// mailbox (events go through the intake queue); actors that send events as messages do.
pub(crate) const MAILBOX_CAPACITY: usize = 16_384;

/// How often the collector folds the hot counters and the intake queue into its window when
/// nothing asks it sooner. Also bounds how long a counter slot goes unread (see `counters`).
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// The collector actor, which aggregates usage. Started by
/// [`Telemetry::start`](crate::Telemetry::start); an actor that prefers messages to the handle
/// can hold its `Addr<Collector>` ([`Telemetry::collector`](crate::Telemetry::collector)) or a
/// `Recipient<E>` for any [`UsageEvent`] `E`.
pub struct Collector {
    intake: Arc<Intake>,
    /// What may be collected now: an event sent as a message whose section is above the
    /// level is dropped here, as the handle drops it (see `gate.rs`).
    gate: Arc<Gate>,
    aggregates: Aggregates,
    /// Where windows begin and end: on the monotonic clock, so a wall-clock step never makes
    /// one negative or a month long (see `clock`).
    clock: ReportClock,
}

impl Collector {
    /// A collector with an intake of its own, for tests that drive it with messages only.
    #[cfg(feature = "unstable-internals")]
    #[allow(clippy::new_without_default)] // a Default impl would be public API
    pub fn new() -> Self {
        Self::with_intake(Intake::new())
    }

    #[cfg(any(test, feature = "unstable-internals"))]
    pub(crate) fn with_intake(intake: Arc<Intake>) -> Self {
        let full = Some(electric_telemetry_report::Level::Full);
        Self::gated(intake, Arc::new(Gate::new(full)))
    }

    /// A collector that collects what `gate` lets through.
    pub(crate) fn gated(intake: Arc<Intake>, gate: Arc<Gate>) -> Self {
        let clock = ReportClock::start(SystemTime::now(), Instant::now());
        Self {
            intake,
            gate,
            aggregates: Aggregates::new(clock.began()),
            clock,
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
        let aggregates = &mut self.aggregates;
        self.intake.drain(|event| aggregates.apply(event));
    }

    /// Brings the window up to date with everything recorded through the handle.
    fn fold(&mut self) {
        self.drain_queue();
        let drained = self.intake.counters.drain();
        self.aggregates.add_all(&drained.counts, drained.shed);
    }
}

impl Actor for Collector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(FOLD_EVERY, |collector, _| collector.fold());
    }
}

impl<E: UsageEvent> Handler<E> for Collector {
    type Result = ();

    fn handle(&mut self, event: E, _: &mut Context<Self>) {
        if !self.gate.allows(E::SECTION) {
            return;
        }
        let event: QueuedEvent = event.into_event();
        // What was queued through the handle before this message comes first. The other way
        // round is not ordered: handle events recorded after this message was sent but before
        // it is handled also come first. Use one path per client.
        if !matches!(event, QueuedEvent::Count { .. }) && !self.intake.is_empty() {
            self.drain_queue();
        }
        self.aggregates.apply(event);
    }
}

/// Takes the current window's figures and starts a new window.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "WindowSnapshot")]
pub struct TakeSnapshot {
    /// A last sample of resident memory to include, if the caller took one.
    pub used_memory: Option<u64>,
}

/// The figures a snapshot taken now would hold, without taking one: the window goes on
/// untouched, so any number of previews changes no later report.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "WindowSnapshot")]
pub struct PreviewSnapshot {
    /// A sample of resident memory to show with the window's samples (not recorded in it).
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

impl Handler<TakeSnapshot> for Collector {
    type Result = MessageResult<TakeSnapshot>;
    fn handle(&mut self, msg: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        self.fold();
        let taken = self
            .clock
            .next_window_logged(SystemTime::now(), Instant::now());
        MessageResult(self.aggregates.snapshot(msg.used_memory, taken))
    }
}

impl Handler<PreviewSnapshot> for Collector {
    type Result = MessageResult<PreviewSnapshot>;
    fn handle(&mut self, msg: PreviewSnapshot, _: &mut Context<Self>) -> Self::Result {
        // Folding only moves what was recorded into the current window, where the next
        // snapshot would put it anyway.
        self.fold();
        let now = self.clock.peek(Instant::now());
        MessageResult(self.aggregates.preview(msg.used_memory, now))
    }
}

impl Handler<SampleGauges> for Collector {
    type Result = ();
    fn handle(&mut self, msg: SampleGauges, _: &mut Context<Self>) {
        // Connects and disconnects queued before the tick count in its sample.
        self.drain_queue();
        self.aggregates.sample_gauges(msg.used_memory);
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
