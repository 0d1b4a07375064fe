//! OTLP export: with OTEL_EXPORTER_OTLP_ENDPOINT set, a service exports its traces (joined to the
//! caller's W3C trace context) and its metrics over OTLP/HTTP. A receiver in the test decodes the
//! protobuf payloads with the OpenTelemetry protocol definitions.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use gatehouse_core::secrets::{generate_key_b64, generate_signing_secret_b64};
use gatehouse_test_support::{TestDb, free_port};

use crate::gatehouse;

#[derive(Default)]
struct Received {
    /// (trace id hex, span name, service.name)
    spans: Vec<(String, String, String)>,
    metric_names: Vec<String>,
}

type Shared = web::Data<Arc<Mutex<Received>>>;

async fn traces(body: web::Bytes, received: Shared) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut received = received.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received
                    .spans
                    .push((hex::encode(&span.trace_id), span.name, service.clone()));
            }
        }
    }
    HttpResponse::Ok().content_type("application/x-protobuf").finish()
}

async fn metrics(body: web::Bytes, received: Shared) -> HttpResponse {
    let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut received = received.lock().unwrap();
    for resource_metrics in request.resource_metrics {
        for scope in resource_metrics.scope_metrics {
            received
                .metric_names
                .extend(scope.metrics.into_iter().map(|m| m.name));
        }
    }
    HttpResponse::Ok().content_type("application/x-protobuf").finish()
}

#[actix_web::test]
async fn traces_and_metrics_are_exported_over_otlp() {
    gatehouse_test_support::init();
    let db = TestDb::new().await;
    let received: Arc<Mutex<Received>> = Default::default();
    let collector_port = free_port();
    let shared = web::Data::new(received.clone());
    let collector = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/v1/traces", web::post().to(traces))
            .route("/v1/metrics", web::post().to(metrics))
    })
    .workers(1)
    .bind(("127.0.0.1", collector_port))
    .unwrap()
    .run();
    let collector_handle = collector.handle();
    actix_web::rt::spawn(collector);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = gatehouse()
        .env("GATEHOUSE_MODE", "local")
        .env("GATEHOUSE_DATABASE__URL", &db.service_url)
        .env("GATEHOUSE_CONTROL_API__LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_CONTROL_API__INTERNAL_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_CONTROL_API__PUBLIC_URL", &base)
        .env("GATEHOUSE_CONTROL_API__RESYNC_INTERVAL_SECS", "0")
        .env(
            "GATEHOUSE_SECRETS__ENCRYPTION_KEYS",
            format!("k1={}", generate_key_b64()),
        )
        .env("GATEHOUSE_SECRETS__SIGNING_SECRET", generate_signing_secret_b64())
        .env(
            "GATEHOUSE_SECRETS__DATAPLANE_SECRET",
            generate_signing_secret_b64(),
        )
        .env(
            "GATEHOUSE_MAIL__FILE_DIR",
            std::env::temp_dir().join(format!("gh-otlp-mail-{port}")),
        )
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{collector_port}"),
        )
        // Export quickly so the test need not wait for the default 5 s / 60 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
        .arg("control-api")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let http = reqwest::Client::new();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let deadline = Instant::now() + Duration::from_secs(30);
    let outcome = loop {
        // A request carrying a W3C trace context: its span must join that trace.
        let _ = http
            .get(format!("{base}/readyz"))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .send()
            .await;
        {
            let got = received.lock().unwrap();
            let joined = got.spans.iter().any(|(t, _, _)| t == trace_id);
            let counted = got.metric_names.iter().any(|m| m == "http_requests_total");
            if joined && counted {
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(format!(
                    "after 30 s: spans {:?}, metrics {:?}",
                    got.spans.iter().take(5).collect::<Vec<_>>(),
                    got.metric_names
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    collector_handle.stop(false).await;
    outcome.unwrap();
    let got = received.lock().unwrap();
    let (_, name, service) = got.spans.iter().find(|(t, _, _)| t == trace_id).unwrap();
    assert_eq!(name, "GET /readyz", "the request span is named after the route");
    assert!(
        service.contains("gatehouse-control-api"),
        "service.name: {service}"
    );
}
