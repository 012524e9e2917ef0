//! Settings read from the real process environment, and an audit path that is our own
//! redirected stdout: the harmful settings of `tests/suite/harmful_settings.rs` that need a
//! process of their own. Non-UTF-8 paths from the environment are used byte for byte, a
//! non-UTF-8 value where text is needed is an error naming the variable, and an audit file that
//! is the process's own stdout is appended to and never rotated.
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
