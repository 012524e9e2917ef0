//! # electric-telemetry
//!
//! Anonymous, aggregated usage telemetry for a sync service built on actix: the Rust
//! re-creation of the ElectricSQL sync service's checkpoint report. Usage is aggregated in
//! memory and one small JSON report (~1.5 kB) is POSTed to the checkpoint endpoint every 4
//! hours (the first 5 minutes after start). Only counts and summaries leave the process; client
//! and user ids are hashed with a per-process random key the moment they are recorded.
//!
//! Three actors do the work, all started by [`Telemetry::start`]:
//! - the [`Collector`] keeps the current window's aggregates; the handle records into it
//!   without a message (hot counters, a bounded lock-free queue), and it handles every
//!   [`UsageEvent`] as an actix message too;
//! - the scheduler owns time: it samples the gauges, and at each report tick takes a snapshot
//!   (which starts a new window) and hands the [`Report`] to the sender;
//! - the sender keeps undelivered reports in an on-disk outbox and POSTs them in order with
//!   awc (rustls, webpki roots) from a thread of its own, each as the bytes it was queued as,
//!   retrying with backoff until the endpoint answers 2xx; a refused report is kept and tried
//!   again once per report interval without holding up the others; a clean shutdown delivers
//!   the partial window or keeps it for the next start.
//!
//! What a caller may rely on: a recording call never blocks and never fails; every recorded
//! event lands in exactly one report or is counted in `dropped_events`; a report is on disk
//! before its first attempt and is removed only on a 2xx; an opt-out starts nothing.
//!
//! ## Consent and levels
//!
//! A service chooses its [`Policy`]: opt-out (the default) or opt-in, under which nothing is
//! collected, started, written or sent until the operator consents, with
//! `ELECTRIC_TELEMETRY=enabled` or through the handle ([`Telemetry::consent`], recorded in the
//! storage dir with its date, level and schema revision; [`Telemetry::withdraw_consent`]
//! stops collecting and removes what was not sent). A [`Level`] (`basic`, `usage`, `full`)
//! says how much is sent: the lowest of the service's ([`TelemetryConfigBuilder::level`]),
//! the operator's (`ELECTRIC_TELEMETRY_LEVEL`) and the consent's, and what is not sent is not
//! collected. Every opt-out wins over every consent. [`Telemetry::status`] says what is on
//! and which setting decided it.
//!
//! ```no_run
//! use electric_telemetry::{Level, Policy, Telemetry, TelemetryConfig};
//!
//! # #[actix::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = TelemetryConfig::builder()
//!     .policy(Policy::OptIn)
//!     .with_env()?
//!     .build()?;
//! // Logs that telemetry is off until an operator consents, and how to consent.
//! let telemetry = Telemetry::start(config)?;
//! // Later, from the service's admin API, when the operator says yes to volume figures:
//! telemetry.consent(Level::Usage)?;
//! println!("{}", telemetry.status().await);
//! # Ok(())
//! # }
//! ```
//!
//! ## Embedding it in a service
//!
//! ```no_run
//! use electric_telemetry::{
//!     ClientConnected, ReplicatedFromPg, SentToClients, Telemetry, TelemetryConfig,
//! };
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // ELECTRIC_TELEMETRY=disabled (or 0, false, off, ...) or DO_NOT_TRACK=1 turns it off;
//!     // ELECTRIC_TELEMETRY=log writes reports to the log instead of sending them.
//!     let config = TelemetryConfig::builder()
//!         .electric_version("1.2.3")
//!         .with_env()?
//!         .build()?;
//!     let telemetry = Telemetry::start(config)?;
//!
//!     // Give clones of the handle to the actors that see usage.
//!     telemetry.record(ClientConnected::new("client-42", "user-7"));
//!     telemetry.record(ReplicatedFromPg::new(1, 12)); // 1 transaction, 12 operations
//!     telemetry.record(SentToClients::new(1, 12));
//!
//!     // ... run the service ...
//!
//!     // What would be sent now, as JSON; nothing is reset or sent.
//!     if let Some(json) = telemetry.preview_json().await {
//!         println!("{json}");
//!     }
//!
//!     // Deliver the partial window (bounded by the shutdown timeout), then stop.
//!     telemetry.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! An actor that prefers messages to a handle can hold the collector's address:
//!
//! ```
//! use actix::prelude::*;
//! use electric_telemetry::{Collector, InitialSync, Telemetry, TelemetryConfig};
//!
//! struct ShapeServer {
//!     telemetry: Recipient<InitialSync>,
//! }
//! impl Actor for ShapeServer {
//!     type Context = Context<Self>;
//!     fn started(&mut self, _: &mut Context<Self>) {
//!         self.telemetry.do_send(InitialSync::new(vec![120, 8]));
//!     }
//! }
//!
//! # #[actix::main]
//! # async fn main() {
//! # let storage = std::env::temp_dir().join("electric-telemetry-doctest");
//! let config = TelemetryConfig::builder()
//!     .url("http://127.0.0.1:9/")
//!     .storage_dir(storage)
//!     .build()
//!     .unwrap();
//! let telemetry = Telemetry::start(config).unwrap();
//! if let Some(collector) = telemetry.collector() {
//!     ShapeServer { telemetry: collector.recipient() }.start();
//! }
//! # }
//! ```
//!
//! See docs/configuration.md for the configuration table, docs/report.md for every field of
//! the payload (the dictionary: type, unit, level, revision, source), and `examples/embed.rs`
//! for a complete program.
//!
//! ## Cargo features
//!
//! - `host-facts` (default): reads total RAM, CPUs and the process's resident memory with
//!   `sysinfo`. Without it `ram` is 0, `cores` comes from the standard library and
//!   `used_memory` has no samples.
//! - `unstable-internals`: exposes the actors and sketches to this crate's own tests and
//!   benchmarks as `electric_telemetry::internals`. No stability promise of any kind: do not
//!   enable it in a service.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod consent;
mod delivery;
mod error;
mod files;
mod report;
mod scheduler;
mod sketch;
mod telemetry;
mod usage;

