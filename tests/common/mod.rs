//! A real HTTP receiver on 127.0.0.1 for the tests, with the answers they need to provoke.
#![allow(dead_code)] // Each test binary uses a different part of it.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use electric_telemetry::report::Usage;
use electric_telemetry::Report;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    pub user_agent: Option<String>,
}

impl Received {
    pub fn report(&self) -> Report {
        serde_json::from_slice(&self.body).expect("the body is a report of the current shape")
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    status: AtomicU16,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicU64,
}

/// A receiver running in the current actix System.
pub struct Receiver {
    pub url: String,
    state: Arc<State>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1:0 that answers 200.
    pub fn start() -> Self {
        let state = Arc::new(State {
            status: AtomicU16::new(200),
            ..State::default()
        });
        let app_state = Arc::clone(&state);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::from(Arc::clone(&app_state)))
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("bind a loopback port");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/checkpoint"),
            state,
            server: handle,
        }
    }

    /// Makes every later answer have this status.
    pub fn answer_with(&self, status: u16) {
        self.state.status.store(status, SeqCst);
    }

    /// Makes every later answer wait this long first.
    pub fn delay_answers(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn reports(&self) -> Vec<Report> {
        self.received().iter().map(Received::report).collect()
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.received.lock().unwrap().push(Received {
        body: body.to_vec(),
        content_type: header("content-type"),
        idempotency_key: header("idempotency-key"),
        user_agent: header("user-agent"),
    });
    let delay = state.delay_ms.load(SeqCst);
    if delay > 0 {
        actix_rt::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = actix_web::http::StatusCode::from_u16(state.status.load(SeqCst)).unwrap();
    HttpResponse::build(status).body("receiver says no")
}

/// Waits (real time, bounded) until `check` holds; false if it never did.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// The nine usage counters of a report, in a fixed order, for summing.
pub fn counters(usage: &Usage) -> [u64; 9] {
    [
        usage.operations_from_pg,
        usage.transactions_from_pg,
        usage.operations_received_from_clients,
        usage.transactions_received_from_clients,
        usage.operations_sent_to_clients,
        usage.transactions_sent_to_clients,
        usage.initial_syncs,
        usage.subscriptions_established,
        usage.subscriptions_continued,
    ]
}

/// Sums the nine counters over reports.
pub fn sum_counters(reports: &[Report]) -> [u64; 9] {
    reports.iter().fold([0; 9], |mut acc, r| {
        for (a, c) in acc.iter_mut().zip(counters(&r.data.usage)) {
            *a += c;
        }
        acc
    })
}

/// The seed's sample payload (telemetry.md), in our envelope. Parsing it into [`Report`], whose
/// types deny unknown fields, pins that we send exactly the seed's names and nesting.
pub const SEED_SAMPLE: &str = r#"{
  "report_id": "6f1c1f5e-8f4a-4a8e-9d0c-3b2f0e6f9a10",
  "report_version": 1,
  "timestamp": "2023-09-19T14:50:45.972021Z",
  "last_reported": "2023-09-19T14:40:45.972021Z",
  "dropped_events": 0,
  "data": {
    "electric_version": "0.5.3-28-gf78187e",
    "environment": {
      "arch": "x86_64-pc-linux-gnu",
      "cores": 8,
      "electric_cluster_uuid": "a1336abd-804c-4d0c-a06a-c73da6dd148e",
      "electric_instance_id": "0d64597b-168b-45a2-ad64-a9baba55fd59",
      "os": {"family": "unix", "name": "linux"},
      "pg_version": "14.9",
      "ram": 33363812352
    },
    "resources": {
      "oldest_wal_time": "2023-09-19T14:40:45.972021Z",
      "uptime": 10,
      "used_memory": {"max": 64262224, "mean": 64262224.0, "median": 64262224, "min": 64262224, "mode": 64262224},
      "wal_cache_memory": 2520,
      "wal_transactions": 2
    },
    "usage": {
      "concurrent_clients": {"max": 0, "mean": 0.0, "median": 0.0, "min": 0, "mode": 0},
      "distinct_clients": 0,
      "distinct_users": 0,
      "electrified_tables": 0,
      "initial_syncs": 0,
      "operations_from_pg": 1,
      "operations_received_from_clients": 0,
      "operations_sent_to_clients": 0,
      "subscriptions_continued": 0,
      "subscriptions_continued_per_client": {"max": 0, "mean": 0, "median": 0, "min": 0, "mode": null},
      "subscriptions_established": 0,
      "subscriptions_included_tables": {"max": 0, "mean": 0, "median": 0, "min": 0, "mode": null},
      "subscriptions_rows_per_shape": {"max": 0, "mean": 0, "median": 0, "min": 0, "mode": null},
      "transactions_from_pg": 2,
      "transactions_received_from_clients": 0,
      "transactions_sent_to_clients": 0
    }
  }
}"#;

pub fn seed_report() -> Report {
    serde_json::from_str(SEED_SAMPLE).expect("the seed's sample parses as a Report")
}
