//! The local disk spool: where events wait when they cannot be handed to Redis (or, in
//! single-node mode, until the usage-worker of the same process has committed them).
//!
//! Layout: `<dir>/<seq>.jsonl` segment files (20-digit sequence numbers, so names sort in
//! order), one JSON-encoded [`BusMessage`] per line, plus `<dir>/.lock`, held by the one process
//! that owns the directory. The writer appends whole batches and `fsync`s each one before it
//! counts as spooled; it rotates to a new segment once the current one reaches the segment size,
//! and segments from an earlier run are never appended to (their tail may be torn by a crash).
//! A reader (the replayer or the single-node consumer) reads committed bytes only, and a segment
//! is deleted only once every line in it is acknowledged — after Redis accepted it, or after the
//! worker's transaction committed. The total size is bounded: appending past `max_bytes` fails
//! with [`SpoolError::Full`] and the caller keeps the batch in memory until there is room.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gatehouse_core::sync::MutexExt;

use tokio::sync::Notify;

use crate::message::BusMessage;

const SEGMENT_SUFFIX: &str = ".jsonl";
const LOCK_FILE: &str = ".lock";
/// The last acknowledged position (`<seq> <offset>`), so a restarted reader skips the part of a
/// segment already acknowledged. Written without fsync: losing it only means redelivery.
const ACKED_FILE: &str = "acked";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({used} of {max} bytes used)")]
    Full { used: u64, max: u64 },
    #[error("spool I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A place in the spool: everything before it has been read (and, once acknowledged, may go).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpoolPosition {
    pub seq: u64,
    pub offset: u64,
}

#[derive(Debug)]
struct Segment {
    /// Bytes written and fsynced (always at a line boundary for segments of this run).
    len: u64,
    /// No more writes will come (rotated, or left by an earlier run).
    closed: bool,
}

struct SpoolState {
    segments: BTreeMap<u64, Segment>,
    /// Everything before this position has been acknowledged.
    acked: SpoolPosition,
    writer: Option<(u64, File)>,
    next_seq: u64,
    total_bytes: u64,
}

/// What one read returned.
#[derive(Debug, Default)]
pub struct SpoolRead {
    pub messages: Vec<BusMessage>,
    /// Where the next read starts; acknowledging it releases everything before.
    pub end: SpoolPosition,
    /// Lines that could not be decoded (torn by a crash, or corrupted); skipped.
    pub corrupt_lines: usize,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    state: Mutex<SpoolState>,
    appended: Notify,
    _lock: File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.dir).finish()
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Whether `dir` holds spooled segments (without opening or locking it).
pub fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_str().and_then(parse_segment_name).is_some())
    })
}

