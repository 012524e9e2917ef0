//! Small file helpers shared by the outbox and the ids: writing a file so that a crash leaves
//! either the old content or the new, never a torn one.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: a
/// temporary file beside it, fsync, rename, then fsync of the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every platform can open a directory.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The largest CA file read: a bundle of every public root is about 200 KiB.
const CA_FILE_MAX_BYTES: u64 = 4 << 20;

/// The certificates of a PEM file, or what is wrong with it: unreadable, not PEM, or holding no
/// certificate.
pub(crate) fn read_certificates(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    // Bounded and non-blocking: `/dev/zero` or a FIFO must fail start-up, not hang or flood it.
    let pem = crate::regular_file::read_bounded(path, CA_FILE_MAX_BYTES)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err("no certificate in it".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
