//! Files under the storage dir, handled so that a special file, a full disk or a neighbouring
//! instance can neither block telemetry nor make it lose something silently.
//!
//! - [`read_regular`] opens without following a symlink and without blocking (a FIFO without
//!   a writer would block a plain `open` forever), refuses anything but a regular file, and
//!   reads at most a bound.
//! - [`tmp_name`] gives every temporary file a name no other writer uses (process id and a
//!   per-process counter), so a neighbour never removes or renames a file being written.
//! - [`create_exclusively`] creates a complete file only if none exists, so that instances
//!   starting together agree on the first one written.
//! - [`write_then_sync`] writes a file atomically for the process's sake and leaves the fsyncs
//!   to a thread of their own, so that a slow disk never holds the sender up.
//! - [`warn_unusable`] is the one warning for a storage dir that cannot be used at all, however
//!   many parts of telemetry find out.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};

/// `<path>.tmp-<pid>-<n>`: unique to this writer, and recognisably a temporary file.
pub(crate) fn tmp_name(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Relaxed);
    path.with_extension(format!("tmp-{}-{n}", std::process::id()))
}

/// Opened without blocking (as [`super::regular`] opens files) and never following a symlink:
/// for telemetry's own files.
pub(crate) fn own_file(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    options
}

/// The contents of the regular file at `path`, at most `limit` bytes; anything else (a FIFO, a
/// device, a directory, a symlink) or a longer file is an error.
pub(crate) fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = own_file(OpenOptions::new().read(true)).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() > limit {
        return Err(io::Error::other(format!("larger than {limit} bytes")));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// Creates `path` holding `bytes`, complete or not at all, unless it exists
/// (`ErrorKind::AlreadyExists`): the bytes go to a temporary file first, which is then
/// hard-linked into place, an exclusive create that no reader can see half-written.
pub(crate) fn create_exclusively(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_name(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        // A file system without hard links: an exclusive create, written in place.
        Err(_) => {
            let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
    }
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file of this writer's own and a rename, and
/// has the file and its folder fsynced by a background thread.
///
/// Once it returns, the new file is in place for this process and any later one: a process's
/// end, however abrupt, loses nothing that is in the page cache. The fsyncs, which guard
/// against the host itself crashing and can take seconds on a slow disk, never hold up the
/// caller. A host crash before they ran can leave a report file empty, which the next start
/// counts as an unreadable (dropped) report: counted, never silent.
pub(crate) fn write_then_sync(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = tmp_name(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_later(path);
    Ok(())
}

/// Queues `path` (and its folder) for an fsync on the background thread. If the queue is
/// full the fsync is skipped: the kernel writes the file back within seconds anyway.
fn sync_later(path: &Path) {
    static QUEUE: OnceLock<Option<SyncSender<PathBuf>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<PathBuf>(256);
        std::thread::Builder::new()
            .name("electric-telemetry-fsync".into())
            .spawn(move || {
                for path in rx {
                    sync_now(&path);
                }
            })
            .ok()
            .map(|_| tx)
    });
    match queue {
        Some(tx) => match tx.try_send(path.to_owned()) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(path)) => sync_now(&path),
        },
        // No thread could be started: sync here, as a plain atomic write would.
        None => sync_now(path),
    }
}

fn sync_now(path: &Path) {
    // The file may be gone already (delivered and removed): nothing left to make durable.
    if let Ok(file) = own_file(OpenOptions::new().read(true)).open(path) {
        if file.metadata().is_ok_and(|m| m.is_file()) {
            let _ = file.sync_all();
        }
    }
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Logs, once per process and directory, that telemetry cannot use `dir` (its folder under
/// the storage dir) at all, and what that costs. Later calls log at debug level.
pub(crate) fn warn_unusable(dir: &Path, error: &io::Error) {
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let first = WARNED
        .lock()
        .map(|mut w| w.get_or_insert_with(HashSet::new).insert(dir.to_owned()))
        .unwrap_or(true);
    if first {
        tracing::warn!(
            path = %dir.display(), error = %error,
            "telemetry cannot use its storage dir: its cluster id will not survive a restart, \
             and pending reports are kept in memory only (set ELECTRIC_STORAGE_DIR to a \
             writable directory)"
        );
    } else {
        tracing::debug!(path = %dir.display(), error = %error, "telemetry storage dir unusable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_and_oversized_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(read_regular(&fifo, 1024).is_err(), "a FIFO is not read");
        }
        let big = dir.path().join("big.json");
        fs::write(&big, vec![b'x'; 2048]).unwrap();
        assert!(read_regular(&big, 1024).is_err());
        assert_eq!(read_regular(&big, 4096).unwrap().len(), 2048);
        assert!(read_regular(dir.path(), 1024).is_err(), "nor a directory");
    }

    #[test]
    fn an_exclusive_create_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        create_exclusively(&path, b"first").unwrap();
        let second = create_exclusively(&path, b"second").unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
