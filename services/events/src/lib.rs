//! Everything that crosses service boundaries at run time:
//! - [`bus`]: events from dataplanes to usage-workers ([`message`] says what they carry), with
//!   the disk [`spool`] for when Redis is unreachable (and as the bus itself in single-node mode);
//! - [`notify`]: configuration-change notifications from the control plane to dataplanes;
//! - [`ratelimit`]: rate limits shared by every replica;
//! - [`quota`]: which orgs are over quota.
//!
//! With Redis these are shared through Redis; without it (single-node mode, `gatehouse up`)
//! they stay in process. [`Bus::from_config`] builds all of them for one process.

pub mod bus;
pub mod factory;
pub mod link;
pub mod message;
pub mod notify;
pub mod quota;
pub mod ratelimit;
pub mod spool;

pub use bus::{Batch, BusProbe, EventConsumer, EventPublisher, local_bus};
pub use factory::{Bus, BusHandle};
pub use message::{
    BILLABLE_METHODS, BusMessage, CallConfirmation, CallEvent, CallOutcome, SubjectKind, ToolDrift,
    is_billable,
};
pub use notify::{ChangeNotifier, SessionKey};
pub use quota::QuotaState;
pub use ratelimit::{Decision, RateLimiter};
