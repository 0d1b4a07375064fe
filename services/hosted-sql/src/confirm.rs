//! Confirmation of destructive calls: a short-lived token bound to (caller, tool, definition,
//! arguments), signed with a key derived from the backend's context key, and spent in the backend
//! in the same transaction as the write it confirms (`gatehouse.confirmation_use`), so it works
//! once across every dataplane replica.
//!
//! The runtime answers a destructive call without a valid token with a
//! [`ConfirmationRequest`]; the dataplane asks the person (elicitation, `input_required`, or by
//! handing the token to the client) and calls again with the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::secrets::{hmac_sha256, hmac_sha256_verify};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::context::{CallerContext, ContextKey};
use crate::result::{ErrorKind, ToolError};
use crate::tool::SqlTool;

/// How long a confirmation token is valid.
pub const CONFIRMATION_TTL_SECS: i64 = 300;

/// What the dataplane shows the person and the token it gets back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfirmationRequest {
    /// Pass it back with the same call (same caller, tool and arguments) to run it.
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// One sentence naming the tool and its arguments, for the confirmation prompt.
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    v: u8,
    org: String,
    endpoint: String,
    sub: String,
    tool: String,
    hash: String,
    args: String,
    exp: i64,
    nonce: String,
}

/// A verified token, ready to be spent in the write's transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    pub nonce: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

fn claims_for(caller: &CallerContext, tool: &SqlTool, args_hash: &str, exp: i64, nonce: String) -> Claims {
    Claims {
        v: 1,
        org: caller.org_id.to_string(),
        endpoint: caller.endpoint_id.to_string(),
        sub: caller.subject.clone(),
        tool: tool.id.to_string(),
        hash: tool.approved_hash.clone(),
        args: args_hash.to_owned(),
        exp,
        nonce,
    }
}

/// Issues a token for this exact call.
pub fn request(
    key: &ContextKey,
    caller: &CallerContext,
    tool: &SqlTool,
    args_hash: &str,
    arguments_text: &str,
) -> ConfirmationRequest {
    let mut nonce = [0u8; 16];
    rand::fill(&mut nonce);
    let expires_at = OffsetDateTime::now_utc() + time::Duration::seconds(CONFIRMATION_TTL_SECS);
    let claims = claims_for(
        caller,
        tool,
        args_hash,
        expires_at.unix_timestamp(),
        hex::encode(nonce),
    );
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let mac = hmac_sha256(&key.derive("confirm"), body.as_bytes());
    ConfirmationRequest {
        token: format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac)),
        expires_at,
        message: format!(
            "`{}` changes or deletes data and needs your confirmation. Arguments: {arguments_text}",
            tool.name
        ),
    }
}

fn invalid(why: &str) -> ToolError {
    ToolError::new(
        ErrorKind::Confirmation,
        format!("the confirmation is not valid: {why}"),
    )
}

/// Verifies a token for this exact call (not yet spent: that happens in the transaction).
pub fn verify(
    key: &ContextKey,
    token: &str,
    caller: &CallerContext,
    tool: &SqlTool,
    args_hash: &str,
) -> Result<Confirmed, ToolError> {
    let (body, mac) = token.split_once('.').ok_or_else(|| invalid("malformed"))?;
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| invalid("malformed"))?;
    if !hmac_sha256_verify(&key.derive("confirm"), body.as_bytes(), &mac) {
        return Err(invalid("not issued for this backend"));
    }
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("malformed"))?;
    let expected = claims_for(caller, tool, args_hash, claims.exp, claims.nonce.clone());
    if claims.v != 1
        || claims.org != expected.org
        || claims.endpoint != expected.endpoint
        || claims.sub != expected.sub
        || claims.tool != expected.tool
        || claims.hash != expected.hash
    {
        return Err(invalid("it was issued for another caller or tool"));
    }
    if claims.args != expected.args {
        return Err(invalid("it was issued for other arguments"));
    }
    let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| invalid("malformed"))?;
    if expires_at <= OffsetDateTime::now_utc() {
        return Err(invalid("it expired; ask again"));
    }
    Ok(Confirmed {
        nonce: hex::decode(&claims.nonce).map_err(|_| invalid("malformed"))?,
        expires_at,
    })
}
