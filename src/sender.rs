//! The sender actor: POSTs reports to the endpoint.
//!
//! It runs on an Arbiter (thread) of its own, so a slow endpoint never delays the collector,
//! the scheduler or a recording call. Only a 2xx answer counts as delivered: Electric once
//! counted error statuses as delivered and a receiver that refused every report went unnoticed
//! for months. Logging stays quiet on hosts that cannot reach the endpoint: one warning when an
//! outage starts, debug lines while it lasts, one info line when it ends.

use std::time::Duration;

use actix::prelude::*;
use awc::http::header;

use crate::config::TelemetryConfig;
use crate::error::DeliveryError;
use crate::report::Report;

/// How much of an error response's body is read, and how much of it a log line shows.
const ERROR_BODY_LIMIT: usize = 4096;
const ERROR_BODY_SHOWN: usize = 200;

/// Asks the sender to deliver one report. Answers once the endpoint has answered.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), DeliveryError>")]
pub struct Deliver(pub Report);

/// The sender actor.
pub struct Sender {
    url: String,
    request_timeout: Duration,
    connect_timeout: Duration,
    /// Built in `started`, on the sender's own thread: `awc::Client` is `!Send`.
    client: Option<awc::Client>,
    /// Whether the last delivery failed (an outage is under way).
    failing: bool,
}

impl Sender {
    /// A sender for the endpoint and timeouts in `config`.
    pub fn new(config: &TelemetryConfig) -> Self {
        Self {
            url: config.url().to_owned(),
            request_timeout: config.request_timeout(),
            connect_timeout: config.connect_timeout(),
            client: None,
            failing: false,
        }
    }

    fn note_outcome(&mut self, result: &Result<(), DeliveryError>) {
        match (result, self.failing) {
            (Ok(()), false) => tracing::debug!(url = %self.url, "telemetry report delivered"),
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!(url = %self.url, "telemetry reports are being delivered again");
            }
            (Err(e), false) => {
                self.failing = true;
                tracing::warn!(
                    url = %self.url, error = %e,
                    "telemetry could not deliver its usage report; this does not affect the \
                     service and further failures are logged at debug level. Set \
                     ELECTRIC_TELEMETRY=disabled to opt out"
                );
            }
            (Err(e), true) => {
                tracing::debug!(url = %self.url, error = %e, "telemetry report not delivered")
            }
        }
    }
}

impl Actor for Sender {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        let connector = awc::Connector::new().timeout(self.connect_timeout);
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(self.request_timeout)
            .disable_redirects()
            .add_default_header((
                header::USER_AGENT,
                concat!("electric-telemetry/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        self.client = Some(client);
    }
}

impl Handler<Deliver> for Sender {
    /// One delivery at a time, in arrival order: the final report at shutdown queues behind a
    /// scheduled one still in flight instead of racing it.
    type Result = AtomicResponse<Self, Result<(), DeliveryError>>;

    fn handle(&mut self, Deliver(report): Deliver, _: &mut Context<Self>) -> Self::Result {
        let body = match serde_json::to_vec(&report) {
            Ok(body) => body,
            Err(e) => {
                let failed = Err(DeliveryError::Encode(e.to_string()));
                return AtomicResponse::new(Box::pin(fut::ready(failed)));
            }
        };
        let Some(client) = &self.client else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(DeliveryError::NotRunning))));
        };
        let request = client
            .post(&self.url)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header(("Idempotency-Key", report.report_id.to_string()));
        let deadline = self.request_timeout;
        let post = async move {
            let mut response = request
                .send_body(body)
                .await
                .map_err(|e| DeliveryError::Transport(e.to_string()))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let body = response
                .body()
                .limit(ERROR_BODY_LIMIT)
                .await
                .unwrap_or_default();
            let shown = &body[..body.len().min(ERROR_BODY_SHOWN)];
            Err(DeliveryError::Status {
                status: status.as_u16(),
                body_start: String::from_utf8_lossy(shown).into_owned(),
            })
        };
        // awc's own timeout ends at the response head; this one also bounds the body read.
        let bounded = async move {
            tokio::time::timeout(deadline, post)
                .await
                .unwrap_or_else(|_| Err(DeliveryError::Transport("timed out".into())))
        };
        AtomicResponse::new(Box::pin(bounded.into_actor(self).map(
            |result, sender, _| {
                sender.note_outcome(&result);
                result
            },
        )))
    }
}
