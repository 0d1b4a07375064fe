//! Org single sign-on through the org's OpenID Connect provider.
//!
//! Admins configure the provider (`/orgs/{org}/sso`; the client secret is sealed with the
//! keyring). Members log in at `GET /sso/{org}/start?return_to=/path`: Gatehouse redirects to the
//! provider with state, nonce and PKCE (S256), keeps them in a sealed, short-lived cookie, and on
//! `GET /sso/callback` validates everything, links or provisions the user, creates the console
//! session and redirects to `return_to` (a local path). [`start_sso_login`] is the same start step
//! for other flows (the OAuth authorization endpoint uses it as its login step).
//!
//! Provisioning: an identity already linked logs in. Otherwise the provider must assert a
//! verified email in one of the org's allowed domains. Any org admin can run a provider that
//! asserts any address, so the provider's word alone never creates or links a (global) account:
//! for a domain the org has verified through DNS, the account is created (or the existing one
//! linked) at once; for any other, the address's owner gets a mail and the account is created or
//! linked only when they follow its link. Both answers are the same whether or not an account
//! exists. See docs/permissions.md.
//!
//! - `providers`: the admin routes for the org's provider (`GET`/`PUT`/`DELETE /orgs/{org}/sso`);
//! - `enforcement`: requiring SSO for the org (`PUT /orgs/{org}/sso/enforcement`);
//! - `domains`: the org's email domains and their DNS verification (`/orgs/{org}/sso/domains`);
//! - `login`: the login flow (`GET /sso/{org}/start`, `GET /sso/callback`): sealed login state,
//!   discovery, code + PKCE exchange, ID token checks;
//! - `provision`: what a validated identity may do (sign in, be linked, wait for its mail), and
//!   the mailed link's confirmation (`GET`/`POST /sso/confirm`).

use utoipa_actix_web::service_config::ServiceConfig;

use gatehouse_core::ids::OrgId;
use gatehouse_db::TenantTx;
use gatehouse_db::repos::sso::{self, SsoProviderRow};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

mod domains;
mod enforcement;
mod login;
mod providers;
mod provision;

pub use domains::{DomainCheckOut, DomainIn, DomainOut};
pub use enforcement::EnforcementIn;
pub use login::{CallbackQuery, StartQuery, check_return_to, start_sso_login};
pub use providers::{SsoConfigIn, SsoConfigOut};
pub use provision::ConfirmForm;

pub fn configure(cfg: &mut ServiceConfig) {
    providers::configure(cfg);
    enforcement::configure(cfg);
    domains::configure(cfg);
    login::configure(cfg);
    provision::configure(cfg);
}

/// The associated data sealing an org's client secret: bound to its use and to the org, so a
/// value copied into another org's row does not open there.
fn secret_context(org: OrgId) -> String {
    format!("org_sso_providers.client_secret:{org}")
}

/// The context secrets were sealed with before they were bound to their org. Such a value opens
/// only while its row is marked unbound, and its first use re-seals it ([`client_secret`]).
const LEGACY_SECRET_CONTEXT: &str = "org_sso_providers.client_secret";

/// The org's client secret in clear. A value sealed before secrets were bound to their org is
/// opened with the old context once and re-sealed with the org, in `tx`.
async fn client_secret(state: &AppState, tx: &mut TenantTx, row: &SsoProviderRow) -> ApiResult<String> {
    let org = tx.org_id();
    let unreadable = |e| ApiError::Internal(anyhow::anyhow!("stored SSO secret cannot be opened: {e}"));
    let plain = if row.client_secret_org_bound {
        state
            .keyring
            .open(&row.client_secret_enc, &secret_context(org))
            .map_err(unreadable)?
    } else {
        let plain = state
            .keyring
            .open(&row.client_secret_enc, LEGACY_SECRET_CONTEXT)
            .map_err(unreadable)?;
        let resealed = state.keyring.seal(&plain, &secret_context(org));
        if sso::reseal_secret(tx, &resealed).await? {
            tracing::info!(org_id = %org, "SSO client secret re-sealed with its org");
        }
        plain
    };
    String::from_utf8(plain)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored SSO secret is not UTF-8")))
}

/// Where members of the org `slug` start an SSO login (absolute URL).
pub fn login_url(state: &AppState, slug: &str) -> String {
    let mut url = state.cfg.control_api.public_url.clone();
    url.set_path(&format!("/api/v1/sso/{slug}/start"));
    url.set_query(None);
    url.to_string()
}

fn redirect_uri(state: &AppState) -> String {
    let mut url = state.cfg.control_api.public_url.clone();
    url.set_path("/api/v1/sso/callback");
    url.set_query(None);
    url.to_string()
}
