//! The web console (`web/`), built at compile time and embedded in the binary (see `build.rs`),
//! served at `/`: its hashed assets under `/assets/` (cached for a year), any other path that is
//! not an API or OAuth route gets `index.html` (the single-page app routes in the browser), never
//! cached. Every console page carries a CSP that allows no inline script. Paths under `/api`,
//! `/internal`, `/metrics` and `/.well-known` that match no route stay `404` problem documents.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};

use gatehouse_core::Config;

use crate::error::ApiError;

/// One embedded file of the built console.
pub struct Asset {
    /// The URL path, e.g. `/assets/index-3f2a.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// The body gzipped, for text types worth compressing.
    pub gzip: Option<&'static [u8]>,
}

// Defines `EMBEDDED: &[Asset]` (empty when the console could not be built) and `BUILD_NOTE`.
include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The console as served by this process: its files and the CSP of its pages.
#[derive(Clone)]
pub struct Console {
    assets: &'static [Asset],
    csp: HeaderValue,
}

impl Console {
    /// The console embedded at build time.
    pub fn embedded(cfg: &Config) -> Self {
        // The playground calls MCP endpoints on the dataplane, which may be another origin.
        Self::new(EMBEDDED, &cfg.dataplane.public_url.origin().ascii_serialization())
    }

    /// A console serving `assets`, whose pages may connect to their own origin and `dataplane`.
    pub fn new(assets: &'static [Asset], dataplane: &str) -> Self {
        let csp = format!(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             font-src 'self'; connect-src 'self' {dataplane}; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'"
        );
        Self {
            assets,
            csp: HeaderValue::from_str(&csp).expect("CSP is a valid header value"),
        }
    }

    /// Whether the console was built into this binary.
    pub fn is_built(&self) -> bool {
        self.find("/index.html").is_some()
    }

    fn find(&self, path: &str) -> Option<&'static Asset> {
        self.assets.iter().find(|a| a.path == path)
    }

    /// Answers a request that matched no other route.
    pub fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let path = req.path();
        if is_api_path(path) {
            return ApiError::NotFound("route").error_response();
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "GET, HEAD"))
                .finish();
        }
        if !self.is_built() {
            return self.not_built();
        }
        let gzip_ok = accepts_gzip(req);
        if let Some(asset) = self.find(path).filter(|_| path != "/index.html") {
            let cache = if path.starts_with("/assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            return self.file(asset, cache, gzip_ok);
        }
        if path.starts_with("/assets/") {
            // A missing hashed file is a 404, never the app's HTML served as a script.
            return HttpResponse::NotFound()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
        }
        let index = self.find("/index.html").expect("checked by is_built");
        self.file(index, "no-cache", gzip_ok)
    }

    fn file(&self, asset: &'static Asset, cache: &'static str, gzip_ok: bool) -> HttpResponse {
        let mut res = self.builder(StatusCode::OK);
        res.insert_header((header::CONTENT_TYPE, asset.content_type))
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header((header::VARY, "Accept-Encoding"));
        match asset.gzip {
            Some(gz) if gzip_ok => res.insert_header((header::CONTENT_ENCODING, "gzip")).body(gz),
            _ => res.body(asset.body),
        }
    }

    /// The page served when the binary was built without the console (no Node.js at build time).
    fn not_built(&self) -> HttpResponse {
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\"><title>Console not built · Gatehouse</title></head>\
             <body><main><h1>The console is not part of this build</h1>\
             <p>This <code>gatehouse</code> binary was compiled without the web console: {}.</p>\
             <p>Building the console needs Node.js (20.19 or newer) with npm. Install them, then rebuild:</p>\
             <pre>npm --prefix web ci\ncargo build --release -p gatehouse</pre>\
             <p>The REST API works without the console: see <a href=\"/api/docs/\">/api/docs/</a>.</p>\
             </main></body></html>",
            gatehouse_core::html::escape(BUILD_NOTE)
        );
        self.builder(StatusCode::SERVICE_UNAVAILABLE)
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html)
    }

    fn builder(&self, status: StatusCode) -> HttpResponseBuilder {
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_SECURITY_POLICY, self.csp.clone()))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((header::REFERRER_POLICY, "same-origin"));
        res
    }
}

/// Paths that belong to the API, the authorization server or operations, never to the console.
fn is_api_path(path: &str) -> bool {
    ["/api", "/internal", "/metrics", "/.well-known"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|enc| {
                let mut parts = enc.split(';');
                let name = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
                name.eq_ignore_ascii_case("gzip") && !refused
            })
        })
}

