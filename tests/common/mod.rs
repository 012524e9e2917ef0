//! A real HTTP receiver on 127.0.0.1 for the tests, with the answers they need to provoke.
#![allow(dead_code)] // Each test binary uses a different part of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use electric_telemetry::Report;
use electric_telemetry::Usage;

/// One scripted answer.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// `status` with a `Retry-After` header.
    pub fn retry_after(status: u16, retry_after: &str) -> Self {
        Self {
            status,
            retry_after: Some(retry_after.to_owned()),
            ..Self::default()
        }
    }
}

/// Polls the sender's outbox status (real time, bounded to 10 s) until `done` holds, and
/// returns the last status seen, for the caller to assert on.
pub async fn outbox_status_when(
    sender: &actix::Addr<electric_telemetry::internals::Sender>,
    done: impl Fn(&electric_telemetry::OutboxStatus) -> bool,
) -> electric_telemetry::OutboxStatus {
    let mut status = electric_telemetry::OutboxStatus::default();
    for _ in 0..1000 {
        status = sender
            .send(electric_telemetry::internals::GetOutboxStatus)
            .await
            .expect("the sender answers");
        if done(&status) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    status
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    pub user_agent: Option<String>,
    /// Every header as sent, name (lower case) and raw value bytes, in the order received, so a
    /// test can check all of them and not only the three above.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Received {
    pub fn report(&self) -> Report {
        serde_json::from_slice(&self.body).expect("the body is a report of the current shape")
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    /// Answers to give first, in order; then `status`.
    script: Mutex<VecDeque<Answer>>,
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
        Self::start_on(0)
    }

    /// Starts a receiver on 127.0.0.1:`port` that answers 200.
    pub fn start_on(port: u16) -> Self {
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
        .bind(("127.0.0.1", port))
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

    /// Gives these answers, in order, before the default one.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.script.lock().unwrap().extend(answers);
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
    let answer = state.script.lock().unwrap().pop_front().unwrap_or(Answer {
        status: state.status.load(SeqCst),
        retry_after: None,
        delay: Duration::from_millis(state.delay_ms.load(SeqCst)),
    });
    state.received.lock().unwrap().push(Received {
        at: Instant::now(),
        status: answer.status,
        body: body.to_vec(),
        content_type: header("content-type"),
        idempotency_key: header("idempotency-key"),
        user_agent: header("user-agent"),
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
    });
    if !answer.delay.is_zero() {
        actix_rt::time::sleep(answer.delay).await;
    }
    let status = actix_web::http::StatusCode::from_u16(answer.status).unwrap();
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = answer.retry_after {
        response.insert_header(("Retry-After", retry_after));
    }
    response.body("receiver says no")
}

/// Reports that the receiver accepted (2xx), each `report_id` once.
pub fn accepted(received: &[Received]) -> Vec<Report> {
    let mut seen = std::collections::HashSet::new();
    received
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .map(Received::report)
        .filter(|r| seen.insert(r.report_id))
        .collect()
}

/// A raw HTTP/1.1 server on 127.0.0.1 that cuts the first `cut` connections in the middle of
/// the response head, then answers 200 with `Connection: close`, keeping the bodies it took.
pub struct CuttingServer {
    pub url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl CuttingServer {
    pub fn start(cut: usize) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/checkpoint", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        listener.set_nonblocking(false).unwrap();
        std::thread::spawn(move || {
            // Bounded: it serves a few connections and ends with the test process.
            for (i, stream) in listener.incoming().take(cut + 20).enumerate() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                if i < cut {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                kept.lock().unwrap().push(body);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Self { url, bodies }
    }

    pub fn reports(&self) -> Vec<Report> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }
}

/// A loopback port with nothing listening on it (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
pub const SEED_SAMPLE: &str = include_str!("../fixtures/seed_report.json");

pub fn seed_report() -> Report {
    serde_json::from_str(SEED_SAMPLE).expect("the seed's sample parses as a Report")
}

/// A variable lookup for `with_env_from`, from fixed pairs: no test touches the process env.
pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Everything logged through `tracing`, kept for assertions. Installed as the global
/// subscriber (the sender logs from its own thread), so one test binary may install it once.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs a global subscriber with `filter` (an env-filter directive) writing here.
    pub fn install(filter: &str) -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The crate's lines that contain `level` (e.g. `" WARN "`).
    pub fn lines(&self, level: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains("electric_telemetry"))
            .map(str::to_owned)
            .collect()
    }
}
