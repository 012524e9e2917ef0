//! Consent and levels, against a real System, real loopback receivers and real files: an
//! opt-in service collects and sends nothing until consent, a consent given through the
//! handle is recorded, starts collecting from then and survives a restart, a withdrawal stops
//! collecting and removes what was not sent, an opt-out wins over every consent, and a report
//! at a level carries nothing above it (and collects nothing above it).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{accepted, env_of, Receiver};
use electric_telemetry::internals::outbox_dir;
use electric_telemetry::*;
use electric_telemetry_report::{LEVELLED_REPORT_SCHEMA, LEVELLED_REPORT_VERSION};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;

fn config(url: &str, storage: &tempfile::TempDir) -> TelemetryConfigBuilder {
    TelemetryConfig::builder()
        .url(url)
        .storage_dir(storage.path())
        .request_timeout(Duration::from_secs(2))
        .shutdown_timeout(Duration::from_secs(3))
        .spread_reports(false)
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn record_everything(telemetry: &Telemetry, ops: u64) {
    telemetry.record(ClientConnected::new("client-1", "user-1"));
    telemetry.record(ReplicatedFromPg::new(1, ops));
    telemetry.record(SubscriptionEstablished::new("client-1", 2));
    telemetry.record(InitialSync::new(vec![10, 20]));
    telemetry.record(PgVersion::new("16.1").unwrap());
    telemetry.record(WalStatus {
        oldest_wal_time: None,
        wal_cache_memory: 77,
        wal_transactions: 3,
    });
    telemetry.add(Counter::OperationsSentToClients, ops);
}

/// Compiles a schema strictly, as this version's reporter is held to it.
fn strict(schema: &str) -> impl Fn(&Value) -> Result<(), String> {
    let mut compiler = boon::Compiler::new();
    compiler.enable_format_assertions();
    compiler
        .add_resource("urn:strict", serde_json::from_str::<Value>(schema).unwrap())
        .unwrap();
    let mut schemas = boon::Schemas::new();
    let index = compiler.compile("urn:strict", &mut schemas).unwrap();
    move |v| schemas.validate(v, index).map_err(|e| format!("{e:#}"))
}

#[actix_rt::test]
async fn opt_in_without_consent_collects_nothing_sends_nothing_and_says_how_to_consent() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let config = config(&receiver.url, &storage)
        .policy(Policy::OptIn)
        .first_report_in(Duration::ZERO)
        .interval(Duration::from_secs(1))
        .build()
        .unwrap();
    // Its start-up line, and that no socket, thread or file is made, are pinned in a process
    // of its own (tests/environment_and_stdout.rs, under strace).
    let telemetry = Telemetry::start(config).unwrap();
    assert!(!telemetry.is_enabled());
    assert!(telemetry.collector().is_none());
    // A consent from a thread outside the System cannot start anything: refused, not a panic,
    // and nothing recorded.
    let elsewhere = telemetry.clone();
    let answer = std::thread::spawn(move || elsewhere.consent(Level::Full))
        .join()
        .expect("no panic");
    assert!(matches!(answer, Err(ConsentError::Start(_))), "{answer:?}");
    let built = AtomicUsize::new(0);
    telemetry.record_with(|| {
        built.fetch_add(1, Relaxed);
        ClientConnected::new("c", "u")
    });
    assert_eq!(built.load(Relaxed), 0, "no id is even hashed");
    record_everything(&telemetry, 5);
    assert!(telemetry.preview().await.is_none());
    // Past a report's due time.
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    assert!(receiver.received().is_empty(), "nothing sent");
    assert_eq!(
        files_under(storage.path()),
        Vec::<String>::new(),
        "nothing written"
    );
    let status = telemetry.status().await;
    assert_eq!(status.policy, Policy::OptIn);
    assert_eq!(status.level, None);
    assert!(status.consent.is_none());
    assert!(status.why.contains("no consent"), "{}", status.why);
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::NotRunning);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_consent_at_run_time_is_recorded_counts_from_then_and_survives_a_restart() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let opt_in = || {
        config(&receiver.url, &storage)
            .policy(Policy::OptIn)
            .first_report_in(Duration::from_secs(3600))
            .interval(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let telemetry = Telemetry::start(opt_in()).unwrap();
    record_everything(&telemetry, 5); // before consent: never sent
    let before = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    telemetry.consent(Level::Usage).unwrap();
    assert!(telemetry.is_enabled());
    let status = telemetry.status().await;
    assert_eq!(status.level, Some(Level::Usage));
    assert!(
        status.why.starts_with("on: consent given at"),
        "{}",
        status.why
    );
    record_everything(&telemetry, 7);

    let record: Value = serde_json::from_slice(
        &std::fs::read(storage.path().join("telemetry/consent.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["decision"], "given");
    assert_eq!(record["level"], "usage");
    assert_eq!(record["revision"], 3);
    assert!(
        record["at"].as_str().unwrap() >= before.as_str(),
        "{record}"
    );

    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let reports = accepted(&receiver.received());
    assert_eq!(reports.len(), 1);
    let body: Value = serde_json::from_slice(&receiver.received()[0].body).unwrap();
    strict(LEVELLED_REPORT_SCHEMA)(&body).unwrap();
    assert_eq!(body["level"], "usage");
    assert_eq!(body["report_version"], LEVELLED_REPORT_VERSION);
    assert!(
        body["data"].get("resources").is_none(),
        "no resources at usage"
    );
    assert_eq!(
        body["data"]["usage"]["operations_from_pg"], 7,
        "only after consent"
    );
    assert_eq!(body["data"]["usage"]["operations_sent_to_clients"], 7);
    assert_eq!(body["data"]["environment"]["pg_version"], "16.1");

    // A restart of the same opt-in service on the same storage dir: the consent holds.
    let again = Telemetry::start(opt_in()).unwrap();
    assert!(again.is_enabled());
    let status = again.status().await;
    assert_eq!(status.level, Some(Level::Usage));
    assert_eq!(status.level_decided_by, "consent");
    assert_eq!(status.consent.as_ref().map(|c| c.level), Some(Level::Usage));
    again.record(ReplicatedFromPg::new(1, 3));
    assert_eq!(again.shutdown().await, ShutdownOutcome::Delivered);
    let reports = accepted(&receiver.received());
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[1].level, Some(Level::Usage));
    assert_eq!(reports[1].data.usage.operations_from_pg, 3);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_withdrawal_stops_collecting_removes_what_was_not_sent_and_is_remembered() {
    // A receiver that refuses everything for now: reports wait in the outbox.
    let receiver = Receiver::start();
    receiver.answer_with(503);
    let storage = tempfile::tempdir().unwrap();
    let opt_in = || {
        config(&receiver.url, &storage)
            .policy(Policy::OptIn)
            .first_report_in(Duration::ZERO)
            .interval(Duration::from_secs(1))
            .retry_initial_backoff(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let telemetry = Telemetry::start(opt_in()).unwrap();
    telemetry.consent(Level::Full).unwrap();
    record_everything(&telemetry, 4);
    let pending = |s: &Option<OutboxStatus>| s.map_or(0, |s| s.pending);
    let mut waited = 0;
    for _ in 0..100 {
        waited = pending(&telemetry.outbox_status().await);
        if waited >= 2 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(waited >= 2, "reports wait in the outbox: {waited}");
    let removed = telemetry.withdraw_consent().await.unwrap();
    assert!(removed >= 2, "{removed}");
    assert!(!telemetry.is_enabled());
    assert!(telemetry.preview().await.is_none());
    let left: Vec<String> = files_under(&outbox_dir(storage.path()))
        .into_iter()
        .filter(|f| f.ends_with(".json"))
        .collect();
    assert!(left.is_empty(), "no report or recovery file left: {left:?}");
    let record: Value = serde_json::from_slice(
        &std::fs::read(storage.path().join("telemetry/consent.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["decision"], "withdrawn");

    // Nothing more is sent, even once the receiver would take it.
    receiver.answer_with(200);
    let tried = receiver.received().len();
    record_everything(&telemetry, 9);
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        tried,
        "nothing sent after the withdrawal"
    );

    // A restart remembers it, under either policy, and says so.
    for policy in [Policy::OptIn, Policy::OptOut] {
        let config = config(&receiver.url, &storage)
            .policy(policy)
            .build()
            .unwrap();
        let again = Telemetry::start(config).unwrap();
        assert!(!again.is_enabled(), "{policy}");
        let why = again.status().await.why;
        assert!(why.starts_with("off: consent withdrawn at"), "{why}");
    }
    // And a new consent turns it back on.
    let again = Telemetry::start(opt_in()).unwrap();
    again.consent(Level::Basic).unwrap();
    assert!(again.is_enabled());
    again.shutdown().await;
    let last = accepted(&receiver.received());
    assert_eq!(last.last().and_then(|r| r.level), Some(Level::Basic));
    receiver.stop().await;
}

#[actix_rt::test]
async fn an_opt_out_wins_over_every_consent_and_writes_nothing() {
    let storage = tempfile::tempdir().unwrap();
    let cases: [&[(&str, &str)]; 3] = [
        &[("DO_NOT_TRACK", "1"), ("ELECTRIC_TELEMETRY", "enabled")],
        &[("ELECTRIC_TELEMETRY", "disabled")],
        &[
            ("ELECTRIC_TELEMETRY", "off"),
            ("ELECTRIC_TELEMETRY_LEVEL", "full"),
        ],
    ];
    for vars in cases {
        for policy in [Policy::OptIn, Policy::OptOut] {
            let config = config("http://127.0.0.1:9/", &storage)
                .policy(policy)
                .with_env_from(env_of(vars))
                .unwrap()
                .build()
                .unwrap();
            let telemetry = Telemetry::start(config).unwrap();
            assert!(!telemetry.is_enabled());
            match telemetry.consent(Level::Full) {
                Err(ConsentError::OptedOut { decided_by }) => {
                    assert!(vars.iter().any(|(k, v)| decided_by == format!("{k}={v}")))
                }
                other => panic!("{vars:?}: {other:?}"),
            }
            assert!(matches!(
                telemetry.withdraw_consent().await,
                Err(ConsentError::OptedOut { .. })
            ));
            let status = telemetry.status().await;
            assert!(status.why.contains("opted out"), "{}", status.why);
        }
    }
    assert_eq!(files_under(storage.path()), Vec::<String>::new());
    // A consent on record does not outrank an opt-out either.
    std::fs::create_dir_all(storage.path().join("telemetry")).unwrap();
    std::fs::write(
        storage.path().join("telemetry/consent.json"),
        r#"{"decision":"given","at":"2026-01-01T00:00:00.000000Z","level":"full","revision":3}"#,
    )
    .unwrap();
    let config = config("http://127.0.0.1:9/", &storage)
        .policy(Policy::OptIn)
        .with_env_from(env_of(&[("DO_NOT_TRACK", "true")]))
        .unwrap()
        .build()
        .unwrap();
    assert!(!Telemetry::start(config).unwrap().is_enabled());
}

#[actix_rt::test]
async fn under_opt_in_the_operators_enabled_is_consent_and_its_level_counts() {
    let storage = tempfile::tempdir().unwrap();
    let enabled = config("http://127.0.0.1:9/", &storage)
        .policy(Policy::OptIn)
        .first_report_in(Duration::from_secs(3600))
        .with_env_from(env_of(&[
            ("ELECTRIC_TELEMETRY", "enabled"),
            ("ELECTRIC_TELEMETRY_LEVEL", "Basic"),
        ]))
        .unwrap()
        .build()
        .unwrap();
    let telemetry = Telemetry::start(enabled).unwrap();
    assert!(telemetry.is_enabled());
    let status = telemetry.status().await;
    assert_eq!(status.level, Some(Level::Basic));
    assert_eq!(status.level_decided_by, "ELECTRIC_TELEMETRY_LEVEL=basic");
    assert!(
        status.why.contains("ELECTRIC_TELEMETRY=enabled"),
        "{}",
        status.why
    );
    assert!(
        status.consent.is_none(),
        "the environment is its own record"
    );
    // Only the cluster id (the envelope's) is kept; no consent record is written for it.
    assert!(!storage.path().join("telemetry/consent.json").exists());
    telemetry.shutdown().await;

    // Log-only is the operator's explicit choice too: collected and logged, never sent.
    let log_only = config("http://127.0.0.1:9/", &storage)
        .policy(Policy::OptIn)
        .with_env_from(env_of(&[("ELECTRIC_TELEMETRY", "log")]))
        .unwrap()
        .build()
        .unwrap();
    let logged = Telemetry::start(log_only).unwrap();
    assert!(logged.is_enabled());
    let status = logged.status().await;
    assert_eq!(status.mode, TelemetryMode::LogOnly);
    assert!(
        status.why.contains("ELECTRIC_TELEMETRY=log"),
        "{}",
        status.why
    );
    logged.shutdown().await;
}

#[test]
fn a_level_that_is_not_one_is_an_error_naming_the_variable_and_the_levels() {
    for bad in ["lots", "2", "fully", "basic,usage"] {
        let err = TelemetryConfig::builder()
            .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_LEVEL", bad)]))
            .unwrap_err();
        assert_eq!(err.setting, "ELECTRIC_TELEMETRY_LEVEL");
        let text = err.to_string();
        assert!(
            text.contains(bad) && text.contains("basic, usage or full"),
            "{text}"
        );
    }
    // The lowest of the service's and the operator's levels wins, whichever is lower.
    for (code, operator, expected) in [
        (Level::Full, "basic", Level::Basic),
        (Level::Basic, "full", Level::Basic),
        (Level::Usage, "FULL", Level::Usage),
    ] {
        let config = TelemetryConfig::builder()
            .level(code)
            .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_LEVEL", operator)]))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(config.level().0, expected, "{code} and {operator}");
    }
}

/// Usage events at random, recorded at a random level: the report (a preview, exactly what
/// a tick would send) never holds a field above its level, is valid against its version's
/// schema, and at `basic` no id was even hashed.
#[actix_rt::test]
async fn no_report_at_a_level_holds_a_field_above_it_for_random_usage() {
    let v2 = strict(REPORT_SCHEMA);
    let v3 = strict(LEVELLED_REPORT_SCHEMA);
    let case = (
        prop::sample::select(Level::ALL.to_vec()),
        prop::collection::vec((0u8..7, 0u64..1_000_000), 0..40),
    );
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, b"electric-telemetry levels seed!!"),
    );
    for round in 0..24 {
        let (level, events) = case.new_tree(&mut runner).unwrap().current();
        let storage = tempfile::tempdir().unwrap();
        let config = config("http://127.0.0.1:9/", &storage)
            .level(level)
            .first_report_in(Duration::from_secs(3600))
            .build()
            .unwrap();
        let telemetry = Telemetry::start(config).unwrap();
        let hashed = Arc::new(AtomicUsize::new(0));
        for (kind, n) in &events {
            let n = *n;
            match kind {
                0 => telemetry.record(ReplicatedFromPg::new(1, n)),
                1 => telemetry.record_with(|| {
                    hashed.fetch_add(1, Relaxed);
                    ClientConnected::new(&format!("c{n}"), "u")
                }),
                2 => telemetry.record(InitialSync::new(vec![n])),
                3 => telemetry.record(WalStatus {
                    oldest_wal_time: None,
                    wal_cache_memory: n,
                    wal_transactions: n,
                }),
                4 => telemetry.add(Counter::OperationsReceivedFromClients, n),
                5 => {
                    if let Some(c) = telemetry.collector() {
                        c.do_send(ElectrifiedTables { count: n });
                        c.do_send(WalStatus {
                            oldest_wal_time: None,
                            wal_cache_memory: n,
                            wal_transactions: 1,
                        });
                    }
                }
                _ => telemetry.record(PgVersion::new("15.4").unwrap()),
            }
        }
        let preview = telemetry.preview().await.expect("running");
        let wire = serde_json::to_value(&preview).unwrap();
        let round = format!("round {round} at {level}: {wire}");
        match level {
            Level::Full => {
                v2(&wire).unwrap_or_else(|e| panic!("{round}: {e}"));
                assert!(wire.get("level").is_none(), "{round}");
            }
            _ => {
                v3(&wire).unwrap_or_else(|e| panic!("{round}: {e}"));
                assert_eq!(wire["level"], level.as_str(), "{round}");
            }
        }
        let data = wire["data"].as_object().unwrap();
        assert_eq!(data.contains_key("usage"), level >= Level::Usage, "{round}");
        assert_eq!(
            data.contains_key("resources"),
            level == Level::Full,
            "{round}"
        );
        if level == Level::Basic {
            assert_eq!(hashed.load(Relaxed), 0, "{round}: no id hashed at basic");
        }
        telemetry.shutdown().await;
    }
}

/// The storage dir remembers which payload fields it last delivered: after a `basic` report,
/// a run at `full` says (in `status()`, as the preview's marks) that `data/usage` and
/// `data/resources` are new, and once a full report is delivered nothing is.
#[actix_rt::test]
async fn fields_the_last_delivered_report_did_not_have_are_named() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let at = |level: Level| {
        config(&receiver.url, &storage)
            .level(level)
            .first_report_in(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let basic = Telemetry::start(at(Level::Basic)).unwrap();
    assert!(
        basic.status().await.new_since_last_delivery.is_empty(),
        "nothing delivered yet"
    );
    assert_eq!(basic.shutdown().await, ShutdownOutcome::Delivered);
    let full = Telemetry::start(at(Level::Full)).unwrap();
    let status = full.status().await;
    assert_eq!(
        status.new_since_last_delivery,
        ["data/resources", "data/usage"],
        "{status}"
    );
    assert!(status
        .to_string()
        .contains("new since the last delivered report"));
    assert_eq!(full.shutdown().await, ShutdownOutcome::Delivered);
    let again = Telemetry::start(at(Level::Full)).unwrap();
    assert!(again.status().await.new_since_last_delivery.is_empty());
    again.shutdown().await;
    receiver.stop().await;
}

/// Under opt-out a consent is a ceiling too: a running telemetry that consents to `basic`
/// sends the window in progress at `basic` (what it had collected above is not sent), and
/// from then drops usage events.
#[actix_rt::test]
async fn a_consent_to_a_lower_level_while_running_lowers_the_next_report() {
    let receiver = Receiver::start();
    let storage = tempfile::tempdir().unwrap();
    let config = config(&receiver.url, &storage)
        .first_report_in(Duration::from_secs(3600))
        .build()
        .unwrap();
    let telemetry = Telemetry::start(config).unwrap();
    assert_eq!(telemetry.level(), Some(Level::Full));
    record_everything(&telemetry, 5);
    telemetry.consent(Level::Basic).unwrap();
    assert_eq!(telemetry.level(), Some(Level::Basic));
    let built = AtomicUsize::new(0);
    telemetry.record_with(|| {
        built.fetch_add(1, Relaxed);
        ClientConnected::new("late", "user")
    });
    assert_eq!(built.load(Relaxed), 0, "usage events are no longer built");
    assert_eq!(telemetry.shutdown().await, ShutdownOutcome::Delivered);
    let body: Value = serde_json::from_slice(&receiver.received()[0].body).unwrap();
    strict(LEVELLED_REPORT_SCHEMA)(&body).unwrap();
    assert_eq!(body["level"], "basic");
    assert!(body["data"].get("usage").is_none() && body["data"].get("resources").is_none());
    receiver.stop().await;
}

/// A consent record that is not one (garbage, a future format) is no consent: an opt-in
/// service stays off, with no panic, and a new consent replaces the record.
#[actix_rt::test]
async fn an_unreadable_consent_record_is_no_consent() {
    let storage = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(storage.path().join("telemetry")).unwrap();
    for garbage in [
        &b"not json"[..],
        br#"{"decision":"maybe","at":"x","level":"full","revision":3}"#,
        br#"{"decision":"given","at":"x","level":"lots","revision":3}"#,
    ] {
        std::fs::write(storage.path().join("telemetry/consent.json"), garbage).unwrap();
        let config = config("http://127.0.0.1:9/", &storage)
            .policy(Policy::OptIn)
            .first_report_in(Duration::from_secs(3600))
            .build()
            .unwrap();
        let telemetry = Telemetry::start(config).unwrap();
        assert!(
            !telemetry.is_enabled(),
            "{}",
            String::from_utf8_lossy(garbage)
        );
        assert!(telemetry.status().await.consent.is_none());
        telemetry.consent(Level::Usage).unwrap();
        assert_eq!(telemetry.level(), Some(Level::Usage));
        telemetry.shutdown().await;
    }
}
