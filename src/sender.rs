//! The sender actor: delivers the outbox's reports, in order, until the endpoint has them.
//!
//! It runs on an Arbiter (thread) of its own, so a slow or hung endpoint never delays the
//! collector, the scheduler or a recording call, and the outbox's disk writes happen there too.
//!
//! - [`Deliver`] queues a report in the [`outbox`](crate::outbox) (on disk first) and returns.
//! - The front report is POSTed with its `report_id` as `Idempotency-Key`, so every retry of it
//!   can be de-duplicated by the receiver. Only a 2xx answer counts as delivered.
//! - A transport error, a timeout, 408, 429 or 5xx is retried with exponential backoff and full
//!   jitter (a random wait up to a ceiling that starts at `retry_initial_backoff` and doubles
//!   to `retry_max_backoff`, never more than one report interval). `Retry-After` (seconds or
//!   an HTTP date) is honoured as a floor on that wait, so `Retry-After: 0` never means "at
//!   once, forever", up to the same cap.
//! - A redirect is never followed; the report stays queued and is retried like a transient
//!   failure, so fixing the URL (and restarting) delivers it.
//! - Any other answer (another 4xx) means the endpoint rejects the payload: the report is
//!   dropped with a warning naming the status and the start of the body, and the loss travels
//!   in the next report's `dropped_reports`.
//! - [`Flush`] (used at shutdown) tries every pending report now, skipping any backoff wait,
//!   and keeps retrying a short wait apart until the outbox is empty or the caller's deadline
//!   ends it.
//! - With an audit file configured, each accepted report is appended to it as sent.
//! - A checkpoint of the current window is kept in the outbox until the window's report is
//!   queued; [`Flush`] marks the run as ended cleanly (see `checkpoint.rs`).
//! - TLS verifies the endpoint's certificate against the webpki roots, plus the CA
//!   certificates of `ELECTRIC_TELEMETRY_CA_FILE` if set.
//!
//! Logs stay quiet on hosts that cannot reach the endpoint: the first failure of an outage is
//! one warning, later failures are debug lines, and the end of the outage is one info line
//! saying how many reports went out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use awc::http::header::{self, HeaderMap, HttpDate};
use tokio::sync::oneshot;

use crate::audit::AuditLog;
use crate::checkpoint::Checkpoint;
use crate::config::{read_ca_file, TelemetryConfig};
use crate::error::DeliveryError;
use crate::outbox::{outbox_dir, Bounds, Outbox, Tally};
use crate::report::Report;

/// During a flush, the longest wait between two attempts: shutdown has a deadline.
const FLUSH_RETRY_MAX: Duration = Duration::from_millis(250);

/// How much of an error response's body is read, and how much of it a log line shows.
const ERROR_BODY_LIMIT: usize = 4096;
const ERROR_BODY_SHOWN: usize = 200;

/// Queues one report for delivery. Returns once the report is in the outbox.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Report);

/// Tries to deliver every queued report now, skipping any backoff wait and retrying a short
/// wait apart. Answers `Ok` once the outbox is empty; bound it with a timeout, as shutdown
/// does. Reports not delivered by then stay queued (and on disk).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), DeliveryError>")]
pub struct Flush;

/// Asks how the outbox stands.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "OutboxStatus")]
pub struct GetOutboxStatus;

/// How the outbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStatus {
    /// Reports waiting for delivery.
    pub pending: usize,
    /// Failed attempts since the last delivery.
    pub failed_attempts: u64,
    /// Reports dropped and not yet reported in a queued report's `dropped_reports`.
    pub dropped_not_yet_reported: u64,
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// Worth another try, after at least the wait the endpoint asked for, if any.
    Transient(DeliveryError, Option<Duration>),
    /// The endpoint rejects this report; trying again would not help.
    Refused(DeliveryError),
}

