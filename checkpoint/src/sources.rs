//! Who sent a request, and how much one source may send: per-source limits that store nothing
//! about the source.
//!
//! The source is the peer address, or, when the peer is a `--trusted-proxy`, the first hop of
//! `X-Forwarded-For` (or, without it, `Forwarded`) that is not itself a trusted proxy, read from
//! the right (the hop the nearest trusted proxy saw). The headers are never read otherwise. An
//! IPv6 source counts as its /64 (one host usually owns a whole /64).
//!
//! Nothing about a source leaves memory: it is kept as a hash keyed by a random key drawn at
//! start (so it cannot be reversed by trying addresses), never logged, never written to the
//! database, and forgotten once its windows are over. Memory is bounded whatever the traffic:
//! at most [`MAX_SOURCES`] sources are tracked; past that, untracked sources share one overflow
//! entry (and its limits) until tracked ones expire.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

/// How many sources are tracked at once before the overflow entry takes over.
pub const MAX_SOURCES: usize = 65_536;

/// An address block, `ADDR/PREFIX` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "--trusted-proxy {s:?} is not an address block: {why} (expected ADDR/PREFIX such as 10.0.0.0/8, fd00::/8 or a single address)"
            )
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(bad(&format!("the prefix must be a number from 0 to {max}"))),
            },
        };
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The limits, from the flags.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Distinct clusters one source may report for per hour; 0 = unlimited.
    pub new_clusters_per_hour: u32,
    /// Reports one source may send per minute; 0 = unlimited.
    pub per_minute: u32,
    /// Connections one source may hold open at once; 0 = unlimited. Trusted proxies are exempt.
    pub connections: u32,
    pub trusted: Vec<Cidr>,
}

/// A source as kept in memory: a keyed hash of its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(u64);

/// Why a source was refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PerMinute { retry_after: u64 },
    NewClusters { retry_after: u64 },
}

#[derive(Default)]
struct Windows {
    minute_start: Option<Instant>,
    in_minute: u32,
    hour_start: Option<Instant>,
    /// Keyed hashes of the clusters this source reported for this hour (at most the limit).
    clusters: Vec<u64>,
}

impl Windows {
    fn expired(&self, now: Instant) -> bool {
        let over = |start: Option<Instant>, len: u64| {
            start.is_none_or(|s| now.duration_since(s) >= Duration::from_secs(len))
        };
        over(self.minute_start, 60) && over(self.hour_start, 3600)
    }
}

/// The per-source state of one receiver.
pub struct Sources {
    limits: Limits,
    hasher: RandomState,
    windows: Mutex<HashMap<SourceKey, Windows>>,
    overflow: Mutex<Windows>,
    connections: Mutex<HashMap<SourceKey, u32>>,
}

