//! Plausibility and the quarantine: absurd figures and clocks never reach the answers, refused
//! reports are kept (bounded, once per `report_id`) with their reason, and a replay under new
//! rules stores each one that now passes exactly once. Every test runs on every configured
//! database.

mod common;

use common::{backends, client, overview, post, post_with, report_for, start_with, today};
use serde_json::{json, Value};

const CLUSTER: &str = "5b8a1a5e-3f4e-4a0b-9a34-0c6f2a1e7d11";

/// A report from `CLUSTER` covering the 4 hours up to now, with `operations_from_pg` = `ops`.
fn report(ops: Value) -> Value {
    let mut r = report_for(CLUSTER);
    let now = chrono::Utc::now();
    let began = now - chrono::Duration::hours(4);
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    r["timestamp"] = json!(fmt(now));
    r["last_reported"] = json!(fmt(began));
    r["data"]["usage"]["operations_from_pg"] = ops;
    r
}

fn with_times(mut r: Value, timestamp: &str, last_reported: &str) -> Value {
    r["timestamp"] = json!(timestamp);
    r["last_reported"] = json!(last_reported);
    r
}

#[actix_rt::test]
async fn absurd_figures_and_clocks_are_quarantined_never_counted() {
    for b in backends("q_absurd").await {
        let running = start_with(&b.db, |c| c.cluster_burst = 1000).await;
        let http = client();
        let believable = report(json!(1_000_000));
        assert_eq!(
            post(&http, &running, &believable).await.status,
            201,
            "{}",
            b.name
        );
        let cases = [
            (
                report(json!(1_000_000_000_000_000_000u64)),
                "counter_too_large",
            ),
            (report(json!(u64::MAX)), "counter_too_large"),
            (
                report(json!(18_446_744_073_709_551_616.0)),
                "counter_too_large",
            ),
            (
                with_times(
                    report(json!(1)),
                    "2099-01-01T00:00:00Z",
                    "2098-12-31T20:00:00Z",
                ),
                "timestamp_in_future",
            ),
            (
                with_times(
                    report(json!(1)),
                    "1970-01-01T04:00:00Z",
                    "1970-01-01T00:00:00Z",
                ),
                "timestamp_too_early",
            ),
            (
                with_times(
                    report(json!(1)),
                    "2026-11-20T00:00:00Z",
                    "2026-11-20T04:00:00Z",
                ),
                "window_negative",
            ),
            (
                with_times(
                    report(json!(1)),
                    "2026-11-20T00:00:00Z",
                    "2026-10-01T00:00:00Z",
                ),
                "window_too_long",
            ),
            (
                {
                    let mut r = report(json!(1));
                    r["data"]["environment"]["os"]["family"] = json!("un\u{0}ix");
                    r
                },
                "nul_in_string",
            ),
        ];
        for (r, reason) in &cases {
            let a = post(&http, &running, r).await;
            assert_eq!(a.status, 202, "{}: {reason}: {a:?}", b.name);
            assert_eq!(a.body["status"], "quarantined", "{}", b.name);
            assert_eq!(a.body["reason"], *reason, "{}: {a:?}", b.name);
            assert!(
                a.body["detail"].as_str().is_some_and(|d| d.len() > 20),
                "{}: the detail says why: {a:?}",
                b.name
            );
            let id = r["report_id"].as_str().unwrap();
            assert_eq!(running.store().raw_body(id).await.unwrap(), None);
            // Sent again (a reporter that lost the answer): kept once, answered the same.
            let again = post(&http, &running, r).await;
            assert_eq!((again.status, &again.body["reason"]), (202, &json!(reason)));
        }
        // The answers hold the believable report only, on every day the others claim.
        // (the window's last day, whether it covers today's believable report)
        for (until, here) in [("2100-01-01", 0), ("2036-01-01", 1), (&today(), 1)] {
            let o = overview(&http, &running, 3660, until).await;
            assert_eq!(o.completeness.reports, here, "{}: until {until}", b.name);
            assert_eq!(
                o.totals["operations_from_pg"],
                here * 1_000_000,
                "{}",
                b.name
            );
            assert_eq!(o.applications, here, "{}: until {until}", b.name);
        }
        let early = overview(&http, &running, 3660, "1979-12-31").await;
        assert_eq!((early.applications, early.completeness.reports), (0, 0));
        let kept = checkpoint::quarantine::totals(running.store())
            .await
            .unwrap();
        assert_eq!(
            kept.reports,
            cases.len() as u64,
            "{}: each kept once",
            b.name
        );
        let reasons = checkpoint::quarantine::list(running.store(), 1)
            .await
            .unwrap();
        let counted: u64 = reasons
            .iter()
            .filter(|r| r.reason == "counter_too_large")
            .map(|r| r.reports)
            .sum();
        assert_eq!(counted, 3, "{}: {reasons:?}", b.name);
        let nul = reasons
            .iter()
            .find(|r| r.reason == "nul_in_string")
            .unwrap();
        assert!(
            nul.samples[0].body.contains("un\\u0000ix"),
            "{}: kept escaped: {:?}",
            b.name,
            nul.samples[0]
        );
        // /metrics shows the quarantine and the reasons.
        let mut m = http
            .get(format!("http://{}/metrics", running.addr()))
            .send()
            .await
            .unwrap();
        let text = String::from_utf8(m.body().await.unwrap().to_vec()).unwrap();
        assert!(
            text.contains(&format!("checkpoint_quarantine_reports {}", cases.len())),
            "{}: {text}",
            b.name
        );
        assert!(
            text.contains("outcome=\"quarantined\",reason=\"counter_too_large\"} 6"),
            "{}: {text}",
            b.name
        );
        running.stop().await;
        b.finish().await;
    }
}

