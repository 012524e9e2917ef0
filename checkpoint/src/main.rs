//! The `checkpoint` command: run the receiver, or print its answers as one line.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use checkpoint::{Overview, ServerConfig};
use clap::{Args, Parser, Subcommand};

/// Receives electric-telemetry reports and answers how many applications use the sync
/// service and what volume of data they sync.
///
/// Without a subcommand it runs the receiver: reports are POSTed to --path (point a fleet at it
/// with ELECTRIC_TELEMETRY_URL=http://HOST:PORT/), the answers are at GET /api/overview?days=N
/// (JSON) and GET / (a page). Every flag can also be set through the environment variable named
/// after it.
#[derive(Debug, Parser)]
#[command(name = "checkpoint", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Serve,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the answers as one line: "N applications, N instances, N operations from
    /// Postgres, N operations sent to clients", read from a database or a running receiver.
    Summary(Summary),
    /// Copy a SQLite database consistently, also while a receiver writes to it (VACUUM INTO):
    /// DEST must not exist. Restore by stopping the receiver and putting the copy in place.
    Backup(Backup),
    /// The reports refused and kept with their reason (never counted): `list` shows counts by
    /// reason and samples, `replay` re-checks every one with today's rules and stores those
    /// that now pass, each exactly once.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Print the stored raw reports counted on --from to --until (what raw retention still
    /// holds) as NDJSON on stdout, one report per line, oldest day first.
    Export {
        #[command(flatten)]
        db: QuarantineDb,
        /// The first day (YYYY-MM-DD, UTC); today by default.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// The last day (YYYY-MM-DD, UTC); today by default.
        #[arg(long)]
        until: Option<chrono::NaiveDate>,
    },
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// Counts by reason, the bytes kept, how many were dropped, and the newest samples.
    List {
        #[command(flatten)]
        db: QuarantineDb,
        /// Samples shown per reason (0 to 100).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
        samples: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-check every kept report (today's schema, versions, clock and --max-per-window) and
    /// store those that pass; run it after an upgrade or a change of the rules.
    Replay {
        #[command(flatten)]
        db: QuarantineDb,
        /// As the receiver's --max-per-window.
        #[arg(long, env = "CHECKPOINT_MAX_PER_WINDOW", default_value_t = 10_000_000)]
        max_per_window: u64,
    },
}

#[derive(Debug, Args)]
struct QuarantineDb {
    /// The database (a SQLite file path or a postgres:// URL).
    #[arg(long, env = "CHECKPOINT_DB", default_value = "checkpoint.db")]
    db: String,
}

#[derive(Debug, Args)]
struct Backup {
    /// The SQLite database to copy (Postgres: use pg_dump).
    #[arg(long, env = "CHECKPOINT_DB", default_value = "checkpoint.db")]
    db: String,
    /// Where to write the copy (a new file).
    dest: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct Serve {
    /// Address and port to listen on (use port 0 for any free port).
    #[arg(long, env = "CHECKPOINT_LISTEN", default_value = "127.0.0.1:7431")]
    listen: SocketAddr,
    /// Where reports are stored: a SQLite file path (created, with its tables, if missing), or
    /// a postgres://user:password@host/database URL, which several receivers can share.
    #[arg(long, env = "CHECKPOINT_DB", default_value = "checkpoint.db")]
    db: String,
    /// The path reports are POSTed to.
    #[arg(long, env = "CHECKPOINT_PATH", default_value = "/")]
    path: String,
    /// The largest report body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "CHECKPOINT_BODY_LIMIT", default_value_t = 65536)]
    body_limit: usize,
    /// How long raw reports are kept after receipt (e.g. 30days, 12h); the per-day rollups
    /// the answers read are kept for good.
    #[arg(long, env = "CHECKPOINT_RETENTION", default_value = "30days", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Reports waiting to be written before new ones get 429 with Retry-After.
    #[arg(long, env = "CHECKPOINT_QUEUE", default_value_t = 4096)]
    queue: usize,
    /// Reports one cluster (electric_cluster_uuid) may send in a burst before 429.
    #[arg(long, env = "CHECKPOINT_CLUSTER_BURST", default_value_t = 120)]
    cluster_burst: u32,
    /// Reports one cluster may send per hour once its burst is spent (a 4 h interval is 6 a
    /// day per instance).
    #[arg(long, env = "CHECKPOINT_CLUSTER_PER_HOUR", default_value_t = 600)]
    cluster_per_hour: u32,
    /// HTTP worker threads.
    #[arg(long, env = "CHECKPOINT_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Database connections in the pool.
    #[arg(long, env = "CHECKPOINT_DB_CONNECTIONS", default_value_t = 4)]
    db_connections: u32,
    /// On SIGINT/SIGTERM, how long requests in flight may take to finish (each is answered
    /// after its report is committed; queued reports are always committed before exit).
    #[arg(long, env = "CHECKPOINT_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    /// Log filter (tracing-subscriber syntax, e.g. info, debug, checkpoint=debug); without it,
    /// RUST_LOG, else info.
    #[arg(long, env = "CHECKPOINT_LOG")]
    log: Option<String>,
    /// Log lines as text (coloured only when stderr is a terminal and NO_COLOR is unset) or as
    /// one JSON object per line.
    #[arg(
        long,
        env = "CHECKPOINT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// The token the answers (/, /api/*, /metrics) need, as `Authorization: Bearer TOKEN` or
    /// HTTP Basic with the token as password (at least 16 visible characters). Prefer the
    /// variable or --read-token-file: a flag shows in the process list.
    #[arg(
        long,
        env = "CHECKPOINT_READ_TOKEN",
        hide_env_values = true,
        conflicts_with = "read_token_file"
    )]
    read_token: Option<String>,
    /// A file holding the read token (its first line).
    #[arg(long, env = "CHECKPOINT_READ_TOKEN_FILE")]
    read_token_file: Option<std::path::PathBuf>,
    /// Serve the answers on this second address; the --listen address then serves only
    /// ingest, /healthz and /readyz.
    #[arg(long, env = "CHECKPOINT_ANSWERS_LISTEN")]
    answers_listen: Option<SocketAddr>,
    /// Serve the answers without a token on a non-loopback address, on purpose.
    #[arg(long, env = "CHECKPOINT_PUBLIC_ANSWERS")]
    public_answers: bool,
    /// Distinct clusters one source address may report for per hour before 429 (0 = unlimited).
    #[arg(
        long,
        env = "CHECKPOINT_SOURCE_NEW_CLUSTERS_PER_HOUR",
        default_value_t = 30
    )]
    source_new_clusters_per_hour: u32,
    /// Reports one source address may send per minute before 429 (0 = unlimited).
    #[arg(long, env = "CHECKPOINT_SOURCE_PER_MINUTE", default_value_t = 600)]
    source_per_minute: u32,
    /// Connections one source address may hold open at once (0 = unlimited); trusted proxies
    /// are exempt.
    #[arg(long, env = "CHECKPOINT_SOURCE_CONNECTIONS", default_value_t = 32)]
    source_connections: u32,
    /// A proxy (ADDR/PREFIX) whose X-Forwarded-For or Forwarded names the source; repeatable.
    #[arg(
        long = "trusted-proxy",
        env = "CHECKPOINT_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    trusted_proxy: Vec<checkpoint::sources::Cidr>,
    /// The whole body must arrive within this long after the request head (408 after it).
    #[arg(long, env = "CHECKPOINT_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// How long an idle keep-alive connection stays open (0s: no keep-alive).
    #[arg(long, env = "CHECKPOINT_KEEP_ALIVE", default_value = "5s", value_parser = humantime::parse_duration)]
    keep_alive: Duration,
    /// The most any counter of a report may count per second of its window (timestamp -
    /// last_reported); a report above it is quarantined (202) and never counted. 0: no check.
    #[arg(long, env = "CHECKPOINT_MAX_PER_WINDOW", default_value_t = 10_000_000)]
    max_per_window: u64,
    /// The most the quarantine keeps (e.g. 100MB, 1GiB, 0: keep none); past it the oldest kept
    /// reports are dropped and counted.
    #[arg(long, env = "CHECKPOINT_QUARANTINE_MAX", default_value = "100MB", value_parser = parse_bytes)]
    quarantine_max: u64,
}

