//! An https receiver on 127.0.0.1: the recording receiver (`receiver.rs`) behind TLS, with a
//! fresh self-signed certificate that nobody trusts until a test hands its PEM to the client.

use std::sync::Arc;

use actix_web::HttpServer;

use super::Receiver;

/// A self-signed certificate for `name` (a host name or an IP address): its PEM, for a
/// client's CA file, and a rustls server configuration presenting it.
pub fn self_signed(name: &str) -> (String, rustls::ServerConfig) {
    let issued = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let cert = issued.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(issued.signing_key.serialize_der()).unwrap();
    // An explicit provider: a test binary may link both of rustls's (tests/host-provider/).
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(ring)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    (issued.cert.pem(), config)
}

/// A [`Receiver`] on `https://127.0.0.1:<port>/checkpoint` whose certificate is for `name`.
pub struct HttpsReceiver {
    pub receiver: Receiver,
    /// The certificate, PEM: trust it through `ELECTRIC_TELEMETRY_CA_FILE`.
    pub cert_pem: String,
}

impl HttpsReceiver {
    pub fn start(name: &str) -> Self {
        let (cert_pem, tls) = self_signed(name);
        let state = Receiver::new_state();
        let app_state = Arc::clone(&state);
        let server = HttpServer::new(move || Receiver::app(Arc::clone(&app_state)))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind_rustls_0_23(("127.0.0.1", 0), tls)
            .expect("bind a loopback port");
        let port = server.addrs()[0].port();
        let url = format!("https://127.0.0.1:{port}/checkpoint");
        Self {
            receiver: Receiver::serve(url, state, server.run()),
            cert_pem,
        }
    }
}

impl std::ops::Deref for HttpsReceiver {
    type Target = Receiver;
    fn deref(&self) -> &Receiver {
        &self.receiver
    }
}
