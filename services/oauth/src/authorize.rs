//! The authorization endpoint (authorization code + PKCE S256 only, RFC 8707 resource required,
//! RFC 9207 `iss` on every response) and its login and consent forms.
//!
//! Every request, including the forms' POSTs, carries the raw authorization request (`q`) and is
//! validated by the same [`validate`]: there is one path from a query to a decision. Errors about
//! the client or its redirect URI are shown here; every later error is redirected to the client
//! with `error`, `state` and `iss`.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use time::OffsetDateTime;

use gatehouse_core::role::Role;
use gatehouse_core::secrets::token_hash;
use gatehouse_db::repos::oauth_clients::OAuthClientRow;
use gatehouse_db::repos::oauth_codes::{self, NewAuthorizationCode};
use gatehouse_db::repos::oauth_scopes::{self, EndpointRef, EndpointScope};
use gatehouse_db::repos::orgs::{self, OrgRow};
use gatehouse_db::repos::{audit, oauth_consents, sso, users};
use gatehouse_db::{Actor, ActorType, GlobalTx, NewAuditEvent, OrgScope, TenantTx};

use crate::error::OAuthError;
use crate::pages::{self, RequestView, ScopeLine};
use crate::redirect;
use crate::scopes;
use crate::session::{self, SignedIn};
use crate::{OAuthState, clients, tokens};

/// Longest `state` accepted (clients use a few dozen characters).
const MAX_STATE_LEN: usize = 1024;

/// A request that passed validation.
pub struct Validated {
    pub client: OAuthClientRow,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
    pub org: OrgRow,
    pub endpoint: EndpointRef,
    /// Explicitly requested scopes (`None`: all the endpoint's scopes the user may hold).
    pub requested: Option<BTreeSet<String>>,
    pub endpoint_scopes: Vec<EndpointScope>,
    /// The org signs its members in with its own OpenID Connect provider (offered on the login
    /// page beside the password).
    pub sso_enabled: bool,
    pub prompt: Option<String>,
    /// The request without `prompt`, carried through the forms.
    pub query: String,
}

/// Why a request cannot go on.
pub enum Rejection {
    /// Shown at the authorization server: the client or redirect URI is not trustworthy.
    Page {
        title: &'static str,
        message: String,
    },
    /// Sent back to the client's (validated) redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
    Internal(OAuthError),
}

impl From<OAuthError> for Rejection {
    fn from(e: OAuthError) -> Self {
        Rejection::Internal(e)
    }
}

impl From<gatehouse_db::DbError> for Rejection {
    fn from(e: gatehouse_db::DbError) -> Self {
        Rejection::Internal(e.into())
    }
}

