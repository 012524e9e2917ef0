//! The outbox: reports not yet delivered, in order, kept on disk until the endpoint has them.
//!
//! Each pending report is one file, `<outbox>/<seq>-<report_id>.json`, written atomically
//! (temporary file, rename; the fsyncs follow on a thread of their own, so a slow disk never
//! holds the sender up), so a crash, a kill or a restart leaves every accepted report in
//! place to be sent after the next start. `<outbox>` is the instance's own
//! directory under `<storage dir>/telemetry/` (see `instance_dir.rs`: `outbox`, or
//! `outbox-N` while other instances run on the same storage dir); only its holder touches it.
//!
//! Every report is accounted for, whatever the disk does: delivered, on disk, or counted in a
//! later report's `dropped_reports`.
//! - The outbox is bounded by a number of reports and a number of bytes. Past either bound
//!   the oldest report that is not being sent right now is dropped, and the loss is folded
//!   into the report after it. A report the endpoint refuses for good is counted the same way.
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
//!
//! Kills: the scheduler checkpoints the current window into `<outbox>/checkpoint.json`
//! (see `Outbox::checkpoint`), and `<outbox>/running` marks a run in progress. At the next
//! start a checkpoint left behind is queued as a report of its own (`recovered: true`; its
//! window ends at the checkpoint); a marker without a usable checkpoint makes the next report
//! say `after_unclean_stop: true`. A clean shutdown removes both once its final report is queued.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::instance_dir::{self, Held};
use crate::files::storage::{read_regular, warn_unusable, write_then_sync};
use crate::report::wire::Report;

const CARRY_FILE: &str = "dropped_reports";
const CHECKPOINT_FILE: &str = "checkpoint.json";
const RUNNING_FILE: &str = "running";
const UNCLEAN_FILE: &str = "unclean_stop";
/// Reports the shutdown found still on their way to the outbox (see [`Tally::finish`]).
const UNQUEUED_FILE: &str = "unqueued";
/// How many unreadable files are kept aside for a look; older ones are deleted.
const CORRUPT_KEPT: usize = 8;
/// The most of a file read as a report (ours are ~1.5 kB).
const READ_LIMIT: u64 = 4 << 20;

/// The folder the outbox lives in (the first instance's; see `instance_dir.rs`).
pub fn outbox_dir(storage_dir: &Path) -> PathBuf {
    storage_dir.join("telemetry").join("outbox")
}

/// One report waiting for delivery.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// Order of arrival, across restarts.
    pub seq: u64,
    pub report: Report,
    /// Size of the report's JSON, for the byte bound.
    bytes: u64,
    /// Whether the report's file holds it as it is now.
    on_disk: bool,
}

/// The bounds of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// At least 2: the report being sent is never the one dropped.
    pub max_reports: usize,
    pub max_bytes: u64,
}

/// How the outbox stands, readable from any thread without asking the sender (which may be
/// busy with a slow disk when the shutdown needs to say what happened).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    on_disk: AtomicUsize,
    in_memory: AtomicUsize,
    /// Whether the count of what the in-memory reports stand for is on disk.
    counted: AtomicBool,
    /// Reports the scheduler handed to the sender, and those the outbox took: the difference
    /// still waits in the sender's mailbox (behind a slow disk).
    handed: AtomicU64,
    pushed: AtomicU64,
    /// Set by [`finish`](Self::finish): reports that never reached the outbox, and whether
    /// their count is on disk.
    unqueued: AtomicU64,
    unqueued_counted: AtomicBool,
    /// This instance's outbox directory, once claimed.
    dir: Mutex<Option<PathBuf>>,
}

impl Tally {
    /// The scheduler hands a report to the sender.
    pub(crate) fn handed(&self) {
        self.handed.fetch_add(1, Relaxed);
    }

