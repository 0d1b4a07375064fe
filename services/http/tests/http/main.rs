//! Draining on shutdown: a slow request in flight when shutdown starts completes and the server
//! stops right after it; readiness turns 503 and new requests are refused with `Retry-After`
//! meanwhile; close hooks run before the server stops; one request slower than the grace period
//! does not keep the process alive past it, nor does an idle keep-alive connection.

use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use gatehouse_http::{Draining, Readiness, bind, drain_requests, run_until_stopped};
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
    let (base, shutdown, handle, started, _) = serve_draining(grace, Draining::new()).await;
    (base, shutdown, handle, started)
}

async fn serve_draining(
    grace: Duration,
    draining: Draining,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    Started,
    Draining,
) {
    let started: Started = Default::default();
    let started_data = web::Data::new(started.clone());
    let listener = bind("127.0.0.1:0".parse().unwrap(), "test.listen").unwrap();
    let addr = listener.local_addr().unwrap();
    let data = web::Data::new(draining.clone());
    let readiness = web::Data::new(Readiness::new());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(readiness.clone())
            .app_data(started_data.clone())
            .configure(gatehouse_http::ops::configure_public)
            .route("/slow/{ms}", web::get().to(slow))
            .wrap(actix_web::middleware::from_fn(drain_requests))
    })
    .disable_signals()
    .workers(1)
    .shutdown_timeout(grace.as_secs())
    .listen(listener)
    .unwrap()
    .run();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run_until_stopped(
        server,
        shutdown.clone(),
        grace,
        draining.clone(),
    ));
    (format!("http://{addr}"), shutdown, handle, started, draining)
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

#[actix_web::test]
async fn while_draining_readiness_fails_new_requests_are_refused_and_the_server_stops_after_the_last_one() {
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let draining = Draining::new();
    let (base, shutdown, server, started, draining) = serve_draining(Duration::from_secs(20), draining).await;
    {
        let closed = closed.clone();
        let draining = draining.clone();
        draining.clone().on_close(move || async move {
            // Runs after the in-flight request and before the server stops.
            assert_eq!(draining.in_flight(), 0);
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/readyz")).send().await.unwrap().status(),
        200
    );
    let request = {
        let url = format!("{base}/slow/1500");
        tokio::spawn(async move { reqwest::get(url).await })
    };
    started.notified().await;
    let stopping = Instant::now();
    shutdown.cancel();
    draining.token().cancelled().await;

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "readiness fails at once");
    let refused = http.get(format!("{base}/slow/10")).send().await.unwrap();
    assert_eq!(refused.status(), 503, "a new request is refused");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["connection"], "close");
    assert!(
        !closed.load(std::sync::atomic::Ordering::SeqCst),
        "close hooks wait"
    );

    let response = request.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    server.await.unwrap().unwrap();
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "stopped {took:?} after shutdown began: right after the request, not after the 20 s grace"
    );
    assert!(
        closed.load(std::sync::atomic::Ordering::SeqCst),
        "the close hook ran"
    );
}

#[actix_web::test]
async fn an_idle_keep_alive_connection_does_not_hold_the_server() {
    let (base, shutdown, server, _started, _) =
        serve_draining(Duration::from_secs(20), Draining::new()).await;
    // A pooled client keeps its connection open after the answer.
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/slow/1")).send().await.unwrap().status(),
        200
    );
    let stopping = Instant::now();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(500), "stopped after {took:?}");
}

mod request_log {
    //! The request log's client address is the trusted one: forwarding headers count only from a
    //! declared proxy, as for the audit trail.

    use std::sync::{Arc, Mutex};

    use actix_web::{App, HttpResponse, test, web};
    use gatehouse_core::net::TrustedProxies;
    use gatehouse_http::observe;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// One span's fields: name and value.
    type Fields = Vec<(String, String)>;

    /// Every field of every "HTTP request" span.
    #[derive(Clone, Default)]
    struct RootSpans(Arc<Mutex<Vec<Fields>>>);

