//! The report's JSON Schema (`report/schemas/report-v2.json`, [`REPORT_SCHEMA`]) holds for what is
//! really sent, and it and the Rust types cannot drift apart unnoticed in either direction.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::common::{eventually, seed_report, Receiver, SEED_SAMPLE};

use actix::Actor;
use electric_telemetry::internals::*;
use electric_telemetry::*;
use serde_json::{json, Value};

/// The schema compiled once per test, with `format` asserted: draft 2020-12 only annotates it
/// by default, and `uuid` / `date-time` are part of the contract.
struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new() -> Self {
        let schema = schema();
        let id = schema["$id"]
            .as_str()
            .expect("the schema has an $id")
            .to_owned();
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        // Registered under its own $id, so nothing is ever fetched; compiling also checks the
        // schema against the draft 2020-12 metaschema, which boon ships.
        compiler.add_resource(&id, schema).unwrap();
        let mut schemas = boon::Schemas::new();
        let index = compiler
            .compile(&id, &mut schemas)
            .unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
        Self { schemas, index }
    }

    fn check(&self, instance: &Value) -> Result<(), String> {
        self.schemas
            .validate(instance, self.index)
            .map_err(|e| format!("{e:#}"))
    }

    #[track_caller]
    fn assert_valid(&self, instance: &Value, what: &str) {
        if let Err(e) = self.check(instance) {
            panic!("{what} does not match the schema: {e}\n{instance:#}");
        }
    }

    #[track_caller]
    fn assert_invalid(&self, instance: &Value, what: &str) {
        assert!(
            self.check(instance).is_err(),
            "{what} was accepted by the schema"
        );
    }
}

fn schema() -> Value {
    serde_json::from_str(REPORT_SCHEMA).expect("REPORT_SCHEMA is JSON")
}

fn stats(samples: &[u64]) -> SummaryStats {
    let mut summary = Summary::new();
    samples.iter().for_each(|&s| summary.record(s));
    summary.stats()
}

/// A report with every `Option` set and every summary sampled (even counts, so medians end in
/// .5), written field by field. The types require every field, so adding a required field to
/// them makes this fail to parse, which points here to update the schema too.
fn fully_populated() -> Report {
    let stats = |samples: &[u64]| serde_json::to_value(stats(samples)).unwrap();
    serde_json::from_value(json!({
        "report_id": uuid::Uuid::new_v4(),
        "report_version": REPORT_VERSION,
        "timestamp": "2026-11-24T16:00:00.000000Z",
        "last_reported": "2026-11-24T12:00:00.000000Z",
        "dropped_events": 1,
        "dropped_reports": 2,
        "recovered": true,
        "after_unclean_stop": true,
        "data": {
            "electric_version": "1.2.3",
            "environment": {
                "arch": "x86_64-unknown-linux-gnu",
                "cores": 8,
                "electric_cluster_uuid": uuid::Uuid::new_v4(),
                "electric_instance_id": uuid::Uuid::new_v4().to_string(),
                "os": {"family": "unix", "name": "linux"},
                "pg_version": "16.2",
                "ram": 33_363_812_352u64,
            },
            "resources": {
                "oldest_wal_time": "2026-11-24T15:58:12.000000Z",
                "uptime": 14_400,
                "used_memory": stats(&[60_123_136, 64_262_223]),
                "wal_cache_memory": 2520,
                "wal_transactions": 2,
            },
            "usage": {
                "concurrent_clients": stats(&[0, 3, 4, 4]),
                "distinct_clients": 5,
                "distinct_users": 3,
                "electrified_tables": 3,
                "initial_syncs": 9,
                "operations_from_pg": 1200,
                "operations_received_from_clients": 40,
                "operations_sent_to_clients": 3600,
                "subscriptions_continued": 4,
                "subscriptions_continued_per_client": stats(&[1, 3]),
                "subscriptions_established": 9,
                "subscriptions_included_tables": stats(&[1, 2, 5]),
                "subscriptions_rows_per_shape": stats(&[0, 120, 121, 5000]),
                "transactions_from_pg": 100,
                "transactions_received_from_clients": 12,
                "transactions_sent_to_clients": 300,
            },
        },
    }))
    .expect("every field of the report types is written out here")
}

