//! Notification streams open per caller (2025 session GET streams, `subscriptions/listen`): a
//! count per (org, subject) on this replica, bounded by `dataplane.max_streams_per_subject`. A
//! slot is taken when such a request is admitted and given back when its response body is
//! dropped (sent in full, or the client went away).
//!
//! These streams carry no call in flight, so they do not hold a replica that drains: when
//! draining begins (the token given to [`StreamSlots::new`]) each one ends, after a `retry` hint
//! where the revision resumes streams ([`StreamSlot::resumable`]), and the client reconnects, to
//! another replica once this one is out of the load balancer.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use actix_web::HttpResponse;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use bytes::Bytes;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use gatehouse_core::ids::OrgId;

type Caller = (OrgId, String);

/// The open notification streams of every caller on this replica.
#[derive(Clone)]
pub struct StreamSlots {
    max: usize,
    open: Arc<Mutex<HashMap<Caller, usize>>>,
    draining: CancellationToken,
}

impl StreamSlots {
    /// At most `max` streams per caller; every stream ends when `draining` is cancelled.
    pub fn new(max: usize, draining: CancellationToken) -> Self {
        Self {
            max,
            open: Arc::default(),
            draining,
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
            farewell: None,
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
    /// Written last when the stream ends because the replica drains.
    farewell: Option<Bytes>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.slots.release(&self.caller);
    }
}

impl StreamSlot {
    /// A stream the client resumes (2025 revisions, `Last-Event-ID`): when the replica drains it
    /// ends with an SSE `retry` field, telling the client to reconnect after `retry_ms`.
    pub fn resumable(mut self, retry_ms: u64) -> Self {
        self.farewell = Some(Bytes::from(format!("retry: {retry_ms}\n\n")));
        self
    }

    /// `response`, holding this slot until its body is dropped. An event stream ends when the
    /// replica drains.
    pub fn held_by(self, response: HttpResponse) -> HttpResponse {
        let is_stream = response
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let ending = is_stream.then(|| Box::pin(self.slots.draining.clone().cancelled_owned()));
        response.map_body(|_, body| {
            BoxBody::new(Held {
                body,
                ending,
                slot: self,
            })
        })
    }
}

/// A response body that holds a stream slot (and, for an event stream, ends on drain).
struct Held {
    body: BoxBody,
    ending: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    slot: StreamSlot,
}

impl MessageBody for Held {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if let Some(ending) = &mut this.ending
            && ending.as_mut().poll(cx).is_ready()
        {
            this.ending = None;
            // The upstream streams are let go now; nothing more is read from them.
            this.body = BoxBody::new(());
            if let Some(farewell) = this.slot.farewell.take() {
                return Poll::Ready(Some(Ok(farewell)));
            }
            return Poll::Ready(None);
        }
        Pin::new(&mut this.body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_caller_and_given_back() {
        let slots = StreamSlots::new(2, CancellationToken::new());
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

    #[tokio::test]
    async fn an_event_stream_ends_when_draining_begins() {
        let draining = CancellationToken::new();
        let slots = StreamSlots::new(2, draining.clone());
        let org = OrgId::new();
        let endless = || {
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .streaming(futures::stream::pending::<Result<Bytes, actix_web::Error>>())
        };
        let resumable = slots
            .acquire(org, "alice")
            .unwrap()
            .resumable(2500)
            .held_by(endless());
        let plain = slots.acquire(org, "alice").unwrap().held_by(endless());
        draining.cancel();
        let body = actix_web::body::to_bytes(resumable.into_body()).await.unwrap();
        assert_eq!(
            body, "retry: 2500\n\n",
            "a resumable stream says when to reconnect"
        );
        let body = actix_web::body::to_bytes(plain.into_body()).await.unwrap();
        assert!(body.is_empty(), "{body:?}");
        assert_eq!(slots.open(org, "alice"), 0, "their slots are given back");
    }
}
