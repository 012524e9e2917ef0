//! HTTP plumbing for the sender: one bounded POST of a report and how it ended,
//! `Retry-After` and `Checkpoint-Report-Versions` parsing, and URLs as logs may show them. The client itself is built in
//! `client`; what to do after an attempt is the retry policy's job.

use std::time::{Duration, SystemTime};

use awc::http::header::{self, HeaderMap, HttpDate};

use super::retry::{classify, Verdict};
use crate::error::DeliveryError;

/// How much of an error response's body is read, and how much of it a log line shows.
const ERROR_BODY_LIMIT: usize = 4096;
const ERROR_BODY_SHOWN: usize = 200;
/// The receiver's answer header listing the report versions it accepts, e.g. `2, 3`.
const REPORT_VERSIONS: &str = "checkpoint-report-versions";

/// How one attempt ended.
pub(crate) enum Attempt {
    Delivered,
    /// Worth another try, after at least the wait the endpoint asked for, if any.
    Transient(DeliveryError, Option<Duration>),
    /// Nothing reached the endpoint (connect, DNS, TLS handshake, proxy): worth another try
    /// later, but not within a shutdown's few seconds.
    Unreachable(DeliveryError),
    /// The endpoint refuses this report as it is now (a 4xx other than 408 and 429, or a
    /// status telemetry does not know): worth another try only much later, once the
    /// receiver may have been fixed.
    Refused(DeliveryError),
}

/// How one attempt ended, and what the answer said about the versions the receiver accepts.
pub(crate) struct Answered {
    pub attempt: Attempt,
    /// The newest report version of a well-formed `Checkpoint-Report-Versions` header.
    pub newest_version: Option<u32>,
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
) -> impl std::future::Future<Output = Answered> + 'static {
    let request = client
        .post(url)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header(("Idempotency-Key", report_id));
    // A receiver's answer may echo the request target: what the URL's query holds must not
    // show through the reason when the URL itself is shown without it (`url_for_logs`).
    let secrets = secrets_of(url);
    let attempt = async move {
        let mut response = match request.send_body(body).await {
            Ok(response) => response,
            // Nothing was sent: the endpoint (or the proxy) could not be reached.
            Err(e @ awc::error::SendRequestError::Connect(_)) => {
                return (
                    Attempt::Unreachable(DeliveryError::Transport(e.to_string())),
                    None,
                )
            }
            Err(e) => {
                let e = DeliveryError::Transport(e.to_string());
                return (Attempt::Transient(e, None), None);
            }
        };
        let newest_version = newest_version(response.headers());
        let status = response.status();
        let verdict = classify(status.as_u16());
        if verdict == Verdict::Delivered {
            return (Attempt::Delivered, newest_version);
        }
        let retry_after = retry_after(response.headers());
        let body = response
            .body()
            .limit(ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        let error = DeliveryError::Status {
            status: status.as_u16(),
            body_start: printable_start(&body, &secrets),
        };
        let attempt = match verdict {
            // A redirect is not followed (it could lead anywhere); its Retry-After means nothing.
            Verdict::Retry if status.is_redirection() => Attempt::Transient(error, None),
            Verdict::Retry | Verdict::Delivered => Attempt::Transient(error, retry_after),
            Verdict::Refused => Attempt::Refused(error),
        };
        (attempt, newest_version)
    };
    // awc's own timeout ends at the response head; this one also bounds the body read.
    async move {
        let (attempt, newest_version) = tokio::time::timeout(deadline, attempt)
            .await
            .unwrap_or_else(|_| {
                let e = DeliveryError::Transport("timed out".into());
                (Attempt::Transient(e, None), None)
            });
        Answered {
            attempt,
            newest_version,
        }
    }
}

/// The receiver's reason as logs may show it: the first [`ERROR_BODY_SHOWN`] bytes of its
/// body, as text, with control characters (a terminal's escapes, line breaks), the
/// [`invisible`] ones and bytes that are not UTF-8 each shown as one space, every occurrence of one of `secrets` (see
/// [`secrets_of`]) as `***`, and no surrounding whitespace. Secrets are hidden before the cut,
/// so that none shows in part at the end either.
fn printable_start(body: &[u8], secrets: &[String]) -> String {
    let mut text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| {
            if c.is_control() || invisible(c) || c == char::REPLACEMENT_CHARACTER {
                ' '
            } else {
                c
            }
        })
        .collect();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    let mut cut = text.len().min(ERROR_BODY_SHOWN);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].trim().to_owned()
}

