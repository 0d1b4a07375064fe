//! The JSON-RPC messages of an answer read whole (the console playground's exchange with an
//! endpoint, where every message on the way is shown).

use serde_json::Value;

/// The JSON-RPC messages of a Streamable HTTP answer body, read whole: the body itself when it is
/// JSON, otherwise the `data:` of each SSE event (an event's several `data:` lines joined).
/// Bodies are read bounded before they get here ([`gatehouse_egress::read_body`]).
pub fn answer_messages(body: &str) -> Vec<Value> {
    if let Ok(message) = serde_json::from_str::<Value>(body.trim()) {
        return vec![message];
    }
    let mut out = Vec::new();
    let mut data = String::new();
    let mut flush = |data: &mut String| {
        if let Ok(message) = serde_json::from_str(data) {
            out.push(message);
        }
        data.clear();
    };
    for line in body.lines() {
        if line.is_empty() {
            flush(&mut data);
        } else if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    flush(&mut data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_become_messages() {
        let body = "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\"}\n\n: comment\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{}}\n\n";
        let messages = answer_messages(body);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1]["id"], 1);
        assert_eq!(messages[0]["method"], "n");
    }

    #[test]
    fn a_json_body_is_one_message() {
        let messages = answer_messages(" {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0]["id"], 1);
    }
}
