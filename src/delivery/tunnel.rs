//! The TCP connector awc uses when telemetry goes through a proxy: it dials the proxy and
//! opens an HTTP CONNECT tunnel to the endpoint.
//!
//! Contract:
//! - Both https and http endpoints go through a CONNECT tunnel. For https, TLS then runs end
//!   to end with the endpoint inside the tunnel, its certificate and name checked exactly as
//!   without a proxy (awc's TLS layer sits on top of this connector); the proxy sees only the
//!   endpoint's host and port. For http a tunnel was chosen over an absolute-form request so
//!   that there is one code path, awc's request writing stays untouched, and the proxy's
//!   credentials go in the one CONNECT request; the cost is that a proxy which allows CONNECT
//!   to port 443 only (squid's default) refuses an http endpoint on another port (a 403, a
//!   transient failure like any other).
//! - The proxy's credentials, if any, are sent as `Proxy-Authorization: Basic` in the CONNECT
//!   request and nowhere else; errors name the proxy by `host:port` only.
//! - A proxy that cannot be reached, or answers the CONNECT with anything but 2xx (407, 403,
//!   5xx), is a connect error: awc reports it as one, the sender counts it a failed attempt
//!   (the report stays queued), and the shutdown flush ends at once on it. The whole of it,
//!   dialing the proxy included, is bounded by awc's connect timeout. A configured proxy is
//!   never bypassed.

use std::io;
use std::rc::Rc;

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection};
use awc::http::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::proxy::Proxy;

/// The most bytes of a proxy's answer to CONNECT that are read.
const HEAD_LIMIT: usize = 8 * 1024;
/// How much of the proxy's status line an error shows.
const REASON_SHOWN: usize = 100;

/// Dials the proxy and opens a CONNECT tunnel to the requested host and port.
#[derive(Clone)]
pub(crate) struct TunnelConnector {
    proxy: Rc<Proxy>,
}

impl TunnelConnector {
    pub(crate) fn new(proxy: Proxy) -> Self {
        Self {
            proxy: Rc::new(proxy),
        }
    }
}

impl Service<ConnectInfo<Uri>> for TunnelConnector {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, ConnectError>>>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let proxy = Rc::clone(&self.proxy);
        Box::pin(async move {
            let target = authority(req.hostname(), req.port());
            let stream = tunnel(&proxy, &target).await.map_err(ConnectError::Io)?;
            Ok(Connection::new(req.request().clone(), stream))
        })
    }
}

/// `host:port` for a CONNECT request, an IPv6 address bracketed.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Opens the tunnel; an error explains what failed and names the proxy by address only.
async fn tunnel(proxy: &Proxy, target: &str) -> io::Result<TcpStream> {
    let address = proxy.address();
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the proxy {address} could not be reached: {e}"),
            )
        })?;
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(authorization) = &proxy.authorization {
        request.push_str("Proxy-Authorization: ");
        request.push_str(authorization);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let lost = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("the proxy {address} closed the tunnel to {target}: {e}"),
        )
    };
    stream.write_all(request.as_bytes()).await.map_err(lost)?;
    // Byte by byte up to the end of the head: whatever follows it belongs to the endpoint.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= HEAD_LIMIT {
            return Err(io::Error::other(format!(
                "the proxy {address} answered CONNECT with a head over {HEAD_LIMIT} bytes"
            )));
        }
        let byte = stream.read_u8().await.map_err(lost)?;
        head.push(byte);
    }
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line: String = String::from_utf8_lossy(status_line)
        .chars()
        .filter(|c| !c.is_control())
        .take(REASON_SHOWN)
        .collect();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(stream),
        Some(_) => Err(io::Error::other(format!(
            "the proxy {address} refused the tunnel to {target}: {status_line}"
        ))),
        None => Err(io::Error::other(format!(
            "the proxy {address} gave no HTTP answer to CONNECT: {status_line:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_authorities_bracket_ipv6() {
        assert_eq!(authority("example.com", 443), "example.com:443");
        assert_eq!(authority("::1", 8443), "[::1]:8443");
        assert_eq!(authority("[::1]", 8443), "[::1]:8443");
    }
}

/// The connector while the proxy settings are unusable (see `proxy`): every connect fails at
/// once with `why`, so reports stay queued and nothing ever goes direct.
#[derive(Clone)]
pub(crate) struct UnusableProxy {
    why: Rc<str>,
}

impl UnusableProxy {
    pub(crate) fn new(why: &str) -> Self {
        Self { why: why.into() }
    }
}

impl Service<ConnectInfo<Uri>> for UnusableProxy {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = std::future::Ready<Result<Self::Response, ConnectError>>;

    actix_service::always_ready!();

    fn call(&self, _: ConnectInfo<Uri>) -> Self::Future {
        std::future::ready(Err(ConnectError::Io(io::Error::other(
            self.why.to_string(),
        ))))
    }
}
