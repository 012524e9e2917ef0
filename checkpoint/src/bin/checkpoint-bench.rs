//! `make bench-checkpoint`: what the receiver holds on one machine.
//!
//! 1. **Durable ingest over HTTP**: a receiver on 127.0.0.1 with a SQLite file in a temporary
//!    directory, and `--clients` (128) concurrent senders, each a keep-alive connection with one
//!    request in flight, POSTing distinct valid reports as fast as they are answered. The
//!    senders are a raw HTTP/1.1 client (requests built before the clock starts), as light as
//!    `wrk`, so that they take little of the CPU the receiver shares with them. A 2xx is only
//!    sent once the report is committed (`synchronous=FULL`), so reports/s here are durable
//!    reports per second. Beside it, the **durable-insert floor** of the same disk, measured in
//!    the same run (one connection, 1.5 kB rows, 64 per transaction, WAL, `synchronous=FULL`),
//!    and the ratio; also the ratio with only 32 senders, whose batches cannot reach 64.
//!    With `--pg URL` (or `CHECKPOINT_TEST_POSTGRES_URL`) the same on Postgres, with one
//!    receiver and with two receivers on one database (the scale-out figure).
//! 2. **Overview latency for a year of a large fleet**: a fresh SQLite database loaded
//!    directly (not over HTTP) with what a year of `--clusters` clusters × 2 instances at a
//!    4 h interval leaves behind: the cluster table, an instance table with a restart (new
//!    instance id) every 30 days, one `cluster_days` row per cluster per day, the `days`
//!    rollup, and one day of raw reports (the rest of the year's raw reports would be past
//!    retention). Then `GET /api/overview?days=365` and the page, median of `--runs`, and the
//!    answers per period (`/api/activity`, `/api/retention`, `min_active_days`): the first
//!    request (cold) and the median of `--runs` each after a report stored today (live).
//!
//! `--parts ingest` or `--parts year` runs one part only.
//!
//! Release build only; prints Markdown.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use checkpoint::{ServerConfig, Store};
use serde_json::{json, Value};
use sqlx::Row;

const SEED: &str = include_str!("../../../tests/fixtures/seed_report.json");

struct Args {
    reports: usize,
    clients: usize,
    clusters: usize,
    days: u32,
    runs: usize,
    /// `ingest`, `year` or `all` (the default): which parts run.
    parts: String,
    /// A Postgres server URL whose user may create databases: the overview is measured there too.
    pg: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        reports: 6000,
        clients: 128,
        clusters: 10_000,
        days: 365,
        runs: 7,
        parts: "all".to_owned(),
        // As the tests: `. .ci/postgres.sh` before `make bench-checkpoint` adds Postgres.
        pg: std::env::var("CHECKPOINT_TEST_POSTGRES_URL")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--reports", Some(v)) => a.reports = v,
            ("--clients", Some(v)) => a.clients = v,
            ("--clusters", Some(v)) => a.clusters = v,
            ("--days", Some(v)) => a.days = v as u32,
            ("--runs", Some(v)) => a.runs = v,
            ("--pg", _) if pair.len() == 2 => a.pg = Some(pair[1].clone()),
            ("--parts", _)
                if pair.len() == 2 && ["ingest", "year", "all"].contains(&pair[1].as_str()) =>
            {
                a.parts = pair[1].clone()
            }
            _ => {
                eprintln!("usage: checkpoint-bench [--reports N] [--clients N] [--clusters N] [--days N] [--runs N] [--pg postgres://URL] [--parts ingest|year|all]");
                std::process::exit(2);
            }
        }
    }
    a
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let a = args();
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build; run `make bench-checkpoint` (release) for real figures");
    }
    actix_rt::System::new().block_on(async move {
        println!(
            "Machine: {} cores; {} {}; {} build.\n",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::env::consts::OS,
            std::env::consts::ARCH,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        if a.parts != "year" {
            ingest(&a).await;
        }
        if a.parts == "ingest" {
            return;
        }
        let dir = tempfile_dir();
        overview(&a, &format!("{dir}/year.db"), "SQLite").await;
        if let Some(server) = &a.pg {
            let db = fresh_pg(server, "year").await;
            overview(&a, &db, "Postgres").await;
            drop_pg(server).await;
        }
    });
}

