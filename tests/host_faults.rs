//! Faults of the host, not of the network: a full disk, special files where reports or the
//! audit file should be, a read-only outbox, a storage dir that is a file. Every report is
//! delivered, on disk, or counted as dropped in a later report; nothing blocks the sender.
//!
//! Real file systems: the full and read-only disks are small tmpfs mounts (the tests run as
//! root in CI's container). Where mounting is not permitted the test prints a note and skips.
//!
//! A binary of its own: it installs a global log subscriber (the sender logs from its own
//! thread), shared by its tests, which tell their lines apart by their storage paths.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::sender::{numbered_report, sender_config, start_sender};
use common::{accepted, eventually, free_port, outbox_status_when, LogCapture, Receiver};
use electric_telemetry::internals::*;
use electric_telemetry::*;

const WAIT: Duration = Duration::from_secs(10);

fn logs() -> &'static LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| LogCapture::install("warn,electric_telemetry=info"))
}

/// The crate's lines at `level` that mention `path`.
fn lines_about(level: &str, path: &Path) -> Vec<String> {
    let shown = path.display().to_string();
    logs()
        .lines(level)
        .into_iter()
        .filter(|l| l.contains(&shown))
        .collect()
}

/// A tmpfs mounted on a fresh temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a note) where this process may not mount.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("note: cannot mount a tmpfs here (not root?); skipping this test");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {mode}");
    }

    /// Makes the file system read-only under a running writer: a read-only bind mount over
    /// it (a plain `remount,ro` is refused while files are open for writing). Files opened
    /// before keep working; every create, rename or removal by path fails with EROFS, as on a
    /// disk the kernel turned read-only. [`Self::lift_read_only`] takes it away.
    fn read_only_from_now(&self) {
        let run = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .arg(self.path())
                .arg(self.path())
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(run(&["--bind"]), "bind mount");
        let ok = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount the bind mount read-only");
    }

    /// Whether anything is still mounted on the directory (a read-only bind over the tmpfs,
    /// or the tmpfs itself).
    fn mounted(&self) -> bool {
        std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
            let shown = self.path().display().to_string();
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(shown.as_str()))
        })
    }

    fn lift_read_only(&self) {
        let ok = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "unmount the read-only bind mount");
    }

    /// Fills the file system with one file, which [`Self::unfill`] removes.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.write_all(&block[..1]);
    }

    fn unfill(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("mount")
            .args(["-o", "remount,rw"])
            .arg(self.path())
            .status();
        // A sender thread that is still winding down may hold a file open for a moment
        // ("target is busy"); a lazy unmount at last, so that no test leaves a mount behind.
        for _ in 0..50 {
            let unmounted = Command::new("umount")
                .arg(self.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if unmounted && !self.mounted() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {}", path.display());
}

fn dead_url() -> String {
    format!("http://127.0.0.1:{}/checkpoint", free_port())
}

#[actix_rt::test]
async fn reports_a_full_disk_could_not_keep_are_counted_after_a_restart() {
    logs();
    let Some(disk) = Tmpfs::mount("64k") else {
        return;
    };
    let (first, arbiter) = start_sender(sender_config(&dead_url(), disk.path()));
    // The outbox is set up while there is room; then the disk fills.
    first.send(GetOutboxStatus).await.unwrap();
    disk.fill();
    for n in 1..=3 {
        first.send(Deliver(numbered_report(n))).await.unwrap();
    }
    assert_eq!(first.send(GetOutboxStatus).await.unwrap().pending, 3);
    // The process dies with the three reports in memory only.
    arbiter.stop();
    actix_rt::time::sleep(Duration::from_millis(100)).await;

    disk.unfill();
    let receiver = Receiver::start();
    let (second, _) = start_sender(sender_config(&receiver.url, disk.path()));
    second.send(Deliver(numbered_report(10))).await.unwrap();
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 1).await);
    let delivered = accepted(&receiver.received());
    assert_eq!(delivered[0].data.usage.operations_from_pg, 10);
    assert_eq!(
        delivered[0].dropped_reports, 3,
        "the three reports the full disk could not keep are counted"
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn the_shutdown_line_says_what_was_kept_and_what_is_counted_as_dropped() {
    logs();
    let Some(disk) = Tmpfs::mount("64k") else {
        return;
    };
    let storage = disk.path().join("storage");
    let config = |url: &str| {
        TelemetryConfig::builder()
            .url(url)
            .storage_dir(&storage)
            .first_report_in(Duration::from_secs(3600))
            .connect_timeout(Duration::from_millis(200))
            .shutdown_timeout(Duration::from_secs(1))
            .build()
            .unwrap()
    };
    let telemetry = Telemetry::start(config(&dead_url())).unwrap();
    telemetry.record(ReplicatedFromPg::new(1, 7));
    // Set up (cluster id, outbox) while there is room, then fill the disk.
    assert!(telemetry.outbox_status().await.is_some());
    disk.fill();
    let outcome = telemetry.shutdown().await;
    assert!(matches!(outcome, ShutdownOutcome::NotDelivered(_)));
    let said: Vec<String> = logs()
        .lines(" INFO ")
        .into_iter()
        .filter(|l| l.contains("telemetry stopped"))
        .collect();
    assert!(
        said.iter().any(|l| l
            .contains("0 reports kept on disk, 1 could not be written and is counted as dropped")),
        "the shutdown line says what happened: {said:#?}"
    );

    disk.unfill();
    let receiver = Receiver::start();
    let again = Telemetry::start(config(&receiver.url)).unwrap();
    assert_eq!(again.shutdown().await, ShutdownOutcome::Delivered);
    let reports = receiver.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].dropped_reports, 1, "the lost final report");
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_fifo_named_like_a_report_never_blocks_the_sender() {
    logs();
    let storage = tempfile::tempdir().unwrap();
    let outbox = outbox_dir(storage.path());
    std::fs::create_dir_all(&outbox).unwrap();
    mkfifo(&outbox.join("00000000000000000000-fifo.json"));
    let receiver = Receiver::start();
    let (sender, _) = start_sender(sender_config(&receiver.url, storage.path()));
    let status = tokio::time::timeout(WAIT, sender.send(Deliver(numbered_report(5)))).await;
    assert!(status.is_ok(), "the sender answers");
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 1).await);
    let delivered = accepted(&receiver.received());
    assert_eq!(delivered[0].data.usage.operations_from_pg, 5);
    assert_eq!(delivered[0].dropped_reports, 0, "a FIFO was never a report");
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_fifo_as_audit_file_never_blocks_delivery_or_shutdown() {
    logs();
    let storage = tempfile::tempdir().unwrap();
    let audit = storage.path().join("audit.fifo");
    mkfifo(&audit);
    let receiver = Receiver::start();
    let config = TelemetryConfig::builder()
        .url(&receiver.url)
        .storage_dir(storage.path())
        .audit_log(&audit)
        .first_report_in(Duration::ZERO)
        .interval(Duration::from_secs(3600))
        .shutdown_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let telemetry = Telemetry::start(config).unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 1).await);
    telemetry.record(ReplicatedFromPg::new(1, 3));
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let reports = receiver.reports();
    assert_eq!(reports.len(), 2, "the scheduled report and the final one");
    assert_eq!(reports[1].data.usage.operations_from_pg, 3);
    receiver.stop().await;
}

