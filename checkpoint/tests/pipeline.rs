//! The two halves against each other: the reporter's real reports (from the running pipeline,
//! not hand-written) are accepted and add up to what was recorded; a graceful stop loses no
//! report that was answered 2xx; `checkpoint summary` prints the same numbers.
//!
//! Together with the library's `tests/suite/schema.rs` (the Rust types and `REPORT_SCHEMA` cannot
//! drift apart), this is the drift guard from the receiver's side: a field added to the
//! reporter's types without the schema makes these real reports fail validation here.

mod common;

use std::time::{Duration, Instant};

use common::{backends, client, overview, post, reporter_to, seed, start, start_with, today};
use electric_telemetry::{ClientConnected, ReplicatedFromPg, SentToClients, Telemetry};
use serde_json::json;

#[actix_rt::test]
async fn real_reports_from_the_pipeline_are_accepted_and_add_up() {
    for b in backends("pipeline").await {
        let running = start(&b.db).await;
        let storage = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::start(
            reporter_to(&running, storage.path())
                .shutdown_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .unwrap();
        let (mut from_pg, mut sent, mut transactions) = (0u64, 0u64, 0u64);
        telemetry.record(ClientConnected::new("c1", "u1"));
        let deadline = Instant::now() + Duration::from_secs(20);
        // Record across several report windows, until at least two reports were stored.
        loop {
            telemetry.record(ReplicatedFromPg::new(1, 12));
            telemetry.record(SentToClients::new(1, 12));
            from_pg += 12;
            sent += 12;
            transactions += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if running.store().raw_count().await.unwrap() >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{}: no reports arrived", b.name);
        }
        telemetry.record(ReplicatedFromPg::new(1, 5));
        from_pg += 5;
        transactions += 1;
        telemetry.shutdown().await;
        let stored = running.store().raw_count().await.unwrap();
        assert!(
            stored >= 3,
            "{}: the final report arrived too ({stored})",
            b.name
        );

        let http = client();
        let o = overview(&http, &running, 2, &today()).await;
        assert_eq!(o.applications, 1, "{}", b.name);
        assert_eq!(o.instances, 1, "{}", b.name);
        assert_eq!(o.totals["operations_from_pg"], from_pg, "{}", b.name);
        assert_eq!(o.totals["operations_sent_to_clients"], sent, "{}", b.name);
        assert_eq!(o.totals["transactions_from_pg"], transactions, "{}", b.name);
        assert_eq!(o.totals["distinct_clients"], 1, "one window saw the client");
        assert_eq!(o.completeness.reports, stored);
        assert_eq!(
            o.completeness.missed_windows, 0,
            "{}: windows are contiguous",
            b.name
        );
        assert_eq!(o.completeness.duplicates_refused, 0);
        assert_eq!(o.by_electric_version.len(), 1);
        // The same line asked of the running receiver over HTTP (a child process: its blocking
        // wait must not hold this test's runtime, which serves the receiver).
        let url = format!("http://{}", running.addr());
        let asked = actix_rt::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_checkpoint"))
                .args(["summary", "--url", &url, "--days", "2"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            asked.status.success(),
            "{}: {}",
            b.name,
            String::from_utf8_lossy(&asked.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&asked.stdout).trim(),
            o.summary_line()
        );
        running.stop().await;

        // The one-line answer, from the database, as `make run` prints it.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_checkpoint"))
            .args(["summary", "--db", &b.db, "--days", "2"])
            .env_remove("CHECKPOINT_URL")
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {line} {}",
            b.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(line.trim(), o.summary_line());
        assert!(line.starts_with("1 application, 1 instance, "), "{line}");
        b.finish().await;
    }
}

#[actix_rt::test]
async fn a_graceful_stop_loses_no_report_answered_2xx() {
    for b in backends("shutdown").await {
        let running = start_with(&b.db, |c| c.workers = 2).await;
        let addr = running.addr();
        let store = running.store().clone();
        let reports: Vec<_> = (0..300)
            .map(|_| {
                let mut v = seed();
                v["report_id"] = json!(uuid::Uuid::new_v4().to_string());
                v["data"]["environment"]["electric_cluster_uuid"] =
                    json!(uuid::Uuid::new_v4().to_string());
                v
            })
            .collect();
        // 300 reports from 30 concurrent senders; the stop begins while they are in flight.
        let mut senders = Vec::new();
        for chunk in reports.chunks(10) {
            let chunk = chunk.to_vec();
            senders.push(actix_rt::spawn(async move {
                let http = client();
                let mut answered = Vec::new();
                for r in chunk {
                    let key = r["report_id"].as_str().unwrap().to_owned();
                    let res = http
                        .post(format!("http://{addr}/"))
                        .insert_header(("content-type", "application/json"))
                        .send_body(serde_json::to_vec(&r).unwrap())
                        .await;
                    answered.push((key, res.map(|r| r.status().as_u16()).ok()));
                }
                answered
            }));
        }
        while store.raw_count().await.unwrap() < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        running.stop().await;
        let mut ok = Vec::new();
        for s in senders {
            for (key, status) in s.await.unwrap() {
                if matches!(status, Some(200..=299)) {
                    ok.push(key);
                }
            }
        }
        assert!(
            ok.len() >= 20,
            "{}: some reports were answered before the stop",
            b.name
        );
        // Reopen the database: every report answered 2xx is there.
        let reopened = checkpoint::Store::open(&b.db, 1).await.unwrap();
        for key in &ok {
            assert!(
                reopened.raw_body(key).await.unwrap().is_some(),
                "{}: report {key} was answered 2xx but is not stored",
                b.name
            );
        }
        let stored = reopened.raw_count().await.unwrap();
        assert!(stored as usize >= ok.len());
        drop(reopened);
        eprintln!(
            "{}: {} answered 2xx, {stored} stored, of 300",
            b.name,
            ok.len()
        );
        b.finish().await;
    }
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_checkpoint"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--listen", "CHECKPOINT_LISTEN"),
        ("--db", "CHECKPOINT_DB"),
        ("--path", "CHECKPOINT_PATH"),
        ("--body-limit", "CHECKPOINT_BODY_LIMIT"),
        ("--retention", "CHECKPOINT_RETENTION"),
        ("--queue", "CHECKPOINT_QUEUE"),
        ("--cluster-burst", "CHECKPOINT_CLUSTER_BURST"),
        ("--cluster-per-hour", "CHECKPOINT_CLUSTER_PER_HOUR"),
        ("--workers", "CHECKPOINT_WORKERS"),
        ("--db-connections", "CHECKPOINT_DB_CONNECTIONS"),
        ("--shutdown-timeout", "CHECKPOINT_SHUTDOWN_TIMEOUT"),
        ("--log", "CHECKPOINT_LOG"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(help.contains(&format!("env: {env}")), "--help lacks {env}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_checkpoint"))
        .args(["--retention", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retention"));
}

#[actix_rt::test]
async fn a_receiver_stopped_and_started_again_keeps_and_dedupes_its_reports() {
    for b in backends("restart").await {
        let http = client();
        let running = start(&b.db).await;
        assert_eq!(post(&http, &running, &seed()).await.status, 201);
        running.stop().await;
        let running = start(&b.db).await;
        assert_eq!(
            post(&http, &running, &seed()).await.status,
            200,
            "{}",
            b.name
        );
        assert_eq!(
            overview(&http, &running, 3, "2023-09-20")
                .await
                .completeness
                .reports,
            1
        );
        running.stop().await;
        b.finish().await;
    }
}

/// The binary as an operator runs it: SIGTERM stops it cleanly (exit 0, no panic) with the
/// accepted report stored, and `summary` then reads it; `summary` on a database that does not
/// exist says so instead of creating an empty one.
#[actix_rt::test]
async fn the_binary_stops_cleanly_on_sigterm_and_summary_reads_what_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cp.db").display().to_string();
    // A free port for the child: bound here, released, then taken by the child.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_checkpoint"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--db", &db])
        .env("CHECKPOINT_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = client();
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let sent = http
            .post(&url)
            .insert_header(("content-type", "application/json"))
            .send_body(common::SEED)
            .await;
        match sent {
            Ok(res) => break res.status().as_u16(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the binary never answered: {e}"),
        }
    };
    assert_eq!(status, 201);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{log}", out.status);
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("every accepted report is stored"), "{log}");
    let summary = std::process::Command::new(env!("CARGO_BIN_EXE_checkpoint"))
        .args([
            "summary",
            "--db",
            &db,
            "--days",
            "3",
            "--until",
            "2023-09-20",
        ])
        .env_remove("CHECKPOINT_URL")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&summary.stdout).trim(),
        "1 application, 1 instance, 1 operation from Postgres, 0 operations sent to clients"
    );
    let missing = dir.path().join("missing.db");
    let summary = std::process::Command::new(env!("CARGO_BIN_EXE_checkpoint"))
        .args(["summary", "--db", &missing.display().to_string()])
        .env_remove("CHECKPOINT_URL")
        .output()
        .unwrap();
    assert!(!summary.status.success());
    assert!(String::from_utf8_lossy(&summary.stderr).contains("no database at"));
    assert!(!missing.exists(), "summary created no database");
}

