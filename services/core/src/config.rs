//! Configuration: built-in defaults → optional TOML file → environment, read once at start and
//! validated before anything listens. A bad value stops the process with one line that names the
//! setting and what is wrong with it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::secrets::{DerivedKeys, Keyring};

/// The built-in defaults, also the reference for `docs/configuration.md`.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// Environment variables read besides `GATEHOUSE_*`, with the setting each one fills. The
/// `GATEHOUSE_*` form wins when both are set.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
];

/// Name of the environment variable that points at an optional configuration file.
pub const CONFIG_FILE_ENV: &str = "GATEHOUSE_CONFIG";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Production,
    Local,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mode: Mode,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub control_api: ControlApiConfig,
    pub dataplane: DataplaneConfig,
    pub usage_worker: UsageWorkerConfig,
    pub telemetry: TelemetryConfig,
    pub shutdown: ShutdownConfig,
    pub secrets: SecretsConfig,
    pub mail: MailConfig,
    pub egress: EgressConfig,
    pub oauth: OAuthConfig,
    pub local: LocalConfig,
    pub accounts: AccountsConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub admin_url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_ms: u64,
    pub statement_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: SecretString,
    pub events_stream: String,
    pub events_stream_maxlen: usize,
    pub events_group: String,
    pub key_prefix: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlApiConfig {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub resync_interval_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub control_api_url: Url,
    pub allowed_origins: Vec<String>,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub upstream_timeout_ms: u64,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub spool_segment_bytes: u64,
    pub snapshot_reconcile_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageWorkerConfig {
    pub listen: SocketAddr,
    pub batch_size: usize,
    pub consumer_name: String,
    pub claim_idle_ms: u64,
    pub lateness_secs: u64,
    pub invoice_interval_secs: u64,
    pub quota_sweep_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub log_filter: String,
    pub otlp_endpoint: String,
    pub service_name: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub grace_period_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    pub encryption_keys: SecretString,
    pub signing_secret: SecretString,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    pub smtp_url: SecretString,
    pub from: String,
    pub file_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    pub allow_http: bool,
    pub allow_private_networks: bool,
    pub allow_hosts: Vec<String>,
    pub request_timeout_ms: u64,
    pub max_redirects: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SigningAlg {
    EdDSA,
    ES256,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub authorization_code_ttl_secs: u64,
    pub refresh_reuse_grace_secs: u64,
    pub signing_alg: SigningAlg,
    pub key_rotation_secs: u64,
    pub key_publish_lead_secs: u64,
    pub jwks_max_age_secs: u64,
    pub dynamic_registration_per_hour: u32,
    pub login_attempts_per_minute: u32,
    pub metadata_document_ca_file: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    pub login_per_account_per_minute: u32,
    pub login_per_account_burst: u32,
    pub login_per_ip_per_minute: u32,
    pub login_per_ip_burst: u32,
    pub mail_requests_per_minute: u32,
    pub mail_requests_burst: u32,
    pub verification_ttl_secs: u64,
    pub reset_ttl_secs: u64,
    pub invitation_ttl_secs: u64,
    pub sso_login_ttl_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    pub data_dir: PathBuf,
    pub seed_demo: bool,
}

/// A configuration problem: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

/// Which process a configuration is validated for; each needs a different subset of settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    ControlApi,
    Dataplane,
    UsageWorker,
    Migrate,
    /// `gatehouse up`: everything in one process, local mode.
    AllInOne,
}

/// Where configuration comes from; tests pass explicit environments instead of the process's.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Files applied in order after the defaults; `GATEHOUSE_CONFIG`, when set, comes after them.
    pub files: Vec<PathBuf>,
    /// Extra layer applied last (e.g. settings `gatehouse up` decides), as dotted keys with values
    /// written like environment variables.
    pub overrides: Vec<(String, String)>,
}

