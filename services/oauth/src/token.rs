//! The token endpoint: authorization_code (PKCE S256, single use), refresh_token (rotation with
//! reuse detection), client_credentials (service clients). Access tokens are RFC 9068 JWTs.

use std::collections::{BTreeSet, HashMap};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use gatehouse_core::ids::{EndpointId, OrgId, RefreshFamilyId, UserId};
use gatehouse_core::secrets::{constant_time_eq, token_hash};
use gatehouse_db::repos::oauth_refresh::{self, NewFamily};
use gatehouse_db::repos::{audit, oauth_codes, oauth_scopes, oauth_service_clients, orgs};
use gatehouse_db::{Actor, ActorType, AuditOutcome, NewAuditEvent, OrgScope, TenantTx};

use crate::clients::{self, Authenticated};
use crate::error::{OAuthError, OAuthResult};
use crate::grants::{self, Selection};
use crate::jwt::{ACCESS_TOKEN_TYP, AccessTokenClaims, SubjectKind};
use crate::{OAuthState, scopes, tokens};

/// Parsed `application/x-www-form-urlencoded` parameters; a repeated parameter is an error.
pub struct Form(HashMap<String, String>);

impl Form {
    pub fn parse(req: &HttpRequest, body: &[u8]) -> OAuthResult<Self> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(OAuthError::InvalidRequest(
                "send the parameters as application/x-www-form-urlencoded".into(),
            ));
        }
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if map.insert(k.clone().into_owned(), v.into_owned()).is_some() {
                return Err(OAuthError::InvalidRequest(format!(
                    "the parameter {k} appears more than once"
                )));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn require(&self, key: &str) -> OAuthResult<&str> {
        self.get(key)
            .ok_or_else(|| OAuthError::InvalidRequest(format!("{key} is required")))
    }
}

#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

fn respond(body: &TokenResponse) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(body)
}

/// `POST /oauth/token`.
pub async fn token(
    state: web::Data<OAuthState>,
    req: HttpRequest,
    body: web::Bytes,
) -> OAuthResult<HttpResponse> {
    let form = Form::parse(&req, &body)?;
    let grant_type = form.require("grant_type")?;
    let grant_type = grant_type.to_owned();
    let presented = clients::presented(&req, form.get("client_id"), form.get("client_secret"))?;
    let response = match grant_type.as_str() {
        "authorization_code" => {
            let client = clients::authenticate(&state, &presented).await?;
            authorization_code(&state, &form, client).await?
        }
        "refresh_token" => {
            let client = clients::authenticate(&state, &presented).await?;
            refresh_token(&state, &form, client).await?
        }
        "client_credentials" => {
            let client = clients::authenticate(&state, &presented).await?;
            client_credentials(&state, &form, client).await?
        }
        "password" => {
            return Err(OAuthError::UnsupportedGrantType(
                "the resource owner password grant is not supported (OAuth 2.1)".into(),
            ));
        }
        other => {
            return Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type {other} is not supported"
            )));
        }
    };
    metrics::counter!("gatehouse_oauth_tokens_issued_total", "grant" => grant_type).increment(1);
    Ok(respond(&response))
}

/// What an access token is issued for.
pub struct Grant<'a> {
    pub org: OrgId,
    pub endpoint: EndpointId,
    pub resource: &'a str,
    pub subject: String,
    pub kind: SubjectKind,
    pub client_id: &'a str,
    pub scopes: &'a BTreeSet<String>,
    pub family: Option<RefreshFamilyId>,
}

/// Signs an access token for `grant`.
pub async fn mint_access_token(state: &OAuthState, grant: &Grant<'_>) -> OAuthResult<String> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = AccessTokenClaims {
        iss: state.issuer(),
        sub: grant.subject.clone(),
        aud: grant.resource.to_owned(),
        client_id: grant.client_id.to_owned(),
        scope: scopes::join(grant.scopes),
        org_id: grant.org.to_string(),
        endpoint_id: grant.endpoint.to_string(),
        jti: uuid::Uuid::now_v7().to_string(),
        iat: now,
        nbf: now,
        exp: now + state.cfg.oauth.access_token_ttl_secs as i64,
        sid: grant.family.map(|f| f.to_string()),
        gh_kind: grant.kind,
    };
    Ok(state.signing.sign(ACCESS_TOKEN_TYP, &claims).await?)
}

