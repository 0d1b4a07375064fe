//! A small authoritative DNS server for tests: answers `TXT` queries on 127.0.0.1 (UDP and TCP,
//! one port) from a table the test edits while it runs. Names not in the table get NXDOMAIN;
//! other query types get an empty NOERROR answer. A UDP answer longer than 512 bytes is sent
//! truncated (TC set, no records), so that clients retry over TCP as RFC 1035 says.
//!
//! It is written from RFC 1035 on its own (it shares no code with the product's resolver), so the
//! tests check the product against an independent implementation of the wire format.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

const TYPE_TXT: u16 = 16;
const CLASS_IN: u16 = 1;
const UDP_LIMIT: usize = 512;

type Table = Arc<Mutex<HashMap<String, Vec<Vec<String>>>>>;

/// The running server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    table: Table,
    queries: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl DnsServer {
    /// Binds UDP and TCP on the same free port of 127.0.0.1.
    pub async fn start() -> DnsServer {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let port = udp.local_addr().expect("local addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("local addr");
        let table: Table = Arc::default();
        let queries: Arc<Mutex<Vec<String>>> = Arc::default();
        let udp_task = {
            let (table, queries) = (table.clone(), queries.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 1500];
                while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                    if let Some(answer) = respond(&buf[..n], &table, &queries, true) {
                        let _ = udp.send_to(&answer, peer).await;
                    }
                }
            })
        };
        let tcp_task = {
            let (table, queries) = (table.clone(), queries.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = tcp.accept().await {
                    let (table, queries) = (table.clone(), queries.clone());
                    tokio::spawn(async move {
                        let mut len = [0u8; 2];
                        if stream.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        if let Some(answer) = respond(&query, &table, &queries, false) {
                            let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&answer);
                            let _ = stream.write_all(&framed).await;
                        }
                    });
                }
            })
        };
        DnsServer {
            addr,
            table,
            queries,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Publishes a TXT record at `name` (added to any already there). A value longer than 255
    /// bytes is split into several character-strings, as zone files do.
    pub fn add_txt(&self, name: &str, value: &str) {
        let strings = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        self.table
            .lock()
            .unwrap()
            .entry(normalize(name))
            .or_default()
            .push(strings);
    }

    /// Removes every TXT record at `name`.
    pub fn remove(&self, name: &str) {
        self.table.lock().unwrap().remove(&normalize(name));
    }

    /// The names queried so far (lower case, no trailing dot).
    pub fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The answer to one query message, or `None` for something that is not a query.
fn respond(query: &[u8], table: &Table, queries: &Mutex<Vec<String>>, udp: bool) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let id = [query[0], query[1]];
    let rd = query[2] & 0x01;
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if qdcount != 1 {
        return Some(header(id, rd, 1, false, 0, 0));
    }
    let (labels, mut end) = read_name(query, 12)?;
    let qtype = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
    end += 4;
    let question = &query[12..end];
    let name = labels.join(".").to_ascii_lowercase();
    queries.lock().unwrap().push(name.clone());
    let records = table.lock().unwrap().get(&name).cloned();
    let Some(records) = records else {
        let mut out = header(id, rd, 3, false, 1, 0);
        out.extend_from_slice(question);
        return Some(out);
    };
    let records: Vec<Vec<String>> = if qtype == TYPE_TXT { records } else { Vec::new() };
    let mut out = header(id, rd, 0, false, 1, records.len() as u16);
    out.extend_from_slice(question);
    for strings in &records {
        // The owner name as a pointer to the question's name (offset 12).
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&TYPE_TXT.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        let rdata: Vec<u8> = strings
            .iter()
            .flat_map(|s| std::iter::once(s.len() as u8).chain(s.bytes()))
            .collect();
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    if udp && out.len() > UDP_LIMIT {
        let mut truncated = header(id, rd, 0, true, 1, 0);
        truncated.extend_from_slice(question);
        return Some(truncated);
    }
    Some(out)
}

fn header(id: [u8; 2], rd: u8, rcode: u8, truncated: bool, qd: u16, an: u16) -> Vec<u8> {
    // QR=1, opcode 0, AA=1, TC as asked, RD copied; RA=1 and the response code.
    let flags1 = 0x80 | 0x04 | if truncated { 0x02 } else { 0 } | rd;
    let flags2 = 0x80 | (rcode & 0x0f);
    let mut out = vec![id[0], id[1], flags1, flags2];
    out.extend_from_slice(&qd.to_be_bytes());
    out.extend_from_slice(&an.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// The labels of an uncompressed name at `at`, and the offset after it.
fn read_name(msg: &[u8], mut at: usize) -> Option<(Vec<String>, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(at)? as usize;
        at += 1;
        if len == 0 {
            return Some((labels, at));
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(at..at + len)?).into_owned());
        at += len;
    }
}
