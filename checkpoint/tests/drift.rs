//! Drift between the two halves, from the receiver's side.
//!
//! - Every report the schema accepts is stored or quarantined: mutated valid reports (extreme
//!   counts, floats that are integers, odd but valid ids and versions, times in other offsets,
//!   nulls where allowed) are checked against `REPORT_SCHEMA` and a plausibility oracle here,
//!   independently of the receiver; each one the schema accepts must get 201 and be stored as
//!   canonical JSON, or, when a count is beyond belief, 202 and kept in the quarantine only.
//! - The receiver's list of counters is the schema's: a usage counter added to the payload
//!   fails here until the receiver sums it.
//! - A report type that changes without the schema (a field the schema does not know) is
//!   refused with 400 naming the field, which makes the real-pipeline test in `pipeline.rs`
//!   fail; the library's own `tests/suite/schema.rs` checks the types against the schema directly
//!   (both directions), so together the payload cannot drift from what the receiver accepts.

mod common;

use checkpoint::validate::{saturating_count, ACCEPTED_VERSIONS, COUNTERS, GAUGES};
use common::{backends, client, overview, post, seed, start_with};
use electric_telemetry::{Report, REPORT_SCHEMA, REPORT_VERSION};
use electric_telemetry_report::LEVELLED_REPORT_VERSION;
use serde_json::{json, Value};

fn schema() -> Value {
    serde_json::from_str(REPORT_SCHEMA).unwrap()
}

/// The oracle: REPORT_SCHEMA compiled here, with format assertions, as the library's tests do.
struct SchemaOracle(boon::Schemas, boon::SchemaIndex);

impl SchemaOracle {
    fn new() -> Self {
        let s = schema();
        let id = s["$id"].as_str().unwrap().to_owned();
        let mut c = boon::Compiler::new();
        c.enable_format_assertions();
        c.add_resource(&id, s).unwrap();
        let mut schemas = boon::Schemas::new();
        let index = c.compile(&id, &mut schemas).unwrap();
        SchemaOracle(schemas, index)
    }
    fn accepts(&self, v: &Value) -> bool {
        self.0.validate(v, self.1).is_ok()
    }
}

#[test]
fn the_summed_counters_are_exactly_the_schemas_usage_counts() {
    let s = schema();
    let usage = &s["properties"]["data"]["properties"]["usage"]["properties"];
    let mut integers: Vec<&str> = usage
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, p)| p["type"] == "integer")
        .map(|(k, _)| k.as_str())
        .collect();
    integers.sort_unstable();
    let mut ours: Vec<&str> = COUNTERS.iter().chain(GAUGES.iter()).copied().collect();
    ours.sort_unstable();
    assert_eq!(
        ours, integers,
        "COUNTERS + GAUGES must be the schema's integer usage fields"
    );
    // Every published version: the full-level one and the levelled one.
    assert_eq!(
        ACCEPTED_VERSIONS,
        [
            u64::from(REPORT_VERSION),
            u64::from(LEVELLED_REPORT_VERSION)
        ]
    );
    // The library's Report type carries each of them too (a template, mutated through its
    // public fields, never a struct literal).
    let mut report: Report = serde_json::from_str(common::SEED).unwrap();
    report.data.usage.operations_from_pg = 7;
    let v = serde_json::to_value(&report).unwrap();
    for c in COUNTERS {
        assert!(v["data"]["usage"][c].is_u64(), "Report has usage.{c}");
    }
    assert_eq!(v["data"]["usage"]["operations_from_pg"], 7);
}

/// A random visible-ASCII string of 1..=max characters (the schema's `^[!-~]{1,64}$`).
fn visible(rng: &mut fastrand::Rng, max: usize) -> String {
    (0..rng.usize(1..=max))
        .map(|_| rng.u8(b'!'..=b'~') as char)
        .collect()
}

fn count(rng: &mut fastrand::Rng) -> Value {
    // Beyond belief now and then (about one report in four has such a count).
    match rng.u8(..48) {
        0 => json!(u64::MAX),
        1 => json!(i64::MAX as u64 + 1),
        2..=5 => json!(0),
        6..=9 => json!(rng.u64(..1000) as f64), // 12.0 is an integer to JSON Schema
        10..=11 => serde_json::from_str("1e3").unwrap(),
        _ => json!(rng.u64(..1 << 30)),
    }
}

