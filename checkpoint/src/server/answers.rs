//! The answers' handlers: readiness, the overview, activity and retention, the exports and
//! the page.

use super::*;

/// `200 ready` while writes succeed, `503` with `Retry-After` while they fail (see
/// [`Store::ready`]: a real write at most once a second).
pub(super) async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.store.ready().await {
        HttpResponse::Ok().body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .body("not ready: writes to the database fail\n")
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Window {
    days: Option<String>,
    until: Option<String>,
    min_active_days: Option<String>,
}

/// Reads `days` (1–3660, default 30) and `until` (`YYYY-MM-DD`, default today in UTC).
/// A query parameter `name` that is a whole number from 1 to `max`; `default` when absent.
fn count(value: Option<&str>, name: &str, default: u32, max: u32) -> Result<u32, String> {
    match value {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "{name} must be a whole number from 1 to {max}, got {s:?}"
            )),
        },
    }
}

/// Reads `min_active_days` (1–3660, default 1): which clusters an answer counts.
pub(super) fn filter(value: Option<&str>) -> Result<crate::store::Filter, String> {
    Ok(crate::store::Filter {
        min_active_days: count(value, "min_active_days", 1, 3660)?,
    })
}

pub(super) fn window(q: &Window) -> Result<(u32, chrono::NaiveDate), String> {
    let days = count(q.days.as_deref(), "days", 30, 3660)?;
    let until = match q.until.as_deref() {
        None | Some("") => chrono::Utc::now().date_naive(),
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| format!("until must be a date like 2026-11-25, got {s:?}"))?,
    };
    Ok((days, until))
}

pub(super) async fn overview_json(q: web::Query<Window>, state: web::Data<State>) -> HttpResponse {
    let (days, until) = match window(&q) {
        Ok(w) => w,
        Err(e) => return error(actix_web::http::StatusCode::BAD_REQUEST, e),
    };
    let filter = match filter(q.min_active_days.as_deref()) {
        Ok(f) => f,
        Err(e) => return error(actix_web::http::StatusCode::BAD_REQUEST, e),
    };
    match state.store.overview_for(days, until, filter).await {
        Ok(o) => HttpResponse::Ok().json(o),
        Err(e) => {
            tracing::error!(error = %e, "overview failed");
            error(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the overview could not be read",
            )
        }
    }
}

pub(super) fn csv(body: String, name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(body)
}

/// `GET /api/per_day.csv?days=N&until=D`: see [`crate::export`].
pub(super) async fn per_day_csv(q: web::Query<Window>, state: web::Data<State>) -> HttpResponse {
    let (days, until) = match window(&q) {
        Ok(w) => w,
        Err(e) => return error(actix_web::http::StatusCode::BAD_REQUEST, e),
    };
    let filter = match filter(q.min_active_days.as_deref()) {
        Ok(f) => f,
        Err(e) => return error(actix_web::http::StatusCode::BAD_REQUEST, e),
    };
    match state.store.overview_for(days, until, filter).await {
        Ok(o) => csv(crate::export::per_day_csv(&o), "per_day.csv"),
        Err(e) => {
            tracing::error!(error = %e, "overview failed");
            error(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the overview could not be read",
            )
        }
    }
}

/// `GET /api/activity.csv`, with `/api/activity`'s parameters.
pub(super) async fn activity_csv(q: web::Query<Periods>, state: web::Data<State>) -> HttpResponse {
    match activity_of(&q, &state).await {
        Ok(a) => csv(crate::export::activity_csv(&a), "activity.csv"),
        Err(refused) => refused,
    }
}

#[derive(Deserialize)]
pub(super) struct Span {
    from: Option<String>,
    until: Option<String>,
}