/// A report of windows in which nothing happened: every `Option` `None`, every summary empty.
fn empty_windows() -> Report {
    let mut report = fully_populated();
    report.dropped_events = 0;
    report.dropped_reports = 0;
    report.data.environment.pg_version = None;
    let resources = &mut report.data.resources;
    resources.oldest_wal_time = None;
    resources.used_memory = SummaryStats::default();
    (resources.wal_cache_memory, resources.wal_transactions) = (0, 0);
    let mut usage = serde_json::to_value(&report.data.usage).unwrap();
    for (_, value) in usage.as_object_mut().unwrap() {
        *value = if value.is_object() {
            serde_json::to_value(SummaryStats::default()).unwrap()
        } else {
            json!(0)
        };
    }
    report.data.usage = serde_json::from_value(usage).unwrap();
    report
}

/// Every property path of a JSON value, as JSON pointers (`/data/usage/initial_syncs`).
fn value_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, at: &str, out: &mut BTreeSet<String>) {
        if let Value::Object(map) = value {
            for (key, child) in map {
                let path = format!("{at}/{key}");
                walk(child, &path, out);
                out.insert(path);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    out
}

/// The pointers of the object values in a JSON value, the root (`""`) included.
fn object_paths(value: &Value) -> Vec<String> {
    let mut out = vec![String::new()];
    out.extend(
        value_paths(value)
            .into_iter()
            .filter(|p| value.pointer(p).is_some_and(Value::is_object)),
    );
    out
}

/// Follows a local `$ref` (the schema refers only to its own `$defs`).
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $refs are expected, got {reference}"));
            let target = root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} resolves"));
            resolve(root, target)
        }
        None => node,
    }
}

/// Every property the schema declares, by the path it would have in a report, with its
/// (`$ref`-resolved) subschema and the property's own node (which holds its description).
fn schema_properties(root: &Value) -> BTreeMap<String, (&Value, &Value)> {
    fn walk<'a>(
        root: &'a Value,
        node: &'a Value,
        at: &str,
        out: &mut BTreeMap<String, (&'a Value, &'a Value)>,
    ) {
        let node = resolve(root, node);
        if let Some(Value::Object(properties)) = node.get("properties") {
            for (key, declared) in properties {
                let path = format!("{at}/{key}");
                walk(root, declared, &path, out);
                out.insert(path, (resolve(root, declared), declared));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, "", &mut out);
    out
}

/// Every object subschema of the schema, by where it sits in the schema (`$defs` included).
fn schema_objects(node: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    if let Value::Object(map) = node {
        if map.contains_key("properties") || map.get("type") == Some(&json!("object")) {
            out.push((at.to_owned(), node.clone()));
        }
        for (key, child) in map {
            schema_objects(child, &format!("{at}/{key}"), out);
        }
    }
}

fn schema_type_allows_null(subschema: &Value) -> bool {
    match &subschema["type"] {
        Value::String(t) => t == "null",
        Value::Array(types) => types.contains(&json!("null")),
        _ => false,
    }
}

fn paths_with_null(value: &Value) -> BTreeSet<String> {
    value_paths(value)
        .into_iter()
        .filter(|p| value.pointer(p) == Some(&Value::Null))
        .collect()
}

/// Starts telemetry against `receiver` with the first report due at once and no other one
/// before the shutdown.
fn start(receiver: &Receiver, storage: &tempfile::TempDir) -> Telemetry {
    let config = TelemetryConfig::builder()
        .url(&receiver.url)
        .storage_dir(storage.path())
        .first_report_in(Duration::ZERO)
        .interval(Duration::from_secs(3600))
        .request_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    Telemetry::start(config).unwrap()
}

/// Records every kind of event in src/messages.rs, so every summary has samples and every
/// `Option` of the next report is set. Some go through the collector's address rather than the
/// handle, as an actor holding a `Recipient` would send them.
async fn record_every_event(telemetry: &Telemetry) {
    telemetry.record(ReplicatedFromPg::new(3, 30));
    telemetry.record(ReceivedFromClient::new(2, 5));
    telemetry.record(SentToClients::new(4, 40));
    for (client, user) in [("c1", "u1"), ("c2", "u1"), ("c3", "u2")] {
        telemetry.record(ClientConnected::new(client, user));
    }
    telemetry.record(SubscriptionEstablished::new("c1", 2));
    telemetry.record(SubscriptionEstablished::new("c2", 3));
    for client in ["c1", "c1", "c2"] {
        telemetry.record(SubscriptionContinued::new(client));
    }
    telemetry.record(InitialSync::new(vec![10, 20, 20]));
    telemetry.record(PgVersion::new("16.2").unwrap());
    telemetry.record(WalStatus {
        oldest_wal_time: Some(SystemTime::now() - Duration::from_secs(90)),
        wal_cache_memory: 2520,
        wal_transactions: 2,
    });
    telemetry.record(ClientDisconnected::new("c3"));
    let collector = telemetry.collector().expect("telemetry is enabled");
    collector
        .send(ElectrifiedTables { count: 3 })
        .await
        .unwrap();
    collector.send(InitialSync::new(vec![7])).await.unwrap();
}

#[actix_rt::test]
async fn reports_the_real_pipeline_sends_match_the_schema_empty_window_and_full_window() {
    let validator = Validator::new();
    let declared: BTreeSet<String> = schema_properties(&schema()).into_keys().collect();
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let telemetry = start(&receiver, &storage);
    // The first report covers a window in which nothing was recorded.
    assert!(
        eventually(Duration::from_secs(10), || !receiver.received().is_empty()).await,
        "the first report arrives"
    );
    record_every_event(&telemetry).await;
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let received = receiver.received();
    receiver.stop().await;

    assert_eq!(received.len(), 2, "the first report and the final flush");
    let bodies: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("a JSON body"))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        validator.assert_valid(body, &format!("received report {i}"));
    }

    let (empty, full) = (&received[0].report(), &received[1].report());
    assert_eq!(empty.data.environment.pg_version, None);
    assert_eq!(empty.data.resources.oldest_wal_time, None);
    assert_eq!(empty.data.usage.subscriptions_rows_per_shape.mode, None);
    assert!(
        !paths_with_null(&bodies[0]).is_empty(),
        "the empty window's report has nulls"
    );

    // The full window sets every Option and samples every summary...
    assert_eq!(
        paths_with_null(&bodies[1]),
        BTreeSet::new(),
        "no null in a full window's report"
    );
    assert_eq!(
        full.data
            .usage
            .subscriptions_included_tables
            .median
            .as_f64(),
        2.5,
        "a median ending in .5 was sent and validated"
    );
    assert_eq!(full.data.usage.subscriptions_rows_per_shape.mode, Some(20));
    // ...so a real report has exactly the properties the schema declares.
    assert_eq!(value_paths(&bodies[1]), declared);
}

