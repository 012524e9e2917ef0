//! Nothing personal leaves: ids, hostnames, addresses, paths and secrets recorded through every
//! text-accepting API never appear in a report body or a request header, and neither does
//! anything about the machine, its user or its environment.
//!
//! The values come from proptest strategies run with a fixed seed, and all of them go into ONE
//! real telemetry run against a loopback receiver, so the test is deterministic and fast.

use std::collections::{BTreeSet, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::common::{Received, Receiver};
use electric_telemetry::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// How many values each kind contributes (13 kinds, so 260 in all).
const PER_KIND: usize = 20;

/// A fixed seed: the same values on every run and machine.
const SEED: [u8; 32] = *b"electric-telemetry privacy seed!";

/// One generated value and what it stands for, for the failure message.
struct Personal {
    kind: &'static str,
    value: String,
}

fn pattern(regex: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(regex)
        .unwrap_or_else(|e| panic!("{regex}: {e}"))
        .boxed()
}

/// The kinds of personal or secret text a service might pass where an id is expected.
fn kinds() -> Vec<(&'static str, BoxedStrategy<String>)> {
    vec![
        ("client id", pattern("client-[a-z0-9]{8,16}")),
        (
            "uuid id",
            any::<[u8; 16]>()
                .prop_map(|b| uuid::Builder::from_random_bytes(b).into_uuid().to_string())
                .boxed(),
        ),
        (
            "email user id",
            pattern("[a-z]{3,10}\\.[a-z]{3,10}@[a-z]{4,10}\\.(com|org|io|de)"),
        ),
        (
            "hostname",
            pattern(
                "[a-z]{3,10}-(db|web|api|worker)-[0-9]{2}\\.(internal|corp\\.example\\.com|eu-west-1\\.compute\\.amazonaws\\.com)",
            ),
        ),
        (
            "IPv4 address",
            any::<[u8; 4]>()
                .prop_map(|b| Ipv4Addr::from(b).to_string())
                .boxed(),
        ),
        (
            "IPv6 address",
            any::<[u16; 8]>()
                .prop_map(|s| Ipv6Addr::from(s).to_string())
                .boxed(),
        ),
        (
            "unix path",
            pattern("/(home|Users|var/lib|srv)/[a-z]{3,8}/[a-z_]{3,12}\\.(db|sqlite|pem|key|env)"),
        ),
        (
            "windows path",
            pattern("C:\\\\Users\\\\[a-z]{3,8}\\\\[A-Za-z]{3,10}\\.(txt|ini)"),
        ),
        (
            "API key",
            pattern("(sk_live_[A-Za-z0-9]{24}|AKIA[A-Z0-9]{16}|ghp_[A-Za-z0-9]{36})"),
        ),
        (
            "JWT",
            pattern("eyJ[A-Za-z0-9_-]{16,32}\\.eyJ[A-Za-z0-9_-]{16,48}\\.[A-Za-z0-9_-]{22,43}"),
        ),
        ("password", pattern("[A-Za-z0-9!@#$%^&*]{12,24}")),
        (
            "connection string",
            pattern("postgres://[a-z]{3,8}:[A-Za-z0-9]{8,16}@[a-z]{3,8}\\.internal:5432/[a-z]{3,8}"),
        ),
        (
            "labelled secret",
            pattern("(password|api_key|token|secret)=[A-Za-z0-9]{12,20}"),
        ),
    ]
}

fn generate() -> Vec<Personal> {
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let mut values = Vec::new();
    for (kind, strategy) in kinds() {
        for _ in 0..PER_KIND {
            let value = strategy.new_tree(&mut runner).unwrap().current();
            values.push(Personal { kind, value });
        }
    }
    values
}

/// The machine's hostname, from sysinfo and from the kernel.
fn hostnames() -> Vec<String> {
    let mut names: Vec<String> = sysinfo::System::host_name().into_iter().collect();
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(name.trim().to_owned());
    }
    names
}

/// Finds `needle`'s bytes anywhere in `haystack`, case-sensitively.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte string the receiver saw: each body, each header name and each header value.
fn everything_sent(received: &[Received]) -> Vec<(String, Vec<u8>)> {
    let mut seen = Vec::new();
    for (i, r) in received.iter().enumerate() {
        seen.push((format!("body of request {i}"), r.body.clone()));
        for (name, value) in &r.headers {
            seen.push((
                format!("header name {name:?} of request {i}"),
                name.clone().into_bytes(),
            ));
            seen.push((format!("header {name:?} of request {i}"), value.clone()));
        }
    }
    seen
}

/// Where `needle` shows up in what was sent, if anywhere.
fn leaks(sent: &[(String, Vec<u8>)], needle: &str) -> Vec<String> {
    sent.iter()
        .filter(|(_, bytes)| contains(bytes, needle.as_bytes()))
        .map(|(place, _)| place.clone())
        .collect()
}

