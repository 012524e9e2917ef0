//! A 2xx is a commit, also on a full disk: SQLite on a real 2 MiB tmpfs, filled up while the
//! receiver runs. Every report answered 2xx is in the database after a restart, the others are
//! answered 503 with `Retry-After`, `/readyz` says so while writes fail, and the receiver
//! recovers by itself once there is room again. With the real reporter as sender every
//! recorded operation ends up stored or still in its outbox, none lost.
//!
//! Needs `mount -t tmpfs` (root): without it the tests print a note and pass.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{client, reporter_to, seed, start_with};
use electric_telemetry::{ReplicatedFromPg, Telemetry};
use serde_json::{json, Value};

/// A 2 MiB tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "note: {test} skipped: cannot mount a tmpfs ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("note: {test} skipped: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("the filler file");
        let chunk = vec![0xa5u8; 4096];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        // Single bytes, so that the last partial page is taken too.
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn fresh_report() -> Value {
    let mut v = seed();
    v["report_id"] = json!(uuid::Uuid::new_v4().to_string());
    v["data"]["environment"]["electric_cluster_uuid"] = json!(uuid::Uuid::new_v4().to_string());
    // Some bulk, so that each report needs pages of its own.
    v["data"]["environment"]["os"]["name"] = json!("x".repeat(900));
    v
}

async fn readyz(http: &awc::Client, addr: std::net::SocketAddr) -> u16 {
    http.get(format!("http://{addr}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn a_full_disk_is_never_answered_2xx_and_the_receiver_recovers_by_itself() {
    let Some(fs) = Tmpfs::mount("full_disk") else {
        return;
    };
    let db = fs.path().join("cp.db").display().to_string();
    let running = start_with(&db, |c| c.workers = 2).await;
    let addr = running.addr();
    let http = client();
    assert_eq!(
        readyz(&http, addr).await,
        200,
        "ready before the disk fills"
    );
    let filler = fs.fill();

    // 120 reports from 4 concurrent senders onto the full disk.
    let mut sent = Vec::new();
    for _ in 0..4 {
        sent.push(actix_rt::spawn(async move {
            let http = client();
            let mut answers = Vec::new();
            for _ in 0..30 {
                let r = fresh_report();
                let a = post_to(&http, addr, &r).await;
                answers.push((r["report_id"].as_str().unwrap().to_owned(), a));
            }
            answers
        }));
    }
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for s in sent {
        for (id, (status, retry_after)) in s.await.unwrap() {
            match status {
                200..=299 => acknowledged.push(id),
                503 => {
                    assert!(retry_after, "a 503 says when to retry");
                    refused += 1;
                }
                other => panic!("unexpected answer {other}"),
            }
        }
    }
    assert!(refused > 0, "a full disk refuses reports");
    // /readyz answers 503 while writes fail (its probe is a real write).
    let deadline = Instant::now() + Duration::from_secs(5);
    while readyz(&http, addr).await != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz never said 503 on a full disk"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        http.get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200,
        "/healthz stays a liveness check"
    );

    // Room again: without a restart, /readyz turns 200 and reports are stored.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(&http, addr).await != 200 {
        assert!(Instant::now() < deadline, "/readyz never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut after = Vec::new();
    for _ in 0..10 {
        let r = fresh_report();
        let a = common::post(&http, &running, &r).await;
        assert_eq!(a.status, 201, "stored once there is room: {:?}", a.body);
        after.push(r["report_id"].as_str().unwrap().to_owned());
    }
    running.stop().await;

    // Reopened: every report answered 2xx is there.
    let reopened = checkpoint::Store::open(&db, 1).await.unwrap();
    let mut missing = 0;
    for id in acknowledged.iter().chain(&after) {
        if reopened.raw_body(id).await.unwrap().is_none() {
            missing += 1;
        }
    }
    eprintln!(
        "full disk: {} answered 2xx, {refused} answered 503, {missing} acknowledged but not stored",
        acknowledged.len()
    );
    assert_eq!(missing, 0, "every report answered 2xx is stored");
    drop(reopened);
}

/// POSTs a report as the reporter does, to `addr`.
async fn post_to(http: &awc::Client, addr: std::net::SocketAddr, report: &Value) -> (u16, bool) {
    let key = report["report_id"].as_str().unwrap_or_default().to_owned();
    let res = http
        .post(format!("http://{addr}/"))
        .insert_header(("content-type", "application/json"))
        .insert_header(("idempotency-key", key))
        .send_body(serde_json::to_vec(report).unwrap())
        .await
        .unwrap_or_else(|e| panic!("POST to the receiver: {e}"));
    (
        res.status().as_u16(),
        res.headers().contains_key("retry-after"),
    )
}

/// Operations in the reports still waiting in an outbox.
fn outbox_operations(storage: &Path) -> u64 {
    let dir = storage.join("telemetry");
    let mut total = 0;
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json")
                && p.file_name().is_some_and(|n| n != "checkpoint.json")
            {
                let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                total += v["data"]["usage"]["operations_from_pg"]
                    .as_u64()
                    .unwrap_or(0);
            }
        }
    }
    total
}