#[test]
fn the_seed_fixture_matches_the_schema() {
    // The fixture is the seed's payload in the current envelope: valid as it is, and as this
    // crate writes it back.
    let seed: Value = serde_json::from_str(SEED_SAMPLE).unwrap();
    Validator::new().assert_valid(&seed, "tests/fixtures/seed_report.json");
    let written = serde_json::to_value(seed_report()).unwrap();
    Validator::new().assert_valid(&written, "the seed re-serialised");
    // Version 1 of the envelope (no recovered / after_unclean_stop) still deserialises, with
    // both flags false; the version 2 schema refuses it, as it should.
    let mut v1 = seed.clone();
    v1["report_version"] = json!(1);
    let object = v1.as_object_mut().unwrap();
    object.remove("recovered");
    object.remove("after_unclean_stop");
    Validator::new().assert_invalid(&v1, "a version 1 report against the version 2 schema");
    let read: Report = serde_json::from_value(v1).expect("a version 1 report still reads");
    assert!(!read.recovered && !read.after_unclean_stop);
}

#[test]
fn a_report_of_empty_windows_matches_the_schema() {
    let value = serde_json::to_value(empty_windows()).unwrap();
    assert_eq!(
        value["data"]["usage"]["concurrent_clients"],
        json!({"min": 0, "max": 0, "mean": 0.0, "median": 0, "mode": null})
    );
    Validator::new().assert_valid(&value, "a report of empty windows");
}

#[test]
fn drift_the_schema_declares_exactly_the_properties_a_report_serialises() {
    let full = serde_json::to_value(fully_populated()).unwrap();
    assert_eq!(
        paths_with_null(&full),
        BTreeSet::new(),
        "every Option is set"
    );
    Validator::new().assert_valid(&full, "a fully populated report");

    let sent = value_paths(&full);
    let declared: BTreeSet<String> = schema_properties(&schema()).into_keys().collect();
    let missing_from_schema: Vec<_> = sent.difference(&declared).collect();
    let missing_from_types: Vec<_> = declared.difference(&sent).collect();
    assert!(
        missing_from_schema.is_empty() && missing_from_types.is_empty(),
        "the schema and the Rust types drifted apart:\n  sent but not in the schema: \
         {missing_from_schema:?}\n  in the schema but never sent: {missing_from_types:?}"
    );
}

