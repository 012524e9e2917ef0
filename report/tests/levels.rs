//! Levels and the field dictionary: every field's level, revision and source come from the
//! newest schema, and a report below full carries nothing above its level.

use electric_telemetry_report::{
    dictionary_markdown, fields, fields_after, level_of, Level, Report, LEVELLED_REPORT_SCHEMA,
    LEVELLED_REPORT_VERSION, REPORT_SCHEMA, REPORT_VERSION, SCHEMA_REVISION,
};
use serde_json::{json, Value};

fn seed() -> Report {
    serde_json::from_str(include_str!("../../tests/fixtures/seed_report.json")).unwrap()
}

fn strict(schema: &str) -> (boon::Schemas, boon::SchemaIndex) {
    let mut compiler = boon::Compiler::new();
    compiler.enable_format_assertions();
    let mut schemas = boon::Schemas::new();
    compiler
        .add_resource("urn:strict", serde_json::from_str::<Value>(schema).unwrap())
        .unwrap();
    let index = compiler.compile("urn:strict", &mut schemas).unwrap();
    (schemas, index)
}

/// Every property path of a schema, parents before children (summaries are one field).
fn paths(node: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            let path = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}/{name}")
            };
            out.push(path.clone());
            paths(p, &path, out);
        }
    }
}

#[test]
fn the_dictionary_has_every_field_of_every_schema_once_with_a_source() {
    let mut newest = Vec::new();
    paths(
        &serde_json::from_str(LEVELLED_REPORT_SCHEMA).unwrap(),
        "",
        &mut newest,
    );
    let listed: Vec<&str> = fields().iter().map(|f| f.path.as_str()).collect();
    assert_eq!(listed, newest);
    let mut v2 = Vec::new();
    paths(&serde_json::from_str(REPORT_SCHEMA).unwrap(), "", &mut v2);
    for path in &v2 {
        let f = fields().iter().find(|f| &f.path == path).expect(path);
        assert_eq!(f.since, 2, "{path} was in version 2");
    }
    for f in fields() {
        assert!(!f.source.is_empty(), "{} says what feeds it", f.path);
        assert!(!f.description.is_empty(), "{} says what it is", f.path);
        assert!(f.since <= SCHEMA_REVISION, "{}", f.path);
    }
    assert_eq!(
        fields().iter().map(|f| f.since).max(),
        Some(SCHEMA_REVISION)
    );
    let table = dictionary_markdown();
    assert_eq!(table.lines().count(), fields().len() + 2);
    assert!(table
        .contains("| `data/usage/operations_from_pg` | integer | usage | 2 | ReplicatedFromPg |"));
}

#[test]
fn each_section_has_its_level_and_fields_inherit_it() {
    assert_eq!(level_of("report_id"), Some(Level::Basic));
    assert_eq!(level_of("data/environment/ram"), Some(Level::Basic));
    assert_eq!(level_of("data/usage"), Some(Level::Usage));
    assert_eq!(level_of("data/usage/distinct_clients"), Some(Level::Usage));
    assert_eq!(level_of("data/resources/uptime"), Some(Level::Full));
    assert_eq!(level_of("nowhere"), None);
    let after: Vec<&str> = fields_after(2).map(|f| f.path.as_str()).collect();
    assert_eq!(after, ["level"]);
    assert_eq!(fields_after(SCHEMA_REVISION).count(), 0);
}

#[test]
fn levels_parse_in_any_case_and_a_bad_one_says_what_is_accepted() {
    assert_eq!(" Usage ".parse::<Level>(), Ok(Level::Usage));
    assert_eq!("FULL".parse::<Level>(), Ok(Level::Full));
    let err = "lots".parse::<Level>().unwrap_err();
    assert!(
        err.contains("\"lots\"") && err.contains("basic, usage or full"),
        "{err}"
    );
    assert!(Level::Basic < Level::Usage && Level::Usage < Level::Full);
}

#[test]
fn a_full_report_is_still_version_2_byte_for_byte() {
    let report = seed();
    let before = serde_json::to_string(&report).unwrap();
    let full = report.at_level(Level::Full);
    assert_eq!(full.report_version, REPORT_VERSION);
    assert_eq!(full.level, None);
    assert_eq!(serde_json::to_string(&full).unwrap(), before);
    let (schemas, v2) = strict(REPORT_SCHEMA);
    assert!(schemas
        .validate(&serde_json::to_value(&full).unwrap(), v2)
        .is_ok());
}

#[test]
fn a_lower_report_leaves_out_what_is_above_its_level_and_reads_back_the_same() {
    let (schemas, v3) = strict(LEVELLED_REPORT_SCHEMA);
    for (level, has_usage) in [(Level::Basic, false), (Level::Usage, true)] {
        let report = seed().at_level(level);
        let wire = serde_json::to_value(&report).unwrap();
        assert_eq!(wire["report_version"], json!(LEVELLED_REPORT_VERSION));
        assert_eq!(wire["level"], json!(level.as_str()));
        assert_eq!(wire["data"].get("usage").is_some(), has_usage, "{level}");
        assert!(wire["data"].get("resources").is_none(), "{level}");
        assert!(wire["data"]["environment"].is_object());
        if let Err(e) = schemas.validate(&wire, v3) {
            panic!("{level}: {e}");
        }
        let back: Report = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(back, report);
        assert_eq!(serde_json::to_value(&back).unwrap(), wire);
    }
    // A version 3 report is not a version 2 one, and version 3 needs its level.
    let mut basic = serde_json::to_value(seed().at_level(Level::Basic)).unwrap();
    let (schemas2, v2) = strict(REPORT_SCHEMA);
    assert!(schemas2.validate(&basic, v2).is_err());
    basic.as_object_mut().unwrap().remove("level");
    assert!(schemas.validate(&basic, v3).is_err());
}

/// docs/report.md holds the dictionary as `dictionary_markdown` renders it, between its
/// markers; `UPDATE_DICTIONARY=1` rewrites it.
#[test]
fn the_dictionary_in_docs_report_md_is_current() {
    const START: &str = "<!-- dictionary:start -->\n";
    const END: &str = "<!-- dictionary:end -->";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/report.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (before, rest) = doc.split_once(START).expect("the start marker");
    let (table, after) = rest.split_once(END).expect("the end marker");
    let current = dictionary_markdown();
    if table != current && std::env::var_os("UPDATE_DICTIONARY").is_some() {
        std::fs::write(path, format!("{before}{START}{current}{END}{after}")).unwrap();
        return;
    }
    assert!(
        table == current,
        "docs/report.md's dictionary is stale: run UPDATE_DICTIONARY=1 cargo test -p \
         electric-telemetry-report --test levels"
    );
}

/// A tripwire for the next field: no payload field is newer than any consent that can exist
/// today (consents are recorded at revision 3), so none is withheld from a report yet. The
/// first field added in a later revision must also be left out of reports whose consent is
/// older (the reporter names such fields already: `Consent::fields_waiting`, the start-up
/// line, `status()`); until then this fails.
#[test]
fn no_payload_field_is_newer_than_the_first_consent_revision() {
    let newer: Vec<&str> = fields_after(3)
        .filter(|f| f.path.starts_with("data/"))
        .map(|f| f.path.as_str())
        .collect();
    assert!(
        newer.is_empty(),
        "{newer:?} came after revision 3: withhold them from reports under an older consent \
         (the report builder, src/report/builder.rs), then relax this test"
    );
}
