//! Real processes on one storage dir: a service killed with SIGKILL, and two instances running
//! side by side.
//!
//! A binary of its own: the other process is this test binary run again as a child (the
//! `child_service` test, which does its part only when `ET_CHILD` is set), against a real
//! receiver on loopback in the parent.
//!
//! Pinned: a kill loses at most one checkpoint period, and the next start sends the last
//! checkpoint as a report marked `recovered`; a kill before any checkpoint makes the next
//! report say `after_unclean_stop`; two live instances never send the same report, and an
//! instance that starts later sends what a dead one left.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{accepted, eventually, Receiver};
use electric_telemetry::internals::*;
use electric_telemetry::*;

const WAIT: Duration = Duration::from_secs(15);

/// What the child service does, passed through its environment.
struct ChildSpec<'a> {
    url: &'a str,
    storage: &'a Path,
    instance: &'a str,
    first_report_in: Duration,
    interval: Duration,
    checkpoint_every: Duration,
    ops: u64,
    /// Zero: run until killed. Otherwise record one operation every 5 ms for this long, then
    /// shut down and print how many were recorded and how the shutdown ended.
    run_for: Duration,
}

/// A child service process, killed (SIGKILL) when dropped if still running.
struct ChildService {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ChildService {
    fn spawn(spec: &ChildSpec) -> Self {
        Self::spawn_in(Command::new(std::env::current_exe().unwrap()), spec)
    }

