//! Configuration: built-in defaults → optional TOML file → environment, read once at start and
//! validated before anything listens. A bad value stops the process with one line that names the
//! setting and what is wrong with it.
//!
//! - this module: [`Config`], where it comes from ([`Sources`], [`Config::load`]) and accessors;
//! - `sections`: one settings struct per `[section]` of `defaults.toml`;
//! - `validate`: the checks at start ([`Config::validate`], per [`Component`]);
//! - `error`: [`ConfigError`] and how figment's errors are turned into it;
//! - `keys`: setting names (dotted keys, environment variables) for the generated reference
//!   (`crate::reference` renders `docs/configuration.md`);
//! - `values`: helpers for interpreting configured values (URL user info, relative paths).

use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::secrets::{DataplaneKeys, DerivedKeys, Keyring};

mod error;
mod keys;
mod sections;
mod validate;
mod values;

pub use error::ConfigError;
use error::figment_error;
pub use keys::{env_var_for, setting_keys};
pub use sections::{
    AccountsConfig, BillingConfig, ControlApiConfig, DatabaseConfig, DataplaneConfig, EgressConfig,
    HostedSqlConfig, LocalConfig, LogFormat, MailConfig, OAuthConfig, OperatorConfig, RedisConfig,
    SecretsConfig, ShutdownConfig, SigningAlg, SsoConfig, TelemetryConfig, UsageWorkerConfig,
};
pub use validate::Component;
pub use values::{decode_userinfo, resolve_path};

/// The built-in defaults, also the reference for `docs/configuration.md`.
pub const DEFAULTS_TOML: &str = include_str!("../defaults.toml");

/// Environment variables read besides `GATEHOUSE_*`, with the setting each one fills. The
/// `GATEHOUSE_*` form wins when both are set.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
];

/// Name of the environment variable that points at an optional configuration file.
pub const CONFIG_FILE_ENV: &str = "GATEHOUSE_CONFIG";