/// RFC 7636: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge, with a well-formed
/// verifier (43-128 unreserved characters).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed
        && constant_time_eq(
            URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()))
                .as_bytes(),
            challenge.as_bytes(),
        )
}

fn registered(client: Authenticated) -> OAuthResult<Box<gatehouse_db::repos::oauth_clients::OAuthClientRow>> {
    match client {
        Authenticated::Registered(c) => Ok(c),
        Authenticated::Service { .. } => Err(OAuthError::UnauthorizedClient(
            "service clients use the client_credentials grant".into(),
        )),
    }
}

fn client_actor(client_id: &str) -> Actor {
    Actor {
        kind: ActorType::OauthClient,
        id: Some(client_id.to_owned()),
        label: None,
    }
}

async fn authorization_code(
    state: &OAuthState,
    form: &Form,
    client: Authenticated,
) -> OAuthResult<TokenResponse> {
    let client = registered(client)?;
    let code = form.require("code")?;
    let redirect_uri = form.require("redirect_uri")?;
    let verifier = form.get("code_verifier");
    let invalid =
        || OAuthError::InvalidGrant("the authorization code is invalid, expired or already used".into());
    let org = tokens::org_of(code, tokens::CODE_PREFIX).ok_or_else(invalid)?;
    let hash = token_hash(code);
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
    let Some(row) = oauth_codes::consume(&mut tx, &hash).await? else {
        // Unknown, or a replay: a replay revokes what the first redemption issued.
        if let Some(used) = oauth_codes::find_consumed(&mut tx, &hash).await? {
            let mut revoked = grants::Revoked::default();
            if let Some(family) = used.family_id {
                revoked = grants::revoke(
                    &mut tx,
                    &state.cfg,
                    &Selection {
                        family: Some(family),
                        ..Default::default()
                    },
                    "code_reuse",
                    client_actor(&client.client_id),
                )
                .await?;
            }
            audit::append(
                &mut tx,
                &[
                    NewAuditEvent::control(client_actor(&client.client_id), "oauth.code_reuse_detected")
                        .outcome(AuditOutcome::Denied)
                        .details(json!({"family_id": used.family_id, "user_id": used.user_id})),
                ],
            )
            .await?;
            tx.commit().await?;
            grants::publish(&state.notifier, org, revoked.version).await;
            tracing::warn!(%org, "authorization code replayed; its grant was revoked");
        } else {
            tx.commit().await?;
        }
        return Err(invalid());
    };
    // The code is consumed from here on, whatever the outcome: a failed redemption burns it.
    let checks = [
        (
            row.expires_at > OffsetDateTime::now_utc(),
            "the authorization code expired",
        ),
        (
            row.client_id == client.client_id,
            "the authorization code was issued to another client",
        ),
        (
            row.redirect_uri == redirect_uri,
            "redirect_uri differs from the authorization request",
        ),
    ];
    if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
        tx.commit().await?;
        return Err(OAuthError::InvalidGrant((*why).into()));
    }
    let Some(verifier) = verifier else {
        tx.commit().await?;
        return Err(OAuthError::InvalidGrant(
            "code_verifier is required (PKCE)".into(),
        ));
    };
    if !pkce_matches(verifier, &row.code_challenge) {
        tx.commit().await?;
        return Err(OAuthError::InvalidGrant(
            "code_verifier does not match the code challenge".into(),
        ));
    }
    if let Some(resource) = form.get("resource")
        && resource != row.resource
    {
        tx.commit().await?;
        return Err(OAuthError::InvalidTarget(
            "resource differs from the authorization request".into(),
        ));
    }
    let authorized: BTreeSet<String> = row.scopes.iter().cloned().collect();
    // A token request may narrow the authorized scopes (RFC 6749 §3.3), never widen them.
    let granted = match scopes::narrow(form.get("scope"), &authorized) {
        Ok(granted) => granted,
        Err(why) => {
            tx.commit().await?;
            return Err(OAuthError::InvalidScope(why.into()));
        }
    };
    // Membership is rechecked: the user may have left the org since authorizing.
    if orgs::member_role(&mut tx, row.user_id).await?.is_none() {
        tx.commit().await?;
        return Err(OAuthError::InvalidGrant(
            "the user is no longer a member of the organization".into(),
        ));
    }
    let family = RefreshFamilyId::new();
    let scopes_vec: Vec<String> = granted.iter().cloned().collect();
    oauth_refresh::create_family(
        &mut tx,
        &NewFamily {
            id: family,
            client_id: &client.client_id,
            user_id: row.user_id,
            endpoint_id: row.endpoint_id,
            scopes: &scopes_vec,
            resource: &row.resource,
        },
    )
    .await?;
    let refresh = tokens::new_refresh_token(org);
    oauth_refresh::insert_token(
        &mut tx,
        family,
        &token_hash(&refresh),
        0,
        state.cfg.oauth.refresh_token_ttl_secs as i64,
    )
    .await?;
    oauth_codes::record_family(&mut tx, &hash, family).await?;
    audit::append(
        &mut tx,
        &[
            NewAuditEvent::control(user_actor(row.user_id), "oauth.grant_created")
                .target("oauth_grant", family)
                .details(json!({
                    "client_id": client.client_id,
                    "endpoint_id": row.endpoint_id,
                    "scopes": scopes_vec,
                })),
        ],
    )
    .await?;
    let access = mint_access_token(
        state,
        &Grant {
            org,
            endpoint: row.endpoint_id,
            resource: &row.resource,
            subject: row.user_id.to_string(),
            kind: SubjectKind::User,
            client_id: &client.client_id,
            scopes: &granted,
            family: Some(family),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.cfg.oauth.access_token_ttl_secs,
        refresh_token: Some(refresh),
        scope: scopes::join(&granted),
    })
}

