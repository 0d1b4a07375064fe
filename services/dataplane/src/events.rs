//! One `CallEvent` per call, denial or rate-limit rejection, emitted without blocking the call.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use time::OffsetDateTime;

use gatehouse_core::canonical::canonical_hash;
use gatehouse_core::ids::{EndpointId, EventId, OrgId, ServerId};
use gatehouse_events::{BusMessage, CallConfirmation, CallEvent, CallOutcome, EventPublisher, SubjectKind};

use crate::auth::Principal;

/// A call being recorded; `finish` emits it.
pub struct CallRecord {
    publisher: EventPublisher,
    started: Instant,
    /// `None` once emitted: the event is moved onto the bus, not copied.
    event: Option<CallEvent>,
}

/// Who and where, shared by every record of a request.
#[derive(Clone)]
pub struct CallSite {
    pub org: OrgId,
    pub endpoint: EndpointId,
    pub principal: Option<Arc<Principal>>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub source: Arc<str>,
    pub log_arguments: bool,
}

impl CallRecord {
    pub fn start(
        publisher: &EventPublisher,
        site: &CallSite,
        method: &str,
        tool: Option<&str>,
        server: Option<ServerId>,
        arguments: Option<&Value>,
        bytes_in: u64,
    ) -> Self {
        let (subject, subject_kind, client_id) = match &site.principal {
            Some(p) => (p.subject.clone(), p.kind, p.client_id.clone()),
            None => (String::new(), SubjectKind::Anonymous, None),
        };
        let empty = Value::Object(Default::default());
        let args = arguments.unwrap_or(&empty);
        Self {
            publisher: publisher.clone(),
            started: Instant::now(),
            event: Some(CallEvent {
                id: EventId::new(),
                org_id: site.org,
                occurred_at: OffsetDateTime::now_utc(),
                source: site.source.to_string(),
                endpoint_id: Some(site.endpoint),
                server_id: server,
                method: method.to_owned(),
                tool: tool.map(str::to_owned),
                subject,
                subject_kind,
                client_id,
                outcome: CallOutcome::Success,
                error_code: None,
                latency_ms: 0,
                bytes_in,
                bytes_out: 0,
                args_hash: (method == "tools/call").then(|| canonical_hash(args)),
                arguments: (site.log_arguments && method == "tools/call").then(|| args.clone()),
                ip: site.ip,
                user_agent: site.user_agent.clone(),
                confirmation: None,
            }),
        }
    }

    pub fn add_bytes_out(&mut self, n: u64) {
        if let Some(event) = &mut self.event {
            event.bytes_out += n;
        }
    }

    /// Records how the destructive call was confirmed (or declined, or refused).
    pub fn set_confirmation(&mut self, confirmation: CallConfirmation) {
        if let Some(event) = &mut self.event {
            event.confirmation = Some(Box::new(confirmation));
        }
    }

    pub fn set_outcome(&mut self, outcome: CallOutcome, error_code: Option<i64>) {
        if let Some(event) = &mut self.event {
            event.outcome = outcome;
            event.error_code = error_code;
        }
    }

    /// Finishes the call an upstream answered: an error with `error_code`
    /// ([`error_code_in`], [`error_code_of`]) when the answer is one, else a success.
    pub fn finish_answered(self, error_code: Option<i64>) {
        match error_code {
            Some(code) => self.finish(CallOutcome::Error, Some(code)),
            None => self.finish(CallOutcome::Success, None),
        }
    }

    /// Emits the event (once).
    pub fn finish(mut self, outcome: CallOutcome, error_code: Option<i64>) {
        self.set_outcome(outcome, error_code);
        self.emit();
    }

    fn emit(&mut self) {
        let Some(mut event) = self.event.take() else {
            return;
        };
        event.latency_ms = self.started.elapsed().as_millis().min(u32::MAX as u128) as u32;
        metrics::counter!("gatehouse_dataplane_calls_total", "outcome" => outcome_label(event.outcome))
            .increment(1);
        self.publisher.emit(BusMessage::Call(event));
    }
}

impl Drop for CallRecord {
    /// A record dropped unfinished (a stream the client closed) is still emitted, as it stood.
    fn drop(&mut self) {
        self.emit();
    }
}

fn outcome_label(o: CallOutcome) -> &'static str {
    match o {
        CallOutcome::Success => "success",
        CallOutcome::Error => "error",
        CallOutcome::Denied => "denied",
        CallOutcome::RateLimited => "rate_limited",
        CallOutcome::OverQuota => "over_quota",
    }
}

/// The JSON-RPC error code of a response message, if it is an error.
pub fn error_code_of(bytes: &[u8]) -> Option<Option<i64>> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        error: Option<ErrorProbe>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorProbe {
        #[serde(default)]
        code: Option<i64>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    Some(probe.error.map(|e| e.code.unwrap_or(0)))
}

/// [`error_code_of`] for a message already parsed: the code of its error (0 when the error has
/// none), `None` when it is no error.
pub fn error_code_in(message: &Value) -> Option<i64> {
    let error = message.get("error")?.as_object()?;
    match error.get("code") {
        None | Some(Value::Null) => Some(0),
        Some(code) => code.as_i64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsed_message_has_the_error_code_its_bytes_have() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"message":"no code"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":null}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":"text"}}"#,
        ] {
            let parsed: Value = serde_json::from_slice(body.as_bytes()).expect("json");
            assert_eq!(
                error_code_in(&parsed),
                error_code_of(body.as_bytes()).flatten(),
                "{body}"
            );
        }
    }
}
