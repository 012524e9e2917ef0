//! The answers' token: `Authorization: Bearer TOKEN`, or HTTP Basic with the token as the
//! password (any user name), so that a browser prompts for it. Compared in constant time; the
//! token never appears in a log line, an error or a `Debug` output.

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::Engine;
use subtle::ConstantTimeEq;

/// The shortest token accepted.
pub const MIN_LEN: usize = 16;

/// A read token. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadToken(String);

impl std::fmt::Debug for ReadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadToken(…)")
    }
}

impl ReadToken {
    /// Checks a token given through `what` (named in the error, the token never is).
    pub fn new(token: &str, what: &str) -> Result<Self, String> {
        if token.is_empty() {
            return Err(format!(
                "{what} is empty: give a token of at least {MIN_LEN} visible ASCII characters"
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{what} must be visible ASCII characters only (no spaces or control characters)"
            ));
        }
        if token.len() < MIN_LEN {
            return Err(format!(
                "{what} is {} characters long; use at least {MIN_LEN} (e.g. `openssl rand -hex 32`)",
                token.len()
            ));
        }
        Ok(ReadToken(token.to_owned()))
    }

    /// Reads the token from a file (its first line, surrounding whitespace removed).
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--read-token-file {}: cannot read it: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim();
        Self::new(
            line,
            &format!("the token in --read-token-file {}", path.display()),
        )
    }

    fn matches(&self, given: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(given))
    }

    /// Whether `req` carries the token.
    pub fn allows(&self, req: &HttpRequest) -> bool {
        let Some(value) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.matches(rest.as_bytes())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return false;
            };
            match decoded.iter().position(|&b| b == b':') {
                Some(i) => self.matches(&decoded[i + 1..]),
                None => false,
            }
        } else {
            false
        }
    }
}
