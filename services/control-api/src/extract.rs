//! Request extraction that fails with problem+json naming the field at fault: bodies must be
//! `application/json`, valid UTF-8, within the size limit, and match the DTO exactly (unknown
//! fields are refused by `#[serde(deny_unknown_fields)]` on every input DTO).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Default body limit for API requests; overridden by `control_api.max_body_bytes`.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// The body limit in force, registered as app data.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A JSON body, deserialised with the path of the first offending field in errors.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

impl<T> std::ops::Deref for ValidJson<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ValidJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .or_else(|| req.app_data::<web::Data<BodyLimit>>().map(|d| d.get_ref()))
            .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
        let is_json = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        let declared_len = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            if declared_len.is_some_and(|len| len > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(ValidJson)
        })
    }
}

/// Parses `body` as `T`, reporting the dotted path of the first offending field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::BadRequest("the request body is not valid UTF-8".into()));
    }
    // Syntax first, then shape: deserialising from a parsed value makes every shape error a
    // data error with a path (serde_json reports some, like a number where an enum is expected,
    // as syntax errors when reading bytes directly).
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the request body is not valid JSON: {}",
            strip_position(&e.to_string())
        ))
    })?;
    // Every request body of this API is an object. serde's derived deserialisers also accept an
    // array for a struct (fields by position), which would let `[]` pass as an empty patch.
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    let result = serde_path_to_error::deserialize::<_, T>(value);
    result.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let mut message = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            // serde_json reports some type mismatches (a number where an enum is expected) as
            // syntax errors; only a body that is not JSON at all is a malformed request.
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                return ApiError::BadRequest(format!("the request body is not valid JSON: {message}"));
            }
            message = "has the wrong type or an invalid value".to_owned();
        }
        // A missing field is named only in the message (the path points at its parent); an unknown
        // field is already the last path segment.
        let at_root = path == "." || path.is_empty();
        let field = match field_in_message(&message) {
            Some(named) if message.starts_with("missing field") && !at_root => format!("{path}.{named}"),
            Some(named) if message.starts_with("missing field") || at_root => named,
            _ if at_root => "body".to_owned(),
            _ => path,
        };
        ApiError::invalid(field, message)
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Extracts `x` from serde's "missing field `x`" / "unknown field `x`" messages.
fn field_in_message(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next().map(str::to_owned)
}

/// A query string, deserialised with the name of the offending parameter in errors (unknown
/// parameters are refused by `#[serde(deny_unknown_fields)]` on the DTO).
#[derive(Debug)]
pub struct ValidQuery<T>(pub T);

impl<T> std::ops::Deref for ValidQuery<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for ValidQuery<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(ValidQuery))
    }
}

/// Parses a query string as `T`, naming the parameter at fault.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
        let path = err.path().to_string();
        let message = strip_position(&err.into_inner().to_string());
        let field = match (path.as_str(), field_in_message(&message)) {
            (p, Some(named)) if p == named => named,
            ("." | "", Some(named)) => named,
            ("." | "", None) => "query".to_owned(),
            (p, _) => p.to_owned(),
        };
        ApiError::invalid(field, message)
    })
}

/// Problem+json for malformed path segments and query strings.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err, _req| ApiError::invalid("path", strip_position(&err.to_string())).into())
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let message = strip_position(&err.to_string());
        let field = message
            .strip_prefix("Query deserialize error: ")
            .and_then(field_in_message)
            .unwrap_or_else(|| "query".to_owned());
        ApiError::invalid(field, message).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        inner: Inner,
    }

    fn field_of(body: &str) -> String {
        match parse_json::<Body>(body.as_bytes()).unwrap_err() {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"inner":{"port":1}}"#), "name");
        assert_eq!(
            field_of(r#"{"name":"x","inner":{"port":"eighty"}}"#),
            "inner.port"
        );
        assert_eq!(
            field_of(r#"{"name":"x","inner":{"port":1},"extra":true}"#),
            "extra"
        );
        assert_eq!(
            field_of(r#"{"name":"x","inner":{"port":1,"host":"h"}}"#),
            "inner.host"
        );
        assert_eq!(field_of(r#"{"name":5,"inner":{"port":1}}"#), "name");
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        assert!(matches!(parse_json::<Body>(b"[]"), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            parse_json::<Body>(br#"["x", {"port": 1}]"#),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(parse_json::<Body>(b"{"), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse_json::<Body>(b""), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            parse_json::<Body>(&[0xff, 0xfe]),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Body>(br#"{"name":"x","inner":{"port":1}} trailing"#),
            Err(ApiError::BadRequest(_))
        ));
    }
}
