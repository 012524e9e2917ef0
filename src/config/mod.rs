//! Configuration: environment variables, a builder, and validation.
//!
//! [`TelemetryConfig::from_env`] reads the `ELECTRIC_*` variables; [`TelemetryConfig::builder`]
//! starts from the defaults, and [`TelemetryConfigBuilder::with_env`] lays the environment over
//! what the service set in code, so an operator's setting always wins. Every value is checked
//! when read or built; an error names the variable and what it accepts.

pub(crate) mod endpoint_url;
mod env;
pub(crate) mod proxy;

use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

use crate::error::ConfigError;
use crate::files::read_certificates;
use endpoint_url::check_url;

/// The opt-out switch.
pub const ENV_TELEMETRY: &str = "ELECTRIC_TELEMETRY";
/// The endpoint URL.
pub const ENV_URL: &str = "ELECTRIC_TELEMETRY_URL";
/// Time between reports.
pub const ENV_INTERVAL: &str = "ELECTRIC_TELEMETRY_INTERVAL";
/// Time from start to the first report.
pub const ENV_FIRST_REPORT_IN: &str = "ELECTRIC_TELEMETRY_FIRST_REPORT_IN";
/// This instance's id.
pub const ENV_INSTANCE_ID: &str = "ELECTRIC_INSTANCE_ID";
/// Where the cluster id and the outbox are kept.
pub const ENV_STORAGE_DIR: &str = "ELECTRIC_STORAGE_DIR";
/// The common opt-out convention: set to anything but empty, `0` or `false`, it disables.
pub const ENV_DO_NOT_TRACK: &str = "DO_NOT_TRACK";
/// A file that every accepted report is appended to, one JSON line each.
pub const ENV_AUDIT_LOG: &str = "ELECTRIC_TELEMETRY_AUDIT_LOG";
/// A PEM file of extra CA certificates to trust for the endpoint.
pub const ENV_CA_FILE: &str = "ELECTRIC_TELEMETRY_CA_FILE";

/// Whether each instance's reports are spread over the interval by a phase from its ids.
pub const ENV_SPREAD: &str = "ELECTRIC_TELEMETRY_SPREAD";

/// Telemetry's own proxy: a proxy URL, or `none` to go direct whatever `HTTPS_PROXY` says.
pub const ENV_PROXY: &str = "ELECTRIC_TELEMETRY_PROXY";

/// The endpoint reports go to unless configured otherwise.
pub const DEFAULT_URL: &str = "https://checkpoint.electric-sql.com";

const DISABLING: [&str; 8] = ["0", "f", "false", "disable", "disabled", "n", "no", "off"];
const ENABLING: [&str; 8] = ["1", "t", "true", "enable", "enabled", "y", "yes", "on"];
const ACCEPTED_SWITCH: &str = "unset (enabled); 0 f false disable disabled n no off (disabled); \
                               1 t true enable enabled y yes on (enabled); log (log-only: \
                               reports are logged, never sent); any letter case";
const ACCEPTED_ON_OFF: &str = "1 t true enable enabled y yes on (on); 0 f false disable \
                               disabled n no off (off); any letter case";
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

/// Everything telemetry needs to run. Build it with [`TelemetryConfig::from_env`] or
/// [`TelemetryConfig::builder`]; once built, every value has been checked.
#[derive(Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    mode: TelemetryMode,
    decided_by: String,
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

    /// Whether telemetry collects anything (it sends only in [`TelemetryMode::Send`]).
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
    /// Time between checkpoints of the current window: the most usage a kill can lose.
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

/// Builds a [`TelemetryConfig`]; [`build`](Self::build) checks every value.
#[derive(Debug, Clone)]
#[must_use]
pub struct TelemetryConfigBuilder {
    config: TelemetryConfig,
    /// The mode each setting asked for; the most restrictive one wins at `build`.
    asked: Vec<(TelemetryMode, String)>,
}

impl Default for TelemetryConfigBuilder {
    fn default() -> Self {
        Self {
            asked: Vec::new(),
            config: TelemetryConfig {
                mode: TelemetryMode::Send,
                decided_by: "default".to_owned(),
                url: DEFAULT_URL.to_owned(),
                interval: Duration::from_secs(4 * 3600),
                first_report_in: Duration::from_secs(5 * 60),
                sample_every: Duration::from_secs(60),
                checkpoint_every: Duration::from_secs(60),
                shutdown_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(5),
                storage_dir: PathBuf::from("./persistent"),
                instance_id: None,
                cluster_uuid: None,
                electric_version: env!("CARGO_PKG_VERSION").to_owned(),
                retry_initial_backoff: Duration::from_secs(1),
                retry_max_backoff: Duration::from_secs(5 * 60),
                outbox_retention: Duration::from_secs(24 * 3600),
                outbox_max_bytes: 1 << 20,
                audit_log: None,
                audit_log_max_bytes: 1 << 20,
                ca_file: None,
                spread_reports: true,
                proxy_settings: Default::default(),
                proxy_route: Default::default(),
            },
        }
    }
}

