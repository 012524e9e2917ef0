//! What an ingest body must be, and what the receiver keeps of it.
//!
//! The contract: a body is accepted if and only if it is JSON whose `report_version` is one of
//! [`ACCEPTED_VERSIONS`] (every published version), which is valid against that version's
//! frozen schema from the wire crate (`electric_telemetry_report::SCHEMAS`, the very schemas the
//! reporter is tested against, compiled at start, never a copy: Electric's own receiver
//! validated against its own copy and silently refused every report for months after the
//! payload changed) read as readers read it (objects open: a later release's added optional
//! fields pass and are stored, see `electric_telemetry_report::reader_schema`), and which is
//! plausible ([`Plausibility`]: believable clocks, windows
//! and counts, no U+0000). The fields the receiver reads are taken from the JSON value
//! leniently (an integer the schema allows but a `u64` cannot hold saturates, a time `chrono`
//! cannot read falls back to its date), and the report is kept as canonical compact JSON
//! (re-serialised), not as the bytes sent. A refused report that was a JSON object goes to the
//! quarantine ([`crate::quarantine`]).

use chrono::{DateTime, NaiveDate, Utc};
use electric_telemetry_report::{reader_schema, SCHEMAS};
use serde_json::Value;

pub use electric_telemetry_report::{COUNTERS, GAUGES};

/// The `report_version`s this receiver accepts: every published one, from the wire crate's
/// list of frozen schemas, so that publishing a version is accepting it, in one place.
pub const ACCEPTED_VERSIONS: [u64; SCHEMAS.len()] = {
    let mut out = [0u64; SCHEMAS.len()];
    let mut i = 0;
    while i < SCHEMAS.len() {
        out[i] = SCHEMAS[i].0 as u64;
        i += 1;
    }
    out
};

/// A report that passed every check, with the fields the rollups need.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub report_id: String,
    pub report_version: i64,
    pub cluster_uuid: String,
    pub instance_id: String,
    /// The report's `timestamp`, microseconds since the epoch.
    pub timestamp_us: i64,
    /// The UTC day (`YYYY-MM-DD`) the report's usage is counted on: the day of `timestamp`, or
    /// the day it was received when `timestamp` is not believed ([`Accepted::clock_skewed`]).
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
    /// `timestamp` is before [`BELIEVED_FROM_US`], more than [`BELIEVED_AHEAD_US`] after the
    /// receiver got the report, or before the report's own `last_reported`: the report counts
    /// on the day it was received (and in `completeness.clock_skewed`).
    pub clock_skewed: bool,
    /// `data.resources.uptime`: seconds since telemetry started in the sending process.
    pub uptime_s: i64,
    /// The report as canonical compact JSON (re-serialised: keys sorted, no whitespace), what
    /// is stored; never the body as received.
    pub body: String,
}

impl Accepted {
    /// Whether the sending process ran through the whole window: its uptime is longer than
    /// the window. The first report after a restart (even with a fixed instance id) has an
    /// uptime no longer than its window, which began when that process started.
    pub fn same_process(&self) -> bool {
        let window = self.timestamp_us.saturating_sub(self.last_reported_us);
        self.uptime_s.saturating_mul(1_000_000) > window
    }
}

/// Reports dated before 2023-01-01T00:00:00Z count on the day they were received.
pub const BELIEVED_FROM_US: i64 = 1_672_531_200 * 1_000_000;
/// Reports dated more than an hour after the receiver got them count on the day received.
pub const BELIEVED_AHEAD_US: i64 = 3_600 * 1_000_000;

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
    /// Valid against the schema, but not believable (see [`Plausibility`]): quarantined and
    /// answered 202, never counted.
    #[error("the report is implausible ({reason}): {detail}")]
    Implausible {
        reason: &'static str,
        detail: String,
    },
}

impl Invalid {
    /// A short fixed name for the refusal (metrics, logs and the quarantine's `reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::NotJson(_) => "not_json",
            Invalid::UnknownVersion { .. } => "unknown_version",
            Invalid::Schema(_) => "schema",
            Invalid::Implausible { reason, .. } => reason,
        }
    }
}

/// A refused body, and what the quarantine keeps of it.
#[derive(Debug, Clone)]
pub struct Refused {
    pub error: Invalid,
    /// The report as canonical compact JSON, when it was a JSON object (what the quarantine
    /// keeps); `None` for a body that is not a report at all.
    pub body: Option<String>,
    /// Its `report_id` when that is a UUID (lowercase, hyphenated).
    pub report_id: Option<String>,
}

