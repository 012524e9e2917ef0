//! Log-only mode: reports are written to the log at their due time and never sent; and the
//! start-up line says which setting decided. A binary of its own: it installs a global
//! subscriber to read the log.

mod common;

use std::time::Duration;

use common::{env_of, eventually, LogCapture};
use electric_telemetry::internals::*;
use electric_telemetry::*;

#[actix_rt::test]
async fn log_only_mode_logs_each_report_and_opens_no_socket() {
    let captured = LogCapture::install("electric_telemetry=info");

    // A DO_NOT_TRACK opt-out: the start-up line names it.
    let storage = tempfile::tempdir().unwrap();
    let off = TelemetryConfig::builder()
        .storage_dir(storage.path())
        .with_env_from(env_of(&[("DO_NOT_TRACK", "1")]))
        .unwrap()
        .build()
        .unwrap();
    Telemetry::start(off).unwrap();
    assert!(captured.text().contains("telemetry is disabled"));
    assert!(captured.text().contains("decided_by=\"DO_NOT_TRACK=1\""));

    // Log-only, pointed at a listening socket that must never see a connection (so no request
    // either): the kernel completes a connection even if nobody accepts it, and keeps it for
    // `accept` below.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/checkpoint", listener.local_addr().unwrap());
    let config = TelemetryConfig::builder()
        .url(&url)
        .storage_dir(storage.path())
        .first_report_in(Duration::ZERO)
        .interval(Duration::from_secs(1))
        .with_env_from(env_of(&[("ELECTRIC_TELEMETRY", "log")]))
        .unwrap()
        .build()
        .unwrap();
    let telemetry = Telemetry::start(config).unwrap();
    assert!(captured.text().contains("log-only mode"));
    assert!(captured
        .text()
        .contains("decided_by=\"ELECTRIC_TELEMETRY=log\""));
    telemetry.record(ReplicatedFromPg::new(2, 5));
    telemetry.record(ClientConnected::new("c1", "u1"));
    assert!(
        eventually(Duration::from_secs(5), || captured
            .text()
            .contains("telemetry report (log-only mode"))
        .await
    );
    telemetry.record(ReplicatedFromPg::new(1, 1));
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);

    let reports: Vec<Report> = captured
        .text()
        .lines()
        .filter(|l| l.contains("telemetry report (log-only mode"))
        .map(|l| {
            let json = &l[l.find("report=").expect("the report field") + "report=".len()..];
            let json = json.trim_end();
            serde_json::from_str(json).expect("the logged report is the report's JSON")
        })
        .collect();
    assert!(reports.len() >= 2, "a scheduled report and the final one");
    let ops: u64 = reports
        .iter()
        .map(|r| r.data.usage.operations_from_pg)
        .sum();
    assert_eq!(ops, 6, "every count is in the logged reports");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("no socket was opened to the endpoint, and nothing sent: {other:?}"),
    }
    assert!(
        !outbox_dir(storage.path()).exists(),
        "no outbox in log-only mode"
    );
}
