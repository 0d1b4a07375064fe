//! Questions this replica asked a 2025 session client through `elicitation/create` (the
//! confirmation of a destructive hosted SQL call), waiting for the client's answer: the call's
//! response stream stays open on this replica until the answer arrives, the wait ends, or the
//! client goes away (the entry is removed with the waiting call).
//!
//! An answer is accepted only from the caller who was asked (same org, endpoint and subject), and
//! only once. The map is bounded: past [`MAX_WAITING`] questions, callers confirm with the
//! two-step token instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;

use gatehouse_core::sync::MutexExt;

/// Most questions waiting on one replica.
pub const MAX_WAITING: usize = 10_000;
/// Prefix of the JSON-RPC ids of these questions (upstreams' requests use `gh.`).
pub const ID_PREFIX: &str = "ghq.";

#[derive(Clone, Default)]
pub struct Elicitations {
    waiting: Arc<Mutex<HashMap<String, Waiter>>>,
}

struct Waiter {
    /// Who was asked: `org/endpoint/subject`.
    caller: String,
    answer: oneshot::Sender<Value>,
}

/// A question waiting for its answer; dropping it withdraws the question.
pub struct Pending {
    id: String,
    map: Elicitations,
    answer: oneshot::Receiver<Value>,
}

impl Elicitations {
    /// Registers a question for `caller`; `None` when too many are waiting.
    pub fn ask(&self, caller: String) -> Option<Pending> {
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce);
        let id = format!("{ID_PREFIX}{}", hex::encode(nonce));
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock_or_recover();
        if waiting.len() >= MAX_WAITING {
            return None;
        }
        waiting.insert(id.clone(), Waiter { caller, answer: tx });
        Some(Pending {
            id,
            map: self.clone(),
            answer: rx,
        })
    }

    /// Delivers `result` (the client's answer) to the question `id` asked of `caller`; `false`
    /// if no such question waits here.
    pub fn answer(&self, id: &str, caller: &str, result: Value) -> bool {
        let mut waiting = self.waiting.lock_or_recover();
        if waiting.get(id).is_none_or(|w| w.caller != caller) {
            return false;
        }
        let waiter = waiting.remove(id).expect("present");
        waiter.answer.send(result).is_ok()
    }

    /// Questions waiting now.
    pub fn len(&self) -> usize {
        self.waiting.lock_or_recover().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Pending {
    /// The question's JSON-RPC id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The client's answer (the `result` of its response, or `{"error": …}` for an error
    /// response); `None` if the question was withdrawn.
    pub async fn answer(&mut self) -> Option<Value> {
        (&mut self.answer).await.ok()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.map.waiting.lock_or_recover().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn an_answer_reaches_only_the_question_of_the_caller_asked() {
        let map = Elicitations::default();
        let mut pending = map.ask("o/e/alice".into()).unwrap();
        let id = pending.id().to_owned();
        assert!(id.starts_with(ID_PREFIX));
        assert!(!map.answer(&id, "o/e/bob", json!({"action": "accept"})));
        assert!(!map.answer("ghq.unknown", "o/e/alice", json!({})));
        assert!(map.answer(&id, "o/e/alice", json!({"action": "decline"})));
        assert_eq!(pending.answer().await, Some(json!({"action": "decline"})));
        assert!(!map.answer(&id, "o/e/alice", json!({"action": "accept"})));
        assert!(map.is_empty());
    }

    #[test]
    fn a_withdrawn_question_is_forgotten() {
        let map = Elicitations::default();
        let pending = map.ask("o/e/alice".into()).unwrap();
        let id = pending.id().to_owned();
        drop(pending);
        assert!(map.is_empty());
        assert!(!map.answer(&id, "o/e/alice", json!({"action": "accept"})));
    }
}
