//! The outbox: reports not yet delivered, in order, kept on disk until the endpoint has them.
//!
//! The outbox lives on the sender's thread and only that thread creates, renames or removes
//! its files: the scheduler and the handle talk to the sender by message (see `sender.rs`).
//! Each pending report is one file in the instance's own directory under
//! `<storage dir>/telemetry/` (see `instance_dir.rs` for which, `layout.rs` for the files,
//! `files.rs` for writing and removing them),
//! so a crash, a kill or a restart leaves every accepted report in place to be sent after the
//! next start.
//!
//! Every report is accounted for, whatever the disk does and wherever a kill lands:
//! delivered, on disk, or counted in a later report's `dropped_reports`, once.
//! - Each report is serialised once, when it is queued: its body is the bytes its file holds
//!   and every attempt sends, before and after a restart (see `layout.rs`). A report that has
//!   been tried, or was read back from disk, is never changed again (a receiver that kept an
//!   earlier attempt must see the same bytes under the same `report_id`).
//! - The outbox is bounded by a number of reports and a number of bytes. Past either bound
//!   the oldest report that is not being sent right now is dropped, and the loss is folded
//!   into the first later report not yet tried, or kept in the count file for the next report
//!   queued. The report that takes the count is written (naming the one it absorbs) before the
//!   dropped one is removed, so a kill in between counts nothing twice and loses nothing
//!   (`startup.rs` finishes the removal). A report the endpoint refuses is kept, parked until
//!   the sender tries it again (see `sender.rs`); only the bounds drop it.
//! - A report that cannot be written (a full or failing disk) is kept in memory and sent, and
//!   counted as dropped if the process ends before it is delivered: `<outbox>/dropped_reports`
//!   always holds the drops not yet riding on a report on disk plus what the reports held only
//!   in memory stand for. The file is created at start, while there is room, and rewritten in
//!   place, so a full disk can still keep the count.
//! - A file that cannot be read as a report is renamed to `*.corrupt` and counted once, with
//!   one warning; if it cannot be renamed it is neither counted nor sent, and the warning says
//!   so (the last 8 `*.corrupt` files are kept for a look). Anything but a regular file is
//!   never opened for reading (a FIFO would block), and never counted.
//! - A read-only outbox is refused with one warning and the outbox works in memory: its
//!   reports could be sent but not removed, and would go out again at every start.
//! - A removal that fails (a disk turned read-only during the run) is logged, once per
//!   process with the disk's other problems; what the file held is never counted twice for
//!   it (a recovery file goes out under its window's `report_id`, see `recovery_file.rs`).
//!
//! Kills: the window in progress is kept in a recovery file (`recovery_file.rs`), and
//! `<outbox>/running` marks a run in progress; `startup.rs` says what the next start makes
//! of them. A clean shutdown removes both once its final report is queued.

mod files;
mod layout;
mod recovery_file;
mod startup;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use uuid::Uuid;

use super::instance_dir::Held;
use crate::report::wire::Report;
use layout::{encode, report_file, CountMark, RUNNING_FILE, UNCLEAN_FILE};

pub use layout::outbox_dir;
pub(crate) use recovery_file::KeepWindow;
#[cfg(test)]
use startup::Loaded;

/// One report waiting for delivery.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// Order of arrival, across restarts.
    pub seq: u64,
    pub report: Report,
    /// The bytes the report is sent as, and its file holds.
    body: Vec<u8>,
    /// Size of `body`, for the byte bound.
    bytes: u64,
    /// Tried once, or read back from disk: `body` never changes again.
    sealed: bool,
    /// Refused by the endpoint: not tried again before then (in memory only: after a
    /// restart every report is due).
    parked_until: Option<Instant>,
    /// Whether the report's file holds it as it is now.
    on_disk: bool,
    /// The dropped report whose count this one took last, named in its file.
    absorbed: Option<Uuid>,
}

/// The bounds of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// At least 2: the report being sent is never the one dropped.
    pub max_reports: usize,
    pub max_bytes: u64,
}

/// How the outbox stands, as the sender tells the shutdown (see `FinalAccount`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Account {
    pub on_disk: usize,
    pub in_memory: usize,
    /// Whether the count of what the in-memory reports stand for is on disk.
    pub counted: bool,
}

impl Account {
    /// What a stop now leaves, for the shutdown's log line, e.g. "2 reports kept on disk,
    /// 1 could not be written and is counted as dropped in the next report".
    pub(crate) fn describe(&self) -> String {
        let reports = if self.on_disk == 1 {
            "report"
        } else {
            "reports"
        };
        let mut said = format!("{} {reports} kept on disk", self.on_disk);
        if self.in_memory > 0 {
            let is = if self.in_memory == 1 { "is" } else { "are" };
            let fate = if self.counted {
                "counted as dropped in the next report"
            } else {
                "lost: the disk could not keep their count either"
            };
            said.push_str(&format!(
                ", {} could not be written and {is} {fate}",
                self.in_memory
            ));
        }
        said.push_str("; reports on disk are sent after the next start");
        said
    }
}

