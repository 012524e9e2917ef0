//! A CONNECT proxy on 127.0.0.1 for the tests: real TCP, a thread per connection.
//!
//! It tunnels only to loopback targets (anything else gets a 403), can require
//! `Proxy-Authorization: Basic`, can refuse every tunnel with a given status, and records each
//! CONNECT it sees. Bounded: it serves at most 200 connections and ends with the test process.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One CONNECT request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request's target, `host:port`.
    pub target: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    /// The `Proxy-Authorization` value required, if any.
    required: Mutex<Option<String>>,
    /// Answer every CONNECT with this status instead of tunnelling.
    refuse: Mutex<Option<u16>>,
}

pub struct ConnectProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    state: Arc<State>,
}

impl ConnectProxy {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(200).flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state,
        }
    }

    /// Requires `Proxy-Authorization: Basic base64(user:password)`; else 407.
    pub fn require_basic(&self, user: &str, password: &str) {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        *self.state.required.lock().unwrap() = Some(format!("Basic {token}"));
    }

    /// Answers every CONNECT with `status` from now on (`None`: tunnels again).
    pub fn refuse_with(&self, status: Option<u16>) {
        *self.state.refuse.lock().unwrap() = status;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

fn serve(client: TcpStream, state: &State) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("proxy-authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    state.seen.lock().unwrap().push(Seen {
        target: target.to_owned(),
        authorization: authorization.clone(),
    });
    let mut client = client;
    let answer = |client: &mut TcpStream, status: &str| {
        let _ = client.write_all(
            format!(
                "HTTP/1.1 {status}\r\nProxy-Authenticate: Basic realm=\"test\"\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let _ = client.shutdown(Shutdown::Both);
    };
    if method != "CONNECT" {
        return answer(&mut client, "405 Method Not Allowed");
    }
    if let Some(status) = *state.refuse.lock().unwrap() {
        return answer(&mut client, &format!("{status} Refused By Test Proxy"));
    }
    let required = state.required.lock().unwrap().clone();
    if required.is_some() && required != authorization {
        return answer(&mut client, "407 Proxy Authentication Required");
    }
    // Loopback only: no test may reach anything else.
    let loopback = target.starts_with("127.0.0.1:") || target.starts_with("localhost:");
    if !loopback {
        return answer(&mut client, "403 Forbidden");
    }
    let Ok(upstream) = TcpStream::connect(target) else {
        return answer(&mut client, "502 Bad Gateway");
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    // The reader may hold bytes the client sent right after the head (none expected: the
    // client waits for the 200), so copy from it rather than from the socket.
    let _ = client.set_read_timeout(None);
    let mut up_write = upstream.try_clone().unwrap();
    let mut down_write = client.try_clone().unwrap();
    let mut up_read = upstream;
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_read, &mut down_write);
    let _ = down_write.shutdown(Shutdown::Write);
    let _ = up.join();
}