/// The sender actor.
pub struct Sender {
    url: String,
    /// The URL as logs show it: no userinfo, no query.
    shown_url: String,
    request_timeout: Duration,
    connect_timeout: Duration,
    ca_file: Option<PathBuf>,
    audit: Option<AuditLog>,
    retry_initial: Duration,
    retry_max: Duration,
    /// Built in `started`, on the sender's own thread: `awc::Client` is `!Send`.
    client: Option<awc::Client>,
    outbox: Outbox,
    /// The report on the wire now, by outbox sequence number.
    in_flight: Option<u64>,
    /// The wait before the next attempt, while one is armed.
    retry_timer: Option<SpawnHandle>,
    /// Failed attempts in a row.
    failures: u32,
    /// `Some` while an outage lasts: reports delivered since it began to end.
    outage: Option<u64>,
    flush_waiters: Vec<oneshot::Sender<Result<(), DeliveryError>>>,
}

impl Sender {
    /// A sender for the endpoint, timeouts, retry policy and outbox in `config`.
    pub fn new(config: &TelemetryConfig) -> Self {
        let bounds = Bounds {
            max_reports: config.outbox_max_reports(),
            max_bytes: config.outbox_max_bytes(),
        };
        Self {
            url: config.url().to_owned(),
            shown_url: url_for_logs(config.url()),
            request_timeout: config.request_timeout(),
            connect_timeout: config.connect_timeout(),
            ca_file: config.ca_file().map(PathBuf::from),
            audit: config
                .audit_log()
                .map(|path| AuditLog::new(path.to_owned(), config.audit_log_max_bytes())),
            retry_initial: config.retry_initial_backoff(),
            retry_max: config.retry_max_backoff(),
            client: None,
            outbox: Outbox::new(Some(outbox_dir(config.storage_dir())), bounds),
            in_flight: None,
            retry_timer: None,
            failures: 0,
            outage: None,
            flush_waiters: Vec::new(),
        }
    }

    /// Reports how the outbox stands into `tally`, which the shutdown reads.
    pub(crate) fn with_tally(mut self, tally: Arc<Tally>) -> Self {
        self.outbox.set_tally(tally);
        self
    }

