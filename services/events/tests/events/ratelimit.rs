//! Rate limits shared by replicas through Redis, and the local fallback while Redis is down.

use std::time::{Duration, Instant};

use gatehouse_core::snapshot::Limit;
use gatehouse_events::{Bus, RateLimiter};
use gatehouse_test_support::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

use crate::helpers::{config, eventually, temp_dir, unique};

/// What one `hammer` run saw.
struct Hammered {
    started: Instant,
    /// Admitted per limiter.
    admitted: Vec<usize>,
    /// When each limiter's checks completed.
    checks: Vec<Vec<Instant>>,
    /// Seconds between the first and the last check.
    seconds: f64,
}

impl Hammered {
    /// Tokens `limit` would have handed out to limiter `i` but no check came to take: on a loaded
    /// machine the checking tasks stall now and then, and the tokens that accrue beyond what the
    /// burst holds during a stall are gone. An accurate limiter admits rate × time + burst minus
    /// exactly these.
    fn unclaimed(&self, i: usize, limit: Limit) -> f64 {
        unclaimed_tokens(self.started, &self.checks[i], limit)
    }

    /// The same over every limiter's checks together (one shared limit).
    fn unclaimed_total(&self, limit: Limit) -> f64 {
        let mut all: Vec<Instant> = self.checks.concat();
        all.sort();
        unclaimed_tokens(self.started, &all, limit)
    }
}

/// Hammers `key` from every limiter concurrently (one check per limiter every 4 ms) for
/// `duration`.
async fn hammer(limiters: &[RateLimiter], key: &str, limit: Limit, duration: Duration) -> Hammered {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for limiter in limiters {
        let (limiter, key) = (limiter.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0;
            let mut checks = Vec::new();
            while started.elapsed() < duration {
                if limiter.check(&key, limit).await.allowed {
                    admitted += 1;
                }
                checks.push(Instant::now());
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            (admitted, checks)
        }));
    }
    let (mut admitted, mut checks) = (Vec::new(), Vec::new());
    for t in tasks {
        let (n, at) = t.await.unwrap();
        admitted.push(n);
        checks.push(at);
    }
    let seconds = checks
        .iter()
        .flatten()
        .max()
        .map_or(0.0, |last| last.duration_since(started).as_secs_f64());
    Hammered {
        started,
        admitted,
        checks,
        seconds,
    }
}

/// Tokens lost to gaps between consecutive checks: a gap of `g` emission intervals accrues `g`
/// tokens, of which the bucket keeps at most `burst + 1`.
fn unclaimed_tokens(started: Instant, checks: &[Instant], limit: Limit) -> f64 {
    let interval = 60.0 / limit.per_minute as f64;
    let mut previous = started;
    let mut lost = 0.0;
    for at in checks {
        let gap = at.duration_since(previous).as_secs_f64() / interval;
        lost += (gap - (limit.burst as f64 + 1.0)).max(0.0);
        previous = *at;
    }
    lost
}

/// GCRA admits the first request plus `burst`, then one per emission interval.
fn expected(limit: Limit, seconds: f64) -> f64 {
    limit.per_minute as f64 / 60.0 * seconds + limit.burst as f64
}

/// Never more than rate × time + burst (+1 for the edges); never fewer, except for the tokens no
/// check came to claim while the machine stalled the checking tasks.
fn assert_within_one(admitted: usize, unclaimed: f64, limit: Limit, seconds: f64, what: &str) {
    let expected = expected(limit, seconds);
    assert!(
        admitted as f64 <= expected + 1.0 && admitted as f64 >= expected - 1.0 - unclaimed,
        "{what}: admitted {admitted}, expected rate × time + burst = {expected:.2} (+1, -1 - {unclaimed:.2} \
         unclaimed during stalls) over {seconds:.2} s"
    );
}