/// A size in bytes: a whole number with an optional unit (B, kB, MB, GB, KiB, MiB, GiB).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; give bytes, e.g. 100MB, 512KiB or 0"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; accepted: B, kB, MB, GB, KiB, MiB, GiB"
            ))
        }
    };
    n.checked_mul(scale)
        .filter(|b| *b <= 1 << 40)
        .ok_or_else(|| format!("{text:?} is more than 1 TiB"))
}

#[derive(Debug, Args)]
struct Summary {
    /// The database to read (a SQLite file path or a postgres:// URL); ignored with --url.
    #[arg(long, env = "CHECKPOINT_DB", default_value = "checkpoint.db")]
    db: String,
    /// A running receiver to ask instead, e.g. http://127.0.0.1:7431 (its /api/overview).
    #[arg(long, env = "CHECKPOINT_URL")]
    url: Option<String>,
    /// How many days, ending with --until, to count.
    #[arg(long, env = "CHECKPOINT_DAYS", default_value_t = 30)]
    days: u32,
    /// The last day counted (YYYY-MM-DD, UTC); today by default.
    #[arg(long, env = "CHECKPOINT_UNTIL")]
    until: Option<chrono::NaiveDate>,
}

/// A failure and its exit code: 2 for a configuration error (as clap's own), 1 otherwise.
struct Failure(u8, String);

