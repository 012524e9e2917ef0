//! The scheduler actor: owns time.
//!
//! The first report is due `first_report_in` after start, then one every `interval`; ticks
//! missed while the process was frozen are not made up: the late tick sends one report for the
//! whole stall and the next follows the same anchored phase (see `ticks.rs`). On its own
//! shorter tick it samples the gauges (process memory, connected clients). At each report tick
//! it takes a snapshot from the collector, which starts a new window, builds the report and
//! hands it to the sender. On [`Telemetry::shutdown`](crate::Telemetry::shutdown) it takes a
//! last snapshot of the partial window, queues it (on disk first) and waits, within the
//! deadline, for the sender to flush; whatever is not delivered by then stays in the outbox.
//! Every `checkpoint_every` it hands the sender the current window so far to keep as its
//! recovery file (see `delivery/outbox/recovery_file.rs`), so that a kill loses at most that
//! much; like report ticks, these stay on their anchored phase and those missed during a
//! freeze collapse into one. A window's `report_id` is fixed when the window begins and used
//! by its recovery files and its report alike, so that a receiver keeps the window once
//! whichever of them arrives. With spreading on, the lattice of later reports is armed only once the spread first
//! report has run, so a freeze over both also gives one report.

mod spread;
mod ticks;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use crate::config::TelemetryConfig;
use crate::delivery::handle::DeliveryHandle;
use crate::delivery::outbox::KeepWindow;
use crate::delivery::sender::{Deliver, Flush, QueueFinal};
use crate::error::DeliveryError;
use crate::report::builder::ReportBuilder;
use crate::report::host::MemorySampler;
use crate::report::wire::Report;
use crate::usage::collector::{
    Collector, PreviewSnapshot, SampleGauges, StopCollector, TakeSnapshot,
};
use crate::usage::gate::{Gate, Section};
use electric_telemetry_report::Level;
use ticks::next_due;

/// The scheduler actor.
pub struct Scheduler {
    collector: Addr<Collector>,
    deliver: Recipient<Deliver>,
    flush: Recipient<Flush>,
    builder: Arc<ReportBuilder>,
    interval: Duration,
    /// When reports are due, spread by the instance's phase unless configured off.
    ticks: spread::Ticks,
    sample_every: Duration,
    memory: MemorySampler,
    stopping: bool,
    /// Where the current window is kept against a kill, if anywhere.
    keep_window: Option<Recipient<KeepWindow>>,
    /// Where the shutdown's final report goes, marking the run clean; else to `deliver`.
    final_report: Option<Recipient<QueueFinal>>,
    checkpoint_every: Duration,
    /// The current window's `report_id`, for its recovery files and its report.
    window_id: Uuid,
    /// What may be collected now: the level every report is built at, and whether memory is
    /// sampled at all (only when `data/resources` is sent).
    gate: Arc<Gate>,
}

impl Scheduler {
    /// A scheduler that snapshots `collector`, hands each report to `deliver`, and at
    /// shutdown asks `flush` to deliver what is pending.
    ///
    /// Resolves the instance and cluster ids and gathers the host's facts now, once.
    pub fn new(
        config: &TelemetryConfig,
        collector: Addr<Collector>,
        deliver: Recipient<Deliver>,
        flush: Recipient<Flush>,
    ) -> Self {
        let builder = ReportBuilder::new(config);
        let phase = config.spread_reports().then(|| {
            let id = builder.identity();
            spread::phase(id.cluster_uuid, &id.instance_id)
        });
        let ticks = spread::ticks(config.first_report_in(), config.interval(), phase);
        Self {
            collector,
            deliver,
            flush,
            builder: Arc::new(builder),
            interval: config.interval(),
            ticks,
            sample_every: config.sample_every(),
            memory: MemorySampler::new(),
            stopping: false,
            keep_window: None,
            final_report: None,
            checkpoint_every: config.checkpoint_every(),
            window_id: Uuid::new_v4(),
            gate: Arc::new(Gate::new(Some(Level::Full))),
        }
    }

    /// A resident-memory sample, when the level sends resources; else none is taken.
    fn memory_sample(&mut self) -> Option<u64> {
        if self.gate.allows(Section::Resources) {
            self.memory.sample()
        } else {
            None
        }
    }

    /// A scheduler that hands everything to `delivery`: reports, the shutdown's final
    /// report, and every `checkpoint_every` the current window so far, to keep against a
    /// kill (the sender's recovery file), where it keeps any.
    pub(crate) fn delivering_to(
        config: &TelemetryConfig,
        collector: Addr<Collector>,
        delivery: &DeliveryHandle,
        gate: Arc<Gate>,
    ) -> Self {
        let mut scheduler = Self::new(
            config,
            collector,
            delivery.deliver.clone(),
            delivery.flush.clone(),
        );
        scheduler.keep_window = delivery.keep_window.clone();
        scheduler.final_report = Some(delivery.final_report.clone());
        scheduler.gate = gate;
        scheduler
    }

