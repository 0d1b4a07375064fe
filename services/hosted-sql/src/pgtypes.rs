//! The PostgreSQL types a tool's parameters and result columns may have, their JSON Schemas, how
//! a JSON argument is bound (typed, never interpolated) and how a column value becomes JSON.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgRow, PgTypeInfo, PgTypeKind, PgValueRef, Postgres};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Row, TypeInfo, ValueRef};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

mod numeric;

/// Longest text or bytea argument accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most elements of an array argument.
pub const MAX_ARRAY_LEN: usize = 10_000;

/// A scalar type tools can take and return.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ScalarType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// `text`, `varchar`, `char(n)`, `name`: bound as `text`.
    Text,
    Uuid,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Json,
    Jsonb,
    Bytea,
    /// A user-defined enum, bound by its type oid (as learned when the tool was defined).
    Enum {
        oid: u32,
        name: String,
        labels: Vec<String>,
    },
}

/// A parameter's or column's type: a scalar or a one-dimensional array of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlType {
    #[serde(flatten)]
    pub scalar: ScalarType,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub array: bool,
}

/// Why a type cannot be used by a tool, or an argument does not fit its type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

fn scalar_by_name(name: &str) -> Option<ScalarType> {
    Some(match name {
        "BOOL" => ScalarType::Bool,
        "INT2" => ScalarType::Int2,
        "INT4" => ScalarType::Int4,
        "INT8" => ScalarType::Int8,
        "FLOAT4" => ScalarType::Float4,
        "FLOAT8" => ScalarType::Float8,
        "NUMERIC" => ScalarType::Numeric,
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => ScalarType::Text,
        "UUID" => ScalarType::Uuid,
        "DATE" => ScalarType::Date,
        "TIME" => ScalarType::Time,
        "TIMESTAMP" => ScalarType::Timestamp,
        "TIMESTAMPTZ" => ScalarType::Timestamptz,
        "JSON" => ScalarType::Json,
        "JSONB" => ScalarType::Jsonb,
        "BYTEA" => ScalarType::Bytea,
        _ => return None,
    })
}

impl SqlType {
    /// The tool type of a type the backend described; domains count as their base type.
    pub fn from_type_info(info: &PgTypeInfo) -> Result<SqlType, TypeError> {
        let unsupported = || {
            TypeError(format!(
                "type `{}` is not supported; cast it (e.g. `::text`)",
                info.name().to_lowercase()
            ))
        };
        match info.kind() {
            PgTypeKind::Domain(base) => Self::from_type_info(base),
            PgTypeKind::Enum(labels) => Ok(SqlType {
                scalar: ScalarType::Enum {
                    oid: info.oid().ok_or_else(unsupported)?.0,
                    name: info.name().to_owned(),
                    labels: labels.to_vec(),
                },
                array: false,
            }),
            PgTypeKind::Array(elem) => {
                let elem = Self::from_type_info(elem).map_err(|_| unsupported())?;
                if elem.array || matches!(elem.scalar, ScalarType::Enum { .. } | ScalarType::Numeric) {
                    return Err(unsupported());
                }
                Ok(SqlType {
                    scalar: elem.scalar,
                    array: true,
                })
            }
            PgTypeKind::Simple => {
                let name = info.name();
                if let Some(elem) = name.strip_suffix("[]") {
                    let scalar = scalar_by_name(elem).ok_or_else(unsupported)?;
                    if scalar == ScalarType::Numeric {
                        return Err(unsupported());
                    }
                    return Ok(SqlType { scalar, array: true });
                }
                Ok(SqlType {
                    scalar: scalar_by_name(name).ok_or_else(unsupported)?,
                    array: false,
                })
            }
            _ => Err(unsupported()),
        }
    }

    /// Short name for error messages and the text table.
    pub fn display(&self) -> String {
        let base = match &self.scalar {
            ScalarType::Enum { name, .. } => name.clone(),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default(),
        };
        if self.array { format!("{base}[]") } else { base }
    }

