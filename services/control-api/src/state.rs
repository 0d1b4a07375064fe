//! The one application state, built once at start and shared by every worker.

use std::sync::Arc;

use gatehouse_core::Config;
use gatehouse_core::secrets::{DataplaneKeys, DerivedKeys, Keyring};
use gatehouse_db::Db;
use gatehouse_egress::Egress;
use gatehouse_events::{ChangeNotifier, RateLimiter};
use gatehouse_mail::Mailer;

use crate::dns::TxtResolver;
use crate::oidc_http::OidcHttp;

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub db: Db,
    /// Seals and opens credentials at rest.
    pub keyring: Arc<Keyring>,
    /// Keys derived once from the signing secret.
    pub keys: Arc<DerivedKeys>,
    /// Keys derived once from the dataplane secret: the internal token dataplanes present and
    /// the key that seals the credentials in their snapshots.
    pub dataplane: Arc<DataplaneKeys>,
    /// Announces configuration changes to dataplanes.
    pub notifier: ChangeNotifier,
    /// The SSRF guard: the only way to fetch a URL a tenant supplied.
    pub egress: Egress,
    /// The MCP client tool sync lists servers' tools with (through `egress`).
    pub mcp: gatehouse_mcp_client::Client,
    /// Login and mail-request limits (shared through Redis when configured).
    pub rate_limiter: RateLimiter,
    /// Verification, reset and invitation mail.
    pub mailer: Mailer,
    /// HTTP for OIDC discovery, token and JWKS fetches of tenant-configured providers: every
    /// request passes the egress policy.
    pub oidc_http: OidcHttp,
    /// Looks up the TXT records orgs publish to prove they control an email domain.
    pub dns: TxtResolver,
    /// HTTP to the dataplane's public URL for the console's playground (our own service, not a
    /// tenant-supplied URL); a request may last as long as the dataplane waits for an upstream.
    pub dataplane_http: reqwest::Client,
}
