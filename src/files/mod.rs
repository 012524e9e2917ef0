//! Files the operator names or the storage dir holds, handled so that nothing there can block,
//! flood or silently lose telemetry's work:
//!
//! - `regular`: bounded, non-blocking reads of operator-named files (the CA file) and appends
//!   that never block (the audit file);
//! - `storage`: the storage dir's files (unique temporary names, exclusive creation, atomic
//!   writes whose fsyncs never hold the sender up, one warning for an unusable dir);
//! - here: reading the CA file's certificates.

pub(crate) mod regular;
pub(crate) mod storage;

use std::path::Path;

/// The largest CA file read: a bundle of every public root is about 200 KiB.
const CA_FILE_MAX_BYTES: u64 = 4 << 20;

/// The certificates of a PEM file, or what is wrong with it: unreadable, not PEM, or holding no
/// certificate.
pub(crate) fn read_certificates(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    // Bounded and non-blocking: `/dev/zero` or a FIFO must fail start-up, not hang or flood it.
    let pem = crate::files::regular::read_bounded(path, CA_FILE_MAX_BYTES)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err("no certificate in it".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