#[actix_rt::test]
async fn nothing_personal_reaches_the_endpoint_in_a_body_or_a_header() {
    let personal = generate();
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let config = TelemetryConfig::builder()
        .url(&receiver.url)
        .storage_dir(storage.path())
        .request_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let telemetry = Telemetry::start(config).unwrap();
    let collector = telemetry.collector().expect("telemetry is enabled");

    // Every value goes in as a client id and a user id, through every id-taking message, half
    // through the handle and half straight to the collector's address.
    for (i, p) in personal.iter().enumerate() {
        let v = p.value.as_str();
        if i % 2 == 0 {
            telemetry.record(ClientConnected::new(v, v));
            telemetry.record(SubscriptionEstablished::new(v, 1));
            telemetry.record(SubscriptionContinued::new(v));
            telemetry.record(ClientDisconnected::new(v));
        } else {
            collector.do_send(ClientConnected::new(v, v));
            collector.do_send(SubscriptionEstablished::new(v, 1));
            collector.do_send(SubscriptionContinued::new(v));
            collector.do_send(ClientDisconnected::new(v));
        }
    }
    // PgVersion is the one text the report carries from the service: it must refuse them all.
    for p in &personal {
        assert!(
            PgVersion::new(&p.value).is_err(),
            "PgVersion took a {}: {:?}",
            p.kind,
            p.value
        );
    }
    // A real version, as a positive control that the search below sees what is sent.
    let real_version = "16.2";
    telemetry.record(PgVersion::new("16.2 (Debian 16.2-1.pgdg120+2)").unwrap());

    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let received = receiver.received();
    receiver.stop().await;
    assert!(!received.is_empty());
    let sent = everything_sent(&received);

    // The values were really counted, so their absence below is not because they were lost.
    let report = received.last().unwrap().report();
    let distinct: HashSet<&str> = personal.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(report.data.usage.distinct_clients, distinct.len() as u64);
    assert_eq!(report.data.usage.distinct_users, distinct.len() as u64);
    assert_eq!(
        report.data.usage.subscriptions_established,
        personal.len() as u64
    );
    assert_eq!(report.dropped_events, 0);
    assert!(
        !leaks(&sent, real_version).is_empty(),
        "the control is found"
    );
    assert!(
        !leaks(&sent, "electric-telemetry/").is_empty(),
        "headers are searched"
    );

    let mut found = Vec::new();
    for p in &personal {
        for place in leaks(&sent, &p.value) {
            found.push(format!("{} {:?} in the {place}", p.kind, p.value));
        }
    }

    // What the report is meant to say about the host (arch, OS) and the fixed texts of the
    // protocol (field and header names, content type, User-Agent) are public; a short hostname
    // or username that happens to be part of one (say a user named "user", which is in
    // "distinct_users") cannot be told apart from it by a substring search, so it is skipped.
    let env = &report.data.environment;
    let mut public: Vec<String> =
        vec![env.arch.clone(), env.os.family.clone(), env.os.name.clone()];
    for r in &received {
        for (name, value) in &r.headers {
            public.push(name.clone());
            if ["content-type", "user-agent"].contains(&name.as_str()) {
                public.push(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    public.extend(schema_property_names());
    let is_public = |needle: &str| public.iter().any(|p| p.contains(needle));

    let mut machine: Vec<(String, String)> = Vec::new();
    for name in hostnames() {
        machine.push(("hostname".into(), name));
    }
    for var in ["USER", "LOGNAME", "USERNAME"] {
        if let Ok(user) = std::env::var(var) {
            machine.push((format!("username (${var})"), user));
        }
    }
    let cwd = std::env::current_dir().unwrap();
    machine.push(("working directory".into(), cwd.display().to_string()));
    machine.push(("storage dir".into(), storage.path().display().to_string()));
    if let Ok(canonical) = storage.path().canonicalize() {
        machine.push(("storage dir".into(), canonical.display().to_string()));
    }
    // Every environment value long enough to mean something. CARGO_PKG_* are skipped: cargo
    // sets them to the crate's public build metadata (its name is in the User-Agent by design).
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if value.len() >= 8 && !name.starts_with("CARGO_PKG_") {
            machine.push((format!("${name}"), value.to_owned()));
        }
    }
    let mut skipped = BTreeSet::new();
    for (what, value) in &machine {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if is_public(value) {
            skipped.insert(format!("{what} {value:?}"));
            continue;
        }
        for place in leaks(&sent, value) {
            found.push(format!("{what} {value:?} in the {place}"));
        }
    }
    if !skipped.is_empty() {
        eprintln!("not searched, as part of the public protocol text: {skipped:?}");
    }

    assert!(
        found.is_empty(),
        "personal data reached the endpoint:\n  {}",
        found.join("\n  ")
    );
}

/// The JSON property names of a report, which are public protocol text.
fn schema_property_names() -> Vec<String> {
    fn walk(node: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = node {
            if let Some(serde_json::Value::Object(properties)) = map.get("properties") {
                out.extend(properties.keys().cloned());
            }
            map.values().for_each(|child| walk(child, out));
        }
    }
    let mut out = Vec::new();
    walk(&serde_json::from_str(REPORT_SCHEMA).unwrap(), &mut out);
    out
}

#[test]
fn pg_version_refuses_every_personal_looking_value() {
    let accepted: Vec<String> = generate()
        .into_iter()
        .filter(|p| PgVersion::new(&p.value).is_ok())
        .map(|p| format!("{} {:?}", p.kind, p.value))
        .collect();
    assert!(
        accepted.is_empty(),
        "PgVersion::new accepted {} values:\n  {}",
        accepted.len(),
        accepted.join("\n  ")
    );
}
