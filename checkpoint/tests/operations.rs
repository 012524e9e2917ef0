//! The binary as an operator runs it: exit codes, logs, a read-only database, stalled bodies
//! under a descriptor limit, and `checkpoint backup` of a live database.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, post, report_for, start_with};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_checkpoint");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command() -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "CHECKPOINT_READ_TOKEN",
        "CHECKPOINT_LOG",
        "RUST_LOG",
        "CHECKPOINT_URL",
    ] {
        c.env_remove(var);
    }
    c
}

/// Waits until `addr` answers `/healthz`.
async fn wait_healthy(child: &mut Child, addr: SocketAddr) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = http.get(format!("http://{addr}/healthz")).send().await {
            assert_eq!(res.status().as_u16(), 200);
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the receiver exited: {status}");
        }
        assert!(Instant::now() < deadline, "the receiver never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stop(child: Child) -> String {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn configuration_errors_exit_2_and_name_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cp.db").display().to_string();
    let missing = dir.path().join("no-such-token").display().to_string();
    let secret = "short-secret1";
    // (flags, variables, what the error must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--log-format", "xml"], vec![], "--log-format"),
        (
            vec!["--trusted-proxy", "10.0.0.0/33"],
            vec![],
            "--trusted-proxy",
        ),
        (vec!["--trusted-proxy", "nonsense"], vec![], "ADDR/PREFIX"),
        (vec!["--read-token", ""], vec![], "empty"),
        (vec!["--read-token", secret], vec![], "at least 16"),
        (
            vec![],
            vec![("CHECKPOINT_READ_TOKEN", secret)],
            "at least 16",
        ),
        (vec!["--read-token-file", &missing], vec![], "cannot read"),
        (vec!["--listen", "0.0.0.0:0"], vec![], "--read-token-file"),
        (vec!["--body-timeout", "0s"], vec![], "--body-timeout"),
        (vec!["--body-timeout", "soon"], vec![], "--body-timeout"),
        (
            vec!["--source-per-minute", "99999999"],
            vec![],
            "--source-per-minute",
        ),
        (
            vec!["--source-per-minute=-1"],
            vec![],
            "--source-per-minute",
        ),
        (
            vec!["--answers-listen", "nowhere"],
            vec![],
            "--answers-listen",
        ),
        (vec!["--path", "ingest"], vec![], "--path"),
        (vec!["--quarantine-max", "12XB"], vec![], "KiB"),
        (vec!["--quarantine-max", "2000GB"], vec![], "1 TiB"),
        (vec!["--quarantine-max", "lots"], vec![], "--quarantine-max"),
        (vec!["--max-per-window=-1"], vec![], "--max-per-window"),
        (
            vec![],
            vec![("CHECKPOINT_MAX_PER_WINDOW", "fast")],
            "--max-per-window",
        ),
        (vec!["--log", "=[nonsense"], vec![], "--log"),
        (vec![], vec![("RUST_LOG", "=[nonsense")], "RUST_LOG"),
    ];
    for (args, env, words) in cases {
        let out = command()
            .args(["--db", &db])
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert!(!err.contains(secret), "the token is never shown: {err}");
    }
}

#[actix_rt::test]
async fn logs_are_json_on_request_plain_text_without_a_terminal_and_follow_rust_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cp.db").display().to_string();
    for (args, rust_log, listening) in [
        (vec!["--log-format", "json"], None, true),
        (vec![], None, true),
        (vec![], Some("warn"), false),
    ] {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut c = command();
        c.args(["--listen", &addr.to_string(), "--db", &db])
            .args(&args)
            .stderr(Stdio::piped());
        if let Some(l) = rust_log {
            c.env("RUST_LOG", l);
        }
        let mut child = c.spawn().unwrap();
        wait_healthy(&mut child, addr).await;
        let log = stop(child);
        assert!(!log.contains('\x1b'), "no colour in a pipe: {log:?}");
        assert_eq!(
            log.contains("checkpoint receiver listening"),
            listening,
            "{log}"
        );
        if args.contains(&"json") {
            for line in log.lines() {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
            }
        }
    }
}

