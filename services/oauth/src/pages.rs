//! The authorization server's HTML pages: login, consent and errors. Plain forms, no JavaScript,
//! never framed, never cached.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};

pub use gatehouse_core::html::escape as esc;

/// The console's look (web/src/styles.css: colours, type, radius, light and dark), inline because
/// these pages allow no external resource.
const STYLE: &str = ":root{--bg:#f7f8fa;--surface:#fff;--surface-2:#f0f2f5;--text:#1b1f24;--muted:#57606a;--border:#d0d7de;\
--accent:#3b5bdb;--accent-text:#fff;--danger:#c92a2a;--danger-soft:#fff0f0;--warn:#8a5a00;--warn-soft:#fff6e0;--focus:#1c7ed6;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0f1115;--surface:#171a21;--surface-2:#1f232c;--text:#e6e8eb;--muted:#a1a9b3;\
--border:#353b45;--accent:#7c95ff;--accent-text:#0f1115;--danger:#ff8787;--danger-soft:#3a1d1d;--warn:#ffd43b;--warn-soft:#3a3017;--focus:#74c0fc}}
*{box-sizing:border-box}body{font:15px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,Arial,sans-serif;background:var(--bg);color:var(--text);margin:0}
header{padding:16px 24px;font-weight:700;font-size:1.05rem;display:flex;align-items:center;gap:8px}
.mark{width:22px;height:22px;border-radius:6px;background:var(--accent);display:inline-block}
main{max-width:440px;margin:24px auto 64px;background:var(--surface);border:1px solid var(--border);border-radius:12px;padding:28px;\
box-shadow:0 1px 2px #0000000f,0 4px 16px #0000000f}
@media (max-width:480px){main{margin:8px 12px 48px;padding:20px}}
h1{font-size:1.6rem;margin:0 0 16px}a{color:var(--accent)}:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
label{display:block;margin:14px 0 4px;font-weight:600;font-size:.92em}
input[type=email],input[type=password]{width:100%;font:inherit;color:var(--text);background:var(--surface);padding:7px 10px;\
min-height:36px;border:1px solid var(--border);border-radius:8px}
button{font:inherit;min-height:36px;padding:7px 14px;border-radius:8px;border:1px solid var(--accent);background:var(--accent);\
color:var(--accent-text);cursor:pointer;margin:18px 8px 0 0}
button.secondary{background:var(--surface);color:var(--text);border-color:var(--border)}
.host{font-size:1.1rem;font-weight:700;font-family:ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.warn{background:var(--warn-soft);color:var(--warn);border:1px solid var(--warn);padding:10px 14px;border-radius:8px}
.error{background:var(--danger-soft);color:var(--danger);border:1px solid var(--danger);padding:10px 14px;border-radius:8px}
.muted{color:var(--muted);font-size:.9rem}ul{padding-left:1.2rem}code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;overflow-wrap:anywhere}";

/// Builds a page response with the security headers every page carries. `form_targets` are CSP
/// sources a form's redirect chain may end at (the client's redirect URI origin).
fn page(status: StatusCode, title: &str, body: &str, form_targets: &[String]) -> HttpResponse {
    let mut form_action = String::from("'self'");
    for t in form_targets {
        form_action.push(' ');
        form_action.push_str(t);
    }
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{} · Gatehouse</title><style>{STYLE}</style></head>\
         <body><header><span class=\"mark\" aria-hidden=\"true\"></span>Gatehouse</header><main>{body}</main></body></html>",
        esc(title)
    );
    let mut builder = HttpResponseBuilder::new(status);
    security_headers(&mut builder, &csp);
    builder.content_type("text/html; charset=utf-8").body(html)
}

pub fn security_headers(builder: &mut HttpResponseBuilder, csp: &str) {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, csp.to_owned()))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
}

/// An authorization error shown at the authorization server (never redirected: the client or
/// its redirect URI could not be trusted).
pub fn error_page(title: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p class=\"muted\">You can close this window. Nothing was sent to the application.</p>",
        esc(title),
        esc(message)
    );
    page(StatusCode::BAD_REQUEST, title, &body, &[])
}

