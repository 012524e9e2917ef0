//! Settings that used to do harm instead of failing: a URL whose port awc dropped, a CA file
//! that was a device or a FIFO, a URL whose credentials were echoed or silently dropped, paths
//! whose non-UTF-8 bytes were replaced, an audit path that was a symlink or a FIFO. Each must
//! now be refused at start with an error that names the variable, says what is accepted and
//! shows no secret, or be used exactly as given. The same read from a real process
//! environment, and an audit path that is our own stdout, need a process of their own:
//! `tests/environment_and_stdout.rs`.
//!
//! Unix only: FIFOs, symlinks, non-UTF-8 file names and `mkfifo` are what it is about.
#![cfg(unix)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common;
use crate::common::non_utf8;
use crate::common::sender::{audited_sender, numbered_report, start_sender};
use crate::common::{eventually, Receiver};
use electric_telemetry::internals::*;
use electric_telemetry::{ConfigError, TelemetryConfig};

fn from(vars: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TelemetryConfig::builder()
        .with_env_from(|name| vars.get(name).cloned())?
        .build()
}

/// Runs `f` on a thread of its own and waits for it at most `within`: a call that hangs (a
/// blocking open of a FIFO) fails the test instead of hanging it.
fn within<T: Send + 'static>(within: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(within)
        .expect("the call returned instead of hanging")
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

// The endpoint URL: its port --------------------------------------------------------------

#[test]
fn a_url_with_a_port_that_is_not_1_to_65535_is_refused_naming_the_variable() {
    for url in [
        "http://127.0.0.1:99999/x",
        "http://127.0.0.1:-1/x",
        "http://127.0.0.1:notaport/x",
        "http://127.0.0.1:/x",
        "http://127.0.0.1:0/x",
        "https://telemetry.example.com:65536",
        "http://[::1]:70000/x",
    ] {
        let err = from(&[(ENV_URL, url)]).expect_err(url);
        assert_eq!(err.setting, "ELECTRIC_TELEMETRY_URL", "{url}");
        let text = err.to_string();
        assert!(text.starts_with("ELECTRIC_TELEMETRY_URL="), "{text}");
        assert!(text.contains("port"), "says the port is wrong: {text}");
        assert!(
            text.contains("from 1 to 65535"),
            "says what is accepted: {text}"
        );
        // Set in code, the same check applies.
        let err = TelemetryConfig::builder().url(url).build().expect_err(url);
        assert_eq!(err.setting, "ELECTRIC_TELEMETRY_URL", "{url}");
    }
    for url in [
        "http://127.0.0.1:1/x",
        "http://127.0.0.1:65535/x",
        "https://telemetry.example.com:8443/in",
        "http://[::1]:8080/checkpoint",
    ] {
        assert_eq!(from(&[(ENV_URL, url)]).unwrap().url(), url);
    }
}

// The endpoint URL: never echoed with its secrets --------------------------------------------

#[test]
fn an_invalid_url_is_never_echoed_with_its_credentials_or_query() {
    for url in [
        "ftp://user:S3CRETPW@host/?token=T0KEN",
        "ftp://user:S3CRETPW@host:99999/?token=T0KEN",
        "https://user:S3CRETPW@host:notaport/x?token=T0KEN",
        "http://user:S3C/RETPW@host/?token=T0KEN",
        "http://user:S3C?RETPW@host/x",
        "user:S3CRETPW@host?token=T0KEN",
        "https://host:99999/in?token=T0KEN",
        "https://exa mple.com/?token=T0KEN",
    ] {
        let err = from(&[(ENV_URL, url)]).expect_err(url);
        assert_eq!(err.setting, "ELECTRIC_TELEMETRY_URL");
        for shown in [err.to_string(), format!("{err:?}")] {
            for secret in ["S3C", "RETPW", "T0KEN"] {
                assert!(!shown.contains(secret), "{secret} shown for {url}: {shown}");
            }
        }
    }
    let err = from(&[(ENV_URL, "ftp://user:S3CRETPW@host/?token=T0KEN")]).unwrap_err();
    assert_eq!(
        err.value, "ftp://***@host/?***",
        "redacted like the logs do"
    );
}

// The endpoint URL: credentials are refused, not dropped ------------------------------------

#[actix_rt::test]
async fn a_url_with_a_user_or_password_is_refused_and_nothing_reaches_the_endpoint() {
    let receiver = Receiver::start();
    let with_credentials = receiver.url.replace("http://", "http://user:S3CRETPW@");
    let tls = receiver.url.replace("http://", "https://user:S3CRETPW@");
    let user_only = receiver.url.replace("http://", "http://user@");
    for url in [with_credentials, tls, user_only] {
        let err = from(&[(ENV_URL, &url)]).expect_err(&url);
        assert_eq!(err.setting, "ELECTRIC_TELEMETRY_URL");
        let text = err.to_string();
        assert!(text.contains("user name or password"), "{text}");
        assert!(!text.contains("S3CRETPW") && !format!("{err:?}").contains("S3CRETPW"));
        // Nothing to start with: the host cannot run telemetry on credentials it would drop.
        assert!(TelemetryConfig::builder().url(&url).build().is_err());
    }
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty(), "nothing was sent");
    receiver.stop().await;
}