/// `at` (microseconds since the epoch) in RFC 3339, in one of several offsets and precisions.
fn time(rng: &mut fastrand::Rng, at: i64) -> String {
    let offsets = [
        ("Z", 0),
        ("+00:00", 0),
        ("-05:00", -5 * 60),
        ("+13:45", 13 * 60 + 45),
        ("z", 0),
    ];
    let (suffix, minutes) = offsets[rng.usize(..offsets.len())];
    let t = chrono::DateTime::from_timestamp_micros(at)
        .unwrap()
        .naive_utc()
        + chrono::Duration::minutes(minutes);
    let fraction = match rng.u8(..3) {
        0 => String::new(),
        1 => format!(".{:03}", t.and_utc().timestamp_subsec_millis()),
        _ => format!(".{:06}", t.and_utc().timestamp_subsec_micros()),
    };
    format!("{}{fraction}{suffix}", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// Microseconds since the epoch of an RFC 3339 time.
fn micros(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_micros()
}

/// The plausibility oracle, written from the README rather than the receiver's code: a counter
/// (or dropped count) above 10^7 per second of the window (at least one second) is implausible.
fn plausible(v: &Value) -> bool {
    let window =
        micros(v["timestamp"].as_str().unwrap()) - micros(v["last_reported"].as_str().unwrap());
    let seconds = ((window + 999_999) / 1_000_000).max(1) as u64;
    let limit = 10_000_000u64.saturating_mul(seconds);
    let counts = COUNTERS
        .iter()
        .map(|c| &v["data"]["usage"][c])
        .chain([&v["dropped_events"], &v["dropped_reports"]]);
    counts
        .into_iter()
        .all(|c| saturating_count(c) as u64 <= limit)
}

fn mutate(rng: &mut fastrand::Rng, v: &mut Value) {
    v["report_id"] = json!(uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
        .into_uuid()
        .to_string());
    // Clocks the receiver believes (2022-01-01 to 2026-11-30, windows up to 6 h); the clock
    // checks have tests of their own (`quarantine.rs`).
    let at = rng.i64(1_640_995_200_000_000..1_764_460_800_000_000);
    v["timestamp"] = json!(time(rng, at));
    let began = at - rng.i64(0..6 * 3_600_000_000);
    v["last_reported"] = json!(time(rng, began));
    v["dropped_events"] = count(rng);
    v["dropped_reports"] = count(rng);
    let d = &mut v["data"];
    d["electric_version"] = json!(visible(rng, 64));
    let env = &mut d["environment"];
    env["electric_instance_id"] = json!(visible(rng, 64));
    let mut cluster = uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
        .into_uuid()
        .to_string();
    if rng.bool() {
        cluster = cluster.to_uppercase();
    }
    env["electric_cluster_uuid"] = json!(cluster);
    env["arch"] = json!(
        [
            "x86_64-unknown-linux-gnu",
            "riscv64gc-unknown-linux-gnu",
            "ü-ñ \"<arch>\""
        ][rng.usize(..3)]
    );
    env["cores"] = count(rng);
    env["ram"] = count(rng);
    env["os"]["name"] = json!(visible(rng, 10));
    env["pg_version"] = [
        json!(null),
        json!("14.9"),
        json!("16"),
        json!("15beta2"),
        json!("9.6.24"),
        json!("17devel"),
    ][rng.usize(..6)]
    .clone();
    let res = &mut d["resources"];
    res["oldest_wal_time"] = if rng.bool() {
        json!(null)
    } else {
        let at = rng.i64(1_640_995_200_000_000..1_764_460_800_000_000);
        json!(time(rng, at))
    };
    res["uptime"] = count(rng);
    res["wal_cache_memory"] = count(rng);
    let usage = &mut d["usage"];
    for c in COUNTERS.iter().chain(GAUGES.iter()) {
        usage[c] = count(rng);
    }
    for summary in ["concurrent_clients", "subscriptions_rows_per_shape"] {
        usage[summary] = json!({
            "min": 0, "max": rng.u64(..1 << 50), "mean": rng.f64() * 1e6,
            "median": (rng.u32(..1000) as f64) / 2.0,
            "mode": if rng.bool() { json!(null) } else { json!(rng.u32(..)) }
        });
    }
}

#[actix_rt::test]
async fn every_report_the_schema_accepts_is_stored_as_sent_or_quarantined_if_implausible() {
    let oracle = SchemaOracle::new();
    let mut rng = fastrand::Rng::with_seed(3727);
    let mut reports = Vec::new();
    let mut refused_by_schema = 0;
    while reports.len() < 150 {
        let mut v = seed();
        mutate(&mut rng, &mut v);
        if oracle.accepts(&v) {
            reports.push(v);
        } else {
            refused_by_schema += 1;
        }
    }
    assert!(
        refused_by_schema < 150,
        "the mutations mostly stay valid ({refused_by_schema} were not)"
    );
    // Sums are kept per UTC day in BIGINTs and saturate at 2^63-1 there (documented in
    // checkpoint::store); the overview adds the days up in u64.
    let mut per_day: std::collections::BTreeMap<String, i64> = Default::default();
    let believed = reports.iter().filter(|r| plausible(r)).count();
    assert!(
        believed > 20 && believed < reports.len() - 20,
        "the mutations make both kinds: {believed} of {} plausible",
        reports.len()
    );
    for r in reports.iter().filter(|r| plausible(r)) {
        let t = chrono::DateTime::parse_from_rfc3339(r["timestamp"].as_str().unwrap()).unwrap();
        let day = t.with_timezone(&chrono::Utc).date_naive().to_string();
        let sum = per_day.entry(day).or_default();
        *sum = sum.saturating_add(saturating_count(&r["data"]["usage"]["operations_from_pg"]));
    }
    let expected_ops = per_day
        .values()
        .fold(0u64, |a, v| a.saturating_add(*v as u64));
    for b in backends("drift").await {
        let running = start_with(&b.db, |c| c.cluster_burst = 10_000).await;
        let http = client();
        for r in &reports {
            let answer = post(&http, &running, r).await;
            let id = r["report_id"].as_str().unwrap();
            let stored = running.store().raw_body(id).await.unwrap();
            if plausible(r) {
                assert_eq!(
                    answer.status, 201,
                    "{}: {answer:?} for the valid report\n{r:#}",
                    b.name
                );
                assert_eq!(
                    stored,
                    Some(serde_json::to_string(r).unwrap()),
                    "{}",
                    b.name
                );
            } else {
                assert_eq!(
                    (answer.status, answer.body["reason"].as_str()),
                    (202, Some("counter_too_large")),
                    "{}: {answer:?} for the implausible report\n{r:#}",
                    b.name
                );
                assert_eq!(stored, None, "{}: never stored", b.name);
            }
        }
        let o = overview(&http, &running, 3660, "2031-01-31").await;
        assert_eq!(o.completeness.reports, believed as u64, "{}", b.name);
        let kept = checkpoint::quarantine::totals(running.store())
            .await
            .unwrap();
        assert_eq!(
            kept.reports,
            (reports.len() - believed) as u64,
            "{}",
            b.name
        );
        assert_eq!(
            o.totals["operations_from_pg"], expected_ops,
            "{}: saturating sum",
            b.name
        );
        running.stop().await;
        b.finish().await;
    }
}

/// What the reporter would send if a field were added to or renamed in its Report type without
/// a new schema: an added field is a later release's optional field, accepted and stored (see
/// `ingest.rs`); a renamed one leaves a published field missing, and that is refused by name.
#[actix_rt::test]
async fn a_type_change_without_a_schema_change_is_refused_by_name() {
    let template: Report = serde_json::from_str(common::SEED).unwrap();
    let mut added = serde_json::to_value(&template).unwrap();
    added["data"]["usage"]["rows_synced"] = json!(12);
    let mut renamed = serde_json::to_value(&template).unwrap();
    let ops = renamed["data"]["usage"]
        .as_object_mut()
        .unwrap()
        .remove("operations_from_pg")
        .unwrap();
    renamed["data"]["usage"]["ops_from_pg"] = ops;
    renamed["report_id"] = json!(uuid::Uuid::new_v4().to_string());
    for b in backends("type_change").await {
        let running = start_with(&b.db, |_| {}).await;
        let http = client();
        let answer = post(&http, &running, &renamed).await;
        assert_eq!(answer.status, 400, "{}: {answer:?}", b.name);
        let message = answer.body["error"].as_str().unwrap();
        assert!(
            message.contains("operations_from_pg"),
            "{}: {message}",
            b.name
        );
        assert_eq!(running.store().raw_count().await.unwrap(), 0);
        let answer = post(&http, &running, &added).await;
        assert_eq!(answer.status, 201, "{}: {answer:?}", b.name);
        assert_eq!(running.store().raw_count().await.unwrap(), 1);
        running.stop().await;
        b.finish().await;
    }
}
