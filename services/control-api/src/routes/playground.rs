//! The console's playground: one MCP request (`tools/list` or `tools/call`) to an endpoint of the
//! org, made **as the signed-in user** through the dataplane. The control API mints a short-lived
//! access token for the user (subject = the user, scopes = every scope of the endpoint the user's
//! role may hold, exactly what the authorization server would grant them), opens an MCP session
//! at the endpoint's public URL, sends the request and closes the session. The dataplane decides
//! as for any client: the user's grants, rate limits, quota, audit and usage all apply. The token
//! never leaves the server; the answer carries the JSON-RPC messages as sent and received.

use actix_web::{HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::EndpointId;
use gatehouse_core::role::Role;
use gatehouse_db::NewAuditEvent;
use gatehouse_db::repos::{audit, endpoints, oauth_scopes};
use gatehouse_mcp_client::answer_messages;
use gatehouse_oauth::OAuthState;
use gatehouse_oauth::jwt::SubjectKind;
use gatehouse_oauth::token::{Grant, mint_access_token};

use crate::auth::OrgMember;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(playground_call);
}

/// The `client_id` of the playground's tokens (the dataplane's audit names it).
pub const PLAYGROUND_CLIENT_ID: &str = "gatehouse-console";
/// The MCP revision the playground speaks to the dataplane.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// The most of a dataplane answer the playground reads.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How long reading the dataplane's answer to one message may take.
const ANSWER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The MCP methods the playground may send.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
pub enum PlaygroundMethod {
    #[serde(rename = "tools/list")]
    ToolsList,
    #[serde(rename = "tools/call")]
    ToolsCall,
}

impl PlaygroundMethod {
    fn as_str(self) -> &'static str {
        match self {
            PlaygroundMethod::ToolsList => "tools/list",
            PlaygroundMethod::ToolsCall => "tools/call",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaygroundIn {
    pub method: PlaygroundMethod,
    /// The request's `params`: for `tools/call`, `{"name": <exposed tool name>, "arguments": {…}}`;
    /// for `tools/list`, optionally `{"cursor": …}`.
    #[serde(default)]
    pub params: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlaygroundOut {
    /// The JSON-RPC request as sent to the endpoint.
    pub request: Value,
    /// The JSON-RPC response as received (`result` or `error`); absent when the dataplane refused
    /// the request at the HTTP level (see `http_status` and `detail`).
    pub response: Option<Value>,
    /// Other messages the dataplane streamed before the response (notifications such as progress).
    pub notifications: Vec<Value>,
    /// HTTP status of the dataplane's answer to the request.
    pub http_status: u16,
    /// Why there is no response: the dataplane's refusal (its `WWW-Authenticate` challenge or body).
    pub detail: Option<String>,
    /// The scopes of the user's token: those of the endpoint the user's role may hold.
    pub scopes: Vec<String>,
}

fn validate_params(input: &PlaygroundIn) -> Result<Value, ApiError> {
    let params = input.params.clone().unwrap_or_else(|| json!({}));
    let Some(object) = params.as_object() else {
        return Err(ApiError::invalid("params", "must be an object"));
    };
    if input.method == PlaygroundMethod::ToolsCall {
        let named = object
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !named {
            return Err(ApiError::invalid(
                "params.name",
                "the tool's exposed name is required",
            ));
        }
        if object.get("arguments").is_some_and(|a| !a.is_object()) {
            return Err(ApiError::invalid("params.arguments", "must be an object"));
        }
    }
    Ok(params)
}

/// Calls the endpoint as the signed-in user through the dataplane (see the module documentation):
/// the user's own grants decide, and the call is audited and counted like any other.
#[utoipa::path(
    operation_id = "endpoints.playground",
    tag = "endpoints",
    params(("org" = String, Path, description = "Org slug"), ("endpoint_id" = String, Path, format = Uuid)),
    request_body = PlaygroundIn,
    responses(
        (status = 200, body = PlaygroundOut, description = "The dataplane's answer, whatever it was"),
        (status = 400, body = Problem),
        (status = 404, body = Problem),
        (status = 502, body = Problem, description = "The dataplane could not be reached")
    )
)]
#[post("/orgs/{org}/endpoints/{endpoint_id}/playground")]
pub async fn playground_call(
    state: web::Data<AppState>,
    oauth: web::Data<OAuthState>,
    member: OrgMember,
    path: web::Path<(String, EndpointId)>,
    body: ValidJson<PlaygroundIn>,
) -> ApiResult<HttpResponse> {
    member.require(Role::Viewer)?;
    let (_, id) = path.into_inner();
    let ValidJson(input) = body;
    let mut tx = member.begin(&state).await?;
    // Another org's endpoint is not found whatever the request says.
    let endpoint = endpoints::get(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("endpoint"))?;
    let params = validate_params(&input)?;
    let endpoint_scopes = oauth_scopes::granting_scopes(&mut tx, id).await?;
    let (scopes, _) = gatehouse_oauth::scopes::for_role(None, &endpoint_scopes, member.role);
    audit::append(
        &mut tx,
        &[NewAuditEvent::control(member.actor(), "endpoint.playground_call")
            .target("endpoint", id)
            .client(member.current.client.ip, member.current.client.user_agent.clone())
            .details(json!({
                "method": input.method.as_str(),
                "tool": params.get("name"),
                "scopes": scopes,
            }))],
    )
    .await?;
    tx.commit().await?;

    let url = state.cfg.endpoint_url(&member.org.slug, &endpoint.slug);
    let token = mint_access_token(
        &oauth,
        &Grant {
            org: member.org.id,
            endpoint: id,
            resource: &url,
            subject: member.current.user.id.to_string(),
            kind: SubjectKind::User,
            client_id: PLAYGROUND_CLIENT_ID,
            scopes: &scopes,
            family: None,
        },
    )
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("minting the playground token: {e}")))?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": input.method.as_str(), "params": params});
    let session = McpSession {
        http: &state.dataplane_http,
        url: &url,
        token: &token,
    };
    let out = session.exchange(&request).await?;
    Ok(HttpResponse::Ok().json(PlaygroundOut {
        request,
        response: out.response,
        notifications: out.notifications,
        http_status: out.status,
        detail: out.detail,
        scopes: scopes.into_iter().collect(),
    }))
}

