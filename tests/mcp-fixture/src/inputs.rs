//! Asking the client for input (sampling, elicitation, roots) in whichever way
//! the request's protocol revision allows.
//!
//! Up to 2025-11-25 the server sends the request to the client on the tool
//! call's SSE stream and waits for the answer. From 2026-07-28 on servers may
//! not send requests at all (SEP-2322): the handler returns an
//! `InputRequiredResult` naming what it needs, and the client retries the
//! original call with `inputResponses` and the echoed `requestState`.
//!
//! [`InputRound`] hides the difference so a tool reads as straight-line code:
//! `ask` either returns the answers or says the tool must hand back
//! [`InputRound::input_required`]. Because every MRTR round is a separate
//! stateless request, answers collected in earlier rounds travel in the
//! `requestState`, sealed with an HMAC so the client cannot alter them.

#![allow(deprecated)] // sampling and roots are deprecated by SEP-2577 but still part of the suite.

use std::{collections::BTreeMap, time::Duration};

use rmcp::{
    ErrorData, RoleServer,
    model::{
        ClientCapabilities, InputRequest, InputRequiredResult, InputResponses, ProtocolVersion,
        RequestStateCodec, SealOptions, ServerRequest,
    },
    service::{Peer, RequestContext},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How long an MRTR conversation may take before its sealed state expires.
const REQUEST_STATE_TTL: Duration = Duration::from_secs(600);

/// Whether `context` speaks a revision without server-to-client requests.
pub(crate) fn uses_input_required_results(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// The kinds of input a server can ask a client for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputKind {
    Elicitation,
    Sampling,
    Roots,
}

impl InputKind {
    fn method(self) -> &'static str {
        match self {
            Self::Elicitation => "elicitation/create",
            Self::Sampling => "sampling/createMessage",
            Self::Roots => "roots/list",
        }
    }

    /// Whether the client declared the capability this input needs.
    pub(crate) fn is_supported_by(self, capabilities: &ClientCapabilities) -> bool {
        match self {
            Self::Elicitation => capabilities.elicitation.is_some(),
            Self::Sampling => capabilities.sampling.is_some(),
            Self::Roots => capabilities.roots.is_some(),
        }
    }

    /// The capability to name in a `-32021` error.
    pub(crate) fn required_capability(self) -> ClientCapabilities {
        let name = match self {
            Self::Elicitation => "elicitation",
            Self::Sampling => "sampling",
            Self::Roots => "roots",
        };
        serde_json::from_value(json!({ name: {} })).expect("a capability object parses")
    }

    /// Whether `answer` has the shape of a result of this kind of request.
    fn accepts(self, answer: &Value) -> bool {
        match self {
            Self::Elicitation => answer
                .get("action")
                .and_then(Value::as_str)
                .is_some_and(|action| matches!(action, "accept" | "decline" | "cancel")),
            Self::Sampling => {
                answer.get("content").is_some_and(Value::is_object)
                    || answer.get("content").is_some_and(Value::is_array)
            }
            Self::Roots => answer.get("roots").is_some_and(Value::is_array),
        }
    }
}

/// One question for the client: a key naming the answer, and the request.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) key: &'static str,
    pub(crate) kind: InputKind,
    params: Value,
}

impl Ask {
    /// An `elicitation/create` form request.
    pub(crate) fn form(key: &'static str, message: &str, requested_schema: Value) -> Self {
        Self {
            key,
            kind: InputKind::Elicitation,
            params: json!({ "mode": "form", "message": message, "requestedSchema": requested_schema }),
        }
    }

    /// A `sampling/createMessage` request with one user message.
    pub(crate) fn sampling(key: &'static str, prompt: &str, max_tokens: u32) -> Self {
        Self {
            key,
            kind: InputKind::Sampling,
            params: json!({
                "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
                "maxTokens": max_tokens
            }),
        }
    }

    /// A `roots/list` request.
    pub(crate) fn roots(key: &'static str) -> Self {
        Self {
            key,
            kind: InputKind::Roots,
            params: json!({}),
        }
    }

