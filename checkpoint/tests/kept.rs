//! Answers about finished periods are kept in memory (`store::cache`) and must never be
//! staler than the database: after a late report, after a report that stretches an
//! instance's span over a finished window, and after a cluster reaches `min_active_days`
//! today, the receiver that kept them answers exactly what a receiver started afresh on the
//! same database computes.

mod common;

use checkpoint::Running;
use chrono::{Days, Utc};
use common::{backends, client, post, report_for, start_with};
use serde_json::{json, Value};

fn day(n: u64) -> chrono::NaiveDate {
    Utc::now().date_naive() - Days::new(n)
}

/// A report of `cluster`'s `instance` at noon `ago` days ago (0: an hour ago), the first of
/// its process.
fn report(cluster: &str, instance: &str, ago: u64) -> Value {
    let mut r = report_for(cluster);
    let ts = if ago == 0 {
        Utc::now() - chrono::Duration::hours(1)
    } else {
        day(ago).and_hms_opt(12, 0, 0).unwrap().and_utc()
    };
    let text = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    r["timestamp"] = json!(text(ts));
    r["last_reported"] = json!(text(ts - chrono::Duration::hours(4)));
    r["data"]["environment"]["electric_instance_id"] = json!(instance);
    r["data"]["resources"]["uptime"] = json!(600);
    r
}

/// Every answer about finished periods, as JSON.
async fn answers(running: &Running) -> Vec<(String, Value)> {
    let until = day(3).format("%Y-%m-%d").to_string();
    let mut out = Vec::new();
    for path in [
        format!("overview?days=3&until={until}"),
        format!("overview?days=3&until={until}&min_active_days=2"),
        format!("activity?period=day&periods=6&until={until}"),
        format!("activity?period=day&periods=6&until={until}&min_active_days=2"),
        format!("retention?period=week&cohorts=3&until={until}&min_active_days=2"),
        // The current period too: the finished ones beside it come from the cache.
        "activity?period=day&periods=8".to_owned(),
    ] {
        let url = format!("http://{}/api/{path}", running.addr());
        let mut res = client().get(url).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        out.push((path, res.json().limit(1 << 22).await.unwrap()));
    }
    out
}

#[actix_rt::test]
async fn kept_answers_follow_late_reports_stretched_spans_and_new_active_days() {
    for b in backends("kept").await {
        let open = || start_with(&b.db, |c| c.source_new_clusters_per_hour = 1000);
        let running = open().await;
        let http = client();
        let send = |r: Value| {
            let (http, running) = (&http, &running);
            async move {
                let a = post(http, running, &r).await;
                assert!(a.status == 201, "{}: {a:?}", b.name);
            }
        };
        send(report("a1a1a1a1-0000-4000-8000-000000000001", "a-1", 4)).await;
        send(report("b2b2b2b2-0000-4000-8000-000000000002", "b-1", 7)).await;
        send(report("b2b2b2b2-0000-4000-8000-000000000002", "b-1", 6)).await;
        let before = answers(&running).await;
        assert_eq!(before, answers(&running).await, "{}: asked twice", b.name);
        let steps: [(&str, Vec<Value>); 3] = [
            // A late report on a finished day.
            (
                "a late report",
                vec![report("c3c3c3c3-0000-4000-8000-000000000003", "c-1", 3)],
            ),
            // b-1 last reported 6 days ago; today's report stretches its span over the
            // finished window (instances are counted by span).
            (
                "a stretched span",
                vec![report("b2b2b2b2-0000-4000-8000-000000000002", "b-1", 0)],
            ),
            // a1 was active on one day; today it reaches two, so min_active_days=2 counts it
            // in every earlier answer.
            (
                "a second active day",
                vec![report("a1a1a1a1-0000-4000-8000-000000000001", "a-2", 0)],
            ),
        ];
        let mut last = before;
        for (what, reports) in steps {
            for r in reports {
                send(r).await;
            }
            let kept = answers(&running).await;
            let fresh_receiver = open().await;
            let fresh = answers(&fresh_receiver).await;
            fresh_receiver.stop().await;
            for ((path, k), (_, f)) in kept.iter().zip(&fresh) {
                assert_eq!(k, f, "{}: after {what}: {path}", b.name);
            }
            assert_ne!(kept, last, "{}: {what} changes an answer", b.name);
            last = kept;
        }
        running.stop().await;
        b.finish().await;
    }
}
