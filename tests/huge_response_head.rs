//! An endpoint (or a proxy in front of it) that answers with a response head over 128 KiB
//! made actix-http log an ERROR per attempt, against the promise of no ERROR lines. What is
//! read of a response is bounded, so the parser never gets there: the attempt fails with the
//! crate's own words, logged like any outage (one warning, then debug lines).
//!
//! A binary of its own: it installs a global subscriber, because the sender logs from its own
//! thread.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use actix::prelude::*;
use common::{outbox_status_when, seed_report, LogCapture};
use electric_telemetry::internals::*;
use electric_telemetry::*;

/// A raw HTTP/1.1 server on 127.0.0.1 that reads each request and answers `200 OK` with a
/// 200 KiB header. Bounded: it serves a few connections and ends with the test process.
fn start_huge_head_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/checkpoint", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            if common::read_request(&stream).is_none() {
                continue;
            }
            // One header of 200 KiB: a head still incomplete past actix-http's 128 KiB buffer
            // (many small headers would stop at its limit of 96 headers first, quietly).
            let mut head = b"HTTP/1.1 200 OK\r\nX-Filler: ".to_vec();
            head.resize(head.len() + 200 * 1024, b'a');
            head.extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(&head);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    url
}

#[actix_rt::test]
async fn a_huge_response_head_is_a_failed_attempt_with_our_own_warning_and_no_error() {
    let captured = LogCapture::install("warn,electric_telemetry=debug");
    let url = start_huge_head_server();
    let storage = tempfile::tempdir().unwrap();
    let config = TelemetryConfig::builder()
        .url(url)
        .storage_dir(storage.path())
        .request_timeout(Duration::from_secs(5))
        .retry_initial_backoff(Duration::from_millis(10))
        .retry_max_backoff(Duration::from_millis(30))
        .build()
        .unwrap();
    let arbiter = Arbiter::new().handle();
    let sender = Sender::start_in_arbiter(&arbiter, move |_| Sender::new(&config));
    sender.send(Deliver(seed_report())).await.unwrap();
    let status = outbox_status_when(&sender, |s| s.failed_attempts >= 4).await;
    assert!(status.failed_attempts >= 4, "several attempts: {status:?}");
    assert_eq!(status.pending, 1, "not delivered, kept for a retry");
    let text = captured.text();
    assert!(
        !text.lines().any(|l| l.contains("ERROR")),
        "no ERROR from any crate:\n{text}"
    );
    let warnings = captured.lines(" WARN ");
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the whole outage: {warnings:?}"
    );
    assert!(
        warnings[0].contains("response larger than"),
        "the warning says what went wrong: {}",
        warnings[0]
    );
    arbiter.stop();
}
