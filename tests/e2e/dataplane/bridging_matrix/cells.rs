//! The matrix's dimensions, what each driver saw, how a cell is judged, and the expected table.
//!
//! Every driver (the raw client, `bridging/ts-client.mjs`, `bridging/py_client.py`) reports one
//! JSON line per step: `{"op": "connect" | <operation>, "result": …}` with what came along
//! (`progress`, `elicitations`, `pages`, `more`, and for the raw 2026-07-28 client `wire`, the
//! shape errors of the results), or `{"op": …, "error": {"code": …, "message": …}}`.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Value, json};

/// A client revision (a column of the matrix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Revision {
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

impl Revision {
    pub const ALL: [Revision; 4] = [
        Revision::V2025_03_26,
        Revision::V2025_06_18,
        Revision::V2025_11_25,
        Revision::V2026_07_28,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2025_03_26 => "2025-03-26",
            Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    /// 2026-07-28 has no sessions.
    pub fn is_stateless(self) -> bool {
        self == Revision::V2026_07_28
    }

    /// `MCP-Protocol-Version` on every request after `initialize` (from 2025-06-18 on).
    pub fn sends_version_header(self) -> bool {
        self != Revision::V2025_03_26
    }

    /// Which drivers speak this revision: the raw client always; the TypeScript SDK client in
    /// the session revisions (pinned at its transport); the Python SDK client in its handshake
    /// revision (2025-11-25) and in 2026-07-28.
    pub fn drivers(self) -> &'static [Driver] {
        match self {
            Revision::V2025_03_26 | Revision::V2025_06_18 => &[Driver::Raw, Driver::TypeScript],
            Revision::V2025_11_25 => &[Driver::Raw, Driver::TypeScript, Driver::Python],
            Revision::V2026_07_28 => &[Driver::Raw, Driver::Python],
        }
    }
}

/// A client of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Driver {
    Raw,
    TypeScript,
    Python,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Raw => "raw HTTP",
            Driver::TypeScript => "TypeScript SDK",
            Driver::Python => "Python SDK",
        })
    }
}

/// An upstream (a group of rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Upstream {
    TypeScript,
    Python,
    Fixture2026,
    Fixture2025,
    HttpSse,
}

impl Upstream {
    pub const ALL: [Upstream; 5] = [
        Upstream::TypeScript,
        Upstream::Python,
        Upstream::Fixture2026,
        Upstream::Fixture2025,
        Upstream::HttpSse,
    ];

    /// The name in the expected table (and in docs/dataplane.md).
    pub fn label(self) -> &'static str {
        match self {
            Upstream::TypeScript => "TypeScript SDK, sessions",
            Upstream::Python => "Python SDK (MCPServer)",
            Upstream::Fixture2026 => "fixture, 2026-07-28 only",
            Upstream::Fixture2025 => "fixture, 2025 only",
            Upstream::HttpSse => "HTTP+SSE (TypeScript SDK)",
        }
    }

    /// The server's and endpoint's slug.
    pub fn slug(self) -> &'static str {
        match self {
            Upstream::TypeScript => "ts",
            Upstream::Python => "py",
            Upstream::Fixture2026 => "fx26",
            Upstream::Fixture2025 => "fx25",
            Upstream::HttpSse => "sse",
        }
    }
}

/// An operation (a row within an upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    List,
    Call,
    Progress,
    Elicit,
    Read,
    Prompt,
    Pages,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::List,
        Op::Call,
        Op::Progress,
        Op::Elicit,
        Op::Read,
        Op::Prompt,
        Op::Pages,
    ];

    /// The operation's name in the drivers' lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Call => "call",
            Op::Progress => "progress",
            Op::Elicit => "elicit",
            Op::Read => "read",
            Op::Prompt => "prompt",
            Op::Pages => "pages",
        }
    }

    /// The name in the expected table.
    pub fn label(self) -> &'static str {
        match self {
            Op::List => "tools/list",
            Op::Call => "tools/call",
            Op::Progress => "call with progress",
            Op::Elicit => "call that elicits",
            Op::Read => "resources/read",
            Op::Prompt => "prompts/get",
            Op::Pages => "pagination",
        }
    }
}

/// What every client answers an elicitation with; the tool's result must show it.
pub fn elicitation_answer() -> Value {
    json!({"username": "matrix-user", "email": "matrix-user@example.com"})
}

const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
const STATIC_TEXT: &str = "This is the content of the static text resource.";
const PROMPT_TEXT: &str = "This is a simple prompt for testing.";
/// Every upstream lists these resources, one per page.
const RESOURCES: [&str; 3] = [
    "test://static-text",
    "test://static-binary",
    "test://watched-resource",
];
const TOOLS: [&str; 3] = ["test_simple_text", "test_tool_with_progress", "test_elicitation"];