impl Rejection {
    pub(crate) fn respond(self, state: &OAuthState) -> HttpResponse {
        match self {
            Rejection::Page { title, message } => pages::error_page(title, &message),
            Rejection::Redirect {
                redirect_uri,
                state: client_state,
                error,
                description,
            } => {
                let issuer = state.issuer();
                let mut params = vec![("error", error), ("error_description", description.as_str())];
                if let Some(s) = client_state.as_deref() {
                    params.push(("state", s));
                }
                params.push(("iss", issuer.as_str()));
                found(&redirect::with_params(&redirect_uri, &params))
            }
            Rejection::Internal(OAuthError::RateLimited { retry_after_secs }) => {
                let mut response = pages::error_page(
                    "Too many requests",
                    "Too many applications were looked up from your address. Try again later.",
                );
                *response.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
                if let Ok(value) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            Rejection::Internal(err) => {
                let message = match &err {
                    OAuthError::TemporarilyUnavailable => {
                        "The service is temporarily unavailable. Try again shortly."
                    }
                    _ => {
                        "Something went wrong on our side. Try again, and quote the x-request-id header if it persists."
                    }
                };
                if let OAuthError::ServerError(e) = &err {
                    tracing::error!(error = ?e, "authorization endpoint error");
                }
                let mut response = pages::error_page("Something went wrong", message);
                *response.status_mut() = if matches!(err, OAuthError::TemporarilyUnavailable) {
                    actix_web::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
                };
                response
            }
        }
    }
}

fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

/// The `{org}` and `{endpoint}` of a resource URL, if it has the exact form
/// `{dataplane public URL}/{org}/{endpoint}/mcp`.
pub fn parse_resource(cfg: &gatehouse_core::Config, resource: &str) -> Option<(String, String)> {
    let base = cfg.dataplane.public_url.as_str().trim_end_matches('/');
    let rest = resource.strip_prefix(base)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (org, endpoint, mcp) = (parts.next()?, parts.next()?, parts.next()?);
    let slug_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 40
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if parts.next().is_some() || mcp != "mcp" || !slug_ok(org) || !slug_ok(endpoint) {
        return None;
    }
    (cfg.endpoint_url(org, endpoint) == resource).then(|| (org.to_owned(), endpoint.to_owned()))
}

/// What a resource names: the org, the endpoint, the scopes that grant something there, and
/// whether the org has SSO.
pub struct Resolved {
    pub org: OrgRow,
    pub endpoint: EndpointRef,
    pub scopes: Vec<EndpointScope>,
    pub sso_enabled: bool,
}

/// The org and endpoint a resource names, with the scopes that grant something there.
pub async fn resolve_resource(
    state: &OAuthState,
    resource: &str,
) -> Result<Option<Resolved>, gatehouse_db::DbError> {
    let Some((org_slug, endpoint_slug)) = parse_resource(&state.cfg, resource) else {
        return Ok(None);
    };
    let mut global = GlobalTx::begin(&state.db).await?;
    let org = orgs::find_by_slug(&mut global, &org_slug).await?;
    global.commit().await?;
    let Some(org) = org else { return Ok(None) };
    // The endpoint and its scopes are what the endpoint's public metadata shows; reading them
    // grants nothing. Membership is checked before anything is issued.
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org.id)).await?;
    let endpoint = oauth_scopes::endpoint_by_slug(&mut tx, &endpoint_slug).await?;
    let scopes = match &endpoint {
        Some(e) => oauth_scopes::granting_scopes(&mut tx, e.id).await?,
        None => Vec::new(),
    };
    let sso_enabled = gatehouse_db::repos::sso::get(&mut tx)
        .await?
        .is_some_and(|p| p.enabled);
    tx.commit().await?;
    Ok(endpoint.map(|endpoint| Resolved {
        org,
        endpoint,
        scopes,
        sso_enabled,
    }))
}

