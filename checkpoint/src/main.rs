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
}

#[derive(Debug, Args)]
struct Serve {
    /// Address and port to listen on (use port 0 for any free port).
    #[arg(long, env = "CHECKPOINT_LISTEN", default_value = "127.0.0.1:4318")]
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
    /// Log filter (tracing-subscriber syntax, e.g. info, debug, checkpoint=debug).
    #[arg(long, env = "CHECKPOINT_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Args)]
struct Summary {
    /// The database to read (a SQLite file path or a postgres:// URL); ignored with --url.
    #[arg(long, env = "CHECKPOINT_DB", default_value = "checkpoint.db")]
    db: String,
    /// A running receiver to ask instead, e.g. http://127.0.0.1:4318 (its /api/overview).
    #[arg(long, env = "CHECKPOINT_URL")]
    url: Option<String>,
    /// How many days, ending with --until, to count.
    #[arg(long, env = "CHECKPOINT_DAYS", default_value_t = 30)]
    days: u32,
    /// The last day counted (YYYY-MM-DD, UTC); today by default.
    #[arg(long, env = "CHECKPOINT_UNTIL")]
    until: Option<chrono::NaiveDate>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.command {
        Some(Command::Summary(_)) => "warn".to_owned(),
        None => cli.serve.log.clone(),
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("checkpoint: --log {filter:?} is not a log filter: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = actix_rt::System::new().block_on(async move {
        match cli.command {
            Some(Command::Summary(s)) => summary(s).await,
            None => serve(cli.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("checkpoint: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(s: Serve) -> Result<(), String> {
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
    };
    let running = checkpoint::start(config).await.map_err(|e| e.to_string())?;
    running.wait().await.map_err(|e| e.to_string())?;
    tracing::info!("stopped; every accepted report is stored");
    Ok(())
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
            let mut answer = awc::Client::new()
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("cannot reach {url}: {e}"))?;
            if !answer.status().is_success() {
                let body = answer.body().await.unwrap_or_default();
                return Err(format!(
                    "{url} answered {}: {}",
                    answer.status(),
                    String::from_utf8_lossy(&body)
                ));
            }
            answer
                .json()
                .limit(64 << 20)
                .await
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
