//! What the integration tests share: the recording loopback receiver (`receiver.rs`), the same
//! receiver behind TLS with a self-signed certificate (`tls.rs`), a sender set up against a
//! stand-in (`sender.rs`), paused-time stepping and an actor that keeps the scheduler's
//! reports (`paused.rs`), a server that cuts responses short, log capture, and small helpers.
#![allow(dead_code)] // Each test binary uses a different part of it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use electric_telemetry::{Report, Usage};

pub mod paused;
mod receiver;
pub mod sender;
pub mod tls;
#[allow(unused_imports)] // Not every test binary uses the receiver.
pub use receiver::*;

/// Polls the sender's outbox status (real time, bounded to 10 s) until `done` holds, and
/// returns the last status seen, for the caller to assert on.
pub async fn outbox_status_when(
    sender: &actix::Addr<electric_telemetry::internals::Sender>,
    done: impl Fn(&electric_telemetry::OutboxStatus) -> bool,
) -> electric_telemetry::OutboxStatus {
    let mut status = electric_telemetry::OutboxStatus::default();
    for _ in 0..1000 {
        status = sender
            .send(electric_telemetry::internals::GetOutboxStatus)
            .await
            .expect("the sender answers");
        if done(&status) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    status
}

/// A raw HTTP/1.1 server on 127.0.0.1 that cuts the first `cut` connections in the middle of
/// the response head, then answers 200 with `Connection: close`, keeping the bodies it took.
pub struct CuttingServer {
    pub url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl CuttingServer {
    pub fn start(cut: usize) -> Self {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/checkpoint", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        listener.set_nonblocking(false).unwrap();
        std::thread::spawn(move || {
            // Bounded: it serves a few connections and ends with the test process.
            for (i, stream) in listener.incoming().take(cut + 20).enumerate() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let Some(body) = read_request(&stream) else {
                    continue;
                };
                if i < cut {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                kept.lock().unwrap().push(body);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Self { url, bodies }
    }

    pub fn reports(&self) -> Vec<Report> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }
}

/// Reads one HTTP/1.1 request from `stream`, head then its `Content-Length` body, and
/// returns the body; `None` if the connection ends first. For raw test servers that answer
/// one request per connection.
pub fn read_request(stream: &std::net::TcpStream) -> Option<Vec<u8>> {
    read_request_line_and_body(stream).map(|(_, body)| body)
}

/// [`read_request`], with the request line as sent (`POST /path?query HTTP/1.1`, no CRLF).
pub fn read_request_line_and_body(stream: &std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    let mut request_line = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if request_line.is_none() {
            request_line = Some(line.trim_end().to_owned());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((request_line?, body))
}

/// `base` joined with a name that is not UTF-8 (say Latin-1 "café", `b"caf\xe9"`): valid on
/// Linux, mangled by a lossy conversion into "caf\u{FFFD}".
#[cfg(unix)]
pub fn non_utf8(base: &std::path::Path, leaf: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    base.join(std::ffi::OsStr::from_bytes(leaf))
}

/// A loopback port with nothing listening on it (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (real time, bounded) until `check` holds; false if it never did.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

/// The nine usage counters of a report, in a fixed order, for summing.
pub fn counters(usage: &Usage) -> [u64; 9] {
    [
        usage.operations_from_pg,
        usage.transactions_from_pg,
        usage.operations_received_from_clients,
        usage.transactions_received_from_clients,
        usage.operations_sent_to_clients,
        usage.transactions_sent_to_clients,
        usage.initial_syncs,
        usage.subscriptions_established,
        usage.subscriptions_continued,
    ]
}

/// Sums the nine counters over reports.
pub fn sum_counters(reports: &[Report]) -> [u64; 9] {
    reports.iter().fold([0; 9], |mut acc, r| {
        for (a, c) in acc.iter_mut().zip(counters(&r.data.usage)) {
            *a += c;
        }
        acc
    })
}

/// The seed's sample payload (telemetry.md), in our envelope. Parsing it into [`Report`], whose
/// types deny unknown fields, pins that we send exactly the seed's names and nesting.
pub const SEED_SAMPLE: &str = include_str!("../fixtures/seed_report.json");

pub fn seed_report() -> Report {
    serde_json::from_str(SEED_SAMPLE).expect("the seed's sample parses as a Report")
}

/// A variable lookup for `with_env_from`, from fixed pairs: no test touches the process env.
pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Everything logged through `tracing`, kept for assertions. Installed as the global
/// subscriber (the sender logs from its own thread), so one test binary may install it once.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs a global subscriber with `filter` (an env-filter directive) writing here.
    pub fn install(filter: &str) -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The crate's lines that contain `level` (e.g. `" WARN "`).
    pub fn lines(&self, level: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains("electric_telemetry"))
            .map(str::to_owned)
            .collect()
    }
}