    /// Hands the current window so far to `to` every `checkpoint_every`.
    #[cfg(test)]
    fn keeping_windows_in(mut self, to: Recipient<KeepWindow>) -> Self {
        self.keep_window = Some(to);
        self
    }

    fn keep_window(&mut self, ctx: &mut Context<Self>) {
        let Some(to) = self.keep_window.clone().filter(|_| !self.stopping) else {
            return;
        };
        // The collector answers in order: these figures are of the window `id` names.
        let figures = {
            let used_memory = self.memory_sample();
            self.collector.send(PreviewSnapshot { used_memory })
        };
        let id = self.window_id;
        let builder = Arc::clone(&self.builder);
        let gate = Arc::clone(&self.gate);
        ctx.spawn(
            async move {
                if let Ok(snapshot) = figures.await {
                    let mut window = builder.build_at(snapshot, &gate);
                    window.report_id = id;
                    window.recovered = true;
                    to.do_send(KeepWindow(window));
                }
            }
            .into_actor(self),
        );
    }

    /// The id of the window that ends now; the next one gets its own.
    fn end_window(&mut self) -> Uuid {
        std::mem::replace(&mut self.window_id, Uuid::new_v4())
    }

    fn sample(&mut self) {
        if !self.stopping {
            let used_memory = self.memory_sample();
            self.collector.do_send(SampleGauges { used_memory });
        }
    }

