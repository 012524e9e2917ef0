//! The example service's consent flags, run as the real binary: `--print-dictionary` prints
//! every field and starts nothing; `--opt-in --consent-after` sends only what was recorded
//! after the consent, at the consent's level; a level that is not one is refused by name.

use std::process::Command;

fn service() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_service"));
    for name in [
        "ELECTRIC_TELEMETRY",
        "DO_NOT_TRACK",
        "ELECTRIC_TELEMETRY_URL",
        "ELECTRIC_TELEMETRY_LEVEL",
    ] {
        c.env_remove(name);
    }
    c
}

#[test]
fn print_dictionary_lists_every_field_and_starts_nothing() {
    let storage = tempfile::tempdir().unwrap();
    let out = service()
        .arg("--print-dictionary")
        .env("ELECTRIC_STORAGE_DIR", storage.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim_end(),
        electric_telemetry_report::dictionary_markdown().trim_end()
    );
    for f in electric_telemetry_report::fields() {
        assert!(text.contains(&format!("| `{}` |", f.path)), "{}", f.path);
    }
    assert!(out.stderr.is_empty(), "no log line: nothing started");
    assert_eq!(std::fs::read_dir(storage.path()).unwrap().count(), 0);
}

#[test]
fn an_opt_in_run_sends_what_follows_the_consent_at_its_level() {
    let storage = tempfile::tempdir().unwrap();
    let out = service()
        .args([
            "--local-receiver",
            "--show-json",
            "--duration",
            "4s",
            "--clients",
            "3",
            "--opt-in",
            "--consent-after",
            "1500ms",
            "--consent-level",
            "basic",
            "--status",
        ])
        .env("ELECTRIC_STORAGE_DIR", storage.path())
        .env("ELECTRIC_TELEMETRY_FIRST_REPORT_IN", "1s")
        .env("ELECTRIC_TELEMETRY_INTERVAL", "1s")
        .env("ELECTRIC_TELEMETRY_SPREAD", "off")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{logs}");
    assert!(
        logs.contains("telemetry is off until an operator consents"),
        "{logs}"
    );
    assert!(text.contains("level: basic (decided by consent)"), "{text}");
    assert!(text.contains("consent: given at"), "{text}");
    assert!(text.contains("totals match: true"), "{text}");
    // Every report received is a basic one: no usage, no resources.
    let reports: Vec<serde_json::Value> = serde_json::Deserializer::from_str(
        &text
            .lines()
            .skip_while(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .into_iter::<serde_json::Value>()
    .filter_map(Result::ok)
    .collect();
    assert!(!reports.is_empty(), "{text}");
    for r in &reports {
        assert_eq!(r["level"], "basic", "{r}");
        assert!(r["data"].get("usage").is_none() && r["data"].get("resources").is_none());
    }
    let record = std::fs::read_to_string(storage.path().join("telemetry/consent.json")).unwrap();
    assert!(record.contains("\"level\":\"basic\""), "{record}");
}

#[test]
fn a_consent_level_that_is_not_one_is_refused_by_name() {
    let out = service()
        .args(["--consent-after", "1s", "--consent-level", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--consent-level") && err.contains("basic, usage or full"),
        "{err}"
    );
}

/// A run at `basic`, then one at the default `full` on the same storage dir: the second
/// start-up line names the sections the last delivered report did not have, and so does the
/// preview.
#[test]
fn a_raised_level_names_the_new_fields_at_start_and_in_the_preview() {
    let storage = tempfile::tempdir().unwrap();
    let run = |level: Option<&str>| {
        let mut c = service();
        c.args(["--local-receiver", "--duration", "1s", "--print-report"])
            .env("ELECTRIC_STORAGE_DIR", storage.path())
            .env("ELECTRIC_TELEMETRY_FIRST_REPORT_IN", "1h");
        if let Some(level) = level {
            c.env("ELECTRIC_TELEMETRY_LEVEL", level);
        }
        let out = c.output().unwrap();
        assert!(out.status.success());
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (_, first) = run(Some("basic"));
    assert!(!first.contains("fields_new_since_last_report"), "{first}");
    let (preview, second) = run(None);
    assert!(
        second.contains("fields_new_since_last_report=\"data/resources, data/usage\""),
        "{second}"
    );
    assert!(
        preview.contains(
            "new in this preview (the last delivered report did not have them): \
             data/resources, data/usage"
        ),
        "{preview}"
    );
}
