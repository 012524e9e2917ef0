//! Ingest statuses: what is stored (201), what is a duplicate (200), and what is refused (400,
//! 413, 415, 429) with nothing stored, on SQLite and (when configured) Postgres.

mod common;

use common::{backends, client, overview, post, post_with, seed, start, start_with, SEED};
use electric_telemetry::REPORT_VERSION;
use electric_telemetry_report::LEVELLED_REPORT_VERSION;
use serde_json::{json, Value};

#[actix_rt::test]
async fn the_seed_report_is_stored_as_sent_and_counted() {
    for b in backends("seed").await {
        let running = start(&b.db).await;
        let http = client();
        let answer = post_with(
            &http,
            &running,
            SEED.as_bytes().to_vec(),
            Some("application/json"),
            &[],
        )
        .await;
        assert_eq!(answer.status, 201, "{}: {answer:?}", b.name);
        assert_eq!(answer.body["status"], "stored");
        let stored = running
            .store()
            .raw_body("6f1c1f5e-8f4a-4a8e-9d0c-3b2f0e6f9a10")
            .await
            .unwrap();
        assert_eq!(
            stored,
            Some(serde_json::to_string(&seed()).unwrap()),
            "{}: the report kept as canonical compact JSON",
            b.name
        );
        let o = overview(&http, &running, 3, "2023-09-20").await;
        assert_eq!((o.applications, o.instances), (1, 1), "{}", b.name);
        assert_eq!(o.totals["operations_from_pg"], 1);
        assert_eq!(o.totals["transactions_from_pg"], 2);
        assert_eq!(o.completeness.reports, 1);
        assert_eq!(o.by_electric_version[0].value, "0.5.3-28-gf78187e");
        assert_eq!(o.by_pg_version[0].value, "14.9");
        assert_eq!(o.by_os[0].value, "unix/linux");
        assert_eq!(o.per_day.len(), 3);
        assert_eq!(o.per_day[1].day, "2023-09-19");
        assert_eq!(o.per_day[1].applications, 1);
        assert_eq!(
            o.summary_line(),
            "1 application, 1 instance, 1 operation from Postgres, 0 operations sent to clients"
        );
        running.stop().await;
        b.finish().await;
    }
}

#[actix_rt::test]
async fn a_duplicate_answers_2xx_and_stores_nothing() {
    for b in backends("duplicate").await {
        let running = start(&b.db).await;
        let http = client();
        let report = seed();
        assert_eq!(post(&http, &running, &report).await.status, 201);
        // The same report again, as a retry would send it, and re-serialised differently.
        let again = post(&http, &running, &report).await;
        assert_eq!(again.status, 200, "{}: {again:?}", b.name);
        assert_eq!(again.body["status"], "duplicate");
        let pretty = serde_json::to_string_pretty(&report).unwrap();
        let third = post_with(&http, &running, pretty, Some("application/json"), &[]).await;
        assert_eq!(third.status, 200);
        assert_eq!(running.store().raw_count().await.unwrap(), 1);
        let o = overview(&http, &running, 3, "2023-09-20").await;
        assert_eq!(
            o.totals["operations_from_pg"], 1,
            "{}: counted once",
            b.name
        );
        assert_eq!(o.completeness.reports, 1);
        assert_eq!(o.completeness.duplicates_refused, 2);
        running.stop().await;
        b.finish().await;
    }
}

/// (what, body, content type, headers, status, words the error must contain)
type Case = (
    &'static str,
    Vec<u8>,
    Option<&'static str>,
    Vec<(&'static str, &'static str)>,
    u16,
    Vec<&'static str>,
);