/// Environment variable holding the operator token for `gatehouse admin` (the client side; the
/// services only know its hash, `operator.token_sha256`). Not a setting.
pub const OPERATOR_TOKEN_ENV: &str = "GATEHOUSE_OPERATOR_TOKEN";

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
    pub billing: BillingConfig,
    pub hosted_sql: HostedSqlConfig,
    pub operator: OperatorConfig,
    pub telemetry: TelemetryConfig,
    pub shutdown: ShutdownConfig,
    pub secrets: SecretsConfig,
    pub mail: MailConfig,
    pub egress: EgressConfig,
    pub oauth: OAuthConfig,
    pub local: LocalConfig,
    pub accounts: AccountsConfig,
    pub sso: SsoConfig,
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
        figment = figment.merge(
            Env::prefixed("GATEHOUSE_")
                .split("__")
                .ignore(&["config", "operator_token"]),
        );
        for (key, value) in &sources.overrides {
            // Same parsing as environment values: "2" is a number, "[a, b]" a list.
            let parsed: figment::value::Value = value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
            figment = figment.merge(Serialized::default(key, parsed));
        }
        figment.extract::<Config>().map_err(figment_error)
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

    /// Keys derived once from `secrets.dataplane_secret`. Valid after `validate`.
    pub fn dataplane_keys(&self) -> Result<DataplaneKeys, ConfigError> {
        DataplaneKeys::derive(self.secrets.dataplane_secret.expose_secret())
            .map_err(|problem| ConfigError::new("secrets.dataplane_secret", problem))
    }

    /// This configuration without the platform's secrets (`secrets.encryption_keys`,
    /// `secrets.signing_secret`): what a dataplane runs with when it shares a process or a
    /// configuration with the control API, so that it holds only `secrets.dataplane_secret`.
    pub fn for_dataplane(&self) -> Config {
        let mut cfg = self.clone();
        cfg.secrets.encryption_keys = secrecy::SecretString::from(String::new());
        cfg.secrets.signing_secret = secrecy::SecretString::from(String::new());
        cfg
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
        jail.set_env(
            "GATEHOUSE_SECRETS__DATAPLANE_SECRET",
            "ZGF0YXBsYW5lLXNlY3JldC1mb3ItdGVzdHMtb25seS0zMi1ieXRlcw==",
        );
        jail.set_env("GATEHOUSE_MAIL__SMTP_URL", "smtp://127.0.0.1:2525");
    }

    /// The environment of a dataplane run as its own process: its secret, not the platform's.
    fn dataplane_env(jail: &mut Jail) {
        valid_env(jail);
        jail.set_env("GATEHOUSE_SECRETS__ENCRYPTION_KEYS", "");
        jail.set_env("GATEHOUSE_SECRETS__SIGNING_SECRET", "");
    }

    #[test]
    fn defaults_plus_env_validate() {
        Jail::expect_with(|jail| {
            valid_env(jail);
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            for c in [Component::ControlApi, Component::UsageWorker, Component::AllInOne] {
                cfg.validate(c).map_err(|e| e.to_string())?;
            }
            cfg.for_dataplane()
                .validate(Component::Dataplane)
                .map_err(|e| e.to_string())?;
            assert_eq!(cfg.control_api.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(cfg.dataplane.listen.to_string(), "127.0.0.1:8081");
            assert_eq!(cfg.usage_worker.listen.to_string(), "127.0.0.1:8082");
            Ok(())
        });
    }

    #[test]
    fn a_dataplane_refuses_the_platform_keys_and_needs_its_own_secret() {
        for (var, setting) in [
            ("ENCRYPTION_KEYS", "secrets.encryption_keys"),
            ("SIGNING_SECRET", "secrets.signing_secret"),
        ] {
            Jail::expect_with(|jail| {
                valid_env(jail);
                let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
                cfg.validate(Component::ControlApi).map_err(|e| e.to_string())?;
                dataplane_env(jail);
                let platform = if var == "ENCRYPTION_KEYS" {
                    "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
                } else {
                    "c2lnbmluZy1zZWNyZXQtZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM="
                };
                jail.set_env(format!("GATEHOUSE_SECRETS__{var}"), platform);
                let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
                let err = cfg.validate(Component::Dataplane).unwrap_err();
                assert_eq!(err.setting, setting, "{err}");
                assert!(err.to_string().contains("dataplane_secret"), "{err}");
                assert!(!err.to_string().contains("AAECAwQF"), "{err}");
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            dataplane_env(jail);
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            cfg.validate(Component::Dataplane).map_err(|e| e.to_string())?;
            // The platform secrets are not needed, nor is the dataplane's, by the usage worker.
            jail.set_env("GATEHOUSE_SECRETS__DATAPLANE_SECRET", "");
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            cfg.validate(Component::UsageWorker).map_err(|e| e.to_string())?;
            for c in [Component::Dataplane, Component::ControlApi, Component::AllInOne] {
                let err = valid_for_control_api_but(jail, c)?;
                assert_eq!(err, "secrets.dataplane_secret", "{c:?}");
            }
            Ok(())
        });
    }

    /// The setting named when `component` validates the full configuration minus the dataplane
    /// secret.
    fn valid_for_control_api_but(jail: &mut Jail, component: Component) -> figment::error::Result<String> {
        valid_env(jail);
        jail.set_env("GATEHOUSE_SECRETS__DATAPLANE_SECRET", "");
        let mut cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
        if component == Component::Dataplane {
            cfg = cfg.for_dataplane();
        }
        Ok(cfg.validate(component).unwrap_err().setting)
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
    fn an_internal_listener_on_the_public_address_is_refused() {
        Jail::expect_with(|jail| {
            valid_env(jail);
            jail.set_env("GATEHOUSE_CONTROL_API__LISTEN", "0.0.0.0:8080");
            jail.set_env("GATEHOUSE_CONTROL_API__INTERNAL_LISTEN", "10.0.0.5:8080");
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            let err = cfg.validate(Component::ControlApi).unwrap_err();
            assert_eq!(err.setting, "control_api.internal_listen", "{err}");
            jail.set_env("GATEHOUSE_CONTROL_API__INTERNAL_LISTEN", "10.0.0.5:8090");
            dataplane_env(jail);
            jail.set_env("GATEHOUSE_DATAPLANE__INTERNAL_LISTEN", "127.0.0.1:8081");
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            let err = cfg.validate(Component::Dataplane).unwrap_err();
            assert_eq!(err.setting, "dataplane.internal_listen", "{err}");
            Ok(())
        });
    }

    #[test]
    fn batch_and_stream_limits_are_validated() {
        for (var, value, setting) in [
            ("MAX_BATCH_MESSAGES", "0", "dataplane.max_batch_messages"),
            ("MAX_BATCH_MESSAGES", "10001", "dataplane.max_batch_messages"),
            (
                "MAX_BATCH_ANSWER_BYTES",
                "1023",
                "dataplane.max_batch_answer_bytes",
            ),
            ("BATCH_TIMEOUT_MS", "0", "dataplane.batch_timeout_ms"),
            (
                "MAX_STREAMS_PER_SUBJECT",
                "0",
                "dataplane.max_streams_per_subject",
            ),
        ] {
            Jail::expect_with(|jail| {
                dataplane_env(jail);
                jail.set_env(format!("GATEHOUSE_DATAPLANE__{var}"), value);
                let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
                let err = cfg.validate(Component::Dataplane).unwrap_err();
                assert_eq!(err.setting, setting, "{var}={value}: {err}");
                Ok(())
            });
        }
    }

    #[test]
    fn hosted_sql_runtime_settings_are_validated() {
        for (var, value) in [
            ("POOL_SIZE", "0"),
            ("POOL_SIZE", "65"),
            ("ACQUIRE_TIMEOUT_MS", "0"),
            ("IDLE_CLOSE_AFTER_SECS", "0"),
            ("IDLE_IN_TRANSACTION_TIMEOUT_MS", "0"),
            ("CALL_MARGIN_MS", "60001"),
            ("BREAKER_THRESHOLD", "0"),
            ("BREAKER_OPEN_SECS", "0"),
        ] {
            Jail::expect_with(|jail| {
                dataplane_env(jail);
                jail.set_env(format!("GATEHOUSE_HOSTED_SQL__{var}"), value);
                let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
                let err = cfg.validate(Component::Dataplane).unwrap_err();
                assert_eq!(
                    err.setting,
                    format!("hosted_sql.{}", var.to_ascii_lowercase()),
                    "{var}={value}: {err}"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn operator_token_hash_must_be_a_sha256() {
        Jail::expect_with(|jail| {
            valid_env(jail);
            jail.set_env("GATEHOUSE_OPERATOR__TOKEN_SHA256", "not-a-hash");
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            let err = cfg.validate(Component::ControlApi).unwrap_err();
            assert_eq!(err.setting, "operator.token_sha256", "{err}");
            let hash = hex::encode(crate::secrets::token_hash("operator"));
            jail.set_env("GATEHOUSE_OPERATOR__TOKEN_SHA256", &hash);
            // The client side's token variable is not a setting and does not trip the loader.
            jail.set_env(OPERATOR_TOKEN_ENV, "operator");
            let cfg = Config::load(&Sources::default()).map_err(|e| e.to_string())?;
            cfg.validate(Component::ControlApi).map_err(|e| e.to_string())?;
            assert_eq!(
                cfg.operator.token_hash(),
                Some(crate::secrets::token_hash("operator"))
            );
            assert!(
                cfg.billing.enforce_hard_limits,
                "hard limits are enforced by default"
            );
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
}
