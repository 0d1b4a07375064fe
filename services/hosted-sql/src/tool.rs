//! A SQL tool as the runtime runs it, built from the dataplane's snapshot and validated again.

use gatehouse_core::ids::{BackendId, ToolId};
use gatehouse_core::snapshot::{SqlColumn, SqlToolTarget};
use serde_json::{Map, Value, json};

use crate::pgtypes::SqlType;
use crate::statement::{self, Access, FunctionAllowlist};

/// A typed parameter or result column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Typed {
    pub name: String,
    pub ty: SqlType,
}

impl Typed {
    pub fn to_snapshot(&self) -> SqlColumn {
        SqlColumn {
            name: self.name.clone(),
            pg_type: serde_json::to_value(&self.ty).unwrap_or(Value::Null),
        }
    }

    fn from_snapshot(c: &SqlColumn) -> Result<Self, String> {
        Ok(Self {
            name: c.name.clone(),
            ty: serde_json::from_value(c.pg_type.clone()).map_err(|e| format!("type of {}: {e}", c.name))?,
        })
    }
}

/// A tool the runtime can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlTool {
    pub id: ToolId,
    pub backend_id: BackendId,
    /// The tool's own name (signed into the caller context; `gatehouse.tool()`).
    pub name: String,
    /// The approved definition's hash (binds confirmations to this exact definition).
    pub approved_hash: String,
    pub sql: String,
    pub params: Vec<Typed>,
    pub columns: Vec<Typed>,
    pub access: Access,
    pub destructive: bool,
}

impl SqlTool {
    /// Builds the runtime's tool from the snapshot, validating the statement again with the
    /// backend's allowlist: the runtime never runs a statement its own parser refuses.
    pub fn from_snapshot(
        id: ToolId,
        approved_hash: &str,
        target: &SqlToolTarget,
        allow: &FunctionAllowlist,
    ) -> Result<Self, String> {
        let access =
            Access::parse(&target.access).ok_or_else(|| format!("unknown access {:?}", target.access))?;
        // The stored statement is positional; its names are the parameters'.
        let parsed = statement::parse_positional(&target.sql, access, allow).map_err(|e| e.0)?;
        if parsed != target.params.len() {
            return Err("the statement's parameters do not match the tool's".into());
        }
        Ok(Self {
            id,
            backend_id: target.backend_id,
            name: target.name.clone(),
            approved_hash: approved_hash.to_owned(),
            sql: target.sql.clone(),
            params: target
                .params
                .iter()
                .map(Typed::from_snapshot)
                .collect::<Result<_, _>>()?,
            columns: target
                .columns
                .iter()
                .map(Typed::from_snapshot)
                .collect::<Result<_, _>>()?,
            access,
            destructive: target.destructive,
        })
    }

    pub fn to_snapshot(&self) -> SqlToolTarget {
        SqlToolTarget {
            backend_id: self.backend_id,
            name: self.name.clone(),
            sql: self.sql.clone(),
            params: self.params.iter().map(Typed::to_snapshot).collect(),
            columns: self.columns.iter().map(Typed::to_snapshot).collect(),
            access: self.access.as_str().to_owned(),
            destructive: self.destructive,
        }
    }
}

/// The tool's `inputSchema`: one required property per parameter, nothing else.
pub fn input_schema(params: &[Typed], descriptions: &Map<String, Value>) -> Value {
    let mut properties = Map::new();
    for p in params {
        let mut schema = p.ty.json_schema();
        if let (Some(obj), Some(d)) = (schema.as_object_mut(), descriptions.get(&p.name)) {
            obj.insert("description".into(), d.clone());
        }
        properties.insert(p.name.clone(), schema);
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": params.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
        "additionalProperties": false,
    })
}

/// The tool's `outputSchema`: the structured result (see `result::ToolResult`).
pub fn output_schema(columns: &[Typed]) -> Value {
    let mut row = Map::new();
    for c in columns {
        let schema = c.ty.json_schema();
        row.insert(c.name.clone(), json!({"anyOf": [schema, {"type": "null"}]}));
    }
    json!({
        "type": "object",
        "properties": {
            "columns": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
                    "required": ["name", "type"]
                }
            },
            "rows": {"type": "array", "items": {"type": "object", "properties": row}},
            "row_count": {"type": "integer", "minimum": 0},
            "rows_affected": {"type": "integer", "minimum": 0},
            "truncated": {"type": "boolean"},
        },
        "required": ["columns", "rows", "row_count", "truncated"],
    })
}
