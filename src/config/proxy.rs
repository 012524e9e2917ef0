//! Which proxy, if any, telemetry goes through: the settings, their precedence, and `NO_PROXY`.
//! How a `NO_PROXY` list matches a host is `no_proxy.rs`.
//!
//! Contract (the README's configuration table says the same):
//! - `ELECTRIC_TELEMETRY_PROXY` or the builder's `proxy(..)` give telemetry a proxy of its own
//!   (a proxy URL), or `none` to go direct whatever the conventional variables say. Like every
//!   `ELECTRIC_*` variable, the environment wins over the code when `with_env` comes after.
//!   `NO_PROXY` does not apply to this proxy: it was given to telemetry alone.
//! - Otherwise the conventional variables, read as curl reads them, lower case first:
//!   `https_proxy`/`HTTPS_PROXY` for an https endpoint, `http_proxy`/`HTTP_PROXY` for an http
//!   one, then `all_proxy`/`ALL_PROXY`; and `no_proxy`/`NO_PROXY`, a comma-separated list of
//!   host names, domain suffixes (`example.com` and `.example.com` both match the domain and
//!   its subdomains), IP addresses, CIDR ranges (`10.0.0.0/8`, `fd00::/8`), each optionally
//!   with `:port`, or `*` for every host. They are read by `with_env`/`with_env_from`, with the
//!   other variables.
//! - A proxy URL is `http://[user:password@]host[:port]` (the scheme may be left out; the port
//!   defaults to 1080, as curl's does). Credentials are sent as `Proxy-Authorization: Basic`
//!   in the CONNECT request to the proxy, and appear nowhere else: not in `Debug`, a log line
//!   or an error, which show `host:port` only. Anything else (an `https://` or `socks5://`
//!   proxy, no host, a bad port) in telemetry's own setting is a configuration error naming
//!   it. In a conventional variable, which other programs on the host read too (a SOCKS proxy
//!   in `ALL_PROXY` is common), it never fails the host's start: the route is *unusable*,
//!   every attempt fails at once as unreachable without bypassing that proxy (reports wait in
//!   the outbox), and the start-up warns once, naming the variable and what to set
//!   (`ELECTRIC_TELEMETRY_PROXY`, `NO_PROXY`).
//! - The choice is made once, when the configuration is built; a configured proxy is never
//!   bypassed (a proxy that is down is a failed attempt like any other).

use std::fmt;

use crate::config::no_proxy::no_proxy_matches;
use crate::config::ENV_PROXY;
use crate::error::ConfigError;

/// The conventional variables, in the order they are read (lower case first, as curl does).
pub(crate) const CONVENTIONAL: [&str; 8] = [
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

const ACCEPTED_PROXY: &str = "an http:// proxy URL, http://[user:password@]host[:port] (the \
                              scheme may be left out; the port defaults to 1080), or none";

/// A proxy to tunnel through.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    pub host: String,
    pub port: u16,
    /// The `Proxy-Authorization` value, when the URL had credentials.
    pub authorization: Option<String>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        write!(f, "Proxy({})", self.address())
    }
}

impl Proxy {
    /// `host:port`, as logs and errors may show it.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What the proxy settings decided.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Route {
    /// `None`: direct, unless `unusable`.
    pub proxy: Option<Proxy>,
    /// A conventional variable named a proxy telemetry cannot use: why, and what to set
    /// instead (no credentials). Nothing is sent while it holds: never direct.
    pub unusable: Option<String>,
    /// The setting that decided, e.g. `HTTPS_PROXY`, `NO_PROXY`, `ELECTRIC_TELEMETRY_PROXY`,
    /// `proxy(..)`; `None` when nothing was set.
    pub decided_by: Option<String>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for Route {
    /// For the start-up line: `127.0.0.1:3128 (from HTTPS_PROXY)`, `direct (NO_PROXY)`,
    /// `direct`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unusable.is_some() {
            let by = self.decided_by.as_deref().unwrap_or("a proxy variable");
            return write!(f, "none usable (from {by}: reports wait in the outbox)");
        }
        match (&self.proxy, &self.decided_by) {
            (Some(proxy), Some(by)) => write!(f, "{} (from {by})", proxy.address()),
            (Some(proxy), None) => f.write_str(&proxy.address()),
            (None, Some(by)) => write!(f, "direct ({by})"),
            (None, None) => f.write_str("direct"),
        }
    }
}

