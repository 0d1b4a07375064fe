//! A backend as the runtime and the control plane use it: the opened connection string, TLS,
//! the context key and the limits every call runs with.

use std::str::FromStr;
use std::time::Duration;

use gatehouse_core::ids::{BackendId, OrgId};
use gatehouse_core::secrets::Keyring;
use gatehouse_core::snapshot::{BackendSnapshot, backend_context_key_context, backend_dsn_context};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::context::ContextKey;
use crate::statement::FunctionAllowlist;

/// Ceiling on a backend's row cap.
pub const MAX_ROWS_LIMIT: i32 = 10_000;

/// How the connection to a backend is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify_ca",
            TlsMode::VerifyFull => "verify_full",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TlsMode::Disable,
            TlsMode::Require,
            TlsMode::VerifyCa,
            TlsMode::VerifyFull,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// Why a backend's configuration is unusable. The text names the field, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendConfigError(pub String);

/// Everything needed to connect to a backend and run its tools.
#[derive(Clone)]
pub struct BackendConfig {
    pub id: BackendId,
    pub org_id: OrgId,
    dsn: SecretString,
    /// The host and port of the connection string (for the SSRF guard).
    host: (String, u16),
    pub tls: TlsMode,
    pub ca_pem: Option<String>,
    pub context_key: ContextKey,
    pub search_path: Vec<String>,
    pub allowed_functions: FunctionAllowlist,
    pub statement_timeout: Duration,
    pub max_rows: usize,
    /// Identifies this configuration: a pool made for another one is replaced.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("id", &self.id)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Connection-string parameters Gatehouse sets itself or refuses: TLS comes from the backend's
/// own fields, and nothing may point the connection at local files or sockets.
const REFUSED_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "options",
    "host",
    "hostaddr",
    "port",
    "passfile",
    "service",
    "servicefile",
];

/// Checks a connection string: `postgres://user:password@host[:port]/database`, a network host,
/// no parameters that reach local files or override TLS. Returns the host and port.
pub fn check_dsn(dsn: &str) -> Result<(String, u16), BackendConfigError> {
    const SHAPE: &str = "must be a postgres://role:password@host:port/database URL";
    let url = url::Url::parse(dsn).map_err(|_| BackendConfigError(SHAPE.into()))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(BackendConfigError(SHAPE.into()));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| BackendConfigError("must name a host".into()))?;
    if host.starts_with('/') || host.starts_with("%2F") || host.starts_with("%2f") {
        return Err(BackendConfigError(
            "must name a network host, not a socket".into(),
        ));
    }
    if url.username().is_empty() {
        return Err(BackendConfigError("must name the tool role (user)".into()));
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err(BackendConfigError("must name a database".into()));
    }
    for (name, _) in url.query_pairs() {
        if REFUSED_PARAMS.contains(&name.as_ref()) {
            return Err(BackendConfigError(format!(
                "must not set `{name}` (TLS has its own fields; local files and sockets are not reachable)"
            )));
        }
    }
    PgConnectOptions::from_str(dsn)
        .map_err(|_| BackendConfigError("is not a valid connection string".into()))?;
    Ok((host.to_owned(), url.port().unwrap_or(5432)))
}

