//! Kinds of upstreams: several servers aggregated behind one endpoint (tools, prompts, resources,
//! lists, tasks and subscriptions routed to the right one) and a server with its own credential
//! (OAuth client credentials) and a caller assertion. Old HTTP+SSE servers: `legacy_transport`.

use std::time::Duration;

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
    org.add_server(&s1, &shared.snapshot_keys);
    org.add_server(&s2, &shared.snapshot_keys);
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
    org.add_server(&server, &shared.snapshot_keys);
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

/// Two fixtures behind one endpoint, tools and prompts namespaced: `orders` serves resources of
/// its own under `test://alpha/`, `catalog` under `test://beta/`.
struct TwoUpstreams {
    _issuer: Issuer,
    _shared: Shared,
    dp: TestDataplane,
    alpha: mcp_fixture::FixtureHandle,
    beta: mcp_fixture::FixtureHandle,
    org: OrgSpec,
    token: String,
}

impl TwoUpstreams {
    async fn start(alpha: FixtureOptions, beta: FixtureOptions) -> TwoUpstreams {
        let issuer = Issuer::start().await;
        let shared = Shared::new();
        let dp = TestDataplane::start(&issuer, &shared, &[]).await;
        let alpha = mcp_fixture::spawn_fixture(FixtureOptions {
            own_resources: Some("alpha".into()),
            ..alpha
        })
        .await
        .unwrap();
        let beta = mcp_fixture::spawn_fixture(FixtureOptions {
            own_resources: Some("beta".into()),
            ..beta
        })
        .await
        .unwrap();
        let orders = ServerSpec::fixture("orders", alpha.url()).await;
        let catalog = ServerSpec::fixture("catalog", beta.url()).await;
        let mut org = OrgSpec::new("two");
        org.add_server(&orders, &shared.snapshot_keys);
        org.add_server(&catalog, &shared.snapshot_keys);
        org.add_endpoint(&dp.url, "main", &[&orders, &catalog], true, &[("all", &["*"])]);
        dp.load(&[org.snapshot()]);
        let token = issuer.token(&org.endpoints[0], org.org_id, "alice", "all", json!({}));
        TwoUpstreams {
            _issuer: issuer,
            _shared: shared,
            dp,
            alpha,
            beta,
            org,
            token,
        }
    }

    /// Fixtures whose watched resources change quickly (subscriptions have news soon).
    fn lively() -> FixtureOptions {
        FixtureOptions {
            watched_resource_interval: Duration::from_millis(300),
            ..Default::default()
        }
    }

    async fn client(&self, version: &str) -> RawClient {
        let mut client = RawClient::new(
            &self.dp.endpoint_url("two", "main"),
            Some(self.token.clone()),
            version,
        );
        client.handshake().await;
        client
    }

    /// The standalone GET stream of `client`'s 2025-11-25 session.
    async fn get_stream(&self, client: &RawClient) -> MessageStream {
        let get = client
            .http
            .get(&client.url)
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", client.session.clone().unwrap())
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 200);
        MessageStream::new(get)
    }

    /// A new snapshot version: the endpoint's in-memory state, what it learned included, starts
    /// over (as on a replica that never saw the endpoint).
    fn republish(&mut self) {
        self.org.version += 1;
        self.dp.store.install(self.org.snapshot());
    }
}

fn error_code(answer: &Answer, id: i64) -> Option<i64> {
    answer.response(id)["error"]["code"].as_i64()
}

fn read_text(answer: &Answer, id: i64) -> String {
    let text = &answer.response(id)["result"]["contents"][0]["text"];
    text.as_str()
        .unwrap_or_else(|| panic!("no text in {:?}", answer.messages))
        .to_owned()
}

