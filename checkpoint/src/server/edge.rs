//! What every request meets before its handler: the per-source connection cap, which address
//! serves what, the answers' token, the body deadline, and the metrics of each answer.

use super::*;

/// What the edge middleware needs.
pub(super) struct Edge {
    pub(super) path: String,
    pub(super) token: Option<crate::auth::ReadToken>,
    /// Set once bound, before any request.
    pub(super) answers_addr: std::sync::OnceLock<SocketAddr>,
    pub(super) body_timeout: Duration,
}

/// A request body with a deadline: past it, the stream ends with a timeout error and `fired`
/// is set, so that the answer becomes 408 whatever the handler made of the error.
pub(super) struct Deadline {
    pub(super) inner: actix_web::dev::Payload,
    pub(super) sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    pub(super) fired: std::rc::Rc<std::cell::Cell<bool>>,
}

impl futures_util::Stream for Deadline {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        if let Poll::Ready(item) = std::pin::Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.fired.set(true);
            return Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "body timeout"),
            ))));
        }
        Poll::Pending
    }
}

/// What [`edge_after`] needs of a request [`edge_before`] let through or answered.
pub(super) struct EdgeContext {
    pub(super) edge: std::sync::Arc<Edge>,
    pub(super) metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    pub(super) fired: std::rc::Rc<std::cell::Cell<bool>>,
    /// An ingest request on an address that serves ingest: its answer, whoever gives it (the
    /// handler, or the edge before or instead of it), names the accepted versions.
    pub(super) ingest: bool,
}

/// Routes by listener, checks the token, caps connections per source and puts a deadline on
/// the body; `Err` is the answer when the request goes no further.
pub(super) fn edge_before(
    edge: &std::sync::Arc<Edge>,
    mut req: actix_web::dev::ServiceRequest,
) -> (
    Result<actix_web::dev::ServiceRequest, actix_web::dev::ServiceResponse>,
    EdgeContext,
) {
    use actix_web::http::{Method, StatusCode};
    use actix_web::HttpMessage;
    let ingest = req.method() == Method::POST && req.path() == edge.path;
    let probe = matches!(req.path(), "/healthz" | "/readyz");
    let on_answers = edge
        .answers_addr
        .get()
        .map(|a| *a == req.app_config().local_addr());
    let over = req
        .conn_data::<crate::sources::Connection>()
        .is_some_and(|c| c.over);
    let early = if over {
        Some(with_reason(
            "source_connections",
            HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, "10"))
                .force_close()
                .json(
                    json!({ "error": "too many connections from this source; retry after 10 s" }),
                ),
        ))
    } else if match on_answers {
        // The ingest address serves ingest and the probes only; the answers address no ingest.
        Some(false) => !(ingest || probe),
        Some(true) => ingest,
        None => false,
    } {
        Some(error(StatusCode::NOT_FOUND, "not found"))
    } else if !(ingest || probe)
        && edge
            .token
            .as_ref()
            .is_some_and(|t| !t.allows(req.request()))
    {
        Some(
            HttpResponse::Unauthorized()
                .insert_header((
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"checkpoint\", charset=\"UTF-8\"",
                ))
                .json(json!({
                    "error": "the answers need the read token: Authorization: Bearer TOKEN, or HTTP Basic with the token as the password"
                })),
        )
    } else {
        None
    };
    let metrics = if ingest {
        req.app_data::<web::Data<State>>()
            .map(|s| s.metrics.clone())
    } else {
        None
    };
    let fired = std::rc::Rc::new(std::cell::Cell::new(false));
    let context = EdgeContext {
        edge: edge.clone(),
        metrics,
        fired: fired.clone(),
        ingest: ingest && on_answers != Some(true),
    };
    if let Some(res) = early {
        return (Err(req.into_response(res)), context);
    }
    let payload = req.take_payload();
    let deadline = Deadline {
        inner: payload,
        sleep: Box::pin(tokio::time::sleep(edge.body_timeout)),
        fired,
    };
    req.set_payload(actix_web::dev::Payload::Stream {
        payload: Box::pin(deadline),
    });
    (Ok(req), context)
}

/// Turns the answer into 408 when the body deadline fired, and counts every ingest answer.
pub(super) async fn edge_after(
    context: EdgeContext,
    answer: impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse, actix_web::Error>>,
) -> Result<actix_web::dev::ServiceResponse, actix_web::Error> {
    let mut res = answer.await?;
    if context.fired.get() {
        let timeout = with_reason(
            "body_timeout",
            HttpResponse::RequestTimeout().force_close().json(json!({
                "error": format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(context.edge.body_timeout)
                )
            })),
        );
        res = res.into_response(timeout);
    }
    if context.ingest {
        res.headers_mut().insert(
            header::HeaderName::from_static(VERSIONS_HEADER),
            versions_value(),
        );
    }
    if let Some(m) = &context.metrics {
        let reason = res
            .response()
            .extensions()
            .get::<crate::metrics::Reason>()
            .copied();
        m.answered(res.status().as_u16(), reason);
    }
    Ok(res)
}

/// The per-source checks of an ingest request, before its body is read.
pub(super) fn source_admits(
    req: &HttpRequest,
    state: &State,
) -> Result<(), crate::sources::Refusal> {
    let Some(key) = state.sources.source(req) else {
        return Ok(());
    };
    state.sources.take_report(key)
}

/// The per-source check of a report's cluster.
pub(super) fn source_admits_cluster(
    req: &HttpRequest,
    state: &State,
    cluster: &str,
) -> Result<(), crate::sources::Refusal> {
    let Some(key) = state.sources.source(req) else {
        return Ok(());
    };
    state.sources.take_cluster(key, cluster)
}

pub(super) fn source_refused(r: crate::sources::Refusal) -> HttpResponse {
    use crate::sources::Refusal;
    let (reason, wait, message) = match r {
        Refusal::PerMinute { retry_after } => (
            "source_rate",
            retry_after,
            format!("too many reports from this source; retry after {retry_after} s"),
        ),
        Refusal::NewClusters { retry_after } => (
            "source_new_clusters",
            retry_after,
            format!(
                "this source reported for too many distinct clusters this hour; retry after {retry_after} s"
            ),
        ),
    };
    let mut res = too_many(wait, message);
    res.extensions_mut().insert(crate::metrics::Reason(reason));
    res
}
