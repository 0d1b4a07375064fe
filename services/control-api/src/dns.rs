//! A DNS stub resolver for one question: the TXT records of a name (RFC 1035), asked of the DNS
//! servers the operator configures (`sso.dns_nameservers`), in order. It is used to check the
//! records orgs publish to prove they control an email domain.
//!
//! One query per server over UDP (with EDNS0, RFC 6891, advertising 1232 bytes), repeated over
//! TCP when the answer comes back truncated. Every read is bounded: a UDP datagram by its buffer,
//! a TCP answer by its 16-bit length prefix, and each server by `sso.dns_timeout_ms` in all. An
//! answer is accepted only if it carries the query's random id and repeats its question; records
//! are taken for the name asked or a CNAME alias of it found in the same answer.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TYPE_CNAME: u16 = 5;
const TYPE_TXT: u16 = 16;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The UDP payload size advertised through EDNS0 (the DNS flag day 2020 value).
const EDNS_UDP_SIZE: u16 = 1232;
/// Largest UDP datagram read.
const UDP_BUFFER: usize = 4096;
/// CNAME links followed within one answer.
const MAX_ALIASES: usize = 8;

/// Why a lookup failed. The texts are shown to the org admin who asked for a check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("no DNS server is configured for domain verification (sso.dns_nameservers)")]
    NotConfigured,
    #[error("not a valid domain name")]
    InvalidName,
    #[error("the DNS servers could not answer: {0}")]
    Unavailable(String),
}

/// Resolves TXT records through the configured DNS servers.
#[derive(Clone, Debug)]
pub struct TxtResolver {
    nameservers: Vec<SocketAddr>,
    timeout: Duration,
}

/// What one server said.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// NOERROR or NXDOMAIN: the TXT values at the name (possibly none).
    Records(Vec<String>),
    /// The answer did not fit a datagram: ask again over TCP.
    Truncated,
    /// SERVFAIL, REFUSED and the like: ask the next server.
    Failed(&'static str),
}

impl TxtResolver {
    pub fn new(nameservers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { nameservers, timeout }
    }

    /// The TXT values at `name` (each record's strings joined); empty when the name has none or
    /// does not exist.
    pub async fn lookup_txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        if self.nameservers.is_empty() {
            return Err(DnsError::NotConfigured);
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut problems = Vec::new();
        for server in &self.nameservers {
            match tokio::time::timeout(self.timeout, ask(*server, &name)).await {
                Ok(Ok(Reply::Records(values))) => return Ok(values),
                Ok(Ok(Reply::Failed(why))) => problems.push(format!("{server}: {why}")),
                Ok(Ok(Reply::Truncated)) => problems.push(format!("{server}: truncated answer")),
                Ok(Err(DnsError::InvalidName)) => return Err(DnsError::InvalidName),
                Ok(Err(e)) => problems.push(format!("{server}: {e}")),
                Err(_) => problems.push(format!("{server}: no answer in time")),
            }
        }
        Err(DnsError::Unavailable(problems.join("; ")))
    }
}

/// One server: UDP, then TCP if the answer was truncated.
async fn ask(server: SocketAddr, name: &str) -> Result<Reply, DnsError> {
    let id: u16 = rand::random();
    let query = encode_query(id, name)?;
    let reply = over_udp(server, &query, id, name).await?;
    if reply != Reply::Truncated {
        return Ok(reply);
    }
    over_tcp(server, &query, id, name).await
}

fn io_error(e: std::io::Error) -> DnsError {
    DnsError::Unavailable(e.kind().to_string())
}

async fn over_udp(server: SocketAddr, query: &[u8], id: u16, name: &str) -> Result<Reply, DnsError> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(io_error)?;
    // Connected: datagrams from any other source are dropped by the kernel.
    socket.connect(server).await.map_err(io_error)?;
    socket.send(query).await.map_err(io_error)?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io_error)?;
        // Anything that is not the answer to this query (another id, another question, garbage)
        // is ignored; the caller's deadline ends the wait.
        if let Ok(reply) = decode_reply(&buf[..n], id, name) {
            return Ok(reply);
        }
    }
}

async fn over_tcp(server: SocketAddr, query: &[u8], id: u16, name: &str) -> Result<Reply, DnsError> {
    let mut stream = TcpStream::connect(server).await.map_err(io_error)?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io_error)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io_error)?;
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer).await.map_err(io_error)?;
    match decode_reply(&answer, id, name) {
        Ok(Reply::Truncated) => Ok(Reply::Failed("truncated answer over TCP")),
        Ok(reply) => Ok(reply),
        Err(why) => Ok(Reply::Failed(why)),
    }
}

