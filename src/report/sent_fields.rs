//! Which payload fields this storage dir last sent: `<storage dir>/telemetry/sent_fields.json`,
//! a JSON array of dictionary paths (`data/usage/initial_syncs`, ...), rewritten by the
//! sender when a delivered report's fields differ from the last ones (a level or a build
//! changed), never more. The start-up line names the fields this run sends that the last
//! delivered report did not have, and [`Telemetry::status`](crate::Telemetry::status) does so
//! for what a report now would hold, so that an operator sees a new field before it goes out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use electric_telemetry_report::{fields, Level};
use serde_json::Value;

use crate::files::storage::{read_regular, write_then_sync};

/// The file, under the storage dir.
pub(crate) fn path(storage_dir: &Path) -> PathBuf {
    storage_dir.join("telemetry").join("sent_fields.json")
}

/// The fields the last delivered report had, if this storage dir ever delivered one (and the
/// file reads as a list of paths).
pub(crate) fn read(storage_dir: &Path) -> Option<BTreeSet<String>> {
    let bytes = read_regular(&path(storage_dir), 64 * 1024).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(crate) fn write(storage_dir: &Path, sent: &BTreeSet<String>) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(sent).map_err(std::io::Error::other)?;
    write_then_sync(&path(storage_dir), &bytes)
}

/// The dictionary's payload fields present in a report's JSON.
pub(crate) fn present(report: &Value) -> BTreeSet<String> {
    fields()
        .iter()
        .filter(|f| f.path.starts_with("data/"))
        .filter(|f| report.pointer(&format!("/{}", f.path)).is_some())
        .map(|f| f.path.clone())
        .collect()
}

/// The payload fields a report at `level` carries (consented up to `revision`).
pub(crate) fn at_level(level: Level, revision: u32) -> BTreeSet<String> {
    fields()
        .iter()
        .filter(|f| f.path.starts_with("data/") && f.level <= level && f.since <= revision)
        .map(|f| f.path.clone())
        .collect()
}

/// The fields of `now` that `before` did not have, a new section named once (not each of its
/// fields), in dictionary order.
pub(crate) fn new_since(now: &BTreeSet<String>, before: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for path in now.difference(before) {
        if out.iter().any(|p| path.starts_with(&format!("{p}/"))) {
            continue;
        }
        out.push(path.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_section_is_named_once() {
        let basic = at_level(Level::Basic, 3);
        let usage = at_level(Level::Usage, 3);
        assert!(basic.contains("data/environment/ram") && !basic.contains("data/usage"));
        assert_eq!(new_since(&usage, &basic), ["data/usage"]);
        assert_eq!(new_since(&basic, &usage), Vec::<String>::new());
        let full = at_level(Level::Full, 3);
        assert_eq!(new_since(&full, &basic), ["data/resources", "data/usage"]);
    }
}