fn report(i: usize, clusters: usize) -> Value {
    let mut v: Value = serde_json::from_str(SEED).unwrap();
    let c = i % clusters;
    v["report_id"] = json!(uuid::Uuid::new_v4().to_string());
    v["data"]["environment"]["electric_cluster_uuid"] =
        json!(format!("{:08x}-0000-4000-8000-{:012x}", c, c));
    v["data"]["environment"]["electric_instance_id"] = json!(format!("i{}-{}", c, i % 2));
    v["data"]["usage"]["operations_from_pg"] = json!(i);
    v
}

/// What one ingest run measured.
struct Ingested {
    ok: usize,
    stored: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Ingested {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// `a.reports` distinct reports POSTed by `a.clients` senders, spread over `receivers`
/// receivers sharing `db`.
async fn ingest_into(a: &Args, db: &str, receivers: usize) -> Ingested {
    let mut running = Vec::new();
    for _ in 0..receivers {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), db);
        config.cluster_burst = 1_000_000;
        // One machine sends everything: the per-source limits would cut it off.
        config.source_per_minute = 0;
        config.source_new_clusters_per_hour = 0;
        config.source_connections = 0;
        running.push(
            checkpoint::start(config)
                .await
                .expect("the receiver starts"),
        );
    }
    let addrs: Vec<_> = running.iter().map(|r| r.addr()).collect();
    // Whole requests, built before the clock starts.
    let requests: Rc<Vec<Vec<u8>>> = Rc::new(
        (0..a.reports)
            .map(|i| {
                let body = serde_json::to_vec(&report(i, 10_000)).unwrap();
                let mut r = format!(
                    "POST / HTTP/1.1\r\nHost: checkpoint\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            })
            .collect(),
    );
    let next = Rc::new(Cell::new(0usize));
    let started = Instant::now();
    let lanes: Vec<_> = (0..a.clients)
        .map(|lane| {
            let (requests, next) = (requests.clone(), next.clone());
            let addr = addrs[lane % addrs.len()];
            actix_rt::spawn(async move { sender(addr, &requests, &next).await })
        })
        .collect();
    let mut ok = 0;
    let mut latencies = Vec::new();
    for l in lanes {
        let (n, mut lat) = l.await.unwrap();
        ok += n;
        latencies.append(&mut lat);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let stored = running[0].store().raw_count().await.unwrap();
    for r in running {
        r.stop().await;
    }
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ingested {
        ok,
        stored,
        elapsed,
        p50: p(0.5),
        p99: p(0.99),
    }
}

/// One sender: a keep-alive connection that POSTs the next request and reads the answer, until
/// none is left. A raw HTTP/1.1 client, as light as `wrk`, so that the load generator takes as
/// little as it can of the CPU the receiver shares with it; the answers' status is what counts.
async fn sender(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    next: &Cell<usize>,
) -> (usize, Vec<Duration>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut latencies = Vec::new();
    let mut ok = 0usize;
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let i = next.get();
        if i >= requests.len() {
            return (ok, latencies);
        }
        next.set(i + 1);
        let t = Instant::now();
        let mut stream = match conn.take() {
            Some(s) => s,
            None => {
                let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.set_nodelay(true).unwrap();
                buf.clear();
                s
            }
        };
        stream.write_all(&requests[i]).await.expect("send");
        // Read one answer: the head, then Content-Length bytes of body.
        let (status, keep) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < end + 4 + length {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "the receiver closed mid-answer");
                    buf.extend_from_slice(&chunk[..n]);
                }
                buf.drain(..end + 4 + length);
                break (status, !head.contains("connection: close"));
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the receiver closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        };
        latencies.push(t.elapsed());
        if status == 201 {
            ok += 1;
        }
        if keep {
            conn = Some(stream);
        }
    }
}

/// The durable-insert floor of `db`: what the disk allows a receiver at best. One connection
/// inserts rows of 1.5 kB into a plain table in transactions of 64 rows, each committed
/// durably (SQLite: WAL, `synchronous=FULL`, as the receiver runs it). Rows per second.
async fn floor(db: &str, rows: usize) -> f64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let (backend, url) = checkpoint::store::db_url(db);
    let mut conn = sqlx::AnyConnection::connect(&url)
        .await
        .expect("the floor's database");
    if backend == checkpoint::store::Backend::Sqlite {
        for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL"] {
            sqlx::query(pragma).execute(&mut conn).await.unwrap();
        }
    }
    sqlx::query("CREATE TABLE floor (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    let body = "x".repeat(1500);
    let started = Instant::now();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(64) {
        let mut tx = conn.begin().await.unwrap();
        for i in chunk {
            sqlx::query("INSERT INTO floor (id, body) VALUES ($1, $2)")
                .bind(format!("{i:016x}-{}", uuid::Uuid::new_v4()))
                .bind(&body)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    let _ = sqlx::query("DROP TABLE floor").execute(&mut conn).await;
    rate
}

fn ingest_table(what: &str, a: &Args, r: &Ingested) {
    println!("### Durable ingest over HTTP ({what})\n");
    println!("| figure | value |\n|---|---|");
    println!("| reports sent | {} |", a.reports);
    println!(
        "| concurrent senders (keep-alive, one request in flight each) | {} |",
        a.clients
    );
    println!(
        "| answered 201 (each one committed before the answer) | {} |",
        r.ok
    );
    println!("| stored afterwards | {} |", r.stored);
    println!("| wall time | {:.2} s |", r.elapsed.as_secs_f64());
    println!("| **durable reports per second** | **{:.0}** |", r.rate());
    println!("| latency p50 / p99 | {} / {} |", ms(r.p50), ms(r.p99));
    println!();
}

/// Ingest on SQLite, and on Postgres with one and two receivers when `--pg` is given, each
/// beside the durable-insert floor of the same database measured in the same run.
async fn ingest(a: &Args) {
    let dir = tempfile_dir();
    let db = format!("{dir}/ingest.db");
    let sqlite = ingest_into(a, &db, 1).await;
    ingest_table("SQLite", a, &sqlite);
    let sqlite_floor = floor(&format!("{dir}/floor.db"), a.reports).await;
    // Few senders: each has one report in flight, so no batch can hold more than 32 and the
    // fsync of every commit is shared by fewer reports than the floor's 64.
    let few = Args {
        clients: 32,
        pg: None,
        parts: a.parts.clone(),
        ..*a
    };
    let sqlite_few = ingest_into(&few, &format!("{dir}/few.db"), 1).await;
    let mut ratios = vec![
        (
            format!("SQLite, {} senders", a.clients),
            sqlite.rate(),
            sqlite_floor,
        ),
        (
            "SQLite, 32 senders".to_owned(),
            sqlite_few.rate(),
            sqlite_floor,
        ),
    ];
    if let Some(server) = &a.pg {
        let one_db = fresh_pg(server, "one").await;
        let one = ingest_into(a, &one_db, 1).await;
        ingest_table("Postgres, one receiver", a, &one);
        let two_db = fresh_pg(server, "two").await;
        let two = ingest_into(a, &two_db, 2).await;
        ingest_table("Postgres, two receivers on one database", a, &two);
        let pg_floor = floor(&fresh_pg(server, "floor").await, a.reports).await;
        ratios.push((
            format!("Postgres, {} senders", a.clients),
            one.rate(),
            pg_floor,
        ));
        println!("### Scale-out: two receivers on one Postgres\n");
        println!("| receivers | reports/s | p99 | stored of sent |\n|---|---|---|---|");
        for (n, r) in [(1, &one), (2, &two)] {
            println!(
                "| {n} | {:.0} | {} | {} of {} |",
                r.rate(),
                ms(r.p99),
                r.stored,
                a.reports
            );
        }
        println!(
            "| **two / one** | **{:.2}x** (goal 1.5x; both receivers, the senders and Postgres \
             share this machine's {} cores: where one receiver already keeps them busy, a second \
             one on the same cores cannot add much) | | |\n",
            two.rate() / one.rate(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        drop_pg(server).await;
    }
    println!("### Ingest against the durable-insert floor\n");
    println!(
        "The floor: one connection inserting 1.5 kB rows into a plain table, 64 per transaction, \
         each commit durable (SQLite: WAL, synchronous=FULL), measured in this run on the same \
         disk. The receiver's figure includes HTTP, validation and the rollups, and shares the \
         machine with its senders; with 32 senders no batch can reach the floor's 64 reports.\n"
    );
    println!("| database | receiver reports/s | floor rows/s | **ratio** (goal 0.50) |\n|---|---|---|---|");
    for (what, rate, floor) in ratios {
        println!(
            "| {what} | {rate:.0} | {floor:.0} | **{:.2}** |",
            rate / floor
        );
    }
    println!();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The databases this run created on the `--pg` server, dropped at the end.
fn pg_names() -> &'static std::sync::Mutex<Vec<String>> {
    static NAMES: std::sync::OnceLock<std::sync::Mutex<Vec<String>>> = std::sync::OnceLock::new();
    NAMES.get_or_init(Default::default)
}

/// A fresh database on the `--pg` server; its URL.
async fn fresh_pg(server: &str, what: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("checkpoint_bench_{what}_{}", std::process::id());
    let mut conn = sqlx::AnyConnection::connect(server)
        .await
        .expect("Postgres");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    pg_names().lock().unwrap().push(name.clone());
    let (scheme, rest) = server.split_once("://").unwrap();
    let host = rest.split('/').next().unwrap();
    format!("{scheme}://{host}/{name}")
}

async fn drop_pg(server: &str) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::AnyConnection::connect(server).await else {
        return;
    };
    let names: Vec<String> = pg_names().lock().unwrap().drain(..).collect();
    for name in names {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("checkpoint-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

async fn overview(a: &Args, db: &str, what: &str) {
    let dir = tempfile_dir();
    let store = Store::open(db, 4).await.expect("the database opens");
    let until = chrono::Utc::now().date_naive();
    let first = until - chrono::Days::new(u64::from(a.days) - 1);
    let clusters = a.clusters;
    let days = a.days;
    let load = Instant::now();
    let loaded = store
        .run(move |s| async move { load_year(s, clusters, days, first).await })
        .await
        .expect("the data set loads");
    let load_time = load.elapsed();
    let size = match store.backend() {
        checkpoint::store::Backend::Sqlite => std::fs::metadata(db).map(|m| m.len()).unwrap_or(0),
        checkpoint::store::Backend::Postgres => {
            let pool = store.pool().clone();
            store
                .run(move |_| async move {
                    let bytes: i64 = sqlx::query("SELECT pg_database_size(current_database())")
                        .fetch_one(&pool)
                        .await?
                        .try_get(0)?;
                    Ok(bytes as u64)
                })
                .await
                .unwrap_or(0)
        }
    };
    drop(store);

    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), db);
    config.retention = Duration::from_secs(365 * 86_400 * 10);
    let running = checkpoint::start(config)
        .await
        .expect("the receiver starts");
    let timed = |path: String| {
        async move {
            let mut runs = Vec::new();
            let mut bytes = 0;
            for _ in 0..a.runs + 1 {
                let t = Instant::now();
                let (status, body) = checkpoint::fetch::get(&path, Duration::from_secs(60))
                    .await
                    .expect("GET");
                runs.push(t.elapsed());
                bytes = body.len();
                assert!((200..300).contains(&status), "{path}: {status}");
            }
            runs.remove(0); // the first warms the caches
            (median(runs.clone()), *runs.iter().max().unwrap(), bytes)
        }
    };
    let addr = running.addr();
    let (json_med, json_max, json_bytes) =
        timed(format!("http://{addr}/api/overview?days={days}")).await;
    let (page_med, page_max, page_bytes) = timed(format!("http://{addr}/?days={days}")).await;
    let (month_med, _, _) = timed(format!("http://{addr}/api/overview?days=30")).await;
    // The answers per period: the first request computes every period (cold); later ones
    // find the finished periods kept (see store/cache.rs) and compute the current one, with
    // a report stored today before each (live), as on a receiver taking reports.
    let today = chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string();
    let pool = running.store().pool().clone();
    let store = running.store().clone();
    let live = |path: String| {
        let (pool, store, today) = (pool.clone(), store.clone(), today.clone());
        async move {
            let get = || async {
                let t = Instant::now();
                let (status, body) = checkpoint::fetch::get(&path, Duration::from_secs(120))
                    .await
                    .expect("GET");
                assert!((200..300).contains(&status), "{path}: {status}");
                (t.elapsed(), body.len())
            };
            let (cold, bytes) = get().await;
            let mut runs = Vec::new();
            for _ in 0..a.runs {
                let (pool, today) = (pool.clone(), today.clone());
                store
                    .run(move |_| async move {
                        sqlx::query("UPDATE days SET reports = reports + 1 WHERE day = $1")
                            .bind(today)
                            .execute(&pool)
                            .await?;
                        Ok(())
                    })
                    .await
                    .expect("a report today");
                runs.push(get().await.0);
            }
            (cold, median(runs), bytes)
        }
    };
    let mut periods = Vec::new();
    for path in [
        "activity?period=day&periods=30",
        "activity?period=week&periods=12",
        "activity?period=month&periods=12",
        "activity?period=quarter&periods=4",
        "retention?period=week&cohorts=12",
        "retention?period=month&cohorts=12",
        "overview?days=30&min_active_days=7",
    ] {
        periods.push((path, live(format!("http://{addr}/api/{path}")).await));
    }
    let check = running.store().overview(days, until).await.unwrap();
    running.stop().await;
    if let Ok(keep) = std::env::var("CHECKPOINT_BENCH_KEEP") {
        // For looking at the query plans afterwards.
        let _ = std::fs::copy(db, &keep);
    }
    println!("### Overview for a year of a fleet ({what})\n");
    println!("| figure | value |\n|---|---|");
    println!("| loaded directly | {loaded} |");
    println!(
        "| load time / database size | {:.1} s / {:.0} MB |",
        load_time.as_secs_f64(),
        size as f64 / 1e6
    );
    println!(
        "| overview reports {} applications, {} instances, {} reports | |",
        check.applications, check.instances, check.completeness.reports
    );
    println!("| **`GET /api/overview?days={days}`, median of {}** | **{}** (max {}, {} kB; floor 200 ms) |", a.runs, ms(json_med), ms(json_max), json_bytes / 1000);
    println!(
        "| `GET /?days={days}` (the page), median | {} (max {}, {} kB) |",
        ms(page_med),
        ms(page_max),
        page_bytes / 1000
    );
    println!(
        "| `GET /api/overview?days=30`, median | {} |",
        ms(month_med)
    );
    for (path, (cold, live, bytes)) in periods {
        println!(
            "| `GET /api/{path}`: cold / live median of {} | {} / {} ({} kB) |",
            a.runs,
            ms(cold),
            ms(live),
            bytes / 1000
        );
    }
    println!();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Loads the year directly; returns what was loaded, in words.
async fn load_year(
    s: Store,
    clusters: usize,
    days: u32,
    first: chrono::NaiveDate,
) -> Result<String, checkpoint::store::StoreError> {
    let pool = s.pool();
    let day = |i: u32| {
        (first + chrono::Days::new(u64::from(i)))
            .format("%Y-%m-%d")
            .to_string()
    };
    let last = day(days - 1);
    let versions = ["1.0.0", "1.1.0", "1.2.3", "2.0.0"];
    let pgs = ["14.9", "15.4", "16.1", "17.0"];
    let mut tx = pool.begin().await?;
    for chunk in (0..clusters).collect::<Vec<_>>().chunks(500) {
        let mut q = String::from("INSERT INTO clusters (cluster_uuid, first_day, last_day, latest_ts, electric_version, pg_version, os_family, os_name, arch, reports) VALUES ");
        for (n, c) in chunk.iter().enumerate() {
            if n > 0 {
                q.push(',');
            }
            // A tenth of the fleet arrived during the year.
            let joined = if c % 10 == 0 {
                day((*c as u32 / 10) % days)
            } else {
                day(0)
            };
            q.push_str(&format!(
                "('{:08x}-0000-4000-8000-{:012x}', '{joined}', '{last}', 0, '{}', '{}', 'unix', 'linux', 'x86_64-unknown-linux-gnu', {})",
                c, c, versions[c % 4], pgs[c % 3], days * 12
            ));
        }
        sqlx::query(&q).execute(&mut *tx).await?;
    }
    // Two instances per cluster, each restarting (a new id) every 30 days.
    let generations = days.div_ceil(30);
    let mut instances = 0;
    for c in 0..clusters {
        let mut q = String::from("INSERT INTO instances (cluster_uuid, instance_id, first_day, last_day, last_ts, reports, missed_windows) VALUES ");
        let mut n = 0;
        for slot in 0..2 {
            for g in 0..generations {
                let (f, l) = (g * 30, ((g + 1) * 30 - 1).min(days - 1));
                if n > 0 {
                    q.push(',');
                }
                n += 1;
                q.push_str(&format!(
                    "('{:08x}-0000-4000-8000-{:012x}', 'i-{slot}-{g}', '{}', '{}', 0, 180, 0)",
                    c,
                    c,
                    day(f),
                    day(l)
                ));
            }
        }
        instances += n;
        sqlx::query(&q).execute(&mut *tx).await?;
    }
    sqlx::query("CREATE TABLE bench_days (d BIGINT, day TEXT)")
        .execute(&mut *tx)
        .await?;
    for i in 0..days {
        sqlx::query("INSERT INTO bench_days (d, day) VALUES ($1, $2)")
            .bind(i64::from(i))
            .bind(day(i))
            .execute(&mut *tx)
            .await?;
    }
    let counters = checkpoint::COUNTERS.join(", ");
    let values = checkpoint::COUNTERS
        .iter()
        .enumerate()
        .map(|(k, _)| format!("(d.d * {} + {k}) % 100000", k + 3))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!(
        "INSERT INTO cluster_days (cluster_uuid, day, reports, instances, {counters}) \
         SELECT c.cluster_uuid, d.day, 12, 2, {values} FROM clusters c CROSS JOIN bench_days d \
         WHERE d.day >= c.first_day"
    ))
    .execute(&mut *tx)
    .await?;
    let sums = checkpoint::COUNTERS
        .iter()
        .map(|c| format!("SUM({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!(
        "INSERT INTO days (day, reports, clusters, instances, {counters}) \
         SELECT day, SUM(reports), COUNT(*), SUM(instances), {sums} FROM cluster_days GROUP BY day"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DROP TABLE bench_days")
        .execute(&mut *tx)
        .await?;
    // One day of raw reports (12 per cluster), the seed's body each.
    let raw = clusters * 12;
    sqlx::query(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
         INSERT INTO reports (report_id, received_at, day, cluster_uuid, instance_id, report_version, body) \
         SELECT 'raw-' || CAST(i AS TEXT), {}, '{last}', 'c', 'i', 1, $1 FROM n",
        raw - 1,
        chrono::Utc::now().timestamp()
    ))
    .bind(SEED)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM cluster_days")
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    Ok(format!(
        "{clusters} clusters, {instances} instances (2 per cluster, a new id every 30 days), \
         {rows} cluster-day rows, {days} day rows, {raw} raw reports (one day)"
    ))
}
