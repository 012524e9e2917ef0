//! Consent: the operator's decision, kept in the storage dir, and what telemetry makes of it
//! together with the policy, the mode and the levels at start.
//!
//! The record is `<storage dir>/telemetry/consent.json`, one small JSON object written
//! atomically by [`Telemetry::consent`](crate::Telemetry::consent) and
//! [`Telemetry::withdraw_consent`](crate::Telemetry::withdraw_consent):
//! `{"decision":"given"|"withdrawn","at":"<RFC 3339>","level":"usage","revision":3}`. It is
//! read once at start, and only when no opt-out already decided (an opt-out touches no
//! file). A withdrawal on record turns telemetry off under either policy until consent is
//! given again; a record that cannot be read is no consent (one warning), never a yes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use electric_telemetry_report::{fields_after, Level, SCHEMA_REVISION};
use serde::{Deserialize, Serialize};

use crate::files::storage::{read_regular, write_then_sync};

/// An operator's decision as recorded in the storage dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Consent {
    /// `true` if this is a withdrawal: nothing is collected or sent until consent is given
    /// again.
    #[serde(rename = "decision", with = "decision")]
    pub withdrawn: bool,
    /// When it was decided (RFC 3339, UTC).
    pub at: String,
    /// The most the operator agreed to send (for a withdrawal, the level it withdrew).
    pub level: Level,
    /// The schema revision the consent covers: fields added in a later revision are not
    /// sent under it.
    pub revision: u32,
}

mod decision {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(withdrawn: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *withdrawn { "withdrawn" } else { "given" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match String::deserialize(d)?.as_str() {
            "given" => Ok(false),
            "withdrawn" => Ok(true),
            other => Err(serde::de::Error::custom(format!(
                "decision {other:?}: given or withdrawn expected"
            ))),
        }
    }
}

impl Consent {
    /// A decision taken now, covering the newest schema revision.
    pub(crate) fn now(level: Level, withdrawn: bool) -> Self {
        Self {
            withdrawn,
            at: crate::report::builder::rfc3339(SystemTime::now()).unwrap_or_default(),
            level,
            revision: SCHEMA_REVISION,
        }
    }

    /// The payload fields this consent does not cover (added in a later revision), by path.
    /// Envelope fields are the protocol itself and always sent.
    pub fn fields_waiting(&self) -> Vec<&'static str> {
        fields_after(self.revision)
            .filter(|f| f.path.starts_with("data/"))
            .map(|f| f.path.as_str())
            .collect()
    }

    /// One line for logs and `--status`: `given at <when> for level usage, revision 3`.
    pub fn describe(&self) -> String {
        let what = if self.withdrawn { "withdrawn" } else { "given" };
        format!(
            "{what} at {} for level {}, schema revision {}",
            self.at, self.level, self.revision
        )
    }
}

/// Where the consent record is kept.
pub(crate) fn consent_path(storage_dir: &Path) -> PathBuf {
    storage_dir.join("telemetry").join("consent.json")
}

/// The decision on record, if there is a readable one. An unreadable or malformed record
/// is logged once and read as no decision.
pub(crate) fn read(storage_dir: &Path) -> Option<Consent> {
    let path = consent_path(storage_dir);
    match read_regular(&path, 4096) {
        Ok(bytes) => match serde_json::from_slice::<Consent>(&bytes) {
            Ok(consent) => Some(consent),
            Err(e) => {
                tracing::warn!(
                    path = %path.display(), error = %e,
                    "telemetry's consent record cannot be read; it counts as no consent \
                     (consent again to replace it)"
                );
                None
            }
        },
        // No record (or no folder for one: the storage dir's own trouble is warned about
        // once, where it is used).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || !path.exists() => None,
        Err(e) => {
            tracing::warn!(
                path = %path.display(), error = %e,
                "telemetry's consent record cannot be read; it counts as no consent"
            );
            None
        }
    }
}

/// Records `consent` (atomically: a temporary file, then a rename).
pub(crate) fn write(storage_dir: &Path, consent: &Consent) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(consent).map_err(std::io::Error::other)?;
    write_then_sync(&consent_path(storage_dir), &bytes)
}