    impl<S: tracing::Subscriber> Layer<S> for RootSpans {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            struct Collect(Fields);
            impl Visit for Collect {
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    self.0.push((field.name().to_owned(), format!("{value:?}")));
                }
            }
            if attrs.metadata().name() == "HTTP request" {
                let mut fields = Collect(vec![]);
                attrs.record(&mut fields);
                self.0.lock().unwrap().push(fields.0);
            }
        }
    }

    impl RootSpans {
        fn field(&self, name: &str) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|fields| {
                    fields
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect()
        }
    }

    async fn request_from_peer(proxies: Option<&[&str]>, spans: &RootSpans) {
        let proxies = proxies.map(|p| {
            web::Data::new(
                TrustedProxies::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
            )
        });
        let app = test::init_service({
            let app = App::new()
                .route("/ok", web::get().to(HttpResponse::Ok))
                .wrap(observe::tracing_logger());
            match proxies {
                Some(p) => app.app_data(p),
                None => app.app_data(web::Data::new(())),
            }
        })
        .await;
        let req = test::TestRequest::get()
            .uri("/ok")
            .peer_addr("10.1.2.3:4000".parse().unwrap())
            .insert_header(("host", "mcp.example.test"))
            .insert_header(("x-forwarded-for", "203.0.113.9, 198.51.100.7"))
            .insert_header(("x-forwarded-host", "evil.example"))
            .insert_header(("x-forwarded-proto", "https"))
            .insert_header(("forwarded", "for=192.0.2.66;host=evil.example;proto=https"))
            .to_request();
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
        let response = test::call_service(&app, req).await;
        assert!(response.status().is_success());
    }

    #[actix_web::test]
    async fn forwarding_headers_from_a_client_are_not_logged_as_its_address() {
        let spans = RootSpans::default();
        request_from_peer(None, &spans).await;
        assert_eq!(spans.field("http.client_ip"), ["10.1.2.3"]);
        assert_eq!(spans.field("http.host"), ["mcp.example.test"]);
        assert_eq!(spans.field("http.scheme"), ["http"]);
        assert_eq!(spans.field("http.route"), ["/ok"]);
        assert_eq!(spans.field("otel.name"), ["GET /ok"]);
        assert!(!spans.field("request_id")[0].is_empty());
    }

    #[actix_web::test]
    async fn a_trusted_proxy_names_the_client() {
        let spans = RootSpans::default();
        request_from_peer(Some(&["10.0.0.0/8"]), &spans).await;
        // The proxy appended 198.51.100.7; 203.0.113.9 was written by the client itself.
        assert_eq!(spans.field("http.client_ip"), ["198.51.100.7"]);
        assert_eq!(spans.field("http.host"), ["mcp.example.test"]);
    }
}

/// Request metrics are labelled with the route pattern the request matched (once per request,
/// shared with the request log's span).
mod request_metrics {
    use actix_web::{App, HttpResponse, test, web};
    use gatehouse_http::observe;

    /// The Prometheus text the request metrics produce for `requests`, sent to an app with one
    /// GET route at `route`, wrapped as the services wrap theirs.
    async fn rendered_after(route: &str, requests: Vec<test::TestRequest>) -> String {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _recording = metrics::set_default_local_recorder(&recorder);
        let app = test::init_service(
            App::new()
                .route(route, web::get().to(HttpResponse::Ok))
                .wrap(actix_web::middleware::from_fn(observe::request_metrics))
                .wrap(observe::tracing_logger()),
        )
        .await;
        for request in requests {
            test::call_service(&app, request.to_request()).await;
        }
        handle.render()
    }

    #[actix_web::test]
    async fn request_metrics_name_the_matched_route() {
        let requests = ["/orgs/acme/ok", "/nowhere"]
            .map(|path| test::TestRequest::get().uri(path))
            .into();
        let rendered = rendered_after("/orgs/{org}/ok", requests).await;
        let counted = |route: &str, status: &str| {
            rendered.lines().any(|line| {
                line.starts_with("http_requests_total{")
                    && line.contains(&format!("route=\"{route}\""))
                    && line.contains(&format!("status=\"{status}\""))
            })
        };
        assert!(counted("/orgs/{org}/ok", "200"), "{rendered}");
        assert!(counted("unmatched", "404"), "{rendered}");
    }

