//! The sender's HTTP client: its TLS configuration and its connector.
//!
//! Contract:
//! - Telemetry never depends on, and never installs, rustls's process-wide `CryptoProvider`.
//!   Its `ClientConfig` is built here with an explicit provider (`ring`), the webpki roots and
//!   the certificates of `ELECTRIC_TELEMETRY_CA_FILE`, and handed to awc for every
//!   configuration, http endpoints included. awc is used with its plain `rustls-0_23` feature,
//!   whose `Connector::new()` builds no TLS configuration of its own: with the
//!   `rustls-0_23-webpki-roots` feature it asked rustls for the process-wide provider and
//!   panicked in hosts that link both of rustls's providers (reqwest 0.13, database drivers and
//!   cloud SDKs built with rustls's default features).
//! - [`ClientSetup::new`] does everything that can fail (reading the CA file, building the TLS
//!   configuration) and is `Send`, so [`Telemetry::start`](crate::Telemetry::start) runs it
//!   before anything is spawned and returns its error, which names what is wrong.
//! - [`ClientSetup::client`] builds the `!Send` awc client on the sender's own thread and cannot
//!   fail, except by a panic inside awc (a host that turns awc's `rustls-0_23-webpki-roots`
//!   feature back on through feature unification, and has no usable process-wide provider):
//!   that panic is caught and returned as an error, so the sender logs a warning and keeps its
//!   outbox instead of dying silently. (With `panic = "abort"` nothing can catch it; this crate
//!   does not enable that awc feature itself.)
//! - With a proxy (see `proxy`), awc's TCP connector is replaced by the CONNECT tunnel of
//!   `tunnel` (or, while the proxy settings are unusable, by one whose every connect fails); TLS, timeouts and everything above the socket stay awc's. Either way every
//!   connection reads through `response_limit`, so no response can make actix-http log an
//!   `ERROR`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use awc::http::header;

use super::response_limit::{limited_tcp, Limited};
use super::tunnel::{TunnelConnector, UnusableProxy};
use crate::config::proxy::Proxy;
use crate::config::{TelemetryConfig, ENV_CA_FILE};
use crate::files::read_certificates;

/// What the sender's client is built from; checked, and `Send`.
#[derive(Clone)]
pub(crate) struct ClientSetup {
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    request_timeout: Duration,
    proxy: Option<Proxy>,
    /// The proxy settings name a proxy that cannot be used: every connect fails with this.
    unusable: Option<String>,
}

impl ClientSetup {
    /// Reads the CA file and builds the TLS configuration; the error names what is wrong.
    pub(crate) fn new(config: &TelemetryConfig) -> Result<Self, String> {
        Ok(Self {
            tls: Arc::new(tls_config(config.ca_file())?),
            connect_timeout: config.connect_timeout(),
            request_timeout: config.request_timeout(),
            proxy: config.proxy_route().proxy.clone(),
            unusable: config
                .proxy_route()
                .decided_by
                .as_ref()
                .filter(|_| config.proxy_route().unusable.is_some())
                .map(|by| format!("the proxy in {by} cannot be used (see the start-up warning)")),
        })
    }

    /// The awc client. Call it on the thread that will use it (`awc::Client` is `!Send`).
    pub(crate) fn client(&self) -> Result<awc::Client, String> {
        // The same settings on either connector type (awc's, or the proxy tunnel).
        macro_rules! client {
            ($connector:expr) => {
                awc::Client::builder()
                    .connector($connector)
                    .timeout(self.request_timeout)
                    .disable_redirects()
                    .add_default_header((
                        header::USER_AGENT,
                        concat!("electric-telemetry/", env!("CARGO_PKG_VERSION")),
                    ))
                    .finish()
            };
        }
        let build = || {
            let connector = awc::Connector::new()
                .rustls_0_23(Arc::clone(&self.tls))
                .timeout(self.connect_timeout);
            match (&self.proxy, &self.unusable) {
                (_, Some(why)) => client!(connector.connector(Limited(UnusableProxy::new(why)))),
                (Some(proxy), None) => {
                    client!(connector.connector(Limited(TunnelConnector::new(proxy.clone()))))
                }
                (None, None) => client!(connector.connector(limited_tcp())),
            }
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)).map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            format!("the HTTP client could not be built: {message}")
        })
    }
}

/// rustls with the `ring` provider, the webpki roots, and the CA file's certificates.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let extra = read_certificates(path)
            .map_err(|problem| format!("{ENV_CA_FILE}={}: {problem}", path.display()))?;
        let (added, ignored) = roots.add_parsable_certificates(extra);
        if added == 0 {
            return Err(format!(
                "no certificate of the CA file {} could be used ({ignored} ignored)",
                path.display()
            ));
        }
        if ignored > 0 {
            tracing::warn!(
                added,
                ignored,
                "telemetry ignored CA certificates it could not parse"
            );
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("the TLS configuration could not be built: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_an_error_naming_the_variable_and_the_file() {
        // A disabled configuration skips the file check, as if the file went away between
        // building the configuration and starting telemetry.
        let missing = std::env::temp_dir().join("electric-telemetry-no-such-dir/ca.pem");
        let config = TelemetryConfig::builder()
            .ca_file(missing)
            .enabled(false)
            .build()
            .unwrap();
        let error = ClientSetup::new(&config).err().expect("an error");
        assert!(error.contains("ELECTRIC_TELEMETRY_CA_FILE"), "{error}");
        assert!(error.contains("ca.pem"), "{error}");
    }

    #[test]
    fn the_tls_configuration_uses_its_own_provider() {
        let config = TelemetryConfig::builder().build().unwrap();
        let setup = ClientSetup::new(&config).unwrap();
        // Whatever the process-wide default is (none in a host linking both providers). The
        // two providers have the same cipher suites; their key exchanges and their Debug
        // forms (which name the implementing crate's types) tell them apart.
        let shown = |p: &rustls::crypto::CryptoProvider| {
            let groups: Vec<String> = p.kx_groups.iter().map(|g| format!("{g:?}")).collect();
            (groups, format!("{:?}", p.secure_random))
        };
        let ring = shown(&rustls::crypto::ring::default_provider());
        let aws_lc_rs = shown(&rustls::crypto::aws_lc_rs::default_provider());
        assert_ne!(ring, aws_lc_rs, "the check tells the two providers apart");
        assert_eq!(
            shown(setup.tls.crypto_provider()),
            ring,
            "ring's, not aws-lc-rs's"
        );
    }
}
