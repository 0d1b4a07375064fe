//! What a call returns: rows as structured content plus a readable text table, or a tool error
//! whose message is safe to show the caller.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A result column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultColumn {
    pub name: String,
    /// The PostgreSQL type (`int4`, `text`, `order_status`, `int4[]`, …).
    #[serde(rename = "type")]
    pub ty: String,
}

/// A successful call: the tool's structured content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub columns: Vec<ResultColumn>,
    pub rows: Vec<Map<String, Value>>,
    pub row_count: usize,
    /// Rows changed by a write (absent for reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_affected: Option<u64>,
    /// More rows matched than the backend's row cap; only the first ones are here.
    pub truncated: bool,
    /// This is the stored result of an earlier call with the same idempotency key: nothing ran.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// Widest a cell is shown in the text table.
const MAX_CELL_CHARS: usize = 80;

fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > MAX_CELL_CHARS {
        let cut: String = flat.chars().take(MAX_CELL_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

impl ToolResult {
    /// The structured content (`structuredContent`).
    pub fn structured(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A readable table of the rows (for the text content).
    pub fn text(&self) -> String {
        let mut out = String::new();
        if !self.columns.is_empty() {
            let header: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
            let body: Vec<Vec<String>> = self
                .rows
                .iter()
                .map(|r| {
                    self.columns
                        .iter()
                        .map(|c| cell(r.get(&c.name).unwrap_or(&Value::Null)))
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    body.iter()
                        .map(|r| r[i].chars().count())
                        .chain([header[i].chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[String]| -> String {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                    .collect::<Vec<_>>()
                    .join(" | ")
                    .trim_end()
                    .to_owned()
            };
            out.push_str(&line(&header));
            out.push('\n');
            out.push_str(
                &widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("-+-"),
            );
            out.push('\n');
            for r in &body {
                out.push_str(&line(r));
                out.push('\n');
            }
        }
        let rows = if self.row_count == 1 { "row" } else { "rows" };
        out.push_str(&format!("({} {rows}", self.row_count));
        if self.truncated {
            out.push_str(", truncated at the row cap");
        }
        if let Some(n) = self.rows_affected {
            out.push_str(&format!("; {n} changed"));
        }
        if self.replayed {
            out.push_str("; the result of an earlier call with this idempotency key, nothing ran again");
        }
        out.push(')');
        out
    }

    /// The MCP `CallToolResult`.
    pub fn to_call_tool_result(&self) -> Value {
        json!({
            "content": [{"type": "text", "text": self.text()}],
            "structuredContent": self.structured(),
            "isError": false,
        })
    }
}

/// What kind of failure a call met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The arguments do not fit the tool's input schema.
    InvalidArguments,
    /// The backend refused the statement (a constraint, a policy, a type error, …).
    Refused,
    /// The statement ran longer than the backend's statement timeout.
    Timeout,
    /// The backend cannot be reached, is overloaded, or its circuit breaker is open.
    Unavailable,
    /// The backend is not set up for tools (schema missing, role can bypass row-level security).
    Misconfigured,
    /// A destructive call's confirmation is missing, expired, used or for another call.
    Confirmation,
    /// The idempotency key was used before with other arguments.
    IdempotencyConflict,
}

/// A failed call, as the caller sees it (`isError: true`). The message never carries a
/// connection string, another tenant's data, or the backend's internals.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    pub kind: ErrorKind,
    pub message: String,
    /// The SQLSTATE, when the backend refused the statement.
    pub sqlstate: Option<String>,
}

impl ToolError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            sqlstate: None,
        }
    }

    /// The MCP `CallToolResult` with `isError: true`.
    pub fn to_call_tool_result(&self) -> Value {
        json!({
            "content": [{"type": "text", "text": self.message}],
            "structuredContent": {"error": self.kind, "sqlstate": self.sqlstate},
            "isError": true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_table_is_aligned_and_bounded() {
        let result = ToolResult {
            columns: vec![
                ResultColumn {
                    name: "id".into(),
                    ty: "int4".into(),
                },
                ResultColumn {
                    name: "note".into(),
                    ty: "text".into(),
                },
            ],
            rows: vec![
                serde_json::from_value(json!({"id": 1, "note": "first\nline"})).unwrap(),
                serde_json::from_value(json!({"id": 22, "note": null})).unwrap(),
                serde_json::from_value(json!({"id": 3, "note": "x".repeat(200)})).unwrap(),
            ],
            row_count: 3,
            rows_affected: None,
            truncated: true,
            replayed: false,
        };
        let text = result.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("id | note{}", ""));
        assert_eq!(lines[2], "1  | first line");
        assert_eq!(lines[3], "22 | NULL");
        assert!(lines[4].ends_with('…') && lines[4].chars().count() < 100);
        assert_eq!(lines[5], "(3 rows, truncated at the row cap)");
        assert_eq!(
            result.to_call_tool_result()["structuredContent"]["rows"][0]["id"],
            1
        );
    }
}
