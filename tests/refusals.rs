//! A refusal is curable: a receiver that answers 404 (a wrong path) or 422 for a while loses
//! no report. The refused report is kept in the outbox and tried again at most once per
//! report interval, without holding up the reports behind it; the outage is one WARN naming
//! the status and the receiver's reason, and one line when it ends. Also: what the receiver
//! says about the report versions it accepts.
//!
//! A binary of its own: it installs a global log subscriber (the sender logs from its own
//! thread), shared by its tests, which tell their lines apart by the endpoint's port.

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use actix::prelude::*;
use common::sender::{numbered_report, sender_config};
use common::{accepted, eventually, outbox_status_when, LogCapture, Receiver};
use electric_telemetry::internals::*;
use electric_telemetry::*;
use electric_telemetry_report::LEVELLED_REPORT_VERSION;

const WAIT: Duration = Duration::from_secs(10);

fn logs() -> &'static LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| LogCapture::install("warn,electric_telemetry=info"))
}

/// The crate's lines at `level` about the endpoint at `url` (each test has its own port).
fn lines_about(level: &str, url: &str) -> Vec<String> {
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    logs()
        .lines(level)
        .into_iter()
        .filter(|l| l.contains(&format!("127.0.0.1:{port}")))
        .collect()
}

/// A sender for `url` whose refused reports are tried again once per `interval`.
fn start_sender(url: &str, storage: &Path, interval: Duration) -> (Addr<Sender>, ArbiterHandle) {
    common::sender::start_sender(sender_config(url, storage).interval(interval))
}

#[actix_rt::test]
async fn a_receiver_answering_404_for_a_while_loses_no_report() {
    logs();
    let receiver = Receiver::start();
    receiver.answer_with(404);
    let storage = tempfile::tempdir().unwrap();
    let interval = Duration::from_secs(1);
    let (sender, _) = start_sender(&receiver.url, storage.path(), interval);
    let queued: Vec<Report> = (1..=3).map(numbered_report).collect();
    for r in &queued {
        sender.send(Deliver(r.clone())).await.unwrap();
    }
    // Each is tried once at its normal pace, refused, and kept.
    assert!(eventually(WAIT, || receiver.received().len() >= 3).await);
    let status = sender.send(GetOutboxStatus).await.unwrap();
    assert_eq!(status.pending, 3, "every refused report is kept");
    assert_eq!(status.dropped_not_yet_reported, 0);
    // Tried again, but at most once per report interval each.
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    let refused = receiver.received();
    for r in &queued {
        let tries: Vec<_> = refused
            .iter()
            .filter(|x| x.idempotency_key == Some(r.report_id.to_string()))
            .collect();
        assert!(
            (2..=4).contains(&tries.len()),
            "{} tries in 2.5 s",
            tries.len()
        );
        for pair in tries.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_millis(950),
                "tried again after {gap:?}"
            );
        }
    }
    // The receiver is fixed.
    receiver.answer_with(200);
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 3).await);
    assert!(
        outbox_status_when(&sender, |s| s.pending == 0)
            .await
            .pending
            == 0
    );
    let received = receiver.received();
    let delivered = accepted(&received);
    assert_eq!(delivered, queued, "every report, in order, none dropped");
    assert!(delivered.iter().all(|r| r.dropped_reports == 0));
    for r in &queued {
        let twice = received
            .iter()
            .filter(|x| x.status == 200 && x.idempotency_key == Some(r.report_id.to_string()))
            .count();
        assert_eq!(twice, 1, "delivered exactly once");
    }
    assert!(eventually(WAIT, || !lines_about(" INFO ", &receiver.url).is_empty()).await);
    let warns = lines_about(" WARN ", &receiver.url);
    assert_eq!(warns.len(), 1, "one warning for the outage: {warns:#?}");
    assert!(warns[0].contains("404"), "{}", warns[0]);
    assert!(
        warns[0].contains("receiver says no"),
        "the receiver's reason: {}",
        warns[0]
    );
    let recovered: Vec<_> = lines_about(" INFO ", &receiver.url)
        .into_iter()
        .filter(|l| l.contains("telemetry reaches its endpoint again"))
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_receiver_that_knows_a_newer_report_version_is_logged_once() {
    logs();
    let receiver = Receiver::start();
    receiver.answer_header("Checkpoint-Report-Versions", "2, 3, 4");
    let storage = tempfile::tempdir().unwrap();
    let (sender, _) = start_sender(&receiver.url, storage.path(), Duration::from_secs(3600));
    for n in 1..=3 {
        sender.send(Deliver(numbered_report(n))).await.unwrap();
    }
    assert!(eventually(WAIT, || accepted(&receiver.received()).len() == 3).await);
    assert!(
        outbox_status_when(&sender, |s| s.pending == 0)
            .await
            .pending
            == 0
    );
    let said: Vec<String> = logs()
        .lines(" INFO ")
        .into_iter()
        .filter(|l| l.contains("newer report version"))
        .collect();
    assert_eq!(said.len(), 1, "once per process: {said:#?}");
    assert!(said[0].contains("newest=4"), "{}", said[0]);
    assert!(
        said[0].contains(&format!("known={LEVELLED_REPORT_VERSION}")),
        "{}",
        said[0]
    );
    receiver.stop().await;
}

/// A receiver (or a proxy before it) whose refusal echoes the request target, query and all:
/// the token the URL's query carries, which logs never show (`url_for_logs`), must not reach
/// the WARN through the receiver's reason either, whole or cut at the 200 bytes shown.
#[actix_rt::test]
async fn a_refusal_that_echoes_the_urls_token_never_shows_it() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    logs();
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|req: HttpRequest| async move {
            HttpResponse::NotFound().body(format!("no route for POST {}", req.uri()))
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let token = "tok3n-0123456789abcdef";
    // A long path puts the token across the 200th byte of the reason, too.
    for path in ["in", &"p".repeat(170)] {
        let url = format!("http://127.0.0.1:{port}/{path}?token={token}&v=2");
        let storage = tempfile::tempdir().unwrap();
        let (sender, arbiter) = start_sender(&url, storage.path(), Duration::from_secs(3600));
        sender.send(Deliver(numbered_report(1))).await.unwrap();
        let shown = format!("127.0.0.1:{port}/{path}");
        assert!(
            eventually(WAIT, || lines_about(" WARN ", &url)
                .iter()
                .any(|l| l.contains("refused") && l.contains(&shown)))
            .await
        );
        let status = sender.send(GetOutboxStatus).await.unwrap();
        assert_eq!(status.pending, 1, "kept");
        for line in logs().lines("") {
            for part in [token, &token[..8], &token[token.len() - 8..]] {
                assert!(!line.contains(part), "the token shows: {line}");
            }
        }
        arbiter.stop();
    }
    handle.stop(false).await;
}