pub use config::{Policy, TelemetryConfig, TelemetryConfigBuilder, TelemetryMode};
pub use consent::Consent;
pub use delivery::sender::OutboxStatus;
pub use error::{ConfigError, ConsentError, DeliveryError, StartError, UsageError};
pub use report::wire::{
    Environment, Level, Os, Report, ReportData, Resources, REPORT_SCHEMA, REPORT_VERSION,
};
pub use sketch::summary::{Median, SummaryStats};
pub use telemetry::{ShutdownOutcome, Telemetry, TelemetryStatus};
pub use usage::collector::Collector;
pub use usage::counters::Counter;
pub use usage::events::{
    ClientConnected, ClientDisconnected, ElectrifiedTables, InitialSync, PgVersion,
    ReceivedFromClient, ReplicatedFromPg, SentToClients, SubscriptionContinued,
    SubscriptionEstablished, UsageEvent, WalStatus,
};
pub use usage::window::Usage;

/// The actors, messages and sketches behind the public API, for this crate's own integration
/// tests and benchmarks. **Unstable**: no semver promise of any kind; only with the
/// `unstable-internals` feature.
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::config::{
        DEFAULT_URL, ENV_AUDIT_LOG, ENV_CA_FILE, ENV_DO_NOT_TRACK, ENV_FIRST_REPORT_IN,
        ENV_INSTANCE_ID, ENV_INTERVAL, ENV_LEVEL, ENV_PROXY, ENV_SPREAD, ENV_STORAGE_DIR,
        ENV_TELEMETRY, ENV_URL,
    };
    pub use crate::delivery::log_only::LogOnly;
    pub use crate::delivery::outbox::outbox_dir;
    pub use crate::delivery::sender::{Deliver, Flush, GetOutboxStatus, Sender};
    pub use crate::report::identity::cluster_uuid_path;
    pub use crate::scheduler::Scheduler;
    pub use crate::sketch::distinct::{AnonymousId, DistinctCount, EXACT_IDS};
    pub use crate::sketch::summary::{Summary, EXACT_VALUES};
    pub use crate::usage::collector::{PreviewSnapshot, SampleGauges, TakeSnapshot};
    pub use crate::usage::window::WindowSnapshot;
}

// Compiles the README's Rust examples as doctests, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