#[actix_rt::test]
async fn refused_bodies_get_their_status_and_name_what_is_wrong() {
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = seed();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let json = Some("application/json");
    // (what, body, content type, headers, status, words the error must contain)
    let mut padded = SEED.as_bytes().to_vec();
    padded.splice(1..1, std::iter::repeat_n(b' ', 64 * 1024));
    // The versions named in the errors follow the library's, whatever it is now.
    let unknown_version: &str =
        Box::leak(format!("report_version {}", LEVELLED_REPORT_VERSION + 1).into_boxed_str());
    let accepted_version: &str =
        Box::leak(format!("accepts report_version {REPORT_VERSION}").into_boxed_str());
    let cases: Vec<Case> = vec![
        ("oversized", padded, json, vec![], 413, vec!["65536 bytes"]),
        (
            "malformed",
            b"{\"report_id\": ".to_vec(),
            json,
            vec![],
            400,
            vec!["not JSON"],
        ),
        ("empty", Vec::new(), json, vec![], 400, vec!["not JSON"]),
        (
            "schema-invalid type",
            with(&|v| v["data"]["environment"]["cores"] = json!("8")),
            json,
            vec![],
            400,
            vec!["/data/environment/cores", "integer"],
        ),
        (
            // A later release's added optional field is accepted (see
            // a_report_with_fields_from_a_later_release_is_accepted_stored_and_counted), but a
            // known field of the wrong type is not.
            "a known field of the wrong type beside a new one",
            with(&|v| {
                v["data"]["usage"]["new_counter"] = json!(1);
                v["data"]["usage"]["initial_syncs"] = json!("1");
            }),
            json,
            vec![],
            400,
            vec!["/data/usage/initial_syncs", "integer"],
        ),
        (
            "schema-invalid missing field",
            with(&|v| {
                v["data"]["usage"]
                    .as_object_mut()
                    .unwrap()
                    .remove("initial_syncs");
            }),
            json,
            vec![],
            400,
            vec!["initial_syncs"],
        ),
        (
            "schema-invalid uuid",
            with(&|v| v["report_id"] = json!("not-a-uuid")),
            json,
            vec![],
            400,
            vec!["/report_id", "uuid"],
        ),
        (
            "unknown version",
            with(&|v| v["report_version"] = json!(LEVELLED_REPORT_VERSION + 1)),
            json,
            vec![],
            400,
            vec![unknown_version, accepted_version],
        ),
        (
            "missing version",
            with(&|v| {
                v.as_object_mut().unwrap().remove("report_version");
            }),
            json,
            vec![],
            400,
            vec!["(missing)", accepted_version],
        ),
        (
            "text content type",
            SEED.as_bytes().to_vec(),
            Some("text/plain"),
            vec![],
            415,
            vec!["application/json", "text/plain"],
        ),
        (
            "no content type",
            SEED.as_bytes().to_vec(),
            None,
            vec![],
            415,
            vec!["application/json", "none"],
        ),
        (
            "idempotency key of another report",
            SEED.as_bytes().to_vec(),
            json,
            vec![("idempotency-key", "0b6f7a4e-3d5c-4f7e-9a53-7f0f2b1d5e11")],
            400,
            vec!["Idempotency-Key", "report_id"],
        ),
    ];
    for b in backends("refused").await {
        let running = start(&b.db).await;
        let http = client();
        for (what, body, ct, headers, status, words) in &cases {
            let answer = post_with(&http, &running, body.clone(), *ct, headers).await;
            assert_eq!(answer.status, *status, "{}: {what}: {answer:?}", b.name);
            let message = answer.body["error"].as_str().unwrap_or_default();
            for w in words {
                assert!(
                    message.contains(w),
                    "{}: {what}: {message:?} lacks {w:?}",
                    b.name
                );
            }
        }
        assert_eq!(
            running.store().raw_count().await.unwrap(),
            0,
            "{}: nothing stored",
            b.name
        );
        let o = overview(&http, &running, 3, "2023-09-20").await;
        assert_eq!(o.applications, 0);
        assert_eq!(o.completeness.reports, 0);
        // The same body with the right content type is accepted: the refusals were about
        // what the cases changed.
        let ok = post_with(&http, &running, SEED.as_bytes().to_vec(), json, &[]).await;
        assert_eq!(ok.status, 201, "{}", b.name);
        running.stop().await;
        b.finish().await;
    }
}

