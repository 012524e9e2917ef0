//! Delivery through an HTTP proxy: a real CONNECT proxy on loopback (tests/common/proxy.rs),
//! real receivers, real TCP.
//!
//! - https goes through a CONNECT tunnel with TLS end to end: a certificate the client trusts
//!   for the right name is accepted, one for another name is refused, proxy or not;
//! - http goes through the proxy too (a tunnel), chosen by `http_proxy`;
//! - `NO_PROXY` sends matching endpoints direct, and `ELECTRIC_TELEMETRY_PROXY=none` sends
//!   everything direct;
//! - proxy credentials are sent as `Proxy-Authorization: Basic`, to the proxy only;
//! - a dead proxy, or one answering 407, is a failed attempt: the report stays queued, the
//!   endpoint is never tried direct, and the shutdown flush ends at once;
//! - no captured log line, at any level, shows the credentials.
//!
//! A binary of its own: it installs a global log subscriber.

mod common;
#[path = "common/proxy.rs"]
mod test_proxy;

use std::sync::OnceLock;
use std::time::Duration;

use actix::prelude::*;
use common::sender::{sender_config, start_sender};
use common::tls::HttpsReceiver;
use common::{
    env_of, eventually, free_port, outbox_status_when, seed_report, LogCapture, Receiver,
};
use electric_telemetry::internals::*;
use electric_telemetry::*;
use test_proxy::ConnectProxy;

const WAIT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "s3cr3t-pw";

/// Every line logged by this binary, our crate at trace and the others at debug.
fn logs() -> &'static LogCapture {
    static LOGS: OnceLock<LogCapture> = OnceLock::new();
    LOGS.get_or_init(|| LogCapture::install("debug,electric_telemetry=trace"))
}

fn no_credentials_logged() {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("telemetry:{PASSWORD}"));
    let text = logs().text();
    assert!(!text.contains(PASSWORD), "the password was logged:\n{text}");
    assert!(
        !text.contains(&token),
        "the credentials were logged:\n{text}"
    );
}

/// A sender's configuration for `url`, with time for a TLS handshake through the tunnel on a
/// busy machine.
fn config(url: &str, storage: &std::path::Path) -> TelemetryConfigBuilder {
    sender_config(url, storage)
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
}

/// A sender on an Arbiter of its own (which goes on when the handle is dropped).
fn start(config: TelemetryConfigBuilder) -> Addr<Sender> {
    start_sender(config).0
}

#[actix_rt::test]
async fn https_goes_through_a_tunnel_with_tls_end_to_end() {
    logs();
    let proxy = ConnectProxy::start();
    let right = HttpsReceiver::start("127.0.0.1");
    let wrong = HttpsReceiver::start("telemetry.test");
    let storage = tempfile::tempdir().unwrap();
    // Both certificates are trusted; only one is for the name the client dials.
    let ca = storage.path().join("ca.pem");
    std::fs::write(&ca, format!("{}{}", right.cert_pem, wrong.cert_pem)).unwrap();

    let sender = start(
        config(&right.url, &storage.path().join("a"))
            .ca_file(&ca)
            .proxy(&proxy.url),
    );
    let report = seed_report();
    sender.send(Deliver(report.clone())).await.unwrap();
    assert!(eventually(WAIT, || right.received().len() == 1).await);
    assert_eq!(right.reports()[0], report);
    let port = right
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert_eq!(proxy.seen()[0].target, format!("127.0.0.1:{port}"));
    assert_eq!(proxy.seen()[0].authorization, None);
    assert_eq!(
        outbox_status_when(&sender, |s| s.pending == 0)
            .await
            .pending,
        0
    );

    // Through the same tunnel, a certificate for another name is refused as it would be direct.
    let refusing = start(
        config(&wrong.url, &storage.path().join("b"))
            .ca_file(&ca)
            .proxy(&proxy.url),
    );
    refusing.send(Deliver(seed_report())).await.unwrap();
    let status = outbox_status_when(&refusing, |s| s.failed_attempts >= 2).await;
    assert!(
        status.failed_attempts >= 2 && status.pending == 1,
        "{status:?}"
    );
    assert_eq!(
        wrong.received().len(),
        0,
        "nothing went to a certificate for another name"
    );
    assert!(proxy.seen().len() >= 3, "the tunnel was opened each time");
    right.receiver.stop().await;
    wrong.receiver.stop().await;
}

