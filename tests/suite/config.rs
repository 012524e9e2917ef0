//! Configuration: every accepted value and every error, read through a lookup so that no test
//! touches the process environment.

use std::collections::HashMap;
use std::time::Duration;

use electric_telemetry::internals::*;
use electric_telemetry::{ConfigError, TelemetryConfig, TelemetryMode};

fn from(vars: &[(&str, &str)]) -> Result<TelemetryConfig, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TelemetryConfig::builder()
        .with_env_from(|name| vars.get(name).cloned())?
        .build()
}

#[test]
fn unset_means_enabled_with_the_seed_defaults() {
    let c = from(&[]).unwrap();
    assert!(c.enabled());
    assert_eq!(c.url(), "https://checkpoint.electric-sql.com");
    assert_eq!(c.interval(), Duration::from_secs(4 * 3600));
    assert_eq!(c.first_report_in(), Duration::from_secs(5 * 60));
    assert_eq!(c.instance_id(), None);
}

#[test]
fn every_disabling_value_disables_in_any_letter_case() {
    for v in ["0", "f", "false", "disable", "disabled", "n", "no", "off"] {
        for v in [v.to_owned(), v.to_uppercase(), format!(" {v} ")] {
            let c = from(&[(ENV_TELEMETRY, &v)]).unwrap();
            assert!(!c.enabled(), "{v:?} disables");
        }
    }
    assert!(!from(&[(ENV_TELEMETRY, "Disabled")]).unwrap().enabled());
}

#[test]
fn every_enabling_value_enables_in_any_letter_case() {
    for v in ["1", "t", "true", "enable", "enabled", "y", "yes", "on"] {
        for v in [v.to_owned(), v.to_uppercase()] {
            assert!(from(&[(ENV_TELEMETRY, &v)]).unwrap().enabled(), "{v:?}");
        }
    }
}

#[test]
fn an_unknown_switch_value_is_an_error_that_names_the_variable_and_lists_values() {
    for v in ["maybe", "2", "disabledd", "nope"] {
        let err = from(&[(ENV_TELEMETRY, v)]).unwrap_err();
        assert_eq!(err.setting, "ELECTRIC_TELEMETRY");
        let text = err.to_string();
        assert!(text.starts_with("ELECTRIC_TELEMETRY="), "{text}");
        assert!(text.contains(v), "{text}");
        assert!(
            text.contains("0 f false disable disabled n no off"),
            "{text}"
        );
        assert!(text.contains("1 t true enable enabled y yes on"), "{text}");
    }
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let c = from(&[(ENV_TELEMETRY, ""), (ENV_URL, "  "), (ENV_INTERVAL, "")]).unwrap();
    assert!(c.enabled());
    assert_eq!(c.url(), DEFAULT_URL);
}

#[test]
fn human_durations_are_accepted() {
    let c = from(&[(ENV_INTERVAL, "30s"), (ENV_FIRST_REPORT_IN, "5m")]).unwrap();
    assert_eq!(c.interval(), Duration::from_secs(30));
    assert_eq!(c.first_report_in(), Duration::from_secs(300));
    let c = from(&[(ENV_INTERVAL, "1h 30m"), (ENV_FIRST_REPORT_IN, "0s")]).unwrap();
    assert_eq!(c.interval(), Duration::from_secs(5400));
    assert_eq!(c.first_report_in(), Duration::ZERO);
    let c = from(&[(ENV_INTERVAL, "4h")]).unwrap();
    assert_eq!(c.interval(), Duration::from_secs(4 * 3600));
}

#[test]
fn bad_durations_are_errors_that_name_the_variable() {
    for (var, value) in [
        (ENV_INTERVAL, "soon"),
        (ENV_INTERVAL, "30"),
        (ENV_INTERVAL, "0s"),
        (ENV_INTERVAL, "500ms"),
        (ENV_INTERVAL, "400days"),
        (ENV_INTERVAL, "-5m"),
        (ENV_FIRST_REPORT_IN, "later"),
        (ENV_FIRST_REPORT_IN, "366days"),
    ] {
        let err = from(&[(var, value)]).unwrap_err();
        assert_eq!(err.setting, var, "{value}");
        let text = err.to_string();
        assert!(text.starts_with(var), "{text}");
        assert!(text.contains("such as 30s, 5m, 4h"), "{text}");
    }
}