/// A query for the TXT records of `name`, recursion desired, with an EDNS0 OPT record.
fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // RD
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&[0, 0, 0, 0]); // ANCOUNT, NSCOUNT
    out.extend_from_slice(&1u16.to_be_bytes()); // ARCOUNT: the OPT record
    encode_name(name, &mut out)?;
    out.extend_from_slice(&TYPE_TXT.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root owner, type 41, class = UDP payload size, TTL = extended rcode/flags 0, no data.
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(out)
}

/// `name` as labels: letters, digits, hyphens and underscores (for `_service` names), 1 to 63
/// bytes each, at most 253 in all.
fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), DnsError> {
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::InvalidName);
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(DnsError::InvalidName);
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// Reads a message that must answer query `id` for the TXT records of `name`.
fn decode_reply(msg: &[u8], id: u16, name: &str) -> Result<Reply, &'static str> {
    let header = msg.get(..12).ok_or("short message")?;
    if u16::from_be_bytes([header[0], header[1]]) != id {
        return Err("another query's id");
    }
    if header[2] & 0x80 == 0 || (header[2] >> 3) & 0x0f != 0 {
        return Err("not a response to a standard query");
    }
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    if count(4) != 1 {
        return Err("the question is not repeated");
    }
    let (qname, mut at) = read_name(msg, 12)?;
    let qtype = read_u16(msg, at)?;
    let qclass = read_u16(msg, at + 2)?;
    at += 4;
    if !qname.eq_ignore_ascii_case(name) || qtype != TYPE_TXT || qclass != CLASS_IN {
        return Err("another question");
    }
    if header[2] & 0x02 != 0 {
        return Ok(Reply::Truncated);
    }
    match header[3] & 0x0f {
        0 => {}
        3 => return Ok(Reply::Records(Vec::new())), // NXDOMAIN
        2 => return Ok(Reply::Failed("server failure")),
        5 => return Ok(Reply::Failed("query refused")),
        _ => return Ok(Reply::Failed("error response")),
    }
    let mut records = Vec::new();
    for _ in 0..count(6) {
        let (owner, next) = read_name(msg, at)?;
        let rtype = read_u16(msg, next)?;
        let rclass = read_u16(msg, next + 2)?;
        let rdlen = read_u16(msg, next + 8)? as usize;
        let start = next + 10;
        let rdata = msg
            .get(start..start + rdlen)
            .ok_or("record runs past the message")?;
        records.push((owner, rtype, rclass, start, rdata));
        at = start + rdlen;
    }
    // The name asked and the aliases the answer leads it through.
    let mut names = vec![name.to_owned()];
    while names.len() <= MAX_ALIASES {
        let next = records.iter().find_map(|(owner, rtype, _, start, _)| {
            if *rtype != TYPE_CNAME || !names.iter().any(|n| n.eq_ignore_ascii_case(owner)) {
                return None;
            }
            let (target, _) = read_name(msg, *start).ok()?;
            (!names.iter().any(|n| n.eq_ignore_ascii_case(&target))).then_some(target)
        });
        match next {
            Some(target) => names.push(target),
            None => break,
        }
    }
    let mut values = Vec::new();
    for (owner, rtype, rclass, _, rdata) in &records {
        if *rtype == TYPE_TXT && *rclass == CLASS_IN && names.iter().any(|n| n.eq_ignore_ascii_case(owner)) {
            values.push(txt_value(rdata)?);
        }
    }
    Ok(Reply::Records(values))
}

fn read_u16(msg: &[u8], at: usize) -> Result<u16, &'static str> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or("message ends early")
}

/// A (possibly compressed) name at `at` as dotted text, and the offset after it in place.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), &'static str> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    let mut length = 0;
    loop {
        let len = *msg.get(at).ok_or("name runs past the message")? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let after = end.unwrap_or(at + 1);
                return Ok((labels.join("."), after));
            }
            0x00 => {
                let label = msg
                    .get(at + 1..at + 1 + len)
                    .ok_or("label runs past the message")?;
                length += len + 1;
                if length > 255 {
                    return Err("name too long");
                }
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                at += 1 + len;
            }
            0xc0 => {
                let low = *msg.get(at + 1).ok_or("pointer runs past the message")? as usize;
                jumps += 1;
                if jumps > 64 {
                    return Err("compression loop");
                }
                end.get_or_insert(at + 2);
                at = ((len & 0x3f) << 8) | low;
            }
            _ => return Err("unknown label type"),
        }
    }
}

