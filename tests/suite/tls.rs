//! TLS: a local https server with a self-signed certificate is refused, unless that
//! certificate is trusted through ELECTRIC_TELEMETRY_CA_FILE.

use std::time::Duration;

use crate::common::sender::{sender_config, start_sender};
use crate::common::tls::HttpsReceiver;
use crate::common::{eventually, outbox_status_when, seed_report};
use electric_telemetry::internals::*;
use electric_telemetry::*;

/// A sender for `url` with time for a TLS handshake on a busy machine.
fn sender(url: &str, storage: &std::path::Path) -> TelemetryConfigBuilder {
    sender_config(url, storage)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
}

#[actix_rt::test]
async fn an_untrusted_certificate_is_refused_and_a_configured_ca_is_trusted() {
    // A certificate for the IP the client dials, that nobody trusts by default.
    let server = HttpsReceiver::start("127.0.0.1");
    let storage = tempfile::tempdir().unwrap();

    // Default trust: the handshake fails, the report stays queued, nothing reaches the server.
    let (untrusting, _) = start_sender(sender(&server.url, &storage.path().join("a")));
    untrusting.send(Deliver(seed_report())).await.unwrap();
    let status = outbox_status_when(&untrusting, |s| s.failed_attempts >= 2).await;
    assert!(
        status.failed_attempts >= 2 && status.pending == 1,
        "{status:?}"
    );
    assert!(
        server.received().is_empty(),
        "nothing went over an untrusted link"
    );

    // Trusting the certificate through ELECTRIC_TELEMETRY_CA_FILE: delivered.
    let ca = storage.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();
    let ca_path = ca.to_str().unwrap().to_owned();
    let (trusting, _) = start_sender(
        sender(&server.url, &storage.path().join("b"))
            .with_env_from(|k| (k == "ELECTRIC_TELEMETRY_CA_FILE").then(|| ca_path.clone()))
            .unwrap(),
    );
    let report = seed_report();
    trusting.send(Deliver(report.clone())).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || !server.received().is_empty()).await);
    assert_eq!(server.reports()[0], report);
    let pending = outbox_status_when(&trusting, |s| s.pending == 0)
        .await
        .pending;
    assert_eq!(pending, 0, "the delivered report leaves the outbox");
    server.receiver.stop().await;
}
