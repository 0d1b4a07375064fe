//! Reading what a tenant-controlled server answers, within bounds: a whole body no larger than a
//! limit and within a deadline, or an SSE stream none of whose events is larger than a limit.
//! The one implementation every fetch of a tenant-supplied URL reads through (the dataplane's
//! upstream answers and token responses, the control plane's tool sync and OIDC fetches, client
//! metadata documents): nothing is buffered beyond the limit, whatever the server declares.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::EgressError;

/// Why a bounded read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the response is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the response did not arrive in time")]
    Timeout,
    #[error("{0}")]
    Transport(EgressError),
}

impl ReadError {
    /// A short stable label, for metrics and tenant-safe messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadError::TooLarge { .. } => "too_large",
            ReadError::Timeout => "timeout",
            ReadError::Transport(e) => e.as_str(),
        }
    }
}

/// Reads `response`'s body, refusing one larger than `limit` bytes (declared or actual) or one
/// that has not fully arrived within `deadline`. A body that arrives in one chunk (the usual
/// small answer) is passed on without copying.
pub async fn read_body(
    response: reqwest::Response,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, ReadError> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(ReadError::TooLarge { limit });
    }
    let chunks = response
        .bytes_stream()
        .map(|chunk| chunk.map_err(|e| ReadError::Transport(EgressError::from_reqwest(&e))));
    tokio::time::timeout(deadline, collect(chunks, limit))
        .await
        .map_err(|_| ReadError::Timeout)?
}

/// Collects a stream of chunks while their total stays within `limit`.
async fn collect(
    chunks: impl Stream<Item = Result<Bytes, ReadError>>,
    limit: usize,
) -> Result<Bytes, ReadError> {
    let mut chunks = std::pin::pin!(chunks);
    let mut parts: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        size = size.saturating_add(chunk.len());
        if size > limit {
            return Err(ReadError::TooLarge { limit });
        }
        parts.push(chunk);
    }
    Ok(match parts.len() {
        1 => parts.pop().unwrap_or_default(),
        _ => parts.concat().into(),
    })
}

/// The error a stream from [`limit_sse_events`] ends with when an event exceeds the limit (inside
/// the `std::io::Error`, for callers to tell it from a broken connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event is larger than {limit} bytes")]
pub struct EventTooLarge {
    pub limit: usize,
}

impl EventTooLarge {
    /// Whether `e` is this error.
    pub fn is(e: &std::io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<EventTooLarge>())
    }
}

/// Passes a stream's bytes on while no single SSE event (the bytes between blank lines) is
/// larger than `limit`; then ends it with an error instead of buffering without bound (an SSE
/// parser keeps an event in memory until its blank line arrives).
pub fn limit_sse_events<E>(
    bytes: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
    limit: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut sizer = EventSizer::default();
    let mut broken = false;
    bytes
        .map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            if sizer.feed(&chunk) > limit {
                return Err(std::io::Error::other(EventTooLarge { limit }));
            }
            Ok(chunk)
        })
        // Nothing after the first error: the stream is over.
        .take_while(move |item| {
            let go = !broken;
            broken |= item.is_err();
            std::future::ready(go)
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
            self.pending = self.pending.saturating_add(1);
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

    fn chunks(
        parts: Vec<&'static [u8]>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

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
        let fits: Vec<_> = limit_sse_events(chunks(vec![b"data: 12345\n\n", b"data: 6789", b"0\n\n"]), 16)
            .collect()
            .await;
        assert!(fits.iter().all(Result::is_ok));
        let whole: Vec<_> = limit_sse_events(chunks(vec![b"data: 0123456789abcdef\n\n"]), 16)
            .collect()
            .await;
        assert!(whole[0].is_err(), "one large event in one chunk");
        let split: Vec<_> = limit_sse_events(chunks(vec![b"data: 01234567", b"89abcdef", b"more"]), 16)
            .collect()
            .await;
        assert_eq!(split.len(), 2, "the stream ends at its first error");
        assert!(split[1].is_err(), "one large event across chunks");
    }

    #[tokio::test]
    async fn bodies_are_collected_up_to_the_limit() {
        let ok = |parts: Vec<&'static [u8]>| {
            futures::stream::iter(
                parts
                    .into_iter()
                    .map(|p| Ok::<_, ReadError>(Bytes::from_static(p))),
            )
        };
        assert_eq!(
            collect(ok(vec![b"0123", b"4567"]), 8).await,
            Ok(Bytes::from_static(b"01234567"))
        );
        assert_eq!(
            collect(ok(vec![b"0123", b"4567", b"8"]), 8).await,
            Err(ReadError::TooLarge { limit: 8 })
        );
        // An endless body stops at the limit instead of growing without bound.
        let endless = futures::stream::repeat_with(|| Ok::<_, ReadError>(Bytes::from_static(&[b'x'; 1024])));
        assert_eq!(
            collect(endless, 1 << 20).await,
            Err(ReadError::TooLarge { limit: 1 << 20 })
        );
    }
}