impl BackendConfig {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        org_id: OrgId,
        id: BackendId,
        dsn: SecretString,
        tls: TlsMode,
        ca_pem: Option<String>,
        context_key: ContextKey,
        search_path: Vec<String>,
        allowed_functions: &[String],
        statement_timeout: Duration,
        max_rows: usize,
    ) -> Result<Self, BackendConfigError> {
        let host = check_dsn(dsn.expose_secret())?;
        let mut h = Sha256::new();
        for part in [
            dsn.expose_secret().as_bytes(),
            tls.as_str().as_bytes(),
            ca_pem.as_deref().unwrap_or("").as_bytes(),
            context_key.bytes().as_slice(),
            search_path.join("\u{1f}").as_bytes(),
            allowed_functions.join("\u{1f}").as_bytes(),
            &statement_timeout.as_millis().to_be_bytes(),
            &max_rows.to_be_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Ok(Self {
            id,
            org_id,
            dsn,
            host,
            tls,
            ca_pem,
            context_key,
            search_path,
            allowed_functions: FunctionAllowlist::new(allowed_functions),
            statement_timeout,
            max_rows,
            fingerprint: h.finalize().into(),
        })
    }

    /// Opens a backend of `org`'s snapshot with the keyring that sealed it.
    pub fn from_snapshot(
        org_id: OrgId,
        snapshot: &BackendSnapshot,
        keyring: &Keyring,
    ) -> Result<Self, BackendConfigError> {
        let dsn = keyring
            .open(&snapshot.dsn.0, &backend_dsn_context(org_id, snapshot.id))
            .map_err(|e| BackendConfigError(format!("the connection string cannot be opened: {e}")))?;
        let dsn = String::from_utf8(dsn)
            .map_err(|_| BackendConfigError("the connection string is not UTF-8".into()))?;
        let key = keyring
            .open(
                &snapshot.context_key.0,
                &backend_context_key_context(org_id, snapshot.id),
            )
            .map_err(|e| BackendConfigError(format!("the context key cannot be opened: {e}")))?;
        let tls = TlsMode::parse(&snapshot.tls.mode)
            .ok_or_else(|| BackendConfigError(format!("unknown TLS mode {:?}", snapshot.tls.mode)))?;
        Self::new(
            org_id,
            snapshot.id,
            SecretString::from(dsn),
            tls,
            snapshot.tls.ca_pem.clone(),
            ContextKey::from_bytes(&key).map_err(|e| BackendConfigError(e.to_string()))?,
            snapshot.allowed_schemas.clone(),
            &snapshot.allowed_functions,
            Duration::from_millis(u64::try_from(snapshot.statement_timeout_ms.max(1)).unwrap_or(1)),
            usize::try_from(snapshot.max_rows.clamp(1, MAX_ROWS_LIMIT)).unwrap_or(1),
        )
    }

    /// The host and port the connection string names.
    pub fn host_port(&self) -> (String, u16) {
        self.host.clone()
    }

    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Connection options: the tool role's connection string with TLS as configured, no
    /// statement cache (statements are unnamed, so a transaction-mode pooler in front of the
    /// backend works), and no startup parameters a pooler would refuse.
    pub fn connect_options(&self) -> Result<PgConnectOptions, BackendConfigError> {
        let mut options = PgConnectOptions::from_str(self.dsn.expose_secret())
            .map_err(|_| BackendConfigError("the connection string is not valid".into()))?
            .ssl_mode(match self.tls {
                TlsMode::Disable => PgSslMode::Disable,
                TlsMode::Require => PgSslMode::Require,
                TlsMode::VerifyCa => PgSslMode::VerifyCa,
                TlsMode::VerifyFull => PgSslMode::VerifyFull,
            })
            .statement_cache_capacity(0)
            .extra_float_digits(None)
            .application_name("gatehouse-hosted-sql");
        if let Some(pem) = &self.ca_pem {
            options = options.ssl_root_cert_from_pem(pem.as_bytes().to_vec());
        }
        Ok(options)
    }

    /// The `SET LOCAL search_path` value: each schema quoted as an identifier.
    pub fn search_path_sql(&self) -> String {
        if self.search_path.is_empty() {
            return "pg_catalog".into();
        }
        self.search_path
            .iter()
            .map(|s| format!("\"{}\"", s.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_reach_only_network_databases() {
        assert_eq!(
            check_dsn("postgres://tools:pw@db.internal:6432/shop").unwrap(),
            ("db.internal".to_owned(), 6432)
        );
        for (dsn, why) in [
            ("mysql://u@h/d", "postgres://"),
            ("not a url", "postgres://"),
            ("postgres://u@/d", "host"),
            ("postgres://h/d", "tool role"),
            ("postgres://u@h", "database"),
            ("postgres://u@h/d?sslrootcert=/etc/shadow", "sslrootcert"),
            ("postgres://u@h/d?host=/var/run/postgresql", "host"),
            ("postgres://u@h/d?options=-c%20role%3Dpostgres", "options"),
            ("postgres://u@h/d?sslmode=disable", "sslmode"),
            ("postgres://u@%2Fvar%2Frun/d", "socket"),
        ] {
            let err = check_dsn(dsn).unwrap_err().0;
            assert!(err.contains(why), "{dsn}: {err}");
        }
    }
}