/// One request's worth of an MCP session with the dataplane.
struct McpSession<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    token: &'a str,
}

/// What the dataplane answered one message.
struct Answer {
    status: u16,
    session_id: Option<String>,
    response: Option<Value>,
    notifications: Vec<Value>,
    detail: Option<String>,
}

fn unreachable(e: reqwest::Error) -> ApiError {
    ApiError::Upstream(format!("the dataplane could not be reached: {e}"))
}

impl McpSession<'_> {
    async fn post(&self, message: &Value, session_id: Option<&str>) -> Result<Answer, ApiError> {
        let mut req = self
            .http
            .post(self.url)
            .bearer_auth(self.token)
            .header("accept", "application/json, text/event-stream")
            .json(message);
        if let Some(sid) = session_id {
            req = req
                .header("mcp-session-id", sid)
                .header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        let res = req.send().await.map_err(unreachable)?;
        let status = res.status().as_u16();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let session_id = header("mcp-session-id");
        let challenge = header("www-authenticate");
        let body = gatehouse_egress::read_body(res, MAX_ANSWER_BYTES, ANSWER_DEADLINE)
            .await
            .map_err(|e| ApiError::Upstream(format!("the endpoint's answer could not be read: {e}")))?;
        let text = String::from_utf8_lossy(&body);
        let messages = answer_messages(&text);
        let id = message.get("id");
        let (mut response, mut notifications) = (None, Vec::new());
        for m in messages {
            let answers_it =
                id.is_some() && m.get("id") == id && (m.get("result").is_some() || m.get("error").is_some());
            if answers_it && response.is_none() {
                response = Some(m);
            } else {
                notifications.push(m);
            }
        }
        let detail = (response.is_none() && !(200..300).contains(&status))
            .then(|| challenge.unwrap_or_else(|| text.chars().take(2000).collect()));
        Ok(Answer {
            status,
            session_id,
            response,
            notifications,
            detail,
        })
    }

    /// initialize → notifications/initialized → `request` → DELETE of the session. An answer
    /// refused before a session exists (401, 403, 429...) is returned as it is.
    async fn exchange(&self, request: &Value) -> Result<Answer, ApiError> {
        let initialize = json!({
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "Gatehouse console playground", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let init = self.post(&initialize, None).await?;
        let session_id = match (&init.session_id, &init.response) {
            (Some(sid), Some(r)) if r.get("result").is_some() => sid.clone(),
            _ => return Ok(init),
        };
        self.post(
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            Some(&session_id),
        )
        .await?;
        let answer = self.post(request, Some(&session_id)).await;
        // Closing the session is a courtesy: the dataplane expires it anyway.
        let _ = self
            .http
            .delete(self.url)
            .bearer_auth(self.token)
            .header("mcp-session-id", &session_id)
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .send()
            .await;
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_call_needs_a_name_and_object_arguments() {
        let call = |params: Value| PlaygroundIn {
            method: PlaygroundMethod::ToolsCall,
            params: Some(params),
        };
        assert!(validate_params(&call(json!({"name": "a__b", "arguments": {}}))).is_ok());
        assert!(validate_params(&call(json!({"arguments": {}}))).is_err());
        assert!(validate_params(&call(json!({"name": "a__b", "arguments": [1]}))).is_err());
        assert!(validate_params(&call(json!([1]))).is_err());
        let list = PlaygroundIn {
            method: PlaygroundMethod::ToolsList,
            params: None,
        };
        assert_eq!(validate_params(&list).unwrap(), json!({}));
    }
}
