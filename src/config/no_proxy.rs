//! Whether a `NO_PROXY` list exempts an endpoint, as curl reads it: host names, domain
//! suffixes (`example.com` and `.example.com` both match the domain and its subdomains), IP
//! addresses, CIDR ranges (`10.0.0.0/8`, `fd00::/8`), each optionally with `:port`, or `*` for
//! every host. Which list applies, and when, is `proxy.rs`.

use std::net::IpAddr;

/// Whether `NO_PROXY`'s `list` exempts `host` (as in a URL: an IPv6 address may be
/// bracketed) on `port`.
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| entry_matches(&entry.to_ascii_lowercase(), &host, ip, port))
}

fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    // Split off an optional port: `[v6]:port`, `name:port`, `v4:port`; a bare IPv6 address
    // (several colons) has none.
    let (name, entry_port) = if let Some(v6) = entry.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, rest)) => (addr, rest.strip_prefix(':')),
            None => return false,
        }
    } else if entry.matches(':').count() == 1 {
        let (name, port) = entry.split_once(':').unwrap_or((entry, ""));
        (name, Some(port))
    } else {
        (entry, None)
    };
    if let Some(entry_port) = entry_port {
        if entry_port.parse::<u16>().ok() != Some(port) {
            return false;
        }
    }
    if let Some((net, bits)) = name.split_once('/') {
        return match (net.parse::<IpAddr>(), bits.parse::<u8>(), ip) {
            (Ok(net), Ok(bits), Some(ip)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if let Ok(addr) = name.parse::<IpAddr>() {
        return ip == Some(addr);
    }
    let suffix = name
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.');
    !suffix.is_empty()
        && ip.is_none()
        && (host == suffix
            || (host.len() > suffix.len()
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_names_suffixes_ips_ranges_ports_and_star() {
        let m = no_proxy_matches;
        assert!(m("example.com", "example.com", 443));
        assert!(m("example.com", "api.example.com", 443), "a suffix");
        assert!(m(".example.com", "api.example.com", 443), "a leading dot");
        assert!(
            m(".example.com", "example.com", 443),
            "and the domain itself"
        );
        assert!(m("*.example.com", "a.b.example.com", 443));
        assert!(
            !m("example.com", "badexample.com", 443),
            "on a label boundary"
        );
        assert!(!m("example.com", "example.com.evil.net", 443));
        assert!(m("Example.COM", "example.com", 443), "any case");
        assert!(
            m("localhost, 127.0.0.1", "127.0.0.1", 80),
            "spaces around commas"
        );
        assert!(m("10.0.0.0/8", "10.20.30.40", 443), "a CIDR range");
        assert!(!m("10.0.0.0/8", "11.0.0.1", 443));
        assert!(m("192.168.1.0/24", "192.168.1.77", 443));
        assert!(m("0.0.0.0/0", "8.8.8.8", 443));
        assert!(m("::1", "[::1]", 443), "IPv6, bracketed in the URL");
        assert!(m("fd00::/8", "[fd12::1]", 443), "an IPv6 range");
        assert!(!m("fd00::/8", "[fe80::1]", 443));
        assert!(m("[::1]:8443", "[::1]", 8443));
        assert!(!m("[::1]:8443", "[::1]", 443));
        assert!(m("example.com:8443", "example.com", 8443), "with a port");
        assert!(!m("example.com:8443", "example.com", 443), "another port");
        assert!(m("127.0.0.1:9000", "127.0.0.1", 9000));
        assert!(!m("127.0.0.1:9000", "127.0.0.1", 9001));
        assert!(m("*", "anything.example", 1));
        assert!(!m("", "example.com", 443));
        assert!(!m(",,", "example.com", 443));
        assert!(
            !m("10.0.0.0/8", "ten.example", 443),
            "a range matches IPs only"
        );
        assert!(!m("127.0.0.1", "localhost", 443), "no name resolution");
    }
}