impl Config {
    /// Reads configuration from the defaults, the optional file and the process environment.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut files = sources.files.clone();
        if let Some(path) = std::env::var_os(CONFIG_FILE_ENV).filter(|p| !p.is_empty()) {
            files.push(PathBuf::from(path));
        }
        let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
        for path in &files {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "config file",
                    format!("{} does not exist or is not a file", path.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        for (var, key) in ENV_ALIASES {
            if let Ok(value) = std::env::var(var)
                && !value.is_empty()
            {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        figment = figment.merge(Env::prefixed("GATEHOUSE_").split("__").ignore(&["config"]));
        for (key, value) in &sources.overrides {
            // Same parsing as environment values: "2" is a number, "[a, b]" a list.
            let parsed: figment::value::Value = value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            figment = figment.merge(Serialized::default(key, parsed));
        }
        figment.extract::<Config>().map_err(figment_error)
    }

    /// Checks that the settings `component` needs are present and coherent.
    pub fn validate(&self, component: Component) -> Result<(), ConfigError> {
        let needs_db = matches!(
            component,
            Component::ControlApi | Component::UsageWorker | Component::Migrate
        );
        if needs_db {
            require_url(
                "database.url",
                &self.database.url,
                &["postgres", "postgresql"],
                "set GATEHOUSE_DATABASE__URL or DATABASE_URL",
            )?;
        }
        if component == Component::Migrate {
            let admin = self.database.admin_url.expose_secret();
            if !admin.is_empty() {
                require_url(
                    "database.admin_url",
                    &self.database.admin_url,
                    &["postgres", "postgresql"],
                    "",
                )?;
            }
        }
        let redis = self.redis.url.expose_secret();
        if !redis.is_empty() {
            require_url("redis.url", &self.redis.url, &["redis", "rediss"], "")?;
        } else if self.mode == Mode::Production
            && matches!(component, Component::Dataplane | Component::UsageWorker)
        {
            return Err(ConfigError::new(
                "redis.url",
                "is required when services run as separate processes (set GATEHOUSE_REDIS__URL or REDIS_URL); \
                 single-node mode without Redis is `gatehouse up`",
            ));
        }
        if component != Component::Migrate {
            Keyring::parse(self.secrets.encryption_keys.expose_secret())
                .map_err(|problem| ConfigError::new("secrets.encryption_keys", problem))?;
            DerivedKeys::derive(self.secrets.signing_secret.expose_secret())
                .map_err(|problem| ConfigError::new("secrets.signing_secret", problem))?;
        }
        for (setting, url) in [
            ("control_api.public_url", &self.control_api.public_url),
            ("dataplane.public_url", &self.dataplane.public_url),
            ("dataplane.control_api_url", &self.dataplane.control_api_url),
        ] {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::new(setting, "must be an http(s) URL with a host"));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(ConfigError::new(setting, "must not have a query or fragment"));
            }
        }
        if self.mode == Mode::Production {
            for (setting, url) in [
                ("control_api.public_url", &self.control_api.public_url),
                ("dataplane.public_url", &self.dataplane.public_url),
            ] {
                if url.scheme() != "https" && !is_loopback_url(url) {
                    return Err(ConfigError::new(
                        setting,
                        "must be https outside local mode (OAuth and MCP require it for non-loopback hosts)",
                    ));
                }
            }
        }
        if self.oauth.access_token_ttl_secs == 0 || self.oauth.access_token_ttl_secs > 3600 {
            return Err(ConfigError::new(
                "oauth.access_token_ttl_secs",
                "must be between 1 and 3600 (access tokens are short-lived)",
            ));
        }
        if self.oauth.authorization_code_ttl_secs == 0 || self.oauth.authorization_code_ttl_secs > 60 {
            return Err(ConfigError::new(
                "oauth.authorization_code_ttl_secs",
                "must be between 1 and 60",
            ));
        }
        if self.oauth.refresh_reuse_grace_secs > 10 {
            return Err(ConfigError::new(
                "oauth.refresh_reuse_grace_secs",
                "must be at most 10",
            ));
        }
        if self.oauth.key_rotation_secs < 2 * self.oauth.access_token_ttl_secs {
            return Err(ConfigError::new(
                "oauth.key_rotation_secs",
                "must be at least twice oauth.access_token_ttl_secs",
            ));
        }
        if self.oauth.key_publish_lead_secs <= self.oauth.jwks_max_age_secs {
            return Err(ConfigError::new(
                "oauth.key_publish_lead_secs",
                "must exceed oauth.jwks_max_age_secs (a new key must be in every validator's copy before it signs)",
            ));
        }
        if self.oauth.key_rotation_secs <= self.oauth.key_publish_lead_secs {
            return Err(ConfigError::new(
                "oauth.key_rotation_secs",
                "must exceed oauth.key_publish_lead_secs",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new("database.max_connections", "must be at least 1"));
        }
        if self.database.min_connections > self.database.max_connections {
            return Err(ConfigError::new(
                "database.min_connections",
                "must not exceed database.max_connections",
            ));
        }
        if self.dataplane.max_json_depth == 0 || self.dataplane.max_json_depth > 512 {
            return Err(ConfigError::new(
                "dataplane.max_json_depth",
                "must be between 1 and 512",
            ));
        }
        for (setting, value) in [
            (
                "accounts.login_per_account_per_minute",
                self.accounts.login_per_account_per_minute,
            ),
            (
                "accounts.login_per_ip_per_minute",
                self.accounts.login_per_ip_per_minute,
            ),
            (
                "accounts.mail_requests_per_minute",
                self.accounts.mail_requests_per_minute,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(setting, "must be at least 1"));
            }
        }
        for (setting, value) in [
            (
                "accounts.verification_ttl_secs",
                self.accounts.verification_ttl_secs,
            ),
            ("accounts.reset_ttl_secs", self.accounts.reset_ttl_secs),
            ("accounts.invitation_ttl_secs", self.accounts.invitation_ttl_secs),
            ("accounts.sso_login_ttl_secs", self.accounts.sso_login_ttl_secs),
        ] {
            if value == 0 || value > 90 * 86400 {
                return Err(ConfigError::new(
                    setting,
                    "must be between 1 and 7776000 (90 days)",
                ));
            }
        }
        if self.usage_worker.batch_size == 0 {
            return Err(ConfigError::new("usage_worker.batch_size", "must be at least 1"));
        }
        if self.usage_worker.claim_idle_ms < 1000 {
            return Err(ConfigError::new(
                "usage_worker.claim_idle_ms",
                "must be at least 1000",
            ));
        }
        if self.usage_worker.lateness_secs > 35 * 86_400 {
            return Err(ConfigError::new(
                "usage_worker.lateness_secs",
                "must be at most 35 days (3024000)",
            ));
        }
        for (setting, secs) in [
            (
                "usage_worker.invoice_interval_secs",
                self.usage_worker.invoice_interval_secs,
            ),
            (
                "usage_worker.quota_sweep_secs",
                self.usage_worker.quota_sweep_secs,
            ),
        ] {
            if secs == 0 {
                return Err(ConfigError::new(setting, "must be at least 1"));
            }
        }
        if self.dataplane.spool_segment_bytes == 0
            || self.dataplane.spool_segment_bytes > self.dataplane.spool_max_bytes
        {
            return Err(ConfigError::new(
                "dataplane.spool_segment_bytes",
                "must be at least 1 and at most dataplane.spool_max_bytes",
            ));
        }
        if self.redis.events_stream.is_empty() || self.redis.events_group.is_empty() {
            return Err(ConfigError::new(
                "redis.events_stream",
                "the stream and its consumer group (redis.events_group) need names",
            ));
        }
        if self.shutdown.grace_period_secs > 3600 {
            return Err(ConfigError::new(
                "shutdown.grace_period_secs",
                "must be at most 3600",
            ));
        }
        let smtp = self.mail.smtp_url.expose_secret();
        if !smtp.is_empty() {
            require_url("mail.smtp_url", &self.mail.smtp_url, &["smtp", "smtps"], "")?;
        } else if self.mode == Mode::Production && component == Component::ControlApi {
            return Err(ConfigError::new(
                "mail.smtp_url",
                "is required outside local mode (verification and reset emails must be deliverable)",
            ));
        }
        if self.mail.from.parse::<lettre_free_mailbox::Mailbox>().is_err() {
            return Err(ConfigError::new(
                "mail.from",
                "must be an address like `Name <user@example.com>` or `user@example.com`",
            ));
        }
        if !self.telemetry.otlp_endpoint.is_empty() {
            let parsed = Url::parse(&self.telemetry.otlp_endpoint);
            if !matches!(parsed.as_ref().map(|u| u.scheme()), Ok("http" | "https")) {
                return Err(ConfigError::new(
                    "telemetry.otlp_endpoint",
                    "must be an http(s) URL such as http://otel-collector:4318",
                ));
            }
        }
        Ok(())
    }

    pub fn is_local(&self) -> bool {
        self.mode == Mode::Local
    }

    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.shutdown.grace_period_secs)
    }

    pub fn redis_url(&self) -> Option<&str> {
        let url = self.redis.url.expose_secret();
        (!url.is_empty()).then_some(url)
    }

    /// The AES-256-GCM keyring for credentials at rest. Valid after `validate`.
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        Keyring::parse(self.secrets.encryption_keys.expose_secret())
            .map_err(|problem| ConfigError::new("secrets.encryption_keys", problem))
    }

    /// Keys derived once from `secrets.signing_secret`. Valid after `validate`.
    pub fn derived_keys(&self) -> Result<DerivedKeys, ConfigError> {
        DerivedKeys::derive(self.secrets.signing_secret.expose_secret())
            .map_err(|problem| ConfigError::new("secrets.signing_secret", problem))
    }

    /// The public URL of an endpoint: `{dataplane public URL}/{org}/{endpoint}/mcp`.
    pub fn endpoint_url(&self, org_slug: &str, endpoint_slug: &str) -> String {
        format!(
            "{}/{org_slug}/{endpoint_slug}/mcp",
            self.dataplane.public_url.as_str().trim_end_matches('/')
        )
    }

    /// The OAuth issuer identifier: the control API's public URL without a trailing slash.
    pub fn issuer(&self) -> String {
        self.control_api
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }
}

fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn require_url(setting: &str, value: &SecretString, schemes: &[&str], hint: &str) -> Result<(), ConfigError> {
    let raw = value.expose_secret();
    if raw.is_empty() {
        let mut problem = "is required".to_owned();
        if !hint.is_empty() {
            problem.push_str(&format!(" ({hint})"));
        }
        return Err(ConfigError::new(setting, problem));
    }
    // Never echo the value: URLs of this kind carry passwords.
    let url = Url::parse(raw).map_err(|e| ConfigError::new(setting, format!("is not a valid URL ({e})")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::new(
            setting,
            format!("must use one of the schemes {}", schemes.join(", ")),
        ));
    }
    Ok(())
}

/// Turns figment's error into ours, naming the setting as a dotted path.
fn figment_error(err: figment::Error) -> ConfigError {
    let setting = if err.path.is_empty() {
        "configuration".to_owned()
    } else {
        err.path.join(".")
    };
    let problem = match &err.kind {
        figment::error::Kind::UnknownField(field, _) => {
            let full = match err.path.last() {
                Some(last) if last == field => err.path.join("."),
                Some(_) => format!("{}.{field}", err.path.join(".")),
                None => field.clone(),
            };
            return ConfigError::new(
                full,
                "is not a known setting (check the spelling; docs/configuration.md lists every setting)",
            );
        }
        figment::error::Kind::MissingField(field) => format!("missing setting `{field}`"),
        figment::error::Kind::InvalidType(actual, expected) => {
            format!("has the wrong type: found {actual}, expected {expected}")
        }
        figment::error::Kind::InvalidValue(_, expected) => {
            format!("has an invalid value: expected {expected}")
        }
        figment::error::Kind::UnknownVariant(found, expected) => {
            format!(
                "has unknown value {found:?}; expected one of {}",
                expected.join(", ")
            )
        }
        figment::error::Kind::Message(message) => message.clone(),
        other => other.to_string(),
    };
    ConfigError::new(setting, problem)
}