/// A TXT record's character-strings joined into one value.
fn txt_value(rdata: &[u8]) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(rdata.len());
    let mut at = 0;
    while at < rdata.len() {
        let len = rdata[at] as usize;
        let chunk = rdata
            .get(at + 1..at + 1 + len)
            .ok_or("TXT string runs past its record")?;
        out.extend_from_slice(chunk);
        at += 1 + len;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query` (as built by `encode_query`) with the given records after the
    /// question: (owner bytes, type, rdata).
    fn answer(query: &[u8], rcode: u8, flags: u8, records: &[(&[u8], u16, Vec<u8>)]) -> Vec<u8> {
        let question_end = 12 + query[12..].iter().position(|&b| b == 0).unwrap() + 1 + 4;
        let mut out = query[..2].to_vec();
        out.extend_from_slice(&[0x81 | flags, 0x80 | rcode, 0, 1]);
        out.extend_from_slice(&(records.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&query[12..question_end]);
        for (owner, rtype, rdata) in records {
            out.extend_from_slice(owner);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 60]);
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    }

    fn txt(strings: &[&str]) -> Vec<u8> {
        strings
            .iter()
            .flat_map(|s| std::iter::once(s.len() as u8).chain(s.bytes()))
            .collect()
    }

    const NAME: &str = "_gatehouse-challenge.acme.test";

    #[test]
    fn queries_are_well_formed() {
        let q = encode_query(0x1234, NAME).unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(q[12] as usize, "_gatehouse-challenge".len());
        assert!(encode_query(1, "bad name.test").is_err());
        assert!(encode_query(1, "a..b").is_err());
        assert!(encode_query(1, &"a".repeat(64)).is_err());
        assert!(encode_query(1, &format!("{}.test", "a.".repeat(130))).is_err());
    }

    #[test]
    fn txt_records_of_the_name_and_its_aliases_are_read() {
        let q = encode_query(7, NAME).unwrap();
        // Owner as a pointer to the question (offset 12); a CNAME to a name spelled out, whose
        // TXT record has two strings; a record for an unrelated name is ignored.
        let mut target = vec![5];
        target.extend_from_slice(b"other");
        target.extend_from_slice(&[4]);
        target.extend_from_slice(b"test");
        target.push(0);
        let mut unrelated = vec![3];
        unrelated.extend_from_slice(b"not");
        unrelated.extend_from_slice(&[4]);
        unrelated.extend_from_slice(b"test");
        unrelated.push(0);
        let msg = answer(
            &q,
            0,
            0,
            &[
                (&[0xc0, 12], TYPE_TXT, txt(&["v=1"])),
                (&[0xc0, 12], TYPE_CNAME, target.clone()),
                (&target, TYPE_TXT, txt(&["split ", "value"])),
                (&unrelated, TYPE_TXT, txt(&["no"])),
            ],
        );
        assert_eq!(
            decode_reply(&msg, 7, NAME),
            Ok(Reply::Records(vec!["v=1".into(), "split value".into()]))
        );
    }

    #[test]
    fn foreign_truncated_failed_and_malformed_answers() {
        let q = encode_query(7, NAME).unwrap();
        let ok = answer(&q, 0, 0, &[]);
        assert!(decode_reply(&ok, 8, NAME).is_err(), "another id");
        assert!(decode_reply(&ok, 7, "other.test").is_err(), "another question");
        assert_eq!(decode_reply(&ok, 7, NAME), Ok(Reply::Records(vec![])));
        assert_eq!(
            decode_reply(&answer(&q, 3, 0, &[]), 7, NAME),
            Ok(Reply::Records(vec![]))
        );
        assert_eq!(
            decode_reply(&answer(&q, 2, 0, &[]), 7, NAME),
            Ok(Reply::Failed("server failure"))
        );
        assert_eq!(
            decode_reply(&answer(&q, 0, 0x02, &[]), 7, NAME),
            Ok(Reply::Truncated)
        );
        // A record claiming more data than the message holds, and a pointer loop.
        let mut short = answer(&q, 0, 0, &[(&[0xc0, 12], TYPE_TXT, txt(&["abc"]))]);
        short.truncate(short.len() - 2);
        assert!(decode_reply(&short, 7, NAME).is_err());
        let record_at = answer(&q, 0, 0, &[]).len();
        let to_itself = [0xc0 | (record_at >> 8) as u8, record_at as u8];
        let looped = answer(&q, 0, 0, &[(&to_itself, TYPE_TXT, txt(&["x"]))]);
        assert!(decode_reply(&looped, 7, NAME).is_err());
        assert!(decode_reply(&[0u8; 5], 7, NAME).is_err());
    }

    #[tokio::test]
    async fn without_servers_nothing_is_asked() {
        let resolver = TxtResolver::new(vec![], Duration::from_millis(100));
        assert_eq!(resolver.lookup_txt(NAME).await, Err(DnsError::NotConfigured));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let resolver = TxtResolver::new(vec![silent.local_addr().unwrap()], Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = resolver.lookup_txt(NAME).await.unwrap_err();
        assert!(matches!(err, DnsError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
