//! Errors. Each one says what was wrong and what is accepted.

use thiserror::Error;

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{setting}={value:?} is not valid: {problem}. Accepted: {accepted}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The environment variable or builder setting, e.g. `ELECTRIC_TELEMETRY_URL`.
    pub setting: &'static str,
    /// The value given (cut short if long).
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// What would be accepted.
    pub accepted: &'static str,
}

impl ConfigError {
    pub(crate) fn new(
        setting: &'static str,
        value: &str,
        problem: impl Into<String>,
        accepted: &'static str,
    ) -> Self {
        const SHOWN: usize = 80;
        let value = if value.chars().count() > SHOWN {
            format!("{}…", value.chars().take(SHOWN).collect::<String>())
        } else {
            value.to_owned()
        };
        Self {
            setting,
            value,
            problem: problem.into(),
            accepted,
        }
    }
}

/// Telemetry could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// There is no running actix System on this thread.
    #[error(
        "telemetry must be started from inside a running actix System \
         (e.g. in #[actix::main] or #[actix_rt::test])"
    )]
    NoSystem,
    /// The HTTP client could not be set up (for example, the CA file cannot be read).
    #[error("telemetry could not set up its HTTP client: {0}")]
    Client(String),
}

/// A consent could not be given or withdrawn. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConsentError {
    /// An opt-out is in force, and it wins over any consent.
    #[error(
        "telemetry is opted out by {decided_by}, which wins over any consent; remove that \
         setting (and restart) to let a consent count"
    )]
    OptedOut {
        /// The setting that opted out, e.g. `DO_NOT_TRACK=1`.
        decided_by: String,
    },
    /// Telemetry was shut down.
    #[error("telemetry was shut down; consent again after the next start")]
    ShutDown,
    /// The decision could not be written to the storage dir.
    #[error("telemetry could not record the consent decision in {0}; nothing changed")]
    Record(String),
    /// Telemetry could not start: called outside an actix System (nothing is recorded
    /// then), or its HTTP client could not be built (the consent is recorded and counts
    /// from the next start).
    #[error("telemetry could not start on this consent: {0}")]
    Start(String),
}

/// A usage value that cannot be recorded. Nothing already recorded is affected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The Postgres version was not shaped like one.
    #[error(
        "pg_version of {len} characters was refused: expected a Postgres version such as \
         14.9, 16.1 or 15beta2 (one to three dot-separated numbers, optionally followed by \
         devel, alpha, beta or rc and a number); a full server_version is cut to its first word"
    )]
    InvalidPgVersion {
        /// Its length in characters (the value itself is not echoed).
        len: usize,
    },
}

/// A report was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The endpoint answered with a status other than 2xx.
    #[error("the endpoint answered {status}: {body_start:?}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The first bytes of the response body.
        body_start: String,
    },
    /// The request did not complete: DNS, connect, TLS, timeout or a broken connection.
    #[error("the request did not complete: {0}")]
    Transport(String),
    /// The report could not be serialised (a bug: please report it).
    #[error("the report could not be encoded as JSON: {0}")]
    Encode(String),
    /// Telemetry's actors are not running (stopped, or stopping).
    #[error("telemetry is not running (already stopped or stopping)")]
    NotRunning,
    /// The shutdown deadline passed before the endpoint answered.
    #[error("the shutdown deadline passed before the endpoint answered")]
    DeadlineExceeded,
}
