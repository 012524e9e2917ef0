//! Log-only mode (`ELECTRIC_TELEMETRY=log`): each report is written to the log at its due
//! time instead of being sent, for operators who want to look before they let anything out.
//! It stands where the sender would: no thread, no outbox, no socket.

use actix::prelude::*;

use super::outbox::Account;
use super::sender::{
    Deliver, Discard, FinalAccount, Flush, GetOutboxStatus, OutboxStatus, QueueFinal,
};
use crate::error::DeliveryError;

/// Writes each report it is handed to the log (`INFO`, target `electric_telemetry::report`).
#[derive(Debug, Default)]
pub struct LogOnly;

impl Actor for LogOnly {
    type Context = Context<Self>;
}

impl Handler<Deliver> for LogOnly {
    type Result = ();

    fn handle(&mut self, Deliver(report): Deliver, _: &mut Context<Self>) {
        match serde_json::to_string(&report) {
            Ok(json) => tracing::info!(
                target: "electric_telemetry::report",
                report = %json,
                "telemetry report (log-only mode: nothing is sent)"
            ),
            Err(e) => tracing::warn!(error = %e, "telemetry could not encode a report"),
        }
    }
}

impl Handler<QueueFinal> for LogOnly {
    type Result = ();

    fn handle(&mut self, QueueFinal(report): QueueFinal, ctx: &mut Context<Self>) {
        <Self as Handler<Deliver>>::handle(self, Deliver(report), ctx);
    }
}

impl Handler<Flush> for LogOnly {
    type Result = Result<(), DeliveryError>;

    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

impl Handler<GetOutboxStatus> for LogOnly {
    type Result = MessageResult<GetOutboxStatus>;

    fn handle(&mut self, _: GetOutboxStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(OutboxStatus::default())
    }
}

impl Handler<Discard> for LogOnly {
    type Result = MessageResult<Discard>;

    fn handle(&mut self, _: Discard, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        MessageResult(0)
    }
}

impl Handler<FinalAccount> for LogOnly {
    type Result = MessageResult<FinalAccount>;

    fn handle(&mut self, _: FinalAccount, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Account::default())
    }
}