    /// At the end of a shutdown, from the caller's thread: counts the reports that never
    /// reached the outbox (the sender was stuck behind a slow disk) as dropped, in
    /// `<outbox>/unqueued`, which the next start adds to `dropped_reports`. Their windows are
    /// then accounted for, so the checkpoint and the run marker go: the next start recovers
    /// nothing twice. Written without fsync: a page-cache write survives the process's end,
    /// which is what it guards against, and never waits for the slow disk.
    pub(crate) fn finish(&self) {
        let handed = self.handed.load(Relaxed);
        let unqueued = handed.saturating_sub(self.pushed.load(Relaxed));
        self.unqueued.store(unqueued, Relaxed);
        let Some(dir) = self.dir.lock().ok().and_then(|d| d.clone()) else {
            return;
        };
        if unqueued > 0 {
            let path = dir.join(UNQUEUED_FILE);
            let before = read_regular(&path, 64)
                .ok()
                .and_then(|b| parse_count(&b))
                .unwrap_or(0);
            let total = before.saturating_add(unqueued);
            let written = fs::write(&path, format!("{total:020}\n")).is_ok();
            self.unqueued_counted.store(written, Relaxed);
            let _ = fs::remove_file(dir.join(CHECKPOINT_FILE));
        }
        let _ = fs::remove_file(dir.join(RUNNING_FILE));
    }

    /// What a stop now would leave, for the shutdown's log line, e.g. "2 reports kept on disk,
    /// 1 could not be written and is counted as dropped".
    pub(crate) fn describe(&self) -> String {
        let on_disk = self.on_disk.load(Relaxed);
        let in_memory = self.in_memory.load(Relaxed);
        let reports = if on_disk == 1 { "report" } else { "reports" };
        let is = if in_memory == 1 { "is" } else { "are" };
        let fate = |counted: bool| {
            if counted {
                "counted as dropped in the next report"
            } else {
                "lost: the disk could not keep their count either"
            }
        };
        let mut said = format!("{on_disk} {reports} kept on disk");
        if in_memory > 0 {
            said.push_str(&format!(
                ", {in_memory} could not be written and {is} {}",
                fate(self.counted.load(Relaxed))
            ));
        }
        let unqueued = self.unqueued.load(Relaxed);
        if unqueued > 0 {
            let is = if unqueued == 1 { "is" } else { "are" };
            said.push_str(&format!(
                ", {unqueued} never reached the outbox (a slow disk held the sender up) and {is} {}",
                fate(self.unqueued_counted.load(Relaxed))
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
    /// The count file, rewritten in place; and the value it holds.
    counter: Option<File>,
    counted: Option<u64>,
    /// The next report pushed says `after_unclean_stop`.
    unclean: bool,
    /// When the current window began, as its report will say: the last pushed report's
    /// `timestamp`. A checkpoint of an earlier window is stale.
    window_began: Option<String>,
    /// The shutdown's final report is queued: no more checkpoints.
    closing: bool,
    tally: Arc<Tally>,
    /// Whether a disk problem was already reported; one warning per process is enough.
    warned: bool,
}

/// What [`Outbox::load`] found on disk.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub reports: usize,
    pub corrupt: usize,
    /// Checkpoints of runs that did not stop cleanly, queued as reports.
    pub recovered: usize,
}

/// What one directory held (see [`Outbox::scan`]).
#[derive(Default)]
struct Leftovers {
    reports: Vec<(u64, Report, PathBuf)>,
    checkpoint: Option<(Report, PathBuf)>,
    /// A run marker or an earlier unclean-stop flag.
    unclean: bool,
    carry: u64,
    corrupt: usize,
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
            unclean: false,
            window_began: None,
            closing: false,
            tally: Arc::default(),
            warned: false,
        }
    }

    /// Reports how the outbox stands into `tally` from now on.
    pub(crate) fn set_tally(&mut self, tally: Arc<Tally>) {
        self.tally = tally;
        self.publish();
    }

    fn publish_dir(&self) {
        if let Ok(mut dir) = self.tally.dir.lock() {
            *dir = self.dir().map(Path::to_owned);
        }
    }

    fn dir(&self) -> Option<&Path> {
        self.own.as_ref().map(|h| h.dir.as_path())
    }

    /// Claims this instance's directory, and reads the reports earlier runs left behind in
    /// it and in the directories of instances no longer running: pending reports, their
    /// drop counts, and the checkpoint of a run that did not stop cleanly.
    pub(crate) fn load(&mut self) -> Loaded {
        let mut loaded = Loaded::default();
        let Some(base) = self.base.clone() else {
            self.publish();
            return loaded;
        };
        let claim = match instance_dir::claim(&base) {
            Ok(claim) => claim,
            Err(e) => {
                self.refuse(&base, &e);
                self.publish();
                return loaded;
            }
        };
        let own = claim.own.dir.clone();
        self.own = Some(claim.own);
        self.publish_dir();

        let mine = self.scan(&own, &mut loaded);
        let mut found = mine.reports.clone();
        found.sort_by_key(|(seq, _, _)| *seq);
        for (seq, report, _) in found {
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            self.enqueue(seq, report, true);
        }
        // Queued after this directory's own reports, in the order their windows ran.
        let mut taken_over = Vec::new();
        self.recover(&own, mine, &mut loaded, &mut taken_over);
        for dead in &claim.dead {
            let left = self.scan(&dead.dir, &mut loaded);
            self.recover(&dead.dir, left, &mut loaded, &mut taken_over);
        }
        if self.unclean {
            self.write_flag(UNCLEAN_FILE);
        }
        self.write_flag(RUNNING_FILE);
        self.counter = self.dir().and_then(|dir| {
            crate::files::storage::own_file(
                OpenOptions::new().write(true).create(true).truncate(false),
            )
            .open(dir.join(CARRY_FILE))
            .ok()
        });
        loaded.reports = self.queue.len();
        self.enforce_bounds(None);
        self.sync_counter();
        // Only now that this directory's count holds theirs (counted twice if a crash comes
        // between, never in neither).
        for path in taken_over {
            let _ = fs::remove_file(path);
        }
        loaded
    }

    /// Queues `mine`'s checkpoint, or notes an unclean stop; for a directory `from` other
    /// than this instance's own, also moves its reports here. Files whose counts now live in
    /// this directory are added to `taken_over`, to be removed once that count is on disk.
    fn recover(
        &mut self,
        from: &Path,
        mut left: Leftovers,
        loaded: &mut Loaded,
        taken_over: &mut Vec<PathBuf>,
    ) {
        let own = self.dir().map(Path::to_owned);
        let foreign = own.as_deref() != Some(from);
        if foreign {
            left.reports.sort_by_key(|(seq, _, _)| *seq);
            for (_, report, path) in std::mem::take(&mut left.reports) {
                self.adopt(report, &path);
            }
            taken_over.push(from.join(CARRY_FILE));
            taken_over.push(from.join(UNCLEAN_FILE));
        }
        taken_over.push(from.join(UNQUEUED_FILE));
        self.carry = self.carry.saturating_add(left.carry);
        let recovered = match left.checkpoint {
            Some((cp, path)) => {
                // A report of the same window is queued: the checkpoint is a part of it.
                let superseded = self.queue.iter().any(|p| {
                    p.report.last_reported == cp.last_reported
                        && p.report.data.environment.electric_instance_id
                            == cp.data.environment.electric_instance_id
                });
                if superseded {
                    let _ = fs::remove_file(&path);
                    false
                } else {
                    self.adopt(cp, &path);
                    loaded.recovered += 1;
                    true
                }
            }
            None => false,
        };
        if left.unclean && !recovered {
            self.unclean = true;
        }
        let _ = fs::remove_file(from.join(RUNNING_FILE));
    }

    /// Moves the report file at `path` into this instance's directory, queued last.
    fn adopt(&mut self, report: Report, path: &Path) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let Some(to) = self.file_of(seq, &report) else {
            return;
        };
        match fs::rename(path, &to) {
            Ok(()) => self.enqueue(seq, report, true),
            // Left where it is, for a later start: never sent from two places.
            Err(e) => self.warn_disk("take over a report left by an earlier run", path, &e),
        }
    }

