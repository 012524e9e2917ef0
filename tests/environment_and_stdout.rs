//! Settings read from the real process environment, and an audit path that is our own
//! redirected stdout: the harmful settings of `tests/suite/harmful_settings.rs` that need a
//! process of their own. Non-UTF-8 paths from the environment are used byte for byte, a
//! non-UTF-8 value where text is needed is an error naming the variable, and an audit file that
//! is the process's own stdout is appended to and never rotated. And an opt-in service
//! without consent, in a process of its own under strace (where it can run): no socket, no
//! thread, no file created (only the consent record looked for), one start-up line.
//!
//! A binary of its own: each parent test runs this binary again as a child (the `child_*`
//! tests, which do their part only when `ET_CHILD` is set) with its own environment or stdout;
//! no test here changes this process's environment.
//!
//! Unix only: non-UTF-8 values and file names are what it is about.
#![cfg(unix)]

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::non_utf8;
use common::sender::{audited_sender, numbered_report};
use common::{eventually, Receiver};
use electric_telemetry::internals::*;
use electric_telemetry::TelemetryConfig;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

// Read from the process environment ---------------------------------------------------------

/// Run only as the child of the test below, with its environment: reads the real process
/// environment through `from_env` and checks every path byte for byte.
#[test]
fn child_reads_non_utf8_paths_from_its_environment() {
    // An entry point for the parent test's child process: does nothing in a plain run.
    if std::env::var_os("ET_CHILD").is_none() {
        return;
    }
    let expected = |name: &str| unhex(&std::env::var(name).expect("run by the parent test"));
    let config = TelemetryConfig::from_env().expect("non-UTF-8 paths are valid settings");
    assert_eq!(
        config.storage_dir().as_os_str().as_bytes(),
        expected("EXPECT_STORAGE_DIR")
    );
    let audit = config.audit_log().expect("audit log set");
    assert_eq!(audit.as_os_str().as_bytes(), expected("EXPECT_AUDIT_LOG"));
    let ca = config.ca_file().expect("CA file set");
    assert_eq!(ca.as_os_str().as_bytes(), expected("EXPECT_CA_FILE"));
    // And the files are found where configured: the CA file was read at that exact path.
    assert!(ca.is_file());
}

#[test]
fn non_utf8_paths_from_the_environment_are_used_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let storage = non_utf8(dir.path(), b"caf\xe9-storage");
    let audit = non_utf8(dir.path(), b"caf\xe9-audit.jsonl");
    let ca = non_utf8(dir.path(), b"caf\xe9-ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_non_utf8_paths_from_its_environment",
            "--test-threads=1",
        ])
        .env("ET_CHILD", "1")
        .env_remove(ENV_TELEMETRY)
        .env_remove(ENV_DO_NOT_TRACK)
        .env_remove(ENV_URL)
        .env(ENV_STORAGE_DIR, &storage)
        .env(ENV_AUDIT_LOG, &audit)
        .env(ENV_CA_FILE, &ca)
        .env("EXPECT_STORAGE_DIR", hex(storage.as_os_str().as_bytes()))
        .env("EXPECT_AUDIT_LOG", hex(audit.as_os_str().as_bytes()))
        .env("EXPECT_CA_FILE", hex(ca.as_os_str().as_bytes()))
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "the child ran: {stdout}");
}

#[test]
fn a_non_utf8_value_where_text_is_needed_is_an_error_naming_the_variable() {
    // Through the process-environment path, in a child: no test here touches our own env.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_a_non_utf8_instance_id",
            "--test-threads=1",
        ])
        .env("ET_CHILD", "1")
        .env(ENV_INSTANCE_ID, OsStr::from_bytes(b"node-\xff"))
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("1 passed"), "the child ran: {stdout}");
}

