//! The outbox: reports not yet delivered, in order, kept on disk until the endpoint has them.
//!
//! Each pending report is one file, `<storage dir>/telemetry/outbox/<seq>-<report_id>.json`,
//! written atomically (temporary file, fsync, rename), so a crash, a kill or a restart leaves
//! every accepted report in place to be sent after the next start. A file that cannot be read
//! as a report is renamed to `*.corrupt` with one warning, never a crash, and counted as a
//! dropped report (the last 8 such files are kept for a look).
//!
//! The outbox is bounded by a number of reports and a number of bytes. Past either bound the
//! oldest report that is not being sent right now is dropped, and the loss is folded into the
//! report after it (`dropped_reports`), so the count reaches the endpoint in the next
//! delivered envelope. A report the endpoint refuses for good is counted the same way. A count
//! with no report to ride on yet is kept in `<outbox>/dropped_reports` until the next one.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use crate::files::write_atomically;
use crate::report::wire::Report;

const CARRY_FILE: &str = "dropped_reports";
/// How many unreadable files are kept aside for a look; older ones are deleted.
const CORRUPT_KEPT: usize = 8;

/// The folder the outbox lives in.
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
}

/// The bounds of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// At least 2: the report being sent is never the one dropped.
    pub max_reports: usize,
    pub max_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    /// `None` keeps reports in memory only (the storage dir is unusable).
    dir: Option<PathBuf>,
    queue: VecDeque<Pending>,
    bytes: u64,
    bounds: Bounds,
    /// Dropped reports not yet folded into a queued report.
    carry: u64,
    next_seq: u64,
    /// Whether a disk problem was already reported; one warning per process is enough.
    warned: bool,
}

/// What [`Outbox::load`] found on disk.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub reports: usize,
    pub corrupt: usize,
}

impl Outbox {
    /// An outbox in `dir` (created on first write), or in memory only with `None`.
    pub(crate) fn new(dir: Option<PathBuf>, bounds: Bounds) -> Self {
        Self {
            dir,
            queue: VecDeque::new(),
            bytes: 0,
            bounds: Bounds {
                max_reports: bounds.max_reports.max(2),
                max_bytes: bounds.max_bytes,
            },
            carry: 0,
            next_seq: 0,
            warned: false,
        }
    }

