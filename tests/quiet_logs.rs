//! What an operator sees in the logs during an outage and after it: one warning when it
//! starts, debug lines while it lasts, one info line when it ends; never an ERROR.
//!
//! A binary of its own: it installs a global subscriber, because the sender logs from its own
//! thread.

mod common;

use std::time::Duration;

use actix::prelude::*;
use common::{
    accepted, eventually, free_port, outbox_status_when, seed_report, LogCapture, Receiver,
};
use electric_telemetry::internals::*;
use electric_telemetry::*;

#[actix_rt::test]
async fn an_outage_is_one_warning_then_one_info_line_and_never_an_error() {
    // Every crate at warn (awc, actix-http, actix-server included), ours at debug.
    let captured = LogCapture::install("warn,electric_telemetry=debug");

    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let config = TelemetryConfig::builder()
        .url(format!("http://127.0.0.1:{port}/checkpoint"))
        .storage_dir(storage.path())
        .connect_timeout(Duration::from_millis(200))
        .retry_initial_backoff(Duration::from_millis(10))
        .retry_max_backoff(Duration::from_millis(30))
        .build()
        .unwrap();
    let arbiter = Arbiter::new().handle();
    let sender = Sender::start_in_arbiter(&arbiter, move |_| Sender::new(&config));
    for n in 0..2 {
        let mut report = seed_report();
        report.report_id = uuid::Uuid::new_v4();
        report.data.usage.operations_from_pg = n;
        sender.send(Deliver(report)).await.unwrap();
    }
    let failed = outbox_status_when(&sender, |s| s.failed_attempts >= 6)
        .await
        .failed_attempts;
    assert!(failed >= 6, "several failed attempts");
    assert_eq!(
        captured.lines(" WARN ").len(),
        1,
        "one warning for the whole outage"
    );
    assert!(captured.lines(" WARN ")[0].contains("ELECTRIC_TELEMETRY=disabled"));
    assert!(
        captured.lines(" DEBUG ").len() >= 5,
        "later failures at debug level"
    );

    let receiver = Receiver::start_on(port);
    assert!(
        eventually(Duration::from_secs(10), || accepted(&receiver.received())
            .len()
            == 2)
        .await
    );
    assert!(
        eventually(Duration::from_secs(2), || !captured
            .lines(" INFO ")
            .is_empty())
        .await
    );
    let info = captured.lines(" INFO ");
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(
        info[0].contains("delivered=2"),
        "says how many went out: {}",
        info[0]
    );
    assert_eq!(captured.lines(" WARN ").len(), 1);
    let any_error = captured.text().lines().any(|l| l.contains("ERROR"));
    assert!(!any_error, "no ERROR from any crate:\n{}", captured.text());
    receiver.stop().await;
}
