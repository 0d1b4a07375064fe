use super::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

fn config(allow_http: bool, allow_private: bool, hosts: &[&str]) -> EgressConfig {
    EgressConfig {
        allow_http,
        allow_private_networks: allow_private,
        allow_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        request_timeout_ms: 2000,
        max_redirects: 3,
        max_document_bytes: 1 << 20,
    }
}

/// Answers from a fixed script, in turn: stands in for a DNS server whose answer changes
/// between lookups (rebinding), which cannot be served from the public DNS here.
struct ScriptedResolver {
    answers: Mutex<Vec<Vec<IpAddr>>>,
    lookups: Arc<AtomicUsize>,
}

impl HostResolver for ScriptedResolver {
    fn lookup(&self, _host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let mut answers = self.answers.lock().unwrap();
        let next = if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        };
        Box::pin(async move { Ok(next) })
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn static_checks() {
    let strict = Egress::from_config(&config(false, false, &[])).unwrap();
    let check = |e: &Egress, u: &str| e.check_url_syntax(&Url::parse(u).unwrap());
    assert_eq!(check(&strict, "https://example.com/mcp"), Ok(()));
    assert_eq!(
        check(&strict, "http://example.com/mcp"),
        Err(EgressError::HttpsRequired)
    );
    assert_eq!(check(&strict, "ftp://example.com/"), Err(EgressError::InvalidUrl));
    assert_eq!(check(&strict, "file:///etc/passwd"), Err(EgressError::InvalidUrl));
    for literal in [
        "https://127.0.0.1/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://0/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[64:ff9b::7f00:1]/",
        "https://[2002:7f00:1::]/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://10.0.0.1/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",
        "https://[fe80::1]/",
        "https://[fc00::1]/",
        "https://224.0.0.1/",
        "https://255.255.255.255/",
    ] {
        assert_eq!(
            check(&strict, literal),
            Err(EgressError::DestinationNotAllowed),
            "{literal}"
        );
    }
    let private = Egress::from_config(&config(true, true, &[])).unwrap();
    assert_eq!(check(&private, "http://127.0.0.1:8080/"), Ok(()));
    assert_eq!(check(&private, "http://10.1.2.3/"), Ok(()));
    // Metadata, unspecified and multicast stay closed even with private networks allowed.
    assert_eq!(
        check(&private, "http://169.254.169.254/"),
        Err(EgressError::DestinationNotAllowed)
    );
    assert_eq!(
        check(&private, "http://0.0.0.0/"),
        Err(EgressError::DestinationNotAllowed)
    );
    assert_eq!(
        check(&private, "http://224.0.0.1/"),
        Err(EgressError::DestinationNotAllowed)
    );
    let exempt = Egress::from_config(&config(true, false, &["127.0.0.1", "[::1]"])).unwrap();
    assert_eq!(check(&exempt, "http://127.0.0.1:9/"), Ok(()));
    assert_eq!(
        check(&exempt, "http://2130706433:9/"),
        Ok(()),
        "same host, other spelling"
    );
    assert_eq!(check(&exempt, "http://[0:0::1]:9/"), Ok(()));
    assert_eq!(
        check(&exempt, "http://127.0.0.2/"),
        Err(EgressError::DestinationNotAllowed)
    );
}

#[tokio::test]
async fn hosts_are_checked_like_urls_ipv6_bracketed_once() {
    let strict = Egress::from_config(&config(false, false, &[])).unwrap();
    for host in ["127.0.0.1", "::1", "[::1]"] {
        assert_eq!(
            strict.check_host(host, 5432).await,
            Err(EgressError::DestinationNotAllowed),
            "{host}"
        );
    }
    assert_eq!(strict.check_host("93.184.216.34", 5432).await, Ok(()));
}

#[test]
fn connect_target_rendering_is_parsed_and_fails_closed() {
    let strict = Egress::from_config(&config(false, false, &[])).unwrap();
    let guard = &strict.guard;
    assert_eq!(
        guard.check_connect_target("Unnameable(https://example.com/x)"),
        Ok(())
    );
    assert_eq!(
        guard.check_connect_target("Unnameable(https://127.0.0.1:443/)"),
        Err(EgressError::DestinationNotAllowed)
    );
    assert_eq!(
        guard.check_connect_target("Unnameable(http://example.com/)"),
        Err(EgressError::HttpsRequired)
    );
    assert_eq!(
        guard.check_connect_target("something else"),
        Err(EgressError::InvalidUrl)
    );
    assert_eq!(
        guard.check_connect_target("X(not a url)"),
        Err(EgressError::InvalidUrl)
    );
}

#[tokio::test]
async fn a_name_with_any_blocked_address_is_refused_whole() {
    let lookups = Arc::new(AtomicUsize::new(0));
    let egress = Egress::with_resolver(
        &config(false, false, &[]),
        Box::new(ScriptedResolver {
            answers: Mutex::new(vec![ips(&["93.184.216.34", "127.0.0.1"])]),
            lookups: lookups.clone(),
        }),
    )
    .unwrap();
    let url = Url::parse("https://mixed.example/").unwrap();
    assert_eq!(
        egress.check_url(&url).await,
        Err(EgressError::DestinationNotAllowed)
    );
    assert_eq!(
        egress.guard.resolve_checked("mixed.example").await,
        Err(EgressError::DestinationNotAllowed)
    );
}

#[tokio::test]
async fn rebinding_between_check_and_connect_is_caught_at_connect() {
    // First answer public (the up-front check passes), every later answer loopback: the
    // connection-time resolution is what decides, and it refuses.
    let lookups = Arc::new(AtomicUsize::new(0));
    let egress = Egress::with_resolver(
        &config(true, false, &[]),
        Box::new(ScriptedResolver {
            answers: Mutex::new(vec![ips(&["93.184.216.34"]), ips(&["127.0.0.1"])]),
            lookups: lookups.clone(),
        }),
    )
    .unwrap();
    let canary = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = canary.local_addr().unwrap().port();
    let url = Url::parse(&format!("http://rebind.example:{port}/")).unwrap();
    assert_eq!(egress.check_url(&url).await, Ok(()));
    let err = egress.client().get(url).send().await.unwrap_err();
    assert_eq!(
        EgressError::from_reqwest(&err),
        EgressError::DestinationNotAllowed
    );
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        2,
        "resolved again at connect time"
    );
    let accepted = tokio::time::timeout(Duration::from_millis(200), canary.accept()).await;
    assert!(accepted.is_err(), "the canary must see no connection");
}

#[test]
fn allow_hosts_are_normalised() {
    assert_eq!(normalize_host("Example.COM."), "example.com");
    assert_eq!(normalize_host("[::1]"), "::1");
    assert_eq!(normalize_host("0:0::1"), "::1");
    assert_eq!(normalize_host(" 127.0.0.1 "), "127.0.0.1");
}

#[test]
fn errors_are_generic() {
    for e in [
        EgressError::InvalidUrl,
        EgressError::HttpsRequired,
        EgressError::DestinationNotAllowed,
        EgressError::Unresolvable,
        EgressError::RedirectRefused,
        EgressError::Timeout,
        EgressError::Unreachable,
    ] {
        let text = e.to_string();
        assert!(!text.contains("127.") && !text.contains("::"), "{text}");
    }
}
