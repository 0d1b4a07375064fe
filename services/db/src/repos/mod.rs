//! Repositories, one module per aggregate. Tenant repositories take `&mut TenantTx`; global ones
//! take `&mut GlobalTx` (or `&mut UserTx` for a user's own cross-org view).

pub mod audit;
pub mod drift;
pub mod endpoints;
pub mod invoices;
pub mod orgs;
pub mod scopes;
pub mod servers;
pub mod sessions;
pub mod snapshot;
pub mod tools;
pub mod usage;
pub mod users;
