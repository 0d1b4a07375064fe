//! The configuration snapshot: everything a dataplane needs to serve one org's endpoints without
//! touching the database. The control API builds it (`GET /internal/v1/orgs/{org_id}/snapshot`),
//! the dataplane holds the latest one per org in memory and swaps it when a change is published.
//!
//! Secrets stay sealed inside the snapshot (`Sealed`), so no credential crosses the wire in the
//! clear. They are not the values at rest: the control API opens each with the platform keyring
//! (`secrets.encryption_keys`) and seals it again with the snapshot key derived from
//! `secrets.dataplane_secret` ([`OrgSnapshot::reseal`]), under the same context (which binds the
//! value to its org and server or backend). The dataplane holds only the snapshot key: it cannot
//! open what the platform database stores, and a snapshot value does not open with the platform
//! keys either.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{BackendId, EndpointId, OrgId, ServerId, ServiceTokenId, ToolId};
use crate::role::Role;
use crate::secrets::Keyring;
use crate::upstream::UpstreamTransport;

/// Separator between a server's namespace and a tool's own name: `orders__get_order`.
pub const TOOL_NAMESPACE_SEPARATOR: &str = "__";

/// The name a tool is exposed under at an endpoint.
pub fn namespaced_tool_name(server_slug: &str, tool_name: &str) -> String {
    format!("{server_slug}{TOOL_NAMESPACE_SEPARATOR}{tool_name}")
}

/// A value sealed with the keyring (see `secrets::Keyring`), base64 on the wire. The context it
/// was sealed with is documented next to each field.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(#[serde(with = "base64_bytes")] pub Vec<u8>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed([REDACTED])")
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Seal context of a domain server's credential.
pub fn server_credential_context(org: OrgId, server: ServerId) -> String {
    format!("gatehouse/server-credential/{org}/{server}")
}

/// Seal context of a backend's DSN.
pub fn backend_dsn_context(org: OrgId, backend: BackendId) -> String {
    format!("gatehouse/backend-dsn/{org}/{backend}")
}

