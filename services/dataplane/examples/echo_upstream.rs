//! A minimal, fast MCP upstream for benchmarks: one tool, `echo`, answered with JSON (no SSE),
//! both eras (2025 `initialize` hands out a session id; 2026-07-28 requests are stateless).
//!
//! `cargo run --release -p gatehouse-dataplane --example echo_upstream -- 127.0.0.1:PORT`

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

async fn mcp(_req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let Some(id) = message.get("id").cloned() else {
        return HttpResponse::Accepted().finish();
    };
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
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
    eprintln!("echo upstream on http://{addr}/mcp (pid {})", std::process::id());
    HttpServer::new(|| App::new().route("/mcp", web::post().to(mcp)))
        .workers(workers)
        .tcp_nodelay(true)
        .bind(addr)?
        .run()
        .await
}
