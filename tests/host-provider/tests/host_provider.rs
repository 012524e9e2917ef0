//! Telemetry in a host whose other dependencies enable rustls's aws-lc-rs provider.
//!
//! This package's dev-dependency on `rustls` with `aws_lc_rs` (its Cargo.toml) makes this test
//! binary link both of rustls's providers and install neither: exactly the host
//! in which rustls cannot pick a process-wide default and `awc::Connector::new()` with awc's
//! `rustls-0_23-webpki-roots` feature panicked on the sender's thread. Telemetry must not care:
//! it builds its own TLS configuration with an explicit provider.

// The helpers the crate's own integration tests use.
#[path = "../../common/mod.rs"]
mod common;

use std::time::Duration;

use common::{eventually, Receiver};
use electric_telemetry::*;

#[test]
fn this_binary_is_the_hostile_host() {
    // Both providers compiled in and none installed: rustls cannot choose one by itself.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    let _ring = rustls::crypto::ring::default_provider();
    let _aws = rustls::crypto::aws_lc_rs::default_provider();
}

#[actix_rt::test]
async fn reports_are_delivered_and_the_shutdown_is_delivered_with_both_providers_linked() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let config = TelemetryConfig::builder()
        .url(&receiver.url)
        .storage_dir(storage.path())
        .first_report_in(Duration::ZERO)
        .interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let telemetry = Telemetry::start(config).expect("telemetry starts");
    assert!(
        eventually(Duration::from_secs(10), || receiver.received().len() == 1).await,
        "the first report is delivered"
    );
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    assert_eq!(
        receiver.reports().len(),
        2,
        "the first and the final report"
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_client_that_cannot_be_set_up_is_an_error_from_start_naming_the_problem() {
    let storage = tempfile::tempdir().unwrap();
    let ca = storage.path().join("ca.pem");
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(&ca, issued.cert.pem()).unwrap();
    let config = TelemetryConfig::builder()
        .url("https://127.0.0.1:9/checkpoint")
        .storage_dir(storage.path())
        .ca_file(&ca)
        .build()
        .unwrap();
    // Checked when the configuration was built, gone when telemetry starts.
    std::fs::remove_file(&ca).unwrap();
    let error = Telemetry::start(config).expect_err("start refuses");
    let shown = error.to_string();
    assert!(shown.contains("ELECTRIC_TELEMETRY_CA_FILE"), "{shown}");
    assert!(shown.contains("ca.pem"), "{shown}");
}
