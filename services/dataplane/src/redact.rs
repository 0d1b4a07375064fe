//! Secrets in what upstreams send back are redacted before the client (and so the model) sees
//! them: tool results, resource contents, prompts, errors and notifications may carry a credential
//! a domain server read from somewhere, and an MCP client hands all of it to an LLM.
//!
//! Detection is by shape, for credentials whose format is distinctive enough to rarely match
//! anything else (cloud and SaaS keys, PEM private keys, Gatehouse's own service tokens). It is a
//! safety net for accidental leaks, not a guarantee: a server that wants to smuggle a secret out
//! can encode it. Every message is scanned as raw bytes first (no allocation when nothing
//! matches, which is nearly always); only a message with a candidate is parsed, its strings
//! redacted, and written out again.

use std::sync::Arc;

use regex::Regex;
use regex::bytes::RegexSet;
use serde_json::Value;

/// Kinds of secrets and their shapes in decoded text.
const PATTERNS: &[(&str, &str)] = &[
    ("aws-access-key-id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    (
        "github-token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})\b",
    ),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9-]{10,250}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("stripe-secret-key", r"\b(?:sk|rk)_live_[0-9A-Za-z]{24,247}\b"),
    (
        "gatehouse-service-token",
        r"\bghs_[0-9a-fA-F]{32}_[A-Za-z0-9_-]{16,}",
    ),
    (
        "private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
    ),
];

/// The same shapes, loosened to find candidates in raw JSON (where a newline is `\n` and word
/// boundaries may sit next to an escape): a superset of what [`PATTERNS`] matches after decoding.
const CANDIDATES: &[&str] = &[
    r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}",
    r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22}",
    r"xox[abposr]-[A-Za-z0-9-]{10}",
    r"AIza[0-9A-Za-z_-]{35}",
    r"(?:sk|rk)_live_[0-9A-Za-z]{24}",
    r"ghs_[0-9a-fA-F]{32}_",
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
];

/// Finds and redacts secrets in upstream messages; cheap to clone.
#[derive(Clone)]
pub struct Redactor {
    inner: Arc<Inner>,
}

struct Inner {
    candidates: RegexSet,
    patterns: Vec<(&'static str, Regex)>,
}

/// What redaction found in one message.
pub struct Redacted {
    /// The message with every secret replaced by `[REDACTED:<kind>]`.
    pub message: Vec<u8>,
    /// The kinds found, one entry per secret.
    pub kinds: Vec<&'static str>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    pub fn new() -> Self {
        let candidates = RegexSet::new(CANDIDATES).expect("candidate patterns compile");
        let patterns = PATTERNS
            .iter()
            .map(|(kind, re)| (*kind, Regex::new(re).expect("secret patterns compile")))
            .collect();
        Self {
            inner: Arc::new(Inner { candidates, patterns }),
        }
    }

    /// An upstream message as the client may see it: `message` itself when nothing needed
    /// redacting (or the deployment does not redact), else the redacted copy.
    pub fn apply(redactor: Option<&Redactor>, message: bytes::Bytes) -> bytes::Bytes {
        match redactor.and_then(|r| r.redact(&message)) {
            Some(redacted) => bytes::Bytes::from(redacted.message),
            None => message,
        }
    }

    /// `None` when the JSON message (or SSE event data) holds nothing to redact: send it as it
    /// is. A message that is not JSON is redacted as text.
    pub fn redact(&self, message: &[u8]) -> Option<Redacted> {
        if !self.inner.candidates.is_match(message) {
            return None;
        }
        let mut kinds = Vec::new();
        let message = match serde_json::from_slice::<Value>(message) {
            Ok(mut value) => {
                self.redact_value(&mut value, &mut kinds);
                serde_json::to_vec(&value).expect("json")
            }
            Err(_) => {
                let text = String::from_utf8_lossy(message);
                self.redact_text(&text, &mut kinds)?.into_bytes()
            }
        };
        (!kinds.is_empty()).then(|| {
            for kind in &kinds {
                metrics::counter!("gatehouse_dataplane_secrets_redacted_total", "kind" => *kind).increment(1);
            }
            Redacted { message, kinds }
        })
    }

    fn redact_value(&self, value: &mut Value, kinds: &mut Vec<&'static str>) {
        match value {
            Value::String(text) => {
                if let Some(redacted) = self.redact_text(text, kinds) {
                    *text = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v, kinds)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v, kinds)),
            _ => {}
        }
    }

    /// The text with secrets replaced, or `None` when it has none.
    fn redact_text(&self, text: &str, kinds: &mut Vec<&'static str>) -> Option<String> {
        let mut current: Option<String> = None;
        for (kind, pattern) in &self.inner.patterns {
            let source = current.as_deref().unwrap_or(text);
            let replaced = pattern.replace_all(source, |_: &regex::Captures| {
                kinds.push(*kind);
                format!("[REDACTED:{kind}]")
            });
            if let std::borrow::Cow::Owned(replaced) = replaced {
                current = Some(replaced);
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redact(v: &Value) -> Option<(Value, Vec<&'static str>)> {
        let r = Redactor::new().redact(&serde_json::to_vec(v).unwrap())?;
        Some((serde_json::from_slice(&r.message).unwrap(), r.kinds))
    }

    #[test]
    fn known_shapes_are_redacted_everywhere_in_the_message() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----";
        let message = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [
            {"type": "text", "text": "key:\nAKIAIOSFODNN7EXAMPLE and more"},
            {"type": "text", "text": format!("here: {pem} done")},
            {"type": "text", "text": "ghp_0123456789abcdefghijABCDEFGHIJ012345"},
        ], "structuredContent": {"nested": ["xoxb-1234567890-abcdefghij"]}}});
        let (out, kinds) = redact(&message).expect("secrets found");
        let content = &out["result"]["content"];
        assert_eq!(content[0]["text"], "key:\n[REDACTED:aws-access-key-id] and more");
        assert_eq!(content[1]["text"], "here: [REDACTED:private-key] done");
        assert_eq!(content[2]["text"], "[REDACTED:github-token]");
        assert_eq!(
            out["result"]["structuredContent"]["nested"][0],
            "[REDACTED:slack-token]"
        );
        assert_eq!(out["id"], 1);
        assert_eq!(kinds.len(), 4);
    }

    #[test]
    fn ordinary_messages_pass_untouched() {
        for message in [
            json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "hello"}]}}),
            json!({"text": "AKIA is a prefix, AKIAshort is not a key, nor is BAKIAIOSFODNN7EXAMPLE1"}),
            json!({"text": "sk_test_0123456789abcdefghijklmn is a test key"}),
        ] {
            assert!(redact(&message).is_none(), "{message}");
        }
    }

    #[test]
    fn text_that_is_not_json_is_redacted_as_text() {
        let r = Redactor::new()
            .redact(b"oops AKIAIOSFODNN7EXAMPLE")
            .expect("found");
        assert_eq!(r.message, b"oops [REDACTED:aws-access-key-id]");
    }
}