    /// Reads the reports an earlier run left behind. Corrupt files are moved aside.
    pub(crate) fn load(&mut self) -> Loaded {
        let mut loaded = Loaded::default();
        let Some(dir) = self.dir.clone() else {
            return loaded;
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return loaded,
            Err(e) => {
                self.warn_disk("read the outbox", &dir, &e);
                return loaded;
            }
        };
        let mut found = Vec::new();
        let mut corrupt = Vec::new();
        // Unreadable report files: each one is a report lost.
        let mut lost = 0u64;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == CARRY_FILE {
                match fs::read_to_string(&path).map(|t| t.trim().parse::<u64>()) {
                    Ok(Ok(n)) => self.carry = self.carry.saturating_add(n),
                    _ => corrupt.push(path),
                }
            } else if name.contains(".tmp-") {
                // A write that a crash interrupted: the rename never happened, so the report
                // was never acknowledged as queued.
                let _ = fs::remove_file(&path);
            } else if let Some(stem) = name.strip_suffix(".json") {
                let seq = stem.split('-').next().and_then(|s| s.parse::<u64>().ok());
                let report = fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Report>(&b).ok());
                match (seq, report) {
                    (Some(seq), Some(report)) => found.push((seq, report)),
                    _ => {
                        corrupt.push(path);
                        lost += 1;
                    }
                }
            }
        }
        for path in &corrupt {
            let _ = fs::rename(path, path.with_extension("corrupt"));
        }
        if !corrupt.is_empty() {
            tracing::warn!(
                dir = %dir.display(), files = corrupt.len(),
                "telemetry's outbox held unreadable files; they were renamed to *.corrupt, will \
                 not be sent, and are counted in the next report's dropped_reports"
            );
            prune_corrupt(&dir);
        }
        if lost > 0 {
            self.carry = self.carry.saturating_add(lost);
            self.write_carry_file();
        }
        found.sort_by_key(|(seq, _)| *seq);
        loaded.reports = found.len();
        loaded.corrupt = corrupt.len();
        for (seq, report) in found {
            let bytes = json_len(&report);
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            self.bytes += bytes;
            self.queue.push_back(Pending { seq, report, bytes });
        }
        self.enforce_bounds(None);
        loaded
    }

    /// Queues a report (on disk first), dropping the oldest ones past the bounds.
    /// `in_flight` is the report being sent now, which is never dropped.
    pub(crate) fn push(&mut self, mut report: Report, in_flight: Option<u64>) {
        let carried = std::mem::take(&mut self.carry);
        report.dropped_reports = report.dropped_reports.saturating_add(carried);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let bytes = json_len(&report);
        let pending = Pending { seq, report, bytes };
        self.write(&pending);
        if carried > 0 {
            // Only now that a report on disk carries the count: a crash before this line
            // leaves the count in both places (counted twice), never in neither.
            self.remove_carry_file();
        }
        self.bytes += bytes;
        self.queue.push_back(pending);
        self.enforce_bounds(in_flight);
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
        }
    }

    /// The endpoint refused report `seq` for good: drop it and count the loss.
    pub(crate) fn refused(&mut self, seq: u64) {
        if let Some(i) = self.queue.iter().position(|p| p.seq == seq) {
            self.drop_at(i);
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
            self.write(&next);
        } else {
            self.carry = self.carry.saturating_add(lost);
            self.write_carry_file();
        }
    }

    fn remove(&mut self, i: usize) -> Pending {
        let gone = self.queue.remove(i).expect("index within the queue");
        self.bytes -= gone.bytes;
        gone
    }

    fn file_of(&self, p: &Pending) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{:020}-{}.json", p.seq, p.report.report_id)))
    }

    fn write(&mut self, p: &Pending) {
        let Some(path) = self.file_of(p) else { return };
        let result = serde_json::to_vec(&p.report)
            .map_err(std::io::Error::other)
            .and_then(|body| write_atomically(&path, &body));
        if let Err(e) = result {
            self.warn_disk("keep a report in the outbox", &path, &e);
        }
    }

    fn delete(&mut self, p: &Pending) {
        if let Some(path) = self.file_of(p) {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    self.warn_disk("remove a sent report from the outbox", &path, &e)
                }
                _ => {}
            }
        }
    }

    fn write_carry_file(&mut self) {
        let Some(dir) = &self.dir else { return };
        let path = dir.join(CARRY_FILE);
        if let Err(e) = write_atomically(&path, self.carry.to_string().as_bytes()) {
            self.warn_disk("keep the count of dropped reports", &path, &e);
        }
    }

    fn remove_carry_file(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = fs::remove_file(dir.join(CARRY_FILE));
        }
    }

    fn warn_disk(&mut self, what: &str, path: &Path, e: &std::io::Error) {
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(
                path = %path.display(), error = %e,
                "telemetry could not {what}; pending reports are kept in memory only and will \
                 not survive a restart (set ELECTRIC_STORAGE_DIR to a writable directory)"
            );
        } else {
            tracing::debug!(path = %path.display(), error = %e, "telemetry could not {what}");
        }
    }
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
        outbox.push(report(), None);
        let seq = outbox.front().unwrap().seq;
        outbox.refused(seq);
        assert_eq!((outbox.len(), outbox.carry()), (0, 1));

        let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        assert_eq!(restarted.load(), Loaded::default());
        assert_eq!(restarted.carry(), 1);
        restarted.push(report(), None);
        assert_eq!(restarted.front().unwrap().report.dropped_reports, 1);
        assert_eq!(restarted.carry(), 0);
        assert!(!dir.path().join(CARRY_FILE).exists());
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
        // The count survives a restart until a report carries it.
        let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        restarted.load();
        assert_eq!(restarted.carry(), 12);
    }

    #[test]
    fn sequence_numbers_continue_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        outbox.push(report(), None);
        outbox.push(report(), None);
        let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        assert_eq!(restarted.load().reports, 2);
        restarted.push(report(), None);
        let seqs: Vec<u64> = restarted.queue.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [0, 1, 2]);
    }
}