/// The raw settings, as given; resolved against the endpoint URL by [`ProxySettings::route`].
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct ProxySettings {
    /// Telemetry's own setting and where it came from (`ELECTRIC_TELEMETRY_PROXY` or
    /// `proxy(..)`).
    pub own: Option<(String, &'static str)>,
    /// The conventional variables found (name, value).
    pub conventional: Vec<(&'static str, String)>,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names only: the values may hold credentials.
        let names: Vec<&str> = self.own.iter().map(|(_, by)| *by).collect();
        let conventional: Vec<&str> = self.conventional.iter().map(|(n, _)| *n).collect();
        f.debug_struct("ProxySettings")
            .field("own", &names)
            .field("conventional", &conventional)
            .finish()
    }
}

impl ProxySettings {
    /// Where requests to `url` (an http or https URL, already checked) go.
    pub(crate) fn route(&self, url: &str) -> Result<Route, ConfigError> {
        if let Some((value, by)) = &self.own {
            if value.trim().eq_ignore_ascii_case("none") {
                return Ok(Route {
                    proxy: None,
                    unusable: None,
                    decided_by: Some(format!("{by}=none")),
                });
            }
            return Ok(Route {
                proxy: Some(parse_proxy(by, value)?),
                unusable: None,
                decided_by: Some((*by).to_owned()),
            });
        }
        let uri: awc::http::Uri = url
            .parse()
            .map_err(|_| ConfigError::new(ENV_PROXY, "", "the URL is not valid", ACCEPTED_PROXY))?;
        let https = uri.scheme_str() == Some("https");
        let get = |name: &str| {
            self.conventional
                .iter()
                .find(|(n, v)| *n == name && !v.trim().is_empty())
                .map(|(n, v)| (*n, v.as_str()))
        };
        let names: [&str; 4] = if https {
            ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
        } else {
            ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        };
        let Some((by, value)) = names.iter().find_map(|name| get(name)) else {
            return Ok(Route::default());
        };
        let host = uri.host().unwrap_or("");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if let Some((no, list)) = get("no_proxy").or_else(|| get("NO_PROXY")) {
            if no_proxy_matches(list, host, port) {
                return Ok(Route {
                    proxy: None,
                    unusable: None,
                    decided_by: Some(no.to_owned()),
                });
            }
        }
        match parse_proxy(by, value) {
            Ok(proxy) => Ok(Route {
                proxy: Some(proxy),
                unusable: None,
                decided_by: Some(by.to_owned()),
            }),
            // Another program's setting: never the host's failure (see the module docs).
            Err(e) => Ok(Route {
                proxy: None,
                unusable: Some(format!(
                    "telemetry cannot use the proxy in {by}: {}. Its reports wait in the \
                     outbox; to deliver them set ELECTRIC_TELEMETRY_PROXY to an http:// \
                     proxy (or none), or list the endpoint's host in NO_PROXY",
                    e.problem
                )),
                decided_by: Some(by.to_owned()),
            }),
        }
    }
}

/// `value` with any credentials replaced, for an error message.
fn redacted(value: &str) -> String {
    let value = value.trim();
    let (scheme, rest) = match value.find("://") {
        Some(i) => (&value[..i + 3], &value[i + 3..]),
        None => ("", value),
    };
    // The last `@` anywhere: a password may hold `/`, `?` or `#` that end the authority early.
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => value.to_owned(),
    }
}

/// Parses a proxy URL; an error names `setting` and never shows credentials.
fn parse_proxy(setting: &'static str, value: &str) -> Result<Proxy, ConfigError> {
    let shown = redacted(value);
    let error = |problem: &str| ConfigError::new(setting, &shown, problem, ACCEPTED_PROXY);
    let value = value.trim();
    let rest = match value.find("://") {
        Some(i) => {
            let scheme = value[..i].to_ascii_lowercase();
            if scheme != "http" {
                // Named only when it looks like a scheme: a password may hold "://".
                let plain = scheme.len() <= 16
                    && scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-');
                let named = if plain {
                    format!(" {scheme:?}")
                } else {
                    String::new()
                };
                return Err(error(&format!(
                    "the proxy scheme{named} is not supported (only http:// proxies)"
                )));
            }
            &value[i + 3..]
        }
        None => value,
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if rest[authority.len()..].contains('@') {
        // A password holding `/`, `?` or `#` cut the authority short: what looks like the
        // host is the user name, the "port" part of the password.
        return Err(error(
            "an '@' after the host: a user name or password holding '/', '?' or '#' must be \
             percent-encoded (%2F, %3F, %23)",
        ));
    }
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| error("an unclosed [ in the host"))?;
        let after = &v6[end + 1..];
        if !after.is_empty() && !after.starts_with(':') {
            return Err(error("text after the ] that is not :port"));
        }
        (&v6[..end], after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(error("no host"));
    }
    if host.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(error("the host holds spaces or control characters"));
    }
    let port = match port {
        None | Some("") => 1080,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(error("the port is not a number from 1 to 65535")),
        },
    };
    let authorization = userinfo.map(|userinfo| {
        use base64::Engine;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let pair = format!("{}:{}", percent_decode(user), percent_decode(password));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    });
    Ok(Proxy {
        host: host.to_ascii_lowercase(),
        port,
        authorization,
    })
}