async fn replica(url: &str, ns: &str, shutdown: &CancellationToken) -> RateLimiter {
    let cfg = config(Some(url), &temp_dir("rl-spool"), ns, &[]);
    Bus::from_config(&cfg, shutdown.clone()).await.unwrap().limiter
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_limits_in_one_check_through_redis_are_all_or_nothing() {
    let url = gatehouse_test_support::redis_url();
    let ns = unique("rl-all");
    let shutdown = CancellationToken::new();
    let (a, b) = (
        replica(&url, &ns, &shutdown).await,
        replica(&url, &ns, &shutdown).await,
    );
    // Slow enough that no token comes back during the test.
    let org = Limit {
        per_minute: 1,
        burst: 5,
    };
    let subject = Limit {
        per_minute: 1,
        burst: 1,
    };
    let checks = |who: &'static str| [("org", org), (who, subject)];
    // Alice's two, one on each replica: the subject limit is shared too.
    assert!(a.check_all(&checks("sub:alice")).await.allowed);
    assert!(b.check_all(&checks("sub:alice")).await.allowed);
    assert!(a.is_shared() && b.is_shared(), "both went through Redis");
    // Alice's third is refused by her own limit, and uses none of the org's budget.
    let refused = b.check_all(&checks("sub:alice")).await;
    assert!(!refused.allowed);
    assert!(refused.retry_after > Duration::from_secs(50), "{refused:?}");
    // So Bob gets the org's remaining four: two of his own, then the org's last two go to Carol.
    assert!(a.check_all(&checks("sub:bob")).await.allowed);
    assert!(b.check_all(&checks("sub:bob")).await.allowed);
    assert!(!a.check_all(&checks("sub:bob")).await.allowed);
    assert!(a.check_all(&checks("sub:carol")).await.allowed);
    assert!(b.check_all(&checks("sub:carol")).await.allowed);
    // The org is spent now: Dave, whose own limit is untouched, is refused by it.
    let refused = a.check_all(&checks("sub:dave")).await;
    assert!(!refused.allowed);
    assert!(
        b.check("sub:dave", subject).await.allowed,
        "Dave's refusal did not count against his own limit"
    );
    shutdown.cancel();
}

/// The clients connected to the Redis at `url`, as (id, last command), without the one asking.
async fn redis_clients(url: &str) -> Vec<(String, String)> {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    list.lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            Some((field("id")?, field("cmd")?))
        })
        .filter(|(id, _)| *id != me.to_string())
        .collect()
}

