//! Token endpoint throughput (run by hand; figures in docs/benchmarks.md, "Authorization server"):
//!
//! ```text
//! cargo bench -p gatehouse-oauth --bench token_endpoint
//! ```
//!
//! Mounts the authorization server on an actix server (2 workers) over a fresh database on the
//! local PostgreSQL, seeds a service client and refresh-token families through the repositories,
//! then drives `POST /oauth/token` from concurrent HTTP clients for a fixed time per grant:
//! `client_credentials` (secret check, one transaction, one signature) and `refresh_token`
//! (rotation: lock, update, insert, one signature), each worker chaining its own family.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use gatehouse_core::config::{Config, Sources};
use gatehouse_core::ids::{OrgId, RefreshFamilyId, ServiceClientId};
use gatehouse_core::secrets::{generate_key_b64, generate_signing_secret_b64, token_hash};
use gatehouse_db::repos::oauth_clients::{self, NewOAuthClient};
use gatehouse_db::repos::oauth_refresh::{self, NewFamily};
use gatehouse_db::repos::oauth_service_clients::{self, NewServiceClient};
use gatehouse_db::repos::{endpoints, orgs, users};
use gatehouse_db::{GlobalTx, OrgScope, TenantTx};
use gatehouse_events::{ChangeNotifier, RateLimiter};
use gatehouse_oauth::{Accounts, OAuthState, tokens};

const CONCURRENCY: usize = 16;
const RUN: Duration = Duration::from_secs(15);

fn main() {
    gatehouse_test_support::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let db = gatehouse_test_support::TestDb::new().await;
    let port = gatehouse_test_support::free_port();
    let cfg = Arc::new(
        Config::load(&Sources {
            files: vec![],
            overrides: vec![
                ("mode".into(), "local".into()),
                ("database.url".into(), db.service_url.clone()),
                ("database.max_connections".into(), "32".into()),
                (
                    "control_api.public_url".into(),
                    format!("http://127.0.0.1:{port}"),
                ),
                (
                    "secrets.encryption_keys".into(),
                    format!("b={}", generate_key_b64()),
                ),
                ("secrets.signing_secret".into(), generate_signing_secret_b64()),
            ],
        })
        .unwrap(),
    );
    let state = OAuthState::new(
        cfg.clone(),
        db.db.clone(),
        Arc::new(cfg.keyring().unwrap()),
        Arc::new(cfg.derived_keys().unwrap()),
        ChangeNotifier::local(),
        RateLimiter::local(),
        Accounts {
            verify_password: Arc::new(|_, _| Box::pin(async { false })),
            session_cookie: "gatehouse_session",
        },
    )
    .unwrap();

    // Seed: an org with an endpoint, a service client, a public client, one family per worker.
    let mut g = GlobalTx::begin(&db.db).await.unwrap();
    let user = users::create(&mut g, "bench@bench.test", None, "Bench", true)
        .await
        .unwrap();
    oauth_clients::upsert(
        &mut g,
        &NewOAuthClient {
            client_id: "ghd_bench".into(),
            registration_type: "dynamic",
            client_name: Some("bench".into()),
            client_uri: None,
            logo_uri: None,
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: "none".into(),
            application_type: "native".into(),
            client_secret_hash: None,
            metadata: serde_json::json!({}),
            document_fetched_at: None,
            document_expires_at: None,
            document_etag: None,
        },
    )
    .await
    .unwrap();
    g.commit().await.unwrap();
    let org = OrgId::new();
    let mut tx = TenantTx::begin(&db.db, &OrgScope::authorized(org)).await.unwrap();
    orgs::create_with_owner(&mut tx, "bench", "bench", user.id)
        .await
        .unwrap();
    let endpoint = endpoints::create(&mut tx, "mcp", "bench", "", &serde_json::json!({}))
        .await
        .unwrap();
    let sc_id = ServiceClientId::new();
    let client_id = tokens::service_client_id(org, sc_id);
    let secret = tokens::new_client_secret();
    oauth_service_clients::create(
        &mut tx,
        &NewServiceClient {
            id: sc_id,
            client_id: &client_id,
            name: "bench",
            secret_hash: &token_hash(&secret),
            endpoint_id: endpoint.id,
            scopes: &[],
            created_by: None,
        },
    )
    .await
    .unwrap();
    let resource = cfg.endpoint_url("bench", "mcp");
    let mut refresh_tokens = Vec::new();
    for _ in 0..CONCURRENCY {
        let family = RefreshFamilyId::new();
        oauth_refresh::create_family(
            &mut tx,
            &NewFamily {
                id: family,
                client_id: "ghd_bench",
                user_id: user.id,
                endpoint_id: endpoint.id,
                scopes: &[],
                resource: &resource,
            },
        )
        .await
        .unwrap();
        let rt = tokens::new_refresh_token(org);
        oauth_refresh::insert_token(&mut tx, family, &token_hash(&rt), 0, 3600)
            .await
            .unwrap();
        refresh_tokens.push(rt);
    }
    tx.commit().await.unwrap();
    state.signing.load(true).await.unwrap();

    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(gatehouse_oauth::configure)
    })
    .workers(2)
    .bind(("127.0.0.1", port))
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!("http://127.0.0.1:{port}/oauth/token");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();

    println!(
        "token endpoint, {CONCURRENCY} concurrent clients, {} s per grant, 2 server workers",
        RUN.as_secs()
    );
    // Warm-up.
    let _ = http
        .post(&url)
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;

    let cc = drive(CONCURRENCY, |_| {
        let (http, url, id, secret) = (http.clone(), url.clone(), client_id.clone(), secret.clone());
        move || {
            let (http, url, id, secret) = (http.clone(), url.clone(), id.clone(), secret.clone());
            async move {
                let r = http
                    .post(&url)
                    .basic_auth(&id, Some(&secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }
    })
    .await;
    report("client_credentials", &cc);

    let rf = drive(CONCURRENCY, |i| {
        let (http, url) = (http.clone(), url.clone());
        let current = Arc::new(tokio::sync::Mutex::new(refresh_tokens[i].clone()));
        move || {
            let (http, url, current) = (http.clone(), url.clone(), current.clone());
            async move {
                let mut rt = current.lock().await;
                let r = http
                    .post(&url)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", "ghd_bench"),
                        ("refresh_token", rt.as_str()),
                    ])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body: serde_json::Value = r.json().await.unwrap();
                *rt = body["refresh_token"].as_str().unwrap().to_owned();
            }
        }
    })
    .await;
    report("refresh_token", &rf);
    handle.stop(true).await;
}

/// Runs `workers` loops of `make(i)()` for [`RUN`]; returns every request's latency.
async fn drive<F, M, Fut>(workers: usize, make: M) -> (Vec<Duration>, Duration)
where
    M: Fn(usize) -> F,
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            let op = make(i);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while start.elapsed() < RUN {
                    let t = Instant::now();
                    op().await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

fn report(name: &str, (latencies, elapsed): &(Vec<Duration>, Duration)) {
    let mut sorted = latencies.clone();
    sorted.sort();
    let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    println!(
        "{name:>20}: {:>6} tokens in {:.1} s = {:>6.0} tokens/s; latency p50 {:.1} ms, p99 {:.1} ms",
        sorted.len(),
        elapsed.as_secs_f64(),
        sorted.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
}