#[test]
fn http_and_https_urls_are_accepted() {
    for url in [
        "http://127.0.0.1:3000/checkpoint",
        "https://telemetry.example.com",
        "HTTPS://telemetry.example.com/a?b=c",
    ] {
        assert_eq!(from(&[(ENV_URL, url)]).unwrap().url(), url);
    }
}

#[test]
fn other_urls_are_errors_that_name_the_variable() {
    for url in [
        "ftp://example.com",
        "checkpoint.electric-sql.com",
        "/just/a/path",
        "http://",
        "https://exa mple.com",
        "file:///etc/passwd",
    ] {
        let err = from(&[(ENV_URL, url)]).unwrap_err();
        assert_eq!(err.setting, "ELECTRIC_TELEMETRY_URL", "{url}");
        assert!(err.to_string().contains("http:// or https://"), "{err}");
    }
}

#[test]
fn instance_id_and_storage_dir_are_read() {
    let c = from(&[(ENV_INSTANCE_ID, "node-a"), (ENV_STORAGE_DIR, "/var/lib/x")]).unwrap();
    assert_eq!(c.instance_id(), Some("node-a"));
    assert_eq!(c.storage_dir(), std::path::Path::new("/var/lib/x"));
    for bad in ["has space", &"x".repeat(65), "naïve"] {
        let err = from(&[(ENV_INSTANCE_ID, bad)]).unwrap_err();
        assert_eq!(err.setting, "ELECTRIC_INSTANCE_ID");
    }
}

#[test]
fn the_environment_overrides_the_builder() {
    let vars: HashMap<&str, &str> = [(ENV_TELEMETRY, "off"), (ENV_INTERVAL, "1m")].into();
    let c = TelemetryConfig::builder()
        .interval(Duration::from_secs(7))
        .electric_version("9.9.9")
        .with_env_from(|k| vars.get(k).map(|v| v.to_string()))
        .unwrap()
        .build()
        .unwrap();
    assert!(!c.enabled());
    assert_eq!(c.interval(), Duration::from_secs(60));
    assert_eq!(c.electric_version(), "9.9.9");
}

#[test]
fn builder_values_are_checked_too() {
    let err = TelemetryConfig::builder()
        .interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "interval");
    let err = TelemetryConfig::builder()
        .shutdown_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "shutdown_timeout");
    let err = TelemetryConfig::builder()
        .electric_version("")
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "electric_version");
    let err = TelemetryConfig::builder()
        .url("ws://x")
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "ELECTRIC_TELEMETRY_URL");
}

#[test]
fn a_long_bad_value_is_shown_cut_short() {
    let long = "z".repeat(500);
    let err = from(&[(ENV_TELEMETRY, &long)]).unwrap_err();
    // Its first 80 characters and an ellipsis, in the field and in what the error shows.
    let cut = format!("{}…", "z".repeat(80));
    assert_eq!(err.value, cut);
    let shown = err.to_string();
    assert!(shown.contains(&format!("{cut:?}")), "{shown}");
    assert!(!shown.contains(&"z".repeat(81)), "{shown}");
}

#[test]
fn do_not_track_disables_unless_empty_0_or_false() {
    for v in ["1", "true", "yes", "TRUE", "anything"] {
        let c = from(&[(ENV_DO_NOT_TRACK, v)]).unwrap();
        assert!(!c.enabled(), "DO_NOT_TRACK={v:?} disables");
        assert_eq!(c.mode(), TelemetryMode::Disabled);
        assert_eq!(c.decided_by(), format!("DO_NOT_TRACK={v}"));
    }
    for v in ["", "0", "false", "FALSE", " 0 "] {
        let c = from(&[(ENV_DO_NOT_TRACK, v)]).unwrap();
        assert!(c.enabled(), "DO_NOT_TRACK={v:?} leaves telemetry on");
        assert_eq!(c.decided_by(), "default");
    }
}

