//! The wire format of electric-telemetry's usage report: the types a reporter sends and a
//! receiver reads, the counter list, and every published JSON Schema, frozen.
//!
//! # Versioning rules
//!
//! - [`REPORT_VERSION`] names a report's shape. **Adding an optional field does not bump it**:
//!   readers ignore what they do not know. The types here accept fields they do not know and
//!   keep them (a private flattened map in each object), so a report read and re-serialised by
//!   an older build loses nothing; a receiver validates a report against its version's
//!   schema with `additionalProperties` relaxed (see [`reader_schema`]), so a later release's
//!   new fields pass and are stored.
//! - **Removing a field, renaming it or changing its type or meaning is a new version**: a new
//!   frozen schema in `schemas/report-vN.json`, a new entry in [`SCHEMAS`], and a receiver
//!   that carries a conversion from every older version into what it stores.
//! - **A published schema never changes.** A test fails if the bytes of one do; each schema
//!   describes exactly what its version's reporters send (every object closed, every property
//!   required), which the reporter's own tests check of what it really sends.
//! - Version 1 was never published (the reporter upgrades any version 1 report left in its
//!   outbox into version 2 before sending it); version 2 is the first published one.
//! - Version 3 ([`LEVELLED_REPORT_VERSION`]) is version 2 with a [`Level`] and without the
//!   sections above it: a report at [`Level::Basic`] has no `data.usage` and no
//!   `data.resources`, one at [`Level::Usage`] no `data.resources`. A full-level report is
//!   still sent as version 2, byte for byte what it was, so that every receiver reads it.
//!
//! # The field dictionary
//!
//! The newest schema (`schemas/report-v3.json`) is the one place that says, for every field,
//! the [`Level`] it belongs to (`x-level`; a field's children belong to its level), the schema
//! revision it was added in (`x-since`, the number of the schema file that first described
//! it) and what feeds it (`x-source`). [`fields`] reads them from there; the reporter decides
//! what it collects and sends from them, and the dictionary (docs/report.md, the example's
//! `--print-dictionary`) is rendered from them ([`dictionary_markdown`]): never written twice.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use uuid::Uuid;

/// The version of a full-level report (the envelope and the whole payload), which is what
/// reporters sent before levels existed and still send at [`Level::Full`].
pub const REPORT_VERSION: u32 = 2;

/// The JSON Schema (draft 2020-12) of a version [`REPORT_VERSION`] report as sent: every object
/// closed (`additionalProperties: false`), every property required and described with its
/// unit. Frozen: `schemas/report-v2.json`.
pub const REPORT_SCHEMA: &str = include_str!("../schemas/report-v2.json");

/// The version of a report below [`Level::Full`]: version 2 with `level`, and without the
/// sections above that level.
pub const LEVELLED_REPORT_VERSION: u32 = 3;

/// The JSON Schema of a version [`LEVELLED_REPORT_VERSION`] report as sent, every object
/// closed; it also carries every field's `x-level`, `x-since` and `x-source` (see
/// [`fields`]). Frozen: `schemas/report-v3.json`.
pub const LEVELLED_REPORT_SCHEMA: &str = include_str!("../schemas/report-v3.json");

/// Every published version with its frozen schema, oldest first. A receiver accepts each.
pub const SCHEMAS: &[(u32, &str)] = &[(2, REPORT_SCHEMA), (3, LEVELLED_REPORT_SCHEMA)];

/// The newest schema revision: the largest `x-since` of any field. A consent given now covers
/// every field up to it; a field added later (a larger `x-since`) is not sent under it.
pub const SCHEMA_REVISION: u32 = 3;