fn write_unreadable_reports(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("{i:020}-x.json")), "not json").unwrap();
    }
}

/// Starts a sender on `storage`, delivers one report and returns its `dropped_reports`.
async fn one_delivery_counts(storage: &Path, ops: u64) -> u64 {
    let receiver = Receiver::start();
    let (sender, arbiter) = start_sender(sender_config(&receiver.url, storage));
    sender.send(Deliver(numbered_report(ops))).await.unwrap();
    // Settled before the stop, so that no start sends an earlier start's report again.
    let status = outbox_status_when(&sender, |s| s.pending == 0).await;
    assert_eq!(status.pending, 0, "delivered");
    let received = accepted(&receiver.received());
    let mine: Vec<_> = received
        .iter()
        .filter(|r| r.data.usage.operations_from_pg == ops)
        .collect();
    assert_eq!(mine.len(), 1, "{received:#?}");
    let dropped = mine[0].dropped_reports;
    arbiter.stop();
    receiver.stop().await;
    dropped
}

#[actix_rt::test]
async fn unreadable_files_in_a_read_only_outbox_are_counted_once_ever() {
    logs();
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    write_unreadable_reports(&outbox_dir(disk.path()), 3);
    disk.remount("ro");
    let mut counted = 0;
    for ops in 1..=2 {
        counted += one_delivery_counts(disk.path(), ops).await;
    }
    let warned = lines_about(" WARN ", &outbox_dir(disk.path()));
    assert!(
        !warned.iter().any(|l| l.contains("renamed")),
        "no warning claims a rename that failed: {warned:#?}"
    );
    disk.remount("rw");
    for ops in 3..=4 {
        counted += one_delivery_counts(disk.path(), ops).await;
    }
    assert_eq!(counted, 3, "three lost files are three lost reports, once");
}