/// The default service of the public listener: the console.
pub async fn serve(console: web::Data<Console>, req: HttpRequest) -> HttpResponse {
    console.respond(&req)
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use actix_web::test::TestRequest;

    use super::*;

    static BUILT: &[Asset] = &[
        Asset {
            path: "/assets/index-abc123.js",
            content_type: "text/javascript; charset=utf-8",
            body: b"console.log(1)",
            gzip: Some(b"GZIPPED"),
        },
        Asset {
            path: "/favicon.svg",
            content_type: "image/svg+xml",
            body: b"<svg/>",
            gzip: None,
        },
        Asset {
            path: "/index.html",
            content_type: "text/html; charset=utf-8",
            body: b"<!doctype html><div id=root></div>",
            gzip: None,
        },
    ];

    fn console(assets: &'static [Asset]) -> Console {
        Console::new(assets, "http://127.0.0.1:8081")
    }

    async fn get(console: &Console, req: TestRequest) -> (StatusCode, header::HeaderMap, String) {
        let res = console.respond(&req.to_http_request());
        let status = res.status();
        let headers = res.headers().clone();
        let body = to_bytes(res.into_body()).await.unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn h<'a>(headers: &'a header::HeaderMap, name: header::HeaderName) -> &'a str {
        headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[actix_web::test]
    async fn app_routes_get_index_html_uncached_with_a_csp_without_inline_script() {
        let c = console(BUILT);
        for path in ["/", "/login", "/orgs/acme/members", "/invitations/accept?token=x"] {
            let (status, headers, body) = get(&c, TestRequest::get().uri(path)).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(body.contains("id=root"), "{path}");
            assert_eq!(h(&headers, header::CACHE_CONTROL), "no-cache");
            let csp = h(&headers, header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(!csp.contains("unsafe-eval"), "{csp}");
            let script_src = csp
                .split(';')
                .find(|d| d.trim().starts_with("script-src"))
                .unwrap();
            assert!(!script_src.contains("unsafe-inline"), "{csp}");
            assert!(csp.contains("connect-src 'self' http://127.0.0.1:8081"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(h(&headers, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        }
    }

    #[actix_web::test]
    async fn hashed_assets_are_cached_for_a_year_and_gzipped_when_accepted() {
        let c = console(BUILT);
        let (status, headers, body) = get(&c, TestRequest::get().uri("/assets/index-abc123.js")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "console.log(1)");
        assert_eq!(
            h(&headers, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            h(&headers, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        let (_, headers, body) = get(
            &c,
            TestRequest::get()
                .uri("/assets/index-abc123.js")
                .insert_header((header::ACCEPT_ENCODING, "br, gzip;q=0.8")),
        )
        .await;
        assert_eq!(body, "GZIPPED");
        assert_eq!(h(&headers, header::CONTENT_ENCODING), "gzip");
        let (_, _, body) = get(
            &c,
            TestRequest::get()
                .uri("/assets/index-abc123.js")
                .insert_header((header::ACCEPT_ENCODING, "gzip;q=0")),
        )
        .await;
        assert_eq!(body, "console.log(1)");
        let (_, headers, _) = get(&c, TestRequest::get().uri("/favicon.svg")).await;
        assert_eq!(h(&headers, header::CACHE_CONTROL), "no-cache");
    }

    #[actix_web::test]
    async fn a_missing_asset_is_a_404_not_the_app() {
        let (status, _, body) = get(&console(BUILT), TestRequest::get().uri("/assets/index-gone.js")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.is_empty());
    }

    #[actix_web::test]
    async fn api_and_operational_paths_stay_404_problems() {
        for path in [
            "/api",
            "/api/v1/nope",
            "/internal/v1/orgs",
            "/metrics",
            "/.well-known/nope",
        ] {
            let (status, headers, body) = get(&console(BUILT), TestRequest::get().uri(path)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(h(&headers, header::CONTENT_TYPE), "application/problem+json");
            assert!(body.contains("not_found"), "{path}: {body}");
        }
    }

    #[actix_web::test]
    async fn writes_to_console_paths_are_not_allowed() {
        let (status, headers, _) = get(&console(BUILT), TestRequest::post().uri("/login")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(h(&headers, header::ALLOW), "GET, HEAD");
    }

    #[actix_web::test]
    async fn without_the_console_a_page_says_how_to_build_it() {
        let c = console(&[]);
        assert!(!c.is_built());
        let (status, headers, body) = get(&c, TestRequest::get().uri("/orgs")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("npm --prefix web ci"), "{body}");
        assert!(body.contains("Node.js"), "{body}");
        assert!(h(&headers, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    }
}