    /// The JSON Schema of a value of this type (arguments and results use the same shapes).
    pub fn json_schema(&self) -> Value {
        let scalar = match &self.scalar {
            ScalarType::Bool => json!({"type": "boolean"}),
            ScalarType::Int2 => json!({"type": "integer", "minimum": i16::MIN, "maximum": i16::MAX}),
            ScalarType::Int4 => json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}),
            ScalarType::Int8 => json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}),
            ScalarType::Float4 | ScalarType::Float8 => json!({"type": "number"}),
            ScalarType::Numeric => json!({
                "type": ["string", "number"],
                "pattern": numeric::PATTERN,
                "description": "a decimal number; given as a string it keeps every digit"
            }),
            ScalarType::Text => json!({"type": "string", "maxLength": MAX_TEXT_BYTES}),
            ScalarType::Uuid => json!({"type": "string", "format": "uuid"}),
            ScalarType::Date => json!({"type": "string", "format": "date"}),
            ScalarType::Time => json!({"type": "string", "format": "time"}),
            ScalarType::Timestamp => {
                json!({"type": "string", "description": "YYYY-MM-DDTHH:MM:SS[.ffffff], no offset"})
            }
            ScalarType::Timestamptz => json!({"type": "string", "format": "date-time"}),
            ScalarType::Json | ScalarType::Jsonb => json!({}),
            ScalarType::Bytea => json!({"type": "string", "contentEncoding": "base64"}),
            ScalarType::Enum { labels, .. } => json!({"type": "string", "enum": labels}),
        };
        if self.array {
            json!({"type": "array", "items": scalar, "maxItems": MAX_ARRAY_LEN})
        } else {
            scalar
        }
    }
}

/// An argument encoded by us (numeric, enum labels): its bytes in PostgreSQL's binary format and
/// the type oid it is declared with.
struct Encoded {
    oid: u32,
    bytes: Vec<u8>,
}

impl sqlx::Type<Postgres> for Encoded {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("unknown")
    }
}

impl sqlx::Encode<'_, Postgres> for Encoded {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(&self.bytes);
        Ok(sqlx::encode::IsNull::No)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(PgTypeInfo::with_oid(Oid(self.oid)))
    }
}

const NUMERIC_OID: u32 = 1700;

fn text_of<'v>(value: &'v Value, what: &str) -> Result<&'v str, TypeError> {
    let s = value
        .as_str()
        .ok_or_else(|| TypeError(format!("must be {what}")))?;
    if s.len() > MAX_TEXT_BYTES {
        return Err(TypeError(format!("must be at most {MAX_TEXT_BYTES} bytes")));
    }
    if s.contains('\0') {
        return Err(TypeError("must not contain NUL characters".into()));
    }
    Ok(s)
}

fn int_in(value: &Value, min: i64, max: i64) -> Result<i64, TypeError> {
    value
        .as_i64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| TypeError(format!("must be an integer between {min} and {max}")))
}

fn float_of(value: &Value) -> Result<f64, TypeError> {
    value.as_f64().ok_or_else(|| TypeError("must be a number".into()))
}

fn uuid_of(value: &Value) -> Result<uuid::Uuid, TypeError> {
    uuid::Uuid::parse_str(text_of(value, "a UUID")?).map_err(|_| TypeError("must be a UUID".into()))
}

fn date_of(value: &Value) -> Result<time::Date, TypeError> {
    time::Date::parse(
        text_of(value, "a date")?,
        format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| TypeError("must be a date (YYYY-MM-DD)".into()))
}

fn time_of(value: &Value) -> Result<time::Time, TypeError> {
    let s = text_of(value, "a time")?;
    time::Time::parse(s, format_description!("[hour]:[minute]:[second].[subsecond]"))
        .or_else(|_| time::Time::parse(s, format_description!("[hour]:[minute]:[second]")))
        .map_err(|_| TypeError("must be a time (HH:MM:SS[.ffffff])".into()))
}

