//! The typed model of an upstream MCP server, shared by the database rows, the REST API and the
//! snapshot: how it is reached ([`UpstreamTransport`]) and how Gatehouse authenticates to it
//! ([`CredentialKind`]). Each is stored as text; a stored value this build does not know fails its
//! decoding with [`UnknownValue`] (logged once per value), never silently becomes a default.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stored or received value that names no known variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    /// What was being read (`transport`, `credential kind`).
    pub kind: &'static str,
    pub value: String,
}

/// Transport of the upstream server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Transport))]
pub enum UpstreamTransport {
    /// MCP Streamable HTTP (2025-03-26 and later).
    StreamableHttp,
    /// The deprecated HTTP+SSE transport (2024-11-05), for old servers: the URL is the server's
    /// event-stream (GET) endpoint, e.g. `https://host/sse`.
    HttpSse,
}

impl UpstreamTransport {
    pub const ALL: [UpstreamTransport; 2] = [UpstreamTransport::StreamableHttp, UpstreamTransport::HttpSse];

    pub const fn as_str(self) -> &'static str {
        match self {
            UpstreamTransport::StreamableHttp => "streamable_http",
            UpstreamTransport::HttpSse => "http_sse",
        }
    }
}

/// How Gatehouse authenticates to an upstream (the kind of its own credential).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CredentialKind {
    /// No credential.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A custom header, e.g. `X-Api-Key: <value>`.
    Header,
    /// OAuth 2.0 client credentials: a token fetched from the server's token endpoint.
    OauthClientCredentials,
}

impl CredentialKind {
    pub const ALL: [CredentialKind; 4] = [
        CredentialKind::None,
        CredentialKind::Bearer,
        CredentialKind::Header,
        CredentialKind::OauthClientCredentials,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialKind::None => "none",
            CredentialKind::Bearer => "bearer",
            CredentialKind::Header => "header",
            CredentialKind::OauthClientCredentials => "oauth_client_credentials",
        }
    }
}

/// `as_str`, `Display`, `FromStr` (the inverse of `as_str`) and, with the `sqlx` feature, text
/// encoding whose decoding of an unknown value is an error, logged once per value.
macro_rules! text_enum {
    ($ty:ident, $kind:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownValue {
                        kind: $kind,
                        value: s.to_owned(),
                    })
            }
        }

        #[cfg(feature = "sqlx")]
        impl sqlx::Type<sqlx::Postgres> for $ty {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        #[cfg(feature = "sqlx")]
        impl sqlx::Encode<'_, sqlx::Postgres> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        #[cfg(feature = "sqlx")]
        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $ty {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                text.parse::<$ty>().map_err(|e| {
                    report_unknown(&e);
                    e.into()
                })
            }
        }
    };
}

text_enum!(UpstreamTransport, "transport");
text_enum!(CredentialKind, "credential kind");

/// Logs an unknown stored value the first time it is seen: each is logged once per process,
/// however often it is read.
#[cfg(feature = "sqlx")]
fn report_unknown(e: &UnknownValue) {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use crate::sync::MutexExt;

    static REPORTED: Mutex<Option<HashSet<(&'static str, String)>>> = Mutex::new(None);
    let first = REPORTED
        .lock_or_recover()
        .get_or_insert_with(HashSet::new)
        .insert((e.kind, e.value.clone()));
    if first {
        tracing::error!(kind = e.kind, value = %e.value, "a stored value names no known variant; rows holding it cannot be read");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_round_trips_through_its_text_and_serde() {
        for t in UpstreamTransport::ALL {
            assert_eq!(t.as_str().parse::<UpstreamTransport>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for k in CredentialKind::ALL {
            assert_eq!(k.as_str().parse::<CredentialKind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn an_unknown_value_is_an_error_naming_it() {
        let e = "websocket".parse::<UpstreamTransport>().unwrap_err();
        assert_eq!(e.to_string(), "unknown transport \"websocket\"");
        let e = "mtls".parse::<CredentialKind>().unwrap_err();
        assert_eq!(e.kind, "credential kind");
        assert!(serde_json::from_value::<UpstreamTransport>(serde_json::json!("sse")).is_err());
    }
}
