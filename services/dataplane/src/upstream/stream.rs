//! Reading what an upstream sends back, within bounds: a whole answer body, or an SSE stream
//! whose single events may not exceed the message limit, and the JSON-RPC messages on it.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::jsonrpc;

use super::{SseEvents, UpstreamError, Upstreams, classify};

/// The next message on an upstream stream: the next event whose data is JSON (other events are
/// skipped), why the stream broke, or `None` at its end.
pub async fn next_message(events: &mut SseEvents) -> Option<Result<Value, String>> {
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if let Some(value) = event.data.as_deref().and_then(|d| serde_json::from_str(d).ok()) {
                    return Some(Ok(value));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// Reads a stream up to the response to request `id` (messages before it are skipped): the
/// response, or why none came.
pub async fn response_on(events: &mut SseEvents, id: &Value) -> Result<Value, String> {
    while let Some(value) = next_message(events).await {
        let value = value?;
        if jsonrpc::is_response(&value) && value.get("id") == Some(id) {
            return Ok(value);
        }
    }
    Err("stream ended without a response".into())
}

impl Upstreams {
    /// The events of an upstream stream; one event larger than the message limit breaks it.
    pub(super) fn sse_events(&self, response: reqwest::Response) -> SseEvents {
        let bytes = limit_events(response.bytes_stream(), self.inner.max_message_bytes);
        Box::pin(
            sse_stream::SseStream::from_bytes_stream(bytes)
                .map(|e| e.map_err(|e| format!("upstream stream broke: {e}"))),
        )
    }
}

/// Reads an answer's body, refusing one larger than `limit`: a broken or hostile upstream must
/// not exhaust the memory that every tenant's calls share. A body that arrives in one chunk (the
/// usual small answer) is passed on without copying.
pub(super) async fn read_body(response: reqwest::Response, limit: usize) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::Unavailable("upstream answer too large".into());
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut chunks = response.bytes_stream();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Unavailable(classify(&e)))?;
        size += chunk.len();
        if size > limit {
            return Err(too_large());
        }
        parts.push(chunk);
    }
    Ok(match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => parts.concat().into(),
    })
}

/// Passes a stream's bytes on while no single event (the bytes between blank lines) is larger
/// than `limit`; then ends it with an error instead of buffering without bound.
fn limit_events(
    bytes: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    limit: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut sizer = EventSizer::default();
    bytes.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if sizer.feed(&chunk) > limit {
            return Err(std::io::Error::other("upstream event too large"));
        }
        Ok(chunk)
    })
}

/// Measures SSE events across chunks, in one pass over each chunk's bytes.
#[derive(Default)]
struct EventSizer {
    /// Bytes of the event in progress (its ending blank line included).
    pending: usize,
    /// The last three bytes seen: a blank line may be split between chunks.
    last: [u8; 3],
}

impl EventSizer {
    /// Takes the next chunk; returns the size of the largest event it ends or continues.
    fn feed(&mut self, chunk: &[u8]) -> usize {
        let mut largest = 0;
        for &b in chunk {
            self.pending += 1;
            // An event ends with a blank line: `\n\n`, `\r\r` or `\r\n\r\n`.
            let ends =
                (self.last[2] == b && (b == b'\n' || b == b'\r')) || (self.last == *b"\r\n\r" && b == b'\n');
            self.last = [self.last[1], self.last[2], b];
            if ends {
                largest = largest.max(self.pending);
                self.pending = 0;
            }
        }
        largest.max(self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ends_are_found_within_and_across_chunks() {
        // Two events of 9 bytes each, whole in one chunk.
        let mut sizer = EventSizer::default();
        assert_eq!(sizer.feed(b"data: a\n\ndata: b\n\n"), 9);
        assert_eq!(sizer.pending, 0);
        // `\r\n\r\n` split between chunks ends the event; what follows starts a new one.
        let mut sizer = EventSizer::default();
        sizer.feed(b"a\r\n");
        sizer.feed(b"\r\ndata");
        assert_eq!(sizer.pending, 4);
        // So does `\n\n`.
        let mut sizer = EventSizer::default();
        sizer.feed(b"xa\n");
        sizer.feed(b"\nb");
        assert_eq!(sizer.pending, 1);
        // No blank line: one event still in progress.
        let mut sizer = EventSizer::default();
        assert_eq!(sizer.feed(b"data: no end"), 12);
        assert_eq!(sizer.pending, 12);
    }

    #[tokio::test]
    async fn one_event_larger_than_the_limit_breaks_the_stream() {
        let chunks = |parts: Vec<&'static [u8]>| {
            futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
        };
        let fits: Vec<_> = limit_events(chunks(vec![b"data: 12345\n\n", b"data: 6789", b"0\n\n"]), 16)
            .collect()
            .await;
        assert!(fits.iter().all(Result::is_ok));
        let whole: Vec<_> = limit_events(chunks(vec![b"data: 0123456789abcdef\n\n"]), 16)
            .collect()
            .await;
        assert!(whole[0].is_err(), "one large event in one chunk");
        let split: Vec<_> = limit_events(chunks(vec![b"data: 01234567", b"89abcdef"]), 16)
            .collect()
            .await;
        assert!(split[1].is_err(), "one large event across chunks");
    }
}
