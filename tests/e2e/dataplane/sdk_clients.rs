//! The official TypeScript and Python SDK clients through the dataplane.

use serde_json::{Value, json};

use super::{Admin, platform_reaching_loopback, service_client_token};

/// The official TypeScript and Python SDK clients list and call tools through the dataplane with
/// an access token from the authorization server, in every era the SDK supports (TypeScript
/// 1.32: 2025-11-25 sessions; Python 2.3: 2025-11-25 sessions and 2026-07-28 `server/discover`).
#[tokio::test]
async fn sdk_clients_list_and_call_with_an_authorization_server_token() {
    let clients = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients");
    let python = clients.join(".venv/bin/python");
    let node = clients.join("conformance/node_modules/.bin/node");
    assert!(
        python.exists() && node.exists(),
        "the SDK clients are not installed: run tests/clients/setup.sh"
    );
    let platform = platform_reaching_loopback().await;
    let fixture = mcp_fixture::spawn_fixture(mcp_fixture::FixtureOptions {
        record_headers: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let (admin, _) = Admin::create(&platform, "sdk-owner@example.com", "sdkorg").await;
    let server_id = admin
        .provision(
            "sdkorg",
            json!({"slug": "fx", "name": "Fixture", "url": fixture.url(), "auth": {"kind": "none"}}),
            &[("fx:text", &["test_simple_text"])],
        )
        .await;
    let endpoint = admin.create_endpoint("sdkorg", "mcp", "MCP", &server_id).await;
    let (resource, token) = service_client_token(&platform, &admin, "sdkorg", &endpoint, &["fx:text"]).await;

    let runs: Vec<(&str, std::path::PathBuf, Vec<String>)> = vec![
        (
            "typescript 2025-11-25",
            node.clone(),
            vec![
                "sdk-list-call.mjs".into(),
                resource.clone(),
                token.clone(),
                "fx__test_simple_text".into(),
            ],
        ),
        (
            "python 2025-11-25",
            python.clone(),
            vec![
                clients.join("sdk_list_call.py").display().to_string(),
                resource.clone(),
                token.clone(),
                "fx__test_simple_text".into(),
                "legacy".into(),
            ],
        ),
        (
            "python 2026-07-28",
            python.clone(),
            vec![
                clients.join("sdk_list_call.py").display().to_string(),
                resource.clone(),
                token.clone(),
                "fx__test_simple_text".into(),
                "modern".into(),
            ],
        ),
    ];
    for (name, program, args) in runs {
        let output = tokio::process::Command::new(&program)
            .current_dir(clients.join("conformance"))
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = String::from_utf8_lossy(&output.stdout);
        let seen: Value = serde_json::from_str(line.trim().lines().last().unwrap())
            .unwrap_or_else(|_| panic!("{name}: {line}"));
        assert_eq!(seen["tools"], json!(["fx__test_simple_text"]), "{name}: {seen}");
        assert_eq!(seen["result"]["content"][0]["type"], "text", "{name}: {seen}");
    }
    for (header, value) in fixture.headers_snapshot().iter().flatten() {
        assert!(
            !value.contains(&token),
            "the client token reached the upstream in {header}"
        );
    }
}