#[derive(Debug)]
pub(crate) struct Outbox {
    /// The first instance directory, `None` to keep reports in memory only.
    base: Option<PathBuf>,
    /// This instance's directory, once [`load`](Self::load) has claimed it.
    own: Option<Held>,
    queue: VecDeque<Pending>,
    bytes: u64,
    bounds: Bounds,
    /// Dropped reports not yet folded into a queued report.
    carry: u64,
    next_seq: u64,
    /// The count file, rewritten in place; and what it holds.
    counter: Option<File>,
    counted: Option<(u64, Option<CountMark>)>,
    /// What the count file says about a report file while a count moves (see `layout.rs`).
    mark: Option<CountMark>,
    /// The next report pushed says `after_unclean_stop`.
    unclean: bool,
    /// When the current window began, as its report will say: the last pushed report's
    /// `timestamp`. A recovery file of an earlier window is stale.
    window_began: Option<String>,
    /// The shutdown's final report is queued: no more recovery files.
    closing: bool,
    /// Whether a disk problem was already reported; one warning per process is enough.
    warned: bool,
}

impl Outbox {
    /// An outbox in `dir` (claimed at [`load`](Self::load)), or in memory only with `None`.
    pub(crate) fn new(dir: Option<PathBuf>, bounds: Bounds) -> Self {
        Self {
            base: dir,
            own: None,
            queue: VecDeque::new(),
            bytes: 0,
            bounds: Bounds {
                max_reports: bounds.max_reports.max(2),
                max_bytes: bounds.max_bytes,
            },
            carry: 0,
            next_seq: 0,
            counter: None,
            counted: None,
            mark: None,
            unclean: false,
            window_began: None,
            closing: false,
            warned: false,
        }
    }

    fn dir(&self) -> Option<&Path> {
        self.own.as_ref().map(|h| h.dir.as_path())
    }

    /// How the outbox stands now.
    pub(crate) fn account(&self) -> Account {
        let in_memory = self.queue.iter().filter(|p| !p.on_disk).count();
        Account {
            on_disk: self.queue.len() - in_memory,
            in_memory,
            counted: self.counter.is_some() && self.counted.is_some(),
        }
    }

    /// Queues a report (on disk first), dropping the oldest ones past the bounds.
    /// `in_flight` is the report being sent now, which is never dropped.
    pub(crate) fn push(&mut self, mut report: Report, in_flight: Option<u64>) {
        report.dropped_reports = report.dropped_reports.saturating_add(self.carry);
        report.after_unclean_stop |= self.unclean;
        let body = match encode(&report) {
            Ok(body) => body,
            Err(e) => {
                // Never happens with these types; if it did, the report could never be sent.
                tracing::warn!(
                    error = %e,
                    "telemetry could not encode a report; it is counted in the next report's \
                     dropped_reports"
                );
                self.carry = report.dropped_reports.saturating_add(1);
                return self.sync_counter();
            }
        };
        if self.carry > 0 && self.dir().is_some() {
            // Said before the report's file exists: a kill on either side of its write
            // leaves the count in exactly one place.
            self.mark = Some(CountMark::HandedTo(report.report_id));
            self.sync_counter();
        }
        self.carry = 0;
        let unclean = std::mem::take(&mut self.unclean);
        let window_ended = report.timestamp.clone();
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let bytes = body.len() as u64;
        let mut pending = Pending {
            seq,
            report,
            body,
            bytes,
            sealed: false,
            parked_until: None,
            on_disk: false,
            absorbed: None,
        };
        pending.on_disk = self.write(&pending);
        let on_disk = pending.on_disk;
        self.bytes += bytes;
        self.queue.push_back(pending);
        if matches!(self.mark, Some(CountMark::HandedTo(_))) {
            self.mark = None;
        }
        self.write_unwritten();
        // The count moved onto the report: on disk now, or in the count of what the reports
        // held in memory stand for.
        self.sync_counter();
        if unclean && on_disk {
            self.remove_flag(UNCLEAN_FILE);
        }
        self.window_queued();
        self.window_began = Some(window_ended);
        self.enforce_bounds(in_flight);
        self.sync_counter();
    }

    /// The shutdown's final report is queued: the run ends cleanly, nothing to recover.
    pub(crate) fn close(&mut self) {
        self.closing = true;
        self.window_queued();
        self.remove_flag(RUNNING_FILE);
    }

    /// Consent was withdrawn: removes every pending report (their files too), the recovery
    /// file and the run markers, and forgets the drop count. Returns how many reports went.
    /// Nothing counts as lost: the operator asked that nothing more be sent.
    pub(crate) fn discard(&mut self) -> usize {
        let gone = self.queue.len();
        while let Some(p) = self.queue.pop_front() {
            self.delete(&p);
        }
        self.bytes = 0;
        self.carry = 0;
        self.mark = None;
        self.unclean = false;
        self.sync_counter();
        self.close();
        self.remove_flag(UNCLEAN_FILE);
        gone
    }

    /// The oldest report.
    #[cfg(test)]
    pub(crate) fn front(&self) -> Option<&Pending> {
        self.queue.front()
    }

