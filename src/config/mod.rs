//! Configuration: environment variables, a builder, and validation.
//!
//! This file holds the configuration's values (`TelemetryConfig`, what each setting reads
//! as) and the rules shared by the ways of setting them; `builder.rs` the builder and its
//! checks; `env.rs` the `ENV_*` names and reading the environment.
//!
//! [`TelemetryConfig::from_env`] reads the `ELECTRIC_*` variables; [`TelemetryConfig::builder`]
//! starts from the defaults, and [`TelemetryConfigBuilder::with_env`] lays the environment over
//! what the service set in code, so an operator's setting always wins. Every value is checked
//! when read or built; an error names the variable and what it accepts.

mod builder;
pub(crate) mod endpoint_url;
mod env;
pub(crate) mod no_proxy;
pub(crate) mod proxy;

pub use builder::TelemetryConfigBuilder;
// Some are read only through `internals`, with its feature.
#[allow(unused_imports)]
pub use env::{
    ENV_AUDIT_LOG, ENV_CA_FILE, ENV_DO_NOT_TRACK, ENV_FIRST_REPORT_IN, ENV_INSTANCE_ID,
    ENV_INTERVAL, ENV_LEVEL, ENV_PROXY, ENV_SPREAD, ENV_STORAGE_DIR, ENV_TELEMETRY, ENV_URL,
};

use std::path::PathBuf;
use std::time::Duration;

use electric_telemetry_report::Level;
use uuid::Uuid;

use crate::error::ConfigError;
use crate::files::read_certificates;
use endpoint_url::check_url;

/// The endpoint reports go to unless configured otherwise.
pub const DEFAULT_URL: &str = "https://checkpoint.electric-sql.com";

const ACCEPTED_DURATION: &str = "a duration from 1s to 365days, such as 30s, 5m, 4h or 1h 30m";
const ACCEPTED_FIRST: &str = "a duration from 0s to 365days, such as 30s, 5m, 4h or 1h 30m";
const ACCEPTED_ID: &str = "1 to 64 visible ASCII characters, no spaces";
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const SECOND: Duration = Duration::from_secs(1);

/// What telemetry does with its reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TelemetryMode {
    /// Collect and send reports to the endpoint (the default).
    Send,
    /// Collect and write each report to the log at its due time; never open a socket.
    LogOnly,
    /// Collect nothing, send nothing, start nothing.
    Disabled,
}

/// Whether telemetry runs before an operator has said yes: chosen by the service's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Policy {
    /// On unless an operator opts out (the seed's behaviour, the default).
    #[default]
    OptOut,
    /// Off until an operator consents: with `ELECTRIC_TELEMETRY=enabled` (or another "on"
    /// value, or `log`), or at run time through
    /// [`Telemetry::consent`](crate::Telemetry::consent), which is recorded in the storage dir.
    /// Until then nothing is collected, started, written or sent.
    OptIn,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::OptOut => "opt-out",
            Policy::OptIn => "opt-in",
        })
    }
}

/// Everything telemetry needs to run. Build it with [`TelemetryConfig::from_env`] or
/// [`TelemetryConfig::builder`]; once built, every value has been checked.
#[derive(Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    mode: TelemetryMode,
    decided_by: String,
    policy: Policy,
    /// The level the service's code chose (`level(..)`), if any.
    service_level: Option<Level>,
    /// The level the operator chose (`ELECTRIC_TELEMETRY_LEVEL`) and the setting as given.
    operator_level: Option<(Level, String)>,
    /// The operator's explicit "on" (`ELECTRIC_TELEMETRY=on` or `log`), which is consent under
    /// [`Policy::OptIn`].
    operator_opt_in: Option<String>,
    url: String,
    interval: Duration,
    first_report_in: Duration,
    sample_every: Duration,
    checkpoint_every: Duration,
    shutdown_timeout: Duration,
    request_timeout: Duration,
    connect_timeout: Duration,
    storage_dir: PathBuf,
    instance_id: Option<String>,
    cluster_uuid: Option<Uuid>,
    electric_version: String,
    retry_initial_backoff: Duration,
    retry_max_backoff: Duration,
    outbox_retention: Duration,
    outbox_max_bytes: u64,
    audit_log: Option<PathBuf>,
    audit_log_max_bytes: u64,
    ca_file: Option<PathBuf>,
    spread_reports: bool,
    /// The proxy settings as given (values never shown by `Debug`).
    proxy_settings: proxy::ProxySettings,
    /// Where requests go, decided at `build` from `proxy_settings` and the URL.
    proxy_route: proxy::Route,
}