    /// Sends the front report unless one is on the wire or a retry wait is armed.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() || self.retry_timer.is_some() {
            return;
        }
        let Some(front) = self.outbox.front() else {
            self.end_outage();
            self.answer_flush(Ok(()));
            return;
        };
        let Some(client) = &self.client else { return };
        let seq = front.seq;
        let body = match serde_json::to_vec(&front.report) {
            Ok(body) => body,
            Err(e) => {
                let refused = Attempt::Refused(DeliveryError::Encode(e.to_string()));
                return self.settle(seq, refused, None, ctx);
            }
        };
        // Kept only for the audit file, which records exactly the bytes the endpoint took.
        let sent = self.audit.is_some().then(|| body.clone());
        let id = front.report.report_id.to_string();
        let attempt = post(client, &self.url, id, body, self.request_timeout);
        self.in_flight = Some(seq);
        ctx.spawn(attempt.into_actor(self).map(move |attempt, sender, ctx| {
            sender.in_flight = None;
            sender.settle(seq, attempt, sent, ctx);
        }));
    }

    fn settle(
        &mut self,
        seq: u64,
        attempt: Attempt,
        sent: Option<Vec<u8>>,
        ctx: &mut Context<Self>,
    ) {
        match attempt {
            Attempt::Delivered => {
                if let (Some(audit), Some(body)) = (&mut self.audit, sent) {
                    audit.append(&body);
                }
                self.outbox.delivered(seq);
                self.failures = 0;
                match &mut self.outage {
                    Some(delivered) => *delivered += 1,
                    None => tracing::debug!(url = %self.shown_url, "telemetry report delivered"),
                }
            }
            Attempt::Refused(e) => {
                self.outbox.refused(seq);
                self.failures = 0;
                tracing::warn!(
                    url = %self.shown_url, error = %e,
                    "the telemetry endpoint refused a report; it was dropped and the loss will \
                     be counted in the next report's dropped_reports"
                );
            }
            Attempt::Transient(e, retry_after) => {
                self.failures = self.failures.saturating_add(1);
                let mut wait = self.next_wait(retry_after);
                if !self.flush_waiters.is_empty() {
                    // Shutting down: keep trying until the flush's deadline, not the backoff's.
                    wait = wait.min(FLUSH_RETRY_MAX);
                }
                self.note_failure(&e, wait);
                self.retry_timer = Some(ctx.run_later(wait, |sender, ctx| {
                    sender.retry_timer = None;
                    sender.pump(ctx);
                }));
                return;
            }
        }
        self.pump(ctx);
    }

    /// Full jitter: a random wait up to a ceiling that doubles per failure, and at least what
    /// the endpoint asked for; never more than `retry_max` (itself at most one interval).
    fn next_wait(&self, retry_after: Option<Duration>) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(30);
        let ceiling = self
            .retry_initial
            .saturating_mul(1 << doublings)
            .min(self.retry_max);
        let jittered = ceiling.mul_f64(fastrand::f64());
        // A floor, not a replacement: `Retry-After: 0`, or a date the server's clock puts in
        // the past, must not turn a fleet of reporters into a retry storm.
        let wait = retry_after.map_or(jittered, |asked| asked.max(jittered));
        wait.min(self.retry_max)
    }

    fn note_failure(&mut self, e: &DeliveryError, wait: Duration) {
        if self.outage.is_none() {
            self.outage = Some(0);
            tracing::warn!(
                url = %self.shown_url, error = %e,
                "telemetry could not deliver its usage report; it is kept and retried, this \
                 does not affect the service, and further failures are logged at debug level. \
                 Set ELECTRIC_TELEMETRY=disabled to opt out"
            );
        } else {
            tracing::debug!(
                url = %self.shown_url, error = %e, retry_in = ?wait, failures = self.failures,
                "telemetry report not delivered; will retry"
            );
        }
    }

    fn end_outage(&mut self) {
        if let Some(delivered) = self.outage.take() {
            tracing::info!(
                url = %self.shown_url, delivered,
                "telemetry reaches its endpoint again; every pending report was delivered"
            );
        }
    }

    fn answer_flush(&mut self, result: Result<(), DeliveryError>) {
        for waiter in self.flush_waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

impl Actor for Sender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let mut connector = awc::Connector::new().timeout(self.connect_timeout);
        if let Some(path) = &self.ca_file {
            match read_ca_file(path) {
                Ok(certs) => connector = connector.rustls_0_23(Arc::new(tls_config(certs))),
                // Checked when the configuration was built; the file changed since.
                Err(e) => tracing::warn!(
                    error = %e,
                    "telemetry could not read its CA file; only the standard roots are trusted"
                ),
            }
        }
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
        let loaded = self.outbox.load();
        if loaded.reports > 0 {
            tracing::info!(
                pending = loaded.reports,
                recovered = loaded.recovered,
                "telemetry found reports an earlier run could not deliver; sending them now"
            );
        }
        self.pump(ctx);
    }
}

impl Handler<Deliver> for Sender {
    type Result = ();

    fn handle(&mut self, Deliver(report): Deliver, ctx: &mut Context<Self>) {
        self.outbox.push(report, self.in_flight);
        self.pump(ctx);
    }
}

impl Handler<Flush> for Sender {
    type Result = ResponseFuture<Result<(), DeliveryError>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        // The shutdown queued its final report before flushing: no window is left to recover.
        self.outbox.close();
        if self.outbox.len() == 0 {
            return Box::pin(async { Ok(()) });
        }
        let (tx, rx) = oneshot::channel();
        self.flush_waiters.push(tx);
        if let Some(timer) = self.retry_timer.take() {
            ctx.cancel_future(timer);
        }
        self.pump(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(DeliveryError::NotRunning)) })
    }
}

impl Handler<Checkpoint> for Sender {
    type Result = ();

    fn handle(&mut self, Checkpoint(report): Checkpoint, _: &mut Context<Self>) {
        self.outbox.checkpoint(&report);
    }
}

impl Handler<GetOutboxStatus> for Sender {
    type Result = MessageResult<GetOutboxStatus>;

    fn handle(&mut self, _: GetOutboxStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(OutboxStatus {
            pending: self.outbox.len(),
            failed_attempts: u64::from(self.failures),
            dropped_not_yet_reported: self.outbox.carry(),
        })
    }
}