#[actix_rt::test]
async fn http_goes_through_the_proxy_named_by_http_proxy() {
    logs();
    let proxy = ConnectProxy::start();
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let sender = start(
        config(&receiver.url, storage.path())
            .with_env_from(env_of(&[
                ("http_proxy", &proxy.url),
                ("HTTPS_PROXY", "http://127.0.0.1:9"),
            ]))
            .unwrap(),
    );
    sender.send(Deliver(seed_report())).await.unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 1).await);
    let target = receiver
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    assert_eq!(proxy.seen().len(), 1);
    assert_eq!(proxy.seen()[0].target, target);
    receiver.stop().await;
}

#[actix_rt::test]
async fn no_proxy_and_none_send_direct_and_nothing_else_does() {
    logs();
    let proxy = ConnectProxy::start();
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let deliver_with = |vars: Vec<(&'static str, String)>, dir: &str| {
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        start(
            config(&receiver.url, &storage.path().join(dir))
                .with_env_from(env_of(&pairs))
                .unwrap(),
        )
    };
    let via = || ("HTTP_PROXY", proxy.url.clone());
    for (n, no_proxy) in ["127.0.0.1", "localhost,127.0.0.0/8", "*"]
        .iter()
        .enumerate()
    {
        let sender = deliver_with(vec![via(), ("NO_PROXY", no_proxy.to_string())], "a");
        sender.send(Deliver(seed_report())).await.unwrap();
        assert!(eventually(WAIT, || receiver.received().len() == n + 1).await);
    }
    let none = deliver_with(
        vec![via(), ("ELECTRIC_TELEMETRY_PROXY", "none".to_owned())],
        "b",
    );
    none.send(Deliver(seed_report())).await.unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 4).await);
    assert!(proxy.seen().is_empty(), "all of these went direct");

    // An exemption for other hosts, or another port, leaves the proxy in use.
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let other_port = format!("127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1);
    for (n, no_proxy) in [".example.com", other_port.as_str()].iter().enumerate() {
        let sender = deliver_with(vec![via(), ("no_proxy", no_proxy.to_string())], "c");
        sender.send(Deliver(seed_report())).await.unwrap();
        assert!(eventually(WAIT, || receiver.received().len() == 5 + n).await);
        assert_eq!(proxy.seen().len(), n + 1, "{no_proxy} does not exempt it");
    }
    receiver.stop().await;
}

