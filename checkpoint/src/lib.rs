//! `checkpoint`: the receiver of electric-telemetry reports, the other half of the system.
//!
//! It accepts a report only if it is valid against `electric_telemetry::REPORT_SCHEMA` (the
//! constant the reporter itself exports, compiled at start) with a `report_version` derived from
//! `electric_telemetry::REPORT_VERSION`; stores it durably before answering 2xx (SQLite or
//! Postgres, [`store`]); and answers the two questions telemetry exists for, how many
//! applications use the sync service and what volume of data they sync ([`overview`]), as JSON
//! and as a page ([`page`]). [`server`] ties them together over HTTP.
//!
//! It depends on the library only through `Report`, `REPORT_SCHEMA` and `REPORT_VERSION`, and
//! reads reports as JSON values, so that envelope fields a newer schema adds (such as
//! `recovered`) are read when present and never required.

pub mod auth;
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