/// What makes a schema-valid report believable. A report that fails one of these is kept in
/// the quarantine with its reason and never counted; `checkpoint quarantine replay` re-checks
/// it under the rules of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plausibility {
    /// The most any counter may count per second of its report's window
    /// (`timestamp - last_reported`, at least one second); `0` turns the check off. Default
    /// 10^7: a counter of 1.44 * 10^11 in a 4-hour window.
    pub max_per_second: u64,
}

impl Default for Plausibility {
    fn default() -> Self {
        Plausibility {
            max_per_second: 10_000_000,
        }
    }
}

/// The longest window a report may cover: 31 days.
pub const MAX_WINDOW_US: i64 = 31 * 86_400 * 1_000_000;
/// How far ahead of the receiver's clock a report's `timestamp` may be: one day.
pub const MAX_AHEAD_US: i64 = 86_400 * 1_000_000;
/// The earliest `timestamp` believed: 2020-01-01T00:00:00Z, before the reporter existed.
pub const EARLIEST_US: i64 = 1_577_836_800 * 1_000_000;

/// Every published schema compiled once, as readers read it, with `format` asserted (`uuid`,
/// `date-time` are part of the contract; draft 2020-12 only annotates them by default).
pub struct Validator {
    schemas: boon::Schemas,
    /// (version, its compiled schema), as in [`ACCEPTED_VERSIONS`].
    versions: Vec<(u64, boon::SchemaIndex)>,
    rules: Plausibility,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Validator(versions {ACCEPTED_VERSIONS:?})")
    }
}

impl Validator {
    /// Compiles every published schema, with the default [`Plausibility`] rules. An error here
    /// means the wire crate shipped a broken schema.
    pub fn new() -> Result<Self, String> {
        Self::with_rules(Plausibility::default())
    }

    /// Compiles every published schema, checking plausibility by `rules`.
    pub fn with_rules(rules: Plausibility) -> Result<Self, String> {
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        let mut schemas = boon::Schemas::new();
        let mut versions = Vec::new();
        for (version, text) in SCHEMAS {
            let schema = reader_schema(text)
                .ok_or_else(|| format!("the version {version} schema is not JSON"))?;
            let id = schema["$id"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("urn:electric-telemetry:report:v{version}"));
            // Registered under its own $id, so nothing is ever fetched.
            compiler
                .add_resource(&id, schema)
                .map_err(|e| format!("the version {version} schema: {e}"))?;
            let index = compiler
                .compile(&id, &mut schemas)
                .map_err(|e| format!("the version {version} schema does not compile: {e:#}"))?;
            versions.push((u64::from(*version), index));
        }
        Ok(Self {
            schemas,
            versions,
            rules,
        })
    }

    /// Checks one body against the receiver's clock: see [`Validator::check_at`].
    pub fn check(&self, body: &[u8]) -> Result<Accepted, Refused> {
        self.check_at(body, Utc::now().timestamp_micros())
    }

    /// Checks one body: JSON, then the version (so a newer reporter hears which versions this
    /// receiver takes rather than a schema `const` message), then the schema, then
    /// plausibility, with `now_us` (microseconds since the epoch) as the receiver's clock.
    pub fn check_at(&self, body: &[u8], now_us: i64) -> Result<Accepted, Refused> {
        let value: Value = serde_json::from_slice(body).map_err(|e| Refused {
            error: Invalid::NotJson(e.to_string()),
            body: None,
            report_id: None,
        })?;
        // Kept compact: the canonical re-serialisation (keys sorted, no whitespace, `\u0000`
        // escaped), never the body as received, so padding costs the database nothing.
        let text = value.to_string();
        let refused = |error: Invalid, text: String| Refused {
            error,
            body: value.is_object().then_some(text),
            report_id: value
                .get("report_id")
                .and_then(Value::as_str)
                .and_then(|id| uuid::Uuid::parse_str(id).ok())
                .map(|u| u.hyphenated().to_string()),
        };
        let version = value.get("report_version");
        let known = version
            .and_then(Value::as_u64)
            .and_then(|v| self.versions.iter().find(|(known, _)| *known == v));
        let Some(&(version, index)) = known else {
            let found = match version {
                None => "(missing)".to_owned(),
                Some(v) => v.to_string(),
            };
            let error = Invalid::UnknownVersion {
                found: printable(&found),
                accepted: accepted_versions(),
            };
            return Err(refused(error, text));
        };
        if let Err(e) = self.schemas.validate(&value, index) {
            return Err(refused(
                Invalid::Schema(printable(&first_violation(&e))),
                text,
            ));
        }
        if let Some(at) = nul_at(&value, &mut String::new()) {
            let error = Invalid::Implausible {
                reason: "nul_in_string",
                detail: format!(
                    "at {at}: a string holds U+0000, which Postgres cannot store and no \
                     reporter sends"
                ),
            };
            return Err(refused(error, text));
        }
        let report = extract(&value, version, text.clone(), now_us);
        match self.rules.check(&report, now_us) {
            Ok(()) => Ok(report),
            Err(error) => Err(refused(error, text)),
        }
    }
}

