//! The outbox at start: claiming this instance's directory, reading what earlier runs left
//! in it, and taking over the directories of instances no longer running.
//!
//! - Pending reports are queued again in their order; temporary files (a write a crash cut
//!   short) are removed; unreadable reports are moved aside and counted once.
//! - A report whose count another file already carries (a drop a kill cut short, see
//!   `layout.rs`) is removed, not counted again.
//! - A recovery file left behind is queued as a report of its own (`recovered: true`; its
//!   window ends where the file was written), under the window's own `report_id`, so that a
//!   receiver that already has the window's report drops it; a run marker without a usable
//!   recovery file makes the next report say `after_unclean_stop: true`.
//! - A dead instance's reports are moved into this directory, and its counts added to this
//!   one's, before its files are removed: a crash in between counts them twice, never in
//!   neither.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::layout::{
    parse_count, prune_corrupt, read_report, report_file, write_report, CountMark, Stored,
    CARRY_FILE, OLD_RECOVERY_FILE, READ_LIMIT, RECOVERY_FILE, RUNNING_FILE, UNCLEAN_FILE,
    UNQUEUED_FILE,
};
use super::{Outbox, Pending};
use crate::delivery::instance_dir;
use crate::files::storage::read_regular;

/// What [`Outbox::load`] found on disk.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub reports: usize,
    pub corrupt: usize,
    /// Recovery files of runs that did not stop cleanly, queued as reports.
    pub recovered: usize,
}

/// What one directory held (see [`Outbox::scan`]).
#[derive(Default)]
struct Leftovers {
    reports: Vec<(u64, Stored, PathBuf)>,
    recovery: Option<(Stored, PathBuf)>,
    /// A run marker or an earlier unclean-stop flag.
    unclean: bool,
    carry: u64,
    corrupt: usize,
}

impl Outbox {
    /// Claims this instance's directory, and reads the reports earlier runs left behind in
    /// it and in the directories of instances no longer running: pending reports, their
    /// drop counts, and the recovery file of a run that did not stop cleanly.
    pub(crate) fn load(&mut self) -> Loaded {
        let mut loaded = Loaded::default();
        let Some(base) = self.base.clone() else {
            return loaded;
        };
        let claim = match instance_dir::claim(&base) {
            Ok(claim) => claim,
            Err(e) => {
                self.refuse(&base, &e);
                return loaded;
            }
        };
        let own = claim.own.dir.clone();
        self.own = Some(claim.own);

        let mine = self.scan(&own, &mut loaded);
        let mut found = mine.reports.clone();
        found.sort_by_key(|(seq, _, _)| *seq);
        for (seq, stored, path) in found {
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            self.enqueue(seq, stored, &path);
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
            self.remove_file("clear a file taken over from an earlier run", &path);
        }
        loaded
    }

    /// Queues `left`'s recovery file, or notes an unclean stop; for a directory `from` other
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
            for (_, stored, path) in std::mem::take(&mut left.reports) {
                self.adopt(stored, &path);
            }
            taken_over.push(from.join(CARRY_FILE));
            taken_over.push(from.join(UNCLEAN_FILE));
        }
        taken_over.push(from.join(UNQUEUED_FILE));
        self.carry = self.carry.saturating_add(left.carry);
        let recovered = match left.recovery {
            Some((window, path)) => {
                // A report of the same window is queued: the recovery file is a part of it.
                let superseded = self.queue.iter().any(|p| {
                    let window = &window.report;
                    p.report.report_id == window.report_id
                        || (p.report.last_reported == window.last_reported
                            && p.report.data.environment.electric_instance_id
                                == window.data.environment.electric_instance_id)
                });
                if superseded {
                    self.remove_file("remove a recovery file its report supersedes", &path);
                    false
                } else {
                    self.adopt(window, &path);
                    loaded.recovered += 1;
                    true
                }
            }
            None => false,
        };
        if left.unclean && !recovered {
            self.unclean = true;
        }
        self.remove_file("clear an earlier run's marker", &from.join(RUNNING_FILE));
    }

    /// Moves the report file at `path` into this instance's directory, queued last.
    fn adopt(&mut self, stored: Stored, path: &Path) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let Some(dir) = self.dir() else {
            return;
        };
        let to = report_file(dir, seq, &stored.report);
        match fs::rename(path, &to) {
            Ok(()) => self.enqueue(seq, stored, &to),
            // Left where it is, for a later start: never sent from two places.
            Err(e) => self.warn_disk("take over a report left by an earlier run", path, &e),
        }
    }

    /// Queues a report read from its file at `path`, sealed: it goes out as the bytes it was
    /// read as. A file of an earlier build's form is rewritten first (same report, same
    /// count marker), so that every later start reads the same bytes.
    fn enqueue(&mut self, seq: u64, stored: Stored, path: &Path) {
        if stored.rewrite {
            if let Err(e) = write_report(path, &stored.body, stored.absorbed) {
                // Read again at the next start, and upgraded to the same bytes.
                self.warn_disk("rewrite a report of an earlier version", path, &e);
            }
        }
        let bytes = stored.body.len() as u64;
        self.bytes += bytes;
        self.queue.push_back(Pending {
            seq,
            report: stored.report,
            body: stored.body,
            bytes,
            sealed: true,
            parked_until: None,
            on_disk: true,
            absorbed: None,
        });
    }

    /// Reads what an earlier run left in `dir`, which this process holds. Temporary files are
    /// removed (their writer is dead), unreadable reports moved aside and counted, and
    /// reports whose count another file carries removed.
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
        let mut absorbed: HashSet<Uuid> = HashSet::new();
        // A count on its way onto a report: counted here only if the report is not there.
        let mut handed: Vec<(u64, Uuid)> = Vec::new();
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
                    match read_regular(&path, 128).map(|b| parse_count(&b)) {
                        Ok(Some((n, mark))) => match mark {
                            Some(CountMark::HandedTo(id)) => handed.push((n, id)),
                            Some(CountMark::Absorbs(id)) => {
                                absorbed.insert(id);
                                left.carry = left.carry.saturating_add(n);
                            }
                            None => left.carry = left.carry.saturating_add(n),
                        },
                        _ => corrupt.push((path, false)),
                    }
                }
                RUNNING_FILE | UNCLEAN_FILE => left.unclean = true,
                RECOVERY_FILE | OLD_RECOVERY_FILE => match read_report(&path, limit) {
                    // Of two (an upgrade between), the later window.
                    Some(window) => {
                        let later = left.recovery.as_ref().is_none_or(|(kept, _)| {
                            kept.report.timestamp < window.report.timestamp
                        });
                        if later {
                            if let Some((_, older)) = left.recovery.replace((window, path)) {
                                let _ = fs::remove_file(older);
                            }
                        } else {
                            let _ = fs::remove_file(&path);
                        }
                    }
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
                            (Some(seq), Some(stored)) => {
                                absorbed.extend(stored.absorbed);
                                left.reports.push((seq, stored, path));
                            }
                            _ => corrupt.push((path, true)),
                        }
                    }
                }
            }
        }
        // A drop a kill cut short: the next report (or the count file) carries it already.
        left.reports.retain(|(_, stored, path)| {
            let counted = absorbed.contains(&stored.report.report_id);
            if counted {
                let _ = fs::remove_file(path);
            }
            !counted
        });
        for (n, id) in handed {
            if !left
                .reports
                .iter()
                .any(|(_, r, _)| r.report.report_id == id)
            {
                left.carry = left.carry.saturating_add(n);
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
}
