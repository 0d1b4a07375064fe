//! The hosted SQL point-lookup benchmark, run by hand (ignored by default).

use std::time::Duration;

use serde_json::json;
use sqlx::{Connection, PgConnection};

use super::support::{TestBackend, call, served, service_token};
use crate::dataplane::{Admin, platform_reaching_loopback, wait_for};

/// Benchmark, run by hand (docs/benchmarks.md, "Hosted SQL"): a point-lookup tool through the
/// real dataplane (2026-07-28 `tools/call` over HTTP, a service token) against the same query run
/// directly on a connection of the tool role, and the same tool over a table with row-level
/// security forced (a policy on `gatehouse.claim('customer_id')`) against one without, all in one
/// run, interleaved in rounds. Prints the mean and median latency of each and the ratios.
/// `HOSTED_SQL_BENCH_CALLS` sets the calls per kind and round (500 by default).
#[tokio::test]
#[ignore = "a benchmark, run by hand"]
async fn hosted_sql_point_lookup_benchmark() {
    let per_round: usize = std::env::var("HOSTED_SQL_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let platform = platform_reaching_loopback().await;
    let (admin, _) = Admin::create(&platform, "owner@bench.test", "bench").await;
    let base = "/api/v1/orgs/bench";
    let rows = 100_000;
    let backend = TestBackend::create(
        &platform,
        &admin,
        base,
        "bench",
        &format!(
            "CREATE TABLE guarded (id int PRIMARY KEY, customer_id text NOT NULL, title text NOT NULL);
             CREATE TABLE open_rows (id int PRIMARY KEY, customer_id text NOT NULL, title text NOT NULL);
             INSERT INTO guarded SELECT g, 'c' || (g % 8), 'row ' || g FROM generate_series(1, {rows}) g;
             INSERT INTO open_rows SELECT * FROM guarded;
             ALTER TABLE guarded ENABLE ROW LEVEL SECURITY; ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
             CREATE POLICY by_customer ON guarded USING (customer_id = (SELECT gatehouse.claim('customer_id')));
             GRANT SELECT ON guarded, open_rows TO {{role}};
             ANALYZE guarded; ANALYZE open_rows;"
        ),
    )
    .await;
    admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/backends/{}/reference-tables", backend.id),
            Some(json!({"schema": "public", "table": "open_rows"})),
        )
        .await;
    let endpoint_id = backend
        .publish(
            &admin,
            base,
            &[
                (
                    "get_guarded",
                    "SELECT id, title FROM guarded WHERE id = :id",
                    "read",
                    false,
                ),
                (
                    "get_open",
                    "SELECT id, title FROM open_rows WHERE id = :id",
                    "read",
                    false,
                ),
            ],
            "bench",
            "bench",
        )
        .await;
    admin
        .send(
            reqwest::Method::POST,
            &format!("{base}/attributes"),
            Some(json!({"name": "customer_id"})),
        )
        .await;
    let caller = service_token(&admin, base, &endpoint_id, "bench", "bench").await;
    admin
        .send(
            reqwest::Method::PUT,
            &format!(
                "{base}/service-tokens/{}/attributes",
                caller.1.trim_start_matches("service_token:")
            ),
            Some(json!({"attributes": {"customer_id": "c3"}})),
        )
        .await;
    let url = format!("{}/bench/bench/mcp", platform.dataplane);
    served(&platform, &url, &caller.0, "bench__get_guarded").await;
    wait_for(Duration::from_secs(5), || async {
        let answer = call(
            &platform,
            &url,
            &caller.0,
            "bench__get_guarded",
            json!({"id": 3}),
            json!({}),
        )
        .await;
        answer["result"]["structuredContent"]["row_count"] == 1
    })
    .await;
    let mut direct = PgConnection::connect(&backend.tool_role_url()).await.unwrap();

    // Ids of customer c3 (the caller's), so every lookup finds its row in both tables.
    let id_of = |i: usize| (i * 8 % rows + 3) as i64;
    let mut samples: [Vec<f64>; 3] = Default::default();
    for round in 0..4 {
        for (kind, tool) in [(1, "bench__get_guarded"), (2, "bench__get_open")] {
            for i in 0..per_round {
                let id = id_of(round * per_round + i);
                let started = std::time::Instant::now();
                let answer = call(&platform, &url, &caller.0, tool, json!({"id": id}), json!({})).await;
                samples[kind].push(started.elapsed().as_secs_f64() * 1e6);
                assert_eq!(answer["result"]["structuredContent"]["row_count"], 1, "{answer}");
            }
        }
        for i in 0..per_round {
            let id = id_of(round * per_round + i) as i32;
            let started = std::time::Instant::now();
            let row: (i32, String) = sqlx::query_as("SELECT id, title FROM open_rows WHERE id = $1")
                .bind(id)
                .fetch_one(&mut direct)
                .await
                .unwrap();
            samples[0].push(started.elapsed().as_secs_f64() * 1e6);
            assert_eq!(row.0, id);
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (
            v.iter().sum::<f64>() / v.len() as f64,
            v[v.len() / 2],
            v[v.len() * 99 / 100],
        )
    };
    let [mut d, mut on, mut off] = samples;
    let (d, on, off) = (stats(&mut d), stats(&mut on), stats(&mut off));
    println!("calls per kind: {}", per_round * 4);
    println!(
        "direct query (tool role, sqlx)          mean {:>8.1} µs  p50 {:>8.1}  p99 {:>8.1}",
        d.0, d.1, d.2
    );
    println!(
        "dataplane, RLS off (reference table)    mean {:>8.1} µs  p50 {:>8.1}  p99 {:>8.1}",
        off.0, off.1, off.2
    );
    println!(
        "dataplane, RLS on (forced, claim policy) mean {:>8.1} µs  p50 {:>8.1}  p99 {:>8.1}",
        on.0, on.1, on.2
    );
    println!("dataplane / direct (RLS off), p50: {:.2}x", off.1 / d.1);
    println!(
        "RLS on / RLS off through the dataplane, p50: {:.3}x (mean {:.3}x)",
        on.1 / off.1,
        on.0 / off.0
    );
    drop(direct);
    backend.drop_all().await;
}