/// `%XX` escapes decoded (as curl decodes a proxy URL's user name and password).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(own: Option<&str>, vars: &[(&'static str, &str)]) -> ProxySettings {
        ProxySettings {
            own: own.map(|v| (v.to_owned(), ENV_PROXY)),
            conventional: vars.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        }
    }

    fn via(s: &ProxySettings, url: &str) -> String {
        s.route(url).unwrap().to_string()
    }

    #[test]
    fn the_conventional_variables_are_read_as_curl_reads_them() {
        let s = settings(
            None,
            &[
                ("HTTPS_PROXY", "http://upper:3128"),
                ("https_proxy", "http://lower:3128"),
                ("http_proxy", "plain:8080"),
                ("ALL_PROXY", "http://all:1"),
            ],
        );
        assert_eq!(
            via(&s, "https://checkpoint.example.com"),
            "lower:3128 (from https_proxy)",
            "lower case first"
        );
        assert_eq!(
            via(&s, "http://checkpoint.example.com"),
            "plain:8080 (from http_proxy)",
            "the variable of the URL's scheme"
        );
        let s = settings(None, &[("ALL_PROXY", "http://all:3128")]);
        assert_eq!(via(&s, "http://a.example"), "all:3128 (from ALL_PROXY)");
        assert_eq!(via(&s, "https://a.example"), "all:3128 (from ALL_PROXY)");
        let s = settings(None, &[("HTTP_PROXY", "http://p:3128")]);
        assert_eq!(
            via(&s, "https://a.example"),
            "direct",
            "http's proxy is not https's"
        );
        assert_eq!(via(&settings(None, &[]), "https://a.example"), "direct");
        let s = settings(None, &[("HTTPS_PROXY", "  ")]);
        assert_eq!(
            via(&s, "https://a.example"),
            "direct",
            "empty counts as unset"
        );
    }

    #[test]
    fn no_proxy_exempts_the_endpoint_and_the_own_setting_wins() {
        let vars = [
            ("HTTPS_PROXY", "http://corp:3128"),
            ("NO_PROXY", ".internal,10.0.0.0/8"),
        ];
        let s = settings(None, &vars);
        assert_eq!(via(&s, "https://t.internal/x"), "direct (NO_PROXY)");
        assert_eq!(via(&s, "https://10.1.2.3:8443/x"), "direct (NO_PROXY)");
        assert_eq!(
            via(&s, "https://t.example/x"),
            "corp:3128 (from HTTPS_PROXY)"
        );
        let own = settings(Some("http://mine:8080"), &vars);
        assert_eq!(
            via(&own, "https://t.internal/x"),
            "mine:8080 (from ELECTRIC_TELEMETRY_PROXY)",
            "telemetry's own proxy is not subject to NO_PROXY"
        );
        let none = settings(Some("NONE"), &vars);
        assert_eq!(
            via(&none, "https://t.example/x"),
            "direct (ELECTRIC_TELEMETRY_PROXY=none)"
        );
    }

    #[test]
    fn proxy_urls_parse_with_credentials_kept_out_of_sight() {
        let p = parse_proxy(ENV_PROXY, "http://us%40er:p%3Ass@Proxy.Example:3128/").unwrap();
        assert_eq!(p.address(), "proxy.example:3128");
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(p.authorization, Some(format!("Basic {expected}")));
        assert!(!format!("{p:?}").contains("p:ss") && !format!("{p:?}").contains("Basic"));
        assert_eq!(parse_proxy(ENV_PROXY, "proxy").unwrap().port, 1080);
        assert_eq!(
            parse_proxy(ENV_PROXY, "[::1]:8080").unwrap().address(),
            "[::1]:8080"
        );
        assert!(parse_proxy(ENV_PROXY, "http://u@h:1")
            .unwrap()
            .authorization
            .is_some());
        for bad in [
            "https://user:s3cret@proxy:3128",
            "socks5://user:s3cret@proxy:1080",
            "http://user:s3cret@:3128",
            "http://user:s3cret@proxy:99999",
            "http://user:s3cret@proxy:port",
        ] {
            let error = parse_proxy(ENV_PROXY, bad).unwrap_err();
            let shown = error.to_string();
            assert_eq!(error.setting, ENV_PROXY);
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("http://"), "says what is accepted: {shown}");
        }
    }

    #[test]
    fn debug_output_never_shows_credentials() {
        let s = settings(
            Some("http://user:s3cret@own:1"),
            &[("HTTPS_PROXY", "http://user:s3cret@corp:3128")],
        );
        assert!(!format!("{s:?}").contains("s3cret"));
        let route = s.route("https://a.example").unwrap();
        assert!(!format!("{route:?} {route}").contains("s3cret"));
    }
}