fn first_text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// Whether the `connect` line shows the revision the driver asked for.
pub fn check_connect(line: Option<&Value>, revision: Revision) -> Result<(), String> {
    let line = line.ok_or("no connect line")?;
    if let Some(error) = line.get("error") {
        return Err(format!("connect: {}", describe_error(error)));
    }
    wire(line)?;
    let negotiated = &line["result"]["protocolVersion"];
    if negotiated != revision.as_str() {
        return Err(format!(
            "connect: the client ended up at {negotiated}, not {}",
            revision.as_str()
        ));
    }
    Ok(())
}

/// `code message` of a driver line's error.
pub fn describe_error(error: &Value) -> String {
    match error["code"].as_i64() {
        Some(code) => format!("{code} {}", error["message"].as_str().unwrap_or_default()),
        None => error["message"].as_str().unwrap_or_default().to_owned(),
    }
}

fn wire(line: &Value) -> Result<(), String> {
    match line["wire"].as_array() {
        Some(problems) if !problems.is_empty() => Err(format!(
            "2026-07-28 result shape: {}",
            Value::Array(problems.clone())
        )),
        _ => Ok(()),
    }
}

/// Whether `line` (the driver's report of `op`) is the operation's real outcome.
pub fn check(op: Op, line: Option<&Value>) -> Result<(), String> {
    let line = line.ok_or("no report (the client stopped before it)")?;
    if let Some(error) = line.get("error") {
        return Err(describe_error(error));
    }
    let result = &line["result"];
    if result["isError"] == true {
        return Err(format!("the tool failed: {}", first_text(result)));
    }
    match op {
        Op::List => {
            let listed: BTreeSet<&str> = result["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str())
                .collect();
            let missing: Vec<&str> = TOOLS.into_iter().filter(|t| !listed.contains(t)).collect();
            if !missing.is_empty() {
                return Err(format!("tools/list lacks {missing:?} (listed {listed:?})"));
            }
        }
        Op::Call => {
            if first_text(result) != SIMPLE_TEXT {
                return Err(format!("unexpected result {result}"));
            }
        }
        Op::Progress => {
            if !first_text(result).starts_with("Progress reported to") {
                return Err(format!("unexpected result {result}"));
            }
            let seen: Vec<(f64, f64)> = line["progress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["progress"].as_f64().unwrap_or(-1.0),
                        p["total"].as_f64().unwrap_or(-1.0),
                    )
                })
                .collect();
            if seen != [(0.0, 100.0), (50.0, 100.0), (100.0, 100.0)] {
                return Err(format!(
                    "progress notifications {} (want 0, 50, 100 of 100)",
                    line["progress"]
                ));
            }
        }
        Op::Elicit => {
            let text = first_text(result);
            if line["elicitations"] != 1 {
                return Err(format!(
                    "the client was asked {} times (want once); result {text:?}",
                    line["elicitations"]
                ));
            }
            if !text.contains("action=accept") || !text.contains("matrix-user@example.com") {
                return Err(format!("the result does not show the client's answer: {text:?}"));
            }
        }
        Op::Read => {
            let contents = &result["contents"][0];
            if contents["uri"] != "test://static-text" || contents["text"] != STATIC_TEXT {
                return Err(format!("unexpected contents {}", result["contents"]));
            }
        }
        Op::Prompt => {
            let messages = result["messages"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let [message] = messages else {
                return Err(format!("unexpected messages {}", result["messages"]));
            };
            if message["role"] != "user" || message["content"]["text"] != PROMPT_TEXT {
                return Err(format!("unexpected message {message}"));
            }
        }
        Op::Pages => {
            let pages = line["pages"].as_array().map(Vec::as_slice).unwrap_or_default();
            let uris: Vec<&str> = pages
                .iter()
                .flat_map(|p| p.as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            let unique: BTreeSet<&str> = uris.iter().copied().collect();
            if line["more"] == true {
                return Err(format!("still a nextCursor after {} pages", pages.len()));
            }
            if unique.len() != uris.len() || unique != RESOURCES.into_iter().collect() {
                return Err(format!(
                    "pages {} (want each of {RESOURCES:?} once)",
                    line["pages"]
                ));
            }
        }
    }
    wire(line)
}

/// What a cell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    Pass,
    /// No mapping between the revisions: every client gets this JSON-RPC error code.
    NotMappable {
        code: i64,
        text: String,
    },
}

