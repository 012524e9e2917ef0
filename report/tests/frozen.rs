//! The published schemas are frozen, and the types read what a later release adds.

use electric_telemetry_report::{
    reader_schema, Report, LEVELLED_REPORT_SCHEMA, LEVELLED_REPORT_VERSION, REPORT_SCHEMA, SCHEMAS,
};
use serde_json::{json, Value};

/// FNV-1a, 64 bits: enough to notice any change to a file's bytes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Each published schema as it was published: (version, length, FNV-1a of its bytes). A
/// change to a published file fails here; a new version is a new file and a new line.
const PUBLISHED: &[(u32, usize, u64)] = &[
    (2, 13_531, 0x7bf5_469d_bc35_823e),
    (3, 18_466, 0x4448_27c8_a24c_2080),
];

#[test]
fn a_published_schema_never_changes() {
    assert_eq!(SCHEMAS.len(), PUBLISHED.len(), "a schema added or removed");
    for ((version, text), (v, len, hash)) in SCHEMAS.iter().zip(PUBLISHED) {
        assert_eq!(version, v);
        assert_eq!(
            (text.len(), fnv1a(text.as_bytes())),
            (*len, *hash),
            "schemas/report-v{version}.json changed after it was published: publish a new \
             version (a new file) instead"
        );
        let schema: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            schema["properties"]["report_version"]["const"],
            json!(version),
            "report-v{version}.json describes version {version}"
        );
    }
    assert_eq!(SCHEMAS.first().map(|(_, s)| *s), Some(REPORT_SCHEMA));
    assert_eq!(
        SCHEMAS.last().map(|(v, _)| *v),
        Some(LEVELLED_REPORT_VERSION)
    );
    assert_eq!(
        SCHEMAS.last().map(|(_, s)| *s),
        Some(LEVELLED_REPORT_SCHEMA)
    );
}

#[test]
fn the_reader_schema_opens_every_object_and_changes_nothing_else() {
    let strict: Value = serde_json::from_str(REPORT_SCHEMA).unwrap();
    let open = reader_schema(REPORT_SCHEMA).unwrap();
    fn closed(v: &Value) -> usize {
        match v {
            Value::Object(m) => {
                usize::from(m.get("additionalProperties") == Some(&json!(false)))
                    + m.values().map(closed).sum::<usize>()
            }
            Value::Array(a) => a.iter().map(closed).sum(),
            _ => 0,
        }
    }
    assert!(
        closed(&strict) > 5,
        "the published schema closes its objects"
    );
    assert_eq!(closed(&open), 0);
    fn without_closing(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, v)| !(k.as_str() == "additionalProperties" && **v == json!(false)))
                    .map(|(k, v)| (k.clone(), without_closing(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(without_closing).collect()),
            other => other.clone(),
        }
    }
    assert_eq!(open, without_closing(&strict));
    assert_eq!(reader_schema("not json"), None);
}

/// A version 2 report as the seed sends it, with fields from a later release in every object.
fn later_report() -> Value {
    let mut v: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/seed_report.json")).unwrap();
    v["sent_by"] = json!("a later release");
    v["data"]["deployment"] = json!({"kind": "container"});
    v["data"]["environment"]["cpu_model"] = json!("EPYC");
    v["data"]["environment"]["os"]["version"] = json!("6.1");
    v["data"]["resources"]["open_files"] = json!(12);
    v["data"]["resources"]["used_memory"]["p99"] = json!(64_262_224);
    v["data"]["usage"]["shapes_active"] = json!(3);
    v
}

#[test]
fn a_report_with_a_later_releases_fields_is_read_and_written_back_whole() {
    let later = later_report();
    let report: Report = serde_json::from_value(later.clone()).unwrap();
    assert_eq!(report.data.resources.wal_transactions, 2);
    let written = serde_json::to_value(&report).unwrap();
    for path in [
        "/sent_by",
        "/data/deployment",
        "/data/environment/cpu_model",
        "/data/environment/os/version",
        "/data/resources/open_files",
        "/data/resources/used_memory/p99",
        "/data/usage/shapes_active",
    ] {
        assert_eq!(written.pointer(path), later.pointer(path), "{path} kept");
    }
    // Read as a receiver reads it, the later report is valid against the frozen schema; read
    // strictly, as this version's reporter is tested, it is not.
    let mut compiler = boon::Compiler::new();
    compiler.enable_format_assertions();
    let mut schemas = boon::Schemas::new();
    compiler
        .add_resource("urn:open", reader_schema(REPORT_SCHEMA).unwrap())
        .unwrap();
    compiler
        .add_resource("urn:strict", serde_json::from_str(REPORT_SCHEMA).unwrap())
        .unwrap();
    let open = compiler.compile("urn:open", &mut schemas).unwrap();
    let strict = compiler.compile("urn:strict", &mut schemas).unwrap();
    assert!(schemas.validate(&later, open).is_ok());
    assert!(schemas.validate(&later, strict).is_err());
}

#[test]
fn a_known_field_of_the_wrong_type_is_still_refused() {
    let mut bad = later_report();
    bad["data"]["usage"]["initial_syncs"] = json!("9");
    assert!(serde_json::from_value::<Report>(bad).is_err());
}