fn is_code_challenge(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates a raw authorization request.
/// `ip` is the caller's address (a metadata document fetch counts against its allowance).
pub async fn validate(state: &OAuthState, raw: &str, ip: Option<IpAddr>) -> Result<Validated, Rejection> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    let mut params: HashMap<&str, &str> = HashMap::new();
    let mut duplicated = Vec::new();
    for (k, v) in &pairs {
        if params.insert(k.as_str(), v.as_str()).is_some() {
            duplicated.push(k.as_str());
        }
    }
    let page = |title: &'static str, message: &str| Rejection::Page {
        title,
        message: message.to_owned(),
    };
    if duplicated.contains(&"client_id") || duplicated.contains(&"redirect_uri") {
        return Err(page(
            "Invalid request",
            "The request repeats client_id or redirect_uri.",
        ));
    }
    let client_id = params
        .get("client_id")
        .copied()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            page(
                "Invalid request",
                "The request does not name an application (client_id).",
            )
        })?;
    let client = clients::find_registered(state, client_id, ip)
        .await?
        .ok_or_else(|| {
            if client_id.starts_with("https://") {
                page(
                    "Unknown application",
                    "The application's metadata document could not be fetched, or it is not valid.",
                )
            } else {
                page(
                    "Unknown application",
                    "The application is not registered with this server.",
                )
            }
        })?;
    let redirect_uri = params
        .get("redirect_uri")
        .copied()
        .ok_or_else(|| page("Invalid request", "The request has no redirect_uri."))?;
    if !redirect::matches_any(&client.redirect_uris, redirect_uri) {
        return Err(page(
            "Invalid redirect URI",
            "The redirect URI is not one the application registered. For your safety you were not sent back to it.",
        ));
    }
    let client_state = params.get("state").map(|s| (*s).to_owned());
    let fail = |error: &'static str, description: &str| Rejection::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: client_state.clone().filter(|s| s.len() <= MAX_STATE_LEN),
        error,
        description: description.to_owned(),
    };
    if let Some(k) = duplicated.first() {
        return Err(fail(
            "invalid_request",
            &format!("the parameter {k} appears more than once"),
        ));
    }
    if client_state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(fail("invalid_request", "state is too long"));
    }
    match params.get("response_type").copied() {
        Some("code") => {}
        None => return Err(fail("invalid_request", "response_type is required")),
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported (the implicit grant is not)",
            ));
        }
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code")
        || !client.response_types.iter().any(|r| r == "code")
    {
        return Err(fail(
            "unauthorized_client",
            "the client is not registered for the authorization code grant",
        ));
    }
    match params.get("code_challenge_method").copied() {
        Some("S256") => {}
        None => {
            return Err(fail(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
        Some(_) => {
            return Err(fail(
                "invalid_request",
                "only code_challenge_method=S256 is supported",
            ));
        }
    }
    let code_challenge = params
        .get("code_challenge")
        .copied()
        .filter(|c| is_code_challenge(c))
        .ok_or_else(|| {
            fail(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the code verifier",
            )
        })?;
    let resource = params
        .get("resource")
        .copied()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            fail(
                "invalid_target",
                "resource is required: the MCP endpoint URL (RFC 8707)",
            )
        })?;
    let Resolved {
        org,
        endpoint,
        scopes: endpoint_scopes,
        sso_enabled,
    } = resolve_resource(state, resource)
        .await?
        .ok_or_else(|| fail("invalid_target", "resource is not an MCP endpoint of this server"))?;
    let requested = match params.get("scope") {
        None => None,
        Some(s) => {
            let parsed = scopes::parse(s).ok_or_else(|| fail("invalid_scope", "scope is malformed"))?;
            let unknown = scopes::unknown(&parsed, &endpoint_scopes);
            if !unknown.is_empty() {
                return Err(fail(
                    "invalid_scope",
                    &format!(
                        "these scopes grant nothing at this endpoint: {}",
                        unknown.join(" ")
                    ),
                ));
            }
            (!parsed.is_empty()).then_some(parsed)
        }
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(k, _)| k != "prompt"))
        .finish();
    Ok(Validated {
        redirect_uri: redirect_uri.to_owned(),
        state: client_state,
        code_challenge: code_challenge.to_owned(),
        resource: resource.to_owned(),
        prompt: params.get("prompt").map(|p| (*p).to_owned()),
        client,
        org,
        endpoint,
        requested,
        endpoint_scopes,
        sso_enabled,
        query,
    })
}

impl Validated {
    pub(crate) fn reject(&self, error: &'static str, description: &str) -> Rejection {
        Rejection::Redirect {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            error,
            description: description.to_owned(),
        }
    }

    fn client_name(&self) -> &str {
        self.client
            .client_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.client.client_id)
    }

    fn view<'a>(&'a self, redirect_host: &'a str, issued_at: i64, csrf: &'a str) -> RequestView<'a> {
        RequestView {
            client_name: self.client_name(),
            client_id: &self.client.client_id,
            redirect_uri: &self.redirect_uri,
            redirect_host,
            local_only: self.client.redirect_uris.iter().all(|u| is_local_redirect(u)),
            org_name: &self.org.name,
            endpoint_name: &self.endpoint.name,
            resource: &self.resource,
            query: &self.query,
            issued_at,
            csrf,
            form_target: redirect::csp_source(&self.redirect_uri),
        }
    }

    fn redirect_host(&self) -> String {
        match url::Url::parse(&self.redirect_uri) {
            Ok(u) => match u.host_str() {
                Some(h) => h.to_owned(),
                None => format!("{}: (an application on this computer)", u.scheme()),
            },
            Err(_) => self.redirect_uri.clone(),
        }
    }
}