impl From<String> for Failure {
    fn from(m: String) -> Self {
        Failure(1, m)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (filter, source) = match &cli.command {
        Some(_) => ("warn".to_owned(), "the default"),
        None => match (&cli.serve.log, std::env::var("RUST_LOG")) {
            (Some(f), _) => (f.clone(), "--log"),
            (None, Ok(f)) if !f.trim().is_empty() => (f, "RUST_LOG"),
            _ => ("info".to_owned(), "the default"),
        },
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("checkpoint: {source} {filter:?} is not a log filter: {e}");
            return ExitCode::from(2);
        }
    };
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.serve.log_format {
        LogFormat::Json => builder.json().with_ansi(false).init(),
        LogFormat::Text => builder.with_ansi(colour).init(),
    }
    let result = actix_rt::System::new().block_on(async move {
        match cli.command {
            Some(Command::Summary(s)) => summary(s).await.map_err(Failure::from),
            Some(Command::Backup(b)) => backup(b).await,
            Some(Command::Quarantine(q)) => quarantine(q).await,
            Some(Command::Export { db, from, until }) => export(&db.db, from, until).await,
            None => serve(cli.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, e)) => {
            eprintln!("checkpoint: {e}");
            ExitCode::from(code)
        }
    }
}

async fn serve(s: Serve) -> Result<(), Failure> {
    let read_token = match (&s.read_token, &s.read_token_file) {
        (Some(t), _) => Some(
            checkpoint::auth::ReadToken::new(t, "--read-token (CHECKPOINT_READ_TOKEN)")
                .map_err(|e| Failure(2, e))?,
        ),
        (None, Some(path)) => {
            Some(checkpoint::auth::ReadToken::from_file(path).map_err(|e| Failure(2, e))?)
        }
        (None, None) => None,
    };
    let config = ServerConfig {
        listen: s.listen,
        db: s.db,
        path: s.path,
        body_limit: s.body_limit,
        retention: s.retention,
        queue: s.queue,
        cluster_burst: s.cluster_burst,
        cluster_per_hour: s.cluster_per_hour,
        workers: s.workers,
        db_connections: s.db_connections,
        shutdown_timeout: s.shutdown_timeout,
        handle_signals: true,
        read_token,
        answers_listen: s.answers_listen,
        public_answers: s.public_answers,
        source_new_clusters_per_hour: s.source_new_clusters_per_hour,
        source_per_minute: s.source_per_minute,
        source_connections: s.source_connections,
        trusted_proxies: s.trusted_proxy,
        body_timeout: s.body_timeout,
        keep_alive: s.keep_alive,
        max_per_window: s.max_per_window,
        quarantine_max: s.quarantine_max,
    };
    let running = checkpoint::start(config).await.map_err(|e| match e {
        checkpoint::StartError::Config(m) => Failure(2, format!("invalid setting: {m}")),
        e => Failure(1, e.to_string()),
    })?;
    running
        .wait()
        .await
        .map_err(|e| Failure(1, e.to_string()))?;
    tracing::info!("stopped; every accepted report is stored");
    Ok(())
}

async fn backup(b: Backup) -> Result<(), Failure> {
    let (backend, _) = checkpoint::store::db_url(&b.db);
    if backend != checkpoint::store::Backend::Sqlite {
        return Err(Failure(
            2,
            "backup copies a SQLite database; back up Postgres with pg_dump (see the README)"
                .to_owned(),
        ));
    }
    if !b.db.starts_with("sqlite:") && !std::path::Path::new(&b.db).exists() {
        return Err(Failure(
            2,
            format!("no database at {}: give its --db", b.db),
        ));
    }
    if b.dest.exists() {
        return Err(Failure(
            2,
            format!("{} exists already; give a new file", b.dest.display()),
        ));
    }
    let dest = b
        .dest
        .to_str()
        .ok_or_else(|| Failure(2, format!("{} is not UTF-8", b.dest.display())))?
        .to_owned();
    let store = checkpoint::Store::open(&b.db, 1)
        .await
        .map_err(|e| format!("{}: {e}", b.db))?;
    let quoted = dest.replace('\'', "\'\'");
    store
        .run(move |s| async move {
            sqlx::query(&format!("VACUUM INTO '{quoted}'"))
                .execute(s.pool())
                .await?;
            Ok(())
        })
        .await
        .map_err(|e| format!("cannot copy {} to {dest}: {e}", b.db))?;
    println!("copied {} to {dest}", b.db);
    Ok(())
}

/// Opens an existing database for a tool (never creates an empty SQLite file).
async fn open_existing(db: &str) -> Result<checkpoint::Store, Failure> {
    let (backend, _) = checkpoint::store::db_url(db);
    if backend == checkpoint::store::Backend::Sqlite
        && !db.starts_with("sqlite:")
        && !std::path::Path::new(db).exists()
    {
        return Err(Failure(
            2,
            format!("no database at {db}: give the --db the receiver was started with"),
        ));
    }
    checkpoint::Store::open(db, 1)
        .await
        .map_err(|e| Failure(1, format!("{}: {e}", checkpoint::store::redacted(db))))
}

async fn export(
    db: &str,
    from: Option<chrono::NaiveDate>,
    until: Option<chrono::NaiveDate>,
) -> Result<(), Failure> {
    use std::io::Write;
    let today = chrono::Utc::now().date_naive();
    let (from, until) = (from.unwrap_or(today), until.unwrap_or(today));
    if from > until {
        return Err(Failure(
            2,
            format!("--from {from} is after --until {until}"),
        ));
    }
    let store = open_existing(db).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut cursor = None;
    loop {
        let rows = checkpoint::export::raw_page(&store, from, until, cursor)
            .await
            .map_err(|e| e.to_string())?;
        for (_, _, body) in &rows {
            writeln!(out, "{body}").map_err(|e| format!("cannot write: {e}"))?;
        }
        if (rows.len() as i64) < checkpoint::export::PAGE {
            break;
        }
        cursor = rows.last().map(|(d, id, _)| (d.clone(), id.clone()));
    }
    out.flush()
        .map_err(|e| Failure(1, format!("cannot write: {e}")))
}

async fn quarantine(q: QuarantineCommand) -> Result<(), Failure> {
    match q {
        QuarantineCommand::List { db, samples, json } => {
            let store = open_existing(&db.db).await?;
            let reasons = checkpoint::quarantine::list(&store, samples)
                .await
                .map_err(|e| e.to_string())?;
            let totals = checkpoint::quarantine::totals(&store)
                .await
                .map_err(|e| e.to_string())?;
            if json {
                let out = serde_json::json!({ "totals": totals, "reasons": reasons });
                println!("{out}");
                return Ok(());
            }
            println!(
                "{} reports kept ({} bytes); {} dropped to stay under --quarantine-max",
                totals.reports, totals.bytes, totals.dropped
            );
            for r in reasons {
                println!("{}: {} reports, {} bytes", r.reason, r.reports, r.bytes);
                for s in r.samples {
                    println!(
                        "  {} {}: {}\n    {}",
                        s.received,
                        s.report_id.as_deref().unwrap_or("(no report_id)"),
                        s.detail,
                        checkpoint::validate::printable(&s.body)
                    );
                }
            }
            Ok(())
        }
        QuarantineCommand::Replay { db, max_per_window } => {
            let store = open_existing(&db.db).await?;
            let validator =
                checkpoint::Validator::with_rules(checkpoint::validate::Plausibility {
                    max_per_second: max_per_window,
                })?;
            let done = checkpoint::quarantine::replay(&store, &validator)
                .await
                .map_err(|e| e.to_string())?;
            let still: u64 = done.still_refused.values().sum();
            let by = done
                .still_refused
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "replayed: {} stored, {} already stored, {still} still refused{}",
                done.stored,
                done.already_stored,
                if by.is_empty() {
                    String::new()
                } else {
                    format!(" ({by})")
                }
            );
            Ok(())
        }
    }
}

async fn summary(s: Summary) -> Result<(), String> {
    let until = s.until.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let overview: Overview = match &s.url {
        Some(url) => {
            let url = format!(
                "{}/api/overview?days={}&until={until}",
                url.trim_end_matches('/'),
                s.days
            );
            let (status, body) =
                checkpoint::fetch::get(&url, std::time::Duration::from_secs(60)).await?;
            if !(200..300).contains(&status) {
                return Err(format!(
                    "{url} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            serde_json::from_slice(&body)
                .map_err(|e| format!("{url} did not answer an overview: {e}"))?
        }
        None => {
            let (backend, _) = checkpoint::store::db_url(&s.db);
            if backend == checkpoint::store::Backend::Sqlite
                && !s.db.starts_with("sqlite:")
                && !std::path::Path::new(&s.db).exists()
            {
                // Opening would create an empty database and answer zeros.
                return Err(format!(
                    "no database at {}: give the --db the receiver was started with, or --url",
                    s.db
                ));
            }
            let store = checkpoint::Store::open(&s.db, 1)
                .await
                .map_err(|e| format!("{}: {e}", checkpoint::store::redacted(&s.db)))?;
            store
                .overview(s.days, until)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    println!("{}", overview.summary_line());
    Ok(())
}
