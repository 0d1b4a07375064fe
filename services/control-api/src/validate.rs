//! Field validation shared by the resource handlers: each check names the field at fault.

use crate::error::ApiError;

/// A display name: 1–200 characters, no control characters.
pub fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        return Err(ApiError::invalid(field, "must be 1 to 200 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// A free-text description: at most 2000 characters.
pub fn description(field: &str, value: &str) -> Result<String, ApiError> {
    if value.chars().count() > 2000 {
        return Err(ApiError::invalid(field, "must be at most 2000 characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::invalid(field, "must not contain control characters"));
    }
    Ok(value.trim().to_owned())
}

/// A domain server slug: lower-case letters, digits, `-` and `_`, 1–32 characters, starting and
/// ending with a letter or digit, without `__` (the separator of namespaced tool names, so that
/// `<slug>__<tool>` always splits back into one server and one tool).
pub fn server_slug(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = slug_shape(value, 32, "-_") && !value.contains("__");
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1-32 lower-case letters, digits, '-' or '_', start and end with a letter or digit, and not contain '__'",
        ))
    }
}

/// An endpoint slug: lower-case letters, digits and `-`, 1–40 characters, starting and ending
/// with a letter or digit (it is a URL path segment).
pub fn endpoint_slug(field: &str, value: &str) -> Result<(), ApiError> {
    if slug_shape(value, 40, "-") {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1-40 lower-case letters, digits or '-', starting and ending with a letter or digit",
        ))
    }
}

/// A scope name such as `orders:read`: starts with a lower-case letter or digit, then up to 63 of
/// lower-case letters, digits, `:`, `.`, `_`, `-`.
pub fn scope_name(field: &str, value: &str) -> Result<(), ApiError> {
    let mut chars = value.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = value.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ":._-".contains(c));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1-64 characters: lower-case letters, digits, ':', '.', '_' or '-', starting with a letter or digit",
        ))
    }
}

fn slug_shape(value: &str, max: usize, inner_extra: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > max {
        return false;
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner = |b: u8| edge(b) || inner_extra.as_bytes().contains(&b);
    edge(bytes[0]) && edge(bytes[bytes.len() - 1]) && bytes.iter().all(|b| inner(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(server_slug("s", "orders").is_ok());
        assert!(server_slug("s", "orders_v2").is_ok());
        assert!(server_slug("s", "a").is_ok());
        for bad in ["", "Orders", "-a", "a-", "a__b", "a b", &"x".repeat(33)] {
            assert!(server_slug("s", bad).is_err(), "{bad:?}");
        }
        assert!(endpoint_slug("e", "support-agent").is_ok());
        assert!(endpoint_slug("e", "a_b").is_err());
        assert!(scope_name("n", "orders:read").is_ok());
        assert!(scope_name("n", ":x").is_err());
        assert!(scope_name("n", "Orders").is_err());
    }
}
