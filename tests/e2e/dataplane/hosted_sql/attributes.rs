//! Caller attributes: policies read the `customer_id` attribute set on each service token through
//! the REST API and signed into every call by the dataplane.

use std::time::Duration;

use serde_json::json;

use super::support::{TestBackend, call, ids, served, service_token};
use crate::dataplane::{Admin, platform_reaching_loopback, wait_for};

/// The orders example of docs/hosted-sql.md: one table shared by several customers, a policy on
/// `gatehouse.claim('customer_id')`, and each customer's service token carrying its `customer_id`
/// attribute, set through the REST API and signed into every call by the dataplane.
#[tokio::test]
async fn policies_read_the_callers_attributes_set_through_the_api() {
    let platform = platform_reaching_loopback().await;
    let (admin, _) = Admin::create(&platform, "owner@shop.test", "shop").await;
    let base = "/api/v1/orgs/shop";
    let backend = TestBackend::create(
        &platform,
        &admin,
        base,
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id text NOT NULL, total numeric(10,2) NOT NULL);
         ALTER TABLE orders ENABLE ROW LEVEL SECURITY; ALTER TABLE orders FORCE ROW LEVEL SECURITY;
         CREATE POLICY orders_by_customer ON orders FOR ALL TO PUBLIC
             USING (customer_id = (SELECT gatehouse.claim('customer_id')))
             WITH CHECK (customer_id = (SELECT gatehouse.claim('customer_id')));
         GRANT SELECT ON orders TO {role};
         INSERT INTO orders VALUES (1, 'acme', 10), (2, 'globex', 20), (3, 'acme', 30);",
    )
    .await;
    let endpoint_id = backend
        .publish(
            &admin,
            base,
            &[
                ("my_orders", "SELECT id, total FROM orders ORDER BY id", "read", false),
                (
                    "whoami",
                    "SELECT gatehouse.claim('customer_id') AS customer, gatehouse.email() AS email, gatehouse.subject() AS subject",
                    "read",
                    false,
                ),
            ],
            "orders",
            "orders",
        )
        .await;

    // The org defines the attribute; values for undefined names are refused.
    admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/attributes"),
            Some(json!({"name": "customer_id", "description": "The customer this caller acts for"})),
        )
        .await;
    let mut tokens = Vec::new();
    for name in ["acme", "globex", "unassigned"] {
        tokens.push(service_token(&admin, base, &endpoint_id, "orders", name).await);
    }
    let token_id = |t: &(String, String)| t.1.trim_start_matches("service_token:").to_owned();
    let refused = admin
        .try_send(
            reqwest::Method::PUT,
            &format!("{base}/service-tokens/{}/attributes", token_id(&tokens[0])),
            Some(json!({"attributes": {"tenant": "acme"}})),
        )
        .await
        .unwrap_err();
    assert!(refused.contains("400") && refused.contains("tenant"), "{refused}");
    for (token, customer) in [(&tokens[0], "acme"), (&tokens[1], "globex")] {
        admin
            .send(
                reqwest::Method::PUT,
                &format!("{base}/service-tokens/{}/attributes", token_id(token)),
                Some(json!({"attributes": {"customer_id": customer}})),
            )
            .await;
    }
    let stored = admin
        .send(
            reqwest::Method::GET,
            &format!("{base}/service-tokens/{}/attributes", token_id(&tokens[0])),
            None,
        )
        .await;
    assert_eq!(stored, json!({"attributes": {"customer_id": "acme"}}));

    let url = format!("{}/shop/orders/mcp", platform.dataplane);
    let read = "shop__my_orders";
    let (acme, globex, unassigned) = (&tokens[0], &tokens[1], &tokens[2]);
    served(&platform, &url, &acme.0, read).await;
    // Each PUT is its own configuration change: wait until the dataplane has the last of them.
    wait_for(Duration::from_secs(10), || async {
        let acme_rows = call(&platform, &url, &acme.0, read, json!({}), json!({})).await;
        let globex_rows = call(&platform, &url, &globex.0, read, json!({}), json!({})).await;
        acme_rows["result"]["structuredContent"]["row_count"] == 2
            && globex_rows["result"]["structuredContent"]["row_count"] == 1
    })
    .await;

    // Each customer's token sees its customer's orders; a token without the attribute sees none.
    assert_eq!(
        ids(&call(&platform, &url, &acme.0, read, json!({}), json!({})).await),
        [1, 3]
    );
    assert_eq!(
        ids(&call(&platform, &url, &globex.0, read, json!({}), json!({})).await),
        [2]
    );
    assert_eq!(
        ids(&call(&platform, &url, &unassigned.0, read, json!({}), json!({})).await),
        Vec::<i64>::new()
    );
    let who = call(&platform, &url, &acme.0, "shop__whoami", json!({}), json!({})).await;
    assert_eq!(
        who["result"]["structuredContent"]["rows"],
        json!([{"customer": "acme", "email": null, "subject": acme.1}]),
        "{who}"
    );

    // Changing a token's attribute is published: its calls follow within seconds.
    admin
        .send(
            reqwest::Method::PUT,
            &format!("{base}/service-tokens/{}/attributes", token_id(acme)),
            Some(json!({"attributes": {"customer_id": "globex"}})),
        )
        .await;
    wait_for(Duration::from_secs(5), || async {
        let answer = call(&platform, &url, &acme.0, read, json!({}), json!({})).await;
        answer["result"]["structuredContent"]["rows"] == json!([{"id": 2, "total": "20.00"}])
    })
    .await;

    // Removing the attribute removes every value: no customer's rows are visible any more.
    admin
        .send(
            reqwest::Method::DELETE,
            &format!("{base}/attributes/customer_id"),
            None,
        )
        .await;
    wait_for(Duration::from_secs(5), || async {
        let answer = call(&platform, &url, &globex.0, read, json!({}), json!({})).await;
        answer["result"]["structuredContent"]["row_count"] == 0
    })
    .await;
    backend.drop_all().await;
}
