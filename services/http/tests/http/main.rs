//! Graceful shutdown: a slow request in flight when shutdown starts completes; one slower than the
//! grace period does not keep the process alive past it.

use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use gatehouse_http::{Draining, bind, close_connections_when_draining, run_until_stopped};
use tokio_util::sync::CancellationToken;

/// Signals that a slow request has reached its handler (so shutdown starts while it is in flight).
type Started = std::sync::Arc<tokio::sync::Notify>;

async fn slow(path: web::Path<u64>, started: web::Data<Started>) -> HttpResponse {
    started.notify_one();
    tokio::time::sleep(Duration::from_millis(path.into_inner())).await;
    HttpResponse::Ok().body("done")
}

async fn serve(
    grace: Duration,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    Started,
) {
    let started: Started = Default::default();
    let started_data = web::Data::new(started.clone());
    let listener = bind("127.0.0.1:0".parse().unwrap(), "test.listen").unwrap();
    let addr = listener.local_addr().unwrap();
    let draining = Draining::new();
    let data = web::Data::new(draining.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(started_data.clone())
            .route("/slow/{ms}", web::get().to(slow))
            .wrap(actix_web::middleware::from_fn(close_connections_when_draining))
    })
    .disable_signals()
    .workers(1)
    .shutdown_timeout(grace.as_secs())
    .listen(listener)
    .unwrap()
    .run();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run_until_stopped(server, shutdown.clone(), grace, draining));
    (format!("http://{addr}"), shutdown, handle, started)
}

#[actix_web::test]
async fn in_flight_request_completes_after_shutdown_starts() {
    let (base, shutdown, server, started) = serve(Duration::from_secs(5)).await;
    let request = tokio::spawn(async move { reqwest::get(format!("{base}/slow/1500")).await });
    started.notified().await;
    let stopping = Instant::now();
    shutdown.cancel();
    let response = request.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    server.await.unwrap().unwrap();
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "stopped after {took:?}, within the 5 s grace period"
    );
    assert!(
        took >= Duration::from_millis(1000),
        "it waited for the request ({took:?})"
    );
}

#[actix_web::test]
async fn a_request_slower_than_the_grace_period_does_not_hold_the_process() {
    let (base, shutdown, server, started) = serve(Duration::from_secs(1)).await;
    let request = tokio::spawn(async move { reqwest::get(format!("{base}/slow/30000")).await });
    started.notified().await;
    let stopping = Instant::now();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "stopped after {took:?} (grace 1 s)"
    );
    assert!(
        request.await.unwrap().is_err(),
        "the over-long request was cut off"
    );
}