#[test]
fn child_reads_a_non_utf8_instance_id() {
    // An entry point for the parent test's child process: does nothing in a plain run.
    if std::env::var_os("ET_CHILD").is_none() {
        return;
    }
    let err = TelemetryConfig::from_env().expect_err("a non-UTF-8 id is refused");
    assert_eq!(err.setting, "ELECTRIC_INSTANCE_ID");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

// An audit path that is our own stdout -------------------------------------------------------

/// Run only as the child of the test below, with stdout redirected to the file that is also
/// its audit path, already past the rotation bound.
#[actix_rt::test]
async fn child_audits_into_its_own_stdout() {
    // An entry point for the parent test's child process: does nothing in a plain run.
    if std::env::var_os("ET_CHILD").is_none() {
        return;
    }
    let audit = PathBuf::from(std::env::var_os("AUDIT_PATH").expect("run by the parent test"));
    let storage = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let (sender, arbiter) = audited_sender(&receiver.url, storage.path(), &audit);
    for n in 1..=3 {
        sender
            .send(electric_telemetry::internals::Deliver(numbered_report(n)))
            .await
            .unwrap();
    }
    let accepted = || common::accepted(&receiver.received()).len();
    assert!(eventually(Duration::from_secs(10), || accepted() == 3).await);
    common::outbox_status_when(&sender, |s| s.pending == 0).await;
    arbiter.stop();
    receiver.stop().await;
}

#[test]
fn an_audit_path_that_is_our_own_redirected_stdout_is_never_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("service.log");
    std::fs::write(&log, "x".repeat(5000) + "\n").unwrap();
    let stdout = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_audits_into_its_own_stdout",
            "--test-threads=1",
        ])
        .env("ET_CHILD", "1")
        .env("AUDIT_PATH", &log)
        .stdout(stdout)
        .status()
        .expect("the test binary runs");
    let text = std::fs::read_to_string(&log).unwrap();
    let tail = &text[text.len().saturating_sub(600)..];
    assert!(status.success(), "the child passed: ...{tail}");
    assert!(
        text.contains("1 passed"),
        "the child ran, writing here: ...{tail}"
    );
    assert!(!dir.path().join("service.log.1").exists(), "never renamed");
    // libtest's "test ... " has no newline yet when the first line is appended.
    let audited = text.matches("{\"report_id\"").count();
    assert_eq!(audited, 3, "each accepted report appended to the same file");
}

// An opt-in service without consent ------------------------------------------------------

/// Threads of this process, and its open sockets, from `/proc/self`.
fn threads_and_sockets() -> (usize, usize) {
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
    let sockets = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count();
    (threads, sockets)
}

/// An `openat` that fails, for the parent to find in the child's syscall trace.
fn mark(name: &str) {
    let _ = std::fs::File::open(format!("/nonexistent-et-mark-{name}"));
}

/// Run only as the child of the test below: an opt-in service that never gets consent,
/// logging to stdout, recording usage through every path across a report's due time.
#[actix_rt::test]
async fn child_opt_in_service_without_consent() {
    // An entry point for the parent test's child process: does nothing in a plain run.
    if std::env::var_os("ET_CHILD").is_none() {
        return;
    }
    use electric_telemetry::*;
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .init();
    let storage = PathBuf::from(std::env::var_os("ET_STORAGE").expect("run by the parent"));
    let config = TelemetryConfig::builder()
        .url(std::env::var("ET_URL").expect("run by the parent"))
        .storage_dir(&storage)
        .policy(Policy::OptIn)
        .first_report_in(Duration::ZERO)
        .interval(Duration::from_secs(1))
        .sample_every(Duration::from_millis(100))
        .with_env()
        .unwrap()
        .build()
        .unwrap();
    let before = threads_and_sockets();
    mark("begin");
    let telemetry = Telemetry::start(config).unwrap();
    telemetry.record(ClientConnected::new("client", "user"));
    telemetry.record_with(|| ClientConnected::new("client-2", "user"));
    telemetry.record(ReplicatedFromPg::new(1, 5));
    telemetry.record(PgVersion::new("16.1").unwrap());
    telemetry.add(Counter::OperationsFromPg, 3);
    assert!(telemetry.collector().is_none());
    assert!(telemetry.preview().await.is_none());
    // Past the first report's due time and several samples.
    actix_rt::time::sleep(Duration::from_millis(1300)).await;
    let outcome = telemetry.shutdown().await;
    mark("end");
    let after = threads_and_sockets();
    println!(
        "child opt-in done enabled={} outcome={outcome:?} threads={}->{} sockets={}->{}",
        telemetry.is_enabled(),
        before.0,
        after.0,
        before.1,
        after.1
    );
}

