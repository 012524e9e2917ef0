//! What an ingest body must be, and what the receiver keeps of it.
//!
//! The contract: a body is accepted if and only if it is JSON whose `report_version` is one of
//! [`ACCEPTED_VERSIONS`] and which is valid against [`electric_telemetry::REPORT_SCHEMA`], the
//! very constant the reporter exports (compiled at start, never a copy of it: Electric's own
//! receiver validated against its own copy and silently refused every report for months after
//! the payload changed). Nothing the schema accepts is refused afterwards: the fields the
//! receiver reads are taken from the JSON value leniently (an integer the schema allows but a
//! `u64` cannot hold saturates, a time `chrono` cannot read falls back to its date), and the
//! report is kept as canonical compact JSON (re-serialised), not as the bytes sent.

use chrono::{DateTime, NaiveDate, Utc};
use electric_telemetry::{REPORT_SCHEMA, REPORT_VERSION};
use serde_json::Value;

/// The `report_version`s this receiver accepts. Derived from the reporter's own constant, so
/// a version bump in the library is a version bump here, in one place.
pub const ACCEPTED_VERSIONS: &[u64] = &[REPORT_VERSION as u64];

/// The usage counters summed over reports, keyed exactly as in the payload's `data.usage`.
/// `distinct_clients` and `distinct_users` are per-window estimates: their sums count a client
/// once per window it connected in (see the README). `electrified_tables` is a latest value,
/// not a count, so it is not summed. A test checks this list against the schema's integer
/// properties of `usage`, so a new counter in the payload fails a test until it is added here.
pub const COUNTERS: [&str; 11] = [
    "operations_from_pg",
    "transactions_from_pg",
    "operations_received_from_clients",
    "transactions_received_from_clients",
    "operations_sent_to_clients",
    "transactions_sent_to_clients",
    "initial_syncs",
    "subscriptions_established",
    "subscriptions_continued",
    "distinct_clients",
    "distinct_users",
];

/// Usage properties of the payload that are integers but latest values, not counts.
pub const GAUGES: [&str; 1] = ["electrified_tables"];

/// A report that passed every check, with the fields the rollups need.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub report_id: String,
    pub report_version: i64,
    pub cluster_uuid: String,
    pub instance_id: String,
    /// The report's `timestamp`, microseconds since the epoch.
    pub timestamp_us: i64,
    /// The UTC day (`YYYY-MM-DD`) of `timestamp`: the day the report's usage is counted on.
    pub day: String,
    /// The report's `last_reported`, microseconds since the epoch.
    pub last_reported_us: i64,
    pub electric_version: String,
    pub pg_version: Option<String>,
    pub os_family: String,
    pub os_name: String,
    pub arch: String,
    /// [`COUNTERS`] in order, saturated to `i64::MAX` (the databases' BIGINT).
    pub counters: [i64; COUNTERS.len()],
    pub dropped_events: i64,
    pub dropped_reports: i64,
    /// The optional envelope flag `recovered` (absent counts as false).
    pub recovered: bool,
    /// The optional envelope flag `after_unclean_stop` (absent counts as false).
    pub after_unclean_stop: bool,
    /// The report as canonical compact JSON (re-serialised: keys sorted, no whitespace), what
    /// is stored; never the body as received.
    pub body: String,
}

/// Why a body was refused: the message names what was wrong and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error(
        "report_version {found} is not accepted; this receiver accepts report_version {accepted}"
    )]
    UnknownVersion { found: String, accepted: String },
    #[error("the report does not match the report schema: {0}")]
    Schema(String),
}

/// [`REPORT_SCHEMA`] compiled once, with `format` asserted (`uuid`, `date-time` are part of
/// the contract; draft 2020-12 only annotates them by default).
pub struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validator(REPORT_SCHEMA)")
    }
}

impl Validator {
    /// Compiles [`REPORT_SCHEMA`]. An error here means the library shipped a broken schema.
    pub fn new() -> Result<Self, String> {
        let schema: Value = serde_json::from_str(REPORT_SCHEMA)
            .map_err(|e| format!("REPORT_SCHEMA is not JSON: {e}"))?;
        let id = schema["$id"]
            .as_str()
            .unwrap_or("urn:electric-telemetry:report")
            .to_owned();
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        // Registered under its own $id, so nothing is ever fetched.
        compiler
            .add_resource(&id, schema)
            .map_err(|e| format!("REPORT_SCHEMA: {e}"))?;
        let mut schemas = boon::Schemas::new();
        let index = compiler
            .compile(&id, &mut schemas)
            .map_err(|e| format!("REPORT_SCHEMA does not compile: {e:#}"))?;
        Ok(Self { schemas, index })
    }

