//! HTTP plumbing for the sender: one bounded POST of a report and how it ended,
//! `Retry-After` parsing, and URLs as logs may show them. The client itself is built in
//! `client`; what to do after an attempt is the retry policy's job.

use std::time::{Duration, SystemTime};

use awc::http::header::{self, HeaderMap, HttpDate};

use super::retry::{classify, Verdict};
use crate::error::DeliveryError;

/// How much of an error response's body is read, and how much of it a log line shows.
const ERROR_BODY_LIMIT: usize = 4096;
const ERROR_BODY_SHOWN: usize = 200;

/// How one attempt ended.
pub(crate) enum Attempt {
    Delivered,
    /// Worth another try, after at least the wait the endpoint asked for, if any.
    Transient(DeliveryError, Option<Duration>),
    /// Nothing reached the endpoint (connect, DNS, TLS handshake, proxy): worth another try
    /// later, but not within a shutdown's few seconds.
    Unreachable(DeliveryError),
    /// The endpoint rejects this report; trying again would not help.
    Refused(DeliveryError),
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

/// One POST of a report's JSON `body`, bounded by `deadline` from connect to the end of the
/// response body.
pub(crate) fn post(
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
            // Nothing was sent: the endpoint (or the proxy) could not be reached.
            Err(e @ awc::error::SendRequestError::Connect(_)) => {
                return Attempt::Unreachable(DeliveryError::Transport(e.to_string()))
            }
            Err(e) => return Attempt::Transient(DeliveryError::Transport(e.to_string()), None),
        };
        let status = response.status();
        let verdict = classify(status.as_u16());
        if verdict == Verdict::Delivered {
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
        match verdict {
            // A redirect is not followed (it could lead anywhere); its Retry-After means nothing.
            Verdict::Retry if status.is_redirection() => Attempt::Transient(error, None),
            Verdict::Retry | Verdict::Delivered => Attempt::Transient(error, retry_after),
            Verdict::Refused => Attempt::Refused(error),
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
}
