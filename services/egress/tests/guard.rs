//! The guard against real listeners on loopback: a canary that counts every connection it
//! accepts, and a redirecting server. Every refused spelling of "this machine" must leave the
//! canary at zero; a positive control proves the canary would have counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatehouse_core::config::EgressConfig;
use gatehouse_egress::{Egress, EgressError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

fn config(allow_http: bool, allow_private: bool, hosts: &[&str], max_redirects: usize) -> EgressConfig {
    EgressConfig {
        allow_http,
        allow_private_networks: allow_private,
        allow_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        request_timeout_ms: 3000,
        max_redirects,
        max_document_bytes: 1 << 20,
    }
}

/// A tiny HTTP/1.1 server: counts connections, answers each request with `respond(path)`.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
}

async fn spawn_http<F>(bind: &str, respond: F) -> Listener
where
    F: Fn(&str) -> String + Send + Sync + 'static,
{
    let listener = TcpListener::bind(bind).await.expect("bind a loopback listener");
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                loop {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                    if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") || read == buf.len() {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..read]).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let response = respond(&path);
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Listener { port, connections }
}

fn ok_response(_: &str) -> String {
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned()
}

fn redirect_to(location: &str) -> String {
    format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
}

/// Every spelling of a loopback (or "this host") destination, aimed at `port`.
fn loopback_corpus(port: u16) -> Vec<String> {
    [
        "127.0.0.1",
        "127.0.0.2",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "0177.0.0.01",
        "017700000001",
        "127.000.000.001",
        "0.0.0.0",
        "0",
        "0x0",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::ffff:0:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        "[2002:7f00:1::]",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "LocalHost.",
    ]
    .iter()
    .map(|host| format!("http://{host}:{port}/canary"))
    .collect()
}

#[tokio::test]
async fn loopback_in_every_spelling_is_refused_and_the_canary_sees_nothing() {
    gatehouse_core::install_crypto_provider();
    let canary = spawn_http("127.0.0.1:0", ok_response).await;
    let canary6 = spawn_http(&format!("[::1]:{}", canary.port), ok_response).await;
    // http allowed, so each refusal is about the destination, not the scheme.
    let egress = Egress::from_config(&config(true, false, &[], 3)).unwrap();
    let strict = Egress::from_config(&config(false, false, &[], 3)).unwrap();
    let corpus = loopback_corpus(canary.port);
    assert!(corpus.len() >= 25);
    // A host name that this system cannot resolve (`localhost.` on some resolvers) is refused
    // as unresolvable; everything else must be refused for its destination.
    let refused = |url: &str, got: EgressError| {
        let is_name =
            url.contains("//localhost") || url.contains("//LOCALHOST") || url.contains("//LocalHost");
        got == EgressError::DestinationNotAllowed || (is_name && got == EgressError::Unresolvable)
    };
    for url in &corpus {
        let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let checked = egress.check_url(&parsed).await.expect_err(url);
        assert!(refused(url, checked), "check_url {url}: {checked:?}");
        for client in [egress.client(), egress.credentialed_client()] {
            let err = client
                .get(url)
                .send()
                .await
                .expect_err(&format!("{url} must be refused"));
            let got = EgressError::from_reqwest(&err);
            assert!(refused(url, got), "{url}: {got:?}");
        }
        // Without allow_http the scheme alone stops it; with https the destination does.
        let err = strict.client().get(url).send().await.unwrap_err();
        assert_eq!(
            EgressError::from_reqwest(&err),
            EgressError::HttpsRequired,
            "{url}"
        );
        let https = url.replacen("http://", "https://", 1);
        let err = strict.client().get(&https).send().await.unwrap_err();
        let got = EgressError::from_reqwest(&err);
        assert!(refused(&https, got), "{https}: {got:?}");
    }
    // The plain name must resolve here and be refused for what it resolves to, or this test
    // would prove nothing about names.
    let named = Url::parse(&format!("http://localhost:{}/", canary.port)).unwrap();
    assert_eq!(
        egress.check_url(&named).await,
        Err(EgressError::DestinationNotAllowed)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        canary.connections.load(Ordering::SeqCst),
        0,
        "IPv4 canary was reached"
    );
    assert_eq!(
        canary6.connections.load(Ordering::SeqCst),
        0,
        "IPv6 canary was reached"
    );

    // Positive control: the canary counts when the operator allows the host.
    let allowed = Egress::from_config(&config(true, false, &["127.0.0.1"], 3)).unwrap();
    let response = allowed
        .client()
        .get(format!("http://127.0.0.1:{}/canary", canary.port))
        .send()
        .await
        .expect("an allowed host is reachable");
    assert_eq!(response.status(), 200);
    assert_eq!(canary.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn non_loopback_internal_destinations_are_refused_before_any_connection() {
    gatehouse_core::install_crypto_provider();
    // Checked without sending anything: these are never targets on this machine.
    let egress = Egress::from_config(&config(true, false, &[], 3)).unwrap();
    let private = Egress::from_config(&config(true, true, &[], 3)).unwrap();
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://2852039166/",
        "http://0xa9fea9fe/",
        "http://169.254.170.2/v2/credentials",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/latest/meta-data/",
        "http://168.63.129.16/machine",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://198.18.0.1/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://[fec0::1]/",
        "http://192.0.2.1/",
        "http://198.51.100.1/",
        "http://203.0.113.1/",
        "http://[2001:db8::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://[2001::1]/",
        "http://[100::1]/",
    ] {
        let parsed = Url::parse(url).unwrap();
        assert_eq!(
            egress.check_url_syntax(&parsed),
            Err(EgressError::DestinationNotAllowed),
            "{url}"
        );
        assert_eq!(
            egress.check_url(&parsed).await,
            Err(EgressError::DestinationNotAllowed),
            "{url}"
        );
    }
    // allow_private_networks opens RFC 1918 and friends, never metadata or reserved space.
    for (url, allowed) in [
        ("http://10.0.0.1/", true),
        ("http://[fd12:3456::1]/", true),
        ("http://100.64.0.1/", true),
        ("http://169.254.169.254/", false),
        ("http://[fd00:ec2::254]/", false),
        ("http://224.0.0.1/", false),
        ("http://0.0.0.0/", false),
        ("http://192.0.2.1/", false),
    ] {
        let result = private.check_url_syntax(&Url::parse(url).unwrap());
        assert_eq!(result.is_ok(), allowed, "{url}: {result:?}");
    }
}

#[tokio::test]
async fn redirects_are_rechecked_hop_by_hop() {
    gatehouse_core::install_crypto_provider();
    let canary = spawn_http("127.0.0.1:0", ok_response).await;
    let canary_port = canary.port;
    let redirector = spawn_http("127.0.0.1:0", move |path| match path {
        "/to-literal" => redirect_to(&format!("http://127.0.0.1:{canary_port}/canary")),
        "/to-decimal" => redirect_to(&format!("http://2130706433:{canary_port}/canary")),
        "/to-mapped" => redirect_to(&format!("http://[::ffff:127.0.0.1]:{canary_port}/canary")),
        "/to-zero" => redirect_to(&format!("http://0.0.0.0:{canary_port}/canary")),
        "/to-file" => redirect_to("file:///etc/passwd"),
        "/to-metadata" => redirect_to("http://169.254.169.254/latest/meta-data/"),
        "/relative-loop" => redirect_to("/relative-loop"),
        "/to-named-canary" => redirect_to(&format!("http://localhost:{canary_port}/canary")),
        _ => ok_response(path),
    })
    .await;
    // The redirector is reached by name ("localhost" is exempt); the literal 127.0.0.1 is not.
    let egress = Egress::from_config(&config(true, false, &["localhost"], 3)).unwrap();
    let base = format!("http://localhost:{}", redirector.port);
    let direct = egress.client().get(format!("{base}/plain")).send().await.unwrap();
    assert_eq!(direct.status(), 200, "the redirector itself is reachable");
    for (path, expected) in [
        ("/to-literal", EgressError::DestinationNotAllowed),
        ("/to-decimal", EgressError::DestinationNotAllowed),
        ("/to-mapped", EgressError::DestinationNotAllowed),
        ("/to-zero", EgressError::DestinationNotAllowed),
        ("/to-metadata", EgressError::DestinationNotAllowed),
        ("/relative-loop", EgressError::RedirectRefused),
    ] {
        let err = egress
            .client()
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect_err(path);
        assert_eq!(EgressError::from_reqwest(&err), expected, "{path}");
    }
    // reqwest never follows a non-http(s) Location: the 3xx itself comes back.
    let not_followed = egress
        .client()
        .get(format!("{base}/to-file"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_followed.status(), 302);
    assert_eq!(
        canary.connections.load(Ordering::SeqCst),
        0,
        "a redirect reached the canary"
    );

    // Same-origin mode refuses a hop to another origin even when that origin is allowed; the
    // any-origin client follows it (positive control).
    let err = egress
        .credentialed_client()
        .get(format!("{base}/to-named-canary"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(EgressError::from_reqwest(&err), EgressError::RedirectRefused);
    assert_eq!(canary.connections.load(Ordering::SeqCst), 0);
    let followed = egress
        .client()
        .get(format!("{base}/to-named-canary"))
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(canary.connections.load(Ordering::SeqCst), 1);

    // max_redirects = 0: no hop at all.
    let none = Egress::from_config(&config(true, false, &["localhost"], 0)).unwrap();
    let err = none
        .client()
        .get(format!("{base}/to-named-canary"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(EgressError::from_reqwest(&err), EgressError::RedirectRefused);
    assert_eq!(canary.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn timeouts_and_unreachable_hosts_give_generic_errors() {
    gatehouse_core::install_crypto_provider();
    // A listener that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut cfg = config(true, false, &["127.0.0.1"], 3);
    cfg.request_timeout_ms = 300;
    let egress = Egress::from_config(&cfg).unwrap();
    let err = egress
        .client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(EgressError::from_reqwest(&err), EgressError::Timeout);
    // Nothing listens on a freshly freed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let err = egress
        .client()
        .get(format!("http://127.0.0.1:{closed}/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(EgressError::from_reqwest(&err), EgressError::Unreachable);
    assert!(!EgressError::Unreachable.to_string().contains(&closed.to_string()));
    // A name that does not resolve.
    let err = egress
        .check_url(&Url::parse("https://does-not-exist.invalid/").unwrap())
        .await
        .unwrap_err();
    // A resolver that is slow to say NXDOMAIN makes this a timeout; both are generic.
    assert!(
        matches!(err, EgressError::Unresolvable | EgressError::Timeout),
        "{err:?}"
    );
}