/// How much a report carries. Ordered: `Basic < Usage < Full`; where settings disagree, the
/// lowest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The envelope, `electric_version` and `environment` (versions, OS, arch, cores, RAM,
    /// ids): enough to count applications.
    Basic,
    /// Plus `data.usage`, the usage counters and summaries: volume.
    Usage,
    /// Plus `data.resources` (memory, WAL): the seed's whole report.
    Full,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 3] = [Level::Basic, Level::Usage, Level::Full];

    /// `basic`, `usage` or `full`, as the wire and `ELECTRIC_TELEMETRY_LEVEL` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Basic => "basic",
            Level::Usage => "usage",
            Level::Full => "full",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Level`]'s `FromStr` accepts, for error messages.
pub const ACCEPTED_LEVELS: &str = "basic, usage or full (any letter case)";

impl std::str::FromStr for Level {
    type Err = String;
    /// `basic`, `usage` or `full`, any case, surrounding spaces ignored; the error says what
    /// was given and what is accepted.
    fn from_str(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == lower)
            .ok_or_else(|| format!("{text:?} is not a report level; accepted: {ACCEPTED_LEVELS}"))
    }
}

/// One field of the report as the newest schema describes it: an entry of the dictionary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Field {
    /// Where it is, slash-separated from the report's root, e.g. `data/usage/initial_syncs`.
    pub path: String,
    /// Its JSON type(s) as the schema says (`integer`, `string or null`, `summary`, ...).
    pub kind: String,
    /// The lowest level whose reports carry it.
    pub level: Level,
    /// The schema revision it was added in.
    pub since: u32,
    /// Which event, setting or part of the reporter feeds it.
    pub source: String,
    /// What it is for and its unit, from the schema's description.
    pub description: String,
}

/// Every field of the newest schema, parent before children, sorted by name: the one
/// declaration of each field's level, revision and source.
pub fn fields() -> &'static [Field] {
    static FIELDS: std::sync::OnceLock<Vec<Field>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let schema: Value = serde_json::from_str(LEVELLED_REPORT_SCHEMA)
            .expect("the frozen version 3 schema is JSON (a test reads it)");
        let mut out = Vec::new();
        collect_fields(&schema, "", Level::Basic, &mut out);
        out
    })
}

fn collect_fields(node: &Value, at: &str, inherited: Level, out: &mut Vec<Field>) {
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, p) in properties {
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}/{name}")
        };
        let level = p
            .get("x-level")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or(inherited);
        let kind = match (p.get("type"), p.get("$ref"), p.get("const"), p.get("enum")) {
            (Some(Value::String(t)), ..) => t.clone(),
            (Some(Value::Array(ts)), ..) => ts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
            (_, Some(Value::String(r)), ..) => r.rsplit('/').next().unwrap_or(r).to_owned(),
            (_, _, Some(c), _) => format!("constant {c}"),
            (_, _, _, Some(Value::Array(e))) => {
                let names: Vec<String> = e.iter().map(Value::to_string).collect();
                format!("one of {}", names.join(", "))
            }
            _ => "any".to_owned(),
        };
        let text = |key: &str| p.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        out.push(Field {
            path: path.clone(),
            kind,
            level,
            since: p.get("x-since").and_then(Value::as_u64).unwrap_or(2) as u32,
            source: text("x-source"),
            description: text("description"),
        });
        collect_fields(p, &path, level, out);
    }
}

/// The level a field (a [`Field::path`]) belongs to, if the newest schema has it.
pub fn level_of(path: &str) -> Option<Level> {
    fields().iter().find(|f| f.path == path).map(|f| f.level)
}

/// The fields a consent at `revision` does not cover: those added in a later revision.
pub fn fields_after(revision: u32) -> impl Iterator<Item = &'static Field> {
    fields().iter().filter(move |f| f.since > revision)
}

/// The dictionary as Markdown: one table row per field (path, type, level, revision, source,
/// meaning), sorted by path. What docs/report.md holds between its dictionary markers
/// and what the example service prints with `--print-dictionary`.
pub fn dictionary_markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from(
        "| field | type | level | since | fed by | meaning and unit |\n|---|---|---|---|---|---|\n",
    );
    for f in fields() {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            f.path,
            cell(&f.kind),
            f.level,
            f.since,
            cell(&f.source),
            cell(&f.description)
        ));
    }
    out
}

/// The usage counters a receiver sums over reports, keyed exactly as in `data.usage`.
/// `distinct_clients` and `distinct_users` are per-window estimates: their sums count a client
/// once per window it connected in. `electrified_tables` is a latest value, not a count
/// ([`GAUGES`]). A test checks this list against the schema's integer properties of `usage`.
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

/// Usage properties that are integers but latest values, not counts.
pub const GAUGES: [&str; 1] = ["electrified_tables"];

/// `schema` (one of [`SCHEMAS`]) as a reader applies it: the same, except that no object is
/// closed (every `"additionalProperties": false` removed), so that a later release's added
/// optional fields are accepted. `None` if `schema` is not JSON.
pub fn reader_schema(schema: &str) -> Option<Value> {
    fn open(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                    map.remove("additionalProperties");
                }
                map.values_mut().for_each(open);
            }
            Value::Array(items) => items.iter_mut().for_each(open),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(schema).ok()?;
    open(&mut v);
    Some(v)
}

/// One report, as POSTed to the endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(remote = "Self")]
pub struct Report {
    /// A fresh random id per report, for the receiver to drop duplicates.
    pub report_id: Uuid,
    /// [`REPORT_VERSION`] for a full-level report, [`LEVELLED_REPORT_VERSION`] below.
    pub report_version: u32,
    /// Below [`Level::Full`], the report's level (version 3); `None` for a full-level
    /// (version 2) report, whose wire form has no `level`. The sections above the level are
    /// left out of the wire form (they read back as zeros here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub timestamp: String,
    /// When the window this report covers began (RFC 3339, UTC): the previous report's
    /// `timestamp`, or the start of telemetry for the first report.
    pub last_reported: String,
    /// Usage events shed since the last report because the collector's event queue (or, for
    /// event types without a compact form, its mailbox) was full: counted, never silent.
    pub dropped_events: u64,
    /// Earlier reports dropped without delivery since the last delivered one, past the
    /// outbox's bound (counted, never silent). Reporters before the one that keeps refused
    /// reports (see the CHANGELOG) also counted reports the endpoint refused; the frozen
    /// schema's description still names both.
    pub dropped_reports: u64,
    /// This report's window was restored from its recovery file after the previous process
    /// stopped without a clean shutdown (killed, crashed): it ends where the file was written
    /// (`timestamp`), and the usage between then and the stop, at most one `checkpoint_every`,
    /// is missing. Its `report_id` is the window's own: a receiver that already has the
    /// window's full report drops it. Absent in version 1 reports (read as `false`).
    #[serde(default)]
    pub recovered: bool,
    /// The previous run of this storage dir ended uncleanly and nothing of its last window
    /// could be recovered (it was killed before its first recovery file, or the file could
    /// not be written or read, or its shutdown ended before its final report was queued): a stretch of usage before this report's window is missing.
    /// Absent in version 1 reports (read as `false`).
    #[serde(default)]
    pub after_unclean_stop: bool,
    /// The payload.
    pub data: ReportData,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

impl Serialize for Report {
    /// A full-level report (no [`level`](Report::level)) as its fields are; below full, the
    /// same with `level` and without the sections above it (as the newest schema's `x-level`
    /// says of `data/usage` and `data/resources`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(level) = self.level else {
            return Report::serialize(self, serializer);
        };
        let carries = |section: &str| level_of(section).is_none_or(|needs| level >= needs);
        #[derive(Serialize)]
        struct Levelled<'a> {
            report_id: &'a Uuid,
            report_version: u32,
            level: Level,
            timestamp: &'a str,
            last_reported: &'a str,
            dropped_events: u64,
            dropped_reports: u64,
            recovered: bool,
            after_unclean_stop: bool,
            data: Data<'a>,
            #[serde(flatten)]
            unknown: &'a Map<String, Value>,
        }
        #[derive(Serialize)]
        struct Data<'a> {
            electric_version: &'a str,
            environment: &'a Environment,
            #[serde(skip_serializing_if = "Option::is_none")]
            resources: Option<&'a Resources>,
            #[serde(skip_serializing_if = "Option::is_none")]
            usage: Option<&'a Usage>,
            #[serde(flatten)]
            unknown: &'a Map<String, Value>,
        }
        let d = &self.data;
        Levelled {
            report_id: &self.report_id,
            report_version: self.report_version,
            level,
            timestamp: &self.timestamp,
            last_reported: &self.last_reported,
            dropped_events: self.dropped_events,
            dropped_reports: self.dropped_reports,
            recovered: self.recovered,
            after_unclean_stop: self.after_unclean_stop,
            data: Data {
                electric_version: &d.electric_version,
                environment: &d.environment,
                resources: carries("data/resources").then_some(&d.resources),
                usage: carries("data/usage").then_some(&d.usage),
                unknown: &d.unknown,
            },
            unknown: &self.unknown,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Report::deserialize(deserializer)
    }
}

impl Report {
    /// This report at `level`: at [`Level::Full`] unchanged (version 2, no `level`); below
    /// it, version [`LEVELLED_REPORT_VERSION`] with `level`, the sections above the level
    /// zeroed here and left out of the wire form.
    pub fn at_level(mut self, level: Level) -> Self {
        if level == Level::Full {
            return self;
        }
        self.report_version = LEVELLED_REPORT_VERSION;
        self.level = Some(level);
        if level_of("data/usage").is_some_and(|needs| level < needs) {
            self.data.usage = Usage::default();
        }
        if level_of("data/resources").is_some_and(|needs| level < needs) {
            self.data.resources = Resources::default();
        }
        self
    }
}

/// The payload: the seed's `%{electric_version, environment, resources, usage}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReportData {
    /// The version of the service that embeds telemetry.
    pub electric_version: String,
    /// Facts about the host and this instance, gathered once at start.
    pub environment: Environment,
    /// Resources the service used. Left out of the wire form below [`Level::Full`] (see
    /// [`Report::level`]); absent, it reads as zeros.
    #[serde(default)]
    pub resources: Resources,
    /// Usage in the window. Left out of the wire form at [`Level::Basic`]; absent, it reads
    /// as zeros.
    #[serde(default)]
    pub usage: Usage,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Facts about the host and this instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Environment {
    /// The target triple the service was built for, e.g. `x86_64-unknown-linux-gnu`.
    pub arch: String,
    /// Logical CPU cores.
    pub cores: u64,
    /// Random id shared by every instance of a cluster.
    pub electric_cluster_uuid: Uuid,
    /// Random id of this instance (or `ELECTRIC_INSTANCE_ID`).
    pub electric_instance_id: String,
    /// Operating system.
    pub os: Os,
    /// Postgres server version, once the replication side reported it.
    pub pg_version: Option<String>,
    /// Total RAM in bytes.
    pub ram: u64,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Operating system family and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Os {
    /// `unix` or `windows`.
    pub family: String,
    /// e.g. `linux`, `macos`.
    pub name: String,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Resources the service used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Resources {
    /// Commit time of the oldest transaction kept in the WAL cache (RFC 3339), if known.
    pub oldest_wal_time: Option<String>,
    /// Seconds since telemetry started.
    pub uptime: u64,
    /// The process's resident memory in bytes, over the window's samples.
    pub used_memory: SummaryStats,
    /// Bytes held by the WAL cache (latest reported value).
    pub wal_cache_memory: u64,
    /// Transactions held by the WAL cache (latest reported value).
    pub wal_transactions: u64,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// Usage in the window, as the report's `data.usage` object carries it. Counts are per
/// window; `electrified_tables` is the latest value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Connected clients, over the window's samples.
    pub concurrent_clients: SummaryStats,
    /// Different client ids that connected in the window.
    pub distinct_clients: u64,
    /// Different user ids that connected in the window.
    pub distinct_users: u64,
    /// Electrified tables (latest value).
    pub electrified_tables: u64,
    /// Initial syncs run.
    pub initial_syncs: u64,
    /// Operations replicated from Postgres.
    pub operations_from_pg: u64,
    /// Operations received from clients.
    pub operations_received_from_clients: u64,
    /// Operations sent to clients.
    pub operations_sent_to_clients: u64,
    /// Subscriptions continued (resumed) by clients.
    pub subscriptions_continued: u64,
    /// Over the clients that continued any subscription: how many each continued.
    pub subscriptions_continued_per_client: SummaryStats,
    /// Subscriptions established.
    pub subscriptions_established: u64,
    /// Over established subscriptions: how many tables each included.
    pub subscriptions_included_tables: SummaryStats,
    /// Over shapes sent in initial syncs: how many rows each had.
    pub subscriptions_rows_per_shape: SummaryStats,
    /// Transactions replicated from Postgres.
    pub transactions_from_pg: u64,
    /// Transactions received from clients.
    pub transactions_received_from_clients: u64,
    /// Transactions sent to clients.
    pub transactions_sent_to_clients: u64,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// A summary of a window's samples, as the report carries it: `{min, max, mean, median, mode}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SummaryStats {
    /// The smallest sample, or 0 without samples.
    pub min: u64,
    /// The largest sample, or 0 without samples.
    pub max: u64,
    /// The arithmetic mean, or 0.0 without samples.
    pub mean: f64,
    /// The median: the middle sample, or the mean of the two middle samples for an even
    /// count; 0 without samples. Exact while the summary is; within 0.79 % once bucketed.
    pub median: Median,
    /// The most frequent sample (the smallest one on a tie), or `null` without samples. Once
    /// bucketed: the midpoint of the fullest bucket.
    pub mode: Option<u64>,
    /// Fields this version does not know (a later release's), kept as read so that
    /// re-serialising loses nothing.
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// A median of integer samples, kept exact: it is either an integer or an integer plus one
/// half. Serialised as a JSON integer when whole, else as a float (e.g. `2.5`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Median {
    doubled: u128,
}

impl Median {
    /// The median of a single value.
    pub fn of_value(value: u64) -> Self {
        Self {
            doubled: u128::from(value) * 2,
        }
    }

    /// The median of an even count of samples: the mean of its two middle values.
    pub fn of_pair(low: u64, high: u64) -> Self {
        Self {
            doubled: u128::from(low) + u128::from(high),
        }
    }

    /// The median as a float (exact up to 2^53).
    pub fn as_f64(self) -> f64 {
        self.doubled as f64 / 2.0
    }

    /// The median as an integer, if it is whole.
    pub fn as_u64(self) -> Option<u64> {
        self.doubled
            .is_multiple_of(2)
            .then_some((self.doubled / 2) as u64)
    }
}

impl Serialize for Median {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.as_u64() {
            Some(whole) => serializer.serialize_u64(whole),
            None => serializer.serialize_f64(self.as_f64()),
        }
    }
}

impl<'de> Deserialize<'de> for Median {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MedianVisitor;
        impl Visitor<'_> for MedianVisitor {
            type Value = Median;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number that is whole or ends in .5")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Median, E> {
                Ok(Median::of_value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Median, E> {
                u64::try_from(v)
                    .map(Median::of_value)
                    .map_err(|_| E::custom("a median is never negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Median, E> {
                let doubled = v * 2.0;
                if v.is_finite() && v >= 0.0 && doubled.fract() == 0.0 {
                    Ok(Median {
                        doubled: doubled as u128,
                    })
                } else {
                    Err(E::custom(format!(
                        "{v} is not a median of integer samples (whole or .5 expected)"
                    )))
                }
            }
        }
        deserializer.deserialize_any(MedianVisitor)
    }
}