    /// Runs the child through `command` (e.g. under strace), this test binary as its last
    /// argument.
    fn spawn_in(mut command: Command, spec: &ChildSpec) -> Self {
        let ms = |d: Duration| d.as_millis().to_string();
        if command.get_program() != std::env::current_exe().unwrap() {
            command.arg(std::env::current_exe().unwrap());
        }
        let mut child = command
            .args(["--exact", "child_service", "--nocapture"])
            .env("ET_CHILD", "1")
            .env("ET_URL", spec.url)
            .env("ET_STORAGE", spec.storage)
            .env("ET_INSTANCE", spec.instance)
            .env("ET_FIRST_MS", ms(spec.first_report_in))
            .env("ET_INTERVAL_MS", ms(spec.interval))
            .env("ET_CHECKPOINT_MS", ms(spec.checkpoint_every))
            .env("ET_OPS", spec.ops.to_string())
            .env("ET_RUN_MS", ms(spec.run_for))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run this test binary as a child");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits (bounded) for a line of the child's that contains `what`.
    async fn said(&self, what: &str) -> Option<String> {
        let mut found = None;
        eventually(Duration::from_secs(60), || {
            found = found
                .take()
                .or_else(|| self.lines.try_iter().find(|l| l.contains(what)));
            found.is_some()
        })
        .await;
        found
    }

    /// Waits (bounded, without blocking the parent's actix thread) for the child to say it
    /// is ready: telemetry started and its usage recorded.
    async fn ready(&self) -> bool {
        eventually(WAIT, || {
            self.lines
                .try_iter()
                .any(|l| l.contains("child service ready"))
        })
        .await
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL on unix
        let _ = self.child.wait();
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The child's side: a service that starts telemetry, records `ET_OPS` operations, says so,
/// and runs until it is killed (at most a minute, so a stray child never lingers).
#[test]
fn child_service() {
    let Ok(_) = std::env::var("ET_CHILD") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let ms = |name: &str| Duration::from_millis(var(name).parse().unwrap());
    let config = TelemetryConfig::builder()
        .url(var("ET_URL"))
        .storage_dir(var("ET_STORAGE"))
        .instance_id(var("ET_INSTANCE"))
        .first_report_in(ms("ET_FIRST_MS"))
        .interval(ms("ET_INTERVAL_MS"))
        .checkpoint_every(ms("ET_CHECKPOINT_MS"))
        .retry_initial_backoff(Duration::from_millis(20))
        .retry_max_backoff(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let ops: u64 = var("ET_OPS").parse().unwrap();
    let run_for = ms("ET_RUN_MS");
    actix_rt::System::new().block_on(async move {
        let telemetry = Telemetry::start(config).unwrap();
        telemetry.record(ReplicatedFromPg::new(1, ops));
        // Once the sender answers, its outbox directory is claimed and marked.
        assert!(telemetry.outbox_status().await.is_some());
        println!("child service ready");
        if run_for.is_zero() {
            actix_rt::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let mut recorded = ops;
        let end = std::time::Instant::now() + run_for;
        while std::time::Instant::now() < end {
            telemetry.record(ReplicatedFromPg::new(1, 1));
            recorded += 1;
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        let outcome = telemetry.shutdown().await;
        println!("child service recorded={recorded} outcome={outcome:?}");
    });
}

fn config(url: &str, storage: &Path, instance: &str) -> TelemetryConfigBuilder {
    TelemetryConfig::builder()
        .url(url)
        .storage_dir(storage)
        .instance_id(instance)
        .first_report_in(Duration::from_secs(3600))
        .interval(Duration::from_secs(3600))
        .request_timeout(Duration::from_secs(2))
        .retry_initial_backoff(Duration::from_millis(20))
        .retry_max_backoff(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(3))
}

/// The recovery file the child keeps of its window in progress.
fn read_checkpoint(storage: &Path) -> Option<Report> {
    let bytes = std::fs::read(outbox_dir(storage).join("recovery.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[actix_rt::test]
async fn a_sigkill_loses_at_most_one_checkpoint_period_and_the_next_start_sends_it_recovered() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let mut child = ChildService::spawn(&ChildSpec {
        url: &receiver.url,
        storage: storage.path(),
        instance: "killed",
        first_report_in: Duration::from_secs(3600),
        interval: Duration::from_secs(3600),
        checkpoint_every: Duration::from_millis(100),
        ops: 1234,
        run_for: Duration::ZERO,
    });
    assert!(child.ready().await, "the child service starts");
    assert!(
        eventually(WAIT, || read_checkpoint(storage.path()).is_some_and(|c| c
            .data
            .usage
            .operations_from_pg
            == 1234))
        .await,
        "the child checkpoints its window"
    );
    child.kill();
    let checkpoint = read_checkpoint(storage.path()).unwrap();
    assert!(
        receiver.received().is_empty(),
        "nothing was sent before the kill"
    );

    let telemetry = Telemetry::start(
        config(&receiver.url, storage.path(), "next")
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(
        eventually(WAIT, || receiver.received().len() == 1).await,
        "the next start sends the recovered window at once"
    );
    let recovered = &receiver.reports()[0];
    assert!(recovered.recovered, "marked as recovered");
    assert!(
        !recovered.after_unclean_stop,
        "nothing is missing but the tail"
    );
    assert_eq!(recovered.data.usage.operations_from_pg, 1234);
    assert_eq!(recovered.data.environment.electric_instance_id, "killed");
    assert_eq!(
        recovered.timestamp, checkpoint.timestamp,
        "its window ends at the checkpoint"
    );
    assert_eq!(recovered.report_version, REPORT_VERSION);

    telemetry.record(ReplicatedFromPg::new(1, 5));
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let reports = receiver.reports();
    assert_eq!(reports.len(), 2);
    assert!(!reports[1].recovered && !reports[1].after_unclean_stop);
    assert_eq!(reports[1].data.usage.operations_from_pg, 5);

    // A clean shutdown leaves nothing to recover.
    let again = Telemetry::start(
        config(&receiver.url, storage.path(), "last")
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(again.shutdown().await, ShutdownOutcome::Delivered);
    let last = receiver.reports().pop().unwrap();
    assert_eq!(receiver.reports().len(), 3);
    assert!(!last.recovered && !last.after_unclean_stop);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_sigkill_before_any_checkpoint_makes_the_next_report_say_so() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let mut child = ChildService::spawn(&ChildSpec {
        url: &receiver.url,
        storage: storage.path(),
        instance: "killed-early",
        first_report_in: Duration::from_secs(3600),
        interval: Duration::from_secs(3600),
        checkpoint_every: Duration::from_secs(3600),
        ops: 77,
        run_for: Duration::ZERO,
    });
    assert!(child.ready().await, "the child service starts");
    child.kill();

    let telemetry = Telemetry::start(
        config(&receiver.url, storage.path(), "next")
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let reports = receiver.reports();
    assert_eq!(
        reports.len(),
        1,
        "nothing of the killed run was recoverable"
    );
    assert!(
        reports[0].after_unclean_stop,
        "the report says a stretch is missing"
    );
    assert!(!reports[0].recovered);

    let again = Telemetry::start(
        config(&receiver.url, storage.path(), "last")
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(again.shutdown().await, ShutdownOutcome::Delivered);
    let reports = receiver.reports();
    assert_eq!(reports.len(), 2);
    assert!(
        !reports[1].after_unclean_stop,
        "said once, not at every start"
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn two_live_instances_on_one_storage_dir_never_send_the_same_report() {
    let receiver = Receiver::start();
    // Nothing is accepted at first, so that both instances hold pending reports.
    receiver.answer_with(503);
    let storage = tempfile::tempdir().unwrap();
    let mut first = ChildService::spawn(&ChildSpec {
        url: &receiver.url,
        storage: storage.path(),
        instance: "first",
        first_report_in: Duration::ZERO,
        interval: Duration::from_secs(1),
        checkpoint_every: Duration::from_millis(100),
        ops: 10,
        run_for: Duration::ZERO,
    });
    assert!(first.ready().await, "the first instance starts");
    let first_pending = || {
        std::fs::read_dir(outbox_dir(storage.path())).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter(|e| e.file_name() != "recovery.json")
                .count()
        })
    };
    assert!(
        eventually(WAIT, || first_pending() >= 2).await,
        "the first instance queues reports"
    );

    // The second instance starts beside the live first one, on the same storage dir.
    let second = Telemetry::start(
        config(&receiver.url, storage.path(), "second")
            .first_report_in(Duration::ZERO)
            .interval(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .unwrap();
    second.record(ReplicatedFromPg::new(1, 20));
    actix_rt::time::sleep(Duration::from_millis(700)).await;
    receiver.answer_with(200);
    let accepted_from = |instance: &str| {
        receiver
            .received()
            .iter()
            .filter(|r| r.status == 200)
            .filter(|r| r.report().data.environment.electric_instance_id == instance)
            .count()
    };
    assert!(
        eventually(WAIT, || accepted_from("first") >= 3
            && accepted_from("second") >= 2)
        .await,
        "both instances deliver"
    );
    first.kill();
    assert!(matches!(
        second.shutdown().await,
        ShutdownOutcome::Delivered | ShutdownOutcome::NotDelivered(_)
    ));

    // A later start sends what the killed instance left behind, and nothing twice.
    let later = Telemetry::start(
        config(&receiver.url, storage.path(), "later")
            .build()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(later.shutdown().await, ShutdownOutcome::Delivered);

    let mut accepted: HashMap<uuid::Uuid, usize> = HashMap::new();
    for r in receiver.received().iter().filter(|r| r.status == 200) {
        *accepted.entry(r.report().report_id).or_default() += 1;
    }
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "reports accepted more than once: {twice:?}"
    );
    let leftovers = std::fs::read_dir(storage.path().join("telemetry"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("outbox"))
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(leftovers, 0, "every report was delivered");
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_kill_around_a_report_tick_never_counts_a_window_twice() {
    let receiver = Receiver::start();
    for (trial, pause_ms) in [0u64, 60, 150].into_iter().enumerate() {
        let storage = tempfile::tempdir().unwrap();
        let before = receiver.received().len();
        let ops = 1000 + trial as u64;
        let mut child = ChildService::spawn(&ChildSpec {
            url: &receiver.url,
            storage: storage.path(),
            instance: "ticking",
            first_report_in: Duration::from_millis(300),
            interval: Duration::from_secs(1),
            checkpoint_every: Duration::from_millis(50),
            ops,
            run_for: Duration::ZERO,
        });
        assert!(child.ready().await, "the child service starts");
        assert!(
            eventually(WAIT, || receiver.received().len() > before).await,
            "the child's first report arrives"
        );
        // Killed at different points after the tick: before, during or after the next
        // checkpoint of the new window.
        actix_rt::time::sleep(Duration::from_millis(pause_ms)).await;
        child.kill();

        let next = Telemetry::start(
            config(&receiver.url, storage.path(), "next")
                .build()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(next.shutdown().await, ShutdownOutcome::Delivered);
        // A kill between the endpoint's answer and the sender noting it sends that report
        // again after the restart, with the same id: the receiver drops the repeat by id.
        let reports = accepted(&receiver.received()[before..]);
        let counted: u64 = reports
            .iter()
            .map(|r| r.data.usage.operations_from_pg)
            .sum();
        assert_eq!(
            counted, ops,
            "trial {trial}: the recorded operations, once: {reports:#?}"
        );
    }
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_disk_with_slow_fsyncs_never_holds_the_sender_up() {
    // Every fsync of the child takes a second, as on an overloaded or throttled disk: real
    // syscalls, delayed by strace's fault injection.
    let strace = Command::new("strace").arg("-V").output();
    if !strace.is_ok_and(|o| o.status.success()) {
        eprintln!("note: strace is not available here; skipping this test");
        return;
    }
    let mut command = Command::new("strace");
    command.args([
        "-f",
        "--seccomp-bpf",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "trace=fsync,fdatasync",
        "-e",
        "inject=fsync,fdatasync:delay_exit=1000000",
    ]);
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let child = ChildService::spawn_in(
        command,
        &ChildSpec {
            url: &receiver.url,
            storage: storage.path(),
            instance: "slow-disk",
            first_report_in: Duration::ZERO,
            interval: Duration::from_secs(1),
            checkpoint_every: Duration::from_millis(200),
            ops: 0,
            run_for: Duration::from_secs(4),
        },
    );
    let Some(line) = child.said("recorded=").await else {
        // strace may not be permitted to trace (no ptrace in this container).
        eprintln!("note: the child did not run under strace; skipping this test");
        return;
    };
    let recorded: u64 = line
        .split("recorded=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(line.contains("outcome=Delivered"), "{line}");
    let reports = accepted(&receiver.received());
    assert!(reports.len() >= 4, "a report per second, and the final one");
    let arrived: u64 = reports
        .iter()
        .map(|r| r.data.usage.operations_from_pg)
        .sum();
    assert_eq!(arrived, recorded, "every recorded operation arrived");
    let dropped: u64 = reports.iter().map(|r| r.dropped_reports).sum();
    assert_eq!(dropped, 0);
    receiver.stop().await;
}

/// What the reports files in `dir` stand for: each report once plus the drops it carries,
/// and the drop counts kept beside them. The files are read as plain JSON, since what the
/// outbox keeps next to a report is its own business.
fn reports_and_counts(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut accounted = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        if name.ends_with(".json") && name.starts_with(|c: char| c.is_ascii_digit()) {
            let report: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            files += 1;
            accounted += 1 + report["dropped_reports"].as_u64().unwrap();
        } else if name == "dropped_reports" || name == "unqueued" {
            let text = String::from_utf8(bytes).unwrap();
            accounted += text
                .split_whitespace()
                .next()
                .map_or(0, |n| n.parse::<u64>().unwrap());
        }
    }
    (files, accounted)
}

fn report_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    })
}

/// 3 000 reports pending from an outage, and a restart with a bound of 7: the start drops
/// all but 7, folding each drop into the next report. Killed (SIGKILL) at ten points of that
/// drop, and restarted each time, nothing may fall out of the accounting: every report is on
/// disk or counted in a `dropped_reports`, exactly once.
#[actix_rt::test]
async fn a_sigkill_anywhere_in_a_large_drop_keeps_every_report_accounted_for() {
    const PENDING: u64 = 3000;
    let storage = tempfile::tempdir().unwrap();
    let dir = outbox_dir(storage.path());
    std::fs::create_dir_all(&dir).unwrap();
    for seq in 0..PENDING {
        let mut report = common::seed_report();
        report.report_id = uuid::Uuid::new_v4();
        report.dropped_reports = 0;
        let name = format!("{seq:020}-{}.json", report.report_id);
        std::fs::write(dir.join(name), serde_json::to_vec(&report).unwrap()).unwrap();
    }
    let dead = format!("http://127.0.0.1:{}/checkpoint", common::free_port());
    let spec = ChildSpec {
        url: &dead,
        storage: storage.path(),
        instance: "dropping",
        first_report_in: Duration::from_secs(3600),
        // Default retention over a 4 h interval: a bound of 7 reports.
        interval: Duration::from_secs(4 * 3600),
        checkpoint_every: Duration::from_secs(3600),
        ops: 1,
        run_for: Duration::ZERO,
    };
    let mut mid_drop = 0;
    for below in [2950, 2700, 2400, 2000, 1600, 1200, 800, 400, 150, 40] {
        let mut child = ChildService::spawn(&spec);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = child
                .lines
                .try_iter()
                .any(|l| l.contains("child service ready"));
            if ready || report_files(&dir) < below {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the child loads");
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
        child.kill();
        if report_files(&dir) > 7 {
            mid_drop += 1;
        }
    }
    // One start more, to the end of its load, resolves whatever a kill left half done.
    let mut last = ChildService::spawn(&spec);
    assert!(last.ready().await, "the last child loads");
    last.kill();
    let (files, accounted) = reports_and_counts(&dir);
    assert_eq!(files, 7, "the bound holds");
    assert_eq!(
        accounted, PENDING,
        "every pending report is on disk or counted as dropped, once"
    );
    assert!(mid_drop >= 3, "{mid_drop} kills landed in the drop");
}