#[actix_rt::test]
async fn a_delivered_report_on_read_only_storage_is_not_sent_again_at_every_start() {
    logs();
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    let dir = outbox_dir(disk.path());
    std::fs::create_dir_all(&dir).unwrap();
    let stuck = numbered_report(42);
    std::fs::write(
        dir.join(format!("{:020}-{}.json", 0, stuck.report_id)),
        serde_json::to_vec(&stuck).unwrap(),
    )
    .unwrap();
    disk.remount("ro");
    let receiver = Receiver::start();
    for _ in 0..2 {
        let (sender, arbiter) = start_sender(sender_config(&receiver.url, disk.path()));
        sender.send(Deliver(numbered_report(1))).await.unwrap();
        assert!(
            eventually(WAIT, || receiver.reports().iter().any(|r| r
                .data
                .usage
                .operations_from_pg
                == 1))
            .await
        );
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        arbiter.stop();
    }
    let sent_again = receiver
        .reports()
        .iter()
        .filter(|r| r.report_id == stuck.report_id)
        .count();
    assert!(
        sent_again <= 1,
        "the report left on read-only storage was sent {sent_again} times"
    );
    assert_eq!(sent_again, 0, "a read-only outbox is not sent from");
    let warned = lines_about(" WARN ", &dir);
    assert_eq!(warned.len(), 2, "one clear warning per start: {warned:#?}");
    assert!(warned[0].contains("cannot write its outbox") && warned[0].contains("Read-only"));
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_storage_dir_that_is_a_file_is_one_warning() {
    logs();
    let parent = tempfile::tempdir().unwrap();
    let storage = parent.path().join("not-a-dir");
    std::fs::write(&storage, "").unwrap();
    let receiver = Receiver::start();
    let config = TelemetryConfig::builder()
        .url(&receiver.url)
        .storage_dir(&storage)
        .first_report_in(Duration::ZERO)
        .interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let telemetry = Telemetry::start(config).unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 1).await);
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let warned = lines_about(" WARN ", &storage);
    assert_eq!(warned.len(), 1, "exactly one warning: {warned:#?}");
    assert!(warned[0].contains("ELECTRIC_STORAGE_DIR"));
    receiver.stop().await;
}

