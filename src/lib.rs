//! # electric-telemetry
//!
//! Anonymous, aggregated usage telemetry for a sync service built on actix: the Rust
//! re-creation of the ElectricSQL sync service's checkpoint report. Usage is aggregated in
//! memory and one small JSON report (~1.5 kB) is POSTed to the checkpoint endpoint every 4
//! hours (the first 5 minutes after start). Only counts and summaries leave the process; client
//! and user ids are hashed with a per-process random key the moment they are recorded.
//!
//! Three actors do the work:
//! - the [`Collector`] keeps the current window's aggregates and handles the typed usage
//!   messages of [`messages`];
//! - the [`Scheduler`] owns time: it samples the gauges, and at each report tick takes a
//!   snapshot (which starts a new window) and hands the [`Report`] to the sender;
//! - the [`Sender`] keeps undelivered reports in an on-disk [`outbox`] and POSTs them in order
//!   with awc (rustls, webpki roots) from a thread of its own, retrying with backoff until the
//!   endpoint answers 2xx; a clean shutdown delivers the partial window or keeps it for the
//!   next start.
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
//! See the README for the configuration table and every field of the payload.

#![deny(missing_docs)]

mod audit;
mod checkpoint;
pub mod clients;
pub mod collector;
pub mod config;
pub mod counters;
pub mod distinct;
mod environment;
pub mod error;
mod identity;
mod instance_dir;
mod intake;
pub mod log_only;
pub mod messages;
pub mod outbox;
pub mod report;
pub mod scheduler;
pub mod sender;
mod storage;
pub mod summary;
mod telemetry;

pub use collector::{Collector, PreviewSnapshot, SampleGauges, TakeSnapshot, WindowSnapshot};
pub use config::{TelemetryConfig, TelemetryConfigBuilder, TelemetryMode};
pub use counters::Counter;
pub use distinct::AnonymousId;
pub use error::{ConfigError, DeliveryError, StartError, UsageError};
pub use identity::cluster_uuid_path;
pub use log_only::LogOnly;
pub use messages::{
    ClientConnected, ClientDisconnected, ElectrifiedTables, InitialSync, PgVersion,
    ReceivedFromClient, ReplicatedFromPg, SentToClients, SubscriptionContinued,
    SubscriptionEstablished, UsageEvent, WalStatus,
};
pub use outbox::outbox_dir;
pub use report::{Report, REPORT_SCHEMA, REPORT_VERSION};
pub use scheduler::Scheduler;
pub use sender::{Deliver, Flush, GetOutboxStatus, OutboxStatus, Sender};
pub use summary::{Summary, SummaryStats};
pub use telemetry::{ShutdownOutcome, Telemetry};

// Compiles the README's Rust examples as doctests, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
