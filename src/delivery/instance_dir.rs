//! Instance directories: how live instances that share one storage dir share the outbox.
//!
//! Each running instance owns one outbox directory, `<storage>/telemetry/outbox` for the
//! first and `outbox-1`, `outbox-2`, … for the ones that start while it runs (as many as
//! there are live instances: no cap), by holding an exclusive advisory lock (`flock`) on
//! `<dir>/.lock` for as long as it runs. Only the holder reads, writes, sends or deletes the
//! files in a directory (in the holder, only its sender's thread), so:
//!
//! - every report is sent by exactly one instance, the one whose directory holds it;
//! - a temporary file in a directory is either its holder's own or a leftover of a dead
//!   writer, so only dead writers' temporary files are ever removed;
//! - the kernel drops the lock when its process dies, however it dies, so a directory whose
//!   lock can be taken has no live owner: an instance that starts takes the first free
//!   directory for itself and takes over every other free one (see
//!   `Outbox::load`), moving their reports into its own.
//!
//! Claiming a directory also proves it writable (a lock file opened for writing and a probe
//! file created and removed): a read-only outbox is refused rather than sent from, since its
//! reports could be sent but never removed, and would go out again at every start.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use crate::files::storage::tmp_name;

const LOCK_FILE: &str = ".lock";

/// An outbox directory this process holds the lock of; released when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    pub dir: PathBuf,
    _lock: File,
}

/// What [`claim`] found: this instance's own directory, and the directories of instances that
/// are no longer running (held until dropped, for their reports to be taken over).
#[derive(Debug)]
pub(crate) struct Claim {
    pub own: Held,
    pub dead: Vec<Held>,
}

/// Directory `n` of the outbox at `base`: `base` itself, then `base-1`, `base-2`, ...
pub(crate) fn slot(base: &Path, n: usize) -> PathBuf {
    if n == 0 {
        return base.to_owned();
    }
    let mut name = base.file_name().unwrap_or_default().to_owned();
    name.push(format!("-{n}"));
    base.with_file_name(name)
}

/// Takes the first outbox directory no live instance holds, and every other one that exists
/// and no live instance holds. An error if the first directory free of a live owner cannot
/// be created, locked or written (read-only, or not a directory).
pub(crate) fn claim(base: &Path) -> io::Result<Claim> {
    let own = first_free(base)?;
    let mut dead = Vec::new();
    for (_, dir) in existing_slots(base) {
        if dir == own.dir || !dir.join(LOCK_FILE).is_file() {
            continue;
        }
        // A directory we cannot open or lock is someone else's business: leave it.
        if let Ok(Some(held)) = try_hold(&dir) {
            dead.push(held);
        }
    }
    Ok(Claim { own, dead })
}

/// The first directory no live process holds. While every existing one is held, it looks
/// again a few times for a moment first: an owner that is stopping (an in-process restart,
/// whose sender thread is still winding down) releases its lock within milliseconds, and its
/// directory, not a new one, is where its reports are. Each directory before the one taken is
/// held by a live process, so the walk ends: there is no cap on instances.
fn first_free(base: &Path) -> io::Result<Held> {
    const LOOKS: usize = 4;
    for look in 0..=LOOKS {
        for n in 0.. {
            let dir = slot(base, n);
            if n > 0 && look < LOOKS && !dir.is_dir() {
                break;
            }
            fs::create_dir_all(&dir)?;
            if let Some(held) = try_hold(&dir)? {
                probe_writable(&dir)?;
                return Ok(held);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(io::Error::other("no outbox directory could be taken"))
}

/// The outbox directories at `base` that exist, in order: `base`, `base-1`, ...
fn existing_slots(base: &Path) -> Vec<(usize, PathBuf)> {
    let name = base.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!("{name}-");
    let Some(parent) = base.parent() else {
        return Vec::new();
    };
    let mut found: Vec<(usize, PathBuf)> = fs::read_dir(parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let entry = e.file_name().to_string_lossy().into_owned();
            let n = if entry == name {
                0
            } else {
                let digits = entry.strip_prefix(&prefix)?;
                // Only the names `slot` gives: no sign, no leading zero.
                if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok()?
            };
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// The lock of `dir` if no live process holds it; `None` if one does.
fn try_hold(dir: &Path) -> io::Result<Option<Held>> {
    let lock = crate::files::storage::own_file(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
    .open(dir.join(LOCK_FILE))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(Held {
            dir: dir.to_owned(),
            _lock: lock,
        })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Whether files can be created in `dir` (a lock file that exists says nothing about that).
fn probe_writable(dir: &Path) -> io::Result<()> {
    let probe = tmp_name(&dir.join(".probe"));
    File::create(&probe)?;
    fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_holder_keeps_its_directory_and_a_released_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("outbox");
        let first = claim(&base).unwrap();
        assert_eq!(first.own.dir, base);
        let second = claim(&base).unwrap();
        assert_eq!(second.own.dir, slot(&base, 1), "the next free directory");
        assert!(second.dead.is_empty(), "the first is alive");
        drop(first);
        let third = claim(&base).unwrap();
        assert_eq!(third.own.dir, base, "the first directory is free again");
        assert!(third.dead.is_empty(), "the second is still alive");
        drop(second);
        let fourth = claim(&base).unwrap();
        assert_eq!(fourth.own.dir, slot(&base, 1));
        drop(third);
        let fifth = claim(&base).unwrap();
        assert_eq!(fifth.own.dir, base);
        assert!(fifth.dead.is_empty(), "the fourth holds directory 1");
    }

    #[test]
    fn any_number_of_live_instances_each_get_a_directory_and_the_dead_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("outbox");
        let live: Vec<Claim> = (0..20).map(|_| claim(&base).unwrap()).collect();
        assert_eq!(live[19].own.dir, slot(&base, 19));
        // A stray name that is not a slot is never taken for one.
        fs::create_dir_all(dir.path().join("outbox-01")).unwrap();
        fs::write(dir.path().join("outbox-01").join(LOCK_FILE), "").unwrap();
        let mut live = live;
        live.retain(|c| ![slot(&base, 5), slot(&base, 11), slot(&base, 15)].contains(&c.own.dir));
        let next = claim(&base).unwrap();
        assert_eq!(next.own.dir, slot(&base, 5), "the first free directory");
        let dead: Vec<_> = next.dead.iter().map(|h| h.dir.clone()).collect();
        assert_eq!(
            dead,
            [slot(&base, 11), slot(&base, 15)],
            "taken over, in order"
        );
    }
}
