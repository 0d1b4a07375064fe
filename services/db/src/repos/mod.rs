//! Repositories, one module per aggregate. Tenant repositories take `&mut TenantTx`; global ones
//! take `&mut GlobalTx` (or `&mut UserTx` for a user's own cross-org view).

pub mod audit;
pub mod backends;
pub mod caller_attributes;
pub mod drift;
pub mod email_tokens;
pub mod endpoints;
pub mod invitations;
pub mod invoices;
pub mod memberships;
pub mod oauth_clients;
pub mod oauth_codes;
pub mod oauth_consents;
pub mod oauth_refresh;
pub mod oauth_revocations;
pub mod oauth_scopes;
pub mod oauth_service_clients;
pub mod orgs;
pub mod plans;
pub mod platform_audit;
pub mod scopes;
pub mod servers;
pub mod service_tokens;
pub mod sessions;
pub mod signing_keys;
pub mod snapshot;
pub mod sso;
pub mod sso_domains;
pub mod tools;
pub mod usage;
pub mod users;