/// `GET /api/reports.ndjson?from=D&until=D` (both default to today): the stored raw reports
/// counted on those days, one per line, read page by page.
pub(super) async fn reports_ndjson(q: web::Query<Span>, state: web::Data<State>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let day = |v: &Option<String>, name: &str| match v.as_deref() {
        None | Some("") => Ok(chrono::Utc::now().date_naive()),
        Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| format!("{name} must be a date like 2026-11-25, got {s:?}")),
    };
    let (from, until) = match (day(&q.from, "from"), day(&q.until, "until")) {
        (Ok(f), Ok(u)) if f <= u => (f, u),
        (Ok(_), Ok(_)) => return error(StatusCode::BAD_REQUEST, "from must not be after until"),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let store = state.store.clone();
    let pages = futures_util::stream::unfold(Some(None::<(String, String)>), move |cursor| {
        let store = store.clone();
        async move {
            let cursor = cursor?;
            match crate::export::raw_page(&store, from, until, cursor).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let mut chunk = String::new();
                    for (_, _, body) in &rows {
                        chunk.push_str(body);
                        chunk.push('\n');
                    }
                    let next = rows
                        .last()
                        .map(|(d, id, _)| (d.clone(), id.clone()))
                        .filter(|_| rows.len() as i64 == crate::export::PAGE);
                    Some((
                        Ok::<_, actix_web::Error>(web::Bytes::from(chunk)),
                        next.map(Some),
                    ))
                }
                Err(e) => {
                    // The status is sent already: end the body early, and say so in the log.
                    tracing::error!(error = %e, "the report export failed part way");
                    Some((
                        Err(actix_web::error::ErrorInternalServerError("export failed")),
                        None,
                    ))
                }
            }
        }
    });
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(pages)
}

#[derive(Deserialize)]
pub(super) struct Periods {
    period: Option<String>,
    periods: Option<String>,
    until: Option<String>,
    min_active_days: Option<String>,
}

/// `GET /api/activity?period=day|week|month|quarter&periods=K&until=D`: see [`crate::activity`].
pub(super) async fn activity_json(q: web::Query<Periods>, state: web::Data<State>) -> HttpResponse {
    match activity_of(&q, &state).await {
        Ok(a) => HttpResponse::Ok().json(a),
        Err(refused) => refused,
    }
}

/// The activity `q` asks for, or the answer saying what was wrong.
pub(super) async fn activity_of(
    q: &Periods,
    state: &State,
) -> Result<crate::activity::Activity, HttpResponse> {
    use actix_web::http::StatusCode;
    let period = crate::activity::Period::parse(q.period.as_deref().unwrap_or("week"))
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let max = crate::activity::MAX_PERIODS;
    let periods = count(q.periods.as_deref(), "periods", 12, max)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let (_, until) = window(&Window {
        days: None,
        until: q.until.clone(),
        min_active_days: None,
    })
    .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let filter =
        filter(q.min_active_days.as_deref()).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    state
        .store
        .activity(period, periods, until, filter)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "activity failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the activity could not be read",
            )
        })
}

#[derive(Deserialize)]
pub(super) struct Cohorts {
    period: Option<String>,
    cohorts: Option<String>,
    until: Option<String>,
    min_active_days: Option<String>,
}

/// `GET /api/retention?period=week|month&cohorts=K&until=D`: see [`crate::activity::Cohort`].
pub(super) async fn retention_json(
    q: web::Query<Cohorts>,
    state: web::Data<State>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let period = match q.period.as_deref().unwrap_or("week") {
        "week" => crate::activity::Period::Week,
        "month" => crate::activity::Period::Month,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("period must be week or month, got {other:?}"),
            )
        }
    };
    let max = crate::activity::MAX_PERIODS;
    let cohorts = match count(q.cohorts.as_deref(), "cohorts", 12, max) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let until = match window(&Window {
        days: None,
        until: q.until.clone(),
        min_active_days: None,
    }) {
        Ok((_, until)) => until,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let filter = match filter(q.min_active_days.as_deref()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.store.retention(period, cohorts, until, filter).await {
        Ok(r) => HttpResponse::Ok().json(r),
        Err(e) => {
            tracing::error!(error = %e, "retention failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the retention could not be read",
            )
        }
    }
}

pub(super) async fn page(q: web::Query<Window>, state: web::Data<State>) -> HttpResponse {
    let (days, until) = match window(&q) {
        Ok(w) => w,
        Err(e) => {
            return HttpResponse::BadRequest()
                .content_type("text/plain")
                .body(e)
        }
    };
    match state.store.overview(days, until).await {
        Ok(o) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(crate::page::render(&o)),
        Err(e) => {
            tracing::error!(error = %e, "overview failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain")
                .body("the overview could not be read")
        }
    }
}
