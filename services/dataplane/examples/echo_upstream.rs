//! A minimal, fast MCP upstream for benchmarks: one tool, `echo`, answered with JSON (no SSE),
//! both eras (2025 `initialize` hands out a session id; 2026-07-28 requests are stateless). With
//! `sessions` as third argument it is a 2025-era server only: a request outside a session
//! (every 2026-07-28 request) gets 400, as the TypeScript SDK's servers answer.
//!
//! `cargo run --release -p gatehouse-dataplane --example echo_upstream -- 127.0.0.1:PORT [WORKERS] [sessions]`

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

async fn mcp(req: HttpRequest, body: web::Bytes, sessions_only: web::Data<bool>) -> HttpResponse {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    if **sessions_only && method != "initialize" && req.headers().get("mcp-session-id").is_none() {
        return HttpResponse::BadRequest().content_type("application/json").body(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}"#,
        );
    }
    let Some(id) = message.get("id").cloned() else {
        return HttpResponse::Accepted().finish();
    };
    let mut session = None;
    let result = match method {
        "initialize" => {
            session = Some(uuid::Uuid::new_v4().simple().to_string());
            json!({
                "protocolVersion": message["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "echo", "version": "1"},
            })
        }
        "tools/list" => json!({"tools": [echo_tool()]}),
        "tools/call" => {
            let text = message["params"]["arguments"]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            json!({"content": [{"type": "text", "text": text}], "isError": false})
        }
        "server/discover" => {
            json!({"supportedVersions": ["2026-07-28", "2025-11-25"], "capabilities": {"tools": {}},
            "serverInfo": {"name": "echo", "version": "1"}, "resultType": "complete", "ttlMs": 0, "cacheScope": "public"})
        }
        _ => json!({}),
    };
    let mut response = HttpResponse::Ok();
    if let Some(s) = session {
        response.insert_header(("mcp-session-id", s));
    }
    response
        .content_type("application/json")
        .body(serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": result})).unwrap())
}

pub fn echo_tool() -> Value {
    json!({
        "name": "echo",
        "description": "Echoes its text argument",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let workers: usize = std::env::args().nth(2).and_then(|w| w.parse().ok()).unwrap_or(1);
    let sessions_only = std::env::args().nth(3).as_deref() == Some("sessions");
    eprintln!("echo upstream on http://{addr}/mcp (pid {})", std::process::id());
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(sessions_only))
            .route("/mcp", web::post().to(mcp))
            .route("/mcp", web::delete().to(HttpResponse::Ok))
    })
    .workers(workers)
    .tcp_nodelay(true)
    .bind(addr)?
    .run()
    .await
}