    fn enqueue(&mut self, seq: u64, report: Report, on_disk: bool) {
        let bytes = json_len(&report);
        self.bytes += bytes;
        self.queue.push_back(Pending {
            seq,
            report,
            bytes,
            on_disk,
        });
    }

    /// Reads what an earlier run left in `dir`, which this process holds. Temporary files are
    /// removed (their writer is dead), unreadable reports moved aside and counted.
    fn scan(&mut self, dir: &Path, loaded: &mut Loaded) -> Leftovers {
        let mut left = Leftovers::default();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.warn_disk("read the outbox", dir, &e);
                return left;
            }
        };
        let mut corrupt = Vec::new();
        let mut special = 0usize;
        let limit = self.bounds.max_bytes.max(READ_LIMIT);
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let regular = entry.file_type().is_ok_and(|t| t.is_file());
            if name.contains(".tmp-") {
                // A write that a crash interrupted: the rename never happened, so the report
                // was never acknowledged as queued. Only a dead writer's: the dir is ours.
                let _ = fs::remove_file(&path);
                continue;
            }
            if !regular {
                special += usize::from(name.ends_with(".json"));
                continue;
            }
            match name.as_str() {
                CARRY_FILE | UNQUEUED_FILE => {
                    match read_regular(&path, 64).map(|b| parse_count(&b)) {
                        Ok(Some(n)) => left.carry = left.carry.saturating_add(n),
                        _ => corrupt.push((path, false)),
                    }
                }
                RUNNING_FILE | UNCLEAN_FILE => left.unclean = true,
                CHECKPOINT_FILE => match read_report(&path, limit) {
                    Some(report) => left.checkpoint = Some((report, path)),
                    // Unusable: the run it belonged to ended uncleanly, and nothing is left.
                    None => {
                        let _ = fs::remove_file(&path);
                        left.unclean = true;
                    }
                },
                _ => {
                    if let Some(stem) = name.strip_suffix(".json") {
                        let seq = stem.split('-').next().and_then(|s| s.parse::<u64>().ok());
                        match (seq, read_report(&path, limit)) {
                            (Some(seq), Some(report)) => left.reports.push((seq, report, path)),
                            _ => corrupt.push((path, true)),
                        }
                    }
                }
            }
        }
        if special > 0 {
            tracing::warn!(
                dir = %dir.display(), files = special,
                "telemetry's outbox holds files named like reports that are not regular files; \
                 they are left alone, not read and not counted"
            );
        }
        let mut moved = 0usize;
        let mut stuck: Option<std::io::Error> = None;
        let mut stuck_files = 0usize;
        for (path, is_report) in &corrupt {
            match fs::rename(path, path.with_extension("corrupt")) {
                Ok(()) => {
                    moved += 1;
                    // Counted only once it is out of the way, so that no start counts it again.
                    left.corrupt += usize::from(*is_report);
                }
                Err(e) => {
                    stuck_files += 1;
                    stuck = Some(e);
                }
            }
        }
        if moved > 0 {
            tracing::warn!(
                dir = %dir.display(), files = moved,
                "telemetry's outbox held unreadable files; they were renamed to *.corrupt, will \
                 not be sent, and are counted in the next report's dropped_reports"
            );
            prune_corrupt(dir);
        }
        if let Some(e) = stuck {
            tracing::warn!(
                dir = %dir.display(), files = stuck_files, error = %e,
                "telemetry's outbox holds unreadable files it could not move aside; they are \
                 not sent, and not counted as dropped until they can be moved"
            );
        }
        left.carry = left.carry.saturating_add(left.corrupt as u64);
        loaded.corrupt += left.corrupt;
        left
    }

    /// Queues a report (on disk first), dropping the oldest ones past the bounds.
    /// `in_flight` is the report being sent now, which is never dropped.
    pub(crate) fn push(&mut self, mut report: Report, in_flight: Option<u64>) {
        self.tally.pushed.fetch_add(1, Relaxed);
        report.dropped_reports = report
            .dropped_reports
            .saturating_add(std::mem::take(&mut self.carry));
        let unclean = std::mem::take(&mut self.unclean);
        report.after_unclean_stop |= unclean;
        let window_ended = report.timestamp.clone();
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let bytes = json_len(&report);
        let mut pending = Pending {
            seq,
            report,
            bytes,
            on_disk: false,
        };
        pending.on_disk = self.write(&pending);
        let on_disk = pending.on_disk;
        self.bytes += bytes;
        self.queue.push_back(pending);
        self.write_unwritten();
        // The count moved onto the report: on disk now, or in the count of what the reports
        // held in memory stand for.
        self.sync_counter();
        if unclean && on_disk {
            self.remove_flag(UNCLEAN_FILE);
        }
        // The window the checkpoint held is in this report now (or counted with it).
        self.remove_flag(CHECKPOINT_FILE);
        self.window_began = Some(window_ended);
        self.enforce_bounds(in_flight);
        self.sync_counter();
    }

    /// Keeps `report`, the current window so far, as the checkpoint a kill would leave behind.
    /// Ignored for a window that already ended (a checkpoint racing its window's report) and
    /// once the shutdown's final report is queued.
    pub(crate) fn checkpoint(&mut self, report: &Report) {
        if self.closing {
            return;
        }
        if self
            .window_began
            .as_ref()
            .is_some_and(|began| *began != report.last_reported)
        {
            return;
        }
        let Some(path) = self.dir().map(|d| d.join(CHECKPOINT_FILE)) else {
            return;
        };
        let result = serde_json::to_vec(report)
            .map_err(std::io::Error::other)
            .and_then(|body| write_then_sync(&path, &body));
        if let Err(e) = result {
            self.warn_disk("checkpoint the current window", &path, &e);
        }
    }

    /// The shutdown's final report is queued: the run ends cleanly, nothing to recover.
    pub(crate) fn close(&mut self) {
        self.closing = true;
        self.remove_flag(CHECKPOINT_FILE);
        self.remove_flag(RUNNING_FILE);
    }

    /// The oldest report.
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

    /// The report `seq` was delivered: forget it.
    pub(crate) fn delivered(&mut self, seq: u64) {
        if let Some(i) = self.queue.iter().position(|p| p.seq == seq) {
            let gone = self.remove(i);
            self.delete(&gone);
            self.sync_counter();
        }
    }

    /// The endpoint refused report `seq` for good: drop it and count the loss.
    pub(crate) fn refused(&mut self, seq: u64) {
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

    /// Drops the report at `i`, folding it (and what it carried) into the next report.
    fn drop_at(&mut self, i: usize) {
        let gone = self.remove(i);
        self.delete(&gone);
        let lost = gone.report.dropped_reports.saturating_add(1);
        if let Some(next) = self.queue.get_mut(i) {
            next.report.dropped_reports = next.report.dropped_reports.saturating_add(lost);
            let next = next.clone();
            let on_disk = self.write(&next);
            self.queue[i].on_disk = on_disk;
        } else {
            self.carry = self.carry.saturating_add(lost);
        }
    }

    fn remove(&mut self, i: usize) -> Pending {
        let gone = self.queue.remove(i).expect("index within the queue");
        self.bytes -= gone.bytes;
        gone
    }

    fn file_of(&self, seq: u64, report: &Report) -> Option<PathBuf> {
        let dir = self.dir()?;
        Some(dir.join(format!("{seq:020}-{}.json", report.report_id)))
    }

    /// Writes `p`'s file; whether it now holds `p` as it is. A file that could not be
    /// rewritten is removed, so that what is on disk never disagrees with the count.
    fn write(&mut self, p: &Pending) -> bool {
        let Some(path) = self.file_of(p.seq, &p.report) else {
            return false;
        };
        let result = serde_json::to_vec(&p.report)
            .map_err(std::io::Error::other)
            .and_then(|body| write_then_sync(&path, &body));
        match result {
            Ok(()) => true,
            Err(e) => {
                let _ = fs::remove_file(&path);
                self.warn_disk("keep a report in the outbox", &path, &e);
                false
            }
        }
    }

    /// Tries again to write the reports held in memory only (the disk may have room again).
    fn write_unwritten(&mut self) {
        for i in 0..self.queue.len() {
            if !self.queue[i].on_disk {
                let p = self.queue[i].clone();
                self.queue[i].on_disk = self.write(&p);
            }
        }
    }

    fn delete(&mut self, p: &Pending) {
        if !p.on_disk {
            return;
        }
        if let Some(path) = self.file_of(p.seq, &p.report) {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    self.warn_disk("remove a sent report from the outbox", &path, &e)
                }
                _ => {}
            }
        }
    }

    /// Rewrites the count file, in place, with what a stop now would lose from the disk's
    /// point of view: drops not riding on a report yet, plus each report held only in memory
    /// and the drops it carries.
    fn sync_counter(&mut self) {
        let in_memory: u64 = self
            .queue
            .iter()
            .filter(|p| !p.on_disk)
            .map(|p| p.report.dropped_reports.saturating_add(1))
            .fold(0, u64::saturating_add);
        let value = self.carry.saturating_add(in_memory);
        if self.counted != Some(value) {
            if let Some(file) = &mut self.counter {
                let result = (|| {
                    file.seek(SeekFrom::Start(0))?;
                    file.write_all(format!("{value:020}\n").as_bytes())?;
                    // No fsync: the count guards against the process ending, which the page
                    // cache survives, and must not wait for a slow disk at every change.
                    file.set_len(21)
                })();
                match result {
                    Ok(()) => self.counted = Some(value),
                    Err(e) => {
                        self.counted = None;
                        let path = self.dir().map(|d| d.join(CARRY_FILE)).unwrap_or_default();
                        self.warn_disk("keep the count of dropped reports", &path, &e);
                    }
                }
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let in_memory = self.queue.iter().filter(|p| !p.on_disk).count();
        let counted = self.counter.is_some() && self.counted.is_some();
        self.tally
            .on_disk
            .store(self.queue.len() - in_memory, Relaxed);
        self.tally.in_memory.store(in_memory, Relaxed);
        self.tally.counted.store(counted, Relaxed);
    }

    fn write_flag(&mut self, name: &str) {
        if let Some(path) = self.dir().map(|d| d.join(name)) {
            if let Err(e) = write_then_sync(&path, b"") {
                self.warn_disk("mark its run in the outbox", &path, &e);
            }
        }
    }

    fn remove_flag(&mut self, name: &str) {
        if let Some(dir) = self.dir() {
            let _ = fs::remove_file(dir.join(name));
        }
    }

    /// The outbox at `base` cannot be used: one warning, and reports are kept in memory.
    fn refuse(&mut self, base: &Path, e: &std::io::Error) {
        self.warned = true;
        let telemetry_dir = base.parent().unwrap_or(base);
        if !telemetry_dir.is_dir() {
            // The storage dir itself is unusable: one warning says so for every part.
            return warn_unusable(telemetry_dir, e);
        }
        tracing::warn!(
            path = %base.display(), error = %e,
            "telemetry cannot write its outbox; reports are kept in memory only, \
             and reports left there are neither sent nor counted from here, since they could \
             not be removed once sent (set ELECTRIC_STORAGE_DIR to a writable directory)"
        );
    }

    fn warn_disk(&mut self, what: &str, path: &Path, e: &std::io::Error) {
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(
                path = %path.display(), error = %e,
                "telemetry could not {what}; reports it cannot write are kept in memory and \
                 counted as dropped if the process stops before they are delivered (set \
                 ELECTRIC_STORAGE_DIR to a writable directory with room)"
            );
        } else {
            tracing::debug!(path = %path.display(), error = %e, "telemetry could not {what}");
        }
    }
}

