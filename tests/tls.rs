//! TLS: a local https server with a self-signed certificate is refused, unless that
//! certificate is trusted through ELECTRIC_TELEMETRY_CA_FILE.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use common::{eventually, outbox_status_when, seed_report};
use electric_telemetry::internals::*;
use electric_telemetry::*;

/// An https receiver on 127.0.0.1 whose certificate (for that IP) nobody trusts by default.
struct HttpsReceiver {
    url: String,
    cert_pem: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    server: actix_web::dev::ServerHandle,
}

impl HttpsReceiver {
    fn start() -> Self {
        let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert_pem = issued.cert.pem();
        let cert = issued.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(issued.signing_key.serialize_der()).unwrap();
        // An explicit provider: a test binary may link both of rustls's (tests/host-provider/).
        let ring = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(ring)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        let server = HttpServer::new(move || {
            let kept = Arc::clone(&kept);
            App::new().default_service(web::to(move |body: web::Bytes| {
                kept.lock().unwrap().push(body.to_vec());
                async { HttpResponse::Ok().finish() }
            }))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind_rustls_0_23(("127.0.0.1", 0), tls)
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Self {
            url: format!("https://127.0.0.1:{port}/checkpoint"),
            cert_pem,
            bodies,
            server: handle,
        }
    }
}

fn sender(config: TelemetryConfigBuilder) -> Addr<Sender> {
    let config = config
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
        .retry_initial_backoff(Duration::from_millis(20))
        .retry_max_backoff(Duration::from_millis(50))
        .build()
        .unwrap();
    Sender::start_in_arbiter(&Arbiter::new().handle(), move |_| Sender::new(&config))
}

#[actix_rt::test]
async fn an_untrusted_certificate_is_refused_and_a_configured_ca_is_trusted() {
    let server = HttpsReceiver::start();
    let storage = tempfile::tempdir().unwrap();

    // Default trust: the handshake fails, the report stays queued, nothing reaches the server.
    let untrusting = sender(
        TelemetryConfig::builder()
            .url(&server.url)
            .storage_dir(storage.path().join("a")),
    );
    untrusting.send(Deliver(seed_report())).await.unwrap();
    let status = outbox_status_when(&untrusting, |s| s.failed_attempts >= 2).await;
    assert!(
        status.failed_attempts >= 2 && status.pending == 1,
        "{status:?}"
    );
    assert!(
        server.bodies.lock().unwrap().is_empty(),
        "nothing went over an untrusted link"
    );

    // Trusting the certificate through ELECTRIC_TELEMETRY_CA_FILE: delivered.
    let ca = storage.path().join("ca.pem");
    std::fs::write(&ca, &server.cert_pem).unwrap();
    let ca_path = ca.to_str().unwrap().to_owned();
    let trusting = sender(
        TelemetryConfig::builder()
            .url(&server.url)
            .storage_dir(storage.path().join("b"))
            .with_env_from(|k| (k == "ELECTRIC_TELEMETRY_CA_FILE").then(|| ca_path.clone()))
            .unwrap(),
    );
    let report = seed_report();
    trusting.send(Deliver(report.clone())).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !server
            .bodies
            .lock()
            .unwrap()
            .is_empty())
        .await
    );
    let body = server.bodies.lock().unwrap()[0].clone();
    assert_eq!(serde_json::from_slice::<Report>(&body).unwrap(), report);
    let pending = outbox_status_when(&trusting, |s| s.pending == 0)
        .await
        .pending;
    assert_eq!(pending, 0, "the delivered report leaves the outbox");
    server.server.stop(false).await;
}
