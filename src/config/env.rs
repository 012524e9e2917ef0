//! Reading the environment: the `ELECTRIC_*` variables, `DO_NOT_TRACK` and the conventional
//! proxy variables, laid over what the service set in code. Path variables are taken byte for
//! byte; every other value must be UTF-8 and is checked as it is read, so an error names the
//! variable and what it accepts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::builder::check_range;
use super::*;

/// The opt-out switch.
pub const ENV_TELEMETRY: &str = "ELECTRIC_TELEMETRY";
/// The most the operator lets telemetry send: `basic`, `usage` or `full`.
pub const ENV_LEVEL: &str = "ELECTRIC_TELEMETRY_LEVEL";
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

const DISABLING: [&str; 8] = ["0", "f", "false", "disable", "disabled", "n", "no", "off"];
const ENABLING: [&str; 8] = ["1", "t", "true", "enable", "enabled", "y", "yes", "on"];
const ACCEPTED_SWITCH: &str = "unset (enabled); 0 f false disable disabled n no off (disabled); \
                               1 t true enable enabled y yes on (enabled); log (log-only: \
                               reports are logged, never sent); any letter case";
const ACCEPTED_ON_OFF: &str = "1 t true enable enabled y yes on (on); 0 f false disable \
                               disabled n no off (off); any letter case";

impl TelemetryConfigBuilder {
    /// Lays the process's `ELECTRIC_*` environment variables over the builder's values.
    pub fn with_env(self) -> Result<Self, ConfigError> {
        self.with_env_os(|name| std::env::var_os(name))
    }

    /// Like [`with_env`](Self::with_env), reading variables through `lookup` instead of the
    /// process environment. A variable set to an empty string counts as unset.
    pub fn with_env_from(
        self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        self.with_env_os(|name| lookup(name).map(OsString::from))
    }

    /// [`with_env_from`](Self::with_env_from) over raw values: the path variables are used
    /// byte for byte as given (a non-UTF-8 directory name is a valid Linux path), the others
    /// must be UTF-8 or are an error naming the variable. `DO_NOT_TRACK` is read leniently:
    /// any value but empty, `0` or `false` disables, whatever its bytes.
    pub(crate) fn with_env_os(
        mut self,
        lookup_os: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ConfigError> {
        let blank = |v: &OsString| v.to_string_lossy().trim().is_empty();
        let get_path = |name: &str| lookup_os(name).filter(|v| !blank(v)).map(PathBuf::from);
        let get = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup_os(name)
                .filter(|v| !blank(v))
                .map(OsString::into_string)
            {
                None => Ok(None),
                Some(Ok(v)) => Ok(Some(v)),
                Some(Err(raw)) => Err(ConfigError::new(
                    name,
                    // The URL may hold a password even when it is not UTF-8.
                    &endpoint_url::redact(&raw.to_string_lossy()),
                    "not valid UTF-8",
                    "UTF-8 text (only the path variables may hold other bytes)",
                )),
            }
        };
        if let Some(v) = get(ENV_TELEMETRY)? {
            let mode = parse_switch(ENV_TELEMETRY, &v)?;
            let setting = format!("{ENV_TELEMETRY}={}", v.trim());
            if mode != TelemetryMode::Disabled {
                self.config.operator_opt_in = Some(setting.clone());
            }
            self.asked.push((mode, setting));
        }
        if let Some(v) = get(ENV_LEVEL)? {
            let level = v.parse::<Level>().map_err(|_| {
                ConfigError::new(
                    ENV_LEVEL,
                    &v,
                    "not a report level",
                    electric_telemetry_report::ACCEPTED_LEVELS,
                )
            })?;
            self.config.operator_level = Some((level, format!("{ENV_LEVEL}={level}")));
        }
        let do_not_track = lookup_os(ENV_DO_NOT_TRACK).filter(|v| !blank(v));
        if let Some(v) = do_not_track.map(|v| v.to_string_lossy().into_owned()) {
            if !matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false") {
                let shown: String = v.trim().chars().take(20).collect();
                self.asked.push((
                    TelemetryMode::Disabled,
                    format!("{ENV_DO_NOT_TRACK}={shown}"),
                ));
            }
        }
        if let Some(path) = get_path(ENV_AUDIT_LOG) {
            self.config.audit_log = Some(path);
        }
        if let Some(path) = get_path(ENV_CA_FILE) {
            self.config.ca_file = Some(path);
        }
        if let Some(v) = get(ENV_SPREAD)? {
            let lower = v.trim().to_ascii_lowercase();
            self.config.spread_reports = if ENABLING.contains(&lower.as_str()) {
                true
            } else if DISABLING.contains(&lower.as_str()) {
                false
            } else {
                return Err(ConfigError::new(
                    ENV_SPREAD,
                    &v,
                    "not a recognised on/off value",
                    ACCEPTED_ON_OFF,
                ));
            };
        }
        if let Some(v) = get(ENV_PROXY)? {
            self.config.proxy_settings.own = Some((v, ENV_PROXY));
        }
        for name in proxy::CONVENTIONAL {
            if let Some(v) = get(name)? {
                self.config
                    .proxy_settings
                    .conventional
                    .retain(|(n, _)| *n != name);
                self.config.proxy_settings.conventional.push((name, v));
            }
        }
        if let Some(v) = get(ENV_URL)? {
            self.config.url = v.trim().to_owned();
        }
        if let Some(v) = get(ENV_INTERVAL)? {
            self.config.interval = parse_duration(ENV_INTERVAL, &v, SECOND, ACCEPTED_DURATION)?;
        }
        if let Some(v) = get(ENV_FIRST_REPORT_IN)? {
            self.config.first_report_in =
                parse_duration(ENV_FIRST_REPORT_IN, &v, Duration::ZERO, ACCEPTED_FIRST)?;
        }
        if let Some(v) = get(ENV_INSTANCE_ID)? {
            self.config.instance_id = Some(v.trim().to_owned());
        }
        if let Some(path) = get_path(ENV_STORAGE_DIR) {
            self.config.storage_dir = path;
        }
        Ok(self)
    }
}

fn parse_switch(setting: &'static str, value: &str) -> Result<TelemetryMode, ConfigError> {
    let lower = value.trim().to_ascii_lowercase();
    if DISABLING.contains(&lower.as_str()) {
        Ok(TelemetryMode::Disabled)
    } else if ENABLING.contains(&lower.as_str()) {
        Ok(TelemetryMode::Send)
    } else if lower == "log" {
        Ok(TelemetryMode::LogOnly)
    } else {
        Err(ConfigError::new(
            setting,
            value,
            "not a recognised on/off value",
            ACCEPTED_SWITCH,
        ))
    }
}

fn parse_duration(
    setting: &'static str,
    value: &str,
    min: Duration,
    accepted: &'static str,
) -> Result<Duration, ConfigError> {
    let duration = humantime::parse_duration(value.trim())
        .map_err(|e| ConfigError::new(setting, value, e.to_string(), accepted))?;
    check_range(setting, duration, min, accepted)?;
    Ok(duration)
}
