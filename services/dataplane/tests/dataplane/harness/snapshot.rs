//! Org snapshots as the control API would publish them: upstream servers (`ServerSpec`), endpoints
//! exposing their tools under scopes, service tokens (`OrgSpec`).

use serde_json::Value;

use gatehouse_core::canonical::tool_definition_hash;
use gatehouse_core::ids::{EndpointId, OrgId, ServerId, ServiceTokenId, ToolId};
use gatehouse_core::snapshot::*;
use gatehouse_core::upstream::UpstreamTransport;

use super::upstream_tools;

/// One upstream server of an endpoint.
pub struct ServerSpec {
    pub id: ServerId,
    pub slug: String,
    pub url: String,
    pub tools: Vec<Value>,
    pub auth: UpstreamAuth,
    pub send_caller_assertion: bool,
}

impl ServerSpec {
    pub async fn fixture(slug: &str, url: &str) -> ServerSpec {
        ServerSpec {
            id: ServerId::new(),
            slug: slug.into(),
            url: url.into(),
            tools: upstream_tools(url).await,
            auth: UpstreamAuth::None,
            send_caller_assertion: false,
        }
    }
}

/// Builds an org snapshot: one endpoint over `servers`, tools exposed under `<slug>__<name>` when
/// `namespaced`, and `scopes` (name → exposed tool names; `*` for all).
pub struct OrgSpec {
    pub org_id: OrgId,
    pub slug: String,
    pub version: i64,
    pub endpoints: Vec<EndpointSnapshot>,
    pub servers: Vec<ServerSnapshot>,
    pub revocations: Vec<Revocation>,
    pub service_tokens: Vec<ServiceTokenSnapshot>,
    pub log_tool_arguments: bool,
}

impl OrgSpec {
    pub fn new(slug: &str) -> Self {
        Self {
            org_id: OrgId::new(),
            slug: slug.into(),
            version: 1,
            endpoints: vec![],
            servers: vec![],
            revocations: vec![],
            service_tokens: vec![],
            log_tool_arguments: false,
        }
    }

    /// Adds a server whose credential is sealed as the control API seals it for dataplanes: with
    /// the snapshot key (`Shared::snapshot_keys`).
    pub fn add_server(&mut self, spec: &ServerSpec, keyring: &gatehouse_core::secrets::Keyring) {
        let seal = |plain: &str| {
            Sealed(keyring.seal(plain.as_bytes(), &server_credential_context(self.org_id, spec.id)))
        };
        let auth = match &spec.auth {
            UpstreamAuth::Bearer { token } => UpstreamAuth::Bearer {
                token: seal(std::str::from_utf8(&token.0).unwrap()),
            },
            UpstreamAuth::Header { name, value } => UpstreamAuth::Header {
                name: name.clone(),
                value: seal(std::str::from_utf8(&value.0).unwrap()),
            },
            UpstreamAuth::OauthClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => UpstreamAuth::OauthClientCredentials {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: seal(std::str::from_utf8(&client_secret.0).unwrap()),
                scope: scope.clone(),
            },
            other => other.clone(),
        };
        self.servers.push(ServerSnapshot {
            id: spec.id,
            slug: spec.slug.clone(),
            url: spec.url.clone(),
            transport: UpstreamTransport::StreamableHttp,
            auth,
            send_caller_assertion: spec.send_caller_assertion,
        });
    }

    /// Adds an endpoint exposing `servers`' tools; returns its index.
    pub fn add_endpoint(
        &mut self,
        public_url: &str,
        slug: &str,
        servers: &[&ServerSpec],
        namespaced: bool,
        scopes: &[(&str, &[&str])],
    ) -> usize {
        let mut tools = Vec::new();
        for server in servers {
            for definition in &server.tools {
                let name = definition["name"].as_str().unwrap();
                let exposed = if namespaced {
                    namespaced_tool_name(&server.slug, name)
                } else {
                    name.to_owned()
                };
                tools.push(EndpointTool {
                    tool_id: ToolId::new(),
                    exposed_name: exposed,
                    target: ToolTarget::Upstream {
                        server_id: server.id,
                        upstream_name: name.to_owned(),
                    },
                    approved_definition: definition.clone(),
                    approved_hash: tool_definition_hash(definition),
                });
            }
        }
        // Kept in the upstreams' order (deterministic); the conformance suite calls the first
        // listed tool without arguments, and the fixture lists such a tool first.
        let scopes = scopes
            .iter()
            .map(|(name, grants)| ScopeSnapshot {
                name: (*name).into(),
                tool_ids: tools
                    .iter()
                    .filter(|t| grants.contains(&"*") || grants.contains(&t.exposed_name.as_str()))
                    .map(|t| t.tool_id)
                    .collect(),
                min_role: Some(gatehouse_core::role::Role::Viewer),
            })
            .collect();
        self.endpoints.push(EndpointSnapshot {
            id: EndpointId::new(),
            slug: slug.into(),
            name: format!("Endpoint {slug}"),
            resource_url: format!("{}/{}/{slug}/mcp", public_url.trim_end_matches('/'), self.slug),
            rate_limits: RateLimits::default(),
            tools,
            scopes,
            prompts: Some(CapabilityGrant { scope: None }),
            resources: Some(CapabilityGrant { scope: None }),
            extra_methods: vec![],
            publish_scopes: false,
        });
        self.endpoints.len() - 1
    }

    pub fn add_service_token(&mut self, endpoint: usize, scopes: &[&str]) -> String {
        let secret = gatehouse_core::secrets::random_token(32);
        let token = format!("ghs_{}_{secret}", self.org_id.as_uuid().simple());
        self.service_tokens.push(ServiceTokenSnapshot {
            id: ServiceTokenId::new(),
            endpoint_id: self.endpoints[endpoint].id,
            token_hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes())),
            name: "ci".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: None,
        });
        token
    }

    pub fn snapshot(&self) -> OrgSnapshot {
        OrgSnapshot {
            org_id: self.org_id,
            slug: self.slug.clone(),
            version: self.version,
            log_tool_arguments: self.log_tool_arguments,
            hard_limit_calls: None,
            suspended: false,
            endpoints: self.endpoints.clone(),
            servers: self.servers.clone(),
            backends: vec![],
            revocations: self.revocations.clone(),
            service_tokens: self.service_tokens.clone(),
            callers: vec![],
        }
    }
}
