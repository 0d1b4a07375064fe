//! Caller attributes through the API: an admin defines them and sets members' values; the
//! snapshot the dataplane gets carries each member's email and values (for hosted SQL caller
//! contexts); only admins set values, only defined names are accepted, and removing an attribute
//! removes its values.

use reqwest::Method;
use serde_json::{Value, json};

use gatehouse_core::role::Role;

use super::internal_snapshot;
use crate::helpers::TestApp;

#[tokio::test]
async fn members_attributes_and_emails_reach_the_snapshot() {
    let app = TestApp::spawn().await;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let owner = app.user(&format!("attr-owner-{tag}@example.com")).await;
    let dev = app.user(&format!("attr-dev-{tag}@example.com")).await;
    let (org, org_id) = app.org(&owner, &format!("attr{tag}")).await;
    app.add_member(org_id, &dev, Role::Developer).await;
    let base = format!("/api/v1/orgs/{org}");

    let status = |r: reqwest::Response| r.status().as_u16();
    let defined = owner
        .request(Method::POST, &format!("{base}/attributes"))
        .json(&json!({"name": "customer_id", "description": "The customer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(defined), 200);
    let bad_name = owner
        .request(Method::POST, &format!("{base}/attributes"))
        .json(&json!({"name": "Customer-Id"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(bad_name), 400);
    let list: Value = owner
        .get(&format!("{base}/attributes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "customer_id", "{list}");

    let member_path = format!("{base}/members/{}/attributes", dev.id);
    let undefined = owner
        .request(Method::PUT, &member_path)
        .json(&json!({"attributes": {"region": "eu"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(undefined), 400);
    let by_developer = dev
        .request(Method::PUT, &member_path)
        .json(&json!({"attributes": {"customer_id": "mine"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(by_developer), 403);
    let set = owner
        .request(Method::PUT, &member_path)
        .json(&json!({"attributes": {"customer_id": "c-42"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(set), 204);
    let read: Value = owner
        .get(&member_path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, json!({"attributes": {"customer_id": "c-42"}}));

    let snapshot = internal_snapshot(&app, org_id).await;
    let caller = |id: String| snapshot.callers.iter().find(|c| c.subject == id).cloned();
    let dev_caller = caller(dev.id.to_string()).expect("the developer in the snapshot");
    assert_eq!(dev_caller.email.as_deref(), Some(dev.email.as_str()));
    assert_eq!(
        dev_caller.attributes.get("customer_id").map(String::as_str),
        Some("c-42")
    );
    let owner_caller = caller(owner.id.to_string()).expect("the owner in the snapshot");
    assert_eq!(owner_caller.email.as_deref(), Some(owner.email.as_str()));
    assert!(owner_caller.attributes.is_empty());

    let removed = owner
        .request(Method::DELETE, &format!("{base}/attributes/customer_id"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(removed), 204);
    let snapshot = internal_snapshot(&app, org_id).await;
    assert!(snapshot.callers.iter().all(|c| c.attributes.is_empty()));
}