fn timestamp_of(value: &Value) -> Result<time::PrimitiveDateTime, TypeError> {
    let s = text_of(value, "a timestamp")?;
    time::PrimitiveDateTime::parse(
        s,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
    )
    .or_else(|_| {
        time::PrimitiveDateTime::parse(
            s,
            format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
    })
    .map_err(|_| TypeError("must be a timestamp without offset (YYYY-MM-DDTHH:MM:SS)".into()))
}

fn timestamptz_of(value: &Value) -> Result<time::OffsetDateTime, TypeError> {
    time::OffsetDateTime::parse(text_of(value, "an RFC 3339 date-time")?, &Rfc3339)
        .map_err(|_| TypeError("must be an RFC 3339 date-time with offset".into()))
}

fn bytes_of(value: &Value) -> Result<Vec<u8>, TypeError> {
    let s = value.as_str().ok_or_else(|| TypeError("must be base64".into()))?;
    if s.len() > MAX_TEXT_BYTES * 4 / 3 + 4 {
        return Err(TypeError(format!("must be at most {MAX_TEXT_BYTES} bytes")));
    }
    STANDARD.decode(s).map_err(|_| TypeError("must be base64".into()))
}

fn no_nul_in_json(value: &Value) -> Result<(), TypeError> {
    let bad = match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => return items.iter().try_for_each(no_nul_in_json),
        Value::Object(map) => {
            for (k, v) in map {
                if k.contains('\0') {
                    return Err(TypeError("must not contain NUL characters".into()));
                }
                no_nul_in_json(v)?;
            }
            false
        }
        _ => false,
    };
    if bad {
        return Err(TypeError("must not contain NUL characters".into()));
    }
    Ok(())
}