    #[actix_web::test]
    async fn request_metrics_keep_a_bounded_set_of_methods() {
        // Methods a client made up: each would otherwise be a series of its own, kept for good.
        let mut requests: Vec<test::TestRequest> = (0..50)
            .map(|i| {
                let method = actix_web::http::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
                test::TestRequest::default().method(method).uri("/ok")
            })
            .collect();
        requests.push(test::TestRequest::get().uri("/ok"));
        let rendered = rendered_after("/ok", requests).await;
        let series: Vec<&str> = rendered
            .lines()
            .filter(|l| l.starts_with("http_requests_total{"))
            .collect();
        assert_eq!(series.len(), 2, "{rendered}");
        assert!(
            series
                .iter()
                .any(|l| l.contains("method=\"GET\"") && l.ends_with(" 1")),
            "{rendered}"
        );
        assert!(
            series
                .iter()
                .any(|l| l.contains("method=\"other\"") && l.ends_with(" 50")),
            "{rendered}"
        );
        assert!(!rendered.contains("INVENTED"), "{rendered}");
    }
}

/// Secrets in URLs (reset and verification tokens, SSO and OAuth callback codes and states) never
/// reach the request log or the trace: the service's own JSON log of a real request over TCP is
/// captured and searched for them.
mod secrets_in_logs {
    use std::io;
    use std::sync::{Arc, Mutex, OnceLock};

    use actix_web::{App, HttpResponse, HttpServer, web};
    use gatehouse_http::observe;
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects what the services' JSON log layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The process-wide log (the server's worker threads log there): the services' JSON layer.
    fn log() -> &'static Captured {
        static LOG: OnceLock<Captured> = OnceLock::new();
        LOG.get_or_init(|| {
            let captured = Captured::default();
            let sink = captured.clone();
            let layer = gatehouse_core::telemetry::json_log_layer(move || sink.clone());
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("no other global subscriber in this test binary");
            captured
        })
    }

    async fn page() -> HttpResponse {
        tracing::info!("page served");
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn query_secrets_are_redacted_in_request_logs_and_spans() {
        let log = log();
        let listener = gatehouse_http::bind("127.0.0.1:0".parse().unwrap(), "test.listen").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(|| {
            App::new()
                .default_service(web::to(page))
                .wrap(actix_web::middleware::from_fn(observe::request_metrics))
                .wrap(observe::tracing_logger())
        })
        .disable_signals()
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        let secrets = [
            "reset-tok-3f9a1c77d2",
            "verify-tok-81bb02e4aa",
            "sso-code-5d17e0c9b3",
            "sso-state-a2c4e6f801",
            "oauth-state-77aa0d13",
        ];
        for target in [
            format!("/reset-password?token={}", secrets[0]),
            format!("/verify-email?token={}&next=%2F", secrets[1]),
            format!("/api/v1/sso/callback?code={}&state={}", secrets[2], secrets[3]),
            format!("/oauth/authorize?client_id=c&{}", secrets[4]),
        ] {
            let response = reqwest::get(format!("http://{addr}{target}")).await.unwrap();
            assert_eq!(response.status(), 200);
        }
        handle.stop(true).await;
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let targets: Vec<String> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["fields"]["message"] == "page served" || line["message"] == "page served")
            .filter_map(|line| line["span"]["http.target"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            targets,
            [
                "/reset-password?token=[redacted]",
                "/verify-email?token=[redacted]&next=[redacted]",
                "/api/v1/sso/callback?code=[redacted]&state=[redacted]",
                "/oauth/authorize?client_id=[redacted]&[redacted]",
            ],
            "the logged request targets keep paths and parameter names only"
        );
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} is in the log:\n{text}");
        }
    }
}
