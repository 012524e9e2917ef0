//! The receiver's edge: the answers behind a token or on a second address, secure by default,
//! per-source limits, the body deadline and `/metrics`.

mod common;

use std::time::Duration;

use base64::Engine;
use checkpoint::auth::ReadToken;
use common::{client, post, post_with, report_for, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret-read-token-0123456789";

async fn get(url: &str, auth: Option<&str>) -> (u16, String, Option<String>) {
    let mut req = client().get(url);
    if let Some(a) = auth {
        req = req.insert_header(("authorization", a));
    }
    let mut res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = res.body().limit(1 << 20).await.unwrap_or_default();
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
        res.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or_default().to_owned()),
    )
}

fn db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cp.db").display().to_string();
    (dir, db)
}

#[actix_rt::test]
async fn the_answers_need_the_token_and_ingest_does_not() {
    let (_dir, db) = db();
    let running = start_with(&db, |c| {
        c.read_token = Some(ReadToken::new(TOKEN, "test").unwrap());
    })
    .await;
    let base = format!("http://{}", running.addr());
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    for path in [
        "/",
        "/api/overview?days=3",
        "/api/activity?period=month",
        "/api/retention",
        "/api/per_day.csv",
        "/api/activity.csv",
        "/api/reports.ndjson",
        "/metrics",
        "/api/anything",
    ] {
        let (status, body, challenge) = get(&format!("{base}{path}"), None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(challenge.unwrap_or_default().starts_with("Basic"), "{path}");
        assert!(body.contains("Bearer"), "{body}");
        for wrong in [
            "Bearer wrong-token-0123456789",
            "Bearer ",
            &format!("Bearer {TOKEN}x"),
            &basic("admin", "nope"),
            &format!("Basic {TOKEN}"),
            "Basic !!!",
            TOKEN,
        ] {
            let (status, body, _) = get(&format!("{base}{path}"), Some(wrong)).await;
            assert_eq!(status, 401, "{path} with {wrong:?}");
            assert!(!body.contains(TOKEN), "the token is never echoed");
        }
    }
    let bearer = format!("Bearer {TOKEN}");
    let (status, body, _) = get(&format!("{base}/api/overview?days=3"), Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = get(&format!("{base}/"), Some(&basic("anyone", TOKEN))).await;
    assert_eq!(status, 200);
    assert!(body.contains("<html") || body.contains("<!DOCTYPE") || body.contains("<!doctype"));
    let (status, body, _) = get(&format!("{base}/metrics"), Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    // Ingest and the probe need no token.
    let http = client();
    assert_eq!(
        post(
            &http,
            &running,
            &report_for(&uuid::Uuid::new_v4().to_string())
        )
        .await
        .status,
        201
    );
    let (status, _, _) = get(&format!("{base}/healthz"), None).await;
    assert_eq!(status, 200);
    running.stop().await;
}

#[actix_rt::test]
async fn answers_listen_splits_the_answers_from_ingest() {
    let (_dir, db) = db();
    let running = start_with(&db, |c| {
        c.answers_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let ingest = format!("http://{}", running.addr());
    let answers = format!(
        "http://{}",
        running.answers_addr().expect("an answers address")
    );
    assert_ne!(ingest, answers);
    for path in ["/", "/api/overview?days=3", "/metrics"] {
        assert_eq!(
            get(&format!("{ingest}{path}"), None).await.0,
            404,
            "{path} on ingest"
        );
        assert_eq!(
            get(&format!("{answers}{path}"), None).await.0,
            200,
            "{path} on answers"
        );
    }
    assert_eq!(get(&format!("{ingest}/healthz"), None).await.0, 200);
    let http = client();
    let report = report_for(&uuid::Uuid::new_v4().to_string());
    assert_eq!(post(&http, &running, &report).await.status, 201);
    let on_answers = http
        .post(format!("{answers}/"))
        .insert_header(("content-type", "application/json"))
        .send_body(serde_json::to_vec(&report).unwrap())
        .await
        .unwrap();
    assert_eq!(
        on_answers.status().as_u16(),
        404,
        "no ingest on the answers address"
    );
    running.stop().await;
}

#[actix_rt::test]
async fn public_answers_need_a_token_a_second_address_or_the_flag() {
    let (_dir, db) = db();
    let mut config = checkpoint::ServerConfig::new("0.0.0.0:0".parse().unwrap(), db.clone());
    let e = checkpoint::start(config.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    for flag in [
        "--listen 0.0.0.0:0",
        "--read-token-file",
        "--answers-listen",
        "--public-answers",
    ] {
        assert!(e.contains(flag), "{e}");
    }
    config.answers_listen = Some("0.0.0.0:0".parse().unwrap());
    let e = checkpoint::start(config.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("--answers-listen 0.0.0.0:0"), "{e}");
    config.answers_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = checkpoint::start(config.clone())
        .await
        .expect("private answers");
    running.stop().await;
    config.answers_listen = None;
    config.public_answers = true;
    let running = checkpoint::start(config.clone()).await.expect("on purpose");
    running.stop().await;
    config.public_answers = false;
    config.read_token = Some(ReadToken::new(TOKEN, "t").unwrap());
    let running = checkpoint::start(config).await.expect("with a token");
    running.stop().await;
}

#[test]
fn bad_tokens_are_refused_without_showing_them() {
    for (bad, words) in [
        ("", "empty"),
        ("short-secret", "at least 16"),
        ("a token with spaces in it", "visible ASCII"),
        ("tab\there-0123456789", "visible ASCII"),
    ] {
        let e = ReadToken::new(bad, "--read-token").unwrap_err();
        assert!(e.contains(words) && e.contains("--read-token"), "{e}");
        if !bad.is_empty() {
            assert!(!e.contains(bad), "{e}");
        }
    }
    assert_eq!(
        format!("{:?}", ReadToken::new(TOKEN, "t").unwrap()),
        "ReadToken(…)"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let e = ReadToken::from_file(&missing).unwrap_err();
    assert!(e.contains("missing") && e.contains("cannot read"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    assert!(ReadToken::from_file(&empty).unwrap_err().contains("empty"));
    let good = dir.path().join("good");
    std::fs::write(&good, format!("{TOKEN}\n")).unwrap();
    assert_eq!(
        ReadToken::from_file(&good).unwrap(),
        ReadToken::new(TOKEN, "t").unwrap()
    );
}

#[actix_rt::test]
async fn bad_edge_settings_are_refused_by_name() {
    let (_dir, db) = db();
    type Tweak = Box<dyn Fn(&mut checkpoint::ServerConfig)>;
    let cases: Vec<(Tweak, &str)> = vec![
        (
            Box::new(|c| c.body_timeout = Duration::ZERO),
            "--body-timeout",
        ),
        (
            Box::new(|c| c.body_timeout = Duration::from_secs(7200)),
            "--body-timeout",
        ),
        (
            Box::new(|c| c.keep_alive = Duration::from_secs(7200)),
            "--keep-alive",
        ),
        (
            Box::new(|c| c.source_per_minute = 2_000_000_000),
            "--source-per-minute",
        ),
        (
            Box::new(|c| c.source_new_clusters_per_hour = u32::MAX),
            "--source-new-clusters-per-hour",
        ),
        (
            Box::new(|c| c.source_connections = u32::MAX),
            "--source-connections",
        ),
    ];
    for (tweak, flag) in cases {
        let mut config = checkpoint::ServerConfig::new("127.0.0.1:0".parse().unwrap(), db.clone());
        tweak(&mut config);
        match checkpoint::start(config).await {
            Err(checkpoint::StartError::Config(e)) => assert!(e.contains(flag), "{e}"),
            Err(e) => panic!("{flag}: not a configuration error: {e}"),
            Ok(r) => {
                r.stop().await;
                panic!("{flag}: started")
            }
        }
    }
    for bad in ["10.0.0.0/33", "300.0.0.1", "", "fd00::/200", "10.0.0.0/x"] {
        let e = bad.parse::<checkpoint::sources::Cidr>().unwrap_err();
        assert!(
            e.contains("--trusted-proxy") && e.contains("ADDR/PREFIX"),
            "{e}"
        );
    }
}

/// The case: one source inventing a fresh cluster id per report is cut off after the
/// limit, while a cluster it already reported for goes on; nothing past the limit is stored.
#[actix_rt::test]
async fn one_source_inventing_clusters_is_cut_off_after_the_limit() {
    let (_dir, db) = db();
    let running = start_with(&db, |c| c.source_new_clusters_per_hour = 5).await;
    let http = client();
    let first = uuid::Uuid::new_v4().to_string();
    let mut statuses = Vec::new();
    statuses.push(post(&http, &running, &report_for(&first)).await.status);
    for _ in 0..9 {
        let answer = post(
            &http,
            &running,
            &report_for(&uuid::Uuid::new_v4().to_string()),
        )
        .await;
        if answer.status == 429 {
            let wait: u64 = answer.retry_after.as_deref().unwrap().parse().unwrap();
            assert!((1..=3600).contains(&wait), "{wait}");
            assert!(answer.body["error"]
                .as_str()
                .unwrap()
                .contains("distinct clusters"));
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [vec![201; 5], vec![429; 5]].concat());
    // A cluster it already reported for is not new.
    assert_eq!(post(&http, &running, &report_for(&first)).await.status, 201);
    assert_eq!(running.store().raw_count().await.unwrap(), 6);
    running.stop().await;
}

#[actix_rt::test]
async fn the_source_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
    let (_dir, db) = db();
    let http = client();
    let forged = |running: &checkpoint::Running, n: u32| {
        let report = report_for(&uuid::Uuid::new_v4().to_string());
        let http = http.clone();
        let addr = running.addr();
        async move {
            let res = http
                .post(format!("http://{addr}/"))
                .insert_header(("content-type", "application/json"))
                .insert_header(("x-forwarded-for", format!("198.51.100.{n}, 127.0.0.1")))
                .send_body(serde_json::to_vec(&report).unwrap())
                .await
                .unwrap();
            res.status().as_u16()
        }
    };
    // Not trusted: the header is ignored, all four come from 127.0.0.1.
    let running = start_with(&db, |c| c.source_per_minute = 2).await;
    let mut got = Vec::new();
    for n in 1..=4 {
        got.push(forged(&running, n).await);
    }
    assert_eq!(got, [201, 201, 429, 429]);
    running.stop().await;
    // Trusted: each forwarded address is its own source; 127.0.0.1 (a trusted hop) is skipped.
    let running = start_with(&db, |c| {
        c.source_per_minute = 2;
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let mut got = Vec::new();
    for n in 1..=4 {
        got.push(forged(&running, n).await);
    }
    assert_eq!(got, [201; 4]);
    for _ in 0..2 {
        got.push(forged(&running, 1).await);
    }
    assert_eq!(got[4..], [201, 429], "198.51.100.1 over its 2 a minute");
    // Forwarded (RFC 7239) when there is no X-Forwarded-For.
    let report = report_for(&uuid::Uuid::new_v4().to_string());
    let res = http
        .post(format!("http://{}/", running.addr()))
        .insert_header(("content-type", "application/json"))
        .insert_header(("forwarded", "for=\"[2001:db8::7]:4711\";proto=http"))
        .send_body(serde_json::to_vec(&report).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    running.stop().await;
}

/// A body that stops coming is answered 408 after --body-timeout, and the connection closed.
#[actix_rt::test]
async fn a_stalled_body_gets_408_after_the_body_timeout() {
    let (_dir, db) = db();
    let running = start_with(&db, |c| c.body_timeout = Duration::from_millis(300)).await;
    let mut tcp = tokio::net::TcpStream::connect(running.addr())
        .await
        .unwrap();
    tcp.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive within 300ms"), "{text}");
    assert_eq!(running.store().raw_count().await.unwrap(), 0);
    running.stop().await;
}

#[actix_rt::test]
async fn metrics_count_outcomes_and_reasons_in_prometheus_text() {
    let (_dir, db) = db();
    let running = start_with(&db, |c| c.source_new_clusters_per_hour = 2).await;
    let http = client();
    for _ in 0..3 {
        post(
            &http,
            &running,
            &report_for(&uuid::Uuid::new_v4().to_string()),
        )
        .await;
    }
    post_with(
        &http,
        &running,
        b"{".to_vec(),
        Some("application/json"),
        &[],
    )
    .await;
    post_with(&http, &running, b"{}".to_vec(), Some("text/plain"), &[]).await;
    let (status, text, _) = get(&format!("http://{}/metrics", running.addr()), None).await;
    assert_eq!(status, 200);
    for line in [
        "checkpoint_reports_total{outcome=\"stored\",reason=\"\"} 2",
        "checkpoint_reports_total{outcome=\"refused\",reason=\"source_new_clusters\"} 1",
        "checkpoint_reports_total{outcome=\"refused\",reason=\"not_json\"} 1",
        "checkpoint_reports_total{outcome=\"refused\",reason=\"content_type\"} 1",
        "checkpoint_queue_depth 0",
        "checkpoint_queue_capacity 4096",
        "checkpoint_batch_size_count 2",
        "checkpoint_commit_seconds_bucket{le=\"+Inf\"} 2",
        "# TYPE checkpoint_commit_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Nothing a sender chose becomes a label.
    assert!(!text.contains("127.0.0.1"));
    running.stop().await;
}

/// Writes `request` on a connection of its own and reads the answer's head.
async fn raw_answer_head(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(20), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf).await.unwrap() {
                0 => break,
                n => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("answered");
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase()
}

/// Every ingest answer names the versions the receiver accepts, those the edge gives before
/// or instead of the handler's (408 at the body deadline, 429 for a source's connections)
/// as well as 413 and 415.
#[actix_rt::test]
async fn every_ingest_answer_names_the_accepted_versions() {
    let (_dir, db) = db();
    let running = start_with(&db, |c| {
        c.body_timeout = Duration::from_millis(300);
        c.body_limit = 1024;
        c.source_connections = 1;
    })
    .await;
    let addr = running.addr();
    let versions = "checkpoint-report-versions: 2, 3";
    let cases: [(&str, &[u8]); 3] = [
        (
            "http/1.1 415",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        ),
        (
            "http/1.1 413",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n{",
        ),
        (
            "http/1.1 408",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900\r\nConnection: close\r\n\r\n{",
        ),
    ];
    for (status, request) in cases {
        let head = raw_answer_head(addr, request).await;
        assert!(head.starts_with(status), "{head}");
        assert!(head.contains(versions), "{status}: {head}");
        // The receiver notices the closed connection before the next case.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One connection held open: the second from the same source is over the limit.
    let _held = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let head = raw_answer_head(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(head.contains(versions), "429: {head}");
    running.stop().await;
}