/// The expected outcome of every cell, row by row: this table is rendered verbatim in
/// docs/dataplane.md under "Bridging" (`the_documented_table_is_the_tested_one` compares them).
/// A cell is `pass` or `not mappable: <code> <the error the client gets>`.
pub const EXPECTED: &str = "\
| upstream | operation | 2025-03-26 | 2025-06-18 | 2025-11-25 | 2026-07-28 |
| --- | --- | --- | --- | --- | --- |
| TypeScript SDK, sessions | tools/list | pass | pass | pass | pass |
| TypeScript SDK, sessions | tools/call | pass | pass | pass | pass |
| TypeScript SDK, sessions | call with progress | pass | pass | pass | pass |
| TypeScript SDK, sessions | call that elicits | pass | pass | pass | pass |
| TypeScript SDK, sessions | resources/read | pass | pass | pass | pass |
| TypeScript SDK, sessions | prompts/get | pass | pass | pass | pass |
| TypeScript SDK, sessions | pagination | pass | pass | pass | pass |
| Python SDK (MCPServer) | tools/list | pass | pass | pass | pass |
| Python SDK (MCPServer) | tools/call | pass | pass | pass | pass |
| Python SDK (MCPServer) | call with progress | pass | pass | pass | pass |
| Python SDK (MCPServer) | call that elicits | pass | pass | pass | pass |
| Python SDK (MCPServer) | resources/read | pass | pass | pass | pass |
| Python SDK (MCPServer) | prompts/get | pass | pass | pass | pass |
| Python SDK (MCPServer) | pagination | pass | pass | pass | pass |
| fixture, 2026-07-28 only | tools/list | pass | pass | pass | pass |
| fixture, 2026-07-28 only | tools/call | pass | pass | pass | pass |
| fixture, 2026-07-28 only | call with progress | pass | pass | pass | pass |
| fixture, 2026-07-28 only | call that elicits | pass | pass | pass | pass |
| fixture, 2026-07-28 only | resources/read | pass | pass | pass | pass |
| fixture, 2026-07-28 only | prompts/get | pass | pass | pass | pass |
| fixture, 2026-07-28 only | pagination | pass | pass | pass | pass |
| fixture, 2025 only | tools/list | pass | pass | pass | pass |
| fixture, 2025 only | tools/call | pass | pass | pass | pass |
| fixture, 2025 only | call with progress | pass | pass | pass | pass |
| fixture, 2025 only | call that elicits | pass | pass | pass | pass |
| fixture, 2025 only | resources/read | pass | pass | pass | pass |
| fixture, 2025 only | prompts/get | pass | pass | pass | pass |
| fixture, 2025 only | pagination | pass | pass | pass | pass |
| HTTP+SSE (TypeScript SDK) | tools/list | pass | pass | pass | pass |
| HTTP+SSE (TypeScript SDK) | tools/call | pass | pass | pass | pass |
| HTTP+SSE (TypeScript SDK) | call with progress | pass | pass | pass | pass |
| HTTP+SSE (TypeScript SDK) | call that elicits | pass | pass | pass | pass |
| HTTP+SSE (TypeScript SDK) | resources/read | pass | pass | pass | pass |
| HTTP+SSE (TypeScript SDK) | prompts/get | pass | pass | pass | pass |
| HTTP+SSE (TypeScript SDK) | pagination | pass | pass | pass | pass |
";

/// The cell of `EXPECTED` for (`upstream`, `op`, `revision`).
pub fn expected(upstream: Upstream, op: Op, revision: Revision) -> Expected {
    let column = Revision::ALL
        .iter()
        .position(|r| *r == revision)
        .expect("a revision")
        + 2;
    let row = EXPECTED
        .lines()
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.len() == 6 && cells[0] == upstream.label() && cells[1] == op.label())
        .unwrap_or_else(|| panic!("EXPECTED has no row for {} / {}", upstream.label(), op.label()));
    parse_expected(row[column])
}

fn parse_expected(cell: &str) -> Expected {
    if cell == "pass" {
        return Expected::Pass;
    }
    let rest = cell
        .strip_prefix("not mappable: ")
        .unwrap_or_else(|| panic!("a cell is `pass` or `not mappable: <code> <error>`, not {cell:?}"));
    let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Expected::NotMappable {
        code: code
            .parse()
            .unwrap_or_else(|_| panic!("no JSON-RPC code in {cell:?}")),
        text: text.to_owned(),
    }
}

/// Whether what a driver saw for a cell meets `expected`.
pub fn judge(
    expected: &Expected,
    revision: Revision,
    connect: Option<&Value>,
    line: Option<&Value>,
    op: Op,
) -> Result<(), String> {
    match expected {
        // The operation's own failure says more than the connection's, when the client got that far.
        Expected::Pass => match line {
            None => check_connect(connect, revision).and_then(|()| check(op, line)),
            Some(_) => check(op, line).and_then(|()| check_connect(connect, revision)),
        },
        Expected::NotMappable { code, .. } => {
            let error = line
                .and_then(|l| l.get("error"))
                .or_else(|| connect.and_then(|c| c.get("error")));
            match error {
                Some(error) if error["code"] == *code => Ok(()),
                Some(error) => Err(format!("expected error {code}, got {}", describe_error(error))),
                None => Err(format!("expected error {code}, got a result")),
            }
        }
    }
}