impl TelemetryConfigBuilder {
    /// Turns telemetry on ([`TelemetryMode::Send`]) or off. An opt-out from the environment
    /// still wins over `true`.
    pub fn enabled(self, enabled: bool) -> Self {
        let mode = if enabled {
            TelemetryMode::Send
        } else {
            TelemetryMode::Disabled
        };
        self.mode(mode)
    }
    /// Sets the mode. When settings disagree the most restrictive one wins
    /// (disabled, then log-only, then send), so an opt-out always works.
    pub fn mode(mut self, mode: TelemetryMode) -> Self {
        self.asked.push((mode, "configuration".to_owned()));
        self
    }
    /// Appends every report the endpoint accepted to `path`, one JSON line each.
    pub fn audit_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.audit_log = Some(path.into());
        self
    }
    /// Rotates the audit file to `<file>.1` past this size (at least 4 KiB; default 1 MiB).
    pub fn audit_log_max_bytes(mut self, bytes: u64) -> Self {
        self.config.audit_log_max_bytes = bytes;
        self
    }
    /// Also trusts the CA certificates in this PEM file for the endpoint.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ca_file = Some(path.into());
        self
    }
    /// Spreads this instance's report ticks over the interval by a phase derived from its ids
    /// (the default), so that a fleet started together does not report in the same second.
    /// `false` gives ticks at exactly `first_report_in + k × interval`, for tests and demos.
    pub fn spread_reports(mut self, spread: bool) -> Self {
        self.config.spread_reports = spread;
        self
    }
    /// Telemetry's own proxy, for telemetry only: an `http://[user:password@]host[:port]`
    /// URL, or `"none"` to go direct whatever `HTTPS_PROXY` and the like say. Without it, the
    /// conventional variables read by [`with_env`](Self::with_env) decide (see the README).
    pub fn proxy(mut self, proxy: impl Into<String>) -> Self {
        self.config.proxy_settings.own = Some((proxy.into(), "proxy(..)"));
        self
    }
    /// Where reports are POSTed (http or https).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }
    /// Time between reports (1 s to 365 days).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }
    /// Time from start to the first report (0 to 365 days).
    pub fn first_report_in(mut self, delay: Duration) -> Self {
        self.config.first_report_in = delay;
        self
    }
    /// Time between gauge samples (1 ms to 365 days).
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.config.sample_every = every;
        self
    }
    /// Time between checkpoints of the current window to the storage dir (1 ms to 365 days,
    /// default 1 minute): the most usage a kill can lose.
    pub fn checkpoint_every(mut self, every: Duration) -> Self {
        self.config.checkpoint_every = every;
        self
    }
    /// The longest a graceful shutdown may take (1 ms to 365 days).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }
    /// The longest one POST may take (1 ms to 365 days).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }
    /// The longest connecting may take (1 ms to 365 days).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }
    /// Where the cluster id is kept.
    pub fn storage_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.storage_dir = dir.into();
        self
    }
    /// This instance's id (else a random UUID per start).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.config.instance_id = Some(id.into());
        self
    }
    /// The cluster's id, from the service's own store (else one kept under the storage dir).
    pub fn cluster_uuid(mut self, id: Uuid) -> Self {
        self.config.cluster_uuid = Some(id);
        self
    }
    /// The service's version, sent as `electric_version`.
    pub fn electric_version(mut self, version: impl Into<String>) -> Self {
        self.config.electric_version = version.into();
        self
    }

    /// The first retry's backoff ceiling (1 ms to 365 days); it doubles per failed attempt.
    pub fn retry_initial_backoff(mut self, backoff: Duration) -> Self {
        self.config.retry_initial_backoff = backoff;
        self
    }
    /// The largest backoff ceiling (1 ms to 365 days; one `interval` at most in effect).
    pub fn retry_max_backoff(mut self, backoff: Duration) -> Self {
        self.config.retry_max_backoff = backoff;
        self
    }
    /// How much of the report stream the outbox keeps while undelivered (1 s to 365 days).
    pub fn outbox_retention(mut self, retention: Duration) -> Self {
        self.config.outbox_retention = retention;
        self
    }
    /// The most bytes of pending reports the outbox keeps (at least 4 KiB).
    pub fn outbox_max_bytes(mut self, bytes: u64) -> Self {
        self.config.outbox_max_bytes = bytes;
        self
    }

    /// Checks every value and returns the configuration.
    pub fn build(mut self) -> Result<TelemetryConfig, ConfigError> {
        // The most restrictive wins; among equals, the first that asked.
        if let Some((mode, by)) = self.asked.iter().rev().max_by_key(|(mode, _)| *mode) {
            self.config.mode = *mode;
            self.config.decided_by = by.clone();
        }
        self.config.url = check_url(&self.config.url)?;
        let c = &self.config;
        check_range("interval", c.interval, SECOND, ACCEPTED_DURATION)?;
        check_range(
            "first_report_in",
            c.first_report_in,
            Duration::ZERO,
            ACCEPTED_FIRST,
        )?;
        const ACCEPTED_SHORT: &str = "a duration from 1ms to 365days";
        let ms = Duration::from_millis(1);
        check_range("sample_every", c.sample_every, ms, ACCEPTED_SHORT)?;
        check_range("checkpoint_every", c.checkpoint_every, ms, ACCEPTED_SHORT)?;
        check_range("shutdown_timeout", c.shutdown_timeout, ms, ACCEPTED_SHORT)?;
        check_range("request_timeout", c.request_timeout, ms, ACCEPTED_SHORT)?;
        check_range("connect_timeout", c.connect_timeout, ms, ACCEPTED_SHORT)?;
        check_range(
            "retry_initial_backoff",
            c.retry_initial_backoff,
            ms,
            ACCEPTED_SHORT,
        )?;
        check_range("retry_max_backoff", c.retry_max_backoff, ms, ACCEPTED_SHORT)?;
        check_range(
            "outbox_retention",
            c.outbox_retention,
            SECOND,
            ACCEPTED_DURATION,
        )?;
        if c.outbox_max_bytes < 4096 {
            let shown = c.outbox_max_bytes.to_string();
            return Err(ConfigError::new(
                "outbox_max_bytes",
                &shown,
                "too small for a report",
                "at least 4096 bytes",
            ));
        }
        if let Some(id) = &c.instance_id {
            check_id(ENV_INSTANCE_ID, id)?;
        }
        check_id("electric_version", &c.electric_version)?;
        if c.audit_log_max_bytes < 4096 {
            let shown = c.audit_log_max_bytes.to_string();
            return Err(ConfigError::new(
                "audit_log_max_bytes",
                &shown,
                "too small for a report",
                "at least 4096 bytes",
            ));
        }
        // An opt-out touches no file and cannot stop the host from starting over one.
        if let (Some(path), true) = (&c.ca_file, c.mode != TelemetryMode::Disabled) {
            check_ca_file(path)?;
        }
        // Only a sender uses a proxy: an opt-out or log-only mode cannot fail over one.
        if c.mode == TelemetryMode::Send {
            self.config.proxy_route = c.proxy_settings.route(&c.url)?;
        }
        Ok(self.config)
    }
}

/// Reads the CA certificates of a PEM file; an error names the variable and the file.
fn check_ca_file(path: &std::path::Path) -> Result<(), ConfigError> {
    const ACCEPTED: &str = "a readable regular PEM file of at most 4 MiB holding one or more \
                            CERTIFICATE blocks";
    read_certificates(path).map(drop).map_err(|problem| {
        ConfigError::new(ENV_CA_FILE, &path.display().to_string(), problem, ACCEPTED)
    })
}

fn check_range(
    setting: &'static str,
    value: Duration,
    min: Duration,
    accepted: &'static str,
) -> Result<(), ConfigError> {
    if value < min || value > MAX_DURATION {
        let shown = humantime::format_duration(value).to_string();
        return Err(ConfigError::new(setting, &shown, "out of range", accepted));
    }
    Ok(())
}

fn check_id(setting: &'static str, id: &str) -> Result<(), ConfigError> {
    let visible = id.chars().all(|c| c.is_ascii_graphic());
    if id.is_empty() || id.len() > 64 || !visible {
        return Err(ConfigError::new(
            setting,
            id,
            "empty, too long, or holds spaces or non-ASCII characters",
            ACCEPTED_ID,
        ));
    }
    Ok(())
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