/// A raw HTTP/1.1 server on 127.0.0.1 that answers 200 and keeps each request line as sent.
fn request_line_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        // Bounded: a few connections, and it ends with the test process.
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            if let Some((line, _)) = common::read_request_line_and_body(&stream) {
                kept.lock().unwrap().push(line);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, lines)
}

#[actix_rt::test]
async fn a_url_without_a_path_is_sent_to_slash_with_its_query_and_shown_as_used() {
    let (port, lines) = request_line_server();
    let storage = tempfile::tempdir().unwrap();
    let given = format!("http://127.0.0.1:{port}?token=abc");
    let config = TelemetryConfig::builder()
        .storage_dir(storage.path())
        .first_report_in(Duration::ZERO)
        .spread_reports(false)
        .shutdown_timeout(Duration::from_secs(2))
        .with_env_from(|name| (name == ENV_URL).then(|| given.clone()))
        .unwrap()
        .build()
        .unwrap();
    // What is used, and what logs and `url()` show, is the URL with its path.
    assert_eq!(config.url(), format!("http://127.0.0.1:{port}/?token=abc"));
    let telemetry = electric_telemetry::Telemetry::start(config).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !lines
            .lock()
            .unwrap()
            .is_empty())
        .await,
        "the first report arrived"
    );
    telemetry.shutdown().await;
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines.iter().all(|l| l == "POST /?token=abc HTTP/1.1"),
        "every request went to / with its query: {lines:?}"
    );
    // A fragment is never sent, and a URL with no path and no query is left as given.
    let c = from(&[(ENV_URL, "https://telemetry.example.com#part")]).unwrap();
    assert_eq!(c.url(), "https://telemetry.example.com/#part");
    let c = from(&[(ENV_URL, "https://telemetry.example.com")]).unwrap();
    assert_eq!(c.url(), "https://telemetry.example.com");
}

#[test]
fn hosts_that_would_fail_every_attempt_are_refused_at_start_naming_the_variable() {
    for (url, says) in [
        ("http://[127.0.0.1]:9/x", "not an IPv6 address"),
        ("http://[example.com]/x", "not an IPv6 address"),
        ("http://127.0.0.1.:9/x", "ends with '.'"),
        (
            "https://telemetry.example.com./in?token=T0KEN",
            "ends with '.'",
        ),
    ] {
        let err = from(&[(ENV_URL, url)]).expect_err(url);
        assert_eq!(err.setting, "ELECTRIC_TELEMETRY_URL", "{url}");
        let text = err.to_string();
        assert!(text.contains(says), "{url}: {text}");
        assert!(!text.contains("T0KEN"), "{text}");
        let err = TelemetryConfig::builder().url(url).build().expect_err(url);
        assert_eq!(
            err.setting, "ELECTRIC_TELEMETRY_URL",
            "set in code too: {url}"
        );
    }
    // Real IPv6 literals are still fine.
    for url in ["http://[::1]:8080/x", "https://[2001:db8::1]/in"] {
        assert_eq!(from(&[(ENV_URL, url)]).unwrap().url(), url);
    }
}

// The CA file: only a regular PEM file, bounded, never blocking ------------------------------

#[test]
fn a_ca_file_that_is_a_device_is_refused_without_reading_it() {
    let err = within(Duration::from_secs(20), || {
        from(&[(ENV_CA_FILE, "/dev/zero")])
    })
    .expect_err("/dev/zero is no CA file");
    assert_eq!(err.setting, "ELECTRIC_TELEMETRY_CA_FILE");
    let text = err.to_string();
    assert!(text.contains("not a regular file"), "{text}");
    assert!(text.contains("regular PEM file of at most 4 MiB"), "{text}");
}

#[test]
fn a_ca_file_that_is_a_fifo_fails_start_up_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.pem");
    mkfifo(&fifo);
    let path = fifo.to_str().unwrap().to_owned();
    let err = within(Duration::from_secs(20), move || {
        from(&[(ENV_CA_FILE, &path)])
    })
    .expect_err("a FIFO is no CA file");
    assert_eq!(err.setting, "ELECTRIC_TELEMETRY_CA_FILE");
    assert!(err.to_string().contains("FIFO"), "{err}");
}

