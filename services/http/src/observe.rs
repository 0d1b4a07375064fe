//! Request observation: a root tracing span per request (with a request id, joined to an incoming
//! W3C `traceparent` when OTLP is on), the id echoed as `x-request-id`, and HTTP metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Version;
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
///
/// The fields are tracing-actix-web's (OpenTelemetry's HTTP names), but built here rather than
/// with its `root_span!` macro: the macro takes `http.client_ip`, `http.host` and `http.scheme`
/// from `Forwarded`/`X-Forwarded-*` as any client sends them, so a client could write any address
/// into the request logs. Here the client address is [`crate::client_ip`] (forwarding headers only
/// from the service's trusted proxies), the host is the `Host` the request carried and the scheme
/// is the listener's.
pub struct GatehouseRootSpan;

impl RootSpanBuilder for GatehouseRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let span = root_span(request);
        join_remote_trace(&span, request);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// The route pattern the root span matched, kept for [`request_metrics`] (matching the path
/// against the routes is not free, and once per request is enough).
struct MatchedRoute(Option<String>);

fn root_span(request: &ServiceRequest) -> Span {
    let method = request.method().as_str();
    let route = request.match_pattern();
    request.extensions_mut().insert(MatchedRoute(route.clone()));
    let route = route.as_deref().unwrap_or("default");
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let flavor = match request.version() {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2.0",
        Version::HTTP_3 => "3.0",
        _ => "1.1",
    };
    let scheme = if request.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let client_ip = crate::client_ip(request.request())
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.to_string())
        .unwrap_or_default();
    tracing::info_span!(
        "HTTP request",
        http.method = %method,
        http.route = %route,
        http.flavor = %flavor,
        http.scheme = %scheme,
        http.host = %header(actix_web::http::header::HOST),
        http.client_ip = %client_ip,
        http.user_agent = %header(actix_web::http::header::USER_AGENT),
        http.target = %loggable_target(request.uri()),
        http.status_code = tracing::field::Empty,
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        request_id = %request_id,
        exception.message = tracing::field::Empty,
        exception.details = tracing::field::Empty,
        org_id = tracing::field::Empty,
    )
}

/// The request target as logged and traced: the path, and of the query only the parameter names.
/// Query values carry secrets (password reset and email verification tokens, the `code` and `state`
/// of an SSO or OAuth callback, a client's own parameters), and request logs and traces are kept
/// and shipped where secrets must not go, so every value is replaced by `[redacted]`. A parameter
/// without `=`, or whose name is not a short identifier, is redacted whole.
pub fn loggable_target(uri: &actix_web::http::Uri) -> String {
    const REDACTED: &str = "[redacted]";
    let mut target = uri.path().to_owned();
    let Some(query) = uri.query() else {
        return target;
    };
    target.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            target.push('&');
        }
        let name = pair.split_once('=').map(|(name, _)| name).filter(|name| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
        });
        match name {
            Some(name) => {
                target.push_str(name);
                target.push('=');
                target.push_str(REDACTED);
            }
            None => target.push_str(REDACTED),
        }
    }
    target
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

/// The `method` label: the standard methods by name, any other token as `other`. A client may send
/// any token as a method, and every distinct label set is a series the recorder keeps for good.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
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
    let method = method_label(req.method());
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let matched = req.extensions_mut().remove::<MatchedRoute>();
    let route = matched
        .map_or_else(|| req.match_pattern(), |m| m.0)
        .unwrap_or_else(|| "unmatched".to_owned());
    let mut response = next.call(req).await?;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
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