fn read_report(path: &Path, limit: u64) -> Option<Report> {
    let bytes = read_regular(path, limit).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn parse_count(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Deletes all but the newest [`CORRUPT_KEPT`] `*.corrupt` files (names sort by sequence).
fn prune_corrupt(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut corrupt: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "corrupt"))
        .collect();
    corrupt.sort();
    let excess = corrupt.len().saturating_sub(CORRUPT_KEPT);
    for path in &corrupt[..excess] {
        let _ = fs::remove_file(path);
    }
}

fn json_len(report: &Report) -> u64 {
    serde_json::to_vec(report).map_or(0, |b| b.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut r: Report =
            serde_json::from_str(include_str!("../../tests/fixtures/seed_report.json"))
                .expect("fixture parses");
        r.report_id = uuid::Uuid::new_v4();
        r
    }

    const BOUNDS: Bounds = Bounds {
        max_reports: 4,
        max_bytes: 1 << 20,
    };

    #[test]
    fn a_drop_count_with_no_report_to_carry_it_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        outbox.load();
        outbox.push(report(), None);
        let seq = outbox.front().unwrap().seq;
        outbox.refused(seq);
        assert_eq!((outbox.len(), outbox.carry()), (0, 1));

        let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        drop(outbox);
        assert_eq!(restarted.load(), Loaded::default());
        assert_eq!(restarted.carry(), 1);
        restarted.push(report(), None);
        assert_eq!(restarted.front().unwrap().report.dropped_reports, 1);
        assert_eq!(restarted.carry(), 0);
        let count = fs::read(dir.path().join(CARRY_FILE)).unwrap();
        assert_eq!(
            parse_count(&count),
            Some(0),
            "the report on disk carries it now"
        );
    }

    #[test]
    fn the_report_on_the_wire_is_never_the_one_dropped() {
        let mut outbox = Outbox::new(None, BOUNDS);
        outbox.push(report(), None);
        let on_wire = outbox.front().unwrap().seq;
        for _ in 0..10 {
            outbox.push(report(), Some(on_wire));
        }
        assert_eq!(outbox.len(), 4);
        assert_eq!(outbox.front().unwrap().seq, on_wire);
        let carried: u64 = outbox.queue.iter().map(|p| p.report.dropped_reports).sum();
        assert_eq!(carried, 7, "11 queued, 4 kept, 7 counted");
    }

    #[test]
    fn unreadable_files_are_counted_and_only_the_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..12 {
            fs::write(dir.path().join(format!("{i:020}-x.json")), "not json").unwrap();
        }
        let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        assert_eq!(outbox.load().corrupt, 12);
        assert_eq!(
            outbox.carry(),
            12,
            "each unreadable report is a counted loss"
        );
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "corrupt"))
            .collect();
        assert_eq!(kept.len(), CORRUPT_KEPT);
        drop(outbox);
        // The count survives a restart until a report carries it.
        let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        restarted.load();
        assert_eq!(restarted.carry(), 12);
    }

    #[test]
    fn sequence_numbers_continue_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        outbox.load();
        outbox.push(report(), None);
        outbox.push(report(), None);
        drop(outbox);
        let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        assert_eq!(restarted.load().reports, 2);
        restarted.push(report(), None);
        let seqs: Vec<u64> = restarted.queue.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [0, 1, 2]);
    }

    #[test]
    fn reports_that_never_reached_the_outbox_are_counted_once_and_nothing_is_recovered_twice() {
        let dir = tempfile::tempdir().unwrap();
        let tally = Arc::new(Tally::default());
        let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        outbox.set_tally(Arc::clone(&tally));
        outbox.load();
        let mut window = report();
        window.recovered = true;
        outbox.checkpoint(&window);
        assert!(dir.path().join(CHECKPOINT_FILE).exists());
        // The scheduler handed over three reports; the sender, held up, took one.
        (0..3).for_each(|_| tally.handed());
        outbox.push(report(), None);
        tally.finish();
        let said = tally.describe();
        assert!(
            said.contains("2 never reached the outbox") && said.contains("counted as dropped"),
            "{said}"
        );
        assert!(!dir.path().join(RUNNING_FILE).exists());
        assert!(!dir.path().join(CHECKPOINT_FILE).exists());
        drop(outbox);

        let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        let loaded = restarted.load();
        assert_eq!((loaded.reports, loaded.recovered), (1, 0));
        assert_eq!(restarted.carry(), 2, "the two reports are counted");
        assert!(!restarted.unclean, "their windows are accounted for");
        drop(restarted);
        let mut again = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        again.load();
        assert_eq!(again.carry(), 2, "counted until a report carries it, once");
    }

    #[test]
    fn a_checkpoint_of_a_window_that_already_ended_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        outbox.load();
        let cp = dir.path().join(CHECKPOINT_FILE);
        let mut ended = report();
        ended.last_reported = "2026-11-25T10:00:00.000000Z".into();
        ended.timestamp = "2026-11-25T11:00:00.000000Z".into();
        // A checkpoint of the window, then its report: the report supersedes it.
        outbox.checkpoint(&ended);
        assert!(cp.exists());
        outbox.push(ended.clone(), None);
        assert!(!cp.exists(), "the window is in the report now");
        // A checkpoint taken before that report but arriving after it: stale.
        outbox.checkpoint(&ended);
        assert!(!cp.exists(), "a checkpoint of an ended window is not kept");
        let mut current = report();
        current.last_reported = ended.timestamp.clone();
        outbox.checkpoint(&current);
        assert!(cp.exists(), "the window in progress is kept");
        outbox.close();
        assert!(!cp.exists() && !dir.path().join(RUNNING_FILE).exists());
        outbox.checkpoint(&current);
        assert!(!cp.exists(), "nothing after the final report");
    }

    #[test]
    fn a_second_instance_never_touches_a_live_ones_files_and_takes_over_a_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("outbox");
        let mut first = Outbox::new(Some(base.clone()), BOUNDS);
        first.load();
        first.push(report(), None);
        // The first instance is in the middle of writing another report.
        let writing = base.join("00000000000000000001-y.tmp-999999-0");
        fs::write(&writing, "half").unwrap();

        let mut second = Outbox::new(Some(base.clone()), BOUNDS);
        assert_eq!(
            second.load(),
            Loaded::default(),
            "nothing of the first's is taken"
        );
        assert_eq!(second.dir(), Some(instance_dir::slot(&base, 1).as_path()));
        assert!(
            writing.exists(),
            "the live writer's temporary file is left alone"
        );
        second.push(report(), None);

        // The first dies; a third start takes its directory over, and its stale temp file.
        drop(first);
        let mut third = Outbox::new(Some(base.clone()), BOUNDS);
        assert_eq!(third.load().reports, 1, "the dead first's report");
        assert!(
            !writing.exists(),
            "a dead writer's temporary file is cleaned"
        );
        assert_eq!(second.len(), 1, "the live second keeps its own");
    }
}