/// Whether a redirect URI ends on the user's own machine.
fn is_local_redirect(uri: &str) -> bool {
    match url::Url::parse(uri) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => true,
        },
        _ => true,
    }
}

pub(crate) fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn login_response(
    state: &OAuthState,
    v: &Validated,
    email: &str,
    error: Option<&str>,
) -> HttpResponse {
    let cookie = session::new_login_cookie(state);
    let issued_at = now();
    let csrf = session::login_csrf(state, cookie.value(), &v.query, issued_at);
    let host = v.redirect_host();
    // SSO signs the user in (a console session) and comes back to this request.
    let sso_url = v.sso_enabled.then(|| {
        let return_to = format!("/authorize?{}", v.query);
        session::sso_start_path(&v.org.slug, Some(&return_to))
    });
    let mut response = pages::login_page(&v.view(&host, issued_at, &csrf), email, error, sso_url.as_deref());
    let _ = response.add_cookie(&cookie);
    response
}

pub(crate) fn member_actor(user: &users::UserRow) -> Actor {
    Actor {
        kind: ActorType::User,
        id: Some(user.id.to_string()),
        label: Some(user.email.clone()),
    }
}

/// Decides for a signed-in user: consent page, or a code if consent is remembered.
async fn decide(
    state: &OAuthState,
    req: &HttpRequest,
    v: &Validated,
    signed_in: &SignedIn,
) -> Result<HttpResponse, Rejection> {
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(v.org.id)).await?;
    let access = sso::member_access(&mut tx, signed_in.user.id).await?;
    let consent =
        oauth_consents::find_live(&mut tx, signed_in.user.id, &v.client.client_id, v.endpoint.id).await?;
    tx.commit().await?;
    let Some((role, enforced)) = access else {
        return Err(v.reject(
            "access_denied",
            "the signed-in user is not a member of the endpoint's organization",
        ));
    };
    if !session::sso_satisfied(v.org.id, role, enforced.is_some(), signed_in.sso_org) {
        if v.prompt.as_deref() == Some("none") {
            return Err(v.reject(
                "login_required",
                "the organization requires single sign-on through its identity provider",
            ));
        }
        let message = format!(
            "The organization {} requires single sign-on: sign in through its identity provider.",
            v.org.name
        );
        return Ok(login_response(state, v, &signed_in.user.email, Some(&message)));
    }
    let (granted, withheld) = scopes::for_role(v.requested.as_ref(), &v.endpoint_scopes, role);
    let remembered = consent.is_some_and(|c| granted.iter().all(|g| c.scopes.contains(g)));
    if remembered && v.prompt.as_deref() != Some("consent") {
        let location = issue_code(state, req, v, signed_in, role, &granted, false).await?;
        return Ok(found(&location));
    }
    if v.prompt.as_deref() == Some("none") {
        return Err(v.reject(
            "consent_required",
            "the user has not approved this application yet",
        ));
    }
    let issued_at = now();
    let csrf = session::consent_csrf(state, &signed_in.session_token, &v.query, issued_at);
    let host = v.redirect_host();
    let lines: Vec<ScopeLine<'_>> = v
        .endpoint_scopes
        .iter()
        .filter(|s| granted.contains(&s.name))
        .map(|s| ScopeLine {
            name: &s.name,
            description: &s.description,
            tool_count: s.tool_count,
        })
        .collect();
    let withheld: Vec<String> = withheld.into_iter().collect();
    Ok(pages::consent_page(
        &v.view(&host, issued_at, &csrf),
        &signed_in.user.email,
        registration_label(&v.client),
        &lines,
        &withheld,
    ))
}