/// `url` as logs may show it: scheme, host, port and path, without userinfo or query, which
/// could hold credentials.
pub(crate) fn url_for_logs(url: &str) -> String {
    match url.parse::<awc::http::Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("");
            let host = uri.host().unwrap_or("");
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{}", uri.path())
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

/// The webpki roots plus `extra` CA certificates.
fn tls_config(extra: Vec<rustls::pki_types::CertificateDer<'static>>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let (added, ignored) = roots.add_parsable_certificates(extra);
    if ignored > 0 {
        tracing::warn!(
            added,
            ignored,
            "telemetry ignored CA certificates it could not parse"
        );
    }
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// One POST of a report's JSON `body`, bounded by `deadline` from connect to the end of the
/// response body.
fn post(
    client: &awc::Client,
    url: &str,
    report_id: String,
    body: Vec<u8>,
    deadline: Duration,
) -> impl std::future::Future<Output = Attempt> + 'static {
    let request = client
        .post(url)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header(("Idempotency-Key", report_id));
    let attempt = async move {
        let mut response = match request.send_body(body).await {
            Ok(response) => response,
            Err(e) => return Attempt::Transient(DeliveryError::Transport(e.to_string()), None),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered;
        }
        let retry_after = retry_after(response.headers());
        let body = response
            .body()
            .limit(ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        let shown = &body[..body.len().min(ERROR_BODY_SHOWN)];
        let error = DeliveryError::Status {
            status: status.as_u16(),
            body_start: String::from_utf8_lossy(shown).into_owned(),
        };
        match status.as_u16() {
            408 | 429 | 500..=599 => Attempt::Transient(error, retry_after),
            // Not followed (it could lead anywhere), but not a verdict on the payload either:
            // the report stays queued until the URL is fixed, within the outbox's bound.
            300..=399 => Attempt::Transient(error, None),
            _ => Attempt::Refused(error),
        }
    };
    // awc's own timeout ends at the response head; this one also bounds the body read.
    async move {
        tokio::time::timeout(deadline, attempt)
            .await
            .unwrap_or_else(|_| {
                Attempt::Transient(DeliveryError::Transport("timed out".into()), None)
            })
    }
}

/// `Retry-After` as a wait: delta-seconds, or an HTTP date (a date in the past means now).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date: SystemTime = value.parse::<HttpDate>().ok()?.into();
    Some(
        date.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::http::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn urls_in_logs_carry_no_credentials() {
        assert_eq!(
            url_for_logs("https://user:secret@telemetry.example.com:8443/in?token=abc"),
            "https://telemetry.example.com:8443/in"
        );
        assert_eq!(
            url_for_logs("http://127.0.0.1:9/checkpoint"),
            "http://127.0.0.1:9/checkpoint"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after(&headers("120")), Some(Duration::from_secs(120)));
        let in_a_minute = SystemTime::now() + Duration::from_secs(61);
        let date = HttpDate::from(in_a_minute).to_string();
        let wait = retry_after(&headers(&date)).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
            "{wait:?}"
        );
        let past = HttpDate::from(SystemTime::UNIX_EPOCH).to_string();
        assert_eq!(retry_after(&headers(&past)), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_grows_with_full_jitter_and_stays_capped() {
        let config = TelemetryConfig::builder()
            .retry_initial_backoff(Duration::from_secs(1))
            .retry_max_backoff(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut sender = Sender::new(&config);
        for failures in 1..=40u32 {
            sender.failures = failures;
            let ceiling =
                Duration::from_secs(1 << (failures - 1).min(6)).min(Duration::from_secs(60));
            for _ in 0..50 {
                assert!(sender.next_wait(None) <= ceiling);
            }
        }
        sender.failures = 3;
        assert_eq!(
            sender.next_wait(Some(Duration::from_secs(30))),
            Duration::from_secs(30),
            "Retry-After longer than the backoff is honoured"
        );
        for _ in 0..50 {
            let wait = sender.next_wait(Some(Duration::from_secs(3)));
            assert!(wait >= Duration::from_secs(3), "at least what was asked");
            assert!(wait <= Duration::from_secs(4), "or the backoff, if longer");
        }
        assert_eq!(
            sender.next_wait(Some(Duration::from_secs(86_400))),
            Duration::from_secs(60),
            "within a cap"
        );
    }
}