/// Every field, the URL as errors show it: a service may log its configuration with `{:?}`,
/// and the URL's query (where a token often rides) must not show (the proxy's own `Debug`
/// already hides its credentials).
impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("mode", &self.mode)
            .field("decided_by", &self.decided_by)
            .field("policy", &self.policy)
            .field("service_level", &self.service_level)
            .field("operator_level", &self.operator_level)
            .field("operator_opt_in", &self.operator_opt_in)
            .field("url", &endpoint_url::redact(&self.url))
            .field("interval", &self.interval)
            .field("first_report_in", &self.first_report_in)
            .field("sample_every", &self.sample_every)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("storage_dir", &self.storage_dir)
            .field("instance_id", &self.instance_id)
            .field("cluster_uuid", &self.cluster_uuid)
            .field("electric_version", &self.electric_version)
            .field("retry_initial_backoff", &self.retry_initial_backoff)
            .field("retry_max_backoff", &self.retry_max_backoff)
            .field("outbox_retention", &self.outbox_retention)
            .field("outbox_max_bytes", &self.outbox_max_bytes)
            .field("audit_log", &self.audit_log)
            .field("audit_log_max_bytes", &self.audit_log_max_bytes)
            .field("ca_file", &self.ca_file)
            .field("spread_reports", &self.spread_reports)
            .field("proxy_settings", &self.proxy_settings)
            .field("proxy_route", &self.proxy_route)
            .finish()
    }
}