#[actix_rt::test]
async fn schema_and_version_refusals_answer_400_and_are_kept_for_a_replay() {
    for b in backends("q_refused").await {
        let running = start_with(&b.db, |_| {}).await;
        let http = client();
        let mut newer = report(json!(5));
        newer["report_version"] = json!(99);
        let a = post(&http, &running, &newer).await;
        assert_eq!(a.status, 400, "{}: {a:?}", b.name);
        assert!(a.body["error"]
            .as_str()
            .unwrap()
            .contains("accepts report_version"));
        let mut wrong = report(json!(5));
        wrong["data"]["environment"]["cores"] = json!("many\u{0}");
        let a = post(&http, &running, &wrong).await;
        assert_eq!(a.status, 400, "{}: {a:?}", b.name);
        let message = a.body["error"].as_str().unwrap();
        assert!(message.contains("/data/environment/cores"), "{message}");
        assert!(
            !message.contains('\u{0}'),
            "control characters escaped: {message:?}"
        );
        // Not JSON, or JSON that is no report at all: nothing to keep.
        for body in [&b"{not json"[..], b"[1, 2]", b"\"x\""] {
            let a = post_with(
                &http,
                &running,
                body.to_vec(),
                Some("application/json"),
                &[],
            )
            .await;
            assert_eq!(a.status, 400, "{}", b.name);
        }
        let kept = checkpoint::quarantine::totals(running.store())
            .await
            .unwrap();
        assert_eq!(kept.reports, 2, "{}", b.name);
        let reasons = checkpoint::quarantine::list(running.store(), 3)
            .await
            .unwrap();
        let mut names: Vec<&str> = reasons.iter().map(|r| r.reason.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["schema", "unknown_version"], "{}", b.name);
        assert!(reasons.iter().all(|r| r.samples[0].report_id.is_some()));
        running.stop().await;
        b.finish().await;
    }
}

#[actix_rt::test]
async fn the_quarantine_stays_under_its_bound_dropping_the_oldest() {
    for b in backends("q_bound").await {
        let running = start_with(&b.db, |c| {
            c.quarantine_max = 16_000;
            c.cluster_burst = 1000;
        })
        .await;
        let http = client();
        let mut ids = Vec::new();
        for _ in 0..40 {
            let r = report(json!(u64::MAX));
            assert_eq!(post(&http, &running, &r).await.status, 202);
            ids.push(r["report_id"].as_str().unwrap().to_owned());
        }
        let kept = checkpoint::quarantine::totals(running.store())
            .await
            .unwrap();
        assert!(kept.bytes <= 16_000, "{}: {kept:?}", b.name);
        assert!(kept.reports >= 5, "{}: {kept:?}", b.name);
        assert_eq!(kept.reports + kept.dropped, 40, "{}: {kept:?}", b.name);
        // The newest is kept; the oldest went first.
        let listed = checkpoint::quarantine::list(running.store(), 100)
            .await
            .unwrap();
        let present: Vec<String> = listed[0]
            .samples
            .iter()
            .filter_map(|s| s.report_id.clone())
            .collect();
        assert!(present.contains(ids.last().unwrap()), "{}", b.name);
        assert!(!present.contains(&ids[0]), "{}", b.name);
        running.stop().await;
        b.finish().await;
    }
}