fn user_actor(user: UserId) -> Actor {
    Actor {
        kind: ActorType::User,
        id: Some(user.to_string()),
        label: None,
    }
}

async fn refresh_token(state: &OAuthState, form: &Form, client: Authenticated) -> OAuthResult<TokenResponse> {
    let client = registered(client)?;
    let presented = form.require("refresh_token")?;
    let invalid = |why: &str| OAuthError::InvalidGrant(why.to_owned());
    let org = tokens::org_of(presented, tokens::REFRESH_PREFIX)
        .ok_or_else(|| invalid("the refresh token is invalid"))?;
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
    let Some(token) = oauth_refresh::find_token_for_update(&mut tx, &token_hash(presented)).await? else {
        tx.commit().await?;
        return Err(invalid("the refresh token is invalid"));
    };
    let family = oauth_refresh::get_family(&mut tx, token.family_id)
        .await?
        .ok_or_else(|| invalid("the refresh token is invalid"))?;
    if family.client_id != client.client_id {
        tx.commit().await?;
        return Err(invalid("the refresh token was issued to another client"));
    }
    if family.revoked_at.is_some() {
        tx.commit().await?;
        return Err(invalid("the grant was revoked"));
    }
    let now = OffsetDateTime::now_utc();
    if let Some(rotated_at) = token.rotated_at {
        // A rotated token presented again. Only the immediate predecessor of the newest token,
        // within the grace period, is a retry; anything else is reuse and revokes the family.
        let grace = time::Duration::seconds(state.cfg.oauth.refresh_reuse_grace_secs as i64);
        let retry = grace.is_positive()
            && token.generation + 1 == token.latest_generation
            && now - rotated_at <= grace;
        if !retry {
            let revoked = grants::revoke(
                &mut tx,
                &state.cfg,
                &Selection {
                    family: Some(family.id),
                    ..Default::default()
                },
                "refresh_reuse",
                client_actor(&client.client_id),
            )
            .await?;
            audit::append(
                &mut tx,
                &[
                    NewAuditEvent::control(client_actor(&client.client_id), "oauth.refresh_reuse_detected")
                        .target("oauth_grant", family.id)
                        .outcome(AuditOutcome::Denied)
                        .details(json!({"user_id": family.user_id, "generation": token.generation})),
                ],
            )
            .await?;
            tx.commit().await?;
            grants::publish(&state.notifier, org, revoked.version).await;
            tracing::warn!(%org, family = %family.id, "refresh token reuse detected; grant revoked");
            return Err(invalid(
                "the refresh token was already used; the grant is revoked",
            ));
        }
    }
    if token.expires_at <= now {
        tx.commit().await?;
        return Err(invalid("the refresh token expired"));
    }
    if let Some(resource) = form.get("resource")
        && resource != family.resource
    {
        tx.commit().await?;
        return Err(OAuthError::InvalidTarget(
            "the grant is for another resource".into(),
        ));
    }
    let consented: BTreeSet<String> = family.scopes.iter().cloned().collect();
    let mut granted = match scopes::narrow(form.get("scope"), &consented) {
        Ok(granted) => granted,
        Err(why) => {
            tx.commit().await?;
            return Err(OAuthError::InvalidScope(why.into()));
        }
    };
    // The user's membership and role are rechecked on every refresh.
    let Some(role) = orgs::member_role(&mut tx, family.user_id).await? else {
        let revoked = grants::revoke(
            &mut tx,
            &state.cfg,
            &Selection {
                family: Some(family.id),
                ..Default::default()
            },
            "member_left",
            Actor::system("authorization server"),
        )
        .await?;
        tx.commit().await?;
        grants::publish(&state.notifier, org, revoked.version).await;
        return Err(invalid("the user is no longer a member of the organization"));
    };
    let endpoint_scopes = oauth_scopes::granting_scopes(&mut tx, family.endpoint_id).await?;
    granted.retain(|g| {
        endpoint_scopes
            .iter()
            .any(|s| &s.name == g && scopes::role_allows(role, &s.min_role))
    });
    oauth_refresh::rotate_all(&mut tx, family.id).await?;
    let refresh = tokens::new_refresh_token(org);
    oauth_refresh::insert_token(
        &mut tx,
        family.id,
        &token_hash(&refresh),
        token.latest_generation + 1,
        state.cfg.oauth.refresh_token_ttl_secs as i64,
    )
    .await?;
    oauth_refresh::touch_family(&mut tx, family.id).await?;
    let access = mint_access_token(
        state,
        &Grant {
            org,
            endpoint: family.endpoint_id,
            resource: &family.resource,
            subject: family.user_id.to_string(),
            kind: SubjectKind::User,
            client_id: &client.client_id,
            scopes: &granted,
            family: Some(family.id),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.cfg.oauth.access_token_ttl_secs,
        refresh_token: Some(refresh),
        scope: scopes::join(&granted),
    })
}

