//! Everything that crosses service boundaries at run time:
//! - [`bus`]: events from dataplanes to usage-workers ([`message`] says what they carry);
//! - [`notify`]: configuration-change notifications from the control plane to dataplanes;
//! - [`ratelimit`]: rate limits shared by every replica;
//! - [`quota`]: which orgs are over quota.
//!
//! With Redis these are shared through Redis; without it (single-node mode, `gatehouse up`)
//! they stay in process.

pub mod bus;
pub mod message;
pub mod notify;
pub mod quota;
pub mod ratelimit;

pub use bus::{Batch, EventConsumer, EventPublisher, local_bus};
pub use message::{BusMessage, CallEvent, CallOutcome, SubjectKind, ToolDrift};
pub use notify::ChangeNotifier;
pub use quota::QuotaState;
pub use ratelimit::{Decision, RateLimiter};
