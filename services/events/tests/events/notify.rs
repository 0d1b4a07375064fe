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