/// A rolling upgrade in one receiver: the real reporter sending the current version, and a
/// report from a later release that added optional fields in every object. Both are accepted
/// and the answers are exact for both.
#[actix_rt::test]
async fn a_rolling_upgrade_counts_the_current_and_a_later_release_exactly() {
    for b in backends("rolling_upgrade").await {
        let running = start(&b.db).await;
        let storage = tempfile::tempdir().unwrap();
        let telemetry = Telemetry::start(
            reporter_to(&running, storage.path())
                .shutdown_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .unwrap();
        telemetry.record(ReplicatedFromPg::new(3, 30));
        let now = chrono::Utc::now();
        let mut later = seed();
        later["report_id"] = json!(uuid::Uuid::new_v4().to_string());
        later["timestamp"] = json!(now.to_rfc3339());
        later["last_reported"] = json!((now - chrono::Duration::hours(4)).to_rfc3339());
        later["data"]["environment"]["electric_cluster_uuid"] =
            json!("d4669de0-b37f-4a3e-9d39-fa6a0f0a4711");
        later["data"]["electric_version"] = json!("9.0.0");
        later["data"]["usage"]["operations_from_pg"] = json!(1000);
        later["data"]["usage"]["shapes_active"] = json!(4);
        later["data"]["environment"]["os"]["version"] = json!("6.1");
        later["data"]["resources"]["used_memory"]["p99"] = json!(1);
        later["data"]["deployment"] = json!({"kind": "container"});
        later["sent_by"] = json!("a later release");
        let http = client();
        let answer = post(&http, &running, &later).await;
        assert_eq!(answer.status, 201, "{}: {answer:?}", b.name);
        let deadline = Instant::now() + Duration::from_secs(20);
        while running.store().raw_count().await.unwrap() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(Instant::now() < deadline, "{}: no report arrived", b.name);
        }
        telemetry.record(ReplicatedFromPg::new(1, 7));
        telemetry.shutdown().await;
        let o = overview(&http, &running, 2, &today()).await;
        assert_eq!(o.applications, 2, "{}", b.name);
        assert_eq!(o.totals["operations_from_pg"], 30 + 7 + 1000, "{}", b.name);
        assert_eq!(o.totals["transactions_from_pg"], 3 + 1 + 2, "{}", b.name);
        let versions: Vec<&str> = o
            .by_electric_version
            .iter()
            .map(|s| s.value.as_str())
            .collect();
        assert!(versions.contains(&"9.0.0"), "{}: {versions:?}", b.name);
        running.stop().await;
        b.finish().await;
    }
}
