//! Formats of the opaque credentials the authorization server hands out. Those that live in tenant
//! tables carry their org id, so the server opens the org's transaction before any lookup.
//!
//! | credential | format |
//! |---|---|
//! | authorization code | `ghc_<org id, 32 hex>_<43 random>` |
//! | refresh token | `ghr_<org id, 32 hex>_<43 random>` |
//! | service token | `ghs_<org id, 32 hex>_<43 random>` |
//! | service client id | `ghsc_<org id, 32 hex>_<client row id, 32 hex>` |
//! | client secret | `ghcs_<43 random>` |
//! | SSO link confirmation (mailed) | `ghl_<org id, 32 hex>_<43 random>` |
//! | dynamically registered client id | `ghd_<22 random>` |

use gatehouse_core::ids::{OrgId, ServiceClientId};
use gatehouse_core::secrets::random_token;

pub const CODE_PREFIX: &str = "ghc_";
pub const REFRESH_PREFIX: &str = "ghr_";
pub const SERVICE_TOKEN_PREFIX: &str = "ghs_";
pub const SERVICE_CLIENT_PREFIX: &str = "ghsc_";
pub const CLIENT_SECRET_PREFIX: &str = "ghcs_";
pub const DYNAMIC_CLIENT_PREFIX: &str = "ghd_";
pub const SSO_LINK_PREFIX: &str = "ghl_";

/// Characters of a service token shown in listings (prefix + org + a few random characters).
pub const SERVICE_TOKEN_DISPLAY_LEN: usize = SERVICE_TOKEN_PREFIX.len() + 32 + 1 + 6;

fn org_scoped(prefix: &str, org: OrgId) -> String {
    format!("{prefix}{}_{}", org.as_uuid().simple(), random_token(32))
}

pub fn new_code(org: OrgId) -> String {
    org_scoped(CODE_PREFIX, org)
}

pub fn new_refresh_token(org: OrgId) -> String {
    org_scoped(REFRESH_PREFIX, org)
}

pub fn new_service_token(org: OrgId) -> String {
    org_scoped(SERVICE_TOKEN_PREFIX, org)
}

pub fn new_sso_link_token(org: OrgId) -> String {
    org_scoped(SSO_LINK_PREFIX, org)
}

pub fn new_client_secret() -> String {
    format!("{CLIENT_SECRET_PREFIX}{}", random_token(32))
}

pub fn new_dynamic_client_id() -> String {
    format!("{DYNAMIC_CLIENT_PREFIX}{}", random_token(16))
}

pub fn service_client_id(org: OrgId, id: ServiceClientId) -> String {
    format!(
        "{SERVICE_CLIENT_PREFIX}{}_{}",
        org.as_uuid().simple(),
        id.as_uuid().simple()
    )
}

/// The org id carried by an org-scoped credential with `prefix`, if it is well formed.
pub fn org_of(token: &str, prefix: &str) -> Option<OrgId> {
    let rest = token.strip_prefix(prefix)?;
    if rest.len() < 34 || !rest.is_char_boundary(32) || rest.as_bytes()[32] != b'_' {
        return None;
    }
    let (hex, tail) = (&rest[..32], &rest[33..]);
    if !hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let valid_tail = !tail.is_empty()
        && tail.len() <= 128
        && tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_tail {
        return None;
    }
    uuid::Uuid::parse_str(hex).ok().map(OrgId::from_uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_round_trips_and_garbage_is_refused() {
        let org = OrgId::new();
        for token in [new_code(org), new_refresh_token(org), new_service_token(org)] {
            let prefix = &token[..4];
            assert_eq!(org_of(&token, prefix), Some(org), "{token}");
            assert!(token.len() >= 4 + 32 + 1 + 43);
        }
        let client = service_client_id(org, ServiceClientId::new());
        assert_eq!(org_of(&client, SERVICE_CLIENT_PREFIX), Some(org));
        for bad in [
            "",
            "ghc_",
            "ghc_xyz",
            "ghr_00000000000000000000000000000000_a",
            "ghc_0000000000000000000000000000000_ab",
        ] {
            assert_eq!(org_of(bad, CODE_PREFIX), None, "{bad}");
        }
        assert_eq!(org_of(&new_code(org).replace('_', "-"), CODE_PREFIX), None);
    }
}