impl Spool {
    /// Opens (creating if needed) and locks `dir`. Fails if another process holds it.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "spool directory {} is in use by another process (give each process its own dataplane.spool_dir)",
                        dir.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut segments = BTreeMap::new();
        let mut total_bytes = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) else {
                continue;
            };
            let len = entry.metadata()?.len();
            total_bytes += len;
            segments.insert(seq, Segment { len, closed: true });
        }
        let acked = std::fs::read_to_string(dir.join(ACKED_FILE))
            .ok()
            .and_then(|text| {
                let (seq, offset) = text.trim().split_once(' ')?;
                Some(SpoolPosition {
                    seq: seq.parse().ok()?,
                    offset: offset.parse().ok()?,
                })
            })
            .unwrap_or_default();
        // New segments always come after anything acknowledged, even if every segment was
        // deleted, so that the acknowledged position never hides a new segment.
        let next_seq = segments.keys().next_back().copied().unwrap_or(0).max(acked.seq) + 1;
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            state: Mutex::new(SpoolState {
                segments,
                acked,
                writer: None,
                next_seq,
                total_bytes,
            }),
            appended: Notify::new(),
            _lock: lock,
        };
        metrics::gauge!("gatehouse_events_spool_bytes").set(total_bytes as f64);
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes currently held on disk.
    pub fn bytes(&self) -> u64 {
        self.state.lock_or_recover().total_bytes
    }

    /// Whether nothing is waiting in the spool.
    pub fn is_empty(&self) -> bool {
        let state = self.state.lock_or_recover();
        state.segments.values().all(|s| s.len == 0)
    }

    /// Appends `messages` durably (written and fsynced) or not at all.
    pub fn append(&self, messages: &[BusMessage]) -> Result<(), SpoolError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(messages.len() * 512);
        for m in messages {
            serde_json::to_writer(&mut bytes, m).map_err(io::Error::other)?;
            bytes.push(b'\n');
        }
        let mut state = self.state.lock_or_recover();
        if state.total_bytes + bytes.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full {
                used: state.total_bytes,
                max: self.max_bytes,
            });
        }
        let needs_rotation = match &state.writer {
            None => true,
            Some((seq, _)) => state
                .segments
                .get(seq)
                .is_none_or(|s| s.len >= self.segment_bytes),
        };
        if needs_rotation {
            self.rotate_locked(&mut state);
            let seq = state.next_seq;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.dir.join(segment_name(seq)))?;
            // Make the new file's directory entry durable too.
            File::open(&self.dir)?.sync_all()?;
            state.next_seq += 1;
            state.segments.insert(
                seq,
                Segment {
                    len: 0,
                    closed: false,
                },
            );
            state.writer = Some((seq, file));
        }
        let (seq, file) = state.writer.as_mut().expect("writer opened above");
        let seq = *seq;
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Cut off whatever part of the batch reached the file, so the segment stays a
            // sequence of whole lines; if even that fails, retire the segment.
            let committed = state.segments[&seq].len;
            let (_, file) = state.writer.as_mut().expect("writer");
            if file.set_len(committed).and_then(|()| file.sync_data()).is_err() {
                self.rotate_locked(&mut state);
            }
            return Err(e.into());
        }
        state.segments.get_mut(&seq).expect("segment").len += bytes.len() as u64;
        state.total_bytes += bytes.len() as u64;
        metrics::gauge!("gatehouse_events_spool_bytes").set(state.total_bytes as f64);
        drop(state);
        self.appended.notify_waiters();
        Ok(())
    }

    /// Closes the segment being written (if it holds anything) so that readers may finish and
    /// delete it.
    pub fn rotate(&self) {
        let mut state = self.state.lock_or_recover();
        let current_has_data = state
            .writer
            .as_ref()
            .is_some_and(|(seq, _)| state.segments.get(seq).is_some_and(|s| s.len > 0));
        if current_has_data {
            self.rotate_locked(&mut state);
        }
    }

    fn rotate_locked(&self, state: &mut SpoolState) {
        if let Some((seq, _file)) = state.writer.take()
            && let Some(segment) = state.segments.get_mut(&seq)
        {
            segment.closed = true;
        }
    }

    /// Where a reader starts: the oldest position held and not yet acknowledged.
    pub fn start(&self) -> SpoolPosition {
        let state = self.state.lock_or_recover();
        let oldest = SpoolPosition {
            seq: state.segments.keys().next().copied().unwrap_or(state.next_seq),
            offset: 0,
        };
        oldest.max(state.acked)
    }

    /// Completes when something is appended after this call (enable it before reading to not
    /// miss a wake-up).
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// Reads up to `max` messages from `from`, crossing into later segments as earlier ones are
    /// exhausted and closed. Stops at the committed end of the segment being written.
    pub fn read(&self, from: SpoolPosition, max: usize) -> io::Result<SpoolRead> {
        let mut out = SpoolRead {
            end: from,
            ..Default::default()
        };
        let mut pos = from;
        while out.messages.len() < max {
            // The segment to read: the one at `pos`, or the next one after it.
            let (seq, len, closed) = {
                let state = self.state.lock_or_recover();
                match state.segments.range(pos.seq..).next() {
                    Some((&seq, s)) => (seq, s.len, s.closed),
                    None => break,
                }
            };
            if seq != pos.seq {
                pos = SpoolPosition { seq, offset: 0 };
            }
            if pos.offset < len {
                let mut file = File::open(self.dir.join(segment_name(seq)))?;
                file.seek(SeekFrom::Start(pos.offset))?;
                let mut reader = BufReader::new(file.take(len - pos.offset));
                let mut line = Vec::new();
                while out.messages.len() < max {
                    line.clear();
                    let n = reader.read_until(b'\n', &mut line)?;
                    if n == 0 {
                        break;
                    }
                    pos.offset += n as u64;
                    if line.last() != Some(&b'\n') {
                        // A torn tail left by a crash mid-write: never complete, never valid.
                        out.corrupt_lines += 1;
                        break;
                    }
                    match serde_json::from_slice::<BusMessage>(&line[..line.len() - 1]) {
                        Ok(m) => out.messages.push(m),
                        Err(_) => out.corrupt_lines += 1,
                    }
                }
            }
            out.end = pos;
            if pos.offset >= len {
                if closed {
                    // Exhausted: the next read starts in the following segment.
                    pos = SpoolPosition {
                        seq: seq + 1,
                        offset: 0,
                    };
                    out.end = SpoolPosition { seq, offset: len };
                    continue;
                }
                break;
            }
        }
        if out.corrupt_lines > 0 {
            metrics::counter!("gatehouse_events_spool_corrupt_lines_total")
                .increment(out.corrupt_lines as u64);
            tracing::error!(
                lines = out.corrupt_lines,
                dir = %self.dir.display(),
                "skipped undecodable lines in the event spool"
            );
        }
        Ok(out)
    }

    /// Deletes every segment entirely before `upto` (everything before it is acknowledged). The
    /// segment being written is closed and deleted too when `upto` is at its end; the next
    /// append starts a new one.
    pub fn release(&self, upto: SpoolPosition) -> io::Result<()> {
        let mut state = self.state.lock_or_recover();
        if upto > state.acked {
            state.acked = upto;
            let tmp = self.dir.join(format!("{ACKED_FILE}.tmp"));
            std::fs::write(&tmp, format!("{} {}", upto.seq, upto.offset))?;
            std::fs::rename(&tmp, self.dir.join(ACKED_FILE))?;
        }
        let writing = state.writer.as_ref().map(|(seq, _)| *seq);
        let done: Vec<u64> = state
            .segments
            .iter()
            .filter(|(seq, s)| **seq < upto.seq || (**seq == upto.seq && upto.offset >= s.len))
            .map(|(seq, _)| *seq)
            .collect();
        if writing.is_some_and(|w| done.contains(&w)) {
            self.rotate_locked(&mut state);
        }
        for seq in done {
            match std::fs::remove_file(self.dir.join(segment_name(seq))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if let Some(segment) = state.segments.remove(&seq) {
                state.total_bytes -= segment.len;
            }
        }
        metrics::gauge!("gatehouse_events_spool_bytes").set(state.total_bytes as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToolDrift;
    use gatehouse_core::ids::{EventId, OrgId, ServerId};

    fn message(n: usize) -> BusMessage {
        BusMessage::ToolDrift(ToolDrift {
            id: EventId::new(),
            org_id: OrgId::new(),
            occurred_at: time::OffsetDateTime::now_utc(),
            server_id: ServerId::new(),
            tool_name: format!("tool-{n}"),
            approved_hash: "a".into(),
            observed_hash: "b".into(),
            observed_definition: serde_json::json!({"n": n}),
        })
    }

    fn segment_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_str().and_then(parse_segment_name).is_some())
            .count()
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("gatehouse-spool-unit-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn rotates_reads_across_segments_and_deletes_acknowledged_segments() {
        let dir = temp_dir();
        let spool = Spool::open(&dir, 10 << 20, 600).unwrap();
        let sent: Vec<BusMessage> = (0..20).map(message).collect();
        for chunk in sent.chunks(3) {
            spool.append(chunk).unwrap();
        }
        let segments = segment_files(&dir);
        assert!(segments > 2, "expected rotation, got {segments} segment(s)");

        let first = spool.read(spool.start(), 7).unwrap();
        assert_eq!(first.messages, sent[..7]);
        let rest = spool.read(first.end, 100).unwrap();
        assert_eq!(rest.messages, sent[7..]);
        assert_eq!(spool.read(rest.end, 100).unwrap().messages, vec![]);

        spool.release(first.end).unwrap();
        assert!(!spool.is_empty());
        let remaining = segment_files(&dir);
        assert!(remaining < segments, "acknowledged segments are deleted");
        // Acknowledging the end of the segment being written closes and deletes it too, and
        // the next append starts a fresh one.
        spool.release(rest.end).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(segment_files(&dir), 0);
        let later = message(100);
        spool.append(std::slice::from_ref(&later)).unwrap();
        assert_eq!(spool.read(rest.end, 10).unwrap().messages, vec![later]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn survives_reopen_skips_torn_tail_and_never_appends_to_old_segments() {
        let dir = temp_dir();
        let sent: Vec<BusMessage> = (0..5).map(message).collect();
        {
            let spool = Spool::open(&dir, 10 << 20, 1 << 20).unwrap();
            spool.append(&sent).unwrap();
        }
        // A crash mid-write leaves half a line.
        let seg = dir.join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(br#"{"type":"tool_drift","id":"#).unwrap();
        drop(f);

        let spool = Spool::open(&dir, 10 << 20, 1 << 20).unwrap();
        let more = message(99);
        spool.append(std::slice::from_ref(&more)).unwrap();
        let read = spool.read(spool.start(), 100).unwrap();
        assert_eq!(read.corrupt_lines, 1);
        let mut expected = sent.clone();
        expected.push(more);
        assert_eq!(read.messages, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bounded_and_locked() {
        let dir = temp_dir();
        let spool = Spool::open(&dir, 1000, 1 << 20).unwrap();
        let batch: Vec<BusMessage> = (0..10).map(message).collect();
        assert!(matches!(spool.append(&batch), Err(SpoolError::Full { .. })));
        assert!(spool.is_empty());
        let second = Spool::open(&dir, 1000, 1 << 20);
        assert_eq!(second.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