    fn request(&self) -> Result<InputRequest, ErrorData> {
        let wire = if self.kind == InputKind::Roots {
            json!({ "method": self.kind.method() })
        } else {
            json!({ "method": self.kind.method(), "params": self.params })
        };
        serde_json::from_value(wire).map_err(|error| {
            ErrorData::internal_error(format!("cannot build {} request: {error}", self.key), None)
        })
    }
}

/// What the client answered, keyed like the [`Ask`]s.
pub(crate) type Answers = BTreeMap<String, Value>;

/// The part of an MRTR conversation that travels sealed in `requestState`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CarriedState {
    answers: Answers,
}

enum Channel {
    /// Send requests to the client and wait (2025-era sessions).
    Direct(Peer<RoleServer>),
    /// Hand back `InputRequiredResult`s (2026-07-28).
    Retry {
        responses: InputResponses,
        carried: CarriedState,
    },
    /// Neither works: a 2025-era request without a session to answer on.
    Unavailable,
}

/// Collects a tool's (or prompt's) inputs over one or more rounds.
pub(crate) struct InputRound<'a> {
    codec: &'a RequestStateCodec,
    /// Binds sealed state to the tool or prompt that issued it.
    owner: String,
    capabilities: Option<ClientCapabilities>,
    channel: Channel,
    pending: Option<InputRequiredResult>,
}

impl<'a> InputRound<'a> {
    /// Start collecting inputs for `owner` (a tool or prompt name).
    ///
    /// Fails with `-32602` when the echoed `requestState` does not verify:
    /// SEP-2322 requires servers to reject tampered state.
    pub(crate) fn start(
        codec: &'a RequestStateCodec,
        owner: &str,
        context: &RequestContext<RoleServer>,
        responses: Option<InputResponses>,
        request_state: Option<&str>,
        server_requests_possible: bool,
    ) -> Result<Self, ErrorData> {
        let channel = if uses_input_required_results(context) {
            let carried = match request_state {
                Some(sealed) => codec
                    .open_json_with(sealed, owner.as_bytes())
                    .map_err(|_| ErrorData::invalid_params("requestState integrity check failed", None))?,
                None => CarriedState::default(),
            };
            Channel::Retry {
                responses: responses.unwrap_or_default(),
                carried,
            }
        } else if server_requests_possible {
            Channel::Direct(context.peer.clone())
        } else {
            Channel::Unavailable
        };
        Ok(Self {
            codec,
            owner: owner.to_owned(),
            capabilities: context.client_capabilities(),
            channel,
            pending: None,
        })
    }

    /// Ignore the `inputResponses` that came with this request, so the client
    /// is asked afresh and receives a sealed `requestState` with the question.
    pub(crate) fn discard_responses(&mut self) {
        if let Channel::Retry { responses, .. } = &mut self.channel {
            responses.clear();
        }
    }

    /// Whether the client declared the capability `kind` needs.
    pub(crate) fn client_supports(&self, kind: InputKind) -> bool {
        self.capabilities
            .as_ref()
            .is_some_and(|capabilities| kind.is_supported_by(capabilities))
    }

    /// Fail with `-32021` unless the client declared every capability `asks`
    /// rely on: a server must not use capabilities the client did not declare.
    pub(crate) fn require_capabilities(&self, asks: &[Ask]) -> Result<(), ErrorData> {
        if matches!(self.channel, Channel::Unavailable) {
            // Without a session the client's capabilities are unknown and
            // could not be used anyway; say what is really missing.
            return Err(no_session_error());
        }
        match asks.iter().find(|ask| !self.client_supports(ask.kind)) {
            Some(ask) => Err(ErrorData::missing_required_client_capability(
                ask.kind.required_capability(),
            )),
            None => Ok(()),
        }
    }

