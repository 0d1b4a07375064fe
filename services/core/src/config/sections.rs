//! The per-section settings structs: one per `[section]` of `defaults.toml`, each rejecting
//! unknown keys so that a misspelt setting stops the process.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

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
    pub internal_listen: SocketAddr,
    pub public_url: Url,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub trusted_proxies: Vec<String>,
    pub resync_interval_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    pub listen: SocketAddr,
    pub internal_listen: SocketAddr,
    pub public_url: Url,
    pub control_api_url: Url,
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<String>,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_batch_messages: usize,
    pub max_batch_answer_bytes: usize,
    pub batch_timeout_ms: u64,
    pub max_streams_per_subject: usize,
    pub redact_secrets: bool,
    pub max_upstream_message_bytes: usize,
    pub upstream_timeout_ms: u64,
    pub max_upstream_sessions: usize,
    pub upstream_session_idle_secs: u64,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub spool_segment_bytes: u64,
    pub snapshot_reconcile_secs: u64,
    pub max_pin_check_bytes: usize,
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
    pub retention_sweep_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    pub enforce_hard_limits: bool,
}

/// How the dataplane runs hosted SQL tools on tenant backends (`gatehouse-hosted-sql`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostedSqlConfig {
    pub pool_size: u32,
    pub acquire_timeout_ms: u64,
    pub idle_close_after_secs: u64,
    pub idle_in_transaction_timeout_ms: u64,
    pub call_margin_ms: u64,
    pub breaker_threshold: u32,
    pub breaker_open_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    pub token_sha256: String,
}

impl OperatorConfig {
    /// The configured token hash as bytes; `None` when no operator token is configured (or the
    /// value is malformed, which `validate` refuses at start).
    pub fn token_hash(&self) -> Option<Vec<u8>> {
        let hex = self.token_sha256.trim();
        if hex.is_empty() {
            return None;
        }
        hex::decode(hex).ok().filter(|bytes| bytes.len() == 32)
    }
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
    pub dataplane_secret: SecretString,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    pub smtp_url: SecretString,
    pub smtp_ca_file: PathBuf,
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
    pub max_document_bytes: usize,
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

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    pub dns_nameservers: Vec<String>,
    pub dns_timeout_ms: u64,
    pub link_ttl_secs: u64,
}

impl SsoConfig {
    /// The configured DNS servers as socket addresses (port 53 when none is given).
    pub fn nameservers(&self) -> Result<Vec<std::net::SocketAddr>, String> {
        self.dns_nameservers
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<std::net::SocketAddr>()
                    .or_else(|_| {
                        entry
                            .parse::<std::net::IpAddr>()
                            .map(|ip| std::net::SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| format!("{entry:?} is not an IP address with an optional port"))
            })
            .collect()
    }
}
