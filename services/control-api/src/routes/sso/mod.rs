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
//! verified email in one of the org's allowed domains; a new Gatehouse user is created for it and
//! joins with the org's JIT role. An address that already has a Gatehouse account is never linked
//! automatically (that would let any org's provider take over accounts that exist elsewhere); its
//! owner signs in with their password.
//!
//! - `providers`: the admin routes for the org's provider (`GET`/`PUT`/`DELETE /orgs/{org}/sso`);
//! - `login`: the login flow (`GET /sso/{org}/start`, `GET /sso/callback`): sealed login state,
//!   discovery, code + PKCE exchange, ID token checks, linking and JIT membership.

use utoipa_actix_web::service_config::ServiceConfig;

use crate::state::AppState;

mod login;
mod providers;

pub use login::{CallbackQuery, StartQuery, check_return_to, start_sso_login};
pub use providers::{SsoConfigIn, SsoConfigOut};

pub fn configure(cfg: &mut ServiceConfig) {
    providers::configure(cfg);
    login::configure(cfg);
}

/// Context string binding sealed client secrets to their use.
const SECRET_CONTEXT: &str = "org_sso_providers.client_secret";

fn redirect_uri(state: &AppState) -> String {
    let mut url = state.cfg.control_api.public_url.clone();
    url.set_path("/api/v1/sso/callback");
    url.set_query(None);
    url.to_string()
}
