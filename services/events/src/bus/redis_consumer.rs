//! The Redis consumer: reads the stream through a consumer group, re-reads its own pending
//! entries, claims entries dead consumers left idle, and acknowledges what the caller committed;
//! plus the parsing of the stream replies.

use std::time::Duration;

use redis::Value;
use tokio::time::Instant;

use super::{Batch, ConsumerInner, EventConsumer, Receipt, STREAM_FIELD};
use crate::link::RedisLink;
use crate::message::BusMessage;

/// Longest a consumer blocks in one XREADGROUP (its connection's timeout is longer).
pub(crate) const MAX_BLOCK: Duration = Duration::from_secs(5);

pub(crate) struct RedisConsumer {
    /// Dedicated to this consumer: blocking reads and acknowledgements, one at a time.
    link: RedisLink,
    /// Anything else (readiness probes must not queue behind a blocking read).
    pub(super) probe_link: RedisLink,
    stream: String,
    group: String,
    name: String,
    claim_idle: Duration,
    claim_every: Duration,
    /// Re-reading our own pending entries (after start or a lost connection) from this id.
    pending_cursor: Option<String>,
    group_ready: bool,
    claim_cursor: String,
    next_claim: Instant,
    next_cleanup: Instant,
}

/// One entry read from the stream: its id and the payload, if the entry still exists.
struct Entry {
    id: String,
    payload: Option<Vec<u8>>,
}

impl RedisConsumer {
    pub fn consumer(
        link: RedisLink,
        probe_link: RedisLink,
        stream: String,
        group: String,
        name: String,
        claim_idle: Duration,
    ) -> EventConsumer {
        EventConsumer {
            inner: ConsumerInner::Redis(Box::new(RedisConsumer {
                link,
                probe_link,
                stream,
                group,
                name,
                claim_idle,
                claim_every: (claim_idle / 3).max(Duration::from_millis(500)),
                pending_cursor: Some("0".to_owned()),
                group_ready: false,
                claim_cursor: "0-0".to_owned(),
                next_claim: Instant::now(),
                next_cleanup: Instant::now() + Duration::from_secs(60),
            })),
        }
    }

    pub(super) async fn next_batch(&mut self, max: usize, wait: Duration) -> anyhow::Result<Batch> {
        let Some(conn) = self.link.wait(wait.min(MAX_BLOCK)).await else {
            anyhow::bail!("redis unreachable");
        };
        match self.read(conn.conn.clone(), max, wait).await {
            Ok(batch) => Ok(batch),
            Err(e) => {
                self.link.failed(&conn, &e);
                if e.code() == Some("NOGROUP") {
                    self.group_ready = false;
                }
                // Whatever was delivered to us and not acknowledged comes back this way.
                self.pending_cursor = Some("0".to_owned());
                Err(anyhow::anyhow!("reading the event stream: {e}"))
            }
        }
    }

    async fn read(
        &mut self,
        mut conn: redis::aio::MultiplexedConnection,
        max: usize,
        wait: Duration,
    ) -> redis::RedisResult<Batch> {
        if !self.group_ready {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&self.stream)
                .arg(&self.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => {
                    tracing::info!(stream = %self.stream, group = %self.group, "consumer group created")
                }
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
            self.group_ready = true;
        }

        // 1. Our own pending entries (delivered before a restart or a lost connection).
        if let Some(cursor) = self.pending_cursor.clone() {
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.group)
                .arg(&self.name)
                .arg("COUNT")
                .arg(max)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(&cursor)
                .query_async(&mut conn)
                .await?;
            let entries = parse_read_reply(reply);
            match entries.last() {
                None => self.pending_cursor = None,
                Some(last) => {
                    self.pending_cursor = Some(last.id.clone());
                    return self.decode_batch(&mut conn, entries).await;
                }
            }
        }