    /// How many reports wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Dropped reports not yet riding on a queued report.
    pub(crate) fn carry(&self) -> u64 {
        self.carry
    }

    /// The first report due at `now` (not parked, or parked until then): its sequence number,
    /// `report_id` and body, to be sent as they are. From now on the report never changes.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<(u64, String, Vec<u8>)> {
        let due = self
            .queue
            .iter_mut()
            .find(|p| p.parked_until.is_none_or(|until| until <= now))?;
        due.sealed = true;
        due.parked_until = None;
        Some((due.seq, due.report.report_id.to_string(), due.body.clone()))
    }

    /// The endpoint refused report `seq`: kept, and not due again before `until`.
    pub(crate) fn park(&mut self, seq: u64, until: Instant) {
        if let Some(p) = self.queue.iter_mut().find(|p| p.seq == seq) {
            p.parked_until = Some(until);
        }
    }

    /// Makes every report due now (a flush tries them all).
    pub(crate) fn unpark_all(&mut self) {
        self.queue.iter_mut().for_each(|p| p.parked_until = None);
    }

    /// When the first parked report is due again, if any is parked.
    pub(crate) fn next_unpark(&self) -> Option<Instant> {
        self.queue.iter().filter_map(|p| p.parked_until).min()
    }

    /// The report `seq`, if it is still queued.
    pub(crate) fn report(&self, seq: u64) -> Option<&Report> {
        self.queue.iter().find(|p| p.seq == seq).map(|p| &p.report)
    }

    /// The report `seq` was delivered: forget it.
    pub(crate) fn delivered(&mut self, seq: u64) {
        if let Some(i) = self.queue.iter().position(|p| p.seq == seq) {
            let gone = self.remove(i);
            self.delete(&gone);
            self.sync_counter();
        }
    }

    /// Drops report `seq` and counts the loss, as the bounds do.
    #[cfg(test)]
    pub(crate) fn drop_seq(&mut self, seq: u64) {
        if let Some(i) = self.queue.iter().position(|p| p.seq == seq) {
            self.drop_at(i);
            self.sync_counter();
        }
    }

    fn enforce_bounds(&mut self, in_flight: Option<u64>) {
        while self.queue.len() > self.bounds.max_reports
            || (self.bytes > self.bounds.max_bytes && self.queue.len() > 1)
        {
            // The oldest report that is not on the wire right now.
            let Some(i) = self.queue.iter().position(|p| Some(p.seq) != in_flight) else {
                break;
            };
            if i + 1 == self.queue.len() && self.queue.len() > 1 {
                // Only the newest is left to drop; keeping the newest is worth more.
                break;
            }
            tracing::debug!(
                seq = self.queue[i].seq,
                "telemetry outbox full: dropping a report"
            );
            self.drop_at(i);
        }
    }

    /// Drops the report at `i`, folding it (and what it carried) into the first later report
    /// not yet tried (whose body may still change), or into the count file if there is none.
    /// What takes the count is on disk, naming the dropped report, before the dropped
    /// report's file is removed.
    fn drop_at(&mut self, i: usize) {
        let lost = self.queue[i].report.dropped_reports.saturating_add(1);
        let gone_id = self.queue[i].report.report_id;
        let gone_on_disk = self.queue[i].on_disk;
        let taker = (i + 1..self.queue.len()).find(|&j| !self.queue[j].sealed);
        let taken = taker.and_then(|j| {
            let mut report = self.queue[j].report.clone();
            report.dropped_reports = report.dropped_reports.saturating_add(lost);
            encode(&report).ok().map(|body| (j, report, body))
        });
        if let Some((j, report, body)) = taken {
            self.bytes = self.bytes - self.queue[j].bytes + body.len() as u64;
            let next = &mut self.queue[j];
            next.bytes = body.len() as u64;
            next.report = report;
            next.body = body;
            next.absorbed = gone_on_disk.then_some(gone_id);
            let next = next.clone();
            let written = self.write(&next);
            self.queue[j].on_disk = written;
            if !gone_on_disk {
                // The count file counted the dropped one as held in memory.
                self.sync_counter();
            }
            if !written && next.on_disk {
                // Its old file holds less than it stands for now: counted in memory first,
                // then the old file goes (a kill between counts it twice, never in neither).
                self.sync_counter();
                if let Some(path) = self.dir().map(|d| report_file(d, next.seq, &next.report)) {
                    self.remove_file("remove a report it could not rewrite", &path);
                }
            }
        } else {
            self.carry = self.carry.saturating_add(lost);
            self.mark = gone_on_disk.then_some(CountMark::Absorbs(gone_id));
            self.sync_counter();
        }
        let gone = self.remove(i);
        self.delete(&gone);
        if self.mark == Some(CountMark::Absorbs(gone_id)) {
            self.mark = None;
        }
    }

    fn remove(&mut self, i: usize) -> Pending {
        let gone = self.queue.remove(i).expect("index within the queue");
        self.bytes -= gone.bytes;
        gone
    }
}

#[cfg(test)]
mod tests;