#[test]
fn drift_nullable_properties_are_exactly_the_option_fields() {
    // Serialised with every Option None, the nulls are where the types allow them.
    let option_fields = paths_with_null(&serde_json::to_value(empty_windows()).unwrap());
    let root = schema();
    let nullable: BTreeSet<String> = schema_properties(&root)
        .into_iter()
        .filter(|(_, (subschema, _))| schema_type_allows_null(subschema))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(option_fields, nullable);
}

#[test]
fn drift_every_schema_object_is_closed_requires_all_its_properties_and_describes_them() {
    let root = schema();
    assert_eq!(
        root["$schema"],
        json!("https://json-schema.org/draft/2020-12/schema")
    );
    assert_eq!(
        root["properties"]["report_version"]["const"],
        json!(REPORT_VERSION)
    );

    let mut objects = Vec::new();
    schema_objects(&root, "", &mut objects);
    assert!(
        objects.len() >= 6,
        "root, data, environment, os, resources, usage, summary"
    );
    for (at, object) in &objects {
        let at = if at.is_empty() { "the root" } else { at };
        assert_eq!(
            object["additionalProperties"],
            json!(false),
            "{at} is not closed"
        );
        let properties: BTreeSet<&str> = object["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{at} lists its properties"))
            .keys()
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> = object["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{at} has no required list"))
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(
            required, properties,
            "{at} must require exactly its properties"
        );
    }
    for (path, (_, declared)) in schema_properties(&root) {
        let description = declared["description"].as_str().unwrap_or_default();
        assert!(
            description.len() > 10,
            "{path} has no description of its meaning and unit"
        );
    }
}

#[test]
fn drift_an_extra_or_a_missing_property_anywhere_is_rejected() {
    let validator = Validator::new();
    let full = serde_json::to_value(fully_populated()).unwrap();

    for at in object_paths(&full) {
        let mut extra = full.clone();
        extra
            .pointer_mut(&at)
            .and_then(Value::as_object_mut)
            .unwrap()
            .insert("hostname".into(), json!("db-1.internal"));
        validator.assert_invalid(&extra, &format!("an extra property in {at:?}"));
        // The types are readers: they accept a later release's added field and keep it, so
        // that a report read and written again loses nothing (the schema describes exactly
        // what this version sends, so it stays closed).
        let read: Report = serde_json::from_value(extra.clone())
            .unwrap_or_else(|e| panic!("Report refused an extra property in {at:?}: {e}"));
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            extra,
            "Report lost an extra property in {at:?}"
        );
    }

    let mut absent_but_read_by_serde = BTreeSet::new();
    for path in value_paths(&full) {
        let (parent, key) = path.rsplit_once('/').unwrap();
        let mut missing = full.clone();
        missing
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove(key);
        validator.assert_invalid(&missing, &format!("a report without {path}"));
        if serde_json::from_value::<Report>(missing).is_ok() {
            absent_but_read_by_serde.insert(path);
        }
    }
    // The ways the types are laxer than the schema: serde reads an absent Option field as
    // None, and the two flags version 2 added as false (so version 1 reports still read). The
    // sender always writes every field, so what is sent is unaffected.
    let mut laxer = paths_with_null(&serde_json::to_value(empty_windows()).unwrap());
    laxer.extend(["/recovered".to_owned(), "/after_unclean_stop".to_owned()]);
    // And the sections a report below full leaves out (version 3) as zeros, with their
    // level saying so; a full-level report always has them.
    laxer.extend(["/data/usage".to_owned(), "/data/resources".to_owned()]);
    assert_eq!(absent_but_read_by_serde, laxer);
}

