//! RFC 7009 revocation and RFC 7662 introspection.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};
use time::OffsetDateTime;

use gatehouse_core::ids::OrgId;
use gatehouse_core::secrets::token_hash;
use gatehouse_core::snapshot::RevocationKind;
use gatehouse_db::repos::{oauth_refresh, oauth_revocations};
use gatehouse_db::{Actor, ActorType, OrgScope, TenantTx};

use crate::clients::{self, Authenticated};
use crate::error::{OAuthError, OAuthResult};
use crate::grants::{self, Selection};
use crate::jwt::{AccessTokenClaims, AccessTokenVerifier, SubjectKind};
use crate::token::Form;
use crate::{OAuthState, tokens};

/// A verifier over the keys published right now.
pub async fn current_verifier(state: &OAuthState) -> OAuthResult<AccessTokenVerifier> {
    let doc = crate::keys::published_jwks(&state.db).await?;
    let jwks: JwkSet = serde_json::from_value(doc).map_err(|e| OAuthError::ServerError(e.into()))?;
    Ok(AccessTokenVerifier::new(&jwks, &state.issuer()))
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

fn actor(client_id: &str) -> Actor {
    Actor {
        kind: ActorType::OauthClient,
        id: Some(client_id.to_owned()),
        label: None,
    }
}

/// `POST /oauth/revoke`: always 200 unless the client fails to authenticate (RFC 7009 §2.2).
pub async fn revoke(
    state: web::Data<OAuthState>,
    req: HttpRequest,
    body: web::Bytes,
) -> OAuthResult<HttpResponse> {
    let form = Form::parse(&req, &body)?;
    let presented = clients::presented(&req, form.get("client_id"), form.get("client_secret"))?;
    let client = clients::authenticate(&state, &presented).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
    if let Some(org) = tokens::org_of(token, tokens::REFRESH_PREFIX) {
        let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
        let mut version = None;
        if let Some(t) = oauth_refresh::find_token_for_update(&mut tx, &token_hash(token)).await?
            && let Some(family) = oauth_refresh::get_family(&mut tx, t.family_id).await?
            && family.client_id == client.client_id()
        {
            let revoked = grants::revoke(
                &mut tx,
                &state.cfg,
                &Selection {
                    family: Some(family.id),
                    ..Default::default()
                },
                "client_revoked",
                actor(client.client_id()),
            )
            .await?;
            version = revoked.version;
        }
        tx.commit().await?;
        grants::publish(&state.notifier, org, version).await;
    } else if looks_like_jwt(token) {
        let verifier = current_verifier(&state).await?;
        if let Ok(claims) = verifier.verify(token, None)
            && claims.client_id == client.client_id()
            && let Ok(org) = claims.org_id.parse::<OrgId>()
        {
            let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp)
                .unwrap_or_else(|_| OffsetDateTime::now_utc())
                + time::Duration::seconds(crate::keys::EXPIRY_LEEWAY_SECS);
            let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
            let version = grants::revoke_tokens(
                &mut tx,
                RevocationKind::Jti,
                std::slice::from_ref(&claims.jti),
                expires_at,
                "client_revoked",
                actor(client.client_id()),
            )
            .await?;
            tx.commit().await?;
            grants::publish(&state.notifier, org, Some(version)).await;
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .finish())
}

/// Whether `client` may learn about a token of `org` issued to `token_client`: a service client
/// about its org's tokens, a registered confidential client about its own.
fn may_inspect(client: &Authenticated, org: OrgId, token_client: &str) -> bool {
    match client {
        Authenticated::Service { org: own, .. } => *own == org,
        Authenticated::Registered(c) => c.client_id == token_client,
    }
}

async fn inspect_access_token(
    state: &OAuthState,
    client: &Authenticated,
    token: &str,
) -> OAuthResult<Option<Value>> {
    let verifier = current_verifier(state).await?;
    let Ok(claims) = verifier.verify(token, None) else {
        return Ok(None);
    };
    let Ok(org) = claims.org_id.parse::<OrgId>() else {
        return Ok(None);
    };
    if !may_inspect(client, org, &claims.client_id) {
        return Ok(None);
    }
    let mut candidates = vec![
        (RevocationKind::Jti, claims.jti.clone()),
        (RevocationKind::Client, claims.client_id.clone()),
    ];
    if let Some(sid) = &claims.sid {
        candidates.push((RevocationKind::Family, sid.clone()));
    }
    if claims.gh_kind == SubjectKind::User {
        candidates.push((RevocationKind::User, claims.sub.clone()));
    }
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
    let revoked = oauth_revocations::any_live(&mut tx, &candidates, Some(claims.iat)).await?;
    tx.commit().await?;
    if revoked {
        return Ok(None);
    }
    Ok(Some(active_access(&claims)))
}

fn active_access(c: &AccessTokenClaims) -> Value {
    json!({
        "active": true,
        "token_type": "Bearer",
        "scope": c.scope,
        "client_id": c.client_id,
        "sub": c.sub,
        "aud": c.aud,
        "iss": c.iss,
        "exp": c.exp,
        "iat": c.iat,
        "nbf": c.nbf,
        "jti": c.jti,
        "org_id": c.org_id,
        "endpoint_id": c.endpoint_id,
        "sid": c.sid,
        "gh_kind": c.gh_kind,
    })
}

async fn inspect_refresh_token(
    state: &OAuthState,
    client: &Authenticated,
    token: &str,
) -> OAuthResult<Option<Value>> {
    let Some(org) = tokens::org_of(token, tokens::REFRESH_PREFIX) else {
        return Ok(None);
    };
    let mut tx = TenantTx::begin(&state.db, &OrgScope::authorized(org)).await?;
    let Some(t) = oauth_refresh::find_token_for_update(&mut tx, &token_hash(token)).await? else {
        tx.commit().await?;
        return Ok(None);
    };
    let family = oauth_refresh::get_family(&mut tx, t.family_id).await?;
    tx.commit().await?;
    let Some(family) = family else { return Ok(None) };
    let live =
        family.revoked_at.is_none() && t.rotated_at.is_none() && t.expires_at > OffsetDateTime::now_utc();
    if !live || !may_inspect(client, org, &family.client_id) {
        return Ok(None);
    }
    Ok(Some(json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": family.scopes.join(" "),
        "client_id": family.client_id,
        "sub": family.user_id,
        "aud": family.resource,
        "iss": state.issuer(),
        "exp": t.expires_at.unix_timestamp(),
        "org_id": org,
        "endpoint_id": family.endpoint_id,
        "sid": family.id,
    })))
}

/// `POST /oauth/introspect`, for confidential clients.
pub async fn introspect(
    state: web::Data<OAuthState>,
    req: HttpRequest,
    body: web::Bytes,
) -> OAuthResult<HttpResponse> {
    let form = Form::parse(&req, &body)?;
    let presented = clients::presented(&req, form.get("client_id"), form.get("client_secret"))?;
    let client = clients::authenticate(&state, &presented).await?;
    if !client.is_confidential() {
        return Err(OAuthError::InvalidClient {
            message: "introspection is for confidential clients".into(),
            basic: presented.basic,
        });
    }
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
    let result = if token.starts_with(tokens::REFRESH_PREFIX) {
        inspect_refresh_token(&state, &client, token).await?
    } else if looks_like_jwt(token) {
        inspect_access_token(&state, &client, token).await?
    } else {
        None
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(result.unwrap_or_else(|| json!({"active": false}))))
}