/// Characters that are not control characters but still move or hide text in a log line:
/// Unicode's line and paragraph separators, direction marks, embeddings, overrides and
/// isolates (text that reads other than it is), zero-width characters and the soft hyphen.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// What of `url` may be a credential, as a receiver could echo it: its query, and each of the
/// query's parameter values of 4 bytes or more (a `v=2` is no secret, and hiding every `2`
/// would garble the reason), as sent and percent-decoded; longest first.
fn secrets_of(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or_default();
    let mut secrets = vec![query.to_owned()];
    for pair in query.split('&') {
        let value = pair.split_once('=').map_or(pair, |(_, v)| v);
        secrets.push(value.to_owned());
        secrets.push(percent_decoded(value));
    }
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// `text` with `%XX` escapes (and `+`) decoded, lossily.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The newest version a `Checkpoint-Report-Versions` header lists (`2`, `2, 3`). A malformed
/// header (not text, an empty list, an entry that is not a number) says nothing.
fn newest_version(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get(REPORT_VERSIONS)?;
    let parsed = value.to_str().ok().and_then(|text| {
        text.split(',')
            .map(|v| v.trim().parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
            .and_then(|versions| versions.into_iter().max())
    });
    if parsed.is_none() {
        tracing::debug!(
            header = ?value,
            "the telemetry endpoint's Checkpoint-Report-Versions header is malformed; ignored"
        );
    }
    parsed
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
    fn the_receivers_reason_is_cut_to_200_bytes_of_printable_text() {
        assert_eq!(printable_start(b"no such path\n", &[]), "no such path");
        assert_eq!(
            printable_start(b"bad\x1b[31m red\r\nInjected: line\x00\xff!", &[]),
            "bad [31m red  Injected: line  !"
        );
        let long = "x".repeat(500);
        assert_eq!(printable_start(long.as_bytes(), &[]).len(), 200);
        // A character cut at byte 200 becomes a space, trimmed.
        let cut = format!("{}é", "y".repeat(199));
        assert_eq!(printable_start(cut.as_bytes(), &[]), "y".repeat(199));
        assert_eq!(printable_start(b"", &[]), "");
        // Text that moves, hides or reverses what follows it is no printable text either.
        assert_eq!(
            printable_start("ok\u{2028}Injected\u{202e}txt.exe\u{200b}!".as_bytes(), &[]),
            "ok Injected txt.exe !"
        );
    }

    #[test]
    fn the_receivers_reason_never_shows_what_the_urls_query_holds() {
        let secrets = secrets_of("https://t.example/in?token=a%2Bb-secret&v=2#frag");
        assert_eq!(
            secrets,
            ["token=a%2Bb-secret&v=2", "a%2Bb-secret", "a+b-secret"]
        );
        assert_eq!(
            printable_start(
                b"no route: /in?token=a%2Bb-secret&v=2 (a+b-secret)",
                &secrets
            ),
            "no route: /in?*** (***)"
        );
        assert!(secrets_of("https://t.example/in").is_empty());
        assert!(secrets_of("https://t.example/in?v=2").is_empty());
    }

    #[test]
    fn report_versions_read_the_newest_of_a_well_formed_list_only() {
        let versions = |value: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(
                header::HeaderName::from_static(REPORT_VERSIONS),
                HeaderValue::from_bytes(value).unwrap(),
            );
            newest_version(&h)
        };
        assert_eq!(versions(b"2"), Some(2));
        assert_eq!(versions(b"2, 3"), Some(3));
        assert_eq!(versions(b" 3 ,2,1 "), Some(3));
        for malformed in [
            &b""[..],
            b",",
            b"2,",
            b"two",
            b"2;3",
            b"-1",
            b"2, 99999999999",
            b"\xff",
        ] {
            assert_eq!(versions(malformed), None, "{malformed:?}");
        }
        assert_eq!(newest_version(&HeaderMap::new()), None);
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
