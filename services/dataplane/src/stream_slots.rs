//! Notification streams open per caller (2025 session GET streams, `subscriptions/listen`): a
//! count per (org, subject) on this replica, bounded by `dataplane.max_streams_per_subject`. A
//! slot is taken when such a request is admitted and given back when its response body is
//! dropped (sent in full, or the client went away).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use actix_web::HttpResponse;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;

use gatehouse_core::ids::OrgId;

type Caller = (OrgId, String);

/// The open notification streams of every caller on this replica.
#[derive(Clone)]
pub struct StreamSlots {
    max: usize,
    open: Arc<Mutex<HashMap<Caller, usize>>>,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// The most streams one caller may hold open.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more stream of `subject` at `org`; `None` when it holds the most already.
    pub fn acquire(&self, org: OrgId, subject: &str) -> Option<StreamSlot> {
        let caller = (org, subject.to_owned());
        // Nothing below can panic while the lock is held; a poisoned lock still holds counts.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(caller.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            slots: self.clone(),
            caller,
        })
    }

    /// Streams `subject` at `org` holds open.
    pub fn open(&self, org: OrgId, subject: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&(org, subject.to_owned())).copied().unwrap_or(0)
    }

    fn release(&self, caller: &Caller) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(caller);
            }
        }
    }
}

/// One caller's open stream; given back when dropped.
pub struct StreamSlot {
    slots: StreamSlots,
    caller: Caller,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.slots.release(&self.caller);
    }
}

impl StreamSlot {
    /// `response`, holding this slot until its body is dropped.
    pub fn held_by(self, response: HttpResponse) -> HttpResponse {
        response.map_body(|_, body| BoxBody::new(Held { body, _slot: self }))
    }
}

/// A response body that holds a stream slot.
struct Held {
    body: BoxBody,
    _slot: StreamSlot,
}

impl MessageBody for Held {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_caller_and_given_back() {
        let slots = StreamSlots::new(2);
        let (org, other_org) = (OrgId::new(), OrgId::new());
        let a = slots.acquire(org, "alice").unwrap();
        let b = slots.acquire(org, "alice").unwrap();
        assert!(slots.acquire(org, "alice").is_none(), "the third is refused");
        assert!(slots.acquire(org, "bob").is_some(), "another subject has its own");
        assert!(
            slots.acquire(other_org, "alice").is_some(),
            "so does the same subject elsewhere"
        );
        drop(a);
        assert_eq!(slots.open(org, "alice"), 1);
        let _c = slots.acquire(org, "alice").expect("a slot was given back");
        drop(b);
        assert_eq!(slots.open(org, "bob"), 0, "nothing left behind");
    }
}