#[actix_rt::test]
async fn the_newest_report_is_never_dropped_and_a_zero_bound_keeps_none() {
    for b in backends("q_tiny").await {
        // A bound smaller than one report: each new one is kept, the one before dropped.
        let running = start_with(&b.db, |c| c.quarantine_max = 1).await;
        let http = client();
        for n in 1..=3u64 {
            let r = report(json!(u64::MAX));
            let a = post(&http, &running, &r).await;
            assert_eq!(a.status, 202, "{}: {a:?}", b.name);
            let kept = checkpoint::quarantine::totals(running.store())
                .await
                .unwrap();
            assert_eq!((kept.reports, kept.dropped), (1, n - 1), "{}", b.name);
            let listed = checkpoint::quarantine::list(running.store(), 1)
                .await
                .unwrap();
            assert_eq!(
                listed[0].samples[0].report_id.as_deref(),
                r["report_id"].as_str()
            );
        }
        running.stop().await;
        // 0 keeps none: an implausible report is refused (422), never answered 202.
        let running = start_with(&b.db, |c| c.quarantine_max = 0).await;
        let a = post(&http, &running, &report(json!(u64::MAX))).await;
        assert_eq!(a.status, 422, "{}: {a:?}", b.name);
        assert_eq!(a.body["reason"], "counter_too_large");
        let kept = checkpoint::quarantine::totals(running.store())
            .await
            .unwrap();
        assert_eq!(kept.reports, 1, "{}: nothing more kept", b.name);
        running.stop().await;
        b.finish().await;
    }
}

#[actix_rt::test]
async fn a_replay_under_new_rules_stores_each_report_once() {
    for b in backends("q_replay").await {
        // Strict rules: 1 operation per second of window.
        let running = start_with(&b.db, |c| c.max_per_window = 1).await;
        let http = client();
        let mut strict = Vec::new();
        for i in 0..5 {
            let r = report(json!(1_000_000 + i));
            assert_eq!(post(&http, &running, &r).await.status, 202, "{}", b.name);
            strict.push(r);
        }
        let absurd = report(json!(u64::MAX));
        assert_eq!(post(&http, &running, &absurd).await.status, 202);
        // One of them also arrives by another way and is stored before the replay.
        let store = running.store().clone();
        let lenient = checkpoint::Validator::new().unwrap();
        let one = lenient
            .check(serde_json::to_string(&strict[0]).unwrap().as_bytes())
            .unwrap();
        store.ingest_batch(&[&one], 0).await.unwrap();
        let done = checkpoint::quarantine::replay(&store, &lenient)
            .await
            .unwrap();
        assert_eq!(
            (done.stored, done.already_stored),
            (4, 1),
            "{}: {done:?}",
            b.name
        );
        assert_eq!(
            done.still_refused.get("counter_too_large"),
            Some(&1),
            "{}: {done:?}",
            b.name
        );
        let again = checkpoint::quarantine::replay(&store, &lenient)
            .await
            .unwrap();
        assert_eq!((again.stored, again.already_stored), (0, 0), "{}", b.name);
        let o = overview(&http, &running, 2, &today()).await;
        assert_eq!(o.completeness.reports, 5, "{}", b.name);
        assert_eq!(
            o.totals["operations_from_pg"],
            (0..5).map(|i| 1_000_000 + i).sum::<u64>(),
            "{}",
            b.name
        );
        let kept = checkpoint::quarantine::totals(&store).await.unwrap();
        assert_eq!(kept.reports, 1, "{}: {kept:?}", b.name);
        running.stop().await;
        b.finish().await;
    }
}

/// The `checkpoint quarantine` commands, on a SQLite file a receiver filled.
#[actix_rt::test]
async fn the_quarantine_commands_list_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cp.db").display().to_string();
    let running = start_with(&db, |c| c.max_per_window = 1).await;
    let http = client();
    for i in 0..3 {
        assert_eq!(
            post(&http, &running, &report(json!(100_000 + i)))
                .await
                .status,
            202
        );
    }
    running.stop().await;
    let bin = env!("CARGO_BIN_EXE_checkpoint");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .env_remove("CHECKPOINT_MAX_PER_WINDOW")
            .env_remove("CHECKPOINT_DB")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["quarantine", "list", "--db", &db]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("3 reports kept"), "{out}");
    assert!(out.contains("counter_too_large: 3 reports"), "{out}");
    assert!(out.contains("operations_from_pg is 10000"), "{out}");
    let (code, out, _) = run(&[
        "quarantine",
        "list",
        "--db",
        &db,
        "--json",
        "--samples",
        "0",
    ]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["totals"]["reports"], 3);
    assert_eq!(v["reasons"][0]["samples"], json!([]));
    let (code, out, err) = run(&["quarantine", "replay", "--db", &db, "--max-per-window", "5"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("0 stored") && out.contains("3 still refused"),
        "{out}"
    );
    let (code, out, err) = run(&["quarantine", "replay", "--db", &db]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("replayed: 3 stored, 0 already stored, 0 still refused"),
        "{out}"
    );
    // Bad input: no such database (never created), an unknown subcommand, samples out of range.
    let missing = dir.path().join("none.db").display().to_string();
    let (code, _, err) = run(&["quarantine", "list", "--db", &missing]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no database at"), "{err}");
    assert!(!std::path::Path::new(&missing).exists());
    let (code, _, err) = run(&["quarantine", "empty", "--db", &db]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = run(&["quarantine", "list", "--db", &db, "--samples", "1000"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--samples"), "{err}");
}