    /// Checks one body: JSON, then the version (so a newer reporter hears which versions this
    /// receiver takes rather than a schema `const` message), then the schema.
    pub fn check(&self, body: &[u8]) -> Result<Accepted, Invalid> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Invalid::NotJson(e.to_string()))?;
        let version = value.get("report_version");
        let known = version
            .and_then(Value::as_u64)
            .filter(|v| ACCEPTED_VERSIONS.contains(v));
        let Some(version) = known else {
            let found = match version {
                None => "(missing)".to_owned(),
                Some(v) => v.to_string(),
            };
            return Err(Invalid::UnknownVersion {
                found,
                accepted: accepted_versions(),
            });
        };
        if let Err(e) = self.schemas.validate(&value, self.index) {
            return Err(Invalid::Schema(first_violation(&e)));
        }
        // Stored compact: the canonical re-serialisation (keys sorted, no whitespace), never
        // the body as received, so padding costs the database nothing.
        let text = value.to_string();
        Ok(extract(&value, version, text))
    }
}

/// The accepted versions as a human list, e.g. `1` or `1, 2`.
pub fn accepted_versions() -> String {
    ACCEPTED_VERSIONS
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The deepest first cause: the one violation a sender can act on, with where it is.
fn first_violation(error: &boon::ValidationError<'_, '_>) -> String {
    let mut e = error;
    while let Some(first) = e.causes.first() {
        e = first;
    }
    let at = e.instance_location.to_string();
    let at = if at.is_empty() { "/".to_owned() } else { at };
    format!("at {at}: {}", e.kind)
}

fn extract(v: &Value, version: u64, body: String) -> Accepted {
    let env = &v["data"]["environment"];
    let usage = &v["data"]["usage"];
    let text = |x: &Value| x.as_str().unwrap_or_default().to_owned();
    let (timestamp_us, day) = time_of(v["timestamp"].as_str().unwrap_or_default());
    let (last_reported_us, _) = time_of(v["last_reported"].as_str().unwrap_or_default());
    let cluster = text(&env["electric_cluster_uuid"]);
    // Ids are grouped in one spelling; the raw body keeps the sender's.
    let cluster_uuid = uuid::Uuid::parse_str(&cluster)
        .map(|u| u.hyphenated().to_string())
        .unwrap_or_else(|_| cluster.to_ascii_lowercase());
    let mut counters = [0i64; COUNTERS.len()];
    for (slot, name) in counters.iter_mut().zip(COUNTERS) {
        *slot = saturating_count(&usage[name]);
    }
    Accepted {
        report_id: text(&v["report_id"]).to_ascii_lowercase(),
        report_version: version as i64,
        cluster_uuid,
        instance_id: text(&env["electric_instance_id"]),
        timestamp_us,
        day,
        last_reported_us,
        electric_version: text(&v["data"]["electric_version"]),
        pg_version: env["pg_version"].as_str().map(str::to_owned),
        os_family: text(&env["os"]["family"]),
        os_name: text(&env["os"]["name"]),
        arch: text(&env["arch"]),
        counters,
        dropped_events: saturating_count(&v["dropped_events"]),
        dropped_reports: saturating_count(&v["dropped_reports"]),
        recovered: v.get("recovered").and_then(Value::as_bool) == Some(true),
        after_unclean_stop: v.get("after_unclean_stop").and_then(Value::as_bool) == Some(true),
        body,
    }
}

/// A JSON Schema integer as a BIGINT: `1.0` is an integer to the schema, and counts beyond
/// `i64::MAX` (the reporter's saturate at 2^64-1) saturate here.
pub fn saturating_count(x: &Value) -> i64 {
    if let Some(n) = x.as_u64() {
        return i64::try_from(n).unwrap_or(i64::MAX);
    }
    match x.as_f64() {
        Some(f) if f >= i64::MAX as f64 => i64::MAX,
        Some(f) if f > 0.0 => f as i64,
        _ => 0,
    }
}

/// An RFC 3339 time (already checked by the schema) as microseconds and its UTC day. A
/// spelling chrono does not read (a leap second, say) keeps its own date at midnight rather
/// than refusing a report the schema accepted.
pub fn time_of(text: &str) -> (i64, String) {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        let t = t.with_timezone(&Utc);
        return (
            t.timestamp_micros(),
            t.date_naive().format("%Y-%m-%d").to_string(),
        );
    }
    let date = text.get(..10).unwrap_or("1970-01-01");
    match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
        Ok(d) => {
            let micros = d
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_micros())
                .unwrap_or(0);
            (micros, d.format("%Y-%m-%d").to_string())
        }
        Err(_) => (0, "1970-01-01".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_instead_of_failing() {
        use serde_json::json;
        assert_eq!(saturating_count(&json!(5)), 5);
        assert_eq!(saturating_count(&json!(5.0)), 5);
        assert_eq!(saturating_count(&json!(u64::MAX)), i64::MAX);
        assert_eq!(saturating_count(&json!(1e30)), i64::MAX);
    }

    #[test]
    fn times_become_utc_days() {
        let (us, day) = time_of("2026-11-24T23:30:00.000000-05:00");
        assert_eq!(day, "2026-11-25");
        assert_eq!(us % 1_000_000, 0);
        assert_eq!(time_of("2026-11-24T23:59:60Z").1, "2026-11-24");
    }
}