/// Resource URIs are not namespaced: a request naming one goes to the upstream that lists it
/// (learned on the spot by a replica that has not seen the lists), and a URI nobody lists is
/// -32002, never a guess.
#[tokio::test]
async fn resources_go_to_the_upstream_that_lists_them() {
    let mut two = TwoUpstreams::start(FixtureOptions::default(), FixtureOptions::default()).await;
    for version in ["2026-07-28", "2025-11-25"] {
        two.republish();
        let client = two.client(version).await;
        let read = |id: i64, uri: &str| client.call(id, "resources/read", json!({"uri": uri}));
        assert_eq!(
            read_text(&read(1, "test://beta/info").await, 1),
            "Served by fixture beta"
        );
        assert_eq!(
            read_text(&read(2, "test://alpha/info").await, 2),
            "Served by fixture alpha"
        );
        assert_eq!(
            read_text(&read(3, "test://beta/items/42").await, 3),
            "Item 42 from fixture beta",
            "{version}: a template's URIs go to the template's upstream"
        );
        let missing = read(4, "test://nobody/here").await;
        assert_eq!(missing.status, 200, "{version}");
        assert_eq!(
            error_code(&missing, 4),
            Some(-32002),
            "{version}: {:?}",
            missing.messages
        );
        assert_eq!(missing.response(4)["error"]["data"]["uri"], "test://nobody/here");
        let completion = client
            .call(
                5,
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": "test://beta/items/{id}"},
                    "argument": {"name": "id", "value": ""}}),
            )
            .await;
        assert_eq!(
            completion.response(5)["result"]["completion"]["values"],
            json!(["beta-1", "beta-2"]),
            "{version}: {:?}",
            completion.messages
        );
    }
}

/// 2025-11-25: `resources/subscribe` goes to the owner of the URI (the other upstream refuses a
/// URI it does not know), and the owner's updates arrive on the session's GET stream.
#[tokio::test]
async fn resource_subscriptions_go_to_the_owner() {
    let two = TwoUpstreams::start(TwoUpstreams::lively(), TwoUpstreams::lively()).await;
    let client = two.client("2025-11-25").await;
    let subscribed = client
        .call(1, "resources/subscribe", json!({"uri": "test://beta/watched"}))
        .await;
    assert!(
        subscribed.response(1)["result"].is_object(),
        "{:?}",
        subscribed.messages
    );
    let nobody = client
        .call(2, "resources/subscribe", json!({"uri": "test://nobody/watched"}))
        .await;
    assert_eq!(error_code(&nobody, 2), Some(-32002), "{:?}", nobody.messages);
    let mut stream = two.get_stream(&client).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = stream
            .next(deadline)
            .await
            .unwrap_or_else(|| panic!("no update for test://beta/watched: {}", stream.received));
        if message["method"] == "notifications/resources/updated" {
            assert_eq!(message["params"]["uri"], "test://beta/watched");
            break;
        }
    }
}

/// Lists walk every upstream in pages of its own: the composite cursor gives each upstream only
/// its own cursor (the fixture refuses another instance's), until none has more.
#[tokio::test]
async fn aggregated_lists_walk_every_upstream_with_its_own_cursor() {
    let paged = |size| FixtureOptions {
        page_size: Some(size),
        ..Default::default()
    };
    let two = TwoUpstreams::start(paged(2), paged(3)).await;
    for version in ["2026-07-28", "2025-11-25"] {
        let client = two.client(version).await;
        let (uris, pages) = walk(&client, "resources/list", "resources", "uri").await;
        // Six resources each (three shared catalog ones, the skill, two of its own): pages of
        // two and of three make three pages.
        assert_eq!(pages, 3, "{version}: {uris:?}");
        assert_eq!(uris.len(), 12, "{version}: {uris:?}");
        for own in [
            "test://alpha/info",
            "test://alpha/watched",
            "test://beta/info",
            "test://beta/watched",
        ] {
            assert_eq!(
                uris.iter().filter(|u| *u == own).count(),
                1,
                "{version}: {own} in {uris:?}"
            );
        }
        let shared = uris.iter().filter(|u| *u == "test://static-text").count();
        assert_eq!(shared, 2, "{version}: {uris:?}");
        let (prompts, _) = walk(&client, "prompts/list", "prompts", "name").await;
        assert!(
            prompts.contains(&"orders__test_simple_prompt".to_owned())
                && prompts.contains(&"catalog__test_simple_prompt".to_owned())
                && prompts
                    .iter()
                    .all(|p| p.starts_with("orders__") || p.starts_with("catalog__")),
            "{version}: {prompts:?}"
        );
        let forged = client
            .call(9, "resources/list", json!({"cursor": "not-a-cursor-of-ours"}))
            .await;
        assert_eq!(
            error_code(&forged, 9),
            Some(-32602),
            "{version}: {:?}",
            forged.messages
        );
    }
}

