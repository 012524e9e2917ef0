//! The outbox's own files, written and removed on the sender's thread, and what a disk that
//! refuses them makes it say: one warning, then debug lines. The queue that decides which files
//! exist is `mod.rs`.

use std::fs;
use std::path::Path;

use super::layout::{report_file, rewrite_count, write_report, CARRY_FILE};
use super::{Outbox, Pending};
use crate::files::storage::{warn_unusable, write_then_sync};

impl Outbox {
    /// Writes `p`'s file; whether it now holds `p` as it is.
    pub(super) fn write(&mut self, p: &Pending) -> bool {
        let Some(path) = self.dir().map(|d| report_file(d, p.seq, &p.report)) else {
            return false;
        };
        match write_report(&path, &p.body, p.absorbed) {
            Ok(()) => true,
            Err(e) => {
                self.warn_disk("keep a report in the outbox", &path, &e);
                false
            }
        }
    }

    /// Tries again to write the reports held in memory only (the disk may have room again).
    pub(super) fn write_unwritten(&mut self) {
        for i in 0..self.queue.len() {
            if !self.queue[i].on_disk {
                let p = self.queue[i].clone();
                self.queue[i].on_disk = self.write(&p);
            }
        }
    }

    pub(super) fn delete(&mut self, p: &Pending) {
        if !p.on_disk {
            return;
        }
        if let Some(path) = self.dir().map(|d| report_file(d, p.seq, &p.report)) {
            self.remove_file("remove a sent or dropped report from the outbox", &path);
        }
    }

    /// Removes a file of this outbox; a failure other than its absence is logged.
    pub(super) fn remove_file(&mut self, what: &str, path: &Path) -> bool {
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                self.warn_disk(what, path, &e);
                false
            }
            _ => true,
        }
    }

    /// Rewrites the count file, in place, with what a stop now would lose from the disk's
    /// point of view: drops not riding on a report yet, plus each report held only in memory
    /// and the drops it carries; and what it says about a report file while a count moves.
    pub(super) fn sync_counter(&mut self) {
        let in_memory: u64 = self
            .queue
            .iter()
            .filter(|p| !p.on_disk)
            .map(|p| p.report.dropped_reports.saturating_add(1))
            .fold(0, u64::saturating_add);
        let value = (self.carry.saturating_add(in_memory), self.mark);
        if self.counted == Some(value) {
            return;
        }
        let Some(file) = &mut self.counter else {
            return;
        };
        match rewrite_count(file, value.0, value.1) {
            Ok(()) => self.counted = Some(value),
            Err(e) => {
                self.counted = None;
                let path = self.dir().map(|d| d.join(CARRY_FILE)).unwrap_or_default();
                self.warn_disk("keep the count of dropped reports", &path, &e);
            }
        }
    }

    pub(super) fn write_flag(&mut self, name: &str) {
        if let Some(path) = self.dir().map(|d| d.join(name)) {
            if let Err(e) = write_then_sync(&path, b"") {
                self.warn_disk("mark its run in the outbox", &path, &e);
            }
        }
    }

    pub(super) fn remove_flag(&mut self, name: &str) {
        if let Some(path) = self.dir().map(|d| d.join(name)) {
            self.remove_file("clear its run's marker in the outbox", &path);
        }
    }

    /// The outbox at `base` cannot be used: one warning, and reports are kept in memory.
    pub(super) fn refuse(&mut self, base: &Path, e: &std::io::Error) {
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

    pub(super) fn warn_disk(&mut self, what: &str, path: &Path, e: &std::io::Error) {
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