#[actix_rt::test]
async fn the_real_reporter_loses_nothing_to_a_full_disk() {
    let Some(fs) = Tmpfs::mount("full_disk_reporter") else {
        return;
    };
    let db = fs.path().join("cp.db").display().to_string();
    let running = start_with(&db, |_| {}).await;
    let filler = fs.fill();
    let storage = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::start(
        reporter_to(&running, storage.path())
            .retry_initial_backoff(Duration::from_millis(100))
            .retry_max_backoff(Duration::from_secs(1))
            .shutdown_timeout(Duration::from_secs(3))
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut recorded = 0u64;
    // The disk is full for a few report windows: they wait in the outbox.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        telemetry.record(ReplicatedFromPg::new(1, 7));
        recorded += 7;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let status = telemetry.outbox_status().await.unwrap();
        if status.pending >= 3 && status.failed_attempts >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reporter never queued reports against the full disk: {status:?}"
        );
    }
    // Room again: the outbox drains into the same receiver, no restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        telemetry.record(ReplicatedFromPg::new(1, 3));
        recorded += 3;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if telemetry.outbox_status().await.unwrap().pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox never drained");
    }
    telemetry.shutdown().await;
    running.stop().await;

    let reopened = checkpoint::Store::open(&db, 1).await.unwrap();
    let o = reopened
        .overview(3, chrono::Utc::now().date_naive())
        .await
        .unwrap();
    let stored = o.totals["operations_from_pg"];
    let waiting = outbox_operations(storage.path());
    eprintln!("reporter: {recorded} recorded, {stored} stored, {waiting} still in the outbox");
    assert_eq!(
        stored + waiting,
        recorded,
        "every operation is stored or still in the outbox"
    );
    drop(reopened);
}

/// `/readyz` on a healthy store, and what it does with other methods and query strings.
#[actix_rt::test]
async fn readyz_answers_ready_on_a_healthy_store_and_only_to_get() {
    for b in common::backends("readyz").await {
        let running = start_with(&b.db, |_| {}).await;
        let http = client();
        let addr = running.addr();
        assert_eq!(readyz(&http, addr).await, 200, "{}", b.name);
        // Asked often, it still answers (the probe writes at most once a second).
        for _ in 0..20 {
            assert_eq!(readyz(&http, addr).await, 200, "{}", b.name);
        }
        let res = http
            .get(format!("http://{addr}/readyz?probe=now&x=%00"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "a query string changes nothing");
        let posted = http
            .post(format!("http://{addr}/readyz"))
            .insert_header(("content-type", "application/json"))
            .send_body(common::SEED)
            .await
            .unwrap();
        assert!(
            matches!(posted.status().as_u16(), 404 | 405),
            "{}: POST /readyz is no ingest: {}",
            b.name,
            posted.status()
        );
        // The probe leaves no rows behind and counts nothing.
        let o = common::overview(&http, &running, 3, "2023-09-20").await;
        assert_eq!(o.completeness.reports, 0, "{}", b.name);
        running.stop().await;
        b.finish().await;
    }
}
