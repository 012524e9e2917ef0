//! Files named by an operator, opened so that a special file can never hang or flood us.
//!
//! A path from the environment may name anything: `/dev/zero` (endless), a FIFO (an open or a
//! read blocks until someone opens the other end), `/dev/stdout` (a symlink to whatever the
//! process's stdout is). What a caller may rely on:
//! - [`read_bounded`] reads only a regular file (symlinks to one are fine), checked before
//!   the open and again on the open file, opened non-blocking, and reads at most `max` bytes:
//!   it never blocks on a FIFO, never reads a device, never holds more than `max + 1` bytes.
//! - [`open_append`] opens a path for appending without ever blocking on a FIFO (no reader is
//!   an error, a full pipe a short or failed write), and says what kind of file it got, so the
//!   caller can decide whether renaming it (rotation) is safe.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// Opens non-blocking where the platform has it: on a FIFO, a blocking open waits for the other
/// end forever.
fn non_blocking(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options
}

/// The whole content of the regular file at `path`, at most `max` bytes; else what is wrong,
/// in words fit for an error message (`ConfigError::problem`).
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let too_big = || format!("it is larger than {max} bytes");
    // Checked before opening: opening a FIFO or a device can block or have effects.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("it is {}, not a regular file", kind(&meta)));
    }
    if meta.len() > max {
        return Err(too_big());
    }
    let file = non_blocking(OpenOptions::new().read(true))
        .open(path)
        .map_err(|e| e.to_string())?;
    // And again on what was opened: the path may have been swapped in between.
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("it is {}, not a regular file", kind(&meta)));
    }
    let mut bytes = Vec::new();
    // One byte more than allowed tells a file that grew past the bound from one that fits.
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

/// What a path named, as [`open_append`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A regular file under this very name (not a symlink) with one link, and not where this
    /// process's stdout or stderr goes: renaming it touches nothing but this file.
    OwnRegularFile,
    /// Anything else: a symlink (such as `/dev/stdout`), a device, a FIFO, a socket, a
    /// regular file with other names, or the file stdout or stderr is redirected to. Renaming
    /// it could break something that is not ours.
    Other,
}

/// What a path names now, without following a symlink; `None` if nothing is there.
pub(crate) fn found(path: &Path) -> io::Result<Option<(Found, u64)>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some((classify(&meta), meta.len())))
}

fn classify(meta: &std::fs::Metadata) -> Found {
    #[cfg(unix)]
    let single = {
        use std::os::unix::fs::MetadataExt;
        meta.nlink() == 1 && !is_our_stdout_or_stderr(meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let single = true;
    if meta.file_type().is_file() && single {
        Found::OwnRegularFile
    } else {
        Found::Other
    }
}

/// Whether the file with this device and inode is where this process's stdout or stderr
/// writes (e.g. `service > app.log` with the audit path set to `app.log`).
#[cfg(unix)]
fn is_our_stdout_or_stderr(dev: u64, ino: u64) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let same = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(File::from)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
    };
    same(io::stdout().as_fd()) || same(io::stderr().as_fd())
}

/// Opens `path` for appending (creating a regular file if nothing is there), non-blocking.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    // O_NONBLOCK changes nothing for a regular file (its writes are taken in full); a pipe or
    // a device stays non-blocking, so a stuck reader never stops the caller.
    non_blocking(OpenOptions::new().create(true).append(true)).open(path)
}

/// "a FIFO", "a directory", ... for error messages.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_bound_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"hello");
        assert!(read_bounded(&path, 4)
            .unwrap_err()
            .contains("larger than 4 bytes"));
        assert!(read_bounded(dir.path(), 4)
            .unwrap_err()
            .contains("directory"));
    }
}
