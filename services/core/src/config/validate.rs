//! The checks at start: [`Config::validate`] verifies that the settings a [`Component`] needs are
//! present and coherent, before anything listens.

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{Config, ConfigError, Mode};
use crate::secrets::{DataplaneKeys, DerivedKeys, Keyring};

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

impl Config {
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
        self.validate_secrets(component)?;
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
        for (setting, internal, public) in [
            (
                "control_api.internal_listen",
                self.control_api.internal_listen,
                self.control_api.listen,
            ),
            (
                "dataplane.internal_listen",
                self.dataplane.internal_listen,
                self.dataplane.listen,
            ),
        ] {
            if same_listener(internal, public) {
                return Err(ConfigError::new(
                    setting,
                    format!(
                        "must differ from the public listen address {public}: /internal and /metrics are \
                         served only there"
                    ),
                ));
            }
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
        for (setting, entries) in [
            ("control_api.trusted_proxies", &self.control_api.trusted_proxies),
            ("dataplane.trusted_proxies", &self.dataplane.trusted_proxies),
        ] {
            crate::net::TrustedProxies::parse(entries).map_err(|why| ConfigError::new(setting, &why))?;
        }
        if self.dataplane.max_upstream_message_bytes < 1024 {
            return Err(ConfigError::new(
                "dataplane.max_upstream_message_bytes",
                "must be at least 1024",
            ));
        }
        let sql = &self.hosted_sql;
        for (setting, value, min, max) in [
            ("hosted_sql.pool_size", u64::from(sql.pool_size), 1, 64),
            ("hosted_sql.acquire_timeout_ms", sql.acquire_timeout_ms, 1, 60_000),
            (
                "hosted_sql.idle_close_after_secs",
                sql.idle_close_after_secs,
                1,
                86_400,
            ),
            (
                "hosted_sql.idle_in_transaction_timeout_ms",
                sql.idle_in_transaction_timeout_ms,
                1,
                600_000,
            ),
            ("hosted_sql.call_margin_ms", sql.call_margin_ms, 0, 60_000),
            (
                "hosted_sql.breaker_threshold",
                u64::from(sql.breaker_threshold),
                1,
                1_000,
            ),
            ("hosted_sql.breaker_open_secs", sql.breaker_open_secs, 1, 3_600),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::new(
                    setting,
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        if self.dataplane.max_pin_check_bytes < 1024 {
            return Err(ConfigError::new(
                "dataplane.max_pin_check_bytes",
                "must be at least 1024",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.egress.max_document_bytes) {
            return Err(ConfigError::new(
                "egress.max_document_bytes",
                "must be between 1024 and 67108864 (64 MiB)",
            ));
        }
        if self.dataplane.max_json_depth == 0 || self.dataplane.max_json_depth > 512 {
            return Err(ConfigError::new(
                "dataplane.max_json_depth",
                "must be between 1 and 512",
            ));
        }
        if self.dataplane.max_batch_messages == 0 || self.dataplane.max_batch_messages > 10_000 {
            return Err(ConfigError::new(
                "dataplane.max_batch_messages",
                "must be between 1 and 10000",
            ));
        }
        if self.dataplane.max_batch_answer_bytes < 1024 {
            return Err(ConfigError::new(
                "dataplane.max_batch_answer_bytes",
                "must be at least 1024",
            ));
        }
        if self.dataplane.batch_timeout_ms == 0 {
            return Err(ConfigError::new(
                "dataplane.batch_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.dataplane.max_upstream_sessions == 0 {
            return Err(ConfigError::new(
                "dataplane.max_upstream_sessions",
                "must be at least 1",
            ));
        }
        if self.dataplane.max_streams_per_subject == 0 {
            return Err(ConfigError::new(
                "dataplane.max_streams_per_subject",
                "must be at least 1",
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
            (
                "usage_worker.retention_sweep_secs",
                self.usage_worker.retention_sweep_secs,
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
        self.sso
            .nameservers()
            .map_err(|why| ConfigError::new("sso.dns_nameservers", why))?;
        if self.sso.dns_timeout_ms == 0 || self.sso.dns_timeout_ms > 30_000 {
            return Err(ConfigError::new(
                "sso.dns_timeout_ms",
                "must be between 1 and 30000",
            ));
        }
        if self.sso.link_ttl_secs < 60 || self.sso.link_ttl_secs > 7 * 86400 {
            return Err(ConfigError::new(
                "sso.link_ttl_secs",
                "must be between 60 and 604800 (7 days)",
            ));
        }
        let operator_token = self.operator.token_sha256.trim();
        if !operator_token.is_empty() && self.operator.token_hash().is_none() {
            return Err(ConfigError::new(
                "operator.token_sha256",
                "must be the SHA-256 of the operator token as 64 hex digits (`gatehouse admin new-token` prints one)",
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
}

impl Config {
    /// Each process holds only the secrets it needs: the control API (and `gatehouse up`) the
    /// platform's and the dataplane's, a dataplane only its own, the usage worker and `migrate`
    /// none.
    fn validate_secrets(&self, component: Component) -> Result<(), ConfigError> {
        let platform = matches!(component, Component::ControlApi | Component::AllInOne);
        if platform {
            Keyring::parse(self.secrets.encryption_keys.expose_secret())
                .map_err(|problem| ConfigError::new("secrets.encryption_keys", problem))?;
            DerivedKeys::derive(self.secrets.signing_secret.expose_secret())
                .map_err(|problem| ConfigError::new("secrets.signing_secret", problem))?;
        }
        if component == Component::Dataplane {
            for (setting, value) in [
                ("secrets.encryption_keys", &self.secrets.encryption_keys),
                ("secrets.signing_secret", &self.secrets.signing_secret),
            ] {
                if !value.expose_secret().trim().is_empty() {
                    return Err(ConfigError::new(
                        setting,
                        "must not be set for the dataplane: it opens nothing at rest and signs no \
                         console session, and holds only secrets.dataplane_secret (remove the \
                         platform keys from its environment)",
                    ));
                }
            }
        }
        if platform || component == Component::Dataplane {
            DataplaneKeys::derive(self.secrets.dataplane_secret.expose_secret())
                .map_err(|problem| ConfigError::new("secrets.dataplane_secret", problem))?;
        }
        Ok(())
    }
}

/// Whether two listen addresses would be the same socket: same port (not 0, which picks a free
/// one) on the same address, or on the wildcard address of either.
fn same_listener(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
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