impl TelemetryConfig {
    /// The defaults overlaid with the `ELECTRIC_*` environment variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder().with_env()?.build()
    }

    /// A builder that starts from the defaults (see the README's configuration table).
    pub fn builder() -> TelemetryConfigBuilder {
        TelemetryConfigBuilder::default()
    }

    /// Whether no opt-out turned telemetry off (it sends only in [`TelemetryMode::Send`]).
    /// Under [`Policy::OptIn`] it also needs consent to collect anything.
    pub fn enabled(&self) -> bool {
        self.mode != TelemetryMode::Disabled
    }
    /// What telemetry does with its reports.
    pub fn mode(&self) -> TelemetryMode {
        self.mode
    }
    /// Which setting decided the mode, e.g. `DO_NOT_TRACK=1` or `default`.
    pub fn decided_by(&self) -> &str {
        &self.decided_by
    }
    /// Whether telemetry runs before an operator consents.
    pub fn policy(&self) -> Policy {
        self.policy
    }
    /// The lowest of the levels the service's code and the operator's environment chose
    /// ([`Level::Full`] when neither did), and the setting that decided it. A consent on
    /// record can lower it further at start (see [`Telemetry::status`](crate::Telemetry::status)).
    pub fn level(&self) -> (Level, String) {
        let mut level = (Level::Full, "default".to_owned());
        if let Some(l) = self.service_level {
            level = (l, "level(..)".to_owned());
        }
        if let Some((l, by)) = &self.operator_level {
            if *l < level.0 {
                level = (*l, by.clone());
            }
        }
        level
    }
    /// The operator's explicit opt-in from the environment (e.g. `ELECTRIC_TELEMETRY=on`).
    pub(crate) fn operator_opt_in(&self) -> Option<&str> {
        self.operator_opt_in.as_deref()
    }
    /// The file accepted reports are appended to, if any.
    pub fn audit_log(&self) -> Option<&std::path::Path> {
        self.audit_log.as_deref()
    }
    /// The size at which the audit file is rotated (to `<file>.1`).
    pub fn audit_log_max_bytes(&self) -> u64 {
        self.audit_log_max_bytes
    }
    /// A PEM file of extra CA certificates trusted for the endpoint, if any.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }
    /// Whether report ticks are spread by a phase derived from the instance's ids.
    pub fn spread_reports(&self) -> bool {
        self.spread_reports
    }
    /// The proxy requests go through, if any, and which setting decided.
    pub(crate) fn proxy_route(&self) -> &proxy::Route {
        &self.proxy_route
    }
    /// Where reports are POSTed.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Time between reports.
    pub fn interval(&self) -> Duration {
        self.interval
    }
    /// Time from start to the first report.
    pub fn first_report_in(&self) -> Duration {
        self.first_report_in
    }
    /// Time between samples of the gauges (process memory, concurrent clients).
    pub fn sample_every(&self) -> Duration {
        self.sample_every
    }
    /// Time between writes of the current window to its recovery file: the most usage a
    /// kill can lose.
    pub fn checkpoint_every(&self) -> Duration {
        self.checkpoint_every
    }
    /// The longest a graceful shutdown may take, final report included.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
    /// The longest one POST may take, from connect to the end of the response.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }
    /// The longest connecting (TCP and TLS) may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// Where the cluster id is kept.
    pub fn storage_dir(&self) -> &std::path::Path {
        &self.storage_dir
    }
    /// The instance id set by configuration, if any (else a random one per start).
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }
    /// The cluster id the service supplied, if any (else one kept under the storage dir).
    pub fn cluster_uuid(&self) -> Option<Uuid> {
        self.cluster_uuid
    }
    /// The service version sent as `electric_version`.
    pub fn electric_version(&self) -> &str {
        &self.electric_version
    }
    /// The first retry's backoff ceiling; it doubles per failed attempt.
    pub fn retry_initial_backoff(&self) -> Duration {
        self.retry_initial_backoff
    }
    /// The largest backoff ceiling (never more than one `interval`).
    pub fn retry_max_backoff(&self) -> Duration {
        self.retry_max_backoff.min(self.interval)
    }
    /// How much of the report stream the outbox keeps while the endpoint is unreachable.
    pub fn outbox_retention(&self) -> Duration {
        self.outbox_retention
    }
    /// The most bytes of pending reports the outbox keeps.
    pub fn outbox_max_bytes(&self) -> u64 {
        self.outbox_max_bytes
    }
    /// The most reports the outbox keeps: one per `interval` of `outbox_retention`, plus the
    /// final report of a shutdown.
    pub fn outbox_max_reports(&self) -> usize {
        let per = self.outbox_retention.as_secs_f64() / self.interval.as_secs_f64();
        (per.ceil() as usize).saturating_add(1).max(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_non_utf8_url_is_refused_without_showing_its_password() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let url = OsString::from_vec(b"https://user:S3CRETPW@host/\xff?token=T0KEN".to_vec());
        let err = TelemetryConfig::builder()
            .with_env_os(|name| (name == ENV_URL).then(|| url.clone()))
            .unwrap_err();
        assert_eq!(err.setting, ENV_URL);
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(shown.contains("UTF-8"), "{shown}");
            assert!(
                !shown.contains("S3CRETPW") && !shown.contains("T0KEN"),
                "{shown}"
            );
        }
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = TelemetryConfig::builder().build().unwrap();
        assert!(c.enabled());
        assert_eq!(c.url(), DEFAULT_URL);
        assert_eq!(c.interval(), Duration::from_secs(4 * 3600));
        assert_eq!(c.first_report_in(), Duration::from_secs(300));
        assert_eq!(c.shutdown_timeout(), Duration::from_secs(5));
        assert_eq!(c.storage_dir(), std::path::Path::new("./persistent"));
    }
}
