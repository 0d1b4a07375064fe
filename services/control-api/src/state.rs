//! The one application state, built once at start and shared by every worker.

use std::sync::Arc;

use gatehouse_core::Config;
use gatehouse_core::secrets::{DerivedKeys, Keyring};
use gatehouse_db::Db;
use gatehouse_egress::Egress;
use gatehouse_events::{ChangeNotifier, RateLimiter};

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub db: Db,
    /// Seals and opens credentials at rest.
    pub keyring: Arc<Keyring>,
    /// Keys derived once from the signing secret.
    pub keys: Arc<DerivedKeys>,
    /// Announces configuration changes to dataplanes.
    pub notifier: ChangeNotifier,
    /// Limits shared by every replica.
    pub rate_limiter: RateLimiter,
    /// The SSRF guard: the only way to fetch a URL a tenant supplied.
    pub egress: Egress,
}