        // 2. Entries a dead consumer left pending for too long.
        let now = Instant::now();
        if now >= self.next_claim {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.name)
                .arg(self.claim_idle.as_millis() as u64)
                .arg(&self.claim_cursor)
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await?;
            let (next, entries) = parse_autoclaim_reply(reply);
            if next == "0-0" {
                self.claim_cursor = "0-0".to_owned();
                self.next_claim = now + self.claim_every;
            } else {
                self.claim_cursor = next;
            }
            if !entries.is_empty() {
                metrics::counter!("gatehouse_events_claimed_total").increment(entries.len() as u64);
                tracing::info!(
                    entries = entries.len(),
                    "claimed entries left pending by another consumer"
                );
                return self.decode_batch(&mut conn, entries).await;
            }
        }
        if now >= self.next_cleanup {
            self.next_cleanup = now + Duration::from_secs(600);
            self.forget_idle_consumers(&mut conn).await;
        }

        // 3. New entries.
        let block = wait.min(MAX_BLOCK);
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        let entries = parse_read_reply(reply);
        self.decode_batch(&mut conn, entries).await
    }

    /// Decodes entries. Entries that no longer exist (trimmed) or cannot be decoded are
    /// acknowledged at once; undecodable ones are copied to `<stream>:dead` first.
    async fn decode_batch(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        entries: Vec<Entry>,
    ) -> redis::RedisResult<Batch> {
        let mut messages = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        let mut discard = Vec::new();
        let mut dead = Vec::new();
        for entry in entries {
            match entry.payload {
                None => discard.push(entry.id),
                Some(payload) => match serde_json::from_slice::<BusMessage>(&payload) {
                    Ok(m) => {
                        messages.push(m);
                        ids.push(entry.id);
                    }
                    Err(e) => {
                        tracing::error!(id = %entry.id, error = %e, "undecodable event; moved to the dead-letter stream");
                        dead.push((entry.id, payload));
                    }
                },
            }
        }
        if !discard.is_empty() {
            tracing::warn!(
                entries = discard.len(),
                "pending entries were trimmed from the stream before being processed"
            );
            metrics::counter!("gatehouse_events_trimmed_total").increment(discard.len() as u64);
        }
        if !dead.is_empty() || !discard.is_empty() {
            let mut pipe = redis::pipe();
            for (id, payload) in &dead {
                pipe.cmd("XADD")
                    .arg(format!("{}:dead", self.stream))
                    .arg("*")
                    .arg("id")
                    .arg(id)
                    .arg(STREAM_FIELD)
                    .arg(payload.as_slice())
                    .ignore();
            }
            let gone: Vec<&String> = dead.iter().map(|(id, _)| id).chain(discard.iter()).collect();
            pipe.cmd("XACK")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&gone)
                .ignore();
            pipe.query_async::<()>(conn).await?;
            metrics::counter!("gatehouse_events_dead_lettered_total").increment(dead.len() as u64);
        }
        metrics::counter!("gatehouse_events_consumed_total").increment(messages.len() as u64);
        Ok(Batch {
            messages,
            receipt: if ids.is_empty() {
                Receipt::None
            } else {
                Receipt::Redis(ids)
            },
        })
    }

    pub(super) async fn ack(&mut self, ids: Vec<String>) -> anyhow::Result<()> {
        let Some(conn) = self.link.get() else {
            self.pending_cursor = Some("0".to_owned());
            anyhow::bail!("redis unreachable; the batch stays pending and will be redelivered");
        };
        let mut c = conn.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&ids)
            .ignore();
        // Acknowledged entries are of no further use; the stream keeps only the backlog.
        pipe.cmd("XDEL").arg(&self.stream).arg(&ids).ignore();
        if let Err(e) = pipe.query_async::<()>(&mut c).await {
            self.link.failed(&conn, &e);
            self.pending_cursor = Some("0".to_owned());
            anyhow::bail!("acknowledging events: {e}");
        }
        Ok(())
    }

    /// Removes consumers that have been idle for a day and hold nothing (names of processes
    /// that are gone).
    async fn forget_idle_consumers(&self, conn: &mut redis::aio::MultiplexedConnection) {
        let info: redis::RedisResult<redis::streams::StreamInfoConsumersReply> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(conn)
            .await;
        let Ok(info) = info else { return };
        for consumer in info.consumers {
            if consumer.name != self.name && consumer.pending == 0 && consumer.idle > 86_400_000 {
                let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&consumer.name)
                    .query_async(conn)
                    .await;
            }
        }
    }
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[id, [field, value, ...] | nil]` entries.
fn parse_entries(v: Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut parts) = item else {
                return None;
            };
            if parts.is_empty() {
                return None;
            }
            let fields = if parts.len() > 1 {
                parts.remove(1)
            } else {
                Value::Nil
            };
            let id = value_to_string(&parts[0])?;
            let payload = match fields {
                Value::Array(kv) => kv.chunks(2).find_map(|pair| match pair {
                    [Value::BulkString(k), Value::BulkString(v)] if k == STREAM_FIELD.as_bytes() => {
                        Some(v.clone())
                    }
                    _ => None,
                }),
                _ => None,
            };
            // An entry with fields but without ours is as unusable as a deleted one.
            Some(Entry { id, payload })
        })
        .collect()
}

/// XREADGROUP reply: nil, or `[[stream, entries]]` (RESP2) / `{stream: entries}` (RESP3).
fn parse_read_reply(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => parse_entries(kv.remove(1)),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, e)| parse_entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// XAUTOCLAIM reply: `[next-id, entries, deleted-ids]`; deleted ids are returned as entries
/// without payload so they get acknowledged.
fn parse_autoclaim_reply(v: Value) -> (String, Vec<Entry>) {
    let Value::Array(mut parts) = v else {
        return ("0-0".to_owned(), Vec::new());
    };
    let next = parts
        .first()
        .and_then(value_to_string)
        .unwrap_or_else(|| "0-0".to_owned());
    let mut entries = if parts.len() > 1 {
        parse_entries(std::mem::replace(&mut parts[1], Value::Nil))
    } else {
        Vec::new()
    };
    if let Some(Value::Array(deleted)) = parts.get(2) {
        entries.extend(
            deleted
                .iter()
                .filter_map(value_to_string)
                .map(|id| Entry { id, payload: None }),
        );
    }
    (next, entries)
}
