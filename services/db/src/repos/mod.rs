//! Repositories, one module per aggregate. Tenant repositories take `&mut TenantTx`; global ones
//! take `&mut GlobalTx` (or `&mut UserTx` for a user's own cross-org view).

pub mod audit;
pub mod drift;
pub mod email_tokens;
pub mod endpoints;
pub mod invitations;
pub mod invoices;
pub mod memberships;
pub mod orgs;
pub mod scopes;
pub mod servers;
pub mod sessions;
pub mod snapshot;
pub mod sso;
pub mod tools;
pub mod usage;
pub mod users;