/// With one upstream down, lists still answer with the others' items (the failure is the
/// operator's to see, in the logs and `gatehouse_dataplane_upstream_list_failures_total`), in
/// both eras.
#[tokio::test]
async fn lists_answer_with_the_upstreams_that_answer() {
    let two = TwoUpstreams::start(Default::default(), Default::default()).await;
    let modern = two.client("2026-07-28").await;
    let legacy = two.client("2025-11-25").await;
    two.beta.shutdown().await;
    for client in [&modern, &legacy] {
        let (uris, pages) = walk(client, "resources/list", "resources", "uri").await;
        assert_eq!(pages, 1, "{uris:?}");
        assert!(uris.contains(&"test://alpha/info".to_owned()), "{uris:?}");
        assert!(!uris.iter().any(|u| u.starts_with("test://beta/")), "{uris:?}");
        let (prompts, _) = walk(client, "prompts/list", "prompts", "name").await;
        assert!(
            !prompts.is_empty() && prompts.iter().all(|p| p.starts_with("orders__")),
            "{prompts:?}"
        );
    }
}

/// Walks a list to its end: the `field` of every item, and how many pages it took.
async fn walk(client: &RawClient, method: &str, key: &str, field: &str) -> (Vec<String>, usize) {
    let mut values = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=10 {
        let params = cursor.map_or_else(|| json!({}), |c| json!({"cursor": c}));
        let answer = client.call(100 + page, method, params).await;
        let result = &answer.response(100 + page)["result"];
        let items = result[key]
            .as_array()
            .unwrap_or_else(|| panic!("{method}: {:?}", answer.messages));
        values.extend(items.iter().filter_map(|i| i[field].as_str()).map(str::to_owned));
        match result["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (values, page as usize),
        }
    }
    panic!("{method} never ended: {values:?}");
}

/// A task created by a tool of `catalog` is named `catalog__<its id>` (streamed answers in the
/// session, plain JSON in 2026-07-28); `tasks/get` (and in the session `tasks/result` and the
/// aggregated `tasks/list`, which 2026-07-28 removed) reach `catalog` with it, and an id naming
/// no upstream is -32602.
#[tokio::test]
async fn tasks_are_namespaced_and_routed_by_their_id() {
    let two = TwoUpstreams::start(
        FixtureOptions::default(),
        FixtureOptions {
            response_format: mcp_fixture::ResponseFormat::Json,
            ..Default::default()
        },
    )
    .await;
    for version in ["2026-07-28", "2025-11-25"] {
        let mut client = RawClient::new(
            &two.dp.endpoint_url("two", "main"),
            Some(two.token.clone()),
            version,
        )
        .declaring_tasks();
        client.handshake().await;
        let before = (two.alpha.tool_calls(), two.beta.tool_calls());
        let label = format!("run-{version}");
        let created = client
            .call_tool(1, "catalog__slow_compute", json!({"seconds": 1, "label": label}))
            .await;
        assert_eq!(
            (two.alpha.tool_calls(), two.beta.tool_calls()),
            (before.0, before.1 + 1)
        );
        let result = &created.response(1)["result"];
        let task_id = result["taskId"]
            .as_str()
            .or(result["task"]["taskId"].as_str())
            .unwrap_or_else(|| panic!("{version}: no task in {:?}", created.messages))
            .to_owned();
        let upstream_id = task_id
            .strip_prefix("catalog__")
            .unwrap_or_else(|| panic!("{version}: {task_id} names its upstream"));
        let done = poll_until_completed(&client, &task_id).await;
        let text = done["result"]["content"][0]["text"].as_str().unwrap_or_default();
        assert!(text.contains(&label), "{version}: {done}");

        let fetched = client.call(2, "tasks/result", json!({"taskId": task_id})).await;
        if client.modern() {
            // SEP-2663 removed it: the upstream the id names says so.
            assert_eq!(error_code(&fetched, 2), Some(-32601), "{:?}", fetched.messages);
        } else {
            let fetched = &fetched.response(2)["result"];
            assert_eq!(fetched["content"][0]["text"], text, "{version}: {fetched}");
            let related = &fetched["_meta"]["io.modelcontextprotocol/related-task"];
            assert_eq!(related["taskId"], task_id, "{version}: {fetched}");
        }

        // The same upstream id under the other upstream's name reaches that one, which has no
        // such task; a name that is no upstream's is refused here.
        let elsewhere = client
            .call(
                3,
                "tasks/get",
                json!({"taskId": format!("orders__{upstream_id}")}),
            )
            .await;
        assert!(
            elsewhere.response(3)["error"].is_object(),
            "{version}: {:?}",
            elsewhere.messages
        );
        for unknown in ["nobody__x", upstream_id] {
            let refused = client.call(4, "tasks/get", json!({"taskId": unknown})).await;
            assert_eq!(
                refused.response(4)["error"]["message"],
                "Unknown task",
                "{version}"
            );
            assert_eq!(error_code(&refused, 4), Some(-32602), "{version}");
        }

        if client.modern() {
            let listed = client.call(5, "tasks/list", json!({})).await;
            assert_eq!(error_code(&listed, 5), Some(-32601), "{:?}", listed.messages);
        } else {
            let (listed, _) = walk(&client, "tasks/list", "tasks", "taskId").await;
            assert!(listed.contains(&task_id), "{version}: {listed:?}");
            assert!(
                listed.iter().all(|id| id.starts_with("catalog__")),
                "{version}: {listed:?}"
            );
        }
    }
}