fn registration_label(client: &OAuthClientRow) -> &'static str {
    match client.registration_type.as_str() {
        "metadata_document" => "identified by its metadata document",
        _ => "registered dynamically; its name is self-asserted",
    }
}

/// Issues an authorization code (recording consent when `record_consent`) and returns the
/// redirect location.
pub(crate) async fn issue_code(
    state: &OAuthState,
    req: &HttpRequest,
    v: &Validated,
    signed_in: &SignedIn,
    role: Role,
    granted: &BTreeSet<String>,
    record_consent: bool,
) -> Result<String, Rejection> {
    let user = &signed_in.user;
    let code = tokens::new_code(v.org.id);
    let scopes: Vec<String> = granted.iter().cloned().collect();
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(v.org.id)).await?;
    // Checked again under a share lock on the org's SSO settings: switching enforcement on waits
    // for this code and then withdraws it, or this sees enforcement on.
    let enforced = sso::enforced_locked(&mut tx).await?;
    if !session::sso_satisfied(v.org.id, role, enforced, signed_in.sso_org) {
        tx.commit().await?;
        return Err(v.reject(
            "access_denied",
            "the organization requires single sign-on through its identity provider",
        ));
    }
    if record_consent {
        oauth_consents::grant(&mut tx, user.id, &v.client.client_id, v.endpoint.id, &scopes).await?;
        let info = gatehouse_http::ClientInfo::of(req);
        audit::append(
            &mut tx,
            &[
                NewAuditEvent::control(member_actor(user), "oauth.consent_granted")
                    .target("endpoint", v.endpoint.id)
                    .client(info.ip, info.user_agent)
                    .details(json!({
                        "client_id": v.client.client_id,
                        "client_name": v.client.client_name,
                        "registration_type": v.client.registration_type,
                        "redirect_uri": v.redirect_uri,
                        "scopes": scopes,
                        "role": role,
                    })),
            ],
        )
        .await?;
    }
    // Codes are few per org at any time: old ones go as new ones come.
    oauth_codes::delete_expired(&mut tx).await?;
    oauth_codes::insert(
        &mut tx,
        &NewAuthorizationCode {
            code_hash: &token_hash(&code),
            client_id: &v.client.client_id,
            user_id: user.id,
            endpoint_id: v.endpoint.id,
            redirect_uri: &v.redirect_uri,
            code_challenge: &v.code_challenge,
            scopes: &scopes,
            resource: &v.resource,
            ttl_secs: state.cfg.oauth.authorization_code_ttl_secs as i64,
        },
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("gatehouse_oauth_codes_issued_total").increment(1);
    let issuer = state.issuer();
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = v.state.as_deref() {
        params.push(("state", s));
    }
    params.push(("iss", issuer.as_str()));
    Ok(redirect::with_params(&v.redirect_uri, &params))
}

/// `GET /authorize`.
pub async fn authorize(state: web::Data<OAuthState>, req: HttpRequest) -> HttpResponse {
    let raw = req.query_string().to_owned();
    match authorize_inner(&state, &req, &raw).await {
        Ok(r) => r,
        Err(rejection) => rejection.respond(&state),
    }
}

async fn authorize_inner(
    state: &OAuthState,
    req: &HttpRequest,
    raw: &str,
) -> Result<HttpResponse, Rejection> {
    let v = validate(state, raw, gatehouse_http::client_ip(req)).await?;
    let signed_in = session::current(state, req).await?;
    let signed_in = match signed_in {
        Some(s) if v.prompt.as_deref() != Some("login") => s,
        _ => {
            if v.prompt.as_deref() == Some("none") {
                return Err(v.reject("login_required", "the user is not signed in"));
            }
            return Ok(login_response(state, &v, "", None));
        }
    };
    decide(state, req, &v, &signed_in).await
}