/// `chattr +i` on `path`, undone when dropped; `None` (with a note) where it is not supported.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Self> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("note: chattr +i is not available here; skipping this test");
            return None;
        }
        Some(Self(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[actix_rt::test]
async fn an_unreadable_file_that_cannot_be_moved_aside_is_not_counted_and_not_said_to_be() {
    logs();
    let storage = tempfile::tempdir().unwrap();
    let dir = outbox_dir(storage.path());
    write_unreadable_reports(&dir, 2);
    let Some(_stuck) = Immutable::set(&dir.join(format!("{:020}-x.json", 1))) else {
        return;
    };
    let mut counted = 0;
    for ops in 1..=3 {
        counted += one_delivery_counts(storage.path(), ops).await;
    }
    assert_eq!(
        counted, 1,
        "the file moved aside is counted once; the stuck one never"
    );
    let warned = lines_about(" WARN ", &dir);
    let moved: Vec<_> = warned.iter().filter(|l| l.contains("renamed")).collect();
    assert_eq!(moved.len(), 1, "{warned:#?}");
    assert!(
        moved[0].contains("files=1"),
        "only the one renamed: {moved:?}"
    );
    assert!(
        warned.iter().any(|l| l.contains("could not move aside")),
        "the stuck file is named as such: {warned:#?}"
    );
}

/// The recovery file of the window in progress, under its current or its earlier name.
fn recovery_file(storage: &Path) -> Option<Report> {
    let dir = outbox_dir(storage);
    ["recovery.json", "checkpoint.json"]
        .iter()
        .find_map(|name| {
            let bytes = std::fs::read(dir.join(name)).ok()?;
            serde_json::from_slice(&bytes).ok()
        })
}

fn ops_of(reports: &[Report]) -> u64 {
    reports
        .iter()
        .map(|r| r.data.usage.operations_from_pg)
        .sum()
}

/// The storage is remounted read-only in the middle of a run: the window's recovery file can
/// no longer be removed once its report is queued, and the report goes out from memory. The
/// next start finds the recovery file and sends it, under the window's own `report_id`, so
/// the receiver keeps the window once.
#[actix_rt::test]
async fn a_recovery_file_that_could_not_be_removed_never_counts_its_window_twice() {
    logs();
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    let receiver = Receiver::start();
    let config = |instance: &str| {
        sender_config(&receiver.url, disk.path())
            .instance_id(instance)
            .first_report_in(Duration::from_secs(3600))
            .interval(Duration::from_secs(3600))
            .checkpoint_every(Duration::from_millis(50))
            .shutdown_timeout(Duration::from_secs(3))
            .build()
            .unwrap()
    };
    let telemetry = Telemetry::start(config("remounted")).unwrap();
    telemetry.record(ReplicatedFromPg::new(1, 400));
    assert!(
        eventually(WAIT, || recovery_file(disk.path()).is_some_and(|r| r
            .data
            .usage
            .operations_from_pg
            == 400))
        .await,
        "the window is kept in its recovery file"
    );
    disk.read_only_from_now();
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    disk.lift_read_only();
    assert!(
        recovery_file(disk.path()).is_some(),
        "the read-only disk kept the recovery file"
    );

    let next = Telemetry::start(config("next")).unwrap();
    assert_eq!(next.shutdown().await, ShutdownOutcome::Delivered);
    let reports = accepted(&receiver.received());
    assert_eq!(
        ops_of(&reports),
        400,
        "the window's usage, once: {reports:#?}"
    );
    receiver.stop().await;
}

/// Sixteen instances already run on the storage dir (each holds the lock of an outbox
/// directory, as a running instance does); a seventeenth keeps its reports on disk like any
/// other, and an instance that starts once the others are gone sends them.
#[actix_rt::test]
async fn the_seventeenth_instance_on_one_storage_dir_keeps_its_reports_on_disk() {
    logs();
    let storage = tempfile::tempdir().unwrap();
    let base = outbox_dir(storage.path());
    let mut live = Vec::new();
    for n in 0..16 {
        let dir = match n {
            0 => base.clone(),
            n => base.with_file_name(format!("outbox-{n}")),
        };
        std::fs::create_dir_all(&dir).unwrap();
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(".lock"))
            .unwrap();
        lock.try_lock().unwrap();
        live.push(lock);
    }
    let config = |url: &str, instance: &str| {
        sender_config(url, storage.path())
            .instance_id(instance)
            .first_report_in(Duration::from_secs(3600))
            .interval(Duration::from_secs(3600))
            .shutdown_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let seventeenth = Telemetry::start(config(&dead_url(), "seventeenth")).unwrap();
    seventeenth.record(ReplicatedFromPg::new(1, 17));
    assert!(matches!(
        seventeenth.shutdown().await,
        ShutdownOutcome::NotDelivered(_)
    ));
    let blamed: Vec<String> = lines_about(" WARN ", storage.path())
        .into_iter()
        .filter(|l| l.contains("cannot write its outbox"))
        .collect();
    assert!(blamed.is_empty(), "the disk is fine: {blamed:#?}");

    drop(live);
    let receiver = Receiver::start();
    let next = Telemetry::start(config(&receiver.url, "next")).unwrap();
    assert_eq!(next.shutdown().await, ShutdownOutcome::Delivered);
    let reports = accepted(&receiver.received());
    assert!(
        reports
            .iter()
            .any(|r| r.data.environment.electric_instance_id == "seventeenth"
                && r.data.usage.operations_from_pg == 17),
        "the seventeenth's report arrives: {reports:#?}"
    );
    receiver.stop().await;
}