/// Polls `tasks/get` until the task completes; its final state.
async fn poll_until_completed(client: &RawClient, task_id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = client.call(50, "tasks/get", json!({"taskId": task_id})).await;
        let task = answer.response(50)["result"].clone();
        assert_eq!(task["taskId"], task_id, "{:?}", answer.messages);
        if task["status"] == "completed" {
            return task;
        }
        assert!(std::time::Instant::now() < deadline, "never completed: {task}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 2026-07-28 `subscriptions/listen` goes to every upstream (each with the resource
/// subscriptions it owns): one acknowledgement, then both upstreams' updates on one stream.
/// A method nobody can route is still -32601.
#[tokio::test]
async fn subscriptions_listen_merges_every_upstream() {
    let two = TwoUpstreams::start(TwoUpstreams::lively(), TwoUpstreams::lively()).await;
    let client = two.client("2026-07-28").await;
    let body = client.request(
        1,
        "subscriptions/listen",
        json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions":
            ["test://alpha/watched", "test://beta/watched", "test://nobody/watched"]}}),
    );
    let response = client.builder(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = MessageStream::new(response);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let ack = stream.next(deadline).await.expect("an acknowledgement");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    let mut agreed: Vec<&str> = ack["params"]["notifications"]["resourceSubscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("{ack}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    agreed.sort();
    assert_eq!(agreed, ["test://alpha/watched", "test://beta/watched"], "{ack}");
    assert_eq!(ack["params"]["notifications"]["toolsListChanged"], true, "{ack}");
    let mut heard = std::collections::BTreeSet::new();
    while heard.len() < 2 {
        let Some(message) = stream.next(deadline).await else {
            panic!("heard only {heard:?}: {}", stream.received);
        };
        if message["method"] == "notifications/resources/updated" {
            heard.insert(message["params"]["uri"].as_str().unwrap_or_default().to_owned());
        }
    }
    let unroutable = client.call(2, "no/such-method", json!({})).await;
    assert_eq!(
        error_code(&unroutable, 2),
        Some(-32601),
        "{:?}",
        unroutable.messages
    );
}

/// 2025-11-25: a task's status notification (SEP-2663 `notifications/tasks`, sent by the upstream
/// on the session's GET stream when the task settles) reaches the client with the task named as
/// the client knows it, `catalog__<upstream id>`.
#[tokio::test]
async fn task_status_notifications_name_the_task_as_the_client_knows_it() {
    let two = TwoUpstreams::start(FixtureOptions::default(), FixtureOptions::default()).await;
    let mut client = RawClient::new(
        &two.dp.endpoint_url("two", "main"),
        Some(two.token.clone()),
        "2025-11-25",
    )
    .declaring_tasks();
    client.handshake().await;
    let mut stream = two.get_stream(&client).await;

    let created = client
        .call_tool(
            1,
            "catalog__slow_compute",
            json!({"seconds": 1, "label": "notified"}),
        )
        .await;
    let result = &created.response(1)["result"];
    let task_id = result["task"]["taskId"]
        .as_str()
        .or(result["taskId"].as_str())
        .unwrap_or_else(|| panic!("no task in {:?}", created.messages))
        .to_owned();
    assert!(task_id.starts_with("catalog__"), "{task_id}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        let message = stream
            .next(deadline)
            .await
            .unwrap_or_else(|| panic!("no status notification for {task_id}: {}", stream.received));
        if message["method"]
            .as_str()
            .is_some_and(|m| m.starts_with("notifications/tasks"))
        {
            break message;
        }
    };
    assert_eq!(status["params"]["taskId"], task_id.as_str(), "{status}");
    assert_eq!(status["params"]["status"], "completed", "{status}");
    // And the id it carries is one the client can use.
    let fetched = client.call(2, "tasks/get", json!({"taskId": task_id})).await;
    assert_eq!(
        fetched.response(2)["result"]["status"],
        "completed",
        "{:?}",
        fetched.messages
    );
}
