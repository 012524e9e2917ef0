//! What the rest of the crate holds of delivery: one typed interface, which the sender and
//! log-only mode each provide. The scheduler hands reports, windows to keep and the flush
//! through it; the handle asks it how the outbox stands and, at shutdown, for its final
//! account. Nobody but the sender's thread touches the outbox's files.

use actix::prelude::*;

use super::log_only::LogOnly;
use super::outbox::KeepWindow;
use super::sender::{Deliver, Discard, FinalAccount, Flush, GetOutboxStatus, QueueFinal, Sender};

/// The recipients of whatever delivers reports.
#[derive(Clone)]
pub(crate) struct DeliveryHandle {
    pub deliver: Recipient<Deliver>,
    /// The shutdown's final report, which also marks the run as ended cleanly.
    pub final_report: Recipient<QueueFinal>,
    pub flush: Recipient<Flush>,
    pub status: Recipient<GetOutboxStatus>,
    pub account: Recipient<FinalAccount>,
    /// Where a withdrawal of consent removes what was not yet sent.
    pub discard: Recipient<Discard>,
    /// Where the window in progress is kept against a kill; `None` where nothing is kept.
    pub keep_window: Option<Recipient<KeepWindow>>,
}

impl DeliveryHandle {
    /// The sender's interface: reports go to its outbox.
    pub(crate) fn sender(sender: &Addr<Sender>) -> Self {
        Self {
            deliver: sender.clone().recipient(),
            final_report: sender.clone().recipient(),
            flush: sender.clone().recipient(),
            status: sender.clone().recipient(),
            account: sender.clone().recipient(),
            discard: sender.clone().recipient(),
            keep_window: Some(sender.clone().recipient()),
        }
    }

    /// Log-only mode's: reports go to the log, nothing is kept.
    pub(crate) fn log_only(sink: &Addr<LogOnly>) -> Self {
        Self {
            deliver: sink.clone().recipient(),
            final_report: sink.clone().recipient(),
            flush: sink.clone().recipient(),
            status: sink.clone().recipient(),
            account: sink.clone().recipient(),
            discard: sink.clone().recipient(),
            keep_window: None,
        }
    }
}
