//! Ingest: the checks in the order the module docs give, the queue to the writer, and the
//! quarantine for refusals.

use super::*;

/// The header on every ingest answer listing the report versions this receiver accepts
/// (`Checkpoint-Report-Versions: 2`), so that a reporter learns when the receiver knows a
/// newer version than it sends.
pub const VERSIONS_HEADER: &str = "checkpoint-report-versions";

/// [`VERSIONS_HEADER`]'s value: the accepted versions, e.g. `2`.
pub(super) fn versions_value() -> header::HeaderValue {
    static VERSIONS: std::sync::LazyLock<header::HeaderValue> = std::sync::LazyLock::new(|| {
        header::HeaderValue::from_str(&crate::validate::accepted_versions())
            .expect("version numbers are a valid header value")
    });
    VERSIONS.clone()
}

/// An ingest answer; [`VERSIONS_HEADER`] is put on it at the edge (`edge_after`), which also
/// gives the answers that never reach here (408 at the body deadline, 429 for a source's
/// connections).
pub(super) async fn ingest(
    req: HttpRequest,
    mut body: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    if let Err(refused) = source_admits(&req, &state) {
        return source_refused(refused);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        let got = if content_type.is_empty() {
            "none".to_owned()
        } else {
            format!("{content_type:?}")
        };
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json; got {got}"),
        );
    }
    let limit = state.body_limit;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                if bytes.len() + c.len() > limit {
                    return too_large();
                }
                bytes.extend_from_slice(&c);
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            }
        }
    }
    let report = match state.validator.check(&bytes) {
        Ok(r) => r,
        Err(refused) => return refuse(&state, refused).await,
    };
    if let Some(key) = req.headers().get("idempotency-key") {
        let key = key.to_str().unwrap_or("").trim();
        if !key.eq_ignore_ascii_case(&report.report_id) {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the Idempotency-Key header ({key:?}) must equal the body's report_id ({})",
                    report.report_id
                ),
            );
        }
    }
    if let Err(refused) = source_admits_cluster(&req, &state, &report.cluster_uuid) {
        return source_refused(refused);
    }
    if let Err(wait) = state.limiter.take(&report.cluster_uuid) {
        return with_reason(
            "cluster_rate",
            too_many(
                wait,
                format!(
                    "too many reports from cluster {}; retry after {wait} s",
                    report.cluster_uuid
                ),
            ),
        );
    }
    let (reply, answer) = oneshot::channel();
    let report_id = report.report_id.clone();
    match state.queue.try_send(Submission { report, reply }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            return with_reason(
                "queue_full",
                too_many(2, "the receiver is busy; retry after 2 s".to_owned()),
            );
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the receiver is stopping");
        }
    }
    match answer.await {
        Ok(Ok(Outcome::Stored)) => {
            HttpResponse::Created().json(json!({ "status": "stored", "report_id": report_id }))
        }
        Ok(Ok(Outcome::Duplicate)) => {
            HttpResponse::Ok().json(json!({ "status": "duplicate", "report_id": report_id }))
        }
        Ok(Err(_)) | Err(_) => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .json(json!({ "error": "the report could not be stored; retry after 5 s" })),
    }
}

/// Answers a refused body, after keeping it in the quarantine when it was a report: `400`
/// naming the problem for a body no retry can cure (not JSON, an unknown version, a schema
/// violation), `202 {"status":"quarantined"}` for an implausible one, so that the reporter
/// does not send it again. A 202 is sent only once the report is kept; with
/// `--quarantine-max 0` an implausible report is answered `422` instead (refused, not kept).
/// One refused report is kept at a time per receiver: while one is being written, an
/// implausible report is answered `429` (retry later) and a 400 is answered without keeping.
pub(super) async fn refuse(state: &State, refused: crate::validate::Refused) -> HttpResponse {
    use crate::validate::Invalid;
    use actix_web::http::StatusCode;
    let reason = refused.error.reason();
    tracing::debug!(reason, error = %refused.error, "refused a report");
    let implausible = matches!(refused.error, Invalid::Implausible { .. });
    let kept = if state.quarantine_max == 0 || refused.body.is_none() {
        None
    } else if let Ok(_one) = state.keeping.try_acquire() {
        let now = chrono::Utc::now().timestamp_micros();
        let kept = crate::quarantine::keep(&state.store, &refused, now, state.quarantine_max).await;
        // The gauges are read from the database at each scrape (the quarantine is shared).
        if let Err(e) = &kept {
            tracing::warn!(error = %e, reason, "could not keep a refused report in the quarantine");
        }
        Some(kept.is_ok())
    } else if implausible {
        return with_reason(
            "quarantine_busy",
            too_many(1, "the quarantine is busy; retry after 1 s".to_owned()),
        );
    } else {
        None
    };
    match refused.error {
        Invalid::Implausible { reason, detail } => match kept {
            Some(true) => with_reason(
                reason,
                HttpResponse::Accepted().json(json!({
                    "status": "quarantined",
                    "reason": reason,
                    "detail": detail,
                    "report_id": refused.report_id,
                })),
            ),
            None => with_reason(
                reason,
                HttpResponse::UnprocessableEntity().json(json!({
                    "error": format!("the report is implausible and not kept ({reason}): {detail}"),
                    "reason": reason,
                })),
            ),
            Some(false) => HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .json(json!({ "error": "the report could not be kept; retry after 5 s" })),
        },
        refusal => with_reason(
            reason,
            error(
                StatusCode::BAD_REQUEST,
                crate::validate::printable(&refusal.to_string()),
            ),
        ),
    }
}
