//! Which orgs are over quota. The usage-worker decides and publishes; dataplanes refuse calls of
//! orgs in the set.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use gatehouse_core::ids::OrgId;

#[derive(Clone, Default)]
pub struct QuotaState {
    over: Arc<RwLock<HashSet<OrgId>>>,
}

impl QuotaState {
    /// In-process state (single-node mode).
    pub fn local() -> Self {
        Self::default()
    }

    pub fn is_over(&self, org: OrgId) -> bool {
        self.over.read().expect("quota lock").contains(&org)
    }

    /// Marks `org` as over (or back under) quota.
    pub async fn set(&self, org: OrgId, over: bool) {
        let mut set = self.over.write().expect("quota lock");
        if over {
            set.insert(org);
        } else {
            set.remove(&org);
        }
    }
}