/// What the login and consent pages say about the request.
pub struct RequestView<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub redirect_host: &'a str,
    /// Every registered redirect URI is on this machine (loopback or a private-use scheme).
    pub local_only: bool,
    pub org_name: &'a str,
    pub endpoint_name: &'a str,
    pub resource: &'a str,
    /// The raw authorization request, carried through the forms.
    pub query: &'a str,
    pub issued_at: i64,
    pub csrf: &'a str,
    pub form_target: Option<String>,
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

fn app_line(v: &RequestView<'_>) -> String {
    format!(
        "<p><strong>{}</strong> wants to use <strong>{}</strong> in <strong>{}</strong>.</p>\
         <p>It will be sent to <span class=\"host\">{}</span></p>",
        esc(v.client_name),
        esc(v.endpoint_name),
        esc(v.org_name),
        esc(v.redirect_host),
    )
}

pub fn login_page(
    v: &RequestView<'_>,
    email: &str,
    error: Option<&str>,
    sso_url: Option<&str>,
) -> HttpResponse {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let sso = sso_url
        .map(|u| {
            format!(
                "<p><a href=\"{}\">Sign in with your organization's single sign-on</a></p>",
                esc(u)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in to Gatehouse</h1>{}{error}\
         <form method=\"post\" action=\"/authorize/login\">{}{}{}\
         <label for=\"email\">Email</label><input id=\"email\" type=\"email\" name=\"email\" value=\"{}\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label><input id=\"password\" type=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>{sso}",
        app_line(v),
        hidden("q", v.query),
        hidden("t", &v.issued_at.to_string()),
        hidden("csrf", v.csrf),
        esc(email),
    );
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    page(status, "Sign in", &body, v.form_target.as_slice())
}

/// One scope line on the consent page.
pub struct ScopeLine<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub tool_count: i64,
}

pub fn consent_page(
    v: &RequestView<'_>,
    user_email: &str,
    registration: &str,
    scopes: &[ScopeLine<'_>],
    withheld: &[String],
) -> HttpResponse {
    let warning = if v.local_only {
        "<p class=\"warn\">This application only redirects to this computer (localhost or an app link). \
         Approve only if you just started it yourself.</p>"
    } else {
        ""
    };
    let scope_items: String = if scopes.is_empty() {
        "<li>No tool access: the application can only connect.</li>".to_owned()
    } else {
        scopes
            .iter()
            .map(|s| {
                let tools = if s.tool_count == 1 {
                    "1 tool".to_owned()
                } else {
                    format!("{} tools", s.tool_count)
                };
                let desc = if s.description.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", esc(s.description))
                };
                format!(
                    "<li><code>{}</code>{desc} <span class=\"muted\">({tools})</span></li>",
                    esc(s.name)
                )
            })
            .collect()
    };
    let withheld = if withheld.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"muted\">Not granted (your role does not allow them): {}</p>",
            esc(&withheld.join(", "))
        )
    };
    let body = format!(
        "<h1>Authorize access</h1>{}{warning}\
         <p>Permissions requested:</p><ul>{scope_items}</ul>{withheld}\
         <p class=\"muted\">Endpoint: <code>{}</code><br>Redirect: <code>{}</code><br>Client: <code>{}</code> ({})<br>Signed in as {}. \
         <a href=\"/authorize?{}\">Not you?</a></p>\
         <form method=\"post\" action=\"/authorize/consent\">{}{}{}\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
        app_line(v),
        esc(v.resource),
        esc(v.redirect_uri),
        esc(v.client_id),
        esc(registration),
        esc(user_email),
        esc(&format!("{}&prompt=login", v.query)),
        hidden("q", v.query),
        hidden("t", &v.issued_at.to_string()),
        hidden("csrf", v.csrf),
    );
    page(
        StatusCode::OK,
        "Authorize access",
        &body,
        v.form_target.as_slice(),
    )
}
