//! The outbox's disk layout: which file holds what, and how each is written and read.
//!
//! In an instance's directory (see `instance_dir.rs`):
//! - `<seq>-<report_id>.json`: one pending report, written atomically (temporary file, then
//!   rename; the fsync follows on a thread of its own). The file is the report's body, the
//!   exact bytes it is sent as, serialised once when it was queued: a report read back after
//!   a restart goes out byte for byte as its first attempt did. A file may begin with
//!   `{"outbox_absorbed":"<id>",` before the body's own fields: the `report_id` of a dropped
//!   report whose count it now carries; a file of that id still in the directory is a
//!   removal a kill interrupted, and is deleted at the next start without being counted
//!   again. What is sent is the body alone. Files of earlier builds (the marker anywhere in
//!   the object, or a version 1 report) are read too, and rewritten in this form once read
//!   (see [`read_report`]).
//! - `dropped_reports`: drops not riding on a report yet (plus what reports held only in
//!   memory stand for), rewritten in place; after the count it may say `absorbs <id>` (the
//!   same meaning as `outbox_absorbed`) or `handed-to <id>`: the count is moving onto a new
//!   report, and once that report's file is there the count file no longer holds it.
//! - `recovery.json`: the recovery file, the window in progress so far (see
//!   `recovery_file.rs`); `checkpoint.json` is its earlier name, still read at start.
//! - `running` (a run in progress), `unclean_stop` (the next report says
//!   `after_unclean_stop`), and `unqueued` (a count earlier versions kept at shutdown; read
//!   at start, never written now).
//! - `*.corrupt`: unreadable files moved aside, the newest few kept for a look.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::files::storage::{read_regular, write_then_sync};
use crate::report::wire::Report;

pub(super) const CARRY_FILE: &str = "dropped_reports";
pub(super) const RECOVERY_FILE: &str = "recovery.json";
/// The recovery file's name before it had one of its own; read at start.
pub(super) const OLD_RECOVERY_FILE: &str = "checkpoint.json";
pub(super) const RUNNING_FILE: &str = "running";
pub(super) const UNCLEAN_FILE: &str = "unclean_stop";
/// Reports an earlier version's shutdown found still on their way to the outbox, counted.
pub(super) const UNQUEUED_FILE: &str = "unqueued";
/// How many unreadable files are kept aside for a look; older ones are deleted.
const CORRUPT_KEPT: usize = 8;
/// The most of a file read as a report (ours are ~1.5 kB).
pub(super) const READ_LIMIT: u64 = 4 << 20;
/// The field of a report file naming the dropped report whose count it carries.
const ABSORBED: &str = "outbox_absorbed";

/// The folder the outbox lives in (the first instance's; see `instance_dir.rs`).
pub fn outbox_dir(storage_dir: &Path) -> PathBuf {
    storage_dir.join("telemetry").join("outbox")
}

/// The file of report `seq` in `dir`.
pub(super) fn report_file(dir: &Path, seq: u64, report: &Report) -> PathBuf {
    dir.join(format!("{seq:020}-{}.json", report.report_id))
}

/// A report's body: its compact JSON, as it is sent.
pub(super) fn encode(report: &Report) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(report)
}

/// What a report file holds, as [`read_report`] reads it.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub report: Report,
    /// The bytes the report is sent as.
    pub body: Vec<u8>,
    /// The dropped report whose count it carries, if the file names one.
    pub absorbed: Option<Uuid>,
    /// The file is of an earlier build's form (or version): `body` is what it is now, and the
    /// file should be rewritten so.
    pub rewrite: bool,
}

/// The start of a file that names the dropped report it absorbed; the id and `",` follow.
const ABSORBED_PREFIX: &[u8] = b"{\"outbox_absorbed\":\"";

/// Writes a report file (atomically): the report's `body`, and the dropped report it absorbed.
pub(super) fn write_report(
    path: &Path,
    body: &[u8],
    absorbed: Option<Uuid>,
) -> std::io::Result<()> {
    match (absorbed, body.strip_prefix(b"{")) {
        (Some(id), Some(fields)) if fields.first().is_some_and(|b| *b != b'}') => {
            let mut file = Vec::with_capacity(body.len() + 64);
            file.extend_from_slice(ABSORBED_PREFIX);
            file.extend_from_slice(id.to_string().as_bytes());
            file.extend_from_slice(b"\",");
            file.extend_from_slice(fields);
            write_then_sync(path, &file)
        }
        _ => write_then_sync(path, body),
    }
}

