//! Setting up a sender for a test against a stand-in on loopback: short timeouts and backoffs,
//! so that a failed attempt ends quickly and a retry comes soon, on an Arbiter of its own as
//! `Telemetry::start` runs it.

use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use electric_telemetry::internals::Sender;
use electric_telemetry::{Report, TelemetryConfig, TelemetryConfigBuilder};

/// A sender's configuration for `url`, its outbox under `storage`: 500 ms to connect and to
/// answer, retries from 20 ms up to 100 ms apart. A test adds (or overrides) what it is about.
pub fn sender_config(url: &str, storage: &Path) -> TelemetryConfigBuilder {
    TelemetryConfig::builder()
        .url(url)
        .storage_dir(storage)
        .request_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .retry_initial_backoff(Duration::from_millis(20))
        .retry_max_backoff(Duration::from_millis(100))
}

/// A sender on its own Arbiter, as `Telemetry::start` runs it; stopping the Arbiter is as
/// abrupt for the sender as a kill.
pub fn start_sender(config: TelemetryConfigBuilder) -> (Addr<Sender>, ArbiterHandle) {
    let config = config.build().expect("the test's configuration is valid");
    let arbiter = Arbiter::new().handle();
    let sender = Sender::start_in_arbiter(&arbiter, move |_| Sender::new(&config));
    (sender, arbiter)
}

/// A sender on its own Arbiter delivering to `url`, with an audit file at `audit` that
/// rotates past 4 KiB.
pub fn audited_sender(url: &str, storage: &Path, audit: &Path) -> (Addr<Sender>, ArbiterHandle) {
    start_sender(
        sender_config(url, storage)
            .audit_log(audit)
            .audit_log_max_bytes(4096),
    )
}

/// The seed report with a fresh id and `operations_from_pg` = `ops`, to tell reports apart.
pub fn numbered_report(ops: u64) -> Report {
    let mut r = super::seed_report();
    r.report_id = uuid::Uuid::new_v4();
    r.data.usage.operations_from_pg = ops;
    r
}