impl Sources {
    pub fn new(limits: Limits) -> Self {
        Sources {
            limits,
            hasher: RandomState::new(),
            windows: Mutex::new(HashMap::new()),
            overflow: Mutex::new(Windows::default()),
            connections: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn key(&self, ip: IpAddr) -> SourceKey {
        let mut h = self.hasher.build_hasher();
        match canonical(ip) {
            IpAddr::V4(v4) => v4.hash(&mut h),
            IpAddr::V6(v6) => (u128::from(v6) >> 64).hash(&mut h),
        }
        SourceKey(h.finish())
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.limits.trusted.iter().any(|c| c.contains(ip))
    }

    /// The source address of a request (see the module docs).
    pub fn source_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let headers = req.headers();
        let hops: Vec<String> = if headers.contains_key("x-forwarded-for") {
            headers
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|h| h.trim().to_owned())
                .collect()
        } else {
            headers
                .get_all("forwarded")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|element| {
                    element.split(';').find_map(|pair| {
                        let (k, v) = pair.split_once('=')?;
                        k.trim()
                            .eq_ignore_ascii_case("for")
                            .then(|| v.trim().to_owned())
                    })
                })
                .collect()
        };
        // From the right: skip trusted proxies; the first other hop is the source. A hop that
        // cannot be read ends the walk: the last address read (a trusted proxy) is the source.
        let mut source = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.is_trusted(ip) => source = ip,
                Some(ip) => return Some(ip),
                None => return Some(source),
            }
        }
        Some(source)
    }

    /// The keyed source of a request.
    pub fn source(&self, req: &HttpRequest) -> Option<SourceKey> {
        self.source_ip(req).map(|ip| self.key(ip))
    }

    fn with_windows<T>(&self, key: SourceKey, f: impl FnOnce(&mut Windows, Instant) -> T) -> T {
        let now = Instant::now();
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) && map.len() >= MAX_SOURCES {
            map.retain(|_, w| !w.expired(now));
            if map.len() >= MAX_SOURCES {
                drop(map);
                let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
                return f(&mut overflow, now);
            }
        }
        f(map.entry(key).or_default(), now)
    }

    /// Counts one report from `key` against its per-minute limit.
    pub fn take_report(&self, key: SourceKey) -> Result<(), Refusal> {
        let limit = self.limits.per_minute;
        if limit == 0 {
            return Ok(());
        }
        self.with_windows(key, |w, now| {
            let start = match w.minute_start {
                Some(s) if now.duration_since(s) < Duration::from_secs(60) => s,
                _ => {
                    w.minute_start = Some(now);
                    w.in_minute = 0;
                    now
                }
            };
            if w.in_minute >= limit {
                let left = 60 - now.duration_since(start).as_secs().min(59);
                return Err(Refusal::PerMinute { retry_after: left });
            }
            w.in_minute += 1;
            Ok(())
        })
    }

    /// Counts `cluster` against the distinct clusters `key` may report for this hour.
    pub fn take_cluster(&self, key: SourceKey, cluster: &str) -> Result<(), Refusal> {
        let limit = self.limits.new_clusters_per_hour;
        if limit == 0 {
            return Ok(());
        }
        let cluster = self.hasher.hash_one(cluster.to_ascii_lowercase());
        self.with_windows(key, |w, now| {
            let start = match w.hour_start {
                Some(s) if now.duration_since(s) < Duration::from_secs(3600) => s,
                _ => {
                    w.hour_start = Some(now);
                    w.clusters.clear();
                    now
                }
            };
            if w.clusters.contains(&cluster) {
                return Ok(());
            }
            if w.clusters.len() >= limit as usize {
                let left = 3600 - now.duration_since(start).as_secs().min(3599);
                return Err(Refusal::NewClusters { retry_after: left });
            }
            w.clusters.push(cluster);
            Ok(())
        })
    }

    /// Counts a new connection from `peer`; the guard counts it down when dropped. `None`
    /// when the cap does not apply (no cap, or a trusted proxy).
    pub fn connect(self: &std::sync::Arc<Self>, peer: IpAddr) -> Option<Connection> {
        if self.limits.connections == 0 || self.is_trusted(peer) {
            return None;
        }
        let key = self.key(peer);
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        *n += 1;
        Some(Connection {
            sources: self.clone(),
            key,
            over: *n > self.limits.connections,
        })
    }

    /// Sources tracked now (for the metrics).
    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One open connection, counted against its source while it lives.
pub struct Connection {
    sources: std::sync::Arc<Sources>,
    key: SourceKey,
    /// The source already held its cap of connections when this one opened.
    pub over: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut map = self
            .sources
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// One hop of `X-Forwarded-For` or `Forwarded`: `1.2.3.4`, `1.2.3.4:5`, `"[2001:db8::1]:80"`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (addr, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_and_match() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let one: Cidr = "fd00::1".parse().unwrap();
        assert!(one.contains("fd00::1".parse().unwrap()));
        assert!(!one.contains("fd00::2".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(
                e.contains("--trusted-proxy") && e.contains("ADDR/PREFIX"),
                "{e}"
            );
        }
    }

    #[test]
    fn hops_parse() {
        assert_eq!(parse_hop("192.0.2.1:443"), "192.0.2.1".parse().ok());
        assert_eq!(
            parse_hop("\"[2001:db8::1]:80\""),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_hop("unknown"), None);
    }
}