#[test]
fn when_settings_disagree_the_one_that_turns_telemetry_off_wins() {
    let c = from(&[(ENV_TELEMETRY, "on"), (ENV_DO_NOT_TRACK, "1")]).unwrap();
    assert_eq!(c.mode(), TelemetryMode::Disabled);
    assert_eq!(c.decided_by(), "DO_NOT_TRACK=1");
    let c = from(&[(ENV_TELEMETRY, "log"), (ENV_DO_NOT_TRACK, "1")]).unwrap();
    assert_eq!(c.mode(), TelemetryMode::Disabled);
    let c = from(&[(ENV_TELEMETRY, "off"), (ENV_DO_NOT_TRACK, "0")]).unwrap();
    assert_eq!(c.mode(), TelemetryMode::Disabled);
    assert_eq!(c.decided_by(), "ELECTRIC_TELEMETRY=off");
    // Code that turned telemetry off is not overridden by an operator's "on", nor the reverse.
    let on: HashMap<&str, &str> = [(ENV_TELEMETRY, "true")].into();
    let c = TelemetryConfig::builder()
        .enabled(false)
        .with_env_from(|k| on.get(k).map(|v| v.to_string()))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(c.mode(), TelemetryMode::Disabled);
    assert_eq!(c.decided_by(), "configuration");
    let off: HashMap<&str, &str> = [(ENV_TELEMETRY, "no")].into();
    let c = TelemetryConfig::builder()
        .with_env_from(|k| off.get(k).map(|v| v.to_string()))
        .unwrap()
        .enabled(true)
        .build()
        .unwrap();
    assert_eq!(c.mode(), TelemetryMode::Disabled);
}

#[test]
fn log_selects_log_only_mode_in_any_letter_case() {
    for v in ["log", "LOG", " Log "] {
        let c = from(&[(ENV_TELEMETRY, v)]).unwrap();
        assert_eq!(c.mode(), TelemetryMode::LogOnly);
        assert!(c.enabled(), "log-only still collects");
        assert_eq!(c.decided_by(), format!("ELECTRIC_TELEMETRY={}", v.trim()));
    }
    // Log-only is more private than sending, so it wins over "on".
    let on: HashMap<&str, &str> = [(ENV_TELEMETRY, "on")].into();
    let c = TelemetryConfig::builder()
        .mode(TelemetryMode::LogOnly)
        .with_env_from(|k| on.get(k).map(|v| v.to_string()))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(c.mode(), TelemetryMode::LogOnly);
    let err = from(&[(ENV_TELEMETRY, "logs")]).unwrap_err();
    assert!(err.to_string().contains("log (log-only"), "{err}");
}

#[test]
fn audit_log_and_ca_file_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let c = from(&[(ENV_AUDIT_LOG, audit.to_str().unwrap())]).unwrap();
    assert_eq!(c.audit_log(), Some(audit.as_path()));
    assert_eq!(c.audit_log_max_bytes(), 1 << 20);
    let err = TelemetryConfig::builder()
        .audit_log_max_bytes(10)
        .build()
        .unwrap_err();
    assert_eq!(err.setting, "audit_log_max_bytes");

    let missing = dir.path().join("missing.pem");
    let err = from(&[(ENV_CA_FILE, missing.to_str().unwrap())]).unwrap_err();
    assert_eq!(err.setting, "ELECTRIC_TELEMETRY_CA_FILE");
    assert!(err.to_string().contains("PEM file"), "{err}");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = from(&[(ENV_CA_FILE, not_pem.to_str().unwrap())]).unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
    // Opted out: the file is not read, so a stale path cannot keep the host from starting.
    let c = from(&[
        (ENV_CA_FILE, missing.to_str().unwrap()),
        (ENV_DO_NOT_TRACK, "1"),
    ])
    .unwrap();
    assert!(!c.enabled());
}

/// A service may log its configuration with `{:?}`: the endpoint URL's query (where a token
/// often rides, and which the logs and errors hide) and the proxy's credentials never show.
#[test]
fn debug_never_shows_the_url_query_or_the_proxy_credentials() {
    let c = from(&[
        (
            "ELECTRIC_TELEMETRY_URL",
            "https://example.test/in?token=S3CRETTOKEN",
        ),
        (
            "ELECTRIC_TELEMETRY_PROXY",
            "http://user:S3CRETPW@127.0.0.1:3128",
        ),
    ])
    .unwrap();
    let shown = format!("{c:?} {:?}", TelemetryConfig::builder());
    assert!(!shown.contains("S3CRETTOKEN"), "{shown}");
    assert!(!shown.contains("S3CRETPW"), "{shown}");
    assert!(
        shown.contains("example.test/in"),
        "still says where: {shown}"
    );
}
