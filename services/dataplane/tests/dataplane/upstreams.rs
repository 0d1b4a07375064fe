//! Kinds of upstreams: several servers aggregated behind one endpoint, an old HTTP+SSE server,
//! and a server with its own credential (OAuth client credentials) and a caller assertion.

use serde_json::{Value, json};

use mcp_fixture::FixtureOptions;

use crate::harness::*;

#[tokio::test]
async fn aggregation_namespaces_and_routes_to_the_right_server() {
    let issuer = Issuer::start().await;
    let shared = Shared::new();
    let dp = TestDataplane::start(&issuer, &shared, &[]).await;
    let one = mcp_fixture::spawn_fixture(FixtureOptions {
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let two = mcp_fixture::spawn_fixture(FixtureOptions {
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let s1 = ServerSpec::fixture("orders", one.url()).await;
    let s2 = ServerSpec::fixture("catalog", two.url()).await;
    let mut org = OrgSpec::new("agg");
    org.add_server(&s1, &shared.encryption_keys);
    org.add_server(&s2, &shared.encryption_keys);
    org.add_endpoint(&dp.url, "main", &[&s1, &s2], true, &[("all", &["*"])]);
    dp.load(&[org.snapshot()]);
    let token = issuer.token(&org.endpoints[0], org.org_id, "alice", "all", json!({}));
    for version in ["2025-11-25", "2026-07-28"] {
        let mut client = RawClient::new(&dp.endpoint_url("agg", "main"), Some(token.clone()), version);
        client.handshake().await;
        let names = client.tool_names().await;
        assert!(
            names.contains(&"orders__test_simple_text".to_owned())
                && names.contains(&"catalog__test_simple_text".to_owned()),
            "{names:?}"
        );
        assert!(!names.contains(&"test_simple_text".to_owned()));
        let before = (one.tool_calls(), two.tool_calls());
        let answer = client.call_tool(1, "catalog__test_simple_text", json!({})).await;
        assert!(answer.response(1)["result"].is_object(), "{:?}", answer.messages);
        assert_eq!(
            (one.tool_calls(), two.tool_calls()),
            (before.0, before.1 + 1),
            "{version}: routed to catalog only"
        );
        let prompts = client.call(2, "prompts/list", json!({})).await;
        let prompt_names: Vec<&str> = prompts.response(2)["result"]["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            prompt_names.contains(&"orders__test_simple_prompt")
                && prompt_names.contains(&"catalog__test_simple_prompt"),
            "{prompt_names:?}"
        );
        let got = client
            .call(
                3,
                "prompts/get",
                json!({"name": "orders__test_simple_prompt", "arguments": {}}),
            )
            .await;
        assert!(
            got.response(3)["result"]["messages"].is_array(),
            "{:?}",
            got.messages
        );
    }
}

/// An old upstream on the deprecated HTTP+SSE transport (the official TypeScript SDK's
/// `SSEServerTransport`), reached from both eras.
#[tokio::test]
async fn http_sse_upstreams_are_served() {
    let legacy = gatehouse_test_support::node_tools::LegacySseServer::start().await;
    let port = legacy.port;
    let issuer = Issuer::start().await;
    let shared = Shared::new();
    let dp = TestDataplane::start(&issuer, &shared, &[]).await;
    let tool = json!({"name": "legacy_echo", "description": "Echoes its text", "inputSchema": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
        "additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"}});
    let server = ServerSpec {
        id: gatehouse_core::ids::ServerId::new(),
        slug: "old".into(),
        url: format!("http://127.0.0.1:{port}/sse"),
        tools: vec![tool],
        auth: gatehouse_core::snapshot::UpstreamAuth::None,
        send_caller_assertion: false,
    };
    let mut org = OrgSpec::new("legacy");
    org.add_server(&server, &shared.encryption_keys);
    org.servers[0].transport = gatehouse_core::snapshot::UpstreamTransport::HttpSse;
    org.add_endpoint(&dp.url, "main", &[&server], false, &[("all", &["*"])]);
    dp.load(&[org.snapshot()]);
    let token = issuer.token(&org.endpoints[0], org.org_id, "alice", "all", json!({}));
    // The SDK's exact definition is what its tools/list says: listing checks the pin, and a
    // mismatch with our guess reports the observed definition; approve that one.
    let probe = RawClient::new(
        &dp.endpoint_url("legacy", "main"),
        Some(token.clone()),
        "2026-07-28",
    );
    probe.tool_names().await;
    for event in dp.drain_events().await {
        if let gatehouse_events::BusMessage::ToolDrift(drift) = event {
            let t = &mut org.endpoints[0].tools[0];
            t.approved_hash = gatehouse_core::canonical::tool_definition_hash(&drift.observed_definition);
            t.approved_definition = drift.observed_definition;
            org.version += 1;
            dp.store.install(org.snapshot());
        }
    }
    assert_eq!(
        probe.tool_names().await,
        vec!["legacy_echo".to_owned()],
        "the pin check reached the HTTP+SSE upstream"
    );
    for version in ["2025-11-25", "2026-07-28"] {
        let mut client = RawClient::new(&dp.endpoint_url("legacy", "main"), Some(token.clone()), version);
        client.handshake().await;
        let answer = client.call_tool(1, "legacy_echo", json!({"text": "hi"})).await;
        assert_eq!(answer.status, 200, "{version}: {:?}", answer.messages);
        assert_eq!(
            answer.response(1)["result"]["content"][0]["text"],
            "legacy:hi",
            "{version}"
        );
    }
    drop(legacy);
}

/// The upstream gets the server's own credential (OAuth client credentials, fetched once and
/// cached) and a verifiable caller assertion; never the caller's token.
#[tokio::test]
async fn upstream_credentials_and_caller_assertion() {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let token_requests = web::Data::new(AtomicUsize::new(0));
    let port = gatehouse_test_support::free_port();
    let counter = token_requests.clone();
    let token_server = HttpServer::new(move || {
        App::new().app_data(counter.clone()).route(
            "/token",
            web::post().to(
                |req: actix_web::HttpRequest, form: web::Bytes, n: web::Data<AtomicUsize>| async move {
                    let basic = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let form = String::from_utf8_lossy(&form).into_owned();
                    // client_id:client_secret = upstream-client:upstream-secret
                    if basic != "Basic dXBzdHJlYW0tY2xpZW50OnVwc3RyZWFtLXNlY3JldA=="
                        || !form.contains("grant_type=client_credentials")
                    {
                        return HttpResponse::Unauthorized().finish();
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    HttpResponse::Ok().json(
                        json!({"access_token": "cc-token-1", "token_type": "Bearer", "expires_in": 300}),
                    )
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", port))
    .unwrap()
    .run();
    tokio::spawn(token_server);

    let issuer = Issuer::start().await;
    let shared = Shared::new();
    let dp = TestDataplane::start(&issuer, &shared, &[]).await;
    let fixture = mcp_fixture::spawn_fixture(FixtureOptions {
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut server = ServerSpec::fixture("fx", fixture.url()).await;
    server.auth = gatehouse_core::snapshot::UpstreamAuth::OauthClientCredentials {
        token_url: format!("http://127.0.0.1:{port}/token"),
        client_id: "upstream-client".into(),
        client_secret: gatehouse_core::snapshot::Sealed(b"upstream-secret".to_vec()),
        scope: Some("mcp".into()),
    };
    server.send_caller_assertion = true;
    let mut org = OrgSpec::new("creds");
    org.add_server(&server, &shared.encryption_keys);
    org.add_endpoint(&dp.url, "main", &[&server], false, &[("all", &["*"])]);
    dp.load(&[org.snapshot()]);
    let token = issuer.token(&org.endpoints[0], org.org_id, "alice", "all", json!({}));
    let client = RawClient::new(
        &dp.endpoint_url("creds", "main"),
        Some(token.clone()),
        "2026-07-28",
    );
    for id in 1..=3 {
        let answer = client.call_tool(id, "test_simple_text", json!({})).await;
        assert!(answer.response(id)["result"].is_object(), "{:?}", answer.messages);
    }
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "the client-credentials token is cached"
    );
    let seen = fixture.headers_snapshot();
    let calls: Vec<&Vec<(String, String)>> = seen
        .iter()
        .filter(|h| h.iter().any(|(k, v)| k == "mcp-method" && v == "tools/call"))
        .collect();
    assert_eq!(calls.len(), 3);
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(format!(
        "{}/.well-known/gatehouse/caller-assertion-jwks.json",
        dp.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    for headers in calls {
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(
            get("authorization").as_deref(),
            Some("Bearer cc-token-1"),
            "the server's own credential"
        );
        assert!(
            !headers.iter().any(|(_, v)| v.contains(&token)),
            "the caller's token never goes upstream"
        );
        let assertion = get("gatehouse-caller-assertion").expect("caller assertion sent");
        let header = jsonwebtoken::decode_header(&assertion).unwrap();
        assert_eq!(header.typ.as_deref(), Some("gatehouse-caller+jwt"));
        let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("kid published");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.set_audience(&[fixture.url()]);
        validation.set_issuer(&[dp.url.as_str()]);
        let claims = jsonwebtoken::decode::<Value>(
            &assertion,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .expect("the assertion verifies with the published key")
        .claims;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["sub_kind"], "user");
        assert_eq!(claims["org_id"], org.org_id.to_string());
        assert_eq!(claims["endpoint_id"], org.endpoints[0].id.to_string());
        assert!(claims["exp"].as_u64().unwrap() <= claims["iat"].as_u64().unwrap() + 60);
    }
}
