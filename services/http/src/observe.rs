//! Request observation: a root tracing span per request (with a request id, joined to an incoming
//! W3C `traceparent` when OTLP is on), the id echoed as `x-request-id`, and HTTP metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder, TracingLogger};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The tracing middleware to wrap every app in.
pub fn tracing_logger() -> TracingLogger<GatehouseRootSpan> {
    TracingLogger::<GatehouseRootSpan>::new()
}

/// Root span with the request id, the matched route and the org (filled in by handlers via
/// `Span::current().record("org_id", ..)`).
pub struct GatehouseRootSpan;

impl RootSpanBuilder for GatehouseRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let span = tracing_actix_web::root_span!(request, org_id = tracing::field::Empty);
        join_remote_trace(&span, request);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Makes the span a child of the caller's trace when a `traceparent` header came in.
fn join_remote_trace(span: &Span, request: &ServiceRequest) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Headers<'a>(&'a actix_web::http::header::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    if request.headers().contains_key("traceparent") {
        let context =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(request.headers())));
        let _ = span.set_parent(context);
    }
}

/// Echoes the request id and records `http_requests_total` / `http_request_duration_seconds`.
/// Register with `actix_web::middleware::from_fn(observe::request_metrics)` inside the tracing
/// logger (so the id exists).
pub async fn request_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    if let Some(id) = request_id
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}
