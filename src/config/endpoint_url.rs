//! The endpoint URL: checked exactly at start, and shown without secrets.
//!
//! A caller may rely on this: a URL that passes [`check_url`] is an `http://` or `https://`
//! URL with a non-empty host, no user name or password, and either no port or a port from 1 to
//! 65535 written in digits, exactly as given. Anything else is a [`ConfigError`] naming
//! `ELECTRIC_TELEMETRY_URL`. The URL parser awc uses accepts `:99999`, `:-1` or `:notaport`
//! and then drops the port, sending reports to port 80 or 443 of the host, so the authority is
//! checked here, before that parser sees it.
//!
//! What is checked is what will be sent. A URL whose query or fragment follows the host
//! directly (`http://host:8080?token=abc`) would go out as `POST ?token=abc`, which no server
//! routes; it is used, logged and returned by `TelemetryConfig::url` with the `/` that an
//! empty http path stands for (`http://host:8080/?token=abc`, RFC 9110 4.2.3). Hosts that pass
//! a parser but can never be reached are refused: brackets around anything but an IPv6
//! address (`[127.0.0.1]`), and a host ending in `.` (`127.0.0.1.`, `example.com.`; TLS
//! names and IP literals have no trailing dot).
//!
//! User names and passwords are refused rather than sent: awc would silently drop them, and
//! sending them as `Authorization: Basic` would put a credential in every report's request
//! for a receiver that is meant to be anonymous. An error never shows them, nor the query (a
//! token often rides there): [`redact`] hides both, also in URLs too broken to parse.

use awc::http::Uri;

use crate::config::ENV_URL;
use crate::error::ConfigError;

/// What `ELECTRIC_TELEMETRY_URL` accepts.
pub(crate) const ACCEPTED_URL: &str = "an absolute http:// or https:// URL with a host, an \
    optional port from 1 to 65535, and no user name or password";

/// Checks `url` exactly and returns the URL that will be used (see the module docs); the
/// error names `ELECTRIC_TELEMETRY_URL` and shows the URL redacted.
pub(crate) fn check_url(url: &str) -> Result<String, ConfigError> {
    let shown = redact(url);
    let fail = |problem: String| Err(ConfigError::new(ENV_URL, &shown, problem, ACCEPTED_URL));
    let Some((scheme, rest)) = url.split_once("://") else {
        return fail("no scheme".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        // Echoed only when it looks like a scheme: anything else may be part of a secret.
        let plain = scheme.len() <= 16 && scheme.bytes().all(|b| b.is_ascii_alphanumeric());
        let named = if plain {
            format!(" {scheme:?}")
        } else {
            String::new()
        };
        return fail(format!("the scheme{named} is not supported"));
    }
    // Problems below never quote the URL's text: with a password holding `/`, `?` or `#`,
    // what looks like a host or a port may be part of it.
    let userinfo = "it holds a user name or password (an '@' before the query), which \
                    telemetry never sends; remove them";
    let before_query = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    if before_query.contains('@') {
        return fail(userinfo.to_owned());
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (host, port) = split_host_port(authority);
    if host.is_empty() {
        return fail("no host".to_owned());
    }
    if let Some(inside) = host.strip_prefix('[') {
        let inside = inside.strip_suffix(']').unwrap_or(inside);
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return fail(
                "the host in brackets is not an IPv6 address (write an IPv4 address or a \
                 name without brackets)"
                    .to_owned(),
            );
        }
    } else if host.ends_with('.') {
        return fail("the host ends with '.' (remove the trailing dot)".to_owned());
    }
    let port = match port {
        None => None,
        Some(port) => match parse_port(port) {
            Ok(port) => Some(port),
            Err(problem) => return fail(problem),
        },
    };
    let uri: Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return fail(format!("not a valid URL ({e})")),
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return fail(userinfo.to_owned());
    }
    // Belt and braces: what awc will use must be what was checked.
    if uri.host().is_none_or(str::is_empty) || uri.port_u16() != port {
        return fail("not a valid URL".to_owned());
    }
    // `scheme://authority` directly followed by `?` or `#`: the empty path is `/`.
    let at = url.len() - rest.len() + end;
    if url[at..].starts_with(['?', '#']) {
        return Ok(format!("{}/{}", &url[..at], &url[at..]));
    }
    Ok(url.to_owned())
}

/// Splits an authority (no userinfo) into host and port text; `[v6]:port` keeps its brackets.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(close) => {
                let (host, after) = authority.split_at(close + 1);
                (
                    host,
                    after
                        .strip_prefix(':')
                        .or(Some(after).filter(|a| !a.is_empty())),
                )
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// A port written as 1 to 65535 in digits; the problem otherwise.
fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("the port is empty (nothing after the ':')".to_owned());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a number".to_owned());
    }
    match port.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err("the port is out of range (1 to 65535)".to_owned()),
    }
}

/// `url` with anything that may be a credential hidden: everything between the scheme and the
/// last `@` (user name and password, also when they hold `/`, `?` or `#`), and the query and
/// fragment. Works on any text, parsable or not.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let rest = match rest.rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_owned(),
    };
    let rest = match rest.find(['?', '#']) {
        Some(cut) => format!("{}?***", &rest[..cut]),
        None => rest,
    };
    format!("{scheme}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_userinfo_and_query_whatever_the_shape() {
        assert_eq!(
            redact("ftp://user:S3CRETPW@host/?token=abc"),
            "ftp://***@host/?***"
        );
        assert_eq!(
            redact("https://u:p?w#d@h:1/x?t=1#f"),
            "https://***@h:1/x?***"
        );
        assert_eq!(redact("user:S3CRET@host"), "***@host");
        assert_eq!(redact("http://host/path"), "http://host/path");
    }

    #[test]
    fn ports_are_digits_in_range() {
        assert_eq!(parse_port("443"), Ok(443));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in [
            "", "0", "65536", "99999", "-1", "+1", "notaport", "1e3", " 80",
        ] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_request_target_is_what_was_checked() {
        // awc writes the URI's path and query as the request target.
        let sent = |url: &str| {
            let used = check_url(url).unwrap();
            let uri: Uri = used.parse().unwrap();
            uri.path_and_query().map(|p| p.as_str().to_owned())
        };
        assert_eq!(sent("http://h:1?token=abc").as_deref(), Some("/?token=abc"));
        assert_eq!(sent("http://h:1#part").as_deref(), Some("/"));
        assert_eq!(
            sent("http://h:1/in?token=abc").as_deref(),
            Some("/in?token=abc")
        );
        assert_eq!(check_url("http://h:1").unwrap(), "http://h:1");
    }

    #[test]
    fn ipv6_hosts_keep_their_port() {
        assert_eq!(split_host_port("[::1]:8080"), ("[::1]", Some("8080")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("[::1]x"), ("[::1]", Some("x")));
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("http://[127.0.0.1]:8080/x").is_err());
        assert!(check_url("http://[::1]:0/x").is_err());
    }
}