#[test]
fn an_opt_in_service_without_consent_opens_no_socket_starts_no_thread_writes_no_file() {
    let storage = tempfile::tempdir().unwrap();
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", receiver.local_addr().unwrap());
    let trace = std::env::temp_dir().join(format!("et-opt-in-trace-{}", std::process::id()));
    let traced = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = if traced {
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-o"])
            .arg(&trace)
            .args([
                "-e",
                "trace=%network,%process,openat,open,creat,mkdir,mkdirat,rename,renameat,\
                 renameat2,unlink,unlinkat,link,linkat",
            ])
            .arg(std::env::current_exe().unwrap());
        c
    } else {
        eprintln!("note: strace is not available here; checking from /proc only");
        Command::new(std::env::current_exe().unwrap())
    };
    let output = command
        .args([
            "--exact",
            "child_opt_in_service_without_consent",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("ET_CHILD", "1")
        .env("ET_STORAGE", storage.path())
        .env("ET_URL", &url)
        .env_remove(ENV_TELEMETRY)
        .env_remove(ENV_DO_NOT_TRACK)
        .env_remove(ENV_URL)
        .env_remove("ELECTRIC_TELEMETRY_LEVEL")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let done = stdout
        .lines()
        .find(|l| l.contains("child opt-in done"))
        .unwrap_or_else(|| panic!("the child ran: {stdout}"));
    assert!(done.contains("enabled=false outcome=NotRunning"), "{done}");
    let counts = |what: &str| -> (usize, usize) {
        let part = done.split(&format!("{what}=")).nth(1).unwrap();
        let (a, b) = part
            .split_whitespace()
            .next()
            .unwrap()
            .split_once("->")
            .unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    let (threads_before, threads_after) = counts("threads");
    assert_eq!(
        threads_after, threads_before,
        "no thread beyond the caller's: {done}"
    );
    let (sockets_before, sockets_after) = counts("sockets");
    assert_eq!(sockets_after, sockets_before, "no socket: {done}");
    // One start-up line, saying why and how to consent.
    let ours: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("electric_telemetry"))
        .collect();
    assert_eq!(ours.len(), 1, "one start-up line: {ours:#?}");
    assert!(
        ours[0].contains("telemetry is off until an operator consents")
            && ours[0].contains("policy=opt-in")
            && ours[0].contains("ELECTRIC_TELEMETRY=enabled"),
        "{}",
        ours[0]
    );
    // Nothing written to the storage dir, nothing sent to the endpoint.
    assert_eq!(std::fs::read_dir(storage.path()).unwrap().count(), 0);
    receiver.set_nonblocking(true).unwrap();
    assert!(
        receiver.accept().is_err(),
        "no connection reached the endpoint"
    );

    if !traced {
        return;
    }
    let Ok(text) = std::fs::read_to_string(&trace) else {
        eprintln!("note: the child did not run under strace (no ptrace here?)");
        return;
    };
    let _ = std::fs::remove_file(&trace);
    let lines: Vec<&str> = text.lines().collect();
    let at = |mark: &str| lines.iter().position(|l| l.contains(mark));
    let (Some(begin), Some(end)) = (at("et-mark-begin"), at("et-mark-end")) else {
        panic!("both marks traced: {text}");
    };
    let between = &lines[begin + 1..end];
    for call in [
        "socket(", "connect(", "clone(", "clone3(", "fork(", "vfork(",
    ] {
        let made: Vec<&&str> = between.iter().filter(|l| l.contains(call)).collect();
        assert!(
            made.is_empty(),
            "no {call} between start and shutdown: {made:#?}"
        );
    }
    let storage_dir = storage.path().to_string_lossy().into_owned();
    let touched: Vec<&&str> = between
        .iter()
        .filter(|l| l.contains(&storage_dir))
        .collect();
    // The one file it may look at: the consent record, which is not there.
    assert_eq!(touched.len(), 1, "{touched:#?}");
    assert!(
        touched[0].contains("telemetry/consent.json") && touched[0].contains("ENOENT"),
        "{}",
        touched[0]
    );
    let created: Vec<&&str> = between
        .iter()
        .filter(|l| l.contains("O_CREAT") || l.contains("mkdir") || l.contains("rename"))
        .collect();
    assert!(
        created.is_empty(),
        "no file or folder created: {created:#?}"
    );
}
