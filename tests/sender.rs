//! The sender against a real HTTP server on loopback: only 2xx counts as delivered.

mod common;

use std::time::Duration;

use actix::prelude::*;
use common::{seed_report, Receiver};
use electric_telemetry::*;

fn sender_to(url: &str) -> Addr<Sender> {
    let config = TelemetryConfig::builder()
        .url(url)
        .request_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    Sender::new(&config).start()
}

#[actix_rt::test]
async fn a_2xx_answer_is_delivered_as_json_with_an_idempotency_key() {
    let receiver = Receiver::start();
    let sender = sender_to(&receiver.url);
    let report = seed_report();
    for status in [200, 201, 202, 204] {
        receiver.answer_with(status);
        let result = sender.send(Deliver(report.clone())).await.unwrap();
        assert_eq!(result, Ok(()), "status {status} counts as delivered");
    }
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    let first = &received[0];
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        first.idempotency_key.as_deref(),
        Some(report.report_id.to_string().as_str())
    );
    assert!(first
        .user_agent
        .as_deref()
        .unwrap()
        .starts_with("electric-telemetry/"));
    assert_eq!(first.report(), report, "the body is the report, unchanged");
    assert!(
        first.body.len() < 2048,
        "about the seed's ~1.5 kB: {}",
        first.body.len()
    );
    receiver.stop().await;
}

#[actix_rt::test]
async fn any_other_status_is_not_delivered_and_names_the_status() {
    let receiver = Receiver::start();
    let sender = sender_to(&receiver.url);
    for status in [400, 404, 408, 429, 500, 502, 503, 301] {
        receiver.answer_with(status);
        let result = sender.send(Deliver(seed_report())).await.unwrap();
        match result {
            Err(DeliveryError::Status {
                status: got,
                body_start,
            }) => {
                assert_eq!(got, status);
                assert_eq!(body_start, "receiver says no");
            }
            other => panic!("status {status} gave {other:?}"),
        }
    }
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_refused_connection_is_a_transport_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sender = sender_to(&format!("http://127.0.0.1:{port}/"));
    let result = sender.send(Deliver(seed_report())).await.unwrap();
    assert!(
        matches!(result, Err(DeliveryError::Transport(_))),
        "{result:?}"
    );
}

#[actix_rt::test]
async fn a_hanging_endpoint_times_out() {
    let receiver = Receiver::start();
    receiver.delay_answers(Duration::from_secs(5));
    let sender = sender_to(&receiver.url);
    let result = sender.send(Deliver(seed_report())).await.unwrap();
    assert!(
        matches!(result, Err(DeliveryError::Transport(_))),
        "{result:?}"
    );
    receiver.stop().await;
}