/// A database on a read-only filesystem fails start-up at once, naming the path and the cause.
#[actix_rt::test]
async fn a_read_only_database_fails_start_up_at_once_naming_path_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("note: cannot mount a tmpfs (not root?); read-only database test skipped");
        return;
    }
    let db = mnt.join("cp.db").display().to_string();
    let running = start_with(&db, |_| {}).await;
    running.stop().await;
    // The stopped receiver's database connections close on their own threads, a moment after
    // `stop` returns; until then the remount is refused as busy.
    let mut remount = String::new();
    for _ in 0..100 {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&mnt)
            .output()
            .unwrap();
        if out.status.success() {
            remount.clear();
            break;
        }
        remount = String::from_utf8_lossy(&out.stderr).into_owned();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !remount.is_empty() {
        Command::new("umount").arg(&mnt).status().unwrap();
        panic!("cannot remount the tmpfs read-only: {remount}");
    }
    let began = Instant::now();
    let out = command()
        .args(["--listen", "127.0.0.1:0", "--db", &db])
        .output()
        .unwrap();
    let took = began.elapsed();
    let fresh = mnt.join("fresh.db").display().to_string();
    let out_fresh = command()
        .args(["--listen", "127.0.0.1:0", "--db", &fresh])
        .output()
        .unwrap();
    Command::new("umount").arg(&mnt).status().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&db) && err.contains("Read-only file system"),
        "{err}"
    );
    // Not the pool's 30 s timeout (a bound, not a speed assertion).
    assert!(took < Duration::from_secs(25), "{took:?}");
    let err = String::from_utf8_lossy(&out_fresh.stderr);
    assert_eq!(out_fresh.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&fresh) && err.contains("Read-only file system"),
        "{err}"
    );
}

/// 300 connections that send a head and one body byte, from 127.0.0.2, against the binary run
/// with 256 descriptors: a sender on 127.0.0.1 still delivers, because one source may hold
/// only --source-connections of them.
#[actix_rt::test]
async fn stalled_bodies_under_a_descriptor_limit_do_not_lock_out_a_sender() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cp.db").display().to_string();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new("prlimit")
        .arg("--nofile=256:256")
        .arg(BIN)
        .args(["--listen", &addr.to_string(), "--db", &db, "--log", "error"])
        // Long enough that no stall is cut by the body deadline during the test.
        .args(["--body-timeout", "120s"])
        .env_remove("RUST_LOG")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(&mut child, addr).await;
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let Ok(mut tcp) = socket.connect(addr).await else {
            continue;
        };
        let _ = tcp
            .write_all(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            )
            .await;
        stalled.push(tcp);
    }
    assert_eq!(stalled.len(), 300);
    // Give the receiver time to see every head (it refuses those over the cap).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let report = report_for(&uuid::Uuid::new_v4().to_string());
    let res = http
        .post(format!("http://{addr}/"))
        .insert_header(("content-type", "application/json"))
        .send_body(serde_json::to_vec(&report).unwrap())
        .await
        .expect("the legitimate sender is served while 300 bodies stall");
    assert_eq!(res.status().as_u16(), 201);
    drop(stalled);
    stop(child);
}

/// `checkpoint backup` while a receiver ingests: the copy is a consistent database (integrity
/// check passes; its rollups count exactly the raw reports it holds).
#[actix_rt::test]
async fn backup_copies_a_live_database_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cp.db").display().to_string();
    let running = start_with(&db, |_| {}).await;
    let http = client();
    for _ in 0..20 {
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
    }
    let addr = running.addr();
    let stop_flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let stop_flag = stop_flag.clone();
            let http = client();
            actix_rt::spawn(async move {
                let mut sent = 0u32;
                while !stop_flag.load(std::sync::atomic::Ordering::Relaxed) && sent < 2000 {
                    let report = report_for(&uuid::Uuid::new_v4().to_string());
                    let _ = http
                        .post(format!("http://{addr}/"))
                        .insert_header(("content-type", "application/json"))
                        .send_body(serde_json::to_vec(&report).unwrap())
                        .await;
                    sent += 1;
                }
            })
        })
        .collect();
    let copy = dir.path().join("copy.db");
    let out = tokio::task::spawn_blocking({
        let db = db.clone();
        let copy = copy.clone();
        move || {
            command()
                .args(["backup", "--db", &db])
                .arg(&copy)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    stop_flag.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = running.store().raw_count().await.unwrap();
    running.stop().await;
    let again = command()
        .args(["backup", "--db", &db])
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "an existing DEST is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let pg = command()
        .args(["backup", "--db", "postgres://u:p@127.0.0.1/x", "/tmp/never"])
        .output()
        .unwrap();
    assert_eq!(pg.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&pg.stderr).contains("pg_dump"));
    let store = checkpoint::Store::open(&copy.display().to_string(), 1)
        .await
        .unwrap();
    let (integrity, raw, counted) = store
        .run(|s| async move {
            use sqlx::Row;
            let integrity: String = sqlx::query("PRAGMA integrity_check")
                .fetch_one(s.pool())
                .await?
                .try_get(0)?;
            let raw: i64 = sqlx::query("SELECT COUNT(*) FROM reports")
                .fetch_one(s.pool())
                .await?
                .try_get(0)?;
            let counted: i64 = sqlx::query("SELECT COALESCE(SUM(reports), 0) FROM days")
                .fetch_one(s.pool())
                .await?
                .try_get(0)?;
            Ok((integrity, raw, counted))
        })
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    assert!(raw >= 20 && raw as u64 <= live, "{raw} of {live}");
    assert_eq!(
        raw, counted,
        "the copy's rollups count exactly its raw reports"
    );
}