/// Reads a report file: the report, the bytes it is sent as, and the dropped report it
/// absorbed, if it says. A version 1 report (an older build's: no `recovered`, no
/// `after_unclean_stop`) is upgraded to version 2 here, both fields `false`; its upgraded
/// bytes are its body from then on.
pub(super) fn read_report(path: &Path, limit: u64) -> Option<Stored> {
    let bytes = read_regular(path, limit).ok()?;
    let (mut body, absorbed) = match bytes.strip_prefix(ABSORBED_PREFIX) {
        Some(rest) => {
            let id = std::str::from_utf8(rest.get(..36)?).ok()?.parse().ok()?;
            let fields = rest.get(36..)?.strip_prefix(b"\",")?;
            let mut body = Vec::with_capacity(fields.len() + 1);
            body.push(b'{');
            body.extend_from_slice(fields);
            (body, Some(id))
        }
        None => (bytes, None),
    };
    let mut rewrite = false;
    // An earlier build's file: the marker among the report's fields. Looked for before the
    // report is read, since the report types keep fields they do not know: read as a report
    // first, the marker would stay in the body (and be sent), and the dropped report it
    // names would be sent as well as counted.
    let quoted = format!("\"{ABSORBED}\"");
    if body.windows(quoted.len()).any(|w| w == quoted.as_bytes()) {
        let mut value: serde_json::Value = serde_json::from_slice(&body).ok()?;
        if let Some(marker) = value.as_object_mut()?.remove(ABSORBED) {
            if absorbed.is_some() {
                return None;
            }
            let report: Report = serde_json::from_value(value).ok()?;
            body = encode(&report).ok()?;
            rewrite = true;
            return Some(Stored {
                report: upgrade(report, &mut body, &mut rewrite)?,
                body,
                absorbed: Some(marker.as_str()?.parse().ok()?),
                rewrite,
            });
        }
    }
    let mut report: Report = serde_json::from_slice(&body).ok()?;
    report = upgrade(report, &mut body, &mut rewrite)?;
    Some(Stored {
        report,
        body,
        absorbed,
        rewrite,
    })
}

/// A version 1 report as version 2 (whose new envelope fields read as `false` when absent),
/// re-encoded into `body`; any other version as it is.
fn upgrade(mut report: Report, body: &mut Vec<u8>, rewrite: &mut bool) -> Option<Report> {
    if report.report_version == 1 {
        report.report_version = 2;
        *body = encode(&report).ok()?;
        *rewrite = true;
    }
    Some(report)
}

/// What a count file says beside its count, about one report file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CountMark {
    /// The count took this dropped report's: a file of it still there is already counted.
    Absorbs(Uuid),
    /// The count is being handed to this new report: once a file of it is there, the report
    /// carries the count and the count file no longer does.
    HandedTo(Uuid),
}

/// A count file's content: the count, and what it says about a report file, if anything.
pub(super) fn parse_count(bytes: &[u8]) -> Option<(u64, Option<CountMark>)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut words = text.split_whitespace();
    let count = words.next()?.parse().ok()?;
    let mark = match (words.next(), words.next()) {
        (None, _) => None,
        (Some("absorbs"), Some(id)) => Some(CountMark::Absorbs(id.parse().ok()?)),
        (Some("handed-to"), Some(id)) => Some(CountMark::HandedTo(id.parse().ok()?)),
        _ => return None,
    };
    Some((count, mark))
}

/// Rewrites the count file in place (no fsync: the count guards against the process
/// ending, which the page cache survives, and must not wait for a slow disk at every change).
pub(super) fn rewrite_count(
    file: &mut File,
    count: u64,
    mark: Option<CountMark>,
) -> std::io::Result<()> {
    let text = match mark {
        Some(CountMark::Absorbs(id)) => format!("{count:020} absorbs {id}\n"),
        Some(CountMark::HandedTo(id)) => format!("{count:020} handed-to {id}\n"),
        None => format!("{count:020}\n"),
    };
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.set_len(text.len() as u64)
}

/// Deletes all but the newest [`CORRUPT_KEPT`] `*.corrupt` files (names sort by sequence).
pub(super) fn prune_corrupt(dir: &Path) {
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

#[cfg(test)]
pub(super) const KEPT_CORRUPT: usize = CORRUPT_KEPT;
