//! The integrated OAuth 2.1 authorization server. MCP clients are its clients; the dataplane's
//! endpoints are the resource servers. Mounted by the control API at the root:
//!
//! | route | what |
//! |---|---|
//! | `GET /.well-known/oauth-authorization-server`, `/.well-known/openid-configuration` | RFC 8414 / OIDC discovery metadata |
//! | `GET /.well-known/jwks.json` | the published signing keys |
//! | `GET /authorize` | authorization code + PKCE (S256); login and consent pages |
//! | `POST /authorize/login`, `POST /authorize/consent` | the pages' forms |
//! | `POST /oauth/token` | authorization_code, refresh_token, client_credentials |
//! | `POST /oauth/register` | RFC 7591 dynamic client registration |
//! | `POST /oauth/revoke`, `POST /oauth/introspect` | RFC 7009, RFC 7662 |
//!
//! Errors: RFC 6749 `{error, error_description}` from [`error::OAuthError`]; authorization
//! errors that must not redirect render an HTML page.

pub mod admin;
pub mod authorize;
pub mod cimd;
pub mod clients;
pub mod cors;
pub mod error;
pub mod forms;
pub mod grants;
pub mod introspect;
pub mod jwt;
pub mod keys;
pub mod metadata;
pub mod pages;
pub mod redirect;
pub mod register;
pub mod scopes;
pub mod session;
pub mod token;
pub mod tokens;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::web;

use gatehouse_core::Config;
use gatehouse_core::secrets::{DerivedKeys, Keyring};
use gatehouse_db::Db;
use gatehouse_events::{ChangeNotifier, RateLimiter};

pub use error::{OAuthError, OAuthResult};
pub use jwt::{AccessTokenClaims, AccessTokenVerifier};
pub use keys::SigningKeys;

/// Checks a password against a stored hash (the control API's argon2id verifier, off the
/// runtime). Injected so that this crate does not depend on the control API.
pub type PasswordVerifier =
    Arc<dyn Fn(String, Option<String>) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What the authorization server shares with the console: the password verifier and the name of
/// the console session cookie (a console login is an authorization server login, and the other way
/// round).
#[derive(Clone)]
pub struct Accounts {
    pub verify_password: PasswordVerifier,
    pub session_cookie: &'static str,
}

/// The authorization server's state, built once by the control API.
#[derive(Clone)]
pub struct OAuthState {
    pub cfg: Arc<Config>,
    pub db: Db,
    pub keyring: Arc<Keyring>,
    pub keys: Arc<DerivedKeys>,
    pub notifier: ChangeNotifier,
    pub rate_limiter: RateLimiter,
    pub signing: Arc<SigningKeys>,
    pub accounts: Accounts,
    /// Fetches Client ID Metadata Documents through the SSRF guard.
    pub metadata_http: reqwest::Client,
}

impl OAuthState {
    pub fn new(
        cfg: Arc<Config>,
        db: Db,
        keyring: Arc<Keyring>,
        keys: Arc<DerivedKeys>,
        notifier: ChangeNotifier,
        rate_limiter: RateLimiter,
        accounts: Accounts,
    ) -> anyhow::Result<Self> {
        let signing = Arc::new(SigningKeys::new(&cfg, db.clone(), keyring.clone()));
        let metadata_http = cimd::http_client(&cfg)?;
        Ok(Self {
            cfg,
            db,
            keyring,
            keys,
            notifier,
            rate_limiter,
            signing,
            accounts,
            metadata_http,
        })
    }

    pub fn issuer(&self) -> String {
        self.cfg.issuer()
    }
}

/// Mounts the JWKS alone, for the control API's internal listener (dataplanes verify tokens with
/// it). The app must carry `web::Data<OAuthState>`.
pub fn configure_jwks(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(metadata::jwks));
}

/// Mounts every route of the authorization server. The app must carry `web::Data<OAuthState>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/oauth-authorization-server",
        web::get().to(metadata::authorization_server),
    )
    .route(
        "/.well-known/openid-configuration",
        web::get().to(metadata::openid_configuration),
    )
    .route("/.well-known/jwks.json", web::get().to(metadata::jwks))
    .route("/authorize", web::get().to(authorize::authorize))
    .route("/authorize/login", web::post().to(forms::login))
    .route("/authorize/consent", web::post().to(forms::consent))
    .route("/oauth/token", web::post().to(token::token))
    .route("/oauth/register", web::post().to(register::register))
    .route("/oauth/revoke", web::post().to(introspect::revoke))
    .route("/oauth/introspect", web::post().to(introspect::introspect));
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
        "/oauth/token",
        "/oauth/register",
        "/oauth/revoke",
        "/oauth/introspect",
    ] {
        cfg.route(
            path,
            web::method(actix_web::http::Method::OPTIONS).to(cors::preflight),
        );
    }
}
