//! The instance and cluster ids.
//!
//! `electric_instance_id` is configured or random per start. `electric_cluster_uuid` is either
//! supplied by the service (from its own store, as Electric kept it in Postgres) or generated
//! once and kept in `<storage dir>/telemetry/cluster_uuid`, so figures stay continuous across
//! restarts. Instances that start together on one storage dir agree on it: the file is
//! created exclusively (a complete temporary file hard-linked into place) and re-read by
//! whoever loses the race. Trouble with that file never stops the host: it costs one warning
//! and a per-process id instead.

use std::fs;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::config::TelemetryConfig;

/// The ids a report carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub cluster_uuid: Uuid,
    pub instance_id: String,
}

impl Identity {
    pub(crate) fn resolve(config: &TelemetryConfig) -> Self {
        let instance_id = config
            .instance_id()
            .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
        let cluster_uuid = config
            .cluster_uuid()
            .unwrap_or_else(|| stored_cluster_uuid(config.storage_dir()));
        Self {
            cluster_uuid,
            instance_id,
        }
    }
}

/// The file the generated cluster id is kept in.
pub fn cluster_uuid_path(storage_dir: &Path) -> PathBuf {
    storage_dir.join("telemetry").join("cluster_uuid")
}

fn stored_cluster_uuid(storage_dir: &Path) -> Uuid {
    let path = cluster_uuid_path(storage_dir);
    if let Some(dir) = path.parent() {
        if let Err(e) = fs::create_dir_all(dir) {
            crate::files::storage::warn_unusable(dir, &e);
            return Uuid::new_v4();
        }
    }
    // Instances starting together on one storage dir: the first exclusive create wins, and
    // the others read its id. Bounded: only a file that keeps changing gets past a few rounds.
    for _ in 0..4 {
        match fs::read_to_string(&path) {
            Ok(text) => match Uuid::parse_str(text.trim()) {
                Ok(id) => return id,
                Err(_) => {
                    let aside = path.with_extension("corrupt");
                    let moved = fs::rename(&path, &aside).is_ok();
                    tracing::warn!(
                        path = %path.display(),
                        moved_to = moved.then(|| aside.display().to_string()),
                        "telemetry's cluster id file does not hold a UUID; generating a new one"
                    );
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(
                    path = %path.display(), error = %e,
                    "telemetry could not read its cluster id; this run uses a new one"
                );
                return Uuid::new_v4();
            }
        }
        let id = Uuid::new_v4();
        match crate::files::storage::create_exclusively(&path, id.to_string().as_bytes()) {
            Ok(()) => return id,
            // Another instance created it first: read its id.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                tracing::warn!(
                    path = %path.display(), error = %e,
                    "telemetry could not keep its cluster id; this run uses a new one that will \
                     not survive a restart (set ELECTRIC_STORAGE_DIR to a writable directory)"
                );
                return id;
            }
        }
    }
    tracing::warn!(
        path = %path.display(),
        "telemetry's cluster id file keeps changing; this run uses a new id"
    );
    Uuid::new_v4()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path) -> TelemetryConfig {
        TelemetryConfig::builder().storage_dir(dir).build().unwrap()
    }

    #[test]
    fn cluster_uuid_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::resolve(&config_in(dir.path()));
        let second = Identity::resolve(&config_in(dir.path()));
        assert_eq!(first.cluster_uuid, second.cluster_uuid);
        assert_ne!(
            first.instance_id, second.instance_id,
            "instance id is per start"
        );
        let stored = fs::read_to_string(cluster_uuid_path(dir.path())).unwrap();
        assert_eq!(stored, first.cluster_uuid.to_string());
    }

    #[test]
    fn configured_ids_win() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Uuid::new_v4();
        let config = TelemetryConfig::builder()
            .storage_dir(dir.path())
            .cluster_uuid(cluster)
            .instance_id("node-a")
            .build()
            .unwrap();
        let id = Identity::resolve(&config);
        assert_eq!(id.cluster_uuid, cluster);
        assert_eq!(id.instance_id, "node-a");
        assert!(!cluster_uuid_path(dir.path()).exists(), "nothing written");
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = cluster_uuid_path(dir.path());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "not a uuid").unwrap();
        let id = Identity::resolve(&config_in(dir.path()));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            id.cluster_uuid.to_string()
        );
        assert_eq!(
            fs::read_to_string(path.with_extension("corrupt")).unwrap(),
            "not a uuid"
        );
    }

    #[test]
    fn instances_starting_together_agree_on_one_cluster_id() {
        for trial in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let starters = 8;
            let barrier = std::sync::Barrier::new(starters);
            let ids: Vec<Uuid> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..starters)
                    .map(|_| {
                        s.spawn(|| {
                            let config = config_in(dir.path());
                            barrier.wait();
                            Identity::resolve(&config).cluster_uuid
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let stored = fs::read_to_string(cluster_uuid_path(dir.path())).unwrap();
            for id in &ids {
                assert_eq!(id.to_string(), stored, "trial {trial}: {ids:?}");
            }
        }
    }

    #[test]
    fn unwritable_storage_dir_still_gives_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        // A directory cannot be created below a regular file.
        let id = Identity::resolve(&config_in(&blocker));
        assert!(!id.cluster_uuid.is_nil());
    }
}