#[test]
fn wrong_types_and_out_of_range_values_are_rejected() {
    let validator = Validator::new();
    let full = serde_json::to_value(fully_populated()).unwrap();
    let cases: &[(&str, Value, &str)] = &[
        ("/data/environment/cores", json!("8"), "a count as a string"),
        ("/dropped_events", json!(-1), "a negative count"),
        (
            "/data/usage/initial_syncs",
            json!(1.5),
            "a fractional count",
        ),
        (
            "/data/usage/concurrent_clients/min",
            json!(-2),
            "a negative summary min",
        ),
        (
            "/data/usage/concurrent_clients/median",
            json!(2.25),
            "a median off the half grid",
        ),
        (
            "/data/usage/concurrent_clients/mean",
            json!(-0.5),
            "a negative mean",
        ),
        (
            "/data/usage/concurrent_clients/mode",
            json!("3"),
            "a mode as a string",
        ),
        (
            "/data/resources/used_memory",
            json!(null),
            "a summary as null",
        ),
        (
            "/data/environment/pg_version",
            json!(16),
            "a version as a number",
        ),
        (
            "/data/environment/pg_version",
            json!("16/../etc"),
            "a version with a slash",
        ),
        ("/report_version", json!(1), "a different report version"),
        ("/recovered", json!("yes"), "a flag as a string"),
        ("/after_unclean_stop", json!(null), "a flag as null"),
        (
            "/report_id",
            json!("not-a-uuid"),
            "a report id that is no UUID",
        ),
        (
            "/data/environment/electric_cluster_uuid",
            json!("a1336abd-804c-4d0c-a06a"),
            "a truncated cluster UUID",
        ),
        (
            "/timestamp",
            json!("yesterday"),
            "a timestamp that is no date-time",
        ),
        (
            "/data/resources/oldest_wal_time",
            json!("2026-13-40T25:00:00Z"),
            "an impossible date-time",
        ),
        (
            "/data/environment/electric_instance_id",
            json!(""),
            "an empty instance id",
        ),
    ];
    for (path, bad, what) in cases {
        let mut report = full.clone();
        *report.pointer_mut(path).unwrap() = bad.clone();
        validator.assert_invalid(&report, what);
    }
    // The base report is valid, so each rejection above is the one change's doing.
    validator.assert_valid(&full, "the unchanged report");
}

/// A report as a version 1 build wrote it into its outbox, `<outbox>/<seq>-<id>.json`: the
/// report's compact JSON in field order, `report_version: 1`, without `recovered` and
/// `after_unclean_stop` (see the version 1 sender's `write`: `serde_json::to_vec(&report)`).
fn as_version_1(report: &Report) -> Vec<u8> {
    let mut report = report.clone();
    report.recovered = false;
    report.after_unclean_stop = false;
    report.report_version = 2;
    let text = serde_json::to_string(&report).unwrap();
    let v1 = text
        .replacen("\"report_version\":2,", "\"report_version\":1,", 1)
        .replacen("\"recovered\":false,\"after_unclean_stop\":false,", "", 1);
    assert!(!v1.contains("recovered") && v1.contains("\"report_version\":1,"));
    v1.into_bytes()
}

#[actix_rt::test]
async fn a_version_1_outbox_left_by_an_older_build_is_delivered_as_version_2() {
    let storage = tempfile::tempdir().unwrap();
    let outbox = outbox_dir(storage.path());
    std::fs::create_dir_all(&outbox).unwrap();
    let mut left = Vec::new();
    for (seq, ops) in [(0u64, 957u64), (1, 12)] {
        let mut report = fully_populated();
        report.data.usage.operations_from_pg = ops;
        report.dropped_reports = 0;
        let bytes = as_version_1(&report);
        let name = format!("{seq:020}-{}.json", report.report_id);
        std::fs::write(outbox.join(name), bytes).unwrap();
        left.push(report);
    }
    let receiver = Receiver::start();
    // One transient failure first: the upgraded bytes are the report's bytes on every try.
    receiver.script([crate::common::Answer::status(503)]);
    let config = TelemetryConfig::builder()
        .url(&receiver.url)
        .storage_dir(storage.path())
        .retry_initial_backoff(Duration::from_millis(20))
        .retry_max_backoff(Duration::from_millis(50))
        .build()
        .unwrap();
    let arbiter = actix::Arbiter::new().handle();
    let _sender = Sender::start_in_arbiter(&arbiter, move |_| Sender::new(&config));
    assert!(
        eventually(Duration::from_secs(10), || crate::common::accepted(
            &receiver.received()
        )
        .len()
            == 2)
        .await
    );
    let received = receiver.received();
    assert_eq!(
        received[0].body, received[1].body,
        "the same bytes on the retry"
    );
    let validator = Validator::new();
    let delivered = crate::common::accepted(&received);
    for (sent, (was, raw)) in delivered.iter().zip(left.iter().zip(&received[1..])) {
        let value: Value = serde_json::from_slice(&raw.body).unwrap();
        validator.assert_valid(&value, "an upgraded version 1 report");
        assert_eq!(sent.report_version, 2);
        assert!(!sent.recovered && !sent.after_unclean_stop);
        let mut expected = was.clone();
        expected.recovered = false;
        expected.after_unclean_stop = false;
        assert_eq!(*sent, expected, "every figure intact, floats included");
    }
    assert_eq!(delivered[0].data.usage.operations_from_pg, 957);
    arbiter.stop();
    receiver.stop().await;
}