#[test]
fn an_oversized_ca_file_is_refused_and_a_normal_one_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let good = dir.path().join("good.pem");
    std::fs::write(&good, &pem).unwrap();
    let c = from(&[(ENV_CA_FILE, good.to_str().unwrap())]).unwrap();
    assert_eq!(c.ca_file(), Some(good.as_path()));
    // Valid PEM, repeated past 4 MiB: refused for its size, not parsed.
    let big = dir.path().join("big.pem");
    let copies = (4 << 20) / pem.len() + 2;
    std::fs::write(&big, pem.repeat(copies)).unwrap();
    let err = from(&[(ENV_CA_FILE, big.to_str().unwrap())]).unwrap_err();
    assert_eq!(err.setting, "ELECTRIC_TELEMETRY_CA_FILE");
    assert!(err.to_string().contains("larger than"), "{err}");
}

// Paths that are not UTF-8: used byte for byte ----------------------------------------------

#[actix_rt::test]
async fn a_non_utf8_storage_dir_holds_the_outbox_under_that_exact_name() {
    use electric_telemetry::internals::{outbox_dir, Deliver};
    let dir = tempfile::tempdir().unwrap();
    let storage = non_utf8(dir.path(), b"caf\xe9");
    let dead = format!("http://127.0.0.1:{}/checkpoint", common::free_port());
    let config = TelemetryConfig::builder()
        .url(dead)
        .storage_dir(&storage)
        .retry_initial_backoff(Duration::from_secs(60));
    let (sender, arbiter) = start_sender(config);
    sender.send(Deliver(common::seed_report())).await.unwrap();
    let outbox = outbox_dir(&storage);
    assert!(
        // Only the report's file: the outbox also keeps its lock, marker and drop count.
        eventually(Duration::from_secs(10), || std::fs::read_dir(&outbox)
            .is_ok_and(|d| d
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
                == 1))
        .await,
        "the report is kept under the exact, non-UTF-8 name"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [OsStr::from_bytes(b"caf\xe9")], "and nowhere else");
    arbiter.stop();
}

// The audit path: a symlink or a FIFO is written through, never renamed or waited on ---------

#[actix_rt::test]
async fn an_audit_path_that_is_a_symlink_is_appended_to_and_never_renamed() {
    // As `/dev/stdout` is a symlink to the process's stdout, here redirected to a file that is
    // already past the rotation bound.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stdout-redirect.log");
    std::fs::write(&target, "x".repeat(5000) + "\n").unwrap();
    let link = dir.path().join("stdout");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let receiver = Receiver::start();
    let (sender, arbiter) = audited_sender(&receiver.url, dir.path(), &link);
    for n in 1..=3 {
        sender
            .send(electric_telemetry::internals::Deliver(numbered_report(n)))
            .await
            .unwrap();
    }
    let lines = || {
        std::fs::read_to_string(&target)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        eventually(Duration::from_secs(10), || lines() == 4).await,
        "each accepted report went through the link into its target: {} lines",
        lines()
    );
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the link is still a link");
    assert_eq!(std::fs::read_link(&link).unwrap(), target);
    assert!(!dir.path().join("stdout.1").exists(), "nothing was rotated");
    arbiter.stop();
    receiver.stop().await;
}

#[actix_rt::test]
async fn an_audit_path_that_is_a_fifo_never_blocks_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    mkfifo(&fifo);
    let receiver = Receiver::start();
    let (sender, arbiter) = audited_sender(&receiver.url, dir.path(), &fifo);
    // Nobody reads the FIFO: a blocking open would stop the sender's thread at the first
    // accepted report, and the others would never go out.
    for n in 1..=3 {
        sender
            .send(electric_telemetry::internals::Deliver(numbered_report(n)))
            .await
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(10), || common::accepted(
            &receiver.received()
        )
        .len()
            == 3)
        .await,
        "every report was delivered"
    );
    // A reader that never reads: the pipe fills, and the sender still goes on.
    let reader = within(Duration::from_secs(10), {
        let fifo = fifo.clone();
        move || {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo)
                .unwrap()
        }
    });
    // About 1.5 kB a line: 60 lines overfill a 64 KiB pipe. One at a time, within the
    // outbox's bound of 7 pending reports.
    for n in 4..=63 {
        sender
            .send(electric_telemetry::internals::Deliver(numbered_report(n)))
            .await
            .unwrap();
        common::outbox_status_when(&sender, |s| s.pending == 0).await;
    }
    assert!(
        eventually(Duration::from_secs(20), || common::accepted(
            &receiver.received()
        )
        .len()
            == 63)
        .await,
        "a full pipe does not stop delivery: {} accepted",
        common::accepted(&receiver.received()).len()
    );
    let status = common::outbox_status_when(&sender, |s| s.pending == 0).await;
    assert_eq!(status.pending, 0, "the sender answers and has nothing left");
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "still the FIFO: never renamed or replaced");
    drop(reader);
    arbiter.stop();
    receiver.stop().await;
}