/// Seal context of a backend's caller-context signing key.
pub fn backend_context_key_context(org: OrgId, backend: BackendId) -> String {
    format!("gatehouse/backend-context-key/{org}/{backend}")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgSnapshot {
    pub org_id: OrgId,
    pub slug: String,
    /// `org_settings.config_version` when the snapshot was read; newer replaces older.
    pub version: i64,
    /// Record tool-call arguments in audit events (otherwise only their hash).
    pub log_tool_arguments: bool,
    /// Calls per billing period beyond which calls are refused; `None` means no hard cap.
    pub hard_limit_calls: Option<i64>,
    /// Suspended by an operator: the org's endpoints refuse every request.
    #[serde(default)]
    pub suspended: bool,
    pub endpoints: Vec<EndpointSnapshot>,
    pub servers: Vec<ServerSnapshot>,
    pub backends: Vec<BackendSnapshot>,
    pub revocations: Vec<Revocation>,
    pub service_tokens: Vec<ServiceTokenSnapshot>,
    /// What the dataplane signs into a hosted SQL call's caller context beyond the credential:
    /// each member's email and attribute values, and each service token's attribute values.
    #[serde(default)]
    pub callers: Vec<CallerSnapshot>,
}

/// A caller's email and per-org attribute values (`gatehouse.email()`, `gatehouse.claim(name)` on
/// a hosted SQL backend).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerSnapshot {
    /// The subject as the dataplane names it: a user id, or `service_token:<id>`.
    pub subject: String,
    pub email: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

impl OrgSnapshot {
    /// Re-seals every sealed value from `from` (the keys at rest) to `to` (the snapshot key),
    /// each under its own context. A value that does not open with `from` is emptied (the
    /// dataplane then reports that server or backend unusable, as it would have) and named in
    /// the returned list.
    pub fn reseal(&mut self, from: &Keyring, to: &Keyring) -> Vec<String> {
        let org = self.org_id;
        let mut problems = Vec::new();
        let mut reseal = |sealed: &mut Sealed, context: String, what: String| {
            *sealed = match from.open(&sealed.0, &context) {
                Ok(plain) => Sealed(to.seal(&plain, &context)),
                Err(e) => {
                    problems.push(format!("{what}: {e}"));
                    Sealed(Vec::new())
                }
            };
        };
        for server in &mut self.servers {
            let context = server_credential_context(org, server.id);
            let what = format!("credential of server {}", server.id);
            match &mut server.auth {
                UpstreamAuth::None => {}
                UpstreamAuth::Bearer { token: sealed }
                | UpstreamAuth::Header { value: sealed, .. }
                | UpstreamAuth::OauthClientCredentials {
                    client_secret: sealed,
                    ..
                } => reseal(sealed, context, what),
            }
        }
        for backend in &mut self.backends {
            reseal(
                &mut backend.dsn,
                backend_dsn_context(org, backend.id),
                format!("connection string of backend {}", backend.id),
            );
            reseal(
                &mut backend.context_key,
                backend_context_key_context(org, backend.id),
                format!("context key of backend {}", backend.id),
            );
        }
        problems
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointSnapshot {
    pub id: EndpointId,
    pub slug: String,
    pub name: String,
    /// The canonical resource URL: the access token audience.
    pub resource_url: String,
    pub rate_limits: RateLimits,
    /// Approved tools exposed at this endpoint, in the order `tools/list` serves them: by server,
    /// then as the server lists them.
    pub tools: Vec<EndpointTool>,
    /// Every scope of the org, with the tools of this endpoint it grants (possibly none).
    pub scopes: Vec<ScopeSnapshot>,
    /// Upstream prompts (`prompts/list`, `prompts/get`), when the endpoint exposes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<CapabilityGrant>,
    /// Upstream resources (`resources/*`), when the endpoint exposes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<CapabilityGrant>,
    /// Methods beyond those Gatehouse understands that the endpoint forwards to its upstream:
    /// exact names, or prefixes written `prefix/*` (see [`extra_method_allowed`]). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_methods: Vec<String>,
    /// Name every scope that grants something here in 401 challenges and the protected-resource
    /// metadata; otherwise only the scopes any member may hold (minimum role viewer).
    #[serde(default)]
    pub publish_scopes: bool,
}

/// Method namespaces of MCP itself: an extra method can never be in one of them, so that an
/// endpoint's opt-in cannot reopen a method Gatehouse polices (`tasks/*`, `resources/*`, ...).
const MCP_NAMESPACES: &[&str] = &[
    "completion",
    "elicitation",
    "initialize",
    "logging",
    "notifications",
    "ping",
    "prompts",
    "resources",
    "roots",
    "sampling",
    "server",
    "skills",
    "subscriptions",
    "tasks",
    "tools",
];

/// At most this many extra methods per endpoint.
pub const MAX_EXTRA_METHODS: usize = 32;
const MAX_EXTRA_METHOD_LEN: usize = 128;

/// Why `entry` cannot be an extra method of an endpoint (`None`: it can). An entry is a method
/// name or a prefix written `prefix/*`: letters, digits and `_ . - /`, at most 128 characters,
/// outside MCP's own namespaces.
pub fn extra_method_problem(entry: &str) -> Option<&'static str> {
    let name = entry.strip_suffix("/*").unwrap_or(entry);
    if name.is_empty() || entry.len() > MAX_EXTRA_METHOD_LEN {
        return Some("must be a method name or a `prefix/*` of 1 to 128 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/');
    if !name.chars().all(allowed) || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some(
            "may hold only letters, digits, `_`, `.`, `-` and single inner `/` (and end in `/*` for a prefix)",
        );
    }
    let namespace = name.split('/').next().unwrap_or(name);
    if MCP_NAMESPACES.contains(&namespace) {
        return Some(
            "is in a namespace of MCP itself, whose methods Gatehouse serves (or refuses) on its own",
        );
    }
    None
}

/// Whether `method` is one of `extra`: an exact entry, or under a `prefix/*` entry. Entries that
/// [`extra_method_problem`] refuses never match.
pub fn extra_method_allowed(extra: &[String], method: &str) -> bool {
    extra.iter().any(|entry| {
        if extra_method_problem(entry).is_some() {
            return false;
        }
        match entry.strip_suffix('*') {
            Some(prefix) => method.len() > prefix.len() && method.starts_with(prefix),
            None => method == entry,
        }
    })
}

/// Who may use a non-tool capability (prompts, resources) of an endpoint. The same rule decides
/// listing and use: a caller who may not get a prompt does not see it listed either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityGrant {
    /// The scope required; `None` means any caller authorized for the endpoint.
    pub scope: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointTool {
    pub tool_id: ToolId,
    /// The name clients see: `<server slug>__<tool name>`, or the tool's own name on an endpoint
    /// with a single server that does not namespace (nothing to shadow). Unique at the endpoint.
    pub exposed_name: String,
    pub target: ToolTarget,
    /// The approved definition (with the upstream's own `name`); served with `name` replaced by
    /// `exposed_name`.
    pub approved_definition: serde_json::Value,
    /// `canonical::tool_definition_hash` of the approved definition.
    pub approved_hash: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolTarget {
    /// A tool of an upstream MCP server, called by its upstream name.
    Upstream {
        server_id: ServerId,
        upstream_name: String,
    },
    /// A hosted SQL tool on a tenant backend (run by `gatehouse-hosted-sql`).
    Sql(SqlToolTarget),
}

/// What the runtime needs to run a hosted SQL tool: the statement as the backend runs it, its
/// parameters and result columns with the types learned from the backend when the tool was
/// defined, and whether it writes or destroys. All of it is covered by the approved hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SqlToolTarget {
    pub backend_id: BackendId,
    /// The tool's own name (without the backend's namespace).
    pub name: String,
    /// The statement with its `:name` parameters rewritten to `$1, $2, …`.
    pub sql: String,
    /// Parameters in position order (`params[0]` is `$1`).
    pub params: Vec<SqlColumn>,
    /// Result columns, in order.
    pub columns: Vec<SqlColumn>,
    /// `read` (runs `READ ONLY`) or `write`.
    pub access: String,
    /// Runs only after the caller confirmed this call.
    pub destructive: bool,
}

/// A named, typed parameter or column of a SQL tool; `pg_type` is the tool type as
/// `gatehouse-hosted-sql` describes it (`{"type": "int4"}`, `{"type": "text", "array": true}`, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SqlColumn {
    pub name: String,
    pub pg_type: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSnapshot {
    pub name: String,
    pub tool_ids: Vec<ToolId>,
    /// The lowest member role that may hold the scope (`None`: not known, treated as not
    /// available to every member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_role: Option<Role>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerSnapshot {
    pub id: ServerId,
    pub slug: String,
    pub url: String,
    pub transport: UpstreamTransport,
    pub auth: UpstreamAuth,
    pub send_caller_assertion: bool,
}

/// How Gatehouse authenticates to an upstream: always with the server's own credential, never
/// with the caller's token. Sealed with `server_credential_context`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpstreamAuth {
    None,
    Bearer {
        token: Sealed,
    },
    Header {
        name: String,
        value: Sealed,
    },
    OauthClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: Sealed,
        scope: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendSnapshot {
    pub id: BackendId,
    pub slug: String,
    /// The connection string of the backend's tool role, sealed with `backend_dsn_context`.
    pub dsn: Sealed,
    /// How the connection is protected.
    pub tls: BackendTls,
    /// The key that signs caller contexts for this backend, sealed with
    /// `backend_context_key_context`.
    pub context_key: Sealed,
    /// The `search_path` every tool runs with.
    pub allowed_schemas: Vec<String>,
    /// Functions the backend's admin allowed beyond the built-in allowlist (the runtime
    /// validates each statement again when it loads it).
    pub allowed_functions: Vec<String>,
    pub statement_timeout_ms: i32,
    /// Most rows a call returns (reads) or changes (writes).
    pub max_rows: i32,
}

/// TLS to a backend. `verify_full` checks the certificate chain (against `ca_pem` when given,
/// else the public web roots) and the host name; `verify_ca` only the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendTls {
    /// `disable`, `require`, `verify_ca` or `verify_full`.
    pub mode: String,
    /// A CA certificate (PEM) to trust for this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// A revocation the dataplane honours until `expires_at` (when every affected access token has
/// expired anyway).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub kind: RevocationKind,
    pub value: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Only tokens issued (`iat`) at or before this time are revoked, so that tokens obtained
    /// after the event that revoked them (a password change, a demotion) work. `None`: every
    /// token matching the value. Set for `user` revocations.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub issued_before: Option<OffsetDateTime>,
}

impl Revocation {
    /// Whether a token issued at `issued_at` (unix seconds; `None`: unknown) is caught, while
    /// the revocation lives. `iat` has whole seconds, so a token issued in the same second as
    /// the revocation is caught too.
    pub fn catches(&self, issued_at: Option<u64>) -> bool {
        match (self.issued_before, issued_at) {
            (Some(cutoff), Some(iat)) => i128::from(iat) <= i128::from(cutoff.unix_timestamp()),
            _ => true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// A refresh-token family (access tokens carry it as the `sid` claim).
    Family,
    /// One access token by `jti`.
    Jti,
    /// Every token of a user (value: user id) at this org.
    User,
    /// Every token of an OAuth client (value: client id) at this org.
    Client,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTokenSnapshot {
    pub id: ServiceTokenId,
    pub endpoint_id: EndpointId,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// Rate limits configured on an endpoint. Each is a GCRA limit: `per_minute` sustained, with
/// `burst` extra requests allowed at once. Absent means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Shared by every caller of the endpoint's org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_org: Option<Limit>,
    /// Per subject (user, service token or OAuth client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_subject: Option<Limit>,
    /// Per exposed tool name, across callers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_tool: BTreeMap<String, Limit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub per_minute: u32,
    #[serde(default)]
    pub burst: u32,
}

/// A published configuration change: the dataplane refetches the org's snapshot if `version` is
/// newer than what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub org_id: OrgId,
    pub version: i64,
}

/// Versions of every org, for a dataplane starting cold or reconciling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgVersions {
    pub orgs: Vec<ConfigChange>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{DataplaneKeys, SealError, generate_key_b64, generate_signing_secret_b64};

    #[test]
    fn resealed_values_open_only_with_the_snapshot_key_and_their_own_context() {
        let platform = Keyring::parse(&format!("k1={}", generate_key_b64())).unwrap();
        let snapshot = DataplaneKeys::derive(&generate_signing_secret_b64())
            .unwrap()
            .snapshot;
        let (org, server, broken, backend) =
            (OrgId::new(), ServerId::new(), ServerId::new(), BackendId::new());
        let server_snapshot = |id: ServerId, token: Sealed| ServerSnapshot {
            id,
            slug: "s".into(),
            url: "https://upstream.example".into(),
            transport: UpstreamTransport::StreamableHttp,
            auth: UpstreamAuth::Bearer { token },
            send_caller_assertion: false,
        };
        let mut snap = OrgSnapshot {
            org_id: org,
            slug: "acme".into(),
            version: 1,
            log_tool_arguments: false,
            hard_limit_calls: None,
            suspended: false,
            endpoints: vec![],
            callers: vec![],
            servers: vec![
                server_snapshot(
                    server,
                    Sealed(platform.seal(b"upstream-token", &server_credential_context(org, server))),
                ),
                // Sealed for another org: it must not become usable by being re-sealed.
                server_snapshot(
                    broken,
                    Sealed(platform.seal(b"x", &server_credential_context(OrgId::new(), broken))),
                ),
            ],
            backends: vec![BackendSnapshot {
                id: backend,
                slug: "b".into(),
                dsn: Sealed(platform.seal(b"postgres://tool@db/x", &backend_dsn_context(org, backend))),
                tls: BackendTls {
                    mode: "disable".into(),
                    ca_pem: None,
                },
                context_key: Sealed(platform.seal(&[7; 32], &backend_context_key_context(org, backend))),
                allowed_schemas: vec![],
                allowed_functions: vec![],
                statement_timeout_ms: 1000,
                max_rows: 10,
            }],
            revocations: vec![],
            service_tokens: vec![],
        };
        let at_rest = snap.clone();
        let problems = snap.reseal(&platform, &snapshot);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains(&broken.to_string()), "{problems:?}");

        let token = |s: &OrgSnapshot, i: usize| match &s.servers[i].auth {
            UpstreamAuth::Bearer { token } => token.0.clone(),
            other => panic!("{other:?}"),
        };
        let context = server_credential_context(org, server);
        assert_eq!(
            snapshot.open(&token(&snap, 0), &context).unwrap(),
            b"upstream-token"
        );
        assert!(matches!(
            platform.open(&token(&snap, 0), &context),
            Err(SealError::UnknownKey(_))
        ));
        assert!(matches!(
            snapshot.open(&token(&at_rest, 0), &context),
            Err(SealError::UnknownKey(_))
        ));
        // Bound to its server: moved to the other server's slot it does not open.
        assert_eq!(
            snapshot.open(&token(&snap, 0), &server_credential_context(org, broken)),
            Err(SealError::Inauthentic)
        );
        assert_eq!(
            snapshot.open(&token(&snap, 1), &server_credential_context(org, broken)),
            Err(SealError::Malformed)
        );
        let b = &snap.backends[0];
        assert_eq!(
            snapshot
                .open(&b.dsn.0, &backend_dsn_context(org, backend))
                .unwrap(),
            b"postgres://tool@db/x"
        );
        assert_eq!(
            snapshot
                .open(&b.context_key.0, &backend_context_key_context(org, backend))
                .unwrap(),
            [7; 32]
        );
        assert!(
            platform
                .open(&b.dsn.0, &backend_dsn_context(org, backend))
                .is_err()
        );
    }

    #[test]
    fn extra_methods_are_names_or_prefixes_outside_mcp() {
        for ok in ["acme/export", "acme/*", "vendor.ping", "x-y/z_1/*"] {
            assert_eq!(extra_method_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "*",
            "/*",
            "tasks/*",
            "tools/secret",
            "notifications/x",
            "ping",
            "a b",
            "a//b",
            "a/",
            "ü/x",
        ] {
            assert!(extra_method_problem(bad).is_some(), "{bad:?}");
        }
        let extra = vec![
            "acme/*".to_owned(),
            "vendor.ping".to_owned(),
            "tasks/*".to_owned(),
        ];
        assert!(extra_method_allowed(&extra, "acme/export"));
        assert!(extra_method_allowed(&extra, "acme/a/b"));
        assert!(!extra_method_allowed(&extra, "acme/"));
        assert!(!extra_method_allowed(&extra, "acmeX/export"));
        assert!(extra_method_allowed(&extra, "vendor.ping"));
        assert!(!extra_method_allowed(&extra, "vendor.pingx"));
        assert!(
            !extra_method_allowed(&extra, "tasks/get"),
            "an MCP namespace never opens"
        );
    }

    #[test]
    fn a_cutoff_catches_tokens_issued_up_to_its_second() {
        let cutoff = time::macros::datetime!(2026-12-06 10:00:00.5 UTC);
        let revocation = Revocation {
            kind: RevocationKind::User,
            value: "u".into(),
            expires_at: cutoff + time::Duration::minutes(11),
            issued_before: Some(cutoff),
        };
        let at = cutoff.unix_timestamp() as u64;
        assert!(revocation.catches(Some(at - 60)));
        assert!(revocation.catches(Some(at)), "the same second is caught");
        assert!(!revocation.catches(Some(at + 1)));
        assert!(revocation.catches(None));
        let everything = Revocation {
            issued_before: None,
            ..revocation.clone()
        };
        assert!(everything.catches(Some(at + 1000)));
        // The cutoff travels in the snapshot; an older snapshot without it catches everything.
        let json = serde_json::to_value(&revocation).unwrap();
        assert!(json["issued_before"].is_string());
        let old: Revocation = serde_json::from_value(serde_json::json!({
            "kind": "user", "value": "u", "expires_at": "2026-12-06T10:11:00Z"
        }))
        .unwrap();
        assert_eq!(old.issued_before, None);
    }
}
