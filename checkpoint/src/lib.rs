//! `checkpoint`: the receiver of electric-telemetry reports, the other half of the system.
//!
//! It accepts a report only if its `report_version` is a published one and it is valid against
//! that version's frozen schema from the wire crate (`electric_telemetry_report::SCHEMAS`,
//! compiled at start, objects opened for a later release's added fields, see [`validate`]);
//! stores it durably before answering 2xx (SQLite or
//! Postgres, [`store`]); and answers the two questions telemetry exists for, how many
//! applications use the sync service and what volume of data they sync ([`overview`]), as JSON
//! and as a page ([`page`]). [`server`] ties them together over HTTP.
//!
//! It depends on the reporter only through the wire crate (`electric-telemetry-report`: no
//! actix, TLS or sysinfo), and reads reports as JSON values, so that fields a later release
//! adds are kept and never required.

pub mod activity;
pub mod auth;
pub mod export;
pub mod fetch;
pub mod metrics;
pub mod overview;
pub mod page;
pub mod quarantine;
pub mod server;
pub mod sources;
pub mod store;
pub mod validate;

pub use overview::Overview;
pub use server::{start, Running, ServerConfig, StartError};
pub use store::Store;
pub use validate::{Validator, ACCEPTED_VERSIONS, COUNTERS};