impl Plausibility {
    /// Whether `r` is believable at `now_us`: its clock, its window and its counters.
    pub fn check(&self, r: &Accepted, now_us: i64) -> Result<(), Invalid> {
        let implausible = |reason, detail| Err(Invalid::Implausible { reason, detail });
        if r.timestamp_us < EARLIEST_US {
            return implausible(
                "timestamp_too_early",
                format!(
                    "timestamp is on {}, before 2020-01-01 (the earliest believed)",
                    r.day
                ),
            );
        }
        if r.timestamp_us > now_us.saturating_add(MAX_AHEAD_US) {
            return implausible(
                "timestamp_in_future",
                format!(
                    "timestamp is on {}, more than a day ahead of the receiver's clock",
                    r.day
                ),
            );
        }
        let window = r.timestamp_us.saturating_sub(r.last_reported_us);
        if window < 0 {
            return implausible(
                "window_negative",
                "last_reported is after timestamp; a window ends after it begins".to_owned(),
            );
        }
        if window > MAX_WINDOW_US {
            return implausible(
                "window_too_long",
                format!(
                    "the window (last_reported to timestamp) is {} days; at most 31 are believed",
                    window / 86_400_000_000
                ),
            );
        }
        if self.max_per_second == 0 {
            return Ok(());
        }
        let seconds = ((window + 999_999) / 1_000_000).max(1) as u64;
        let limit = self.max_per_second.saturating_mul(seconds);
        let named = COUNTERS
            .iter()
            .copied()
            .zip(r.counters.iter().copied())
            .chain([
                ("dropped_events", r.dropped_events),
                ("dropped_reports", r.dropped_reports),
            ]);
        for (name, count) in named {
            if count as u64 > limit {
                return implausible(
                    "counter_too_large",
                    format!(
                        "{name} is {count} in a window of {seconds} s; at most {} per second \
                         ({limit} in this window) is believed (--max-per-window)",
                        self.max_per_second
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Where (a JSON pointer) the first string or key holding U+0000 is, if any.
fn nul_at(v: &Value, at: &mut String) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => Some(if at.is_empty() {
            "/".to_owned()
        } else {
            at.clone()
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = at.len();
            at.push_str(&format!("/{i}"));
            let found = nul_at(item, at);
            at.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            if k.contains('\0') {
                return Some(format!("{at}/{}", printable(k)));
            }
            let len = at.len();
            at.push('/');
            at.push_str(&k.replace('~', "~0").replace('/', "~1"));
            let found = nul_at(item, at);
            at.truncate(len);
            found
        }),
        _ => None,
    }
}

/// `text` with control characters escaped, so that a message quoting a sender's string is
/// safe in a log line, a JSON answer and a database column (U+0000 included).
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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

fn extract(v: &Value, version: u64, body: String, now_us: i64) -> Accepted {
    let env = &v["data"]["environment"];
    let usage = &v["data"]["usage"];
    let text = |x: &Value| x.as_str().unwrap_or_default().to_owned();
    let (timestamp_us, day) = time_of(v["timestamp"].as_str().unwrap_or_default());
    let (last_reported_us, _) = time_of(v["last_reported"].as_str().unwrap_or_default());
    let clock_skewed = timestamp_us < BELIEVED_FROM_US
        || timestamp_us > now_us.saturating_add(BELIEVED_AHEAD_US)
        || timestamp_us < last_reported_us;
    let day = if clock_skewed {
        DateTime::from_timestamp_micros(now_us)
            .map(|t| t.date_naive().format("%Y-%m-%d").to_string())
            .unwrap_or(day)
    } else {
        day
    };
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
        clock_skewed,
        uptime_s: saturating_count(&v["data"]["resources"]["uptime"]),
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
