//! Concurrency: double redemption of codes and concurrent refreshes.

use futures::future::join_all;
use serde_json::Value;

use super::fixture::*;
use crate::helpers::TestApp;

const WORKERS: usize = 4;

/// A code for an already consented client, straight from `/authorize`.
async fn quick_code(browser: &mut Browser, client: &str, resource: &str) -> (Pkce, String) {
    let pkce = Pkce::new();
    let resp = browser
        .get(&authorize_path(
            client,
            REDIRECT,
            &pkce.challenge,
            resource,
            None,
            "s",
        ))
        .await;
    assert_eq!(resp.status(), 302);
    let code = query_of(resp.headers()["location"].to_str().unwrap())["code"].clone();
    (pkce, code)
}

/// C3: 1,000 pairs of simultaneous redemptions of one code: exactly one success per pair.
#[tokio::test]
async fn rfc9700_c3_concurrent_redemption_race_1000_pairs() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@c3.test", "c3").await;
    let mut browser = Browser::new(&app);
    let (client, _, _) = code_for(&app, &fx, &mut browser, "o@c3.test", None).await;
    let pairs_per_worker = 1000 / WORKERS;
    let workers = (0..WORKERS).map(|_| {
        let mut browser = browser.clone();
        let (app, client, resource) = (&app, client.clone(), fx.resource.clone());
        async move {
            let mut outcomes = Vec::with_capacity(pairs_per_worker);
            for _ in 0..pairs_per_worker {
                let (pkce, code) = quick_code(&mut browser, &client, &resource).await;
                let (a, b) = tokio::join!(
                    redeem(app, &client, &pkce, &code),
                    redeem(app, &client, &pkce, &code)
                );
                outcomes.push((a.0, b.0));
            }
            outcomes
        }
    });
    let outcomes: Vec<(u16, u16)> = join_all(workers).await.into_iter().flatten().collect();
    assert_eq!(outcomes.len(), 1000);
    let doubles = outcomes.iter().filter(|(a, b)| *a == 200 && *b == 200).count();
    let singles = outcomes
        .iter()
        .filter(|(a, b)| (*a == 200) != (*b == 200))
        .count();
    let unexpected: Vec<_> = outcomes
        .iter()
        .filter(|(a, b)| ![200, 400].contains(a) || ![200, 400].contains(b))
        .collect();
    assert_eq!(doubles, 0, "a code was redeemed twice");
    assert!(unexpected.is_empty(), "unexpected statuses: {unexpected:?}");
    assert_eq!(singles, 1000, "every pair must have exactly one success");
}

/// R4: concurrent refreshes with the same token: at most one succeeds, and the detected reuse
/// revokes the family.
#[tokio::test]
async fn rfc9700_r4_refresh_rotation_race() {
    let app = TestApp::spawn().await;
    let fx = setup(&app, "o@r4.test", "r4").await;
    let mut browser = Browser::new(&app);
    let (client, _, _) = code_for(&app, &fx, &mut browser, "o@r4.test", None).await;
    let mut revoked_after_reuse = 0;
    const ITERATIONS: usize = 200;
    for _ in 0..ITERATIONS {
        let (pkce, code) = quick_code(&mut browser, &client, &fx.resource).await;
        let (_, tokens) = redeem(&app, &client, &pkce, &code).await;
        let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client.as_str()),
            ("refresh_token", rt.as_str()),
        ];
        let (a, b) = tokio::join!(token_request(&app, &form), token_request(&app, &form));
        let successes: Vec<&Value> = [&a, &b]
            .into_iter()
            .filter(|r| r.0 == 200)
            .map(|r| &r.1)
            .collect();
        assert!(successes.len() <= 1, "two refreshes of one token succeeded");
        // Whatever succeeded is dead now: its family was revoked by the detected reuse.
        if let Some(won) = successes.first() {
            let newest = won["refresh_token"].as_str().unwrap();
            let (status, _) = token_request(
                &app,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", &client),
                    ("refresh_token", newest),
                ],
            )
            .await;
            if status == 400 {
                revoked_after_reuse += 1;
            }
        }
    }
    assert_eq!(
        revoked_after_reuse, ITERATIONS,
        "every detected reuse must revoke the family"
    );
}
