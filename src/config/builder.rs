//! The builder: settings in code, and the checks every value passes at `build`.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// Builds a [`TelemetryConfig`]; [`build`](Self::build) checks every value.
#[derive(Debug, Clone)]
#[must_use]
pub struct TelemetryConfigBuilder {
    pub(super) config: TelemetryConfig,
    /// The mode each setting asked for; the most restrictive one wins at `build`.
    pub(super) asked: Vec<(TelemetryMode, String)>,
}

impl Default for TelemetryConfigBuilder {
    fn default() -> Self {
        Self {
            asked: Vec::new(),
            config: TelemetryConfig {
                mode: TelemetryMode::Send,
                decided_by: "default".to_owned(),
                policy: Policy::OptOut,
                service_level: None,
                operator_level: None,
                operator_opt_in: None,
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
    /// Whether telemetry runs before an operator consents (default [`Policy::OptOut`]). A
    /// service that chooses [`Policy::OptIn`] starts nothing until the operator sets
    /// `ELECTRIC_TELEMETRY=enabled` or the service calls
    /// [`Telemetry::consent`](crate::Telemetry::consent); an opt-out still wins over both.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }
    /// The most this service ever sends (default [`Level::Full`]). The lowest of this, the
    /// operator's `ELECTRIC_TELEMETRY_LEVEL` and the consent's level wins.
    pub fn level(mut self, level: Level) -> Self {
        self.config.service_level = Some(level);
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
    /// Time between writes of the current window to its recovery file in the storage dir
    /// (1 ms to 365 days, default 1 minute): the most usage a kill can lose.
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
pub(super) fn check_ca_file(path: &std::path::Path) -> Result<(), ConfigError> {
    const ACCEPTED: &str = "a readable regular PEM file of at most 4 MiB holding one or more \
                            CERTIFICATE blocks";
    read_certificates(path).map(drop).map_err(|problem| {
        ConfigError::new(ENV_CA_FILE, &path.display().to_string(), problem, ACCEPTED)
    })
}

pub(super) fn check_range(
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

pub(super) fn check_id(setting: &'static str, id: &str) -> Result<(), ConfigError> {
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
