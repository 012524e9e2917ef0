//! The recovery file: what a kill can take is at most one `checkpoint_every` of usage.
//!
//! Every `checkpoint_every` (1 minute by default) the scheduler builds the report the current
//! window would give now, without starting a new window (the same figures as a preview),
//! under the window's own `report_id` and marked `recovered`, and hands it to the sender
//! ([`KeepWindow`]), which writes it atomically over `<outbox>/recovery.json`. A report tick,
//! and the shutdown's final report, supersede it: queuing a window's report removes its
//! recovery file. So at any time the window in progress is only in memory (lost by a kill,
//! at most one period of it), or in the recovery file, or in its report.
//!
//! At the next start a recovery file left behind is queued as a report of its own (see
//! `startup.rs`): its window ends where the file was written and it says `recovered: true`.
//! Should the file outlive its window's report (a disk turned read-only refuses the removal),
//! it goes out under the same `report_id` as that report, and the receiver keeps the window
//! once. The cost is one small atomic write per period (~1.5 kB, one fsync, on a thread of
//! its own), on the sender's thread.
//!
//! The setting keeps its name, `checkpoint_every`; the file was `checkpoint.json` before it
//! had a name of its own, and that name is still read at start.

use actix::prelude::*;

use super::layout::{encode, write_report, OLD_RECOVERY_FILE, RECOVERY_FILE};
use super::Outbox;
use crate::report::wire::Report;

/// The current window so far, to keep as the recovery file a kill would leave.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub(crate) struct KeepWindow(pub Report);

impl Outbox {
    /// Keeps `window`, the current window so far, as the recovery file a kill would leave
    /// behind. Ignored for a window that already ended (racing its window's report) and once
    /// the shutdown's final report is queued.
    pub(crate) fn keep_window(&mut self, window: &Report) {
        if self.closing {
            return;
        }
        if self
            .window_began
            .as_ref()
            .is_some_and(|began| *began != window.last_reported)
        {
            return;
        }
        let Some(path) = self.dir().map(|d| d.join(RECOVERY_FILE)) else {
            return;
        };
        let written = encode(window)
            .map_err(std::io::Error::other)
            .and_then(|body| write_report(&path, &body, None));
        if let Err(e) = written {
            self.warn_disk("keep the current window in its recovery file", &path, &e);
        }
    }

    /// The window the recovery file held is in a queued report now (or counted with it).
    pub(super) fn window_queued(&mut self) {
        if let Some(dir) = self.dir().map(ToOwned::to_owned) {
            self.remove_file(
                "remove the recovery file of a window whose report is queued",
                &dir.join(RECOVERY_FILE),
            );
            self.remove_file(
                "remove an earlier recovery file",
                &dir.join(OLD_RECOVERY_FILE),
            );
        }
    }
}