#[actix_rt::test]
async fn proxy_credentials_go_to_the_proxy_only_and_never_into_a_log() {
    logs();
    let proxy = ConnectProxy::start();
    proxy.require_basic("telemetry", PASSWORD);
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let with_credentials = format!("http://telemetry:{PASSWORD}@127.0.0.1:{}", proxy.port);
    let sender = start(
        config(&receiver.url, storage.path())
            .with_env_from(env_of(&[("ALL_PROXY", &with_credentials)]))
            .unwrap(),
    );
    sender.send(Deliver(seed_report())).await.unwrap();
    assert!(eventually(WAIT, || receiver.received().len() == 1).await);
    let seen = proxy.seen();
    assert!(seen[0]
        .authorization
        .as_deref()
        .unwrap()
        .starts_with("Basic "));
    let to_endpoint = &receiver.received()[0].headers;
    assert!(
        to_endpoint
            .iter()
            .all(|(name, _)| name != "proxy-authorization"),
        "the endpoint never sees the proxy's credentials: {to_endpoint:?}"
    );
    no_credentials_logged();
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_407_keeps_the_report_and_is_explained_once_without_the_credentials() {
    logs();
    let proxy = ConnectProxy::start();
    proxy.require_basic("telemetry", "another-password");
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let sender = start(config(&receiver.url, storage.path()).proxy(format!(
        "http://telemetry:{PASSWORD}@127.0.0.1:{}",
        proxy.port
    )));
    sender.send(Deliver(seed_report())).await.unwrap();
    let status = outbox_status_when(&sender, |s| s.failed_attempts >= 4).await;
    assert!(
        status.failed_attempts >= 4 && status.pending == 1,
        "{status:?}"
    );
    assert!(receiver.received().is_empty(), "never bypassed");
    let address = format!("127.0.0.1:{}", proxy.port);
    let warnings: Vec<String> = logs()
        .lines(" WARN ")
        .into_iter()
        .filter(|l| l.contains(&address))
        .collect();
    assert_eq!(warnings.len(), 1, "explained once: {warnings:?}");
    assert!(warnings[0].contains("407"), "{}", warnings[0]);
    no_credentials_logged();
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_dead_proxy_keeps_the_reports_is_never_bypassed_and_ends_the_flush_at_once() {
    logs();
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let dead = format!("http://telemetry:{PASSWORD}@127.0.0.1:{}", free_port());
    let config = config(&receiver.url, storage.path())
        .first_report_in(Duration::ZERO)
        .spread_reports(false)
        .shutdown_timeout(Duration::from_secs(10))
        .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_PROXY", &dead)]))
        .unwrap()
        .build()
        .unwrap();
    let telemetry = Telemetry::start(config).unwrap();
    let mut failed = 0;
    for _ in 0..500 {
        failed = telemetry.outbox_status().await.unwrap().failed_attempts;
        if failed >= 3 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed >= 3, "the proxy was tried and failed");
    assert!(receiver.received().is_empty(), "never bypassed");
    let outcome = telemetry.shutdown().await;
    assert!(
        matches!(
            outcome,
            ShutdownOutcome::NotDelivered(DeliveryError::Transport(_))
        ),
        "a dead proxy ends the flush at once: {outcome:?}"
    );
    // Report files only: the outbox also keeps its lock and its drop count.
    let kept = std::fs::read_dir(outbox_dir(storage.path()))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(kept, 2, "the first and the final report are kept");
    let port = dead.rsplit(':').next().unwrap();
    let start_line = logs()
        .lines(" INFO ")
        .into_iter()
        .find(|l| l.contains("telemetry is enabled") && l.contains(&format!("127.0.0.1:{port}")))
        .expect("the start-up line names the proxy");
    assert!(
        start_line.contains("ELECTRIC_TELEMETRY_PROXY"),
        "{start_line}"
    );
    no_credentials_logged();
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_proxy_refusing_the_tunnel_is_a_transient_failure() {
    logs();
    let proxy = ConnectProxy::start();
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let sender = start(config(&receiver.url, storage.path()).proxy(&proxy.url));
    proxy.refuse_with(Some(403));
    sender.send(Deliver(seed_report())).await.unwrap();
    let status = outbox_status_when(&sender, |s| s.failed_attempts >= 2).await;
    assert!(
        status.failed_attempts >= 2 && status.pending == 1,
        "{status:?}"
    );
    proxy.refuse_with(Some(503));
    let before = proxy.seen().len();
    let status = outbox_status_when(&sender, |s| s.failed_attempts >= 4).await;
    assert!(
        status.failed_attempts >= 4 && status.pending == 1,
        "{status:?}"
    );
    assert!(proxy.seen().len() > before, "retried through the proxy");
    assert!(receiver.received().is_empty(), "never bypassed");
    // The proxy lets it through again: the kept report is delivered.
    proxy.refuse_with(None);
    assert!(eventually(WAIT, || receiver.received().len() == 1).await);
    assert_eq!(
        outbox_status_when(&sender, |s| s.pending == 0)
            .await
            .pending,
        0
    );
    receiver.stop().await;
}

#[test]
fn a_bad_proxy_setting_of_telemetrys_own_is_an_error_naming_it_without_the_credentials() {
    let error = TelemetryConfig::builder()
        .with_env_from(env_of(&[(
            "ELECTRIC_TELEMETRY_PROXY",
            &format!("socks5://telemetry:{PASSWORD}@proxy:1080"),
        )]))
        .unwrap()
        .build()
        .unwrap_err();
    assert_eq!(error.setting, "ELECTRIC_TELEMETRY_PROXY");
    assert!(!error.to_string().contains(PASSWORD), "{error}");
    let error = TelemetryConfig::builder()
        .proxy("https://proxy:3128")
        .build()
        .unwrap_err();
    assert_eq!(error.setting, "proxy(..)");
    // An opt-out is never refused over a proxy setting.
    let disabled = TelemetryConfig::builder()
        .proxy("socks5://proxy:1080")
        .enabled(false)
        .build();
    assert!(disabled.is_ok());
}

/// A password holding `/`, `?` or `#` (not percent-encoded, as people write them) cuts the
/// proxy URL's authority short, so the value fails to parse: the error must still not show it.
#[test]
fn a_proxy_password_with_a_slash_is_not_shown_in_the_error() {
    for value in [
        "http://telemetry:S3CRET/PW@127.0.0.1:3128",
        "http://telemetry:S3CRET?PW@127.0.0.1:3128",
        "telemetry:S3CRET#PW@127.0.0.1:3128",
    ] {
        let error = TelemetryConfig::builder()
            .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_PROXY", value)]))
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(error.setting, "ELECTRIC_TELEMETRY_PROXY");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("S3CRET"), "{shown}");
    }
}

/// A password holding `/` that happens to leave a valid `host:port` before it
/// (`user:1234/5@proxy`) must not be taken as the proxy `user:1234`: that goes to the wrong
/// host and shows the user name and the start of the password in the start-up line.
#[test]
fn a_proxy_url_with_an_at_after_its_host_is_refused_not_misread() {
    let result = TelemetryConfig::builder()
        .with_env_from(env_of(&[(
            "ELECTRIC_TELEMETRY_PROXY",
            "http://telemetry:1234/S3CRET@127.0.0.1:3128",
        )]))
        .unwrap()
        .build();
    let error = result.expect_err("refused, not read as the proxy telemetry:1234");
    assert_eq!(error.setting, "ELECTRIC_TELEMETRY_PROXY");
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains("S3CRET") && !shown.contains("1234"),
        "{shown}"
    );
    assert!(
        shown.contains("percent-encoded"),
        "says how to fix it: {shown}"
    );
}

/// Text after an IPv6 proxy address that is not `:port` is refused, not silently dropped
/// (which sent telemetry to port 1080).
#[test]
fn text_after_a_bracketed_proxy_address_is_refused() {
    for value in ["http://[::1]3128", "http://[::1]x:3128"] {
        let error = TelemetryConfig::builder()
            .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_PROXY", value)]))
            .unwrap()
            .build()
            .expect_err(value);
        assert_eq!(error.setting, "ELECTRIC_TELEMETRY_PROXY");
    }
    let fine = TelemetryConfig::builder()
        .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_PROXY", "http://[::1]:3128")]))
        .unwrap()
        .build()
        .unwrap();
    assert!(format!("{fine:?}").contains("[::1]:3128"), "{fine:?}");
}

/// `HTTPS_PROXY`, `ALL_PROXY` and the others belong to every program on the host: a value
/// telemetry cannot use (a SOCKS or an https:// proxy) must not stop the host from starting.
/// Telemetry starts, never bypasses that proxy (its reports wait in the outbox), and says once
/// which variable it could not use and what to set instead.
#[actix_rt::test]
async fn a_conventional_proxy_variable_telemetry_cannot_use_never_fails_the_hosts_start() {
    logs();
    // Settings another program on the host uses: never an error for telemetry.
    for (name, value, url) in [
        (
            "HTTPS_PROXY",
            "https://proxy.internal:3128",
            "https://telemetry.example.com/",
        ),
        (
            "https_proxy",
            "socks5://proxy.internal:1080",
            "https://telemetry.example.com/",
        ),
        (
            "HTTP_PROXY",
            "socks4a://proxy.internal",
            "http://127.0.0.1:9/",
        ),
    ] {
        let config = TelemetryConfig::builder()
            .url(url)
            .with_env_from(env_of(&[(name, value)]))
            .unwrap()
            .build()
            .unwrap_or_else(|e| panic!("{name}={value} failed the configuration: {e}"));
        assert!(config.enabled());
    }
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let socks = format!("socks5h://telemetry:{PASSWORD}@127.0.0.1:{}", free_port());
    let config = config(&receiver.url, storage.path())
        .first_report_in(Duration::ZERO)
        .spread_reports(false)
        .shutdown_timeout(Duration::from_secs(10))
        .with_env_from(env_of(&[("ALL_PROXY", &socks)]))
        .unwrap()
        .build()
        .unwrap();
    let warned_before = logs()
        .lines(" WARN ")
        .iter()
        .filter(|l| l.contains("ALL_PROXY") && l.contains("ELECTRIC_TELEMETRY_PROXY"))
        .count();
    let telemetry = Telemetry::start(config).unwrap();
    let mut failed = 0;
    for _ in 0..500 {
        failed = telemetry.outbox_status().await.unwrap().failed_attempts;
        if failed >= 3 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed >= 3, "attempts fail while the proxy cannot be used");
    assert!(
        receiver.received().is_empty(),
        "the proxy is never bypassed"
    );
    let outcome = telemetry.shutdown().await;
    assert!(
        matches!(outcome, ShutdownOutcome::NotDelivered(_)),
        "{outcome:?}"
    );
    let kept = std::fs::read_dir(outbox_dir(storage.path()))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(kept, 2, "the first and the final report wait in the outbox");
    let warned: Vec<String> = logs()
        .lines(" WARN ")
        .into_iter()
        .filter(|l| l.contains("ALL_PROXY") && l.contains("ELECTRIC_TELEMETRY_PROXY"))
        .collect();
    assert_eq!(
        warned.len() - warned_before,
        1,
        "one warning says what to set: {warned:?}"
    );
    let line = warned.last().unwrap();
    assert!(line.contains("NO_PROXY"), "{line}");
    assert!(
        line.contains("socks5h"),
        "says what it could not use: {line}"
    );
    no_credentials_logged();
    receiver.stop().await;
}
