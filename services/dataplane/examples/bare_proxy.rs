//! A reference for the dataplane benchmark: the dataplane's own HTTP stack (an actix-web server,
//! one worker, and a pooled reqwest client, both with TCP_NODELAY) passing each POST body to the
//! upstream and its answer back, with nothing else: no parsing, no policy, no events, no logs.
//! What it costs per request is the floor under the dataplane on this stack; nginx in the same run
//! is the floor of a proxy written in C.
//!
//! `cargo run --release -p gatehouse-dataplane --example bare_proxy -- LISTEN UPSTREAM_URL`

use actix_web::{App, HttpResponse, HttpServer, web};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn pass(
    body: web::Bytes,
    client: web::Data<reqwest::Client>,
    upstream: web::Data<reqwest::Url>,
) -> HttpResponse {
    let answer = client
        .post(upstream.get_ref().clone())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(_) => return HttpResponse::BadGateway().finish(),
    };
    let status = answer.status().as_u16();
    match answer.bytes().await {
        Ok(bytes) => HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
            .content_type("application/json")
            .body(bytes),
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    gatehouse_core::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18096".into());
    let upstream: reqwest::Url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18090/mcp".into())
        .parse()?;
    let upstream = web::Data::new(upstream);
    HttpServer::new(move || {
        // One client per worker, as the dataplane has one upstream pool per worker.
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .expect("reqwest client");
        App::new()
            .app_data(web::Data::new(client))
            .app_data(upstream.clone())
            .default_service(web::post().to(pass))
    })
    .workers(1)
    .tcp_nodelay(true)
    .bind(listen)?
    .run()
    .await?;
    Ok(())
}
