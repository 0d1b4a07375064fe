//! Change notifications between replicas: session ends reach replicas that were not listening.

use std::time::Duration;

use gatehouse_events::ChangeNotifier;
use gatehouse_test_support::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

async fn notifier(url: &str, shutdown: &CancellationToken) -> ChangeNotifier {
    ChangeNotifier::redis(redis::Client::open(url).unwrap(), shutdown.clone())
        .await
        .unwrap()
}

async fn next_end(
    ends: &mut tokio::sync::broadcast::Receiver<[u8; 32]>,
    within: Duration,
) -> Option<[u8; 32]> {
    tokio::time::timeout(within, ends.recv()).await.ok()?.ok()
}

/// A replica that was not subscribed when a session ended (cut off from Redis, restarting, or
/// started since) learns of the end when it subscribes; an end whose id has expired is not
/// handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ends_reach_replicas_that_were_not_listening() {
    let server = RedisServer::start();
    let shutdown = CancellationToken::new();
    let announcer = notifier(&server.url(), &shutdown).await;
    let mut listening = announcer.subscribe_session_ends();
    // Wait until the announcer's own subscription is up (its first end comes back to it).
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let warmup = [1u8; 32];
    let mut attempts = 0;
    loop {
        announcer.publish_session_end(warmup, now + 3600).await;
        if next_end(&mut listening, Duration::from_millis(500)).await == Some(warmup) {
            break;
        }
        attempts += 1;
        assert!(attempts < 20, "the announcer never heard its own announcement");
    }

    let current = [2u8; 32];
    let expired = [3u8; 32];
    announcer.publish_session_end(current, now + 3600).await;
    announcer.publish_session_end(expired, now - 1).await;

    // Another replica, which was not listening then.
    let late = notifier(&server.url(), &shutdown).await;
    let mut ends = late.subscribe_session_ends();
    let mut heard = std::collections::HashSet::new();
    while let Some(key) = next_end(&mut ends, Duration::from_secs(3)).await {
        heard.insert(key);
        if heard.contains(&current) && heard.contains(&warmup) {
            break;
        }
    }
    assert!(heard.contains(&current), "the late replica learned of the end");
    assert!(heard.contains(&warmup));
    assert!(!heard.contains(&expired), "an expired end is not handed out");
    shutdown.cancel();
}

/// A session ended while Redis is down is stored and announced once Redis is back, so the other
/// replicas still learn of it; one whose id expired meanwhile is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ends_announced_while_redis_is_down_are_delivered_when_it_returns() {
    let mut server = RedisServer::start();
    let shutdown = CancellationToken::new();
    let announcer = notifier(&server.url(), &shutdown).await;
    // Connected first, so the outage is one the announcer lives through.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), async {
            while announcer.ping().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok(),
        "the announcer reaches redis"
    );

    server.kill();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let during_outage = [7u8; 32];
    let expires_during_outage = [8u8; 32];
    announcer.publish_session_end(during_outage, now + 3600).await;
    announcer
        .publish_session_end(expires_during_outage, now + 1)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart();

    let other = notifier(&server.url(), &shutdown).await;
    let mut ends = other.subscribe_session_ends();
    let mut heard = std::collections::HashSet::new();
    while let Some(key) = next_end(&mut ends, Duration::from_secs(10)).await {
        heard.insert(key);
        if heard.contains(&during_outage) {
            break;
        }
    }
    assert!(
        heard.contains(&during_outage),
        "the other replica learned of the end announced during the outage"
    );
    // Give a late delivery of the expired one the chance to show up.
    while let Some(key) = next_end(&mut ends, Duration::from_secs(1)).await {
        heard.insert(key);
    }
    assert!(!heard.contains(&expires_during_outage));
    shutdown.cancel();
}
