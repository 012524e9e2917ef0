//! Paused tokio time: an actor that keeps the reports the scheduler hands it (no socket, so
//! paused time is safe), and stepping the clock so that every actor runs at each step.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use electric_telemetry::internals::{Deliver, Flush};
use electric_telemetry::{DeliveryError, Report};
use tokio::time::{advance, Instant};

/// Keeps every report handed to it, with the paused clock's time it came at; flushes succeed.
#[derive(Clone, Default)]
pub struct Kept(Arc<Mutex<Vec<(Report, Instant)>>>);

impl Actor for Kept {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Kept {
    type Result = ();
    fn handle(&mut self, Deliver(report): Deliver, _: &mut Context<Self>) {
        self.0.lock().unwrap().push((report, Instant::now()));
    }
}

impl Handler<Flush> for Kept {
    type Result = Result<(), DeliveryError>;
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

impl Kept {
    /// The reports kept, in the order handed over.
    pub fn reports(&self) -> Vec<Report> {
        let kept = self.0.lock().unwrap();
        kept.iter().map(|(report, _)| report.clone()).collect()
    }

    /// When each report of `instance` came.
    pub fn times(&self, instance: &str) -> Vec<Instant> {
        let kept = self.0.lock().unwrap();
        kept.iter()
            .filter(|(report, _)| report.data.environment.electric_instance_id == instance)
            .map(|(_, at)| *at)
            .collect()
    }
}

/// Lets every actor run what is ready now.
pub async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// Advances paused time by `duration` in `step`s, letting every actor run at each.
pub async fn pass_in_steps(duration: Duration, step: Duration) {
    let mut left = duration;
    while !left.is_zero() {
        let d = step.min(left);
        advance(d).await;
        left -= d;
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
}

/// [`pass_in_steps`] one second at a time.
pub async fn pass(duration: Duration) {
    pass_in_steps(duration, Duration::from_secs(1)).await;
}

/// A collector and a scheduler for `config` (not started yet: the caller has paused time)
/// that hands its reports to a [`Kept`]; returns both, to record and to look.
pub fn scheduler_with_kept(
    config: &electric_telemetry::TelemetryConfig,
) -> (Kept, Addr<electric_telemetry::Collector>) {
    use electric_telemetry::{internals::Scheduler, Collector};
    let kept = Kept::default();
    let collector = Collector::new().start();
    let addr = kept.clone().start();
    Scheduler::new(
        config,
        collector.clone(),
        addr.clone().recipient(),
        addr.recipient(),
    )
    .start();
    (kept, collector)
}