fn items<T>(value: &Value, each: impl Fn(&Value) -> Result<T, TypeError>) -> Result<Vec<T>, TypeError> {
    let array = value
        .as_array()
        .ok_or_else(|| TypeError("must be an array".into()))?;
    if array.len() > MAX_ARRAY_LEN {
        return Err(TypeError(format!("must have at most {MAX_ARRAY_LEN} items")));
    }
    array
        .iter()
        .enumerate()
        .map(|(i, v)| each(v).map_err(|e| TypeError(format!("item {i} {}", e.0))))
        .collect()
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Binds `value` as a parameter of type `ty`; refuses a value that does not fit (wrong JSON type,
/// out of range, NUL characters, too large). `null` is refused: parameters are required.
pub fn bind<'q>(query: PgQuery<'q>, ty: &SqlType, value: &Value) -> Result<PgQuery<'q>, TypeError> {
    if value.is_null() {
        return Err(TypeError("is required (null is not accepted)".into()));
    }
    use ScalarType as S;
    if ty.array {
        return Ok(match &ty.scalar {
            S::Bool => query.bind(items(value, |v| {
                v.as_bool().ok_or_else(|| TypeError("must be a boolean".into()))
            })?),
            S::Int2 => query.bind(items(value, |v| {
                int_in(v, i16::MIN.into(), i16::MAX.into()).map(|n| n as i16)
            })?),
            S::Int4 => query.bind(items(value, |v| {
                int_in(v, i32::MIN.into(), i32::MAX.into()).map(|n| n as i32)
            })?),
            S::Int8 => query.bind(items(value, |v| int_in(v, i64::MIN, i64::MAX))?),
            S::Float4 => query.bind(items(value, |v| float_of(v).map(|f| f as f32))?),
            S::Float8 => query.bind(items(value, float_of)?),
            S::Text => query.bind(items(value, |v| text_of(v, "a string").map(str::to_owned))?),
            S::Uuid => query.bind(items(value, uuid_of)?),
            S::Date => query.bind(items(value, date_of)?),
            S::Time => query.bind(items(value, time_of)?),
            S::Timestamp => query.bind(items(value, timestamp_of)?),
            S::Timestamptz => query.bind(items(value, timestamptz_of)?),
            S::Bytea => query.bind(items(value, bytes_of)?),
            S::Json | S::Jsonb => query.bind(items(value, |v| no_nul_in_json(v).map(|()| Json(v.clone())))?),
            S::Numeric | S::Enum { .. } => {
                return Err(TypeError("arrays of this type are not supported".into()));
            }
        });
    }
    Ok(match &ty.scalar {
        S::Bool => query.bind(
            value
                .as_bool()
                .ok_or_else(|| TypeError("must be a boolean".into()))?,
        ),
        S::Int2 => query.bind(int_in(value, i16::MIN.into(), i16::MAX.into())? as i16),
        S::Int4 => query.bind(int_in(value, i32::MIN.into(), i32::MAX.into())? as i32),
        S::Int8 => query.bind(int_in(value, i64::MIN, i64::MAX)?),
        S::Float4 => query.bind(float_of(value)? as f32),
        S::Float8 => query.bind(float_of(value)?),
        S::Numeric => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(TypeError("must be a decimal number".into())),
            };
            let bytes = numeric::encode(&text).ok_or_else(|| TypeError("must be a decimal number".into()))?;
            query.bind(Encoded {
                oid: NUMERIC_OID,
                bytes,
            })
        }
        S::Text => query.bind(text_of(value, "a string")?.to_owned()),
        S::Uuid => query.bind(uuid_of(value)?),
        S::Date => query.bind(date_of(value)?),
        S::Time => query.bind(time_of(value)?),
        S::Timestamp => query.bind(timestamp_of(value)?),
        S::Timestamptz => query.bind(timestamptz_of(value)?),
        S::Json | S::Jsonb => {
            no_nul_in_json(value)?;
            let text = value.to_string();
            if text.len() > MAX_TEXT_BYTES * 4 {
                return Err(TypeError(format!(
                    "must be at most {} bytes of JSON",
                    MAX_TEXT_BYTES * 4
                )));
            }
            query.bind(Json(value.clone()))
        }
        S::Bytea => query.bind(bytes_of(value)?),
        S::Enum { oid, labels, .. } => {
            let label = text_of(value, "a string")?;
            if !labels.iter().any(|l| l == label) {
                return Err(TypeError(format!("must be one of {}", labels.join(", "))));
            }
            query.bind(Encoded {
                oid: *oid,
                bytes: label.as_bytes().to_vec(),
            })
        }
    })
}

fn fmt_date(d: time::Date) -> String {
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

fn fmt_time(t: time::Time) -> String {
    t.format(format_description!(
        "[hour]:[minute]:[second].[subsecond digits:6]"
    ))
    .unwrap_or_default()
}

fn fmt_timestamp(t: time::PrimitiveDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    ))
    .unwrap_or_default()
}

