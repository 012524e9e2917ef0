//! A plain HTTP/1.1 GET for the receiver's own tools (`checkpoint summary --url`, the bench),
//! so that the receiver needs no HTTP client crate: one request per connection
//! (`Connection: close`), `http://` only, the answer read to its end (with `Content-Length`,
//! chunked, or until the server closes), bounded in size and time.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest answer read.
pub const MAX_ANSWER: usize = 64 << 20;

/// GETs `url` (`http://host[:port]/path?query`): the status and the body.
pub async fn get(url: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    tokio::time::timeout(timeout, get_now(url))
        .await
        .map_err(|_| format!("{url} did not answer within {timeout:?}"))?
}

async fn get_now(url: &str) -> Result<(u16, Vec<u8>), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url}: only http:// URLs are read (for https, use --db on the receiver's host)")
    })?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url}: expected http://host:port/path"));
    }
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| format!("cannot reach {authority}: {e}"))?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send to {authority}: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read from {authority}: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > MAX_ANSWER {
            return Err(format!(
                "{url}: the answer is larger than {MAX_ANSWER} bytes"
            ));
        }
    }
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let mut body = answer[end + 4..].to_vec();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        body = unchunk(&body).ok_or_else(|| format!("{url}: a broken chunked answer"))?;
    } else if let Some(length) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        body.truncate(length);
    }
    Ok((status, body))
}

/// A chunked body decoded, or `None` if it is broken.
fn unchunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_decoded_and_a_broken_one_refused() {
        assert_eq!(
            unchunk(b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n").as_deref(),
            Some(&b"hello world"[..])
        );
        assert_eq!(unchunk(b"5\r\nhel"), None);
        assert_eq!(unchunk(b"zz\r\n"), None);
    }

    #[actix_rt::test]
    async fn only_http_urls_are_read() {
        let e = get("https://example.invalid/", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("only http://"), "{e}");
        let e = get("http://user@127.0.0.1:1/", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.contains("expected http://host:port/path"), "{e}");
    }
}
