//! Independent servers written in Node.js that tests drive (tests/clients/): a real SMTP server
//! (`smtp-server`) and a real OpenID Connect provider (`oidc-provider`). Each runs as a child
//! process that prints JSON lines; it is killed when its handle drops.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `tests/clients/` of the workspace.
pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

fn require_installed(package: &str) {
    let dir = clients_dir().join("node_modules").join(package);
    assert!(
        dir.is_dir(),
        "the npm package `{package}` is missing from tests/clients/node_modules: run tests/clients/setup.sh"
    );
}

/// A running Node script and the JSON lines it printed.
struct NodeProcess {
    child: Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl NodeProcess {
    async fn start(script: &str, packages: &[&str], args: &[String]) -> Self {
        for p in packages {
            require_installed(p);
        }
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(clients_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node {script}` (is Node.js installed?): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(value) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for the first line whose `type` is `kind` matching `pred`.
    async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.lines.lock().unwrap().iter().find(|v| pred(v)).cloned() {
                return Some(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn all(&self, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| pred(v))
            .cloned()
            .collect()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A mail accepted by the test SMTP server.
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as received on the wire.
    pub raw: String,
    /// The decoded text/plain part.
    pub text: String,
    /// Whether the message came over TLS (STARTTLS or implicit).
    pub secure: bool,
}

impl ReceivedMail {
    pub fn subject(&self) -> String {
        header(&self.raw, "subject").unwrap_or_default()
    }

    /// The first URL in the text part that contains `needle`.
    pub fn link_containing(&self, needle: &str) -> Option<String> {
        self.text
            .split_whitespace()
            .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
            .find(|w| w.contains(needle))
            .map(|w| w.trim_end_matches(['.', ',', ')']).to_owned())
    }
}

/// A real SMTP server (npm `smtp-server`) on a free loopback port: plain SMTP without STARTTLS
/// ([`MailServer::start`]), or with TLS ([`MailServer::start_tls`]).
pub struct MailServer {
    process: NodeProcess,
    pub port: u16,
    tls: Option<SmtpTls>,
}

/// How a [`MailServer`] offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP that offers STARTTLS (port 587 style).
    StartTls,
    /// TLS from the first byte (smtps, port 465 style).
    Implicit,
}

impl MailServer {
    pub async fn start() -> Self {
        Self::launch(None, &[]).await
    }

    /// A server whose certificate (for 127.0.0.1) is `ca`'s leaf.
    pub async fn start_tls(mode: SmtpTls, ca: &crate::tls::TestCa) -> Self {
        let arg = match mode {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "implicit",
        };
        Self::launch(
            Some(mode),
            &[
                arg.to_owned(),
                ca.key_pem.display().to_string(),
                ca.cert_pem.display().to_string(),
            ],
        )
        .await
    }

    async fn launch(tls: Option<SmtpTls>, args: &[String]) -> Self {
        let process = NodeProcess::start("smtp-server.mjs", &["smtp-server"], args).await;
        let listening = process
            .wait_for(Duration::from_secs(20), |v| v["type"] == "listening")
            .await
            .expect("the test SMTP server did not start");
        let port = listening["port"].as_u64().expect("port") as u16;
        Self { process, port, tls }
    }

    /// The `mail.smtp_url` that reaches this server: with STARTTLS required, implicit TLS, or
    /// (plain server) no TLS.
    pub fn smtp_url(&self) -> String {
        match self.tls {
            Some(SmtpTls::StartTls) => format!("smtp://127.0.0.1:{}", self.port),
            Some(SmtpTls::Implicit) => format!("smtps://127.0.0.1:{}", self.port),
            None => format!("smtp://127.0.0.1:{}?tls=none", self.port),
        }
    }

    fn parse(v: &serde_json::Value) -> ReceivedMail {
        let raw = v["raw"].as_str().unwrap_or_default().to_owned();
        ReceivedMail {
            from: v["from"].as_str().unwrap_or_default().to_owned(),
            to: v["to"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            text: text_part(&raw),
            raw,
            secure: v["secure"].as_bool().unwrap_or(false),
        }
    }

    /// Every mail received so far, for anyone.
    pub fn all_mails(&self) -> Vec<ReceivedMail> {
        self.process
            .all(|v| v["type"] == "mail")
            .iter()
            .map(Self::parse)
            .collect()
    }

    /// Every mail received so far for `to`.
    pub fn mails_to(&self, to: &str) -> Vec<ReceivedMail> {
        let mut mails = self.all_mails();
        mails.retain(|m| m.to.iter().any(|x| x == to));
        mails
    }

    /// Waits (up to 15 s) until `to` has received `count` mails and returns the last one.
    pub async fn wait_for_nth(&self, to: &str, count: usize) -> ReceivedMail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mails = self.mails_to(to);
            if mails.len() >= count {
                return mails[count - 1].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no mail #{count} for {to} within 15 s (received {})",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// How the test OIDC provider misbehaves (see tests/clients/oidc-provider.mjs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OidcMode {
    Normal,
    WrongNonce,
    WrongAudience,
    WrongIssuer,
}

/// An account at the test provider.
#[derive(Clone, Debug)]
pub struct OidcAccount {
    pub email: String,
    pub sub: String,
    pub email_verified: bool,
    pub name: String,
}

/// A real OpenID Connect provider (npm `oidc-provider`) on a free loopback port.
pub struct OidcProvider {
    _process: NodeProcess,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
}

impl OidcProvider {
    pub async fn start(mode: OidcMode, redirect_uri: &str, accounts: &[OidcAccount]) -> Self {
        let client_id = format!("gatehouse-{}", uuid::Uuid::new_v4().simple());
        let client_secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let mode_name = match mode {
            OidcMode::Normal => "normal",
            OidcMode::WrongNonce => "wrong_nonce",
            OidcMode::WrongAudience => "wrong_audience",
            OidcMode::WrongIssuer => "wrong_issuer",
        };
        let accounts: serde_json::Map<String, serde_json::Value> = accounts
            .iter()
            .map(|a| {
                (
                    a.email.clone(),
                    serde_json::json!({"sub": a.sub, "email_verified": a.email_verified, "name": a.name}),
                )
            })
            .collect();
        let options = serde_json::json!({
            "mode": mode_name,
            "clients": [{"client_id": client_id, "client_secret": client_secret, "redirect_uris": [redirect_uri]}],
            "accounts": accounts,
        });
        let process =
            NodeProcess::start("oidc-provider.mjs", &["oidc-provider"], &[options.to_string()]).await;
        let listening = process
            .wait_for(Duration::from_secs(30), |v| v["type"] == "listening")
            .await
            .expect("the test OIDC provider did not start");
        let issuer = listening["issuer"].as_str().expect("issuer").to_owned();
        Self {
            _process: process,
            issuer,
            client_id,
            client_secret,
        }
    }
}

/// A header's value (first occurrence, unfolded).
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// The decoded text/plain part of a MIME message (quoted-printable, base64 or 7bit). Parts are
/// split at the message's own boundaries only: a line of a part may start with `--` too.
fn text_part(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let boundaries = boundaries(&raw);
    let is_boundary = |line: &str| {
        line.strip_prefix("--").is_some_and(|rest| {
            boundaries
                .iter()
                .any(|b| rest.trim_end().trim_end_matches("--") == b)
        })
    };
    let mut parts: Vec<String> = vec![String::new()];
    for line in raw.split('\n') {
        if is_boundary(line) {
            parts.push(String::new());
        } else {
            let part = parts.last_mut().expect("a part");
            part.push_str(line);
            part.push('\n');
        }
    }
    for section in &parts {
        let Some((head, body)) = section.split_once("\n\n") else {
            continue;
        };
        let head_lower = head.to_ascii_lowercase();
        if !head_lower.contains("content-type: text/plain") {
            continue;
        }
        if head_lower.contains("content-transfer-encoding: quoted-printable") {
            return decode_qp(body);
        }
        if head_lower.contains("content-transfer-encoding: base64") {
            use base64_decode::decode;
            return decode(body);
        }
        return body.to_owned();
    }
    String::new()
}

/// Every `boundary=` parameter the message's headers name (a multipart part may nest another).
fn boundaries(raw: &str) -> Vec<String> {
    raw.match_indices("boundary=")
        .map(|(at, key)| {
            let value = &raw[at + key.len()..];
            match value.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or_default(),
                None => value.split([';', '\n', ' ']).next().unwrap_or_default(),
            }
            .to_owned()
        })
        .filter(|b| !b.is_empty())
        .collect()
}

fn decode_qp(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

mod base64_decode {
    /// Standard base64 with line breaks ignored.
    pub fn decode(body: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let mut buf = 0u32;
        let mut bits = 0;
        for c in body.bytes() {
            let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
                continue;
            };
            buf = (buf << 6) | v as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buf >> bits) as u8);
                buf &= (1 << bits) - 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// An MCP server on the deprecated HTTP+SSE transport (protocol 2024-11-05), built with the
/// official TypeScript SDK (`tests/clients/conformance/legacy-sse-server.mjs`): its event stream is
/// at `/sse` and it offers one tool, `legacy_echo`.
pub struct LegacySseServer {
    _child: Child,
    pub port: u16,
}

impl LegacySseServer {
    pub async fn start() -> LegacySseServer {
        Self::start_with(&[]).await
    }

    /// With a `legacy_sample` tool that asks the client for a completion (sampling) on its
    /// connection.
    pub async fn with_sampling() -> LegacySseServer {
        Self::start_with(&["--sampling"]).await
    }

    async fn start_with(args: &[&str]) -> LegacySseServer {
        let mut command = vec!["legacy-sse-server.mjs"];
        command.extend_from_slice(args);
        let (child, port) = crate::sdk_servers::spawn_listening(
            &crate::sdk_servers::node(),
            &clients_dir().join("conformance"),
            &command,
            Duration::from_secs(20),
        )
        .await;
        LegacySseServer { _child: child, port }
    }

    /// The event-stream URL (what a domain server registration names).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_parts() {
        let raw = "Subject: Hi\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGo: https://x.test/v?token=3Dab=\r\ncd\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b--\r\n";
        assert_eq!(text_part(raw).trim(), "Go: https://x.test/v?token=abcd");
        assert_eq!(header(raw, "subject").unwrap(), "Hi");
        assert_eq!(base64_decode::decode("aGVs\nbG8="), "hello");
    }

    /// A URL-safe token holds `-`: a quoted-printable soft break can put `--` at the start of a
    /// line inside the part, which is not a boundary unless it names the message's boundary.
    #[test]
    fn a_line_of_the_part_that_starts_with_dashes_is_not_a_boundary() {
        let raw = "Subject: Hi\r\nContent-Type: multipart/alternative; boundary=\"b0\"\r\n\r\n--b0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGo: https://x.test/v?token=3Dab=\r\n--cd\r\n--b0\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b0--\r\n";
        assert_eq!(text_part(raw).trim(), "Go: https://x.test/v?token=ab--cd");
    }
}