/// An HTTP worker's handle, made on the worker's own single-threaded runtime as actix-web makes
/// its workers, checks through a Redis connection of its own, against the same shared limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_handle_checks_through_its_own_connection_against_the_same_limits() {
    let server = RedisServer::start();
    let url = server.url();
    let ns = unique("rl-worker");
    let shutdown = CancellationToken::new();
    let process = replica(&url, &ns, &shutdown).await;
    let limit = Limit {
        per_minute: 1,
        burst: 3,
    };
    assert!(process.check("org", limit).await.allowed);
    let before: Vec<String> = redis_clients(&url).await.into_iter().map(|(id, _)| id).collect();

    let worker = process.clone();
    let worker_url = url.clone();
    let decisions = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let own = worker.for_worker();
            // Its own connection comes up on this runtime: a new client, not one of the process's.
            eventually(Duration::from_secs(10), "the worker's own connection", || {
                let (own, url, before) = (own.clone(), worker_url.clone(), before.clone());
                async move {
                    own.check(
                        "probe",
                        Limit {
                            per_minute: 6000,
                            burst: 100,
                        },
                    )
                    .await;
                    redis_clients(&url)
                        .await
                        .iter()
                        .any(|(id, cmd)| !before.contains(id) && cmd.starts_with("eval"))
                }
            })
            .await;
            let mut decisions = Vec::new();
            for _ in 0..4 {
                decisions.push(own.check("org", limit).await.allowed);
            }
            assert!(own.is_shared(), "the worker's checks went through Redis");
            decisions
        })
    })
    .join()
    .unwrap();
    // The org's burst of four was shared: one taken by the process, three by the worker.
    assert_eq!(decisions, [true, true, true, false]);
    assert!(
        !process.check("org", limit).await.allowed,
        "the process sees the worker's use"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_each_limit_and_keys_do_not_affect_each_other() {
    let url = gatehouse_test_support::redis_url();
    let ns = unique("rl-shared");
    let shutdown = CancellationToken::new();
    let (a, b) = (
        replica(&url, &ns, &shutdown).await,
        replica(&url, &ns, &shutdown).await,
    );
    assert!(
        a.check(
            "warm-up",
            Limit {
                per_minute: 1000,
                burst: 0
            }
        )
        .await
        .allowed
    );
    assert!(a.is_shared() && b.is_shared());

    let tenant_a = Limit {
        per_minute: 1200,
        burst: 5,
    };
    let tenant_b = Limit {
        per_minute: 600,
        burst: 0,
    };
    let pair = [a.clone(), b.clone()];
    let (a_run, b_run) = tokio::join!(
        hammer(&pair, "org-a:endpoint", tenant_a, Duration::from_secs(3)),
        hammer(&pair, "org-b:endpoint", tenant_b, Duration::from_secs(3)),
    );
    assert!(
        a_run.admitted.iter().all(|n| *n > 0) && b_run.admitted.iter().all(|n| *n > 0),
        "both replicas admit"
    );
    assert_within_one(
        a_run.admitted.iter().sum(),
        a_run.unclaimed_total(tenant_a),
        tenant_a,
        a_run.seconds,
        "tenant a across two replicas",
    );
    assert_within_one(
        b_run.admitted.iter().sum(),
        b_run.unclaimed_total(tenant_b),
        tenant_b,
        b_run.seconds,
        "tenant b across two replicas",
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fallback_while_redis_is_down_then_shared_again() {
    let mut server = RedisServer::start();
    let url = server.url();
    let ns = unique("rl-fallback");
    let shutdown = CancellationToken::new();
    let (a, b) = (
        replica(&url, &ns, &shutdown).await,
        replica(&url, &ns, &shutdown).await,
    );
    let warm = Limit {
        per_minute: 6000,
        burst: 0,
    };
    // Both limit something, so both register as replicas and learn there are two.
    eventually(Duration::from_secs(10), "replicas learn there are two", || {
        let (a, b) = (a.clone(), b.clone());
        async move {
            a.check("warm-up", warm).await;
            b.check("warm-up", warm).await;
            a.replicas() == 2 && b.replicas() == 2
        }
    })
    .await;

    let limit = Limit {
        per_minute: 1200,
        burst: 10,
    };
    server.kill();
    let pair = [a.clone(), b.clone()];
    let run = hammer(&pair, "org:endpoint", limit, Duration::from_secs(3)).await;
    assert!(!a.is_shared() && !b.is_shared(), "both fell back to local limits");
    // Documented bound (docs/operations.md): each of N replicas admits at most
    // ceil(rate / N) × t + floor(burst / N) + 1.
    let share = gatehouse_events::ratelimit::local_share(limit, 2);
    for (i, n) in run.admitted.iter().enumerate() {
        let bound = expected(share, run.seconds) + 1.0;
        assert!(
            (*n as f64) <= bound + 1.0,
            "replica {i} admitted {n} while Redis was down; bound {bound:.1}"
        );
        let unclaimed = run.unclaimed(i, share);
        assert!(
            (*n as f64) >= expected(share, run.seconds) - 2.0 - unclaimed,
            "replica {i} admitted only {n}: the fallback must limit, not refuse"
        );
    }

    server.restart();
    eventually(Duration::from_secs(10), "back to the shared limit", || {
        let a = a.clone();
        async move {
            a.check("probe", warm).await;
            a.is_shared()
        }
    })
    .await;
    eventually(Duration::from_secs(10), "second replica back", || {
        let b = b.clone();
        async move {
            b.check("probe", warm).await;
            b.is_shared()
        }
    })
    .await;
    let run = hammer(&pair, "org:endpoint-after", limit, Duration::from_secs(3)).await;
    assert_within_one(
        run.admitted.iter().sum(),
        run.unclaimed_total(limit),
        limit,
        run.seconds,
        "shared limit after Redis returned",
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_one_short_timeout_then_limits_are_local() {
    let server = RedisServer::start();
    let url = server.url();
    let ns = unique("rl-hung");
    let shutdown = CancellationToken::new();
    let limiter = replica(&url, &ns, &shutdown).await;
    let limit = Limit {
        per_minute: 600,
        burst: 5,
    };
    assert!(limiter.check("org:hung", limit).await.allowed);
    assert!(limiter.is_shared());

    server.pause();
    // The first check waits for the response timeout (500 ms), then decides locally.
    let started = Instant::now();
    assert!(limiter.check("org:hung", limit).await.allowed);
    let first = started.elapsed();
    assert!(
        first < Duration::from_secs(1),
        "switching to local limits took {first:?}"
    );
    assert!(!limiter.is_shared());
    // The next ones do not wait for Redis at all.
    let started = Instant::now();
    for _ in 0..20 {
        limiter.check("org:hung", limit).await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "local checks waited on Redis: {:?}",
        started.elapsed()
    );

    server.resume();
    eventually(
        Duration::from_secs(15),
        "shared again after Redis resumed",
        || {
            let limiter = limiter.clone();
            async move {
                limiter.check("org:probe", limit).await;
                limiter.is_shared()
            }
        },
    )
    .await;
    shutdown.cancel();
}
