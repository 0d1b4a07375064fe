//! What a tenant's servers answer cannot hurt other tenants: an absurd `expires_in` from one
//! org's token endpoint, or a huge token response, leaves every other org's OAuth-credentialed
//! upstream answering; a tool list too large to check is withheld, never buffered whole.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use gatehouse_core::snapshot::{Sealed, UpstreamAuth};
use mcp_fixture::FixtureOptions;

use crate::harness::*;

/// A client-credentials token endpoint answering by path: `/absurd` with the largest `expires_in`
/// JSON can carry, `/huge` with a 24 MiB body (no declared length), anything else normally.
/// Counts the requests per path.
async fn token_endpoint() -> (u16, Arc<std::sync::Mutex<HashMap<String, usize>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let seen = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = request.split(' ').nth(1).unwrap_or("").to_owned();
                *seen.lock().unwrap().entry(path.clone()).or_default() += 1;
                let token = format!("token-for{}", path.replace('/', "-"));
                if path == "/huge" {
                    let head =
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s
                        .write_all(
                            format!(r#"{{"access_token":"{token}","expires_in":300,"pad":""#).as_bytes(),
                        )
                        .await;
                    let chunk = vec![b'x'; 64 * 1024];
                    for _ in 0..384 {
                        if s.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = s.write_all(br#""}"#).await;
                    return;
                }
                let expires_in = if path == "/absurd" {
                    "18446744073709551615"
                } else {
                    "300"
                };
                let body = format!(
                    r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#
                );
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, counts)
}

/// An org whose one server (the fixture at `url`) authenticates with client credentials from
/// `token_url`.
async fn oauth_org(dp: &TestDataplane, shared: &Shared, slug: &str, url: &str, token_url: String) -> OrgSpec {
    let mut server = ServerSpec::fixture("fx", url).await;
    server.auth = UpstreamAuth::OauthClientCredentials {
        token_url,
        client_id: "client".into(),
        client_secret: Sealed(b"secret".to_vec()),
        scope: None,
    };
    let mut org = OrgSpec::new(slug);
    org.add_server(&server, &shared.snapshot_keys);
    org.add_endpoint(&dp.url, "main", &[&server], false, &[("all", &["*"])]);
    org
}

fn answered(answer: &Answer, id: i64) -> bool {
    answer
        .messages
        .iter()
        .any(|m| m.get("id") == Some(&json!(id)) && m["result"].is_object())
}

/// Three orgs on one dataplane, each with an OAuth-credentialed upstream whose token endpoint
/// answers as `path` says.
struct Tenants {
    _issuer: Issuer,
    _dp: TestDataplane,
    _fixture: mcp_fixture::FixtureHandle,
    token_requests: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    clients: HashMap<&'static str, RawClient>,
}

impl Tenants {
    async fn start(paths: &[&'static str]) -> Tenants {
        let (port, token_requests) = token_endpoint().await;
        let issuer = Issuer::start().await;
        let shared = Shared::new();
        let dp = TestDataplane::start(&issuer, &shared, &[]).await;
        let fixture = mcp_fixture::spawn_fixture(FixtureOptions::default())
            .await
            .unwrap();
        let mut orgs = Vec::new();
        for path in paths {
            let slug = path.trim_start_matches('/');
            let token_url = format!("http://127.0.0.1:{port}{path}");
            orgs.push((
                *path,
                oauth_org(&dp, &shared, slug, fixture.url(), token_url).await,
            ));
        }
        dp.load(&orgs.iter().map(|(_, o)| o.snapshot()).collect::<Vec<_>>());
        let clients = orgs
            .iter()
            .map(|(path, org)| {
                let token = issuer.token(&org.endpoints[0], org.org_id, "alice", "all", json!({}));
                let url = dp.endpoint_url(&org.slug, "main");
                (*path, RawClient::new(&url, Some(token), "2026-07-28"))
            })
            .collect();
        Tenants {
            _issuer: issuer,
            _dp: dp,
            _fixture: fixture,
            token_requests,
            clients,
        }
    }

    async fn call(&self, path: &str, id: i64) -> Answer {
        self.clients[path]
            .call_tool(id, "test_simple_text", json!({}))
            .await
    }
}

#[tokio::test]
async fn an_absurd_expires_in_breaks_no_other_tenant() {
    let tenants = Tenants::start(&["/absurd", "/good"]).await;
    // The absurd lifetime is clamped: the token is used, and cached (one fetch for two calls).
    for id in 1..=2 {
        let answer = tenants.call("/absurd", id).await;
        assert!(answered(&answer, id), "{:?}", answer.messages);
    }
    assert_eq!(tenants.token_requests.lock().unwrap().get("/absurd"), Some(&1));
    // Another org's OAuth-credentialed upstream still answers, whichever worker serves it.
    for id in 10..20 {
        let answer = tenants.call("/good", id).await;
        assert!(answered(&answer, id), "{:?}", answer.messages);
    }
}

#[tokio::test]
async fn a_huge_token_response_is_refused_unread() {
    let tenants = Tenants::start(&["/huge", "/good"]).await;
    // A token response larger than egress.max_document_bytes is refused, not buffered.
    let answer = tenants.call("/huge", 1).await;
    assert!(!answered(&answer, 1), "a 24 MiB token response was accepted");
    let answer = tenants.call("/good", 2).await;
    assert!(answered(&answer, 2), "{:?}", answer.messages);
}

/// A tool list larger than `dataplane.max_pin_check_bytes` is not read whole: the server's
/// pinned tools are withheld until a check fits.
#[tokio::test]
async fn a_tool_list_too_large_to_check_is_withheld() {
    let world = World::start(
        FixtureOptions::default(),
        &[("fx:all", &["*"])],
        &[("dataplane.max_pin_check_bytes", "1024")],
    )
    .await;
    assert!(
        serde_json::to_vec(&world.server.tools).unwrap().len() > 1024,
        "the fixture's list must exceed the limit"
    );
    let client = world.client("alice", "fx:all", "2026-07-28");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = client.call(1, "tools/list", json!({})).await;
        let tools: Vec<Value> = listed.response(1)["result"]["tools"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !tools.iter().any(|t| t["name"] == "test_simple_text") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a tool list larger than the check limit was checked and served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = world.fixture.tool_calls();
    let answer = client.call_tool(2, "test_simple_text", json!({})).await;
    assert!(!answered(&answer, 2), "{:?}", answer.messages);
    assert_eq!(
        world.fixture.tool_calls(),
        calls,
        "no call reached the unchecked tool"
    );
}
