//! The audit file: every report the endpoint accepted, byte for byte, one JSON line each.
//!
//! An operator who sets `ELECTRIC_TELEMETRY_AUDIT_LOG=PATH` can see exactly what left the
//! host. The file is bounded: once appending would take it past its size bound it is renamed to
//! `<PATH>.1` (replacing an older one) and a new file is started, so the two never hold more
//! than twice the bound. A disk problem costs one warning, never the delivery.
//!
//! Only a file telemetry can call its own is ever renamed: a regular file under that very
//! name, not a symlink, with no other hard link, and not where the process's stdout or stderr
//! is redirected. Anything else the path may name, such as `/dev/stdout` (a symlink to the
//! process's stdout), a device, a FIFO or a linked file, is appended to and never rotated
//! (its owner bounds it): renaming `/dev/stdout` once broke stdout for every process in a
//! container. The file is opened non-blocking, so a FIFO nobody reads (or whose reader is
//! stuck) costs a failed write and the one warning, never a blocked sender.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::files::regular::{found, open_append, Found};

#[derive(Debug)]
pub(crate) struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    warned: bool,
}

impl AuditLog {
    pub(crate) fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self {
            path,
            max_bytes,
            warned: false,
        }
    }

    /// Appends `body` and a newline.
    pub(crate) fn append(&mut self, body: &[u8]) {
        if let Err(e) = self.try_append(body) {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!(
                    path = %self.path.display(), error = %e,
                    "telemetry could not write its audit file; delivery goes on without it"
                );
            }
        }
    }

    fn try_append(&mut self, body: &[u8]) -> std::io::Result<()> {
        let own = match found(&self.path)? {
            Some((Found::OwnRegularFile, size)) => size,
            // Not ours to rename (or nothing there yet): appended to as it is.
            Some((Found::Other, _)) | None => 0,
        };
        if own > 0 && own + body.len() as u64 + 1 > self.max_bytes {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            fs::rename(&self.path, rotated)?;
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut file = open_append(&self.path)?;
        // One write per line, so a reader never sees half a report followed by another.
        let mut line = Vec::with_capacity(body.len() + 1);
        line.extend_from_slice(body);
        line.push(b'\n');
        file.write_all(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_rotated_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit").join("sent.jsonl");
        let mut audit = AuditLog::new(path.clone(), 100);
        for i in 0..5 {
            audit.append(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(20)).as_bytes());
        }
        let current = fs::read_to_string(&path).unwrap();
        let rotated = fs::read_to_string(path.with_extension("jsonl.1")).unwrap();
        assert!(current.len() <= 100 && rotated.len() <= 100);
        let lines: Vec<&str> = rotated.lines().chain(current.lines()).collect();
        assert!(lines.len() >= 3, "{lines:?}");
        assert!(lines.last().unwrap().contains("\"n\":4"));
        for line in lines {
            serde_json::from_str::<serde_json::Value>(line).expect("each line is one JSON value");
        }
    }

    /// The caller never sees the failure (`append` answers nothing and cannot panic on it):
    /// one warning for the process, and the file is written again once the path allows it.
    #[test]
    fn an_unwritable_path_costs_one_warning_and_the_file_resumes_once_writable() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logged = Lines::default();
        let writer = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        let path = blocker.join("audit.jsonl");
        let mut audit = AuditLog::new(path.clone(), 4096);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                audit.append(b"{}");
            }
            fs::remove_file(&blocker).unwrap();
            audit.append(b"{\"n\":1}");
        });
        let logged = String::from_utf8(logged.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            logged.matches("could not write its audit file").count(),
            1,
            "{logged}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"n\":1}\n");
    }
}