    /// Get the answers to `asks`. `Ok(None)` means the client has to be asked
    /// first: return [`Self::input_required`] from the handler.
    pub(crate) async fn ask(&mut self, asks: Vec<Ask>) -> Result<Option<Answers>, ErrorData> {
        match &mut self.channel {
            Channel::Direct(peer) => {
                let mut answers = Answers::new();
                for ask in asks {
                    let request: ServerRequest = match ask.request()? {
                        InputRequest::CreateMessage(request) => request.into(),
                        InputRequest::Elicitation(request) => request.into(),
                        InputRequest::ListRoots(request) => request.into(),
                        other => {
                            return Err(ErrorData::internal_error(
                                format!("unsupported input request {other:?}"),
                                None,
                            ));
                        }
                    };
                    let result = peer.send_request(request).await.map_err(|error| {
                        ErrorData::internal_error(
                            format!("the client did not answer {}: {error}", ask.kind.method()),
                            None,
                        )
                    })?;
                    let answer = serde_json::to_value(result).map_err(|error| {
                        ErrorData::internal_error(format!("unreadable answer: {error}"), None)
                    })?;
                    answers.insert(ask.key.to_owned(), answer);
                }
                Ok(Some(answers))
            }
            Channel::Retry { responses, carried } => {
                let mut missing = Vec::new();
                for ask in asks {
                    if carried.answers.contains_key(ask.key) {
                        continue;
                    }
                    // A response of the wrong shape counts as no response: the
                    // client is asked again instead of the tool running on
                    // garbage.
                    match responses.remove(ask.key) {
                        Some(answer) if ask.kind.accepts(&answer) => {
                            carried.answers.insert(ask.key.to_owned(), answer);
                        }
                        _ => missing.push(ask),
                    }
                }
                if missing.is_empty() {
                    return Ok(Some(carried.answers.clone()));
                }
                let mut input_requests = BTreeMap::new();
                for ask in &missing {
                    input_requests.insert(ask.key.to_owned(), ask.request()?);
                }
                let sealed = self
                    .codec
                    .seal_json_with(
                        carried,
                        &SealOptions::new()
                            .associated_data(self.owner.as_bytes())
                            .ttl(REQUEST_STATE_TTL),
                    )
                    .map_err(|error| {
                        ErrorData::internal_error(format!("cannot seal requestState: {error}"), None)
                    })?;
                self.pending = Some(InputRequiredResult::new(Some(input_requests), Some(sealed)));
                Ok(None)
            }
            Channel::Unavailable => Err(no_session_error()),
        }
    }

    /// The `InputRequiredResult` the last unanswered [`Self::ask`] prepared.
    pub(crate) fn input_required(self) -> InputRequiredResult {
        self.pending
            .expect("input_required is only called after ask returned Ok(None)")
    }
}

fn no_session_error() -> ErrorData {
    ErrorData::invalid_request(
        "this request has no session, so the server cannot ask the client for input; \
         use a session or protocol 2026-07-28",
        None,
    )
}

/// Text of an elicitation answer's `content[field]`, if the user accepted.
pub(crate) fn elicited_text(answer: &Value, field: &str) -> Option<String> {
    if answer.get("action").and_then(Value::as_str) != Some("accept") {
        return None;
    }
    answer.get("content")?.get(field).map(|value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    })
}

/// The text a sampling answer produced.
pub(crate) fn sampled_text(answer: &Value) -> Option<String> {
    let content = answer.get("content")?;
    let block = if content.is_array() {
        content
            .as_array()?
            .iter()
            .find(|block| block.get("type") == Some(&json!("text")))?
    } else {
        content
    };
    block.get("text").and_then(Value::as_str).map(str::to_owned)
}

/// How many roots a `roots/list` answer listed.
pub(crate) fn root_count(answer: &Value) -> usize {
    answer.get("roots").and_then(Value::as_array).map_or(0, Vec::len)
}

/// A one-line summary of an elicitation answer: `action=…, content={…}`.
pub(crate) fn describe_elicitation(answer: &Value) -> String {
    let action = answer.get("action").and_then(Value::as_str).unwrap_or("unknown");
    let content = answer.get("content").cloned().unwrap_or_else(|| json!({}));
    format!("action={action}, content={content}")
}