#[actix_rt::test]
async fn a_flooding_cluster_gets_429_with_retry_after_and_others_do_not() {
    for b in backends("flood").await {
        let running = start_with(&b.db, |c| {
            c.cluster_burst = 3;
            c.cluster_per_hour = 1;
        })
        .await;
        let http = client();
        let report = |cluster: &str| {
            let mut v = seed();
            v["report_id"] = json!(uuid::Uuid::new_v4().to_string());
            v["data"]["environment"]["electric_cluster_uuid"] = json!(cluster);
            v
        };
        let flooder = uuid::Uuid::new_v4().to_string();
        for _ in 0..3 {
            assert_eq!(post(&http, &running, &report(&flooder)).await.status, 201);
        }
        let refused = post(&http, &running, &report(&flooder)).await;
        assert_eq!(refused.status, 429, "{}: {refused:?}", b.name);
        let wait: u64 = refused
            .retry_after
            .as_deref()
            .and_then(|s| s.parse().ok())
            .expect("Retry-After in seconds");
        assert!(wait >= 1, "Retry-After {wait}");
        let other = post(&http, &running, &report(&uuid::Uuid::new_v4().to_string())).await;
        assert_eq!(
            other.status, 201,
            "{}: another cluster is not limited",
            b.name
        );
        assert_eq!(running.store().raw_count().await.unwrap(), 4);
        running.stop().await;
        b.finish().await;
    }
}