/// A minimal mailbox check (`Name <a@b>` or `a@b`) without pulling the mail crate into core.
mod lettre_free_mailbox {
    pub struct Mailbox;

    impl std::str::FromStr for Mailbox {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let addr = match (s.rfind('<'), s.rfind('>')) {
                (Some(open), Some(close)) if open < close && close == s.len() - 1 => &s[open + 1..close],
                (None, None) => s.trim(),
                _ => return Err(()),
            };
            let (local, domain) = addr.split_once('@').ok_or(())?;
            let valid = !local.is_empty()
                && !domain.is_empty()
                && !addr.chars().any(|c| c.is_whitespace() || c == '<' || c == '>');
            if valid { Ok(Mailbox) } else { Err(()) }
        }
    }
}

/// Renders every setting with its default (used to generate and check docs/configuration.md).
pub fn setting_keys() -> Vec<String> {
    let table: toml_like::Value = toml_like::parse(DEFAULTS_TOML);
    let mut keys = Vec::new();
    toml_like::flatten("", &table, &mut keys);
    keys
}

/// Just enough TOML walking to list the dotted keys of the defaults file.
mod toml_like {
    pub type Value = figment::value::Value;

    pub fn parse(source: &str) -> Value {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(source))
            .extract::<Value>()
            .expect("built-in defaults are valid TOML")
    }

    pub fn flatten(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Dict(_, dict) => {
                for (key, child) in dict {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&path, child, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
}

/// Decodes `%XX` escapes in the user info of a configured URL (database and SMTP passwords often
/// contain reserved characters). Invalid escapes are kept as written.
pub fn decode_userinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Converts a dotted setting name into its environment variable.
pub fn env_var_for(setting: &str) -> String {
    format!("GATEHOUSE_{}", setting.to_ascii_uppercase().replace('.', "__"))
}

/// A directory relative to the current directory unless absolute.
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    fn valid_env(jail: &mut Jail) {
        jail.set_env("GATEHOUSE_DATABASE__URL", "postgres://svc:pw@127.0.0.1/gh");
        jail.set_env("GATEHOUSE_REDIS__URL", "redis://127.0.0.1:6379");
        jail.set_env(
            "GATEHOUSE_SECRETS__ENCRYPTION_KEYS",
            "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        );
        jail.set_env(
            "GATEHOUSE_SECRETS__SIGNING_SECRET",
            "c2lnbmluZy1zZWNyZXQtZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM=",
        );
        jail.set_env("GATEHOUSE_MAIL__SMTP_URL", "smtp://127.0.0.1:2525");
    }

    #[test]
    fn defaults_plus_env_validate() {
        Jail::expect_with(|jail| {
            valid_env(jail);
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            for c in [
                Component::ControlApi,
                Component::Dataplane,
                Component::UsageWorker,
            ] {
                cfg.validate(c).map_err(|e| e.to_string())?;
            }
            assert_eq!(cfg.control_api.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(cfg.dataplane.listen.to_string(), "127.0.0.1:8081");
            assert_eq!(cfg.usage_worker.listen.to_string(), "127.0.0.1:8082");
            Ok(())
        });
    }

    #[test]
    fn secrets_never_print() {
        Jail::expect_with(|jail| {
            valid_env(jail);
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            let printed = format!("{cfg:?}");
            assert!(!printed.contains("svc:pw"), "database password leaked: {printed}");
            assert!(!printed.contains("AAECAwQF"), "encryption key leaked");
            Ok(())
        });
    }

    #[test]
    fn env_aliases_fill_settings_and_prefixed_vars_win() {
        Jail::expect_with(|jail| {
            valid_env(jail);
            jail.set_env("REDIS_URL", "redis://alias:6379");
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            assert_eq!(cfg.redis_url(), Some("redis://127.0.0.1:6379"));
            Ok(())
        });
    }

    #[test]
    fn unknown_setting_is_named() {
        Jail::expect_with(|jail| {
            valid_env(jail);
            jail.set_env("GATEHOUSE_CONTROL_API__LISTN", "127.0.0.1:1");
            let err = Config::load(&Sources::default()).unwrap_err();
            assert_eq!(err.setting, "control_api.listn");
            Ok(())
        });
    }

    #[test]
    fn malformed_listen_address_is_named() {
        Jail::expect_with(|jail| {
            valid_env(jail);
            jail.set_env("GATEHOUSE_DATAPLANE__LISTEN", "not-an-address");
            let err = Config::load(&Sources::default()).unwrap_err();
            assert_eq!(err.setting, "dataplane.listen", "{err}");
            Ok(())
        });
    }

    #[test]
    fn userinfo_decoding() {
        assert_eq!(decode_userinfo("p%40ss%2Fword"), "p@ss/word");
        assert_eq!(decode_userinfo("plain"), "plain");
        assert_eq!(decode_userinfo("100%"), "100%");
        assert_eq!(decode_userinfo("bad%zz"), "bad%zz");
    }

    #[test]
    fn every_setting_has_an_env_var_name() {
        let keys = setting_keys();
        assert!(keys.contains(&"database.url".to_owned()));
        assert_eq!(env_var_for("control_api.listen"), "GATEHOUSE_CONTROL_API__LISTEN");
    }
}
