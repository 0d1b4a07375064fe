//! An owner deletes an org: the dataplane stops serving its endpoints within a second (the org's
//! snapshot is gone, so the dataplane drops it), its service client can no longer get tokens,
//! and another org served by the same dataplane is untouched.

use std::time::Duration;

use serde_json::json;

use super::suspension::initialize;
use super::{Admin, client_credentials_request, platform_reaching_loopback, service_client_token, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_orgs_endpoints_stop_answering_within_a_second_and_other_orgs_keep_theirs() {
    let platform = platform_reaching_loopback().await;
    let fixture = mcp_fixture::spawn_fixture(Default::default()).await.unwrap();
    let host = platform.dataplane.trim_start_matches("http://").to_owned();
    let mut served = Vec::new();
    for slug in ["doomed", "kept"] {
        let (admin, _) = Admin::create(&platform, &format!("owner@{slug}.example"), slug).await;
        let server_id = admin
            .provision(
                slug,
                json!({"slug": "fx", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "none"}}),
                &[("fx:all", &["*"])],
            )
            .await;
        let endpoint = admin.create_endpoint(slug, "tools", "Tools", &server_id).await;
        let (_resource, token) = service_client_token(&platform, &admin, slug, &endpoint, &["fx:all"]).await;
        let path = format!("/{slug}/tools/mcp");
        wait_for(Duration::from_secs(5), || async {
            initialize(&platform.http, &platform.dataplane, &host, &path, &token)
                .await
                .0
                == 200
        })
        .await;
        served.push((admin, endpoint, token, path));
    }
    let (doomed, endpoint, doomed_token, doomed_path) = &served[0];
    let (_, _, kept_token, kept_path) = &served[1];
    let client = doomed
        .send(
            reqwest::Method::POST,
            "/api/v1/orgs/doomed/service-clients",
            Some(json!({"name": "second", "endpoint_id": endpoint["id"], "scopes": ["fx:all"]})),
        )
        .await;
    let resource = format!("{}{doomed_path}", platform.dataplane);
    let form = [
        ("grant_type", "client_credentials"),
        ("resource", resource.as_str()),
    ];
    let token_request = || client_credentials_request(&platform, &client, &form).send();
    assert_eq!(token_request().await.unwrap().status(), 200);

    doomed
        .try_send(
            reqwest::Method::DELETE,
            "/api/v1/orgs/doomed",
            Some(json!({"confirm": "doomed"})),
        )
        .await
        .expect("the owner deletes the org");
    let took = wait_for(Duration::from_secs(1), || async {
        initialize(
            &platform.http,
            &platform.dataplane,
            &host,
            doomed_path,
            doomed_token,
        )
        .await
        .0 == 404
    })
    .await;
    eprintln!("the dataplane stopped serving the deleted org {took:?} after the deletion");

    // The org's service client is gone with it: the authorization server refuses it.
    let refused = token_request().await.unwrap();
    assert_eq!(refused.status(), 401, "{}", refused.text().await.unwrap());

    // The other org is served as before.
    let (status, body) = initialize(&platform.http, &platform.dataplane, &host, kept_path, kept_token).await;
    assert_eq!(status, 200, "{body}");
}