async fn client_credentials(
    state: &OAuthState,
    form: &Form,
    client: Authenticated,
) -> OAuthResult<TokenResponse> {
    let Authenticated::Service { org, client } = client else {
        return Err(OAuthError::UnauthorizedClient(
            "only service clients created by an org admin may use client_credentials".into(),
        ));
    };
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
    let endpoint = oauth_scopes::endpoint_by_id(&mut tx, client.endpoint_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("the client's endpoint no longer exists"))?;
    let org_row = orgs::get(&mut tx).await?;
    let resource = state.cfg.endpoint_url(&org_row.slug, &endpoint.slug);
    if let Some(asked) = form.get("resource")
        && asked != resource
    {
        tx.commit().await?;
        return Err(OAuthError::InvalidTarget(
            "the client is bound to another resource".into(),
        ));
    }
    let allowed: BTreeSet<String> = client.scopes.iter().cloned().collect();
    let granted = match scopes::narrow(form.get("scope"), &allowed) {
        Ok(granted) => granted,
        Err(why) => {
            tx.commit().await?;
            return Err(OAuthError::InvalidScope(why.into()));
        }
    };
    oauth_service_clients::touch_last_used(&mut tx, client.id).await?;
    tx.commit().await?;
    let access = mint_access_token(
        state,
        &Grant {
            org,
            endpoint: endpoint.id,
            resource: &resource,
            subject: client.client_id.clone(),
            kind: SubjectKind::Client,
            client_id: &client.client_id,
            scopes: &granted,
            family: None,
        },
    )
    .await?;
    Ok(TokenResponse {
        access_token: access,
        token_type: "Bearer",
        expires_in: state.cfg.oauth.access_token_ttl_secs,
        refresh_token: None,
        scope: scopes::join(&granted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn challenge_of(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }

    #[test]
    fn the_right_verifier_matches() {
        let v = gatehouse_core::secrets::random_token(48);
        assert!(pkce_matches(&v, &challenge_of(&v)));
        // A vector computed independently (Python hashlib + base64url).
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc"
        ));
        // Too short or with characters outside the unreserved set: never, even if hashed right.
        for bad in ["short", &"a".repeat(129), &format!("{}+", "a".repeat(50))] {
            assert!(!pkce_matches(bad, &challenge_of(bad)), "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// 10,000 random wrong verifiers (43-128 unreserved characters): none matches.
        #[test]
        fn rfc9700_p2_random_wrong_verifiers_never_match(wrong in "[A-Za-z0-9._~-]{43,128}") {
            let right = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
            prop_assume!(wrong != right);
            prop_assert!(!pkce_matches(&wrong, &challenge_of(right)));
        }
    }
}