    fn report(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let snapshot = {
            let used_memory = self.memory_sample();
            self.collector.send(TakeSnapshot { used_memory })
        };
        let id = self.end_window();
        let builder = Arc::clone(&self.builder);
        let deliver = self.deliver.clone();
        let gate = Arc::clone(&self.gate);
        ctx.spawn(
            async move {
                match snapshot.await {
                    // The sender logs the outcome; a report tick never waits for the network.
                    Ok(snapshot) => {
                        let mut report = builder.build_at(snapshot, &gate);
                        report.report_id = id;
                        deliver.do_send(Deliver(report))
                    }
                    Err(e) => tracing::debug!(error = %e, "telemetry collector is gone"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.sample_every, |s, _| s.sample());
        if self.keep_window.is_some() {
            // Not `run_interval`: it fires every missed tick at once after a freeze.
            let first = tokio::time::Instant::now() + self.checkpoint_every;
            self.arm(ctx, first, first, |s| s.checkpoint_every, Self::keep_window);
        }
        // Anchored to the start: report k is due at start + ticks.steady + k * interval,
        // however late any one tick's handler ran (see `spread` for the spread first report).
        let start = tokio::time::Instant::now();
        let steady = start + self.ticks.steady;
        match self.ticks.first {
            // The lattice is armed once the first report has run, from its first point still
            // ahead: a stall over both gives one report, not a second one with an empty window.
            Some(first) => {
                ctx.run_later(first, move |s, ctx| {
                    s.report(ctx);
                    let next = next_due(steady, s.interval, tokio::time::Instant::now());
                    s.arm(ctx, steady, next, |s| s.interval, Self::report);
                });
            }
            None => self.arm(ctx, steady, steady, |s| s.interval, Self::report),
        }
    }
}

impl Scheduler {
    /// Arms `action` at `due`, then at the first point of `anchor + k × period` still ahead
    /// ([`next_due`]): a process frozen through several points runs it once when it wakes (one
    /// report, one recovery file), not once per missed point with nothing in between.
    fn arm(
        &mut self,
        ctx: &mut Context<Self>,
        anchor: tokio::time::Instant,
        due: tokio::time::Instant,
        period: fn(&Self) -> Duration,
        action: fn(&mut Self, &mut Context<Self>),
    ) {
        let wait = due.saturating_duration_since(tokio::time::Instant::now());
        ctx.run_later(wait, move |s, ctx| {
            action(s, ctx);
            let next = next_due(anchor, period(s), tokio::time::Instant::now());
            s.arm(ctx, anchor, next, period, action);
        });
    }
}

/// Builds the report a tick now would send, without taking a snapshot. `None` once the
/// collector is gone.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<Report>")]
pub(crate) struct Preview;

impl Handler<Preview> for Scheduler {
    type Result = ResponseFuture<Option<Report>>;

    fn handle(&mut self, _: Preview, _: &mut Context<Self>) -> Self::Result {
        let figures = {
            let used_memory = self.memory_sample();
            self.collector.send(PreviewSnapshot { used_memory })
        };
        let builder = Arc::clone(&self.builder);
        let gate = Arc::clone(&self.gate);
        Box::pin(async move {
            figures
                .await
                .ok()
                .map(|snapshot| builder.build_at(snapshot, &gate))
        })
    }
}

/// Consent was withdrawn: stops the collector and the scheduler at once, with no final
/// report (what the window held is dropped with the collector).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct Abandon;

impl Handler<Abandon> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Abandon, ctx: &mut Context<Self>) {
        self.stopping = true;
        self.collector.do_send(StopCollector);
        ctx.stop();
    }
}

/// Takes a final snapshot of the partial window, queues it and flushes the outbox within
/// `deadline`, then stops the collector and the scheduler.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), DeliveryError>")]
pub(crate) struct Shutdown {
    pub deadline: Duration,
}

impl Handler<Shutdown> for Scheduler {
    type Result = ResponseActFuture<Self, Result<(), DeliveryError>>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let collector = self.collector.clone();
        let deliver = self.deliver.clone();
        let final_to = self.final_report.clone();
        let flush = self.flush.clone();
        let builder = Arc::clone(&self.builder);
        let used_memory = self.memory_sample();
        let gate = Arc::clone(&self.gate);
        let id = self.end_window();
        let final_report = async move {
            let snapshot = collector
                .send(TakeSnapshot { used_memory })
                .await
                .map_err(|_| DeliveryError::NotRunning)?;
            let mut report = builder.build_at(snapshot, &gate);
            report.report_id = id;
            // Queued (on disk) before any attempt, so a deadline cut leaves it for next start;
            // the sender marks the run as ended cleanly in the same step, so the run is clean
            // exactly when the sender has the final report, wherever a deadline cuts. The
            // flush is right behind it in the sender's mailbox.
            match final_to {
                Some(to) => to.do_send(QueueFinal(report)),
                None => deliver.do_send(Deliver(report)),
            }
            flush
                .send(Flush)
                .await
                .map_err(|_| DeliveryError::NotRunning)?
        };
        let bounded = async move {
            tokio::time::timeout(msg.deadline, final_report)
                .await
                .unwrap_or(Err(DeliveryError::DeadlineExceeded))
        };
        Box::pin(bounded.into_actor(self).map(|result, scheduler, ctx| {
            // Also when the deadline cut the shutdown short: nothing keeps collecting after.
            scheduler.collector.do_send(StopCollector);
            ctx.stop();
            result
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use tokio::time::{advance, pause};

    use super::*;
    use crate::usage::intake::Intake;

    /// Counts the windows kept and reports it is handed.
    #[derive(Clone, Default)]
    struct Counted {
        checkpoints: Arc<AtomicUsize>,
        reports: Arc<AtomicUsize>,
    }

    impl Actor for Counted {
        type Context = Context<Self>;
    }

    impl Handler<KeepWindow> for Counted {
        type Result = ();
        fn handle(&mut self, _: KeepWindow, _: &mut Context<Self>) {
            self.checkpoints.fetch_add(1, Relaxed);
        }
    }

    impl Handler<Deliver> for Counted {
        type Result = ();
        fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {
            self.reports.fetch_add(1, Relaxed);
        }
    }

    impl Handler<Flush> for Counted {
        type Result = Result<(), DeliveryError>;
        fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
            Ok(())
        }
    }

    async fn settle() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    /// A process frozen through many `checkpoint_every` periods writes one recovery file when
    /// it wakes, not one per missed period (actix's `run_interval` fires every missed tick at
    /// once).
    #[actix_rt::test]
    async fn missed_checkpoints_collapse_into_one() {
        pause();
        let storage = tempfile::tempdir().unwrap();
        let second = Duration::from_secs(1);
        let config = TelemetryConfig::builder()
            .first_report_in(Duration::from_secs(3600))
            .interval(Duration::from_secs(3600))
            .spread_reports(false)
            .checkpoint_every(second)
            .sample_every(Duration::from_secs(3600))
            .storage_dir(storage.path())
            .build()
            .unwrap();
        let counted = Counted::default();
        let addr = counted.clone().start();
        let collector = Collector::with_intake(Intake::new()).start();
        Scheduler::new(
            &config,
            collector,
            addr.clone().recipient(),
            addr.clone().recipient(),
        )
        .keeping_windows_in(addr.recipient())
        .start();
        settle().await;

        advance(second + Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(counted.checkpoints.load(Relaxed), 1, "on time");

        // Frozen through ten periods: one checkpoint on waking, then the period goes on.
        advance(10 * second).await;
        settle().await;
        assert_eq!(counted.checkpoints.load(Relaxed), 2, "one, not ten");
        advance(second).await;
        settle().await;
        assert_eq!(counted.checkpoints.load(Relaxed), 3);
        assert_eq!(counted.reports.load(Relaxed), 0);
    }
}