fn fmt_timestamptz(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn get<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(
    row: &'r PgRow,
    i: usize,
) -> Result<Option<T>, TypeError> {
    row.try_get::<Option<T>, _>(i)
        .map_err(|e| TypeError(format!("column {i} could not be read: {e}")))
}

fn map<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

/// The JSON value of column `i` of `row`, which has type `ty`.
pub fn decode(row: &PgRow, i: usize, ty: &SqlType) -> Result<Value, TypeError> {
    use ScalarType as S;
    if ty.array {
        return Ok(match &ty.scalar {
            S::Bool => map(get::<Vec<Option<bool>>>(row, i)?, |v| json!(v)),
            S::Int2 => map(get::<Vec<Option<i16>>>(row, i)?, |v| json!(v)),
            S::Int4 => map(get::<Vec<Option<i32>>>(row, i)?, |v| json!(v)),
            S::Int8 => map(get::<Vec<Option<i64>>>(row, i)?, |v| json!(v)),
            S::Float4 => map(get::<Vec<Option<f32>>>(row, i)?, |v| json!(v)),
            S::Float8 => map(get::<Vec<Option<f64>>>(row, i)?, |v| json!(v)),
            S::Text => map(get::<Vec<Option<String>>>(row, i)?, |v| json!(v)),
            S::Uuid => map(get::<Vec<Option<uuid::Uuid>>>(row, i)?, |v| json!(v)),
            S::Date => map(get::<Vec<Option<time::Date>>>(row, i)?, |v| {
                json!(v.into_iter().map(|d| d.map(fmt_date)).collect::<Vec<_>>())
            }),
            S::Time => map(get::<Vec<Option<time::Time>>>(row, i)?, |v| {
                json!(v.into_iter().map(|d| d.map(fmt_time)).collect::<Vec<_>>())
            }),
            S::Timestamp => map(get::<Vec<Option<time::PrimitiveDateTime>>>(row, i)?, |v| {
                json!(v.into_iter().map(|d| d.map(fmt_timestamp)).collect::<Vec<_>>())
            }),
            S::Timestamptz => map(get::<Vec<Option<time::OffsetDateTime>>>(row, i)?, |v| {
                json!(v.into_iter().map(|d| d.map(fmt_timestamptz)).collect::<Vec<_>>())
            }),
            S::Bytea => map(get::<Vec<Option<Vec<u8>>>>(row, i)?, |v| {
                json!(
                    v.into_iter()
                        .map(|b| b.map(|b| STANDARD.encode(b)))
                        .collect::<Vec<_>>()
                )
            }),
            S::Json | S::Jsonb => map(get::<Vec<Option<Json<Value>>>>(row, i)?, |v| {
                Value::Array(v.into_iter().map(|j| j.map_or(Value::Null, |j| j.0)).collect())
            }),
            S::Numeric | S::Enum { .. } => {
                return Err(TypeError("arrays of this type are not supported".into()));
            }
        });
    }
    Ok(match &ty.scalar {
        S::Bool => map(get::<bool>(row, i)?, Value::Bool),
        S::Int2 => map(get::<i16>(row, i)?, |n| json!(n)),
        S::Int4 => map(get::<i32>(row, i)?, |n| json!(n)),
        S::Int8 => map(get::<i64>(row, i)?, |n| json!(n)),
        S::Float4 => map(get::<f32>(row, i)?, |n| json!(n)),
        S::Float8 => map(get::<f64>(row, i)?, |n| json!(n)),
        S::Text => map(get::<String>(row, i)?, Value::String),
        S::Uuid => map(get::<uuid::Uuid>(row, i)?, |u| Value::String(u.to_string())),
        S::Date => map(get::<time::Date>(row, i)?, |d| Value::String(fmt_date(d))),
        S::Time => map(get::<time::Time>(row, i)?, |t| Value::String(fmt_time(t))),
        S::Timestamp => map(get::<time::PrimitiveDateTime>(row, i)?, |t| {
            Value::String(fmt_timestamp(t))
        }),
        S::Timestamptz => map(get::<time::OffsetDateTime>(row, i)?, |t| {
            Value::String(fmt_timestamptz(t))
        }),
        S::Json | S::Jsonb => map(get::<Json<Value>>(row, i)?, |j| j.0),
        S::Bytea => map(get::<Vec<u8>>(row, i)?, |b| Value::String(STANDARD.encode(b))),
        S::Numeric | S::Enum { .. } => {
            let raw: PgValueRef<'_> = row
                .try_get_raw(i)
                .map_err(|e| TypeError(format!("column {i} could not be read: {e}")))?;
            if raw.is_null() {
                return Ok(Value::Null);
            }
            let bytes = raw
                .as_bytes()
                .map_err(|e| TypeError(format!("column {i} could not be read: {e}")))?;
            if matches!(ty.scalar, S::Numeric) {
                Value::String(
                    numeric::decode(bytes)
                        .ok_or_else(|| TypeError(format!("column {i}: malformed numeric")))?,
                )
            } else {
                Value::String(String::from_utf8_lossy(bytes).into_owned())
            }
        }
    })
}
