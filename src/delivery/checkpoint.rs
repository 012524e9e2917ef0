//! Checkpoints: what a kill can take is at most one checkpoint period of usage.
//!
//! Every `checkpoint_every` (1 minute by default) the scheduler builds the report the current
//! window would give now, without starting a new window (the same figures as a preview), marks
//! it `recovered` and hands it to the sender, which writes it atomically over
//! `<outbox>/checkpoint.json` (see `Outbox::checkpoint`). A report tick, and
//! the shutdown's final report, supersede it: queuing a window's report removes its
//! checkpoint. So at any time the window in progress is either only in memory (lost by a
//! kill, at most one period of it) or in the checkpoint, and never also in a report.
//!
//! At the next start a checkpoint left behind is queued as a report of its own: its window
//! ends at the checkpoint and it says `recovered: true`. The cost is one small atomic write per
//! period (~1.5 kB, one fsync), on the sender's thread.

use actix::prelude::*;

use crate::report::wire::Report;

/// The current window so far, to keep as the checkpoint a kill would leave.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct Checkpoint(pub Report);
