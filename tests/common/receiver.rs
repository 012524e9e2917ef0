//! A real HTTP receiver on 127.0.0.1 with scripted answers, shared by the tests and the
//! example service (`examples/service/src/main.rs` includes this file): the demo and the tests see
//! reports through the same code.
#![allow(dead_code)] // Each user takes a different part of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use electric_telemetry::Report;

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

/// What a receiver was sent and how it answers; see [`Receiver::serve`].
#[derive(Default)]
pub struct State {
    received: Mutex<Vec<Received>>,
    /// Answers to give first, in order; then `status`.
    script: Mutex<VecDeque<Answer>>,
    status: AtomicU16,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicU64,
    /// Headers put on every answer.
    answer_headers: Mutex<Vec<(String, String)>>,
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
        let state = Self::new_state();
        let app_state = Arc::clone(&state);
        let server = HttpServer::new(move || Self::app(Arc::clone(&app_state)))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", port))
            .expect("bind a loopback port");
        let port = server.addrs()[0].port();
        Self::serve(
            format!("http://127.0.0.1:{port}/checkpoint"),
            state,
            server.run(),
        )
    }

    /// A new receiver's state: nothing received, answering 200.
    pub fn new_state() -> Arc<State> {
        Arc::new(State {
            status: AtomicU16::new(200),
            ..State::default()
        })
    }

    /// The receiver's app over `state`, for a server bound some other way (the https one of
    /// the tests, `tests/common/tls.rs`).
    pub fn app(
        state: Arc<State>,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        App::new()
            .app_data(web::Data::from(state))
            .default_service(web::to(receive))
    }

    /// Runs `server` (serving [`Receiver::app`] over `state`, at `url`) in the current System.
    pub fn serve(url: String, state: Arc<State>, server: actix_web::dev::Server) -> Self {
        let handle = server.handle();
        actix_rt::spawn(server);
        Self {
            url,
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

    /// Puts this header on every later answer.
    pub fn answer_header(&self, name: &str, value: &str) {
        let mut headers = self.state.answer_headers.lock().unwrap();
        headers.push((name.to_owned(), value.to_owned()));
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
    for (name, value) in state.answer_headers.lock().unwrap().iter() {
        response.insert_header((name.as_str(), value.as_str()));
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