#[actix_rt::test]
async fn the_page_is_html_without_scripts_or_remote_assets() {
    for b in backends("page").await {
        let running = start(&b.db).await;
        let http = client();
        let mut report = seed();
        report["data"]["electric_version"] = json!("<script>alert(1)</script>");
        assert_eq!(post(&http, &running, &report).await.status, 201);
        let mut res = http
            .get(format!(
                "http://{}/?days=3&until=2023-09-20",
                running.addr()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let html = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        assert!(html.contains("<svg"), "charts are inline SVG");
        assert!(html.contains("&lt;script&gt;"), "values are escaped");
        assert!(!html.contains("<script"), "no script at all");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing remote"
        );
        assert!(html.contains("operations_from_pg"));
        running.stop().await;
        b.finish().await;
    }
}

/// Overload: while the database is locked by someone else, the writer cannot commit, its queue
/// fills, and further reports get 429 with Retry-After at once (never a hang); once the lock
/// is gone every report that was queued is committed and answered 201. SQLite only: the lock
/// is a second connection's write transaction on the same file.
#[actix_rt::test]
async fn a_full_write_queue_answers_429_with_retry_after() {
    use sqlx::{Connection, Executor};
    let mut all = backends("overload").await;
    let b = all.remove(0);
    for other in all {
        other.finish().await;
    }
    let running = start_with(&b.db, |c| {
        c.queue = 2;
        c.cluster_burst = 1000;
    })
    .await;
    let mut blocker = sqlx::AnyConnection::connect(&format!("sqlite://{}", b.db))
        .await
        .unwrap();
    blocker.execute("BEGIN IMMEDIATE").await.unwrap();
    let addr = running.addr();
    let senders: Vec<_> = (0..10)
        .map(|_| {
            let mut v = seed();
            v["report_id"] = json!(uuid::Uuid::new_v4().to_string());
            actix_rt::spawn(async move {
                let res = client()
                    .post(format!("http://{addr}/"))
                    .insert_header(("content-type", "application/json"))
                    .send_body(serde_json::to_vec(&v).unwrap())
                    .await
                    .expect("POST");
                let retry = res
                    .headers()
                    .get("retry-after")
                    .map(|h| h.to_str().unwrap().to_owned());
                (res.status().as_u16(), retry)
            })
        })
        .collect();
    // The writer takes everything waiting into one batch, so at most two reports in its hands
    // and two queued: at least six are refused while the lock is held. Wait for them
    // (bounded), then let the writer through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while senders.iter().filter(|s| s.is_finished()).count() < 6 {
        assert!(std::time::Instant::now() < deadline, "refusals never came");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    blocker.execute("ROLLBACK").await.unwrap();
    let (mut stored, mut refused, mut busy) = (0, 0, 0);
    for s in senders {
        match s.await.unwrap() {
            (201, _) => stored += 1,
            (429, Some(retry)) => {
                assert!(retry.parse::<u64>().unwrap() >= 1);
                refused += 1;
            }
            // On a slow machine the reports the writer holds or has queued
            // can outwait SQLite's busy timeout behind the lock: a 503 that stores nothing.
            (503, Some(_)) => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(refused >= 6, "{refused} refused");
    assert!(busy <= 4, "{busy} answered 503");
    assert_eq!(stored + refused + busy, 10);
    assert_eq!(running.store().raw_count().await.unwrap(), stored as u64);
    running.stop().await;
    b.finish().await;
}

/// A rolling upgrade: a report of the current version and one from a later release that added
/// optional fields everywhere (the envelope, the payload, the environment, the usage, a
/// summary) go into one receiver. Both are accepted, the later one is stored with its new
/// fields, and the answers count both exactly. Every ingest answer, a refusal too, names the
/// versions the receiver accepts.
#[actix_rt::test]
async fn a_report_with_fields_from_a_later_release_is_accepted_stored_and_counted() {
    for b in backends("future_fields").await {
        let running = start(&b.db).await;
        let http = client();
        let current = common::report_for("a1336abd-804c-4d0c-a06a-c73da6dd148e");
        let mut later = common::report_for("b2447bce-915d-4e1d-b17b-d84eb7ee259f");
        later["data"]["usage"]["operations_from_pg"] = serde_json::json!(41);
        later["sent_by"] = serde_json::json!("a later release");
        later["data"]["deployment"] = serde_json::json!({"kind": "container"});
        later["data"]["environment"]["cpu_model"] = serde_json::json!("EPYC");
        later["data"]["environment"]["os"]["version"] = serde_json::json!("6.1");
        later["data"]["resources"]["open_files"] = serde_json::json!(12);
        later["data"]["usage"]["shapes_active"] = serde_json::json!(3);
        later["data"]["usage"]["concurrent_clients"]["p99"] = serde_json::json!(0);
        for r in [&current, &later] {
            let answer = post(&http, &running, r).await;
            assert_eq!(answer.status, 201, "{}: {answer:?}", b.name);
            assert_eq!(answer.versions.as_deref(), Some("2, 3"), "{}", b.name);
        }
        let stored = running
            .store()
            .raw_body(later["report_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(stored, later, "{}: kept whole, new fields included", b.name);
        // The library's own Report reads it too, and writes it back without losing a field.
        let read: electric_telemetry::Report = serde_json::from_value(later.clone()).unwrap();
        let written = serde_json::to_value(&read).unwrap();
        for path in [
            "/sent_by",
            "/data/deployment/kind",
            "/data/environment/cpu_model",
            "/data/environment/os/version",
            "/data/resources/open_files",
            "/data/usage/shapes_active",
            "/data/usage/concurrent_clients/p99",
        ] {
            assert_eq!(
                written.pointer(path),
                later.pointer(path),
                "{}: {path}",
                b.name
            );
        }
        let o = overview(&http, &running, 3, "2023-09-20").await;
        assert_eq!(o.applications, 2, "{}", b.name);
        assert_eq!(o.totals["operations_from_pg"], 1 + 41, "{}", b.name);
        assert_eq!(o.completeness.reports, 2, "{}", b.name);
        // A refusal names the accepted versions too.
        let mut newer = common::report_for("c3558cdf-a26e-4f2f-c28c-e95fc8ff36a0");
        newer["report_version"] = serde_json::json!(4);
        let refused = post(&http, &running, &newer).await;
        assert_eq!(refused.status, 400, "{}: {refused:?}", b.name);
        assert_eq!(refused.versions.as_deref(), Some("2, 3"), "{}", b.name);
        running.stop().await;
        b.finish().await;
    }
}

/// A clock not believed: a report dated five hours ahead of the receiver, one dated 2022, and
/// one dated before its own `last_reported` count on the day they were received, flagged in
/// `completeness.clock_skewed`; today is partial; `peak_instances` is the most instances on
/// one day.
#[actix_rt::test]
async fn reports_with_clocks_not_believed_count_on_the_day_received() {
    for b in backends("clock_skew").await {
        let running = start(&b.db).await;
        let http = client();
        let now = chrono::Utc::now();
        let today = now.format("%Y-%m-%d").to_string();
        let cases = [
            (now + chrono::Duration::hours(5), chrono::Duration::hours(4)),
            (
                chrono::DateTime::parse_from_rfc3339("2022-06-01T12:00:00Z")
                    .unwrap()
                    .to_utc(),
                chrono::Duration::hours(4),
            ),
        ];
        for (i, (ts, window)) in cases.iter().enumerate() {
            let mut r = common::report_for(&format!("0000000{i}-0000-4000-8000-000000000000"));
            r["timestamp"] = json!(ts.to_rfc3339());
            r["last_reported"] = json!((*ts - *window).to_rfc3339());
            r["data"]["usage"]["operations_from_pg"] = json!(10 + i);
            let answer = post(&http, &running, &r).await;
            assert_eq!(answer.status, 201, "{}: {answer:?}", b.name);
        }
        // And one the reporter dated an hour ago: believed.
        let mut fine = common::report_for("00000009-0000-4000-8000-000000000000");
        fine["timestamp"] = json!((now - chrono::Duration::minutes(1)).to_rfc3339());
        fine["last_reported"] = json!((now - chrono::Duration::hours(4)).to_rfc3339());
        assert_eq!(post(&http, &running, &fine).await.status, 201);
        let o = overview(&http, &running, 1, &today).await;
        // A report dated a minute ago may fall on yesterday just after midnight.
        let believed_today = (now - chrono::Duration::minutes(1))
            .format("%Y-%m-%d")
            .to_string()
            == today;
        assert_eq!(
            o.applications,
            2 + u64::from(believed_today),
            "{}: {o:?}",
            b.name
        );
        assert_eq!(o.completeness.clock_skewed, 2, "{}", b.name);
        assert_eq!(
            o.totals["operations_from_pg"],
            10 + 11 + u64::from(believed_today),
            "{}",
            b.name
        );
        assert!(o.per_day[0].partial, "{}: today is partial", b.name);
        assert_eq!(o.peak_instances, o.per_day[0].instances, "{}", b.name);
        assert!(o.peak_instances >= 2, "{}", b.name);
        let past = overview(&http, &running, 3, "2022-06-02").await;
        assert_eq!(
            past.applications, 0,
            "{}: not counted on its own date",
            b.name
        );
        assert!(past.per_day.iter().all(|d| !d.partial), "{}", b.name);
        running.stop().await;
        b.finish().await;
    }
}

/// `/api/activity`'s and `/api/retention`'s parameters: what is wrong is named with what is
/// accepted, never a guess.
#[actix_rt::test]
async fn activity_refuses_bad_parameters_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cp.db").display().to_string();
    let running = start(&db).await;
    let http = client();
    for (query, named) in [
        ("period=year", "period must be day, week, month or quarter"),
        (
            "period=week&periods=0",
            "periods must be a whole number from 1 to 120",
        ),
        (
            "period=week&periods=121",
            "periods must be a whole number from 1 to 120",
        ),
        (
            "period=week&periods=abc",
            "periods must be a whole number from 1 to 120",
        ),
        ("period=month&until=2026-13-01", "until must be a date like"),
        ("retention:period=day", "period must be week or month"),
        (
            "retention:cohorts=0",
            "cohorts must be a whole number from 1 to 120",
        ),
        ("retention:until=yesterday", "until must be a date like"),
        (
            "min_active_days=0",
            "min_active_days must be a whole number from 1 to 3660",
        ),
        (
            "retention:min_active_days=-2",
            "min_active_days must be a whole number from 1 to 3660",
        ),
        (
            "overview:min_active_days=3661",
            "min_active_days must be a whole number from 1 to 3660",
        ),
        (
            "per_day.csv:min_active_days=2%3B%20DROP%20TABLE%20clusters",
            "min_active_days must be a whole number from 1 to 3660",
        ),
    ] {
        let (api, query) = query.split_once(':').unwrap_or(("activity", query));
        let mut res = http
            .get(format!("http://{}/api/{api}?{query}", running.addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 400, "{query}");
        let body: Value = res.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(named), "{query}: {error}");
    }
    // The defaults: twelve ISO weeks up to today's.
    let mut res = http
        .get(format!("http://{}/api/activity", running.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().limit(1 << 20).await.unwrap();
    assert_eq!(body["period"], "week");
    let periods = body["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 12);
    assert_eq!(periods[11]["partial"], true);
    assert_eq!(periods[0]["partial"], false);
    running.stop().await;
}

/// A fleet at mixed levels (issue 16): a `basic` report (version 3: no usage, no resources),
/// a `usage` one (version 3: no resources) and a full one (version 2), as the reporter's own
/// `Report::at_level` writes them, are all accepted and count as activity; the volume totals
/// hold only what was sent. A `basic` instance's reports carry no `uptime`, which the
/// receiver uses to tell a restart from a missed window: a gap between two of them counts as
/// a restart, never as a loss.
#[actix_rt::test]
async fn reports_at_every_level_are_accepted_and_a_basic_gap_is_not_a_loss() {
    use electric_telemetry_report::{Level, Report};
    let at = |cluster: &str, level: Level, ops: u64| -> Value {
        let mut v = common::report_for(cluster);
        v["data"]["usage"]["operations_from_pg"] = json!(ops);
        let report: Report = serde_json::from_value(v).unwrap();
        serde_json::to_value(report.at_level(level)).unwrap()
    };
    for b in backends("mixed_levels").await {
        let running = start(&b.db).await;
        let http = client();
        let basic = at("a1336abd-804c-4d0c-a06a-c73da6dd148e", Level::Basic, 100);
        let usage = at("b2447bce-915d-4e1d-b17b-d84eb7ee259f", Level::Usage, 20);
        let full = at("c3558cdf-a26e-4f2f-a28c-e95fc8ff36a0", Level::Full, 3);
        assert!(basic["data"].get("usage").is_none() && basic["report_version"] == 3);
        assert!(usage["data"].get("resources").is_none() && usage["level"] == "usage");
        assert_eq!(full["report_version"], 2);
        // The basic instance again, an hour later, with a gap before its window.
        let mut later = basic.clone();
        later["report_id"] = json!(uuid::Uuid::new_v4().to_string());
        later["last_reported"] = json!("2023-09-19T15:40:45.972021Z");
        later["timestamp"] = json!("2023-09-19T15:50:45.972021Z");
        for r in [&basic, &usage, &full, &later] {
            let answer = post(&http, &running, r).await;
            assert_eq!(answer.status, 201, "{}: {answer:?}", b.name);
        }
        let o = overview(&http, &running, 3, "2023-09-20").await;
        assert_eq!(
            o.applications, 3,
            "{}: every level counts as activity",
            b.name
        );
        assert_eq!(o.instances, 3, "{}", b.name);
        assert_eq!(
            o.totals["operations_from_pg"],
            20 + 3,
            "{}: the basic cluster's volume was never sent",
            b.name
        );
        assert_eq!(o.completeness.reports, 4, "{}", b.name);
        assert_eq!(
            o.completeness.missed_windows, 0,
            "{}: a gap without uptime is a restart, not a loss",
            b.name
        );
        running.stop().await;
        b.finish().await;
    }
}
